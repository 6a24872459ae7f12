"""A real Postfix in front of the in-process gateway, configured as deploy/postfix/ says.

Mail enters Postfix's smtpd, ``transport_maps`` routes ``sms.example.test`` to mailsms
(SMTP, LMTP over TCP, LMTP over a Unix socket), and each test checks both ends: what
Postfix logged for every recipient (``status=sent|bounced|deferred`` with our reply) and
what the gateway stored and handed to the fake carrier. Waits are on conditions with
deadlines: the gateway's progress (``tests.helpers.until``) and Postfix log lines.
"""

from __future__ import annotations

import grp
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailsms.app import Gateway
from mailsms.carriers.fake import FakeCarrier
from mailsms.model import State
from tests.conftest import GatewayFactory
from tests.helpers import settled, until
from tests.peers import postfix as postfix_peer
from tests.peers.postfix import Postfix, PostfixFactory

pytestmark = pytest.mark.peers

# Imported into this module so pytest sees the fixture.
postfix_factory = postfix_peer.postfix_factory

DOMAIN = postfix_peer.SMS_DOMAIN
UK = "+447700900123"
SENDER = "ops@example.test"
MAIL = b"From: ops@example.test\r\nSubject: disk\r\n\r\nDisk /var is 95% full on db1.\r\n"
TEXT = "Disk /var is 95% full on db1."
QUEUED = re.compile(r"250 2\.0\.0 queued as (\S+)")


def fake(gw: Gateway) -> FakeCarrier:
    carrier = gw.carriers["fake"]
    assert isinstance(carrier, FakeCarrier)
    return carrier


async def smtp_pair(
    gateway_factory: GatewayFactory, postfix_factory: PostfixFactory, **main: str
) -> tuple[Gateway, Postfix]:
    """A gateway on SMTP and a Postfix whose transport map points at it."""
    gw = await gateway_factory(smtp={"listen": "127.0.0.1:0"})
    assert gw.listening.smtp is not None
    nexthop = f"smtp:[127.0.0.1]:{gw.listening.smtp[1]}"
    return gw, await postfix_factory({DOMAIN: nexthop}, main=main)


async def sms_count(gw: Gateway, n: int) -> None:
    """Wait until the fake carrier has been handed ``n`` messages."""

    async def reached() -> bool:
        return len(fake(gw).submitted) >= n

    await until(gw, reached)


def queued_id(detail: str) -> str:
    m = QUEUED.search(detail)
    assert m, detail
    return m[1]


async def test_mail_through_postfix_becomes_an_sms(
    gateway_factory: GatewayFactory, postfix_factory: PostfixFactory
) -> None:
    gw, pf = await smtp_pair(gateway_factory, postfix_factory)
    sub = await pf.submit(SENDER, f"{UK}@{DOMAIN}", MAIL)
    assert sub.queue_id and not sub.refused

    [d] = await pf.wait_deliveries(sub.queue_id, 1)
    assert (d.status, d.to) == ("sent", f"{UK}@{DOMAIN}"), d.line
    assert d.relay == f"127.0.0.1[127.0.0.1]:{gw.listening.smtp[1]}"  # type: ignore[index]
    id = queued_id(d.detail)

    await sms_count(gw, 1)
    [sms] = fake(gw).submitted
    assert (sms.to, sms.text, sms.message_id) == (UK, TEXT, id)
    m = await settled(gw, id)
    assert m.state is State.DELIVERED and m.to == UK
    assert await pf.queue() == []


async def test_invalid_local_part_is_refused_at_rcpt_and_bounced(
    gateway_factory: GatewayFactory, postfix_factory: PostfixFactory
) -> None:
    gw, pf = await smtp_pair(gateway_factory, postfix_factory)
    sub = await pf.submit(SENDER, f"hello@{DOMAIN}", MAIL)
    assert sub.queue_id  # Postfix accepts it: relay_domains does not know local parts

    [d] = await pf.wait_deliveries(sub.queue_id, 1)
    assert d.status == "bounced" and "dsn=5.1.1" in d.line, d.line
    assert "said: 550 5.1.1 Recipient is not a valid phone number" in d.detail
    assert "(in reply to RCPT TO command)" in d.detail
    # The non-delivery notice goes to the sender (and ends in this instance's error transport).
    await pf.wait_log(rf"{sub.queue_id}: sender non-delivery notification: [0-9A-F]+")
    assert await gw.store.list_messages() == [] and fake(gw).submitted == []


@pytest.mark.parametrize("stage", ["RCPT TO", "end of DATA"])
async def test_store_down_defers_in_postfix_then_delivers_once(
    gateway_factory: GatewayFactory,
    postfix_factory: PostfixFactory,
    monkeypatch: pytest.MonkeyPatch,
    stage: str,
) -> None:
    """451 4.3.0 while the store is down; Postfix keeps the mail and it arrives once.

    With the store already down, the gateway answers at RCPT (its opt-out check reads the
    store); if the store goes down between RCPT and DATA, it answers at DATA.
    """
    gw, pf = await smtp_pair(gateway_factory, postfix_factory)
    if stage == "RCPT TO":
        await gw.store.close()
    else:
        accept_mail = gw.intake.accept_mail

        async def store_fails_at_data(*args: Any, **kwargs: Any) -> Any:
            monkeypatch.undo()
            await gw.store.close()
            return await accept_mail(*args, **kwargs)

        monkeypatch.setattr(gw.intake, "accept_mail", store_fails_at_data)
    try:
        sub = await pf.submit(SENDER, f"{UK}@{DOMAIN}", MAIL)
        assert sub.queue_id
        [d] = await pf.wait_deliveries(sub.queue_id, 1, final=False)
        assert d.status == "deferred" and "dsn=4.3.0" in d.line, d.line
        assert "said: 451 4.3.0" in d.detail and f"(in reply to {stage} command)" in d.detail
        held = await pf.queue()
        assert [h["queue_id"] for h in held] == [sub.queue_id], held
    finally:
        await gw.store.open()

    await pf.flush()
    [d] = await pf.wait_deliveries(sub.queue_id, 1)
    assert d.status == "sent", d.line
    id = queued_id(d.detail)
    assert (await settled(gw, id)).state is State.DELIVERED
    # Exactly once: one stored message, one SMS, nothing left in Postfix's queue.
    assert [m.id for m in await gw.store.list_messages()] == [id]
    assert [s.message_id for s in fake(gw).submitted] == [id]
    assert await pf.queue() == []
    assert len([x for x in pf.deliveries(sub.queue_id) if x.status == "sent"]) == 1


async def test_foreign_domain_is_refused_by_postfix_itself(
    gateway_factory: GatewayFactory, postfix_factory: PostfixFactory
) -> None:
    # The client comes from 127.0.0.2, outside mynetworks: an Internet sender, as in production.
    gw, pf = await smtp_pair(gateway_factory, postfix_factory, mynetworks="127.0.0.1/32")
    outside = ("127.0.0.2", 0)

    sub = await pf.submit(SENDER, f"{UK}@example.org", MAIL, source_address=outside)
    assert sub.queue_id is None
    code, text = sub.refused[f"{UK}@example.org"]
    assert (code, text[:5]) == (554, "5.7.1") and "Relay access denied" in text
    await pf.wait_log(r"NOQUEUE: reject: RCPT from \S+\[127\.0\.0\.2\]: 554 5\.7\.1 .*Relay access")
    assert await pf.queue() == []
    # The gateway never saw a connection: not even a banner was counted.
    assert b"mailsms_smtp_replies_total{" not in gw.metrics.render()

    # The same outside client may still send to the SMS domain (relay_domains).
    sub = await pf.submit(SENDER, f"{UK}@{DOMAIN}", MAIL, source_address=outside)
    assert sub.queue_id and not sub.refused
    [d] = await pf.wait_deliveries(sub.queue_id, 1)
    assert d.status == "sent", d.line
    await sms_count(gw, 1)


async def test_sms_domain_restricted_to_trusted_clients(
    gateway_factory: GatewayFactory, postfix_factory: PostfixFactory
) -> None:
    """deploy/postfix/'s "who may text" lock-down: the SMS domain only for mynetworks."""
    gw = await gateway_factory(smtp={"listen": "127.0.0.1:0"})
    assert gw.listening.smtp is not None
    pf = await postfix_factory(
        {DOMAIN: f"smtp:[127.0.0.1]:{gw.listening.smtp[1]}"},
        main={
            "mynetworks": "127.0.0.1/32",
            "smtpd_restriction_classes": "mailsms_senders",
            "mailsms_senders": "permit_mynetworks, permit_sasl_authenticated, reject",
            "smtpd_recipient_restrictions": (
                "check_recipient_access texthash:$config_directory/mailsms_access"
            ),
        },
        files={"mailsms_access": f"{DOMAIN} mailsms_senders\n"},
    )
    sub = await pf.submit(SENDER, f"{UK}@{DOMAIN}", MAIL, source_address=("127.0.0.2", 0))
    assert sub.queue_id is None
    code, text = sub.refused[f"{UK}@{DOMAIN}"]
    assert (code, text[:5]) == (
        554,
        "5.7.1",
    ) and "Recipient address rejected: Access denied" in text

    sub = await pf.submit(SENDER, f"{UK}@{DOMAIN}", MAIL)  # from 127.0.0.1, in mynetworks
    assert sub.queue_id and not sub.refused
    [d] = await pf.wait_deliveries(sub.queue_id, 1)
    assert d.status == "sent", d.line
    await sms_count(gw, 1)


async def check_lmtp_per_recipient(gw: Gateway, pf: Postfix) -> None:
    good, bad = f"{UK}@{DOMAIN}", f"hello@{DOMAIN}"
    sub = await pf.submit(SENDER, [good, bad], MAIL)
    assert sub.queue_id and not sub.refused

    outcomes = {d.to: d for d in await pf.wait_deliveries(sub.queue_id, 2)}
    assert outcomes[good].status == "sent", outcomes[good].line
    assert outcomes[bad].status == "bounced", outcomes[bad].line
    assert "said: 550 5.1.1" in outcomes[bad].detail
    assert "(in reply to RCPT TO command)" in outcomes[bad].detail
    id = queued_id(outcomes[good].detail)
    assert (await settled(gw, id)).to == UK
    assert [s.message_id for s in fake(gw).submitted] == [id]


async def test_lmtp_over_tcp_answers_per_recipient(
    gateway_factory: GatewayFactory, postfix_factory: PostfixFactory
) -> None:
    gw = await gateway_factory(smtp={"listen": None, "lmtp_listen": "127.0.0.1:0"})
    assert isinstance(gw.listening.lmtp, tuple)
    pf = await postfix_factory({DOMAIN: f"lmtp:inet:127.0.0.1:{gw.listening.lmtp[1]}"})
    await check_lmtp_per_recipient(gw, pf)
    assert pf.deliveries()[0].relay == f"127.0.0.1[127.0.0.1]:{gw.listening.lmtp[1]}"


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """Stands in for /run/mailsms as deploy/postfix/README.md has it: ``2750``, group
    ``postfix`` (a socket created inside takes that group)."""
    top = postfix_peer.shared_temp_dir("mailsms-run-")
    run = top / "mailsms"
    run.mkdir()
    shutil.chown(run, group="postfix")
    run.chmod(0o2750)
    yield run
    shutil.rmtree(top, ignore_errors=True)


async def test_lmtp_over_a_unix_socket(
    gateway_factory: GatewayFactory, postfix_factory: PostfixFactory, run_dir: Path
) -> None:
    """The deploy/postfix/ variant: ``lmtp:unix:/run/mailsms/lmtp.sock``, no chroot.

    Postfix's lmtp client runs as ``postfix`` and needs write permission on the socket. The
    gateway has no socket-mode setting: the socket gets the process umask, and the README
    has the operator run mailsms with ``UMask=0007``; the chmod below stands in for that.
    """
    sock = f"{run_dir}/lmtp.sock"
    gw = await gateway_factory(smtp={"listen": None, "lmtp_listen": f"unix:{sock}"})
    assert os.stat(sock).st_gid == grp.getgrnam("postfix").gr_gid
    os.chmod(sock, 0o770)
    pf = await postfix_factory({DOMAIN: f"lmtp:unix:{sock}"})
    await check_lmtp_per_recipient(gw, pf)
    assert pf.deliveries()[0].relay.endswith(f"[{sock}]")
