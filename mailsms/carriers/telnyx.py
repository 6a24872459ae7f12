"""Telnyx Messaging API v2: submit over HTTPS, reports and replies by signed JSON webhook.

Telnyx takes the whole text and segments it itself, so a submit (``POST /v2/messages``)
covers every part with one message id (``Submitted.whole``). Our message id goes in the
``Idempotency-Key`` header, so a message resubmitted after a crash is not sent twice.

Telnyx sends every event as JSON ``{"data": {"event_type", "id", "occurred_at",
"payload"}}``, signed with the account's Ed25519 key: ``telnyx-signature-ed25519`` is the
base64 signature of ``f"{telnyx-timestamp}|{raw body}"``. :meth:`TelnyxWebhooks.verify`
checks it against ``public_key`` and refuses a timestamp outside ``timestamp_tolerance``
(a replayed call); tests hold it against the telnyx SDK's own ``verify_webhook_signature``.

Where events arrive: each submit names ``{public_url}/webhooks/{name}/status`` as its
``webhook_url``, so ``message.sent`` and ``message.finalized`` come to ``/status``; the
messaging profile's webhook URL (set in the portal) should be ``/webhooks/{name}/inbound``
for ``message.received``. An event on the wrong one of the two is refused (400) rather than
acknowledged and dropped: the gateway must not answer 2xx for what it did not store.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import aiohttp
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import VerifyKey
from pydantic import Field, field_validator

from mailsms.carriers.base import (
    CarrierSettings,
    DeliveryReport,
    InboundSms,
    OutboundSms,
    ReportStatus,
    Submitted,
    WebhookCall,
    WebhookRefused,
    WebhookReply,
)
from mailsms.carriers.http_api import HttpApiCarrier
from mailsms.duration import Duration
from mailsms.errors import PermanentFailure, TemporaryFailure
from mailsms.mail import dsn_codes

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"

# Telnyx error codes (developers.telnyx.com/docs/messaging/messages/error-codes) that no
# retry of the same request will fix: the number, the sender or the content is refused.
# mailsms/mail/dsn_codes.py TELNYX_ERROR says the same in RFC 3463 terms (a test holds the
# two together).
PERMANENT = frozenset(
    {
        "10002",  # invalid phone number
        "10016",  # phone number must be in +E.164 format
        "40001",  # not routable: a landline or non-routable number
        "40003",  # blocked as spam, permanently (our sender number)
        "40005",  # message expired during transmission
        "40007",  # loop detected
        "40008",  # undeliverable
        "40009",  # invalid message body
        "40010",  # unregistered 10DLC message
        "40012",  # invalid destination number
        "40013",  # invalid source number
        "40014",  # expired in queue
        "40015",  # Telnyx's internal spam filter
        "40017",  # AT&T 10DLC: rejected as spam
        "40300",  # blocked due to STOP message: the recipient opted out
        "40301",  # unsupported message type for the 'to' address
        "40302",  # message too large
        "40304",  # invalid combination of message content arguments
        "40305",  # invalid 'from' address (not on the messaging profile)
        "40306",  # alphanumeric sender id not configured
        "40309",  # destination region not enabled on the profile
        "40310",  # invalid 'to' address
        "40316",  # no content provided
        "40322",  # blocked due to content
    }
)
# Worth retrying: Telnyx or the network is busy, or the account needs the operator (our
# key, funds, a disabled profile) and every message would fail the same way until fixed.
TEMPORARY = frozenset(
    {
        "10007",  # unexpected error
        "10008",  # request timeout
        "10009",  # authentication failed (our api_key)
        "10010",  # authorization failed
        "10011",  # too many requests
        "20100",  # insufficient funds
        "40002",  # blocked as spam, temporarily
        "40004",  # rejected by destination, reason unknown: "retry after delay"
        "40006",  # recipient's carrier unavailable
        "40011",  # upstream rate limit
        "40016",  # T-Mobile 10DLC daily limit reached
        "40018",  # AT&T 10DLC sending limit reached
        "40312",  # messaging profile disabled
        "40314",  # messaging disabled on the account
        "40318",  # message queue full
    }
)

# payload.to[0].status: message.sent says "sent"; message.finalized carries the outcome.
# "delivery_unconfirmed" (the far network never confirmed) is not a delivery and not a
# failure: nothing changes, and dlr.timeout decides, as for a carrier that sends no report.
_STATUS = {
    "delivered": ReportStatus.DELIVERED,
    "read": ReportStatus.DELIVERED,
    "delivery_failed": ReportStatus.FAILED,
    "sending_failed": ReportStatus.FAILED,
    "expired": ReportStatus.EXPIRED,
}
_REPORT_EVENTS = frozenset({"message.sent", "message.finalized"})
_INBOUND_EVENT = "message.received"


class TelnyxSettings(CarrierSettings):
    api_key: str = Field(repr=False)  # sent as "Authorization: Bearer"; never logged
    public_key: str  # the account's Ed25519 webhook public key, base64, from the portal
    messaging_profile_id: str | None = None  # sends through the profile (number pool...)
    api_url: str = "https://api.telnyx.com"
    public_url: str | None = None  # the base URL Telnyx calls: webhook_url of each submit
    timeout: Duration = 30.0
    timestamp_tolerance: Duration = Field(default=300.0, gt=0)  # the SDK's 300 s

    @field_validator("public_key")
    @classmethod
    def _ed25519_key(cls, value: str) -> str:
        """A wrong key would refuse every webhook; say so at start-up instead."""
        try:
            raw = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("must be the base64 Ed25519 public key from the portal") from None
        if len(raw) != 32:
            raise ValueError(f"must decode to 32 bytes (an Ed25519 key), not {len(raw)}")
        return value.strip()


def verify_signature(
    public_key: str,
    body: bytes,
    headers: Mapping[str, str],
    now: float,
    tolerance: float,
) -> None:
    """Check a Telnyx webhook's Ed25519 signature and timestamp, or raise WebhookRefused(403).

    The signed content is ``timestamp | raw body`` exactly as received, so it is checked
    before the body is parsed. The timestamp bounds replays of a captured call.
    """
    signature = _header(headers, SIGNATURE_HEADER)
    stamp = _header(headers, TIMESTAMP_HEADER)
    if not signature or not stamp:
        raise WebhookRefused(403, f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}")
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        raise WebhookRefused(403, f"{TIMESTAMP_HEADER} is not a Unix time")
    if abs(now - int(stamp)) > tolerance:
        raise WebhookRefused(403, f"{TIMESTAMP_HEADER} is outside the allowed window")
    try:
        raw = base64.b64decode(signature, validate=True)
        VerifyKey(base64.b64decode(public_key)).verify(stamp.encode() + b"|" + body, raw)
    except (binascii.Error, ValueError, BadSignatureError, CryptoError, TypeError):
        raise WebhookRefused(403, f"invalid {SIGNATURE_HEADER}") from None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Header lookup that ignores case even for a plain dict (aiohttp's already does)."""
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value.strip() if isinstance(value, str) else None


class TelnyxWebhooks:
    """Telnyx's webhook shape: signed JSON events, ``{"ok": true}`` back."""

    methods: tuple[str, ...] = ("POST",)

    def __init__(self, carrier: TelnyxCarrier) -> None:
        self.carrier = carrier

    def verify(self, call: WebhookCall) -> None:
        settings = self.carrier.telnyx
        verify_signature(
            settings.public_key,
            call.body,
            call.headers,
            self.carrier.clock(),
            settings.timestamp_tolerance,
        )

    def inbound(self, call: WebhookCall) -> InboundSms | None:
        event, payload = _event(call)
        kind = _text(event.get("event_type"))
        if kind in _REPORT_EVENTS:
            raise WebhookRefused(400, f"{kind} belongs on /webhooks/{self.carrier.name}/status")
        if kind != _INBOUND_EVENT:
            return None  # an event the gateway does not use: acknowledged
        sender = _text(_obj(payload.get("from")).get("phone_number"))
        to = _text(_obj(_first(payload.get("to"))).get("phone_number"))
        id = _text(payload.get("id"))
        if not (sender and to and id):
            missing = [n for n, v in (("from", sender), ("to", to), ("id", id)) if not v]
            raise WebhookRefused(400, f"message.received without {', '.join(missing)}")
        media = [
            url for item in _list(payload.get("media")) if (url := _text(_obj(item).get("url")))
        ]
        text = _text(payload.get("text")) or ""
        if media:
            text = "\n".join([text, *(f"[media: {url}]" for url in media)]).strip()
        return InboundSms(
            carrier=self.carrier.name,
            carrier_id=id,
            from_=sender,
            to=to,
            text=text,
            received_at=_when(payload.get("received_at")) or _when(event.get("occurred_at")),
            segments=_parts(payload.get("parts")),
            raw=_raw(event, payload, media=media),
        )

    def status(self, call: WebhookCall) -> DeliveryReport | None:
        event, payload = _event(call)
        kind = _text(event.get("event_type"))
        if kind == _INBOUND_EVENT:
            raise WebhookRefused(400, f"{kind} belongs on /webhooks/{self.carrier.name}/inbound")
        if kind not in _REPORT_EVENTS:
            return None
        id = _text(payload.get("id"))
        state = _text(_obj(_first(payload.get("to"))).get("status"))
        if not id or not state:
            raise WebhookRefused(400, f"{kind} without payload.id or payload.to[0].status")
        error = _obj(_first(payload.get("errors")))
        code = _text(error.get("code"))
        title = _text(error.get("title")) or _text(error.get("detail"))
        return DeliveryReport(
            self.carrier.name,
            id,
            _STATUS.get(state, ReportStatus.ACCEPTED),
            code,
            title or state,
            raw=_raw(event, payload, status=state, error_code=code, error_title=title),
        )

    def reply(self, kind: str) -> WebhookReply:
        return WebhookReply()


# --- reading an event defensively: Telnyx's schema, anything else is a 400 ------------------


def _event(call: WebhookCall) -> tuple[dict[str, Any], dict[str, Any]]:
    """``data`` and ``data.payload`` of a signed event; a 400 when they are not objects."""
    parsed = call.json
    if parsed is None:
        try:
            parsed = json.loads(call.body)
        except (ValueError, UnicodeDecodeError):
            raise WebhookRefused(400, "the body is not JSON") from None
    data = _obj(parsed).get("data") if isinstance(parsed, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("payload"), dict):
        raise WebhookRefused(400, "not a Telnyx event: no data.payload object")
    return data, data["payload"]


def _obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _first(value: object) -> object:
    items = _list(value)
    return items[0] if items else None


def _text(value: object) -> str | None:
    """A non-empty string field (Telnyx sends codes as strings; accept numbers too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return str(value)
    return value if isinstance(value, str) and value else None


def _parts(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return max(1, min(value, 255))
    return 1


def _when(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def _raw(event: dict[str, Any], payload: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """What is kept of an event: ids, type, times, encoding; never the text again."""
    keep = ("type", "direction", "encoding", "parts", "received_at", "completed_at")
    return {
        "kind": "telnyx",
        "event_id": event.get("id"),
        "event_type": event.get("event_type"),
        "occurred_at": event.get("occurred_at"),
        **{k: payload[k] for k in keep if k in payload},
        **extra,
    }


# --- the driver ------------------------------------------------------------------------------


class TelnyxCarrier(HttpApiCarrier):
    Settings = TelnyxSettings

    def __init__(self, settings: CarrierSettings) -> None:
        super().__init__(settings)
        assert isinstance(settings, TelnyxSettings)
        self.telnyx = settings
        self.clock: Callable[[], float] = time.time  # webhook timestamps; tests replace it

    def session_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.telnyx.api_key}"}

    def webhooks(self) -> TelnyxWebhooks:
        return TelnyxWebhooks(self)

    def request(self, sms: OutboundSms) -> dict[str, Any]:
        """The JSON body of ``POST /v2/messages`` for ``sms``."""
        body: dict[str, Any] = {"to": sms.to, "text": sms.text}
        if sms.source_addr:  # the dispatcher fills in the carrier's ``from``
            body["from"] = sms.source_addr
        # Both may go together: an alphanumeric sender id needs its profile; a number pool
        # is the profile without ``from``.
        if self.telnyx.messaging_profile_id:
            body["messaging_profile_id"] = self.telnyx.messaging_profile_id
        status_url = self.callback_url("status")
        if status_url:
            body["webhook_url"] = status_url
        return body

    async def submit(self, sms: OutboundSms) -> Submitted:
        http = self.session()
        url = f"{self.telnyx.api_url.rstrip('/')}/v2/messages"
        headers = {"Idempotency-Key": sms.message_id}
        try:
            async with http.post(url, json=self.request(sms), headers=headers) as resp:
                status = resp.status
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise TemporaryFailure(f"telnyx: {type(exc).__name__}: {exc}") from None
        data = _obj(body).get("data") if isinstance(body, dict) else None
        id = _text(_obj(data).get("id"))
        if 200 <= status < 300 and id:
            return Submitted((id,), whole=True)
        if 200 <= status < 300:  # taken or not? the same Idempotency-Key makes a retry safe
            raise TemporaryFailure(f"telnyx HTTP {status} without data.id")
        raise failure(status, body)


def failure(status: int, body: object) -> TemporaryFailure | PermanentFailure:
    """The failure an error answer means: retry, or bounce now (the tables above)."""
    error = _obj(_first(_obj(body).get("errors")))
    code = _text(error.get("code"))
    words = " - ".join(w for w in (_text(error.get("title")), _text(error.get("detail"))) if w)
    text = f"telnyx HTTP {status}: {(words or 'no error detail')[:200]}"
    if status == 429 or status >= 500 or code in TEMPORARY:
        return TemporaryFailure(text, code or str(status))
    if code in PERMANENT:
        return PermanentFailure(text, code, opt_out=dsn_codes.from_telnyx(code).opt_out)
    if status in (401, 403):  # our key or account: fixable by the operator, so retry
        return TemporaryFailure(text, code or str(status))
    if 400 <= status < 500:
        return PermanentFailure(text, code or str(status))
    return TemporaryFailure(text, code or str(status))
