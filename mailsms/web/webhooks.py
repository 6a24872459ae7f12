"""Carrier webhooks: inbound SMS and delivery reports, in the generic shape or a carrier's own.

``POST /webhooks/{carrier}/inbound`` and ``/webhooks/{carrier}/status`` (and ``GET`` for a
carrier whose API calls with GET). A driver with its own shape (``Carrier.webhooks()``:
Twilio's form fields and ``X-Twilio-Signature``, say) verifies and reads the call itself;
every other carrier speaks the generic shape (JSON or form: ``from``, ``to``, ``text``,
``id``, ``received_at``; ``id``, ``status``, ``error_code``, ``error_text``) and, when it
sets ``webhook_token``, needs ``Authorization: Bearer <token>``. The 2xx goes out only after
the SMS, the part or the report is committed; a forged request gets 401/403 and nothing is
stored.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from mailsms.carriers.base import (
    CarrierWebhooks,
    DeliveryReport,
    InboundSms,
    ReportStatus,
    WebhookCall,
    WebhookRefused,
)
from mailsms.errors import StoreError
from mailsms.sms.reassemble import Fragment
from mailsms.web.app import GATEWAY, error

if TYPE_CHECKING:
    from mailsms.app import Gateway

_GENERIC_STATUS = {s.value: s for s in ReportStatus}


def add_routes(app: web.Application) -> None:
    for kind, handler in (("inbound", inbound), ("status", status)):
        app.router.add_post(f"/webhooks/{{carrier}}/{kind}", handler)
        app.router.add_get(f"/webhooks/{{carrier}}/{kind}", handler)


async def _call(request: web.Request) -> WebhookCall:
    """The request as a :class:`WebhookCall`: query fields, then form or JSON fields."""
    body = await request.read()
    fields: dict[str, str] = {}
    parsed: Any = None
    if request.content_type == "application/json":
        try:
            parsed = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text="the body is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise web.HTTPBadRequest(text="the body must be a JSON object")
        fields = {str(k): _text(v) for k, v in parsed.items()}
    elif body:
        form = await request.post()
        fields = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    return WebhookCall(
        method=request.method,
        url=str(request.url),
        path_qs=request.path_qs,
        headers=request.headers,
        body=body,
        params={**request.query, **fields},
        form=fields,
        json=parsed,
    )


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _carrier(request: web.Request) -> tuple[Gateway, str]:
    gw = request.app[GATEWAY]
    name = request.match_info["carrier"]
    if name not in gw.carriers:
        raise web.HTTPNotFound(text=f"no carrier named {name!r}")
    return gw, name


def _check_token(request: web.Request, token: str | None) -> None:
    if not token:
        return
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise web.HTTPUnauthorized(
            text="a valid 'Authorization: Bearer <webhook_token>' is required"
        )


def _required(params: Mapping[str, str], *names: str) -> list[str]:
    missing = [n for n in names if not params.get(n)]
    if missing:
        raise web.HTTPBadRequest(text=f"missing field(s): {', '.join(missing)}")
    return [params[n] for n in names]


async def _authenticated(
    request: web.Request,
) -> tuple[Gateway, str, WebhookCall, CarrierWebhooks | None]:
    """The gateway, the carrier's name, the call and the carrier's own webhook shape (None:
    the generic one), once the call is proven to come from that carrier (its own
    signature, or the generic bearer token)."""
    gw, name = _carrier(request)
    carrier = gw.carriers[name]
    shape = carrier.webhooks()
    allowed = shape.methods if shape is not None else ("POST",)
    if request.method not in allowed:
        raise web.HTTPMethodNotAllowed(request.method, list(allowed))
    call = await _call(request)
    if shape is not None:
        try:
            shape.verify(call)
        except WebhookRefused as exc:
            raise _http(exc) from None
    else:
        _check_token(request, carrier.settings.webhook_token)
    return gw, name, call, shape


def _http(exc: WebhookRefused) -> web.HTTPException:
    kinds: dict[int, type[web.HTTPException]] = {
        401: web.HTTPUnauthorized,
        403: web.HTTPForbidden,
        404: web.HTTPNotFound,
        413: web.HTTPRequestEntityTooLarge,
    }
    return kinds.get(exc.status, web.HTTPBadRequest)(text=exc.message)


def _reply(shape: CarrierWebhooks | None, kind: str, generic: dict[str, Any]) -> web.Response:
    if shape is None:
        return web.json_response(generic)
    r = shape.reply(kind)
    return web.Response(body=r.body, status=r.status, content_type=r.content_type)


async def inbound(request: web.Request) -> web.Response:
    gw, name, call, shape = await _authenticated(request)
    try:
        got = shape.inbound(call) if shape is not None else _generic_inbound(name, call.params)
    except WebhookRefused as exc:
        raise _http(exc) from None
    result: dict[str, Any] = {"ok": True}
    try:
        if isinstance(got, Fragment):
            id = await gw.inbound.receive_part(name, got)
            result = {"id": id, "part": f"{got.seq}/{got.total}"}
        elif got is not None:
            id, new = await gw.inbound.receive(got)
            result = {"id": id, "duplicate": not new}
    except ValueError as exc:  # a part numbered outside its set: never storable
        raise web.HTTPBadRequest(text=str(exc)) from None
    except StoreError:
        return error(503, "store_unavailable", "the SMS was not stored; retry later")
    return _reply(shape, "inbound", result)


def _generic_inbound(carrier: str, params: Mapping[str, str]) -> InboundSms:
    sender, to, id = _required(params, "from", "to", "id")
    if "text" not in params:
        raise web.HTTPBadRequest(text="missing field(s): text")
    received = None
    if params.get("received_at"):
        try:
            received = datetime.fromisoformat(
                params["received_at"].replace("Z", "+00:00")
            ).timestamp()
        except ValueError:
            raise web.HTTPBadRequest(text="received_at must be ISO 8601") from None
    return InboundSms(
        carrier=carrier,
        carrier_id=id,
        from_=sender,
        to=to,
        text=params["text"],
        received_at=received,
        raw=dict(params),
    )


async def status(request: web.Request) -> web.Response:
    gw, name, call, shape = await _authenticated(request)
    try:
        report = shape.status(call) if shape is not None else _generic_status(name, call.params)
    except WebhookRefused as exc:
        raise _http(exc) from None
    if report is not None:
        try:
            await gw.hooks(name).delivery_report(report)
        except StoreError:
            return error(503, "store_unavailable", "the report was not stored; retry later")
    return _reply(shape, "status", {"ok": True})


def _generic_status(name: str, params: Mapping[str, str]) -> DeliveryReport:
    id, state = _required(params, "id", "status")
    if state not in _GENERIC_STATUS:
        raise web.HTTPBadRequest(text=f"status must be one of {', '.join(_GENERIC_STATUS)}")
    return DeliveryReport(
        name,
        id,
        _GENERIC_STATUS[state],
        params.get("error_code") or None,
        params.get("error_text") or None,
        raw=_raw(params, "generic"),
    )


def _raw(params: Mapping[str, str], kind: str) -> dict[str, Any]:
    return {"kind": kind, **params}
