"""Carrier webhooks: inbound SMS and delivery reports, in the generic shape or Twilio's.

``POST /webhooks/{carrier}/inbound`` and ``/webhooks/{carrier}/status``. A carrier of type
``twilio`` speaks Twilio's form fields and must carry a valid ``X-Twilio-Signature``; every
other carrier speaks the generic shape (JSON or form: ``from``, ``to``, ``text``, ``id``,
``received_at``; ``id``, ``status``, ``error_code``, ``error_text``) and, when it sets
``webhook_token``, needs ``Authorization: Bearer <token>``. The 2xx goes out only after the
SMS or report is committed; a forged request gets 401/403 and nothing is stored.
"""

from __future__ import annotations

import hmac
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from mailsms.carriers.base import DeliveryReport, InboundSms, ReportStatus
from mailsms.carriers.twilio import TwilioCarrier, signature
from mailsms.errors import StoreError
from mailsms.web.app import GATEWAY, error

if TYPE_CHECKING:
    from mailsms.app import Gateway

_TWILIO_STATUS = {
    "delivered": ReportStatus.DELIVERED,
    "undelivered": ReportStatus.FAILED,
    "failed": ReportStatus.FAILED,
}
_GENERIC_STATUS = {s.value: s for s in ReportStatus}
_EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def add_routes(app: web.Application) -> None:
    app.router.add_post("/webhooks/{carrier}/inbound", inbound)
    app.router.add_post("/webhooks/{carrier}/status", status)


async def _params(request: web.Request) -> dict[str, str]:
    """JSON object or form fields, as strings."""
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text="the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="the body must be a JSON object")
        return {str(k): "" if v is None else str(v) for k, v in body.items()}
    form = await request.post()
    return {k: str(v) for k, v in form.items() if isinstance(v, str)}


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


def _check_twilio(request: web.Request, carrier: TwilioCarrier, params: dict[str, str]) -> None:
    given = request.headers.get("X-Twilio-Signature", "")
    base = carrier.twilio.public_url
    url = f"{base.rstrip('/')}{request.path_qs}" if base else str(request.url)
    expected = signature(carrier.twilio.auth_token, url, params)
    if not (given and hmac.compare_digest(given.encode(), expected.encode())):
        raise web.HTTPForbidden(text="missing or invalid X-Twilio-Signature")


def _required(params: dict[str, str], *names: str) -> list[str]:
    missing = [n for n in names if not params.get(n)]
    if missing:
        raise web.HTTPBadRequest(text=f"missing field(s): {', '.join(missing)}")
    return [params[n] for n in names]


async def _authenticated(request: web.Request) -> tuple[Gateway, str, dict[str, str]]:
    """The gateway, the carrier's name and the request's fields, once the request is proven
    to come from that carrier (Twilio's signature, or the generic bearer token)."""
    gw, name = _carrier(request)
    carrier = gw.carriers[name]
    params = await _params(request)
    if isinstance(carrier, TwilioCarrier):
        _check_twilio(request, carrier, params)
    else:
        _check_token(request, carrier.settings.webhook_token)
    return gw, name, params


async def inbound(request: web.Request) -> web.Response:
    gw, name, params = await _authenticated(request)
    carrier = gw.carriers[name]
    if isinstance(carrier, TwilioCarrier):
        sms = _twilio_inbound(name, params)
    else:
        sms = _generic_inbound(name, params)
    try:
        id, new = await gw.inbound.receive(sms)
    except StoreError:
        return error(503, "store_unavailable", "the SMS was not stored; retry later")
    if isinstance(carrier, TwilioCarrier):
        return web.Response(text=_EMPTY_TWIML, content_type="text/xml")
    return web.json_response({"id": id, "duplicate": not new})


def _generic_inbound(carrier: str, params: dict[str, str]) -> InboundSms:
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
        raw=params,
    )


def _twilio_inbound(carrier: str, params: dict[str, str]) -> InboundSms:
    sender, to, sid = _required(params, "From", "To", "MessageSid")
    text = params.get("Body", "")
    media = [
        params[f"MediaUrl{i}"]
        for i in range(_int(params.get("NumMedia")))
        if params.get(f"MediaUrl{i}")
    ]
    if media:
        text = "\n".join([text, *(f"[media: {url}]" for url in media)]).strip()
    return InboundSms(
        carrier=carrier,
        carrier_id=sid,
        from_=sender,
        to=to,
        text=text,
        segments=max(1, _int(params.get("NumSegments"))),
        raw=params,
    )


def _int(value: str | None) -> int:
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0


async def status(request: web.Request) -> web.Response:
    gw, name, params = await _authenticated(request)
    carrier = gw.carriers[name]
    if isinstance(carrier, TwilioCarrier):
        sid, state = _required(params, "MessageSid", "MessageStatus")
        report = DeliveryReport(
            name,
            sid,
            _TWILIO_STATUS.get(state, ReportStatus.ACCEPTED),
            params.get("ErrorCode") or None,
            params.get("ErrorMessage") or state,
            raw=_raw(params, "twilio"),
        )
    else:
        id, state = _required(params, "id", "status")
        if state not in _GENERIC_STATUS:
            raise web.HTTPBadRequest(text=f"status must be one of {', '.join(_GENERIC_STATUS)}")
        report = DeliveryReport(
            name,
            id,
            _GENERIC_STATUS[state],
            params.get("error_code") or None,
            params.get("error_text") or None,
            raw=_raw(params, "generic"),
        )
    try:
        await gw.hooks(name).delivery_report(report)
    except StoreError:
        return error(503, "store_unavailable", "the report was not stored; retry later")
    if isinstance(carrier, TwilioCarrier):
        return web.Response(text=_EMPTY_TWIML, content_type="text/xml")
    return web.json_response({"ok": True})


def _raw(params: dict[str, str], kind: str) -> dict[str, Any]:
    return {"kind": kind, **params}
