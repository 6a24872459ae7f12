"""Twilio's Programmable Messaging API: submit over HTTPS, reports and replies by webhook.

Twilio takes the whole text and segments it itself, so a submit covers every part with one
``MessageSid`` (``Submitted.whole``). Status callbacks (``MessageStatus``) and incoming
messages arrive on ``/webhooks/{name}/status`` and ``/webhooks/{name}/inbound``, signed with
``X-Twilio-Signature`` (HMAC-SHA1 of the URL Twilio called plus the sorted form fields, keyed
with the auth token); :func:`signature` computes it, and tests check it against twilio's own
``RequestValidator``. ``api_url`` is configurable so tests can point it at a local server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

import aiohttp

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

# Twilio REST error codes that no retry will fix (https://www.twilio.com/docs/api/errors).
_PERMANENT = {
    21211,  # invalid 'To' phone number
    21212,  # invalid 'From' phone number
    21408,  # permission to send to this region not enabled
    21606,  # the 'From' number is not a valid message-capable number
    21610,  # the recipient replied STOP (opted out)
    21612,  # the 'To' number is not reachable by this route
    21614,  # 'To' number is not a valid mobile number
    21617,  # body exceeds the 1600 character limit
    30004,  # message blocked
    30005,  # unknown destination handset
    30006,  # landline or unreachable carrier
}


class TwilioSettings(CarrierSettings):
    account_sid: str
    auth_token: str
    api_url: str = "https://api.twilio.com"
    public_url: str | None = None  # the base URL Twilio calls (and signs), behind a proxy
    messaging_service_sid: str | None = None
    timeout: Duration = 30.0


def signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """X-Twilio-Signature for a form POST: base64(HMAC-SHA1(token, url + k1v1k2v2...))."""
    data = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


_STATUS = {
    "delivered": ReportStatus.DELIVERED,
    "undelivered": ReportStatus.FAILED,
    "failed": ReportStatus.FAILED,
}
_EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


class TwilioWebhooks:
    """Twilio's webhook shape: form fields, ``X-Twilio-Signature``, empty TwiML back."""

    methods: tuple[str, ...] = ("POST",)

    def __init__(self, carrier: TwilioCarrier) -> None:
        self.carrier = carrier

    def verify(self, call: WebhookCall) -> None:
        settings = self.carrier.twilio
        given = call.headers.get("X-Twilio-Signature", "")
        base = settings.public_url
        url = f"{base.rstrip('/')}{call.path_qs}" if base else call.url
        expected = signature(settings.auth_token, url, call.form)  # the query is in the URL
        if not (given and hmac.compare_digest(given.encode(), expected.encode())):
            raise WebhookRefused(403, "missing or invalid X-Twilio-Signature")

    def inbound(self, call: WebhookCall) -> InboundSms:
        params = call.params
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
            carrier=self.carrier.name,
            carrier_id=sid,
            from_=sender,
            to=to,
            text=text,
            segments=max(1, _int(params.get("NumSegments"))),
            raw=dict(params),
        )

    def status(self, call: WebhookCall) -> DeliveryReport:
        params = call.params
        sid, state = _required(params, "MessageSid", "MessageStatus")
        return DeliveryReport(
            self.carrier.name,
            sid,
            _STATUS.get(state, ReportStatus.ACCEPTED),
            params.get("ErrorCode") or None,
            params.get("ErrorMessage") or state,
            raw={"kind": "twilio", **params},
        )

    def reply(self, kind: str) -> WebhookReply:
        return WebhookReply(_EMPTY_TWIML, "text/xml")


def _required(params: Mapping[str, str], *names: str) -> list[str]:
    missing = [n for n in names if not params.get(n)]
    if missing:
        raise WebhookRefused(400, f"missing field(s): {', '.join(missing)}")
    return [params[n] for n in names]


def _int(value: str | None) -> int:
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0


class TwilioCarrier(HttpApiCarrier):
    Settings = TwilioSettings

    def __init__(self, settings: CarrierSettings) -> None:
        super().__init__(settings)
        assert isinstance(settings, TwilioSettings)
        self.twilio = settings

    def session_headers(self) -> dict[str, str]:
        pair = f"{self.twilio.account_sid}:{self.twilio.auth_token}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}

    def webhooks(self) -> TwilioWebhooks:
        return TwilioWebhooks(self)

    async def submit(self, sms: OutboundSms) -> Submitted:
        http = self.session()
        form = {"To": sms.to, "Body": sms.text}
        if self.twilio.messaging_service_sid:
            form["MessagingServiceSid"] = self.twilio.messaging_service_sid
        elif sms.source_addr:
            form["From"] = sms.source_addr
        status_url = self.callback_url("status")
        if status_url:
            form["StatusCallback"] = status_url
        url = (
            f"{self.twilio.api_url.rstrip('/')}/2010-04-01/Accounts/"
            f"{self.twilio.account_sid}/Messages.json"
        )
        try:
            async with http.post(url, data=form) as resp:
                body = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise TemporaryFailure(f"twilio: {type(exc).__name__}: {exc}") from None
        if 200 <= status < 300 and isinstance(body, dict) and body.get("sid"):
            return Submitted((str(body["sid"]),), whole=True)
        raise _failure(status, body)


def _failure(status: int, body: object) -> TemporaryFailure | PermanentFailure:
    info = body if isinstance(body, dict) else {}
    code = info.get("code")
    text = f"twilio HTTP {status}: {info.get('message') or 'no message'}"
    if status == 429 or status >= 500 or code in (20429, 20500, 20503):
        return TemporaryFailure(text, str(code or status))
    if code in _PERMANENT or status in (400, 404):
        return PermanentFailure(text, str(code or status), opt_out=code == 21610)
    if status in (401, 403):  # our credentials: fixable by the operator, so retry
        return TemporaryFailure(text, str(code or status))
    return PermanentFailure(text, str(code or status))
