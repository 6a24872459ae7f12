"""IMAP intake against a real Dovecot: unseen mail becomes SMS, and is marked only after
the commit (DESIGN.md invariant 1)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import shutil
import smtplib
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aioimaplib  # type: ignore[import-untyped]  # no py.typed in 2.0.3
import pytest

from mailsms.app import Gateway
from mailsms.config import ImapSettings
from mailsms.intake.imap import ImapIntake
from mailsms.model import State
from tests.conftest import GatewayFactory
from tests.helpers import until
from tests.integration.test_http import call
from tests.peers import missing_peer
from tests.peers.dovecot import SBIN_PATH, Dovecot, dovecot_binary, lmtp_available
from tests.peers.postfix import shared_temp_dir

pytestmark = pytest.mark.peers

PASSWORD = "gw-pw"
USERS = [f"gw{i}" for i in range(24)]  # one mailbox per test, one Dovecot per module
NUMBER = "+447700900123"


def mail(
    body: str = "Disk /var on db1 is 91% full",
    sender: str = "ops@example.com",
    to: str = f"{NUMBER}@sms.example.test",
    extra: str = "",
) -> bytes:
    head = f"From: Ops <{sender}>\r\nTo: {to}\r\nSubject: alert\r\n{extra}"
    return (
        f"{head}Message-ID: <{abs(hash((body, to, extra)))}@example.com>\r\n\r\n{body}\r\n".encode()
    )


class Mailbox:
    """The gateway's mailbox as another mail client sees it: append, flags, folders."""

    def __init__(self, dc: Dovecot, user: str) -> None:
        self.dc = dc
        self.user = user
        self.client: Any = None

    async def __aenter__(self) -> Mailbox:
        self.client = aioimaplib.IMAP4("127.0.0.1", self.dc.imap_port, timeout=10)
        await self.client.wait_hello_from_server()
        assert (await self.client.login(self.user, PASSWORD)).result == "OK"
        for folder in ("Sent as SMS", "Refused"):
            await self.client.create(f'"{folder}"')
        return self

    async def __aexit__(self, *exc: object) -> None:
        transport = self.client.protocol.transport
        if transport is None or transport.is_closing():
            return  # the server closed it (a kick): nothing to log out of
        with contextlib.suppress(Exception):
            await self.client.logout()

    async def append(self, raw: bytes, folder: str = "INBOX") -> None:
        assert (await self.client.append(raw, mailbox=folder)).result == "OK"

    async def fetch(self, uid: int, folder: str = "INBOX") -> bytes:
        assert (await self.client.select(f'"{folder}"')).result == "OK"
        resp = await self.client.uid("fetch", str(uid), "(BODY.PEEK[])")
        return bytes(resp.lines[1])

    async def flags(self, folder: str = "INBOX") -> list[set[str]]:
        """Each message's flags in ``folder``, in UID order (\\Recent left out)."""
        assert (await self.client.select(f'"{folder}"')).result == "OK"
        resp = await self.client.fetch("1:*", "(FLAGS)")
        out = []
        for line in resp.lines:
            m = re.search(rb"FLAGS \(([^)]*)\)", bytes(line))
            if m:
                out.append(set(m[1].decode().split()) - {"\\Recent"})
        return out


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    """One private Dovecot for the module (each start and stop costs seconds)."""
    if dovecot_binary() is None or not lmtp_available():
        missing_peer("Dovecot is not installed (apt-get install dovecot-imapd dovecot-lmtpd)")
    if os.geteuid() != 0:
        missing_peer("a private Dovecot instance must be started as root")
    dc = Dovecot(shared_temp_dir("mailsms-dc-"), dict.fromkeys(USERS, PASSWORD))
    dc.start_sync()
    yield dc
    dc.stop_sync()
    shutil.rmtree(dc.root, ignore_errors=True)


_fresh = itertools.count()


@pytest.fixture
def user() -> str:
    """A mailbox no other test of the module has used."""
    return USERS[next(_fresh)]


@pytest.fixture
async def box(dovecot: Dovecot, user: str) -> AsyncIterator[Mailbox]:
    async with Mailbox(dovecot, user) as m:
        yield m


def imap_settings(box: Mailbox, **kw: Any) -> dict[str, Any]:
    return {
        "name": "alerts",
        "host": "127.0.0.1",
        "port": box.dc.imap_port,
        "tls": False,
        "username": box.user,
        "password": PASSWORD,
        **kw,
    }


POLICY = {"allowed_senders": ["*@example.com"]}


@pytest.fixture
async def gw(gateway_factory: GatewayFactory) -> Gateway:
    return await gateway_factory(policy=POLICY)


@contextlib.asynccontextmanager
async def reader(gw: Gateway, box: Mailbox, **kw: Any) -> AsyncIterator[ImapIntake]:
    """An ImapIntake on the gateway's intake, connected, driven by the test (no task)."""
    intake = ImapIntake(ImapSettings.model_validate(imap_settings(box, **kw)), gw.intake)
    await intake.connect()
    try:
        yield intake
    finally:
        await intake.stop()


async def test_unseen_mail_is_queued_then_marked_seen(box: Mailbox, gw: Gateway) -> None:
    await box.append(mail())
    async with reader(gw, box) as intake:
        (outcome,) = await intake.poll()
        assert outcome.result == "queued"
        (id,) = outcome.ids
        msg = await gw.store.get(id)
        assert msg is not None
        assert (msg.to, msg.sender, msg.origin) == (NUMBER, "ops@example.com", "imap")
        assert "91% full" in msg.text
        assert await box.flags() == [{"\\Seen"}]
        assert await intake.poll() == []  # seen: not read again


async def test_committed_but_not_flagged_is_not_sent_twice(
    box: Mailbox, gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    await box.append(mail())
    async with reader(gw, box) as intake:
        real = intake._after

        async def drop(uid: int) -> None:  # the connection drops after the commit
            raise OSError("connection reset (scripted)")

        monkeypatch.setattr(intake, "_after", drop)
        with pytest.raises(OSError):
            await intake.poll()
        assert await box.flags() == [set()]  # still unseen
        monkeypatch.setattr(intake, "_after", real)
        (outcome,) = await intake.poll()
        assert outcome.result == "duplicate"
        assert await box.flags() == [{"\\Seen"}]
    assert len(await gw.store.list_messages(limit=10)) == 1


async def test_refused_sender_is_flagged_and_nothing_queued(box: Mailbox, gw: Gateway) -> None:
    await box.append(mail(sender="mallory@elsewhere.test"))
    await box.append(mail(to="someone@example.com"))  # no recipient of ours
    async with reader(gw, box) as intake:
        first, second = await intake.poll()
    assert (first.result, second.result) == ("refused", "refused")
    assert "550 5.7.1" in first.reason and "mallory@elsewhere.test" in first.reason
    assert "550 5.1.1" in second.reason
    assert await box.flags() == [{"\\Seen", "\\Flagged"}] * 2
    assert await gw.store.list_messages() == []


async def test_move_after_queueing_and_refused_mail_to_its_folder(
    box: Mailbox, gw: Gateway
) -> None:
    await box.append(mail())
    await box.append(mail(sender="mallory@elsewhere.test"))
    async with reader(
        gw, box, after="move", move_to="Sent as SMS", rejected_to="Refused"
    ) as intake:
        queued, refused = await intake.poll()
    assert (queued.result, refused.result) == ("queued", "refused")
    assert "5.7.1" in refused.reason
    assert await box.flags("INBOX") == []
    assert await box.flags("Sent as SMS") == [{"\\Seen"}]
    assert await box.flags("Refused") == [{"\\Seen", "\\Flagged"}]


async def test_delete_after_queueing(box: Mailbox, gw: Gateway) -> None:
    await box.append(mail())
    async with reader(gw, box, after="delete") as intake:
        (outcome,) = await intake.poll()
    assert outcome.result == "queued"
    assert await box.flags("INBOX") == []


async def test_store_unavailable_leaves_the_mail_for_the_next_poll(
    box: Mailbox, gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailsms.errors import StoreError

    await box.append(mail())
    async with reader(gw, box) as intake:
        real = gw.store.enqueue

        async def down(*args: Any, **kw: Any) -> Any:
            raise StoreError("disk full (scripted)")

        monkeypatch.setattr(gw.store, "enqueue", down)
        (outcome,) = await intake.poll()
        assert outcome.result == "deferred" and "451 4.3.0" in outcome.reason
        assert await box.flags() == [set()]
        monkeypatch.setattr(gw.store, "enqueue", real)
        (outcome,) = await intake.poll()
        assert outcome.result == "queued"


async def test_authserv_id_trusts_only_what_our_mta_authenticated(
    box: Mailbox, gw: Gateway
) -> None:
    ours = "Authentication-Results: mx.example.com; dkim=pass header.d=example.com\r\n"
    forged_elsewhere = "Authentication-Results: evil.test; dkim=pass header.d=example.com\r\n"
    failed = "Authentication-Results: mx.example.com; dkim=fail header.d=example.com\r\n"
    for extra in (ours, forged_elsewhere, failed, ""):
        await box.append(mail(body=f"check {len(extra)}", extra=extra))
    async with reader(gw, box, authserv_id="mx.example.com") as intake:
        outcomes = await intake.poll()
    assert [o.result for o in outcomes] == ["queued", "refused", "refused", "refused"]
    assert "no Authentication-Results header from mx.example.com" in outcomes[1].reason
    assert "show no pass for example.com" in outcomes[2].reason


async def test_the_gateway_reads_new_mail_as_it_arrives(
    box: Mailbox, gateway_factory: GatewayFactory
) -> None:
    # poll_interval 1h: only IDLE can bring this mail in within the test's time.
    gw = await gateway_factory(policy=POLICY, imap=[imap_settings(box, poll_interval="1h")])
    (intake,) = gw.imap
    async with asyncio.timeout(10):
        await intake.wait_for(lambda i: i.polls >= 1)  # then it waits in IDLE
    await box.append(mail(body="arrived while idling"))

    async def sent() -> bool:
        return any(m.state == State.DELIVERED for m in await gw.store.list_messages())

    await until(gw, sent)  # the fake carrier reports delivery at once
    (msg,) = await gw.store.list_messages()
    assert "arrived while idling" in msg.text
    async with asyncio.timeout(10):  # the flag follows the commit; the SMS may leave first
        await intake.wait_for(lambda i: i.outcomes["queued"] >= 1)
    assert await box.flags() == [{"\\Seen"}]


async def test_mail_delivered_by_dovecot_lmtp(box: Mailbox, gw: Gateway) -> None:
    """Delivered as an MTA would (LMTP): Dovecot adds Return-Path and Delivered-To."""

    def deliver(sender: str, raw: bytes) -> None:
        with smtplib.LMTP("127.0.0.1", box.dc.lmtp_port) as lmtp:
            lmtp.sendmail(sender, [box.user], raw)

    await asyncio.to_thread(deliver, "alerts-bounces@example.com", mail())
    await asyncio.to_thread(deliver, "", mail(body="an automatic report"))  # MAIL FROM:<>
    async with reader(gw, box) as intake:
        queued, bounce = await intake.poll()
    assert queued.result == "queued"
    assert bounce.result == "refused" and "Return-Path <>" in bounce.reason
    (msg,) = await gw.store.list_messages()
    assert (msg.to, msg.sender) == (NUMBER, "ops@example.com")


async def test_a_message_that_keeps_failing_is_set_aside(
    box: Mailbox, gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    await box.append(mail(body="the odd one"))
    await box.append(mail(body="a good one"))
    real = gw.intake.accept_mail

    async def buggy(raw: bytes, *args: Any, **kw: Any) -> Any:
        if b"the odd one" in raw:
            raise RuntimeError("a bug meets an odd message (scripted)")
        return await real(raw, *args, **kw)

    monkeypatch.setattr(gw.intake, "accept_mail", buggy)
    async with reader(gw, box) as intake:
        results = [[o.result for o in await intake.poll()] for _ in range(3)]
    # The good one is not held up; the odd one is retried twice, then refused and flagged.
    assert results == [["deferred", "queued"], ["deferred"], ["refused"]]
    assert await box.flags() == [{"\\Seen", "\\Flagged"}, {"\\Seen"}]


async def test_a_message_over_the_size_limit_is_refused_unread(
    box: Mailbox, gateway_factory: GatewayFactory
) -> None:
    gw = await gateway_factory(policy=POLICY, smtp={"max_message_size": 2048})
    await box.append(mail(body="x " * 2000))
    async with reader(gw, box) as intake:
        (outcome,) = await intake.poll()
    assert outcome.result == "refused" and outcome.reason.startswith("552 5.3.4")
    assert await box.flags() == [{"\\Seen", "\\Flagged"}]
    assert await gw.store.list_messages() == []


async def test_a_dropped_connection_is_opened_again(
    box: Mailbox, gateway_factory: GatewayFactory
) -> None:
    gw = await gateway_factory(policy=POLICY, imap=[imap_settings(box, poll_interval="1h")])
    (intake,) = gw.imap
    async with asyncio.timeout(10):
        await intake.wait_for(lambda i: i.polls >= 1)
    polls = intake.polls
    # The server drops the gateway's session (as on a restart or an admin's kick).
    kicked = await asyncio.to_thread(
        subprocess.run,
        ["doveadm", "-c", str(box.dc.conf), "kick", box.user],
        capture_output=True,
        env={**os.environ, "PATH": SBIN_PATH},
        check=False,
    )
    assert kicked.returncode == 0, kicked.stderr
    async with asyncio.timeout(15):
        await intake.wait_for(lambda i: i.polls > polls and i.health.ok)
    async with Mailbox(box.dc, box.user) as again:  # the kick closed the test's session too
        await again.append(mail(body="after the reconnect"))

    async def sent() -> bool:
        return any("after the reconnect" in m.text for m in await gw.store.list_messages())

    await until(gw, sent)


RELAY_TOKEN = "t0k3n"


async def appending_gateway(box: Mailbox, gateway_factory: GatewayFactory, **relay: Any) -> Gateway:
    """A gateway reading ``box`` and relaying by APPEND into it, with a fake carrier whose
    generic webhook plays the phone."""
    return await gateway_factory(
        policy=POLICY,
        imap=[imap_settings(box, poll_interval="1h")],
        relay={"method": "imap", "imap": "alerts", **relay},
        inbound={"catch_all": "ops@example.com"},
        carrier=[
            {"name": "fake", "type": "fake", "from": "+447700900999", "webhook_token": RELAY_TOKEN}
        ],
    )


async def phone_replies(gw: Gateway, text: str, id: str) -> tuple[int, Any]:
    return await call(
        gw,
        "POST",
        "/webhooks/fake/inbound",
        headers={"Authorization": f"Bearer {RELAY_TOKEN}"},
        json={"from": NUMBER, "to": "+447700900999", "text": text, "id": id},
    )


async def test_relay_by_imap_append_lands_unseen_and_is_not_read_back(
    box: Mailbox, gateway_factory: GatewayFactory
) -> None:
    # A hosted-mailbox site: mail to phones is read from the mailbox, and the phones'
    # replies are appended to it (no smarthost). The intake must not take them for mail
    # to send as SMS.
    gw = await appending_gateway(box, gateway_factory, append_mailbox="INBOX")
    (intake,) = gw.imap
    async with asyncio.timeout(10):
        await intake.wait_for(lambda i: i.polls >= 1)
    polls = intake.polls  # before the append: the poll its IDLE push causes counts
    status, body = await phone_replies(gw, "on my way", "r1")
    assert status == 200
    async with asyncio.timeout(10):
        while [m["state"] for m in await gw.store.mail_for(body["id"])] != ["sent"]:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gw.relay.progress(), 1.0)
    async with asyncio.timeout(10):  # the append wakes the intake's IDLE: one more poll
        await intake.wait_for(lambda i: i.polls > polls)
    assert await box.flags() == [{"$MailsmsRelayed"}]  # unseen, untouched by the intake
    raw = await box.fetch(1)
    assert b"on my way" in raw and b"To: ops@example.com" in raw
    assert await gw.store.list_messages() == []  # not sent back as an SMS


async def test_relay_append_to_a_missing_mailbox_is_retried_then_failed(
    box: Mailbox, gateway_factory: GatewayFactory
) -> None:
    gw = await appending_gateway(
        box,
        gateway_factory,
        append_mailbox="No Such Folder",
        max_attempts=2,
        backoff_initial="10ms",
        backoff_max="10ms",
    )
    _, body = await phone_replies(gw, "lost?", "r2")
    async with asyncio.timeout(10):
        while (row := await gw.store.get_inbound(body["id"])) and row["state"] != "relay_failed":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gw.relay.progress(), 1.0)
    assert row is not None and "APPEND to No Such Folder: NO" in row["last_error"]


async def test_policy_authserv_id_applies_to_imap_too(
    box: Mailbox, gateway_factory: GatewayFactory
) -> None:
    gw = await gateway_factory(policy={**POLICY, "authserv_id": "mx.example.com"})
    ours = "Authentication-Results: mx.example.com; dmarc=pass header.from=example.com\r\n"
    await box.append(mail(body="vouched for", extra=ours))
    await box.append(mail(body="not vouched for"))
    async with reader(gw, box) as intake:
        outcomes = await intake.poll()
    assert [o.result for o in outcomes] == ["queued", "refused"]


# Last: a failed login makes Dovecot slow down later logins from 127.0.0.1.
async def test_wrong_password_shows_in_health_and_is_retried(
    box: Mailbox, gateway_factory: GatewayFactory
) -> None:
    gw = await gateway_factory(policy=POLICY, imap=[imap_settings(box, password="wrong")])
    (intake,) = gw.imap
    async with asyncio.timeout(10):
        await intake.wait_for(lambda i: "LOGIN" in i.health.detail)
    assert not intake.health.ok
    assert "wrong" not in intake.health.detail  # the password is not repeated anywhere
    status, body = await call(gw, "GET", "/healthz")
    assert status == 503 and body["status"] == "degraded"
    assert body["imap"]["alerts"]["ok"] is False
    assert "LOGIN" in body["imap"]["alerts"]["detail"]
