"""The http carrier through the whole gateway, against a local server playing two API shapes
configured purely in settings, as an operator would in TOML:

* ``jsonapi``: ``POST /v1/sms`` with ``Authorization: Bearer``, a JSON body, answering
  ``{"messages": [{"id": ...}]}`` (one entry per part, counted by tests/telnyx_api.py's own
  GSM-7/UCS-2 rules, not ours) or ``{"error": {"code", "message"}}``;
* ``formapi``: ``POST /send`` with HTTP Basic auth and form fields, answering text
  ``OK: <id>`` or ``ERR: <code> <words>`` (with HTTP 200, as such APIs do).

Bounces go to a real SMTP sink; delivery reports come back through the generic
``/webhooks/{name}/status`` with the bearer ``webhook_token``.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import aiosmtplib
import pytest
from aiohttp import web

from mailsms.app import Gateway
from mailsms.config import load
from mailsms.model import State
from tests.conftest import GatewayFactory
from tests.helpers import in_state, settled
from tests.integration.test_dsn_flow import report_fields
from tests.local_api import LocalApi
from tests.sink import Sink
from tests.telnyx_api import parts_of

DOMAIN = "sms.example.test"
PHONE = "+447700900123"
OURS = "+447700900999"
TOKEN = "tok-Sup3rSecret-json"
PASSWORD = "pw-Sup3rSecret-form"
HOOK_TOKEN = "hook-token"
PUBLIC_URL = "https://gw.example.com"

Scripted = tuple[int, str, str] | None  # status, body, content type; None: hang


class FakeApi(LocalApi):
    """Both API shapes on one aiohttp server on 127.0.0.1:0; ``script`` fails the next
    request, ``hang`` leaves it unanswered until stop (the driver's timeout must fire)."""

    def __init__(self) -> None:
        super().__init__()
        self.json_requests: list[dict[str, Any]] = []
        self.form_requests: list[dict[str, str]] = []
        self.headers: list[dict[str, str]] = []
        self.scripted: list[Scripted] = []
        self.ids = (f"api-{n}" for n in itertools.count(1))
        self.sent: list[list[str]] = []

    def script(self, status: int, body: Any, content_type: str = "application/json") -> None:
        text = json.dumps(body) if content_type == "application/json" else str(body)
        self.scripted.append((status, text, content_type))

    def hang(self) -> None:
        self.scripted.append(None)

    async def _scripted(self) -> web.Response | None:
        if not self.scripted:
            return None
        answer = self.scripted.pop(0)
        if answer is None:
            await self.held.wait()
            return web.Response(status=500)
        status, text, content_type = answer
        return web.Response(status=status, text=text, content_type=content_type)

    async def json_api(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            # Echoes what it got, as careless APIs do: the driver must redact it.
            got = request.headers.get("Authorization", "")
            return web.json_response(
                {"error": {"code": "AUTH", "message": f"bad credentials {got}"}}, status=401
            )
        sent = await request.json()
        self.json_requests.append(sent)
        answer = await self._scripted()
        if answer is not None:
            return answer
        ids = [next(self.ids) for _ in range(parts_of(sent["body"])[1])]
        self.sent.append(ids)
        return web.json_response({"messages": [{"id": i} for i in ids]}, status=201)

    async def form_api(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        expected = "Basic " + base64.b64encode(f"acme:{PASSWORD}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, text="ERR: 401 unauthorised")
        form = await request.post()
        self.form_requests.append({k: str(v) for k, v in form.items()})
        answer = await self._scripted()
        if answer is not None:
            return answer
        id = next(self.ids)
        self.sent.append([id])
        return web.Response(text=f"OK: {id}")

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/sms", self.json_api)
        app.router.add_post("/send", self.form_api)

    async def start(self) -> FakeApi:
        await self.start_server()
        return self


@pytest.fixture
async def api() -> AsyncIterator[FakeApi]:
    fake = await FakeApi().start()
    yield fake
    await fake.stop()


def json_carrier(api: FakeApi, **extra: Any) -> dict[str, Any]:
    """A JSON API with a bearer token, per-part ids and an error object."""
    return {
        "name": "jsonapi",
        "type": "http",
        "from": OURS,
        "webhook_token": HOOK_TOKEN,
        "url": f"{api.url}/v1/sms",
        "auth": "bearer",
        "token": TOKEN,
        "public_url": PUBLIC_URL,
        "headers": {"Idempotency-Key": "{message_id}"},
        "fields": {
            "recipient": "{to}",
            "sender": "{from}",
            "body": "{text}",
            "options": {"reference": "{message_id}", "callback": "{callback_url}"},
        },
        "id_path": "messages.*.id",
        "error_code_path": "/error/code",
        "error_path": "error.message",
        "permanent_codes": ["E_NUMBER"],
        "temporary_codes": ["E_BUSY"],
        "timeout": "300ms",
        **extra,
    }


def form_carrier(api: FakeApi, **extra: Any) -> dict[str, Any]:
    """A form API with Basic auth answering ``OK: <id>`` / ``ERR: <code> <words>`` as text."""
    return {
        "name": "formapi",
        "type": "http",
        "from": OURS,
        "webhook_token": HOOK_TOKEN,
        "url": f"{api.url}/send",
        "body": "form",
        "auth": "basic",
        "username": "acme",
        "password": PASSWORD,
        "fields": {"dest": "{to_digits}", "src": "{from_digits}", "msg": "{text}"},
        "id_regex": r"^OK: (\S+)",
        "error_regex": r"^ERR: (?P<code>\d+) (?P<text>.*)",
        "permanent_codes": [21],
        "temporary_codes": [99],
        **extra,
    }


async def make(gateway_factory: GatewayFactory, sink: Sink, carrier: dict[str, Any]) -> Gateway:
    return await gateway_factory(
        relay=sink.relay_settings(), carrier=[carrier], inbound={"catch_all": "ops@example.test"}
    )


async def send(gw: Gateway, text: str) -> str:
    assert gw.listening.smtp is not None
    data = (
        "From: Alice <alice@example.test>\r\nSubject: Backups\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n" + text + "\r\n"
    ).encode()
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.listening.smtp[1]) as client:
        await client.mail("alice@example.test")
        await client.rcpt(f"{PHONE}@{DOMAIN}")
        code, reply = await client.data(data)
    assert code == 250, reply
    return reply.split()[-1]


async def report(gw: Gateway, carrier: str, fields: dict[str, str], token: str = HOOK_TOKEN) -> int:
    assert gw.listening.http is not None
    host, port = gw.listening.http
    url = f"http://{host}:{port}/webhooks/{carrier}/status"
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http, http.post(url, json=fields, headers=headers) as r:
        return r.status


TEXTS = {
    "gsm": "Nightly backup failed on db1.",
    "gsm long": "Disk /var is 95% full on db1 [alert]. " * 8,
    "unicode": 'Привет, "резервная" копия {не} удалась ✓ \\ 😀',
    "unicode long": "Сервер db1: резервное копирование не удалось, проверьте диск. " * 3,
}


# --- the JSON API ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(TEXTS))
async def test_json_api_submits_with_per_part_ids_and_reports_deliver(
    gateway_factory: GatewayFactory, sink: Sink, api: FakeApi, kind: str
) -> None:
    gw = await make(gateway_factory, sink, json_carrier(api))
    id = await send(gw, TEXTS[kind])
    m = await in_state(gw, id, State.SUBMITTED)
    assert m.text.strip() == TEXTS[kind].strip()
    [request] = api.json_requests
    assert request == {
        "recipient": PHONE,
        "sender": OURS,
        "body": m.text,
        "options": {"reference": id, "callback": f"{PUBLIC_URL}/webhooks/jsonapi/status"},
    }
    assert api.headers[0]["Idempotency-Key"] == id
    # The API's own count of parts agrees with ours, so each part has its own id.
    [ids] = api.sent
    assert [p.carrier_id for p in m.parts] == ids
    assert (len(ids) > 1) is kind.endswith("long")
    for carrier_id in ids:
        assert await report(gw, "jsonapi", {"id": carrier_id, "status": "delivered"}) == 200
    assert (await settled(gw, id)).state is State.DELIVERED
    assert sink.received == []


async def test_a_failed_report_fails_the_message_with_a_bounce(
    gateway_factory: GatewayFactory, sink: Sink, api: FakeApi
) -> None:
    gw = await make(gateway_factory, sink, json_carrier(api))
    id = await send(gw, "status please")
    await in_state(gw, id, State.SUBMITTED)
    [[carrier_id]] = api.sent
    assert await report(gw, "jsonapi", {"id": carrier_id, "status": "failed"}, "wrong") == 401
    fields = {"id": carrier_id, "status": "failed", "error_code": "E_ABSENT"}
    assert await report(gw, "jsonapi", fields) == 200
    m = await settled(gw, id)
    assert m.state is State.FAILED and "E_ABSENT" in (m.last_error or "")
    [dsn] = await sink.wait_for(1)
    assert report_fields(dsn)[1]["action"] == "failed"


async def test_temporary_errors_and_a_timeout_are_retried(
    gateway_factory: GatewayFactory, sink: Sink, api: FakeApi
) -> None:
    api.script(503, {"error": {"code": "E_DOWN", "message": "maintenance"}})
    api.script(429, {"error": {"code": "E_RATE", "message": "slow down"}})
    api.script(400, {"error": {"code": "E_BUSY", "message": "listed in temporary_codes"}})
    api.script(200, "<html>maintenance</html>", "text/html")  # 2xx without an id
    api.hang()  # no answer: the 300 ms timeout fires
    gw = await make(gateway_factory, sink, json_carrier(api))
    id = await send(gw, "retry me")
    m = await in_state(gw, id, State.SUBMITTED)
    assert m.attempts == 6 and len(api.json_requests) == 6
    assert {h["Idempotency-Key"] for h in api.headers} == {id}
    assert sink.received == []


@pytest.mark.parametrize(
    ("scripted", "code"),
    [
        ([(400, {"error": {"code": "E_NUMBER", "message": "invalid number"}})], "E_NUMBER"),
        ([(422, {"error": {"code": "E_OTHER", "message": "unknown to us"}})], "E_OTHER"),
        ([(404, "no such route")], "404"),
        (
            [(503, {"error": {}}), (200, {"error": {"code": "E_NUMBER", "message": "no"}})],
            "E_NUMBER",
        ),
    ],
)
async def test_permanent_errors_fail_with_a_bounce(
    gateway_factory: GatewayFactory,
    sink: Sink,
    api: FakeApi,
    scripted: list[tuple[int, Any]],
    code: str,
) -> None:
    for status, body in scripted:
        api.script(status, body, "application/json" if isinstance(body, dict) else "text/plain")
    gw = await make(gateway_factory, sink, json_carrier(api))
    id = await send(gw, "this will bounce")
    m = await settled(gw, id)
    assert m.state is State.FAILED and m.attempts == len(scripted)
    assert f"(code {code})" in (m.last_error or "")
    [dsn] = await sink.wait_for(1)
    assert dsn.mail_from == "<>" and dsn.rcpt_tos == ["alice@example.test"]
    _, fields = report_fields(dsn)
    assert fields["action"] == "failed" and fields["status"].startswith("5.")
    assert code in fields["diagnostic-code"]


async def test_secrets_stay_out_of_logs_errors_and_repr(
    gateway_factory: GatewayFactory, sink: Sink, api: FakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # The API refuses and echoes the Authorization header it got, key included; the next
    # request waits for the timeout. Then the message goes through.
    api.script(401, {"error": {"code": "AUTH", "message": f"bad credentials Bearer {TOKEN}"}})
    api.hang()
    carrier = json_carrier(api, url=f"{api.url}/v1/sms?key={{token}}", headers={"X-Key": "{token}"})
    gw = await make(gateway_factory, sink, carrier)
    id = await send(gw, "secret-free please")
    m = await in_state(gw, id, State.SUBMITTED)
    assert m.attempts == 3
    assert api.headers[0]["X-Key"] == TOKEN  # the secret did go to the API
    # Our loggers, with every structured field (the fake API's access log is not ours).
    ours = [repr(vars(r)) for r in caplog.records if r.name.startswith("mailsms")]
    seen = "".join(ours) + repr(m) + repr(gw.settings) + str(gw.settings.carriers)
    assert "bad credentials Bearer ***" in seen  # the echoed key was there, and redacted
    assert TOKEN not in seen


async def test_secrets_come_from_the_environment(tmp_path: Any, sink: Sink, api: FakeApi) -> None:
    config = tmp_path / "mailsms.toml"
    config.write_text(
        f"""
[gateway]
domain = "{DOMAIN}"
[smtp]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[store]
url = "sqlite:///{tmp_path}/mailsms.db"
[relay]
smarthost = "127.0.0.1:{sink.port}"
[[carrier]]
name = "jsonapi"
type = "http"
from = "{OURS}"
url = "{api.url}/v1/sms"
auth = "bearer"
token = "placeholder"
fields = {{ recipient = "{{to}}", sender = "{{from}}", body = "{{text}}" }}
id_path = "messages.0.id"
""",
        encoding="utf-8",
    )
    loaded = load(config, env={"MAILSMS_CARRIER__JSONAPI__TOKEN": TOKEN})
    gw = Gateway(loaded.settings)
    await gw.start()
    try:
        id = await send(gw, "from the environment")
        m = await in_state(gw, id, State.SUBMITTED)
        [[carrier_id]] = api.sent
        assert [p.carrier_id for p in m.parts] == [carrier_id]
    finally:
        await gw.stop()


# --- the form API ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gsm", "unicode", "unicode long"])
async def test_form_api_with_basic_auth_and_a_text_answer(
    gateway_factory: GatewayFactory, sink: Sink, api: FakeApi, kind: str
) -> None:
    gw = await make(gateway_factory, sink, form_carrier(api))
    id = await send(gw, TEXTS[kind])
    m = await in_state(gw, id, State.SUBMITTED)
    [request] = api.form_requests
    assert request == {"dest": PHONE[1:], "src": OURS[1:], "msg": m.text}
    # One id for the whole message, however many parts: the API segments itself.
    [[carrier_id]] = api.sent
    assert [p.carrier_id for p in m.parts] == [carrier_id] * len(m.parts)
    assert await report(gw, "formapi", {"id": carrier_id, "status": "delivered"}) == 200
    assert (await settled(gw, id)).state is State.DELIVERED


async def test_form_api_error_lines_are_retried_or_bounced_by_code(
    gateway_factory: GatewayFactory, sink: Sink, api: FakeApi
) -> None:
    api.script(200, "ERR: 99 system busy", "text/plain")
    api.script(500, "Internal error", "text/plain")
    api.script(200, "ERR: 21 invalid destination", "text/plain")
    gw = await make(gateway_factory, sink, form_carrier(api))
    id = await send(gw, "form bounce")
    m = await settled(gw, id)
    assert m.state is State.FAILED and m.attempts == 3
    assert "invalid destination (code 21)" in (m.last_error or "")
    [dsn] = await sink.wait_for(1)
    _, fields = report_fields(dsn)
    assert fields["status"].startswith("5.") and "21" in fields["diagnostic-code"]
