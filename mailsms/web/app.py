"""The aiohttp application: health, metrics and the message API.

Errors are JSON ``{"error": {"code": ..., "message": ...}}`` with a 4xx/5xx status, so a
client script never has to parse HTML. ``POST /v1/messages`` answers ``202`` only after the
store commit, like SMTP's ``250``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from mailsms.address import parse_recipient
from mailsms.errors import AddressError, StoreError
from mailsms.intake.accept import RefusedError
from mailsms.model import Message
from mailsms.policy import Refusal

if TYPE_CHECKING:
    from mailsms.app import Gateway

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's HTML error pages (404, 405, 413...) into the JSON error shape."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or exc.reason)


def create_app(gateway: Gateway) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=256 * 1024)
    app[GATEWAY] = gateway
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/v1/messages", post_message)
    app.router.add_get("/v1/messages/{id}", get_message)
    from mailsms.web.webhooks import add_routes  # it imports this module

    add_routes(app)
    return app


async def healthz(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    body: dict[str, Any] = {"status": "ok", "store": "ok", "carriers": {}}
    try:
        await gw.store.ping()
    except StoreError as exc:
        body["store"] = str(exc)
        body["status"] = "unavailable"
    if gw.imap:
        body["imap"] = {}
    for mailbox in gw.imap:
        body["imap"][mailbox.name] = {"ok": mailbox.health.ok, "detail": mailbox.health.detail}
        if not mailbox.health.ok and body["status"] == "ok":
            body["status"] = "degraded"
    for name, carrier in gw.carriers.items():
        h = carrier.health()
        body["carriers"][name] = {"ok": h.ok, "detail": h.detail}
        if not h.ok:
            body["status"] = "degraded" if body["status"] == "ok" else body["status"]
    return web.json_response(body, status=200 if body["status"] == "ok" else 503)


async def metrics(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    try:
        depth = await gw.store.queue_depth()
    except StoreError:
        depth = {}
    gw.metrics.queue_depth.clear()
    for state, n in depth.items():
        gw.metrics.queue_depth.labels(state=state).set(n)
    return web.Response(body=gw.metrics.render(), content_type="text/plain", charset="utf-8")


def _authorised(request: web.Request) -> bool:
    token = request.app[GATEWAY].settings.http.api_token
    if not token:
        return False
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    return hmac.compare_digest(given.encode(), token.encode())


async def post_message(request: web.Request) -> web.Response:
    if not _authorised(request):
        return error(
            401, "unauthorized", "a valid 'Authorization: Bearer <http.api_token>' is required"
        )
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error(400, "invalid_json", "the body must be a JSON object")
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("to"), str)
        or not isinstance(body.get("text"), str)
    ):
        return error(422, "invalid_request", "'to' and 'text' are required strings")
    gw = request.app[GATEWAY]
    settings = gw.settings
    try:
        rcpt = parse_recipient(
            f"{body['to']}@{settings.gateway.domain}",
            settings.gateway.all_domains,
            settings.gateway.default_region,
        )
    except AddressError:
        return error(422, "invalid_number", f"{body['to']!r} is not a valid phone number")
    refusal = await gw.intake.check_number(rcpt, "api")
    if refusal is not None:
        return _refused(refusal)
    carrier = body.get("carrier")
    if carrier is not None and carrier not in gw.carriers:
        return error(422, "unknown_carrier", f"no carrier named {carrier!r}")
    try:
        accepted = await gw.intake.accept_text(
            body["text"], "api", [rcpt], origin="api", carrier=carrier, source_addr=body.get("from")
        )
    except RefusedError as exc:
        return _refused(exc.refusal)
    return web.json_response({"ids": list(accepted.ids)}, status=202)


def _refused(refusal: Refusal) -> web.Response:
    status = 503 if refusal.status == "4.3.0" else 429 if refusal.temporary else 422
    return error(status, f"smtp_{refusal.status}", refusal.text)


async def get_message(request: web.Request) -> web.Response:
    if not _authorised(request):
        return error(
            401, "unauthorized", "a valid 'Authorization: Bearer <http.api_token>' is required"
        )
    store = request.app[GATEWAY].store
    message = await store.get(request.match_info["id"])
    if message is None:
        return error(404, "not_found", "no such message")
    body = message_json(message)
    body["notifications"] = [
        {
            "kind": n["kind"],
            "to": n["rcpt_to"],
            "state": n["state"],
            "error": n["last_error"],
            "created_at": n["created_at"],
        }
        for n in await store.mail_for(message.id)
    ]
    return web.json_response(body)


def message_json(m: Message) -> dict[str, Any]:
    """The public JSON shape of a message (also ``mailsms messages show --json``)."""
    return {
        "id": m.id,
        "state": m.state.value,
        "to": m.to,
        "from": m.source_addr,
        "text": m.text,
        "encoding": m.encoding,
        "segments": m.segments,
        "carrier": m.carrier,
        "origin": m.origin,
        "sender": m.sender,
        "subject": m.subject,
        "attempts": m.attempts,
        "created_at": m.created_at,
        "updated_at": m.updated_at,
        "expires_at": m.expires_at,
        "last_error": m.last_error,
        "parts": [
            {
                "seq": p.seq,
                "text": p.text,
                "udh": p.udh.hex(),
                "size": p.size,
                "state": p.state.value,
                "carrier_id": p.carrier_id,
                "error": p.error,
            }
            for p in m.parts
        ],
        "events": [
            {"at": e.at, "state": e.state, "reason": e.reason, "source": e.source} for e in m.events
        ],
    }
