"""Every row of DESIGN.md's SMTP reply table, against the running server, with real clients.

smtplib (blocking, run in a thread) and aiosmtplib both talk to the in-process gateway on an
ephemeral port; replies are checked code and enhanced status both.
"""

from __future__ import annotations

import asyncio
import grp
import os
import smtplib
import socket
import stat
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import phonenumbers
import pytest
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from mailsms.app import Gateway
from mailsms.model import State
from tests.conftest import GatewayFactory
from tests.helpers import settled

UK = "+447700900123"
UK2 = "+447700900456"
DOMAIN = "sms.example.test"
MAIL = b"From: ops@example.test\r\nSubject: disk\r\n\r\nDisk /var is 95% full on db1.\r\n"


def example(region: str, kind: int) -> str:
    number = phonenumbers.example_number_for_type(region, kind)
    assert number is not None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def smtp_port(gw: Gateway) -> int:
    assert gw.listening.smtp is not None
    return gw.listening.smtp[1]


async def rcpt_reply(gw: Gateway, rcpt: str, sender: str = "ops@example.test") -> tuple[int, str]:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_port(gw)) as client:
        await client.mail(sender)
        code, text = await client.execute_command(f"RCPT TO:<{rcpt}>".encode())
        return code, text


async def send(
    gw: Gateway, rcpts: list[str], data: bytes = MAIL, sender: str = "ops@example.test"
) -> tuple[int, str]:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_port(gw)) as client:
        await client.mail(sender)
        for r in rcpts:
            await client.rcpt(r)
        code, text = await client.data(data)
        return code, text


@pytest.mark.parametrize(
    ("rcpt", "code", "status"),
    [
        (f"{UK}@{DOMAIN}", 250, "2.1.5"),
        (f"hello@{DOMAIN}", 550, "5.1.1"),
        (f"12@{DOMAIN}", 550, "5.1.1"),
        (f"{UK}@example.org", 550, "5.7.1"),
        (f"{UK}@{DOMAIN.upper()}", 250, "2.1.5"),
        (f'"+44 7700 900123"@{DOMAIN}', 250, "2.1.5"),
        (f"07700-900-123@{DOMAIN}", 550, "5.1.1"),  # national GB, but the region is US
        (f"+1 (555) 123.4567@{DOMAIN}".replace(" ", ""), 250, "2.1.5"),
    ],
)
async def test_rcpt_replies(gateway: Gateway, rcpt: str, code: int, status: str) -> None:
    got_code, text = await rcpt_reply(gateway, rcpt)
    assert (got_code, text[:5]) == (code, status), text


async def test_national_numbers_use_the_default_region(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(gateway={"domain": DOMAIN, "default_region": "GB"})
    code, text = await send(gw, [f"07700 900123@{DOMAIN}".replace(" ", "")])
    assert code == 250, text
    id = text.split()[-1]
    m = await gw.store.get(id)
    assert m is not None and m.to == UK


async def test_several_domains_are_served(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(gateway={"domain": DOMAIN, "domains": ["sms2.example.test"]})
    assert (await rcpt_reply(gw, f"{UK}@SMS2.example.test"))[0] == 250


@pytest.mark.parametrize(
    ("policy", "number", "reason"),
    [
        ({}, example("GB", PhoneNumberType.PREMIUM_RATE), "Premium-rate"),
        ({"allowed_regions": ["US"]}, UK, "country"),
        ({}, "12345", "Short code"),
    ],
)
async def test_destination_policy_refuses_at_rcpt(
    gateway_factory: GatewayFactory, policy: dict[str, object], number: str, reason: str
) -> None:
    gw = await gateway_factory(policy=policy)
    code, text = await rcpt_reply(gw, f"{number}@{DOMAIN}")
    assert code == 550 and text.startswith("5.7.1") and reason in text


async def test_opted_out_recipient_is_refused(gateway: Gateway) -> None:
    await gateway.store.set_opt_out(UK, True, "test", 0.0)
    code, text = await rcpt_reply(gateway, f"{UK}@{DOMAIN}")
    assert code == 550 and text.startswith("5.7.1") and "opted out" in text


async def test_unauthorised_sender_refused_at_mail(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(policy={"allowed_senders": ["*@example.test"]})
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_port(gw)) as client:
        code, text = await client.execute_command(b"MAIL FROM:<mallory@evil.test>")
        assert code == 550 and text.startswith("5.7.1")
        code, _ = await client.execute_command(b"MAIL FROM:<Ops@EXAMPLE.test>")
        assert code == 250


async def test_fresh_install_trusts_loopback_only(gateway_factory: GatewayFactory) -> None:
    """The default policy: no allowed_senders -> loopback clients only. We are on loopback,
    so prove the other half by configuring networks that exclude us."""
    gw = await gateway_factory(policy={"allowed_networks": ["10.0.0.0/8"]})
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_port(gw)) as client:
        code, text = await client.execute_command(b"MAIL FROM:<ops@example.test>")
    assert (code, text[:5]) == (550, "5.7.1")


async def test_too_many_recipients(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(smtp={"max_recipients": 2})
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_port(gw)) as client:
        await client.mail("ops@example.test")
        codes = [
            (await client.execute_command(f"RCPT TO:<{n}@{DOMAIN}>".encode()))
            for n in ("+447700900123", "+447700900124", "+447700900125")
        ]
    assert [c for c, _ in codes] == [250, 250, 452]
    assert codes[2][1].startswith("4.5.3")


async def test_sender_rate_limit_is_temporary(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(policy={"sender_rate_limit": 2})
    assert (await send(gw, [f"{UK}@{DOMAIN}", f"{UK2}@{DOMAIN}"]))[0] == 250
    code, text = await rcpt_reply(gw, f"{UK}@{DOMAIN}")
    assert (code, text[:5]) == (450, "4.7.1")


async def test_size_is_advertised_and_enforced(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(smtp={"max_message_size": 2048})
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_port(gw)) as client:
        assert client.supports_extension("size") and client.esmtp_extensions["size"] == "2048"
        code, text = await client.execute_command(b"MAIL FROM:<ops@example.test> SIZE=4096")
        assert (code, text[:5]) == (552, "5.3.4")
        await client.execute_command(b"RSET")
        await client.mail("ops@example.test")
        await client.rcpt(f"{UK}@{DOMAIN}")
        with pytest.raises(aiosmtplib.SMTPDataError) as err:
            await client.data(MAIL + (b"x" * 70 + b"\r\n") * 60)
    assert err.value.code == 552 and err.value.message.startswith("5.3.4")
    assert await gw.store.queue_depth() == {}


async def test_no_text_part(gateway: Gateway) -> None:
    mail = (
        b"From: ops@example.test\r\nMIME-Version: 1.0\r\nContent-Type: image/png\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"
    )
    with pytest.raises(aiosmtplib.SMTPDataError) as err:
        await send(gateway, [f"{UK}@{DOMAIN}"], mail)
    assert err.value.code == 550 and err.value.message.startswith("5.6.0")


async def test_too_many_segments_is_refused_with_the_count(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(policy={"max_segments": 2})
    body = ("word " * 10 + "\r\n").encode() * 20
    with pytest.raises(aiosmtplib.SMTPDataError) as err:
        await send(gw, [f"{UK}@{DOMAIN}"], b"Subject: long\r\n\r\n" + body + b"\r\n")
    assert err.value.code == 554 and err.value.message.startswith("5.3.4")
    assert "7 SMS segments" in err.value.message and "at most 2" in err.value.message


async def test_store_unavailable_is_a_temporary_failure(gateway: Gateway) -> None:
    await gateway.store.close()
    try:
        with pytest.raises(aiosmtplib.SMTPResponseException) as err:
            await send(gateway, [f"{UK}@{DOMAIN}"])
        assert err.value.code == 451 and err.value.message.startswith("4.3.0")
    finally:
        await gateway.store.open()


async def test_accepted_mail_is_queued_then_sent(gateway: Gateway) -> None:
    code, text = await send(gateway, [f"{UK}@{DOMAIN}"])
    assert code == 250 and text.startswith("2.0.0 queued as ")
    m = await settled(gateway, text.split()[-1])
    assert m.state is State.DELIVERED and m.text == "Disk /var is 95% full on db1."
    fake = gateway.carriers["fake"]
    assert [s.to for s in fake.submitted] == [UK]  # type: ignore[attr-defined]


async def test_one_job_per_recipient(gateway: Gateway) -> None:
    code, text = await send(gateway, [f"{UK}@{DOMAIN}", f"{UK2}@{DOMAIN}"])
    assert code == 250 and "(+1 more)" in text
    listed = await gateway.store.list_messages()
    assert sorted(m.to for m in listed) == [UK, UK2]


async def test_bounces_and_auto_replies_are_not_texted(gateway: Gateway) -> None:
    for sender, extra in (("", b""), ("ops@example.test", b"Auto-Submitted: auto-replied\r\n")):
        with pytest.raises(aiosmtplib.SMTPDataError) as err:
            await send(gateway, [f"{UK}@{DOMAIN}"], extra + MAIL, sender=sender)
        assert err.value.code == 550
    assert await gateway.store.queue_depth() == {}


async def test_smtplib_client(gateway: Gateway) -> None:
    def deliver() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", smtp_port(gateway), timeout=10) as client:
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = "ops@example.test", f"{UK}@{DOMAIN}", "hi"
            msg.set_content("Backup finished: 42 GB in 13 min.")
            return client.send_message(msg, to_addrs=[f"{UK}@{DOMAIN}", f"nope@{DOMAIN}"])

    refused = await asyncio.to_thread(deliver)
    assert refused == {f"nope@{DOMAIN}": (550, b"5.1.1 Recipient is not a valid phone number")}
    [m] = await gateway.store.list_messages()
    assert m.text == "Backup finished: 42 GB in 13 min."


def lmtp_session(sock: socket.socket, rcpts: list[str]) -> list[bytes]:
    """A plain LMTP conversation (no client library speaks LMTP); every reply line."""
    f = sock.makefile("rwb")
    lines: list[bytes] = [f.readline()]

    def cmd(line: bytes, replies: int = 1) -> None:
        f.write(line + b"\r\n")
        f.flush()
        for _ in range(replies):
            while True:
                reply = f.readline()
                lines.append(reply)
                if reply[3:4] != b"-":
                    break

    cmd(b"LHLO client.test")
    cmd(b"MAIL FROM:<ops@example.test>")
    for rcpt in rcpts:
        cmd(f"RCPT TO:<{rcpt}>".encode())
    cmd(b"DATA")
    accepted = sum(1 for ln in lines if ln.startswith(b"250 2.1.5"))
    cmd(MAIL + b".", replies=accepted)
    cmd(b"QUIT")
    sock.close()
    return lines


async def test_lmtp_answers_per_recipient(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(smtp={"listen": None, "lmtp_listen": "127.0.0.1:0"})
    host, port = gw.listening.lmtp  # type: ignore[misc]
    rcpts = [f"{UK}@{DOMAIN}", f"bad@{DOMAIN}", f"{UK2}@{DOMAIN}"]
    lines = await asyncio.to_thread(
        lmtp_session, socket.create_connection((host, port), timeout=10), rcpts
    )
    assert [ln[:9] for ln in lines[-4:-1]] == [b"354 End d", b"250 2.0.0", b"250 2.0.0"]
    ids = [ln.split()[-1] for ln in lines[-3:-1]]
    assert ids[0] != ids[1]  # each recipient's reply names its own message
    assert any(ln.startswith(b"550 5.1.1") for ln in lines)
    assert len(await gw.store.list_messages()) == 2


async def test_lmtp_over_a_unix_socket(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    path = f"{tmp_path}/lmtp.sock"
    gw = await gateway_factory(
        smtp={
            "listen": None,
            "lmtp_listen": f"unix:{path}",
            "lmtp_socket_mode": "0660",
            "lmtp_socket_group": grp.getgrgid(os.getgid()).gr_name,
        }
    )
    assert gw.listening.lmtp == path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(path)
    # A Unix socket client is a local process: trusted by the default policy.
    lines = await asyncio.to_thread(lmtp_session, sock, [f"{UK}@{DOMAIN}"])
    assert lines[-2].startswith(b"250 2.0.0 queued as ")


async def test_metrics_count_smtp_replies(gateway: Gateway) -> None:
    await rcpt_reply(gateway, f"bad@{DOMAIN}")
    text = gateway.metrics.render().decode()
    assert 'mailsms_smtp_replies_total{code="550"} 1.0' in text


async def test_authserv_id_refuses_a_sender_allowed_by_name_only_if_unauthenticated(
    gateway_factory: GatewayFactory,
) -> None:
    # allowed_senders matches the envelope sender, which anyone can write; with authserv_id
    # the MTA in front must have authenticated it (its Authentication-Results header).
    gw = await gateway_factory(
        policy={"allowed_senders": ["*@example.test"], "authserv_id": "mx.example.test"}
    )
    rcpt = [f"{UK}@{DOMAIN}"]

    async def data(mail: bytes) -> tuple[int, str]:
        try:
            return await send(gw, rcpt, mail)
        except aiosmtplib.SMTPDataError as exc:
            return exc.code, exc.message

    passed = b"Authentication-Results: mx.example.test; spf=pass smtp.mailfrom=ops@example.test\r\n"
    forged = b"Authentication-Results: elsewhere.test; dmarc=pass header.from=example.test\r\n"
    code, _ = await data(passed + MAIL)
    assert code == 250
    code, text = await data(forged + MAIL)
    assert (code, text.split()[0]) == (550, "5.7.1")
    assert "no Authentication-Results header from mx.example.test" in text
    code, _ = await data(MAIL)
    assert code == 550
    assert len(await gw.store.list_messages()) == 1


async def test_authserv_id_leaves_trusted_networks_alone(gateway_factory: GatewayFactory) -> None:
    # The MTA itself (or a local script) on allowed_networks is trusted whatever the sender.
    gw = await gateway_factory(
        policy={
            "allowed_senders": ["*@example.test"],
            "allowed_networks": ["127.0.0.1/32"],
            "authserv_id": "mx.example.test",
        }
    )
    code, _ = await send(gw, [f"{UK}@{DOMAIN}"], MAIL)
    assert code == 250
