"""The vonage carrier through the whole gateway: submit, retries, receipts, inbound, signing.

The gateway runs in-process on 127.0.0.1:0 against a local fake of Vonage's SMS API
(tests/vonage_api.py), which segments like Vonage and checks signed submits with the vendor
SDK. Webhook calls are signed here with the SDK's ``Auth.sign_params``, so our check is held
against the vendor's algorithm, as the Twilio tests do with twilio's RequestValidator.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import aiosmtplib
import pytest
from vonage_http_client.auth import Auth

from mailsms.app import Gateway
from mailsms.model import Message, State
from tests.conftest import GatewayFactory
from tests.helpers import in_state, settled
from tests.sink import Sink
from tests.vonage_api import FakeVonage

DOMAIN = "sms.example.test"
PHONE = "+447700900123"
OURS = "+447700900999"
PUBLIC = "https://gw.example.com"
SIG_SECRET = "vonage-signature-secret"


@pytest.fixture
async def api() -> AsyncIterator[FakeVonage]:
    fake = await FakeVonage("key1", api_secret="secret1").start()
    yield fake
    await fake.stop()


def carrier(api: FakeVonage, **extra: Any) -> dict[str, Any]:
    return {
        "name": "vg",
        "type": "vonage",
        "api_key": "key1",
        "api_secret": "secret1",
        "api_url": api.url,
        "from": OURS,
        "public_url": PUBLIC,
        **extra,
    }


def url(gw: Gateway, path: str) -> str:
    assert gw.listening.http is not None
    host, port = gw.listening.http
    return f"http://{host}:{port}{path}"


async def call(gw: Gateway, method: str, path: str, **kw: Any) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.request(method, url(gw, path), **kw) as r:
        return r.status, await r.text()


async def api_send(gw: Gateway, text: str) -> str:
    status, body = await call(
        gw,
        "POST",
        "/v1/messages",
        headers={"Authorization": "Bearer test-token"},
        json={"to": PHONE, "text": text},
    )
    assert status == 202, body
    [id] = json.loads(body)["ids"]
    return str(id)


async def submitted(gw: Gateway, id: str) -> Message:
    return await in_state(gw, id, State.SUBMITTED)


def receipt(message_id: str, status: str = "delivered", err: str = "0") -> dict[str, str]:
    return {
        "msisdn": PHONE.lstrip("+"),
        "to": OURS.lstrip("+"),
        "network-code": "23410",
        "messageId": message_id,
        "price": "0.03330000",
        "status": status,
        "scts": "2601011200",
        "err-code": err,
        "api-key": "key1",
        "message-timestamp": "2026-01-01 12:00:00",
    }


def signed(
    params: dict[str, str], method: str = "sha256", at: float | None = None
) -> dict[str, str]:
    """``params`` with ``timestamp`` and ``sig`` from the vendor SDK."""
    out = {**params, "timestamp": str(int(time.time() if at is None else at)), "nonce": "n-1"}
    auth = Auth(api_key="key1", signature_secret=SIG_SECRET, signature_method=method)  # type: ignore[arg-type]
    out["sig"] = auth.sign_params(dict(out))
    return out


# --- submit -----------------------------------------------------------------------------------


async def test_gsm_text_is_submitted_then_a_get_receipt_delivers_it(
    gateway_factory: GatewayFactory, api: FakeVonage
) -> None:
    gw = await gateway_factory(carrier=[carrier(api)])
    id = await api_send(gw, "Backup of db1 failed at 02:00 [code 7]")
    m = await submitted(gw, id)
    [request] = api.requests
    assert request == {
        "api_key": "key1",
        "api_secret": "secret1",
        "from": OURS.lstrip("+"),
        "to": PHONE.lstrip("+"),
        "text": "Backup of db1 failed at 02:00 [code 7]",
        "type": "text",
        "client-ref": id,
        "status-report-req": "1",
        "callback": f"{PUBLIC}/webhooks/vg/status",
    }
    [part] = m.parts
    assert part.carrier_id is not None
    status, body = await call(gw, "GET", "/webhooks/vg/status", params=receipt(part.carrier_id))
    assert (status, body) == (200, "")
    done = await gw.store.get(id)
    assert done is not None and done.state is State.DELIVERED


async def test_unicode_multipart_keeps_one_id_per_part_and_needs_every_receipt(
    gateway_factory: GatewayFactory, api: FakeVonage
) -> None:
    gw = await gateway_factory(carrier=[carrier(api)])
    text = "Сервер db1 недоступен с 02:00, резервная копия не создана. " * 3  # 177 UCS-2 units
    id = await api_send(gw, text)
    m = await submitted(gw, id)
    assert api.requests[0]["type"] == "unicode"
    ids = [p.carrier_id for p in m.parts]
    assert len(ids) == 3 and len(set(ids)) == 3 and None not in ids
    # Receipts by form POST and by JSON POST, in any order; delivered only with the last.
    for n, carrier_id in enumerate(reversed(ids)):
        assert carrier_id is not None
        kw: dict[str, Any] = (
            {"data": receipt(carrier_id)} if n % 2 else {"json": receipt(carrier_id)}
        )
        status, _ = await call(gw, "POST", "/webhooks/vg/status", **kw)
        assert status == 200
        now = await gw.store.get(id)
        assert now is not None
        assert now.state is (State.DELIVERED if n == 2 else State.SUBMITTED)


async def test_a_failed_part_fails_the_message_and_bounces(
    gateway_factory: GatewayFactory, api: FakeVonage, sink: Sink
) -> None:
    gw = await gateway_factory(relay=sink.relay_settings(), carrier=[carrier(api)])
    id = await smtp_send(gw, "x" * 200)  # two GSM parts
    m = await submitted(gw, id)
    first = m.parts[0].carrier_id
    assert first is not None and len(m.parts) == 2
    status, _ = await call(gw, "POST", "/webhooks/vg/status", data=receipt(first, "failed", "3"))
    assert status == 200
    m = await settled(gw, id)
    assert m.state is State.FAILED and "(code 3)" in (m.last_error or "")
    [dsn] = await sink.wait_for(1)
    assert dsn.mail_from in ("", "<>") and dsn.rcpt_tos == ["alice@example.test"]
    assert b"Status: 5." in dsn.data


async def test_an_opt_out_receipt_blocks_the_number(
    gateway_factory: GatewayFactory, api: FakeVonage
) -> None:
    gw = await gateway_factory(carrier=[carrier(api)])
    id = await api_send(gw, "hello")
    m = await submitted(gw, id)
    assert m.parts[0].carrier_id is not None
    params = receipt(m.parts[0].carrier_id, "rejected", "9")
    assert (await call(gw, "GET", "/webhooks/vg/status", params=params))[0] == 200
    assert (await settled(gw, id)).state is State.FAILED
    assert await gw.store.opted_out(PHONE)


async def test_when_vonage_cuts_differently_every_part_follows_the_first_id(
    gateway_factory: GatewayFactory, api: FakeVonage
) -> None:
    gw = await gateway_factory(carrier=[carrier(api)])
    api.script(parts=3)  # we cut two parts, Vonage (say) three
    id = await api_send(gw, "y" * 200)
    m = await submitted(gw, id)
    ids = {p.carrier_id for p in m.parts}
    assert len(m.parts) == 2 and len(ids) == 1 and None not in ids
    [whole] = ids
    assert whole is not None
    assert (await call(gw, "GET", "/webhooks/vg/status", params=receipt(whole)))[0] == 200
    done = await gw.store.get(id)
    assert done is not None and done.state is State.DELIVERED


async def test_temporary_errors_are_retried(
    gateway_factory: GatewayFactory, api: FakeVonage
) -> None:
    gw = await gateway_factory(carrier=[carrier(api, timeout="300ms")])
    api.script(hang=True)  # no answer: client timeout
    api.script(http_status=503)
    api.script(http_status=200, body="<html>maintenance</html>")
    api.script("1")  # throttled
    id = await api_send(gw, "retry me")
    m = await submitted(gw, id)
    assert m.attempts == 5 and len(api.requests) == 5
    assert {r["client-ref"] for r in api.requests} == {id}  # the same reference each time


async def test_a_permanent_status_fails_at_once_and_bounces(
    gateway_factory: GatewayFactory, api: FakeVonage, sink: Sink
) -> None:
    gw = await gateway_factory(relay=sink.relay_settings(), carrier=[carrier(api)])
    api.script("6")
    m = await settled(gw, await smtp_send(gw, "no route"))
    assert m.state is State.FAILED and m.attempts == 1
    assert "Invalid Message" in (m.last_error or "") and "status 6" in (m.last_error or "")
    [dsn] = await sink.wait_for(1)
    assert b"Status: 5." in dsn.data


async def test_wrong_credentials_are_retried_not_bounced(
    gateway_factory: GatewayFactory, api: FakeVonage
) -> None:
    gw = await gateway_factory(carrier=[carrier(api, api_secret="wrong")])
    id = await api_send(gw, "x")
    m = await in_state(gw, id, State.QUEUED)
    assert "Invalid Credentials" in (m.last_error or "")


async def smtp_send(gw: Gateway, text: str) -> str:
    assert gw.listening.smtp is not None
    data = (
        "From: Alice <alice@example.test>\r\nSubject: s\r\nMessage-ID: <v1@example.test>\r\n"
        f"\r\n{text}\r\n"
    ).encode()
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.listening.smtp[1]) as client:
        await client.mail("alice@example.test")
        await client.rcpt(f"{PHONE}@{DOMAIN}", options=["NOTIFY=FAILURE"])
        code, reply = await client.data(data)
    assert code == 250, reply
    return reply.split()[-1]


# --- signed requests and webhooks ---------------------------------------------------------


async def signed_gateway(gateway_factory: GatewayFactory) -> tuple[Gateway, FakeVonage]:
    fake = await FakeVonage("key1", signature_secret=SIG_SECRET, signature_method="sha256").start()
    settings = carrier(fake, signature_secret=SIG_SECRET, signature_method="sha256")
    del settings["api_secret"]
    return await gateway_factory(carrier=[settings]), fake


async def test_signed_submit_and_signed_receipt(gateway_factory: GatewayFactory) -> None:
    gw, fake = await signed_gateway(gateway_factory)
    try:
        id = await api_send(gw, "signed & sealed = yes")
        m = await submitted(gw, id)  # the fake verified the sig with the SDK
        [request] = fake.requests
        assert "api_secret" not in request and request["sig"] and request["timestamp"]
        cid = m.parts[0].carrier_id
        assert cid is not None
        params = signed(receipt(cid))
        params["sig"] = params["sig"].upper()  # Vonage may send HMACs in capitals
        assert (await call(gw, "GET", "/webhooks/vg/status", params=params))[0] == 200
        done = await gw.store.get(id)
        assert done is not None and done.state is State.DELIVERED
    finally:
        await fake.stop()


async def test_forged_unsigned_or_stale_receipts_are_refused_and_change_nothing(
    gateway_factory: GatewayFactory,
) -> None:
    gw, fake = await signed_gateway(gateway_factory)
    try:
        id = await api_send(gw, "hello")
        m = await submitted(gw, id)
        cid = m.parts[0].carrier_id
        assert cid is not None
        forged = {**signed(receipt(cid)), "status": "failed", "err-code": "3"}
        unsigned = receipt(cid, "failed", "3")
        stale = signed(receipt(cid, "failed", "3"), at=time.time() - 600)
        other_method = signed(receipt(cid, "failed", "3"), method="sha512")
        for params in (forged, unsigned, stale, other_method):
            assert (await call(gw, "POST", "/webhooks/vg/status", data=params))[0] == 403
            assert (await call(gw, "GET", "/webhooks/vg/status", params=params))[0] == 403
        inbound = {"msisdn": PHONE[1:], "to": OURS[1:], "messageId": "m1", "text": "x"}
        assert (await call(gw, "POST", "/webhooks/vg/inbound", data=inbound))[0] == 403
        now = await gw.store.get(id)
        assert now is not None and now.state is State.SUBMITTED
        assert await gw.store.list_inbound() == []
    finally:
        await fake.stop()


async def test_signed_inbound_over_json(gateway_factory: GatewayFactory) -> None:
    gw, fake = await signed_gateway(gateway_factory)
    try:
        params = signed(inbound_sms("v-in-1", "Signed reply"))
        assert (await call(gw, "POST", "/webhooks/vg/inbound", json=params))[0] == 200
        [row] = await gw.store.list_inbound()
        assert (row["sender"], row["text"]) == (PHONE, "Signed reply")
    finally:
        await fake.stop()


async def test_unsigned_carrier_uses_the_webhook_token(
    gateway_factory: GatewayFactory, api: FakeVonage
) -> None:
    gw = await gateway_factory(carrier=[carrier(api, webhook_token="tok")])
    params = inbound_sms("v-in-2", "hi")
    assert (await call(gw, "GET", "/webhooks/vg/inbound", params=params))[0] == 401
    assert await gw.store.list_inbound() == []
    headers = {"Authorization": "Bearer tok"}
    status, _ = await call(gw, "GET", "/webhooks/vg/inbound", params=params, headers=headers)
    assert status == 200
    assert len(await gw.store.list_inbound()) == 1


# --- inbound ----------------------------------------------------------------------------------


def inbound_sms(id: str, text: str, **extra: str) -> dict[str, str]:
    return {
        "msisdn": PHONE.lstrip("+"),
        "to": OURS.lstrip("+"),
        "messageId": id,
        "text": text,
        "type": "text",
        "keyword": text.split()[0].upper() if text.split() else "",
        "message-timestamp": "2026-01-01 12:00:00",
        **extra,
    }


async def test_inbound_sms_by_get_is_stored_once(
    gateway_factory: GatewayFactory, api: FakeVonage
) -> None:
    gw = await gateway_factory(carrier=[carrier(api)])
    params = inbound_sms("0A0000000123ABCD", "Yes, fixed at 10:40")
    for _ in range(2):  # Vonage sends again when it missed our answer
        assert await call(gw, "GET", "/webhooks/vg/inbound", params=params) == (200, "")
    [row] = await gw.store.list_inbound()
    assert (row["sender"], row["recipient"], row["text"]) == (PHONE, OURS, "Yes, fixed at 10:40")
    assert row["carrier_id"] == "0A0000000123ABCD"


async def test_concatenated_inbound_out_of_order_becomes_one_sms(
    gateway_factory: GatewayFactory, api: FakeVonage
) -> None:
    gw = await gateway_factory(carrier=[carrier(api)])
    pieces = ["The server room is ", "at 31 degrees and the ", "AC is off."]

    def part(n: int) -> dict[str, str]:
        return inbound_sms(
            f"P{n}",
            pieces[n - 1],
            concat="true",
            **{"concat-ref": "42", "concat-total": "3", "concat-part": str(n)},
        )

    for n in (3, 1):
        assert (await call(gw, "POST", "/webhooks/vg/inbound", data=part(n)))[0] == 200
        assert await gw.store.list_inbound() == []
    assert (await call(gw, "POST", "/webhooks/vg/inbound", json=part(2)))[0] == 200
    [row] = await gw.store.list_inbound()
    assert (row["text"], row["segments"], row["incomplete"]) == ("".join(pieces), 3, 0)
    # A part sent again after the set completed is recognised, not a second SMS.
    assert (await call(gw, "POST", "/webhooks/vg/inbound", data=part(3)))[0] == 200
    assert len(await gw.store.list_inbound()) == 1


async def test_a_part_numbered_outside_its_set_is_refused(
    gateway_factory: GatewayFactory, api: FakeVonage
) -> None:
    gw = await gateway_factory(carrier=[carrier(api)])
    bad = inbound_sms("P9", "x", concat="true", **{"concat-ref": "1", "concat-total": "2"})
    bad["concat-part"] = "3"
    assert (await call(gw, "POST", "/webhooks/vg/inbound", data=bad))[0] == 400


async def test_webhooks_answer_503_when_the_store_is_down_and_store_on_retry(
    gateway_factory: GatewayFactory, api: FakeVonage
) -> None:
    gw = await gateway_factory(carrier=[carrier(api)])
    id = await api_send(gw, "hello")
    m = await submitted(gw, id)
    cid = m.parts[0].carrier_id
    assert cid is not None
    single = inbound_sms("S1", "single")
    part = inbound_sms(
        "C1", "part", concat="true", **{"concat-ref": "7", "concat-total": "2", "concat-part": "1"}
    )
    await gw.store.close()
    try:
        for path, params in (("inbound", single), ("inbound", part), ("status", receipt(cid))):
            status, _ = await call(gw, "POST", f"/webhooks/vg/{path}", data=params)
            assert status == 503
    finally:
        await gw.store.open()
    assert await gw.store.list_inbound() == []
    still = await gw.store.get(id)
    assert still is not None and still.state is State.SUBMITTED
    # Vonage retries: now every call is stored and acknowledged.
    assert (await call(gw, "POST", "/webhooks/vg/inbound", data=single))[0] == 200
    assert (await call(gw, "POST", "/webhooks/vg/status", data=receipt(cid)))[0] == 200
    assert [r["text"] for r in await gw.store.list_inbound()] == ["single"]
    done = await gw.store.get(id)
    assert done is not None and done.state is State.DELIVERED
