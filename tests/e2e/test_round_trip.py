"""Mail -> SMS -> reply SMS -> mail in a real mailbox -> reply mail -> SMS (issue 6).

The whole set-up an operator runs, on 127.0.0.1: a real Postfix in front of mailsms
(``transport_maps`` sends ``sms.example.test`` to the gateway) that is also the gateway's
smarthost and delivers ``example.test`` into a real Dovecot over LMTP. Alice writes to a
phone through Postfix, the phone answers through the carrier's webhook, and Alice reads
the answer over IMAP as her mail client would: threaded under her mail, replyable, and
DKIM-signed so that an independent verifier (``opendkim -t``) passes it. Her reply goes
back through Postfix and reaches the same phone from the same sender id.

Waits are on conditions with deadlines: Postfix log lines, the gateway's own progress
(``tests.helpers``), and the IMAP mailbox's message count (IDLE).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mailsms.app import Gateway
from mailsms.carriers.fake import FakeCarrier
from mailsms.mail.sign import generate_key
from mailsms.model import State
from tests.conftest import need_peer
from tests.e2e.conftest import MailStack, MailStackFactory
from tests.helpers import settled
from tests.integration.test_dkim_opendkim import OpenDkim
from tests.peers.dovecot import parse
from tests.peers.postfix import SMS_DOMAIN, Delivery

pytestmark = pytest.mark.peers

PHONE = "+447700900123"
OURS = "+447700900999"
TOKEN = "hook-secret"
ALICE = "alice@example.test"
FIRST_ID = "<start-1@example.test>"
QUEUED = re.compile(r"250 2\.0\.0 queued as (\S+)")


def first_mail() -> bytes:
    return (
        f"From: Alice <{ALICE}>\r\nTo: {PHONE}@{SMS_DOMAIN}\r\nSubject: Server room\r\n"
        f"Date: Tue, 25 Nov 2025 08:00:00 +0000\r\nMessage-ID: {FIRST_ID}\r\n"
        "\r\nIs the AC fixed?\r\n"
    ).encode()


def reply_mail(parent_id: str) -> bytes:
    """What a mail client sends when Alice presses Reply on the SMS mail."""
    return (
        f'From: Alice <{ALICE}>\r\nTo: "+44 7700 900123" <{PHONE}@{SMS_DOMAIN}>\r\n'
        "Subject: Re: Server room\r\nDate: Tue, 25 Nov 2025 08:05:00 +0000\r\n"
        f"Message-ID: <reply-1@example.test>\r\nIn-Reply-To: {parent_id}\r\n"
        f"References: {FIRST_ID} {parent_id}\r\n"
        "\r\nGreat, thanks. Calling you now.\r\n\r\n"
        "On Tue, 25 Nov 2025 at 08:02, +44 7700 900123 wrote:\r\n"
        "> Yes, fixed at 10:40\r\n"
    ).encode()


def fake(gw: Gateway) -> FakeCarrier:
    carrier = gw.carriers["fake"]
    assert isinstance(carrier, FakeCarrier)
    return carrier


def queued_id(d: Delivery) -> str:
    m = QUEUED.search(d.detail)
    assert m and d.status == "sent", d.line
    return m[1]


async def text_in(gw: Gateway, text: str, id: str) -> dict[str, Any]:
    """The phone answers: the carrier's generic inbound webhook, with its bearer token."""
    assert gw.listening.http is not None
    host, port = gw.listening.http
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://{host}:{port}/webhooks/fake/inbound",
            headers={"Authorization": f"Bearer {TOKEN}"},
            json={"from": PHONE, "to": OURS, "text": text, "id": id},
        ) as r,
    ):
        assert r.status == 200, await r.text()
        body: dict[str, Any] = await r.json()
        return body


async def mail_to_phone(stack: MailStack, data: bytes) -> str:
    """Submit to Postfix as Alice; the gateway's message id once Postfix has relayed it."""
    sub = await stack.pf.submit(ALICE, f"{PHONE}@{SMS_DOMAIN}", data)
    assert sub.queue_id and not sub.refused, sub
    [d] = await stack.pf.wait_deliveries(sub.queue_id, 1)
    assert d.to == f"{PHONE}@{SMS_DOMAIN}", d.line
    assert d.relay == f"127.0.0.1[127.0.0.1]:{stack.gw.listening.smtp[1]}", d.line  # type: ignore[index]
    return queued_id(d)


@pytest.fixture
def opendkim(tmp_path: Path) -> OpenDkim:
    need_peer(shutil.which("opendkim") is not None, "opendkim is not installed (apt opendkim)")
    return OpenDkim(tmp_path)


async def test_mail_to_sms_reply_to_mailbox_and_back(
    mail_stack: MailStackFactory, opendkim: OpenDkim, tmp_path: Path
) -> None:
    pem, record = generate_key("rsa-sha256")
    key = tmp_path / "dkim.pem"
    key.write_bytes(pem)
    opendkim.publish("mailsms", record)
    stack = await mail_stack(
        carrier=[{"name": "fake", "type": "fake", "from": OURS, "webhook_token": TOKEN}],
        dkim={
            "domain": SMS_DOMAIN,
            "selector": "mailsms",
            "key_file": str(key),
            "algorithm": "rsa-sha256",
        },
    )
    gw = stack.gw

    # (a) Alice's mail travels Postfix -> transport map -> mailsms -> an SMS.
    first = await mail_to_phone(stack, first_mail())
    m = await settled(gw, first)
    assert m.state is State.DELIVERED and m.to == PHONE
    assert m.source_addr is None  # a new conversation: the carrier's default sender id
    [sms] = fake(gw).submitted
    assert (sms.to, sms.text, sms.message_id, sms.source_addr) == (
        PHONE,
        "Is the AC fixed?",
        first,
        OURS,
    )

    # (b) The phone answers; the mail lands in Alice's Dovecot mailbox through Postfix.
    answer = await text_in(gw, "Yes, fixed at 10:40", id="carrier-in-1")
    async with stack.inbox() as inbox:
        [uid] = await inbox.wait_count(1)
        raw = await inbox.fetch(uid)
    msg = parse(raw)
    phone_address = f"{PHONE}@{SMS_DOMAIN}"
    assert msg["From"].addresses[0].addr_spec == phone_address
    assert msg["Reply-To"].addresses[0].addr_spec == phone_address
    assert msg["To"].addresses[0].addr_spec == ALICE
    assert msg["In-Reply-To"] == FIRST_ID
    assert FIRST_ID in msg["References"]
    assert msg["Subject"] == "Re: Server room"
    assert msg["Message-ID"] == f"<sms.{answer['id']}@{SMS_DOMAIN}>"
    assert msg["Return-Path"] == f"<{phone_address}>"  # the envelope sender, as Dovecot saw it
    plain = msg.get_body(("plain",))
    assert plain is not None and "Yes, fixed at 10:40" in plain.get_content()
    # Postfix took it from the gateway and handed it to Dovecot's LMTP (not a sink).
    [to_alice] = await stack.deliveries_to(ALICE, 1)
    assert to_alice.status == "sent", to_alice.line
    assert to_alice.relay == f"127.0.0.1[127.0.0.1]:{stack.dc.lmtp_port}", to_alice.line

    # The signature survives Postfix and Dovecot (they add Received, Return-Path and
    # Delivered-To above it) and OpenDKIM verifies it; a changed body fails.
    assert raw.startswith(b"Return-Path:") and b"\r\nDKIM-Signature:" in raw
    out = opendkim.verify(raw, "as-delivered")
    assert f"s=mailsms, d={SMS_DOMAIN}" in out and "succeeded" in out, out
    tampered = raw.replace(b"fixed at 10:40", b"fixed at 11:40", 1)
    assert tampered != raw
    out = opendkim.verify(tampered, "tampered")
    assert "failed" in out and "succeeded" not in out, out

    # (c) Alice presses Reply: back through Postfix to the same phone, same sender id.
    reply = await mail_to_phone(stack, reply_mail(msg["Message-ID"]))
    m = await settled(gw, reply)
    assert m.state is State.DELIVERED and m.to == PHONE
    assert m.source_addr == OURS  # the conversation was found from In-Reply-To/References
    assert m.subject == "Re: Server room"
    assert len(fake(gw).submitted) == 2
    back = fake(gw).submitted[-1]
    assert (back.to, back.source_addr, back.message_id) == (PHONE, OURS, reply)
    assert back.text.startswith("Great, thanks. Calling you now.")
    assert "Yes, fixed at 10:40" not in back.text  # the quote is not texted back

    # Nothing stuck, nothing bounced, nothing else in the mailbox.
    assert await stack.pf.queue() == []
    assert not [d for d in stack.pf.deliveries() if d.status != "sent"]
    async with stack.inbox() as inbox:
        assert await inbox.uids() == [uid]
