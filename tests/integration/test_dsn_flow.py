"""RFC 3461/3464 end to end: NOTIFY/RET/ENVID/ORCPT at SMTP, the outcome at the carrier,
the DSN relayed from the null sender to the envelope sender, checked by an independent
parser (flufl.bounce) and Python's email parser."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import aiosmtplib
from flufl.bounce import all_failures
from twilio.request_validator import RequestValidator

from mailsms.app import Gateway
from tests.conftest import GatewayFactory
from tests.helpers import settled
from tests.sink import Received, Sink
from tests.twilio_api import FakeTwilio

DOMAIN = "sms.example.test"
PHONE = "+447700900123"
MAIL = (
    b"From: Alice <alice@example.test>\r\nSubject: Backups\r\nMessage-ID: <b1@example.test>\r\n"
    b"\r\nNightly backup failed on db1.\r\n"
)


async def send(gw: Gateway, rcpt_options: list[str], mail_options: list[str] = ()) -> str:  # type: ignore[assignment]
    assert gw.listening.smtp is not None
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.listening.smtp[1]) as client:
        assert client.supports_extension("dsn")
        await client.mail("alice@example.test", options=list(mail_options))
        await client.rcpt(f"{PHONE}@{DOMAIN}", options=rcpt_options)
        code, text = await client.data(MAIL)
    assert code == 250, text
    return text.split()[-1]


async def make(gateway_factory: GatewayFactory, sink: Sink, **fake: Any) -> Gateway:
    gw = await gateway_factory(
        relay=sink.relay_settings(), carrier=[{"name": "fake", "type": "fake", **fake}]
    )
    gw.notifier.interval = 0.1  # delay notices and DLR timeouts are polled
    return gw


def report_fields(got: Received) -> tuple[str, dict[str, str]]:
    msg = got.message
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = list(msg.iter_parts())
    status = parts[1]
    assert status.get_content_type() == "message/delivery-status"
    blocks = [dict(b.items()) for b in status.get_payload()]  # type: ignore[union-attr]
    fields = {k.lower(): str(v) for block in blocks for k, v in block.items()}
    return parts[0].get_content(), fields


async def test_failure_dsn_reaches_the_sender_and_a_bounce_parser_finds_the_number(
    gateway_factory: GatewayFactory, sink: Sink
) -> None:
    gw = await make(gateway_factory, sink, permanent_failures=1)
    id = await send(
        gw,
        ["NOTIFY=FAILURE", "ORCPT=rfc822;+2B447700900123@sms.example.test"],
        ["RET=HDRS", "ENVID=QQ314159"],
    )
    await settled(gw, id)
    [got] = await sink.wait_for(1)
    assert got.mail_from == "<>" and got.rcpt_tos == ["alice@example.test"]  # the null sender
    human, fields = report_fields(got)
    assert "+44 7700 900123" in human
    assert fields["action"] == "failed" and fields["status"].startswith("5.")
    assert fields["original-envelope-id"] == "QQ314159"
    assert "+447700900123@sms.example.test" in fields["original-recipient"]
    failures = {(f.decode() if isinstance(f, bytes) else str(f)) for f in all_failures(got.message)}
    assert any(PHONE in f for f in failures)
    assert got.message["Auto-Submitted"] == "auto-replied"
    m = await gw.store.get(id)
    assert m is not None and any(e.state == "dsn failed" for e in m.events)


async def test_success_dsn_only_when_asked(gateway_factory: GatewayFactory, sink: Sink) -> None:
    gw = await make(gateway_factory, sink)
    plain = await send(gw, [])
    await settled(gw, plain)
    asked = await send(gw, ["NOTIFY=SUCCESS,FAILURE"])
    await settled(gw, asked)
    [got] = await sink.wait_for(1)
    _, fields = report_fields(got)
    assert fields["action"] == "delivered" and fields["status"] == "2.0.0"
    assert asked in got.data.decode()


async def test_notify_never_means_no_dsn(gateway_factory: GatewayFactory, sink: Sink) -> None:
    gw = await make(gateway_factory, sink, permanent_failures=1)
    id = await send(gw, ["NOTIFY=NEVER"])
    await settled(gw, id)
    await gw.notifier.tick()
    assert sink.received == [] and await gw.store.mail_for(id) == []


async def test_delay_notice_then_expiry_without_a_report(
    gateway_factory: GatewayFactory, sink: Sink
) -> None:
    gw = await gateway_factory(
        relay=sink.relay_settings(),
        carrier=[{"name": "fake", "type": "fake", "report": "none"}],
        dsn={"delay_after": "200ms"},
        dlr={"timeout": "600ms"},
    )
    gw.notifier.interval = 0.05
    id = await send(gw, ["NOTIFY=DELAY,FAILURE"], ["RET=FULL"])
    received = await sink.wait_for(2, timeout=20)
    actions = [report_fields(r)[1]["action"] for r in received]
    assert actions == ["delayed", "failed"]
    _, fields = report_fields(received[1])
    assert fields["status"] == "4.4.7"
    m = await gw.store.get(id)
    assert m is not None and m.state.value == "expired"


async def test_bad_dsn_parameters_get_501(gateway_factory: GatewayFactory, sink: Sink) -> None:
    gw = await make(gateway_factory, sink)
    assert gw.listening.smtp is not None
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.listening.smtp[1]) as client:
        code, text = await client.execute_command(b"MAIL FROM:<alice@example.test> RET=MAYBE")
        assert code == 501 and text.startswith("5.5.4")
        await client.mail("alice@example.test")
        code, text = await client.execute_command(
            f"RCPT TO:<{PHONE}@{DOMAIN}> NOTIFY=NEVER,SUCCESS".encode()
        )
        assert code == 501


def twilio_carrier(api: FakeTwilio, **extra: str) -> dict[str, str]:
    """The ``[[carrier]]`` entry of a Twilio carrier pointed at the local fake."""
    return {
        "name": "tw",
        "type": "twilio",
        "account_sid": "AC123",
        "auth_token": "tw-secret",
        "api_url": api.url,
        **extra,
    }


async def test_twilio_submit_then_an_opt_out_callback_fails_it_and_blocks_the_number(
    gateway_factory: GatewayFactory, sink: Sink
) -> None:
    """Twilio's 21610 in a status callback: the phone replied STOP at the carrier."""
    api = await FakeTwilio("AC123", "tw-secret").start()
    try:
        gw = await gateway_factory(
            relay=sink.relay_settings(),
            carrier=[
                twilio_carrier(
                    api, **{"from": "+447700900999"}, public_url="https://gw.example.com"
                )
            ],
        )
        id = await send(gw, [])
        async with asyncio.timeout(10):
            while (m := await gw.store.get(id)) is None or m.state.value != "submitted":
                await gw.dispatcher.progress()
        [request] = api.requests
        assert request["To"] == PHONE and request["From"] == "+447700900999"
        assert request["StatusCallback"] == "https://gw.example.com/webhooks/tw/status"
        sid = m.parts[0].carrier_id
        assert sid is not None and sid.startswith("SM")
        form = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "21610"}
        signature = RequestValidator("tw-secret").compute_signature(
            "https://gw.example.com/webhooks/tw/status", form
        )
        assert gw.listening.http is not None
        host, port = gw.listening.http
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://{host}:{port}/webhooks/tw/status",
                data=form,
                headers={"X-Twilio-Signature": signature},
            ) as r,
        ):
            assert r.status == 200
        m = await gw.store.get(id)
        assert m is not None and m.state.value == "failed" and "21610" in (m.last_error or "")
        assert await gw.store.opted_out(PHONE)
        [dsn] = await sink.wait_for(1)
        _, fields = report_fields(dsn)
        assert fields["status"] == "5.7.1" and "21610" in fields["diagnostic-code"]
    finally:
        await api.stop()


async def test_twilio_api_errors_map_to_temporary_and_permanent(
    gateway_factory: GatewayFactory, sink: Sink
) -> None:
    api = await FakeTwilio("AC123", "tw-secret").start()
    try:
        api.script(429, {"code": 20429, "message": "Too Many Requests", "status": 429})
        api.script(400, {"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400})
        gw = await gateway_factory(
            relay=sink.relay_settings(),
            carrier=[twilio_carrier(api)],
        )
        m = await settled(gw, await send(gw, []))
        assert m.state.value == "failed" and m.attempts == 2 and "21211" in (m.last_error or "")
    finally:
        await api.stop()


async def test_twilio_refusing_an_opted_out_number_at_submit_blocks_it(
    gateway_factory: GatewayFactory, sink: Sink
) -> None:
    """Twilio refuses a number that replied STOP with 21610 at submit: the number goes on
    our opt-out list too, so the next mail to it is refused at RCPT."""
    api = await FakeTwilio("AC123", "tw-secret").start()
    try:
        api.script(
            400,
            {"code": 21610, "message": "Attempt to send to unsubscribed recipient", "status": 400},
        )
        gw = await gateway_factory(
            relay=sink.relay_settings(),
            carrier=[twilio_carrier(api)],
        )
        m = await settled(gw, await send(gw, []))
        assert m.state.value == "failed" and "21610" in (m.last_error or "")
        assert await gw.store.opted_out(PHONE)
        [row] = await gw.store.list_opt_outs()
        assert row["source"] == "carrier tw error 21610"
    finally:
        await api.stop()
