"""RFC 3461/3464 through real MTAs: NOTIFY, RET, ENVID and ORCPT given to Postfix reach
mailsms, and the DSNs mailsms writes reach the sender's Dovecot mailbox (issue 8).

Alice submits to a real Postfix with DSN parameters (as her MTA would pass them on);
Postfix relays to the gateway through its transport map and, because the gateway offers
the DSN extension, hands the parameters over instead of answering for them itself. The
fake carrier fails, never reports (so the message is delayed, then expires) or delivers.
mailsms's notices go from the null sender through Postfix (its smarthost) into Alice's
mailbox, where they are read over IMAP and checked with Mailman's bounce detector
(flufl.bounce) and Python's ``email`` parser. Postfix must deliver them, not bounce them,
and must not have written notices of its own.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import sqlite3
from email.message import EmailMessage, Message
from typing import Any

import aiohttp
import pytest
from flufl.bounce import all_failures, scan_message

from mailsms.app import Gateway
from mailsms.carriers.fake import FakeCarrier
from mailsms.model import State
from tests.e2e.conftest import MailStack, MailStackFactory
from tests.helpers import in_state, settled
from tests.peers.dovecot import parse
from tests.peers.postfix import SMS_DOMAIN

pytestmark = pytest.mark.peers

PHONE = "+447700900123"
RCPT = f"{PHONE}@{SMS_DOMAIN}"
ALICE = "alice@example.test"
TOKEN = "hook-secret"
ORCPT = "rfc822;+2B447700900123@sms.example.test"  # xtext: "+2B" is the "+"
MAIL = (
    f"From: Alice <{ALICE}>\r\nTo: {RCPT}\r\nSubject: Backups\r\n"
    "Message-ID: <b1@example.test>\r\n\r\nNightly backup failed on db1.\r\n"
).encode()


def fake(gw: Gateway) -> FakeCarrier:
    carrier = gw.carriers["fake"]
    assert isinstance(carrier, FakeCarrier)
    return carrier


def carrier(**script: Any) -> list[dict[str, Any]]:
    return [{"name": "fake", "type": "fake", "webhook_token": TOKEN, **script}]


async def send(
    stack: MailStack, rcpt_options: list[str], mail_options: list[str] | None = None
) -> str:
    """Alice's client submits to Postfix with DSN parameters; the gateway's message id
    once Postfix has relayed the mail (from its ``250 2.0.0 queued as ID``)."""

    def submit() -> str:
        with smtplib.SMTP("127.0.0.1", stack.pf.port, timeout=10) as client:
            client.ehlo("client.example.test")
            assert client.has_extn("dsn")  # Postfix offers DSN to its clients
            client.mail(ALICE, mail_options or [])
            code, text = client.rcpt(RCPT, rcpt_options)
            assert code == 250, (code, text)
            code, text = client.data(MAIL)
            assert code == 250, (code, text)
            return text.decode().rsplit(" ", 1)[-1]

    queue_id = await asyncio.to_thread(submit)
    [d] = await stack.pf.wait_deliveries(queue_id, 1)
    assert d.status == "sent" and "250 2.0.0 queued as " in d.detail, d.line
    return d.detail.rsplit(" ", 1)[-1].rstrip(")")


def stored_dsn(gw: Gateway, id: str) -> dict[str, Any]:
    """The DSN parameters the gateway stored for message ``id``: what Postfix passed on."""
    path = gw.settings.store.url.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        row = db.execute(
            "SELECT notify_failure, notify_delay, notify_success, dsn FROM messages WHERE id = ?",
            (id,),
        ).fetchone()
    assert row is not None, id
    return {"failure": row[0], "delay": row[1], "success": row[2], **json.loads(row[3])}


async def mailbox(stack: MailStack, count: int) -> list[EmailMessage]:
    """The first ``count`` mails in Alice's mailbox, once there are that many."""
    async with stack.inbox() as inbox:
        uids = await inbox.wait_count(count, within=20)
        return [parse(await inbox.fetch(uid)) for uid in uids]


def report(msg: EmailMessage) -> tuple[dict[str, str], dict[str, str], EmailMessage]:
    """A DSN's per-message fields, per-recipient fields, and its third part."""
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    human, status, returned = msg.iter_parts()
    assert human.get_content_type() == "text/plain"
    assert status.get_content_type() == "message/delivery-status"
    blocks = status.get_payload()  # the per-message block, then one per recipient
    assert isinstance(blocks, list) and len(blocks) == 2, blocks
    per_message, per_recipient = (block_fields(b) for b in blocks)
    assert isinstance(returned, EmailMessage)
    return per_message, per_recipient, returned


def block_fields(block: object) -> dict[str, str]:
    assert isinstance(block, Message), block
    return {k.lower(): str(v) for k, v in block.items()}


def failures(msg: EmailMessage) -> tuple[set[str], set[str]]:
    """What Mailman's bounce detector reads: (temporary, permanent) failed recipients."""
    temporary, permanent = all_failures(msg)

    def text(found: frozenset[bytes | str]) -> set[str]:
        return {f.decode() if isinstance(f, bytes) else f for f in found}

    return text(temporary), text(permanent)


def check_dsn_envelope(msg: EmailMessage) -> None:
    """A notice from mailsms itself, delivered from the null sender, threaded under the
    original mail."""
    assert msg["Return-Path"] == "<>"  # MAIL FROM:<>, as Dovecot recorded it
    assert msg["From"].addresses[0].addr_spec == f"MAILER-DAEMON@{SMS_DOMAIN}"
    assert msg["To"].addresses[0].addr_spec == ALICE
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["In-Reply-To"] == "<b1@example.test>"


async def check_postfix_delivered_only_ours(stack: MailStack, dsns: int) -> None:
    """Postfix delivered each DSN into Dovecot (none bounced), and wrote no notice of its
    own: with a DSN-capable next hop it passes NOTIFY on instead."""
    to_alice = await stack.deliveries_to(ALICE, dsns)
    assert len(to_alice) == dsns, [d.line for d in to_alice]
    for d in to_alice:
        assert d.status == "sent", d.line
        assert d.relay == f"127.0.0.1[127.0.0.1]:{stack.dc.lmtp_port}", d.line
    log = stack.pf.log()
    assert "notification" not in log, log[-3000:]
    assert log.count("from=<>, size=") == dsns  # qmgr: the DSNs, from the null sender


async def test_failure_dsn_with_envid_and_orcpt_and_none_for_notify_never(
    mail_stack: MailStackFactory,
) -> None:
    stack = await mail_stack(carrier=carrier(permanent_failures=1))
    gw = stack.gw
    failed = await send(stack, ["NOTIFY=FAILURE", f"ORCPT={ORCPT}"], ["RET=HDRS", "ENVID=QQ314159"])
    assert (await settled(gw, failed)).state is State.FAILED
    fake(gw).script("permanent")
    never = await send(stack, ["NOTIFY=NEVER"])
    assert (await settled(gw, never)).state is State.FAILED

    # Postfix passed every parameter on to the gateway.
    assert stored_dsn(gw, failed) == {
        "failure": 1,
        "delay": 0,
        "success": 0,
        "ret": "HDRS",
        "envid": "QQ314159",
        "notify": ["FAILURE"],
        "orcpt": "rfc822;+447700900123@sms.example.test",
    }
    assert stored_dsn(gw, never)["notify"] == ["NEVER"]

    [msg] = await mailbox(stack, 1)
    check_dsn_envelope(msg)
    assert msg["X-Mailsms-Id"] == failed
    per_message, per_recipient, returned = report(msg)
    assert per_message["original-envelope-id"] == "QQ314159"
    assert per_recipient["action"] == "failed" and per_recipient["status"].startswith("5.")
    assert per_recipient["final-recipient"].replace(" ", "") == f"rfc822;{RCPT}"
    assert per_recipient["original-recipient"] == "rfc822;+447700900123@sms.example.test"
    assert returned.get_content_type() == "text/rfc822-headers"  # RET=HDRS
    headers = returned.get_content()
    assert "Subject: Backups" in headers and "Message-ID: <b1@example.test>" in headers
    assert "Nightly backup" not in headers
    assert failures(msg) == (set(), {RCPT})
    assert scan_message(msg) == {RCPT.encode()}

    # NOTIFY=NEVER: no notice was ever queued (it would be queued with the state change).
    await gw.notifier.tick()
    assert await gw.store.mail_for(never) == []
    assert not [e for e in (await gw.store.get(never)).events if e.state.startswith("dsn")]  # type: ignore[union-attr]
    await check_postfix_delivered_only_ours(stack, dsns=1)


async def test_delay_notice_then_expiry_failure_with_the_full_message(
    mail_stack: MailStackFactory,
) -> None:
    stack = await mail_stack(
        carrier=carrier(report="none"), dlr={"timeout": "1s"}, dsn={"delay_after": "300ms"}
    )
    gw = stack.gw
    gw.notifier.interval = 0.05  # delay notices and DLR timeouts are polled
    id = await send(stack, ["NOTIFY=DELAY,FAILURE"], ["RET=FULL"])
    assert set(stored_dsn(gw, id)["notify"]) == {"DELAY", "FAILURE"}
    assert stored_dsn(gw, id)["ret"] == "FULL"

    delayed, expired = await mailbox(stack, 2)
    for msg in (delayed, expired):
        check_dsn_envelope(msg)
    _, fields, returned = report(delayed)
    assert (fields["action"], fields["status"]) == ("delayed", "4.4.7")
    assert "will-retry-until" in fields
    assert returned.get_content_type() == "text/rfc822-headers"  # delay notices: headers only
    assert failures(delayed) == ({RCPT}, set())  # a warning, not a bounce

    _, fields, returned = report(expired)
    assert (fields["action"], fields["status"]) == ("failed", "4.4.7")
    assert returned.get_content_type() == "message/rfc822"  # RET=FULL on a failure
    [original] = returned.iter_parts()
    assert isinstance(original, EmailMessage) and original["Subject"] == "Backups"
    assert "Nightly backup failed on db1." in original.get_content()
    assert failures(expired) == (set(), {RCPT})
    assert (await gw.store.get(id)).state is State.EXPIRED  # type: ignore[union-attr]
    await check_postfix_delivered_only_ours(stack, dsns=2)


async def test_success_dsn_only_when_asked(mail_stack: MailStackFactory) -> None:
    """The carrier reports through the generic status webhook; a mail without NOTIFY gets
    nothing, one with NOTIFY=SUCCESS a "delivered" notice."""
    stack = await mail_stack(carrier=carrier(report="none"))
    gw = stack.gw
    plain = await send(stack, [])
    asked = await send(stack, ["NOTIFY=SUCCESS,FAILURE"])
    assert stored_dsn(gw, asked)["success"] == 1 and stored_dsn(gw, plain)["success"] == 0
    # Without an ORCPT from the client, Postfix adds one: the address as it received it.
    assert stored_dsn(gw, plain)["orcpt"] == "rfc822;+447700900123@sms.example.test"
    for id in (plain, asked):
        m = await in_state(gw, id, State.SUBMITTED)
        await status_webhook(gw, str(m.parts[0].carrier_id), "delivered")
        assert (await settled(gw, id)).state is State.DELIVERED

    [msg] = await mailbox(stack, 1)
    check_dsn_envelope(msg)
    assert msg["X-Mailsms-Id"] == asked
    _, fields, returned = report(msg)
    assert (fields["action"], fields["status"]) == ("delivered", "2.0.0")
    assert returned.get_content_type() == "text/rfc822-headers"
    assert failures(msg) == (set(), set())  # not a bounce at all
    await gw.notifier.tick()
    assert await gw.store.mail_for(plain) == []
    await check_postfix_delivered_only_ours(stack, dsns=1)


async def status_webhook(gw: Gateway, carrier_id: str, status: str) -> None:
    assert gw.listening.http is not None
    host, port = gw.listening.http
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://{host}:{port}/webhooks/fake/status",
            headers={"Authorization": f"Bearer {TOKEN}"},
            json={"id": carrier_id, "status": status},
        ) as r,
    ):
        assert r.status == 200, await r.text()
