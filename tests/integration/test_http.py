"""The HTTP server: health, metrics and the message API, over real HTTP with aiohttp."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from mailsms.app import Gateway
from mailsms.model import State
from tests.helpers import settled

AUTH = {"Authorization": "Bearer test-token"}


def url(gw: Gateway, path: str) -> str:
    assert gw.listening.http is not None
    host, port = gw.listening.http
    return f"http://{host}:{port}{path}"


async def call(gw: Gateway, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(method, url(gw, path), **kw) as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body


async def test_healthz_reports_store_and_carriers(gateway: Gateway) -> None:
    status, body = await call(gateway, "GET", "/healthz")
    assert status == 200
    assert body == {"status": "ok", "store": "ok", "carriers": {"fake": {"ok": True, "detail": ""}}}


async def test_healthz_is_503_when_the_store_is_down(gateway: Gateway) -> None:
    await gateway.store.close()
    try:
        status, body = await call(gateway, "GET", "/healthz")
        assert status == 503 and body["status"] == "unavailable"
    finally:
        await gateway.store.open()


async def test_metrics_expose_counts_and_queue_depth(gateway: Gateway) -> None:
    status, created = await call(
        gateway, "POST", "/v1/messages", headers=AUTH, json={"to": "+447700900123", "text": "hi"}
    )
    assert status == 202
    await settled(gateway, created["ids"][0])
    status, text = await call(gateway, "GET", "/metrics")
    assert status == 200
    assert 'mailsms_messages_accepted_total{origin="api"} 1.0' in text
    assert 'mailsms_messages_submitted_total{carrier="fake"} 1.0' in text
    assert 'mailsms_queue_depth{state="delivered"} 1.0' in text


async def test_post_then_get_a_message(gateway: Gateway) -> None:
    status, body = await call(
        gateway,
        "POST",
        "/v1/messages",
        headers=AUTH,
        json={"to": "+447700900123", "text": "Hello", "from": "ACME"},
    )
    assert status == 202
    [id] = body["ids"]
    m = await settled(gateway, id)
    assert m.state is State.DELIVERED
    status, got = await call(gateway, "GET", f"/v1/messages/{id}", headers=AUTH)
    assert status == 200
    assert (got["state"], got["from"], got["segments"]) == ("delivered", "ACME", 1)
    assert [e["state"] for e in got["events"]][:2] == ["queued", "submitting"]


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [
        ({}, {"to": "+447700900123", "text": "x"}, 401, "unauthorized"),
        (
            {"Authorization": "Bearer wrong"},
            {"to": "+447700900123", "text": "x"},
            401,
            "unauthorized",
        ),
        (AUTH, {"to": "+447700900123"}, 422, "invalid_request"),
        (AUTH, {"to": "hello", "text": "x"}, 422, "invalid_number"),
        (AUTH, {"to": "+447700900123", "text": "x", "carrier": "nope"}, 422, "unknown_carrier"),
        (AUTH, {"to": "+447700900123", "text": "   "}, 422, "smtp_5.6.0"),
    ],
)
async def test_api_errors_are_json(
    gateway: Gateway, headers: dict[str, str], body: dict[str, str], status: int, code: str
) -> None:
    got_status, got = await call(gateway, "POST", "/v1/messages", headers=headers, json=body)
    assert got_status == status and got["error"]["code"] == code
    assert await gateway.store.queue_depth() == {}


async def test_invalid_json_and_unknown_paths_get_json_errors(gateway: Gateway) -> None:
    status, body = await call(gateway, "POST", "/v1/messages", headers=AUTH, data=b"{nope")
    assert status == 400 and body["error"]["code"] == "invalid_json"
    status, body = await call(gateway, "GET", "/nope")
    assert status == 404 and "error" in body
    status, body = await call(gateway, "GET", "/v1/messages/nope", headers=AUTH)
    assert status == 404 and body["error"]["code"] == "not_found"
