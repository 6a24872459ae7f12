"""Vonage's SMS API (formerly Nexmo): submit over HTTPS, receipts and replies by webhook.

Where it sits: the dispatcher hands :meth:`VonageCarrier.submit` one encoded message; the web
layer (:mod:`mailsms.web.webhooks`) hands Vonage's calls to ``/webhooks/{name}/status`` and
``/webhooks/{name}/inbound`` to :class:`VonageWebhooks`, which verifies and reads them.

**Submit.** ``POST {api_url}/sms/json`` (form-encoded, as the vendor's SDK sends it) with
``from``, ``to`` (E.164 digits without ``+``), the whole ``text``, ``type=unicode`` when the
encoder chose UCS-2 (or a national shift table, which Vonage's ``text`` type cannot carry),
``client-ref`` = our message id (so a re-submit after a crash is visible as such in Vonage's
records: the SMS API does not deduplicate), ``status-report-req=1`` and ``callback`` =
``{public_url}/webhooks/{name}/status`` when ``public_url`` is set (else the receipt goes to
the account's dashboard URL). Credentials: ``api_key`` + ``api_secret``, or, when
``signature_secret`` is set, ``api_key`` + ``timestamp`` + ``sig`` (a signed request, as the
SDK does; the secret itself never leaves the process).

**Parts and carrier ids.** Vonage segments the text itself and answers one ``messages[]``
entry per part, in part order, each with its own ``message-id``; every part then gets its
own delivery receipt. The store keeps one carrier id per part (``Submitted.carrier_ids`` in
part order; the worker pads with None and cuts to our part count) and finds a receipt's part
by that id; with ``whole`` it keeps only the first id, as part 0, whose receipts then apply
to every part. So:

* Vonage's part count equals ours (the usual case: both cut GSM-7 at 153 septets and UCS-2 at
  67 units): one id per part, ``whole=False``. Each receipt lands on its own part and the
  message is delivered only when every part is (DESIGN invariant 4), failed when one fails.
* The counts differ (our encoder used a national shift table or transliteration that Vonage
  does not, or cut at a different character): Vonage's part *i* is not our part *i*, and a
  per-part mapping would either leave our extra parts without an id (never delivered, then
  expired by ``dlr.timeout`` and bounced although the phone has the text) or drop Vonage's
  extra ids (their receipts ignored). We submit ``whole=True`` with Vonage's first id: every
  part follows the first part's receipt, the message reaches a true terminal state, and the
  other parts' receipts are logged as unknown ids and dropped after ``dlr.unknown_keep``. A
  failure that hits only a later part is then missed; that is the price of a carrier that
  segments for us, and the warning log says which message it was.

**Refusals.** Vonage answers HTTP 200 with a per-part ``status``; ``_SUBMIT_STATUS`` below
maps each documented code (developer.vonage.com/api-errors/sms) to retry or fail. Codes the
operator can fix (credentials, credit, account, signature, callback) are temporary: the
message waits, retried with backoff until its maximum age, instead of bouncing. If some parts
were accepted and others refused, the accepted parts are already on their way; the message
is retried or failed as the refused parts say, and the error text counts the parts, because a
retry sends the accepted parts again. HTTP 429/5xx/408, 401/403, timeouts and connection
errors are temporary; another HTTP 4xx is permanent.

**Webhooks.** Vonage calls with GET (query) or POST (form or JSON). Receipts (``messageId``,
``status``, ``err-code``...) become :class:`DeliveryReport`; inbound messages (``msisdn``,
``to``, ``messageId``, ``text``...) become :class:`InboundSms`, or a :class:`Fragment` for
each part of a long one (``concat=true``, ``concat-ref``, ``concat-total``, ``concat-part``),
which the gateway stores and reassembles durably (``reassembly_timeout`` sweeps sets whose
parts stop coming). When ``signature_secret`` is set, every call must carry a valid ``sig``
over all its other parameters and a ``timestamp`` within :data:`SIGNATURE_TOLERANCE` of our
clock (Vonage's algorithm signs the timestamp, so this stops replays); see
:func:`signature`, which tests hold against the vendor SDK. Without it, the generic
``webhook_token`` bearer check applies; Vonage cannot add headers, so that suits a proxy that
does, and a Vonage carrier with neither setting has open webhooks. The reply is 200 with an
empty body: Vonage only needs a 2xx, and retries for 24 hours without one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import zlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
from pydantic import Field, model_validator

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
from mailsms.sms.reassemble import Fragment

log = logging.getLogger("mailsms.carriers.vonage")

SignatureMethod = Literal["md5hash", "md5", "sha1", "sha256", "sha512"]

SIGNATURE_TOLERANCE = 300.0
"""Seconds a signed webhook's ``timestamp`` may differ from our clock (either way): Vonage
sends a call within seconds, and five minutes absorbs clock skew while keeping a captured
call from being replayed later."""

_CALLBACK_MAX = 100  # Vonage refuses a longer `callback` (the SDK's SmsMessage says so too)

# SMS API response `status` (developer.vonage.com/api-errors/sms): meaning, permanent?
# Temporary = worth retrying, including what the operator fixes without touching the message.
_SUBMIT_STATUS: dict[int, tuple[str, bool]] = {
    1: ("Throttled", False),  # faster than the account's limit: back off
    2: ("Missing Parameters", False),  # we always send to/text: a missing `from` or key (config)
    3: ("Invalid Parameters", True),  # a value is invalid, in practice the destination number
    4: ("Invalid Credentials", False),  # api_key/api_secret: the operator fixes them
    5: ("Internal Error", False),  # Vonage's platform
    6: ("Invalid Message", True),  # unroutable, e.g. an unrecognised number prefix
    7: ("Number Barred", True),  # the destination is on Vonage's barred list
    8: ("Partner Account Barred", False),  # our account is suspended: support can lift it
    9: ("Partner Quota Violation", False),  # out of credit: "top up and retry"
    10: ("Too Many Existing Binds", False),  # "back off and retry"
    11: ("Account Not Enabled For HTTP", False),  # account provisioning (operator)
    12: ("Message Too Long", True),  # the same text fails again
    13: ("Communication Failed", False),  # Vonage could not reach the network
    14: ("Invalid Signature", False),  # signature_secret/signature_method mismatch (config)
    15: ("Invalid Sender Address", True),  # sender id not allowed to this destination
    16: ("Invalid TTL", True),  # we send no ttl; would fail again
    19: ("Facility Not Allowed", False),  # a feature not enabled on the account (operator)
    20: ("Invalid Message Class", True),  # we send no message-class; would fail again
    23: ("Bad Callback", False),  # public_url is wrong (config)
    29: ("Non-Whitelisted Destination", True),  # demo account: this number is not allowed
    32: ("Signature And API Secret Disallowed", False),  # config (we never send both)
    33: ("Number De-activated", True),  # the destination may not receive messages
}
# Any other status: temporary, retried until the maximum age, never dropped on a guess.

# Delivery receipt `status` -> ours. accepted/buffered are on the way; `unknown` means the
# network said nothing final, so the message stays submitted until dlr.timeout decides.
_DLR_STATUS: dict[str, ReportStatus] = {
    "delivered": ReportStatus.DELIVERED,
    "expired": ReportStatus.EXPIRED,
    "failed": ReportStatus.FAILED,
    "rejected": ReportStatus.FAILED,
    "accepted": ReportStatus.ACCEPTED,
    "buffered": ReportStatus.ACCEPTED,
    "unknown": ReportStatus.ACCEPTED,
}

_MAX_PARTS = 255  # a concatenation UDH counts parts in one octet
_MAX_REF = 0x7FFFFFFF  # the store keeps the reference in a 32-bit signed column


class VonageSettings(CarrierSettings):
    """A ``[[carrier]]`` of ``type = "vonage"``; keys named as Vonage names them."""

    api_key: str
    api_secret: str | None = Field(default=None, repr=False)
    signature_secret: str | None = Field(default=None, repr=False)
    signature_method: SignatureMethod = "md5hash"  # the dashboard's default, "MD5 hash"
    api_url: str = "https://rest.nexmo.com"
    public_url: str | None = None  # the base URL Vonage calls, for `callback`
    timeout: Duration = 30.0
    reassembly_timeout: Duration = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> VonageSettings:
        if not (self.api_secret or self.signature_secret):
            raise ValueError("set api_secret, or signature_secret to sign requests")
        if self.public_url and len(callback_url(self.public_url, self.name)) > _CALLBACK_MAX:
            raise ValueError(
                f"public_url: the status callback URL must be at most {_CALLBACK_MAX} characters"
            )
        return self


def callback_url(public_url: str, name: str) -> str:
    return f"{public_url.rstrip('/')}/webhooks/{name}/status"


def signature(params: Mapping[str, str], secret: str, method: SignatureMethod) -> str:
    """Vonage's ``sig`` over ``params`` (``sig`` itself left out), lowercase hex.

    The input is ``&key=value`` for every parameter in key order, each value with ``&`` and
    ``=`` replaced by ``_``; ``md5hash`` is MD5 of that string followed by the secret, the
    other methods are HMACs of it keyed with the secret. The timestamp is one of the
    parameters, so it is signed too.
    """
    data = "".join(
        f"&{key}={params[key].replace('&', '_').replace('=', '_')}"
        for key in sorted(params)
        if key != "sig"
    ).encode()
    if method == "md5hash":
        return hashlib.md5(data + secret.encode()).hexdigest()
    return hmac.new(secret.encode(), data, method).hexdigest()


class VonageWebhooks:
    """Vonage's webhook shape: GET or POST, ``sig``/``timestamp`` when signing is on."""

    methods: tuple[str, ...] = ("GET", "POST")

    def __init__(self, carrier: VonageCarrier, clock: Callable[[], float] = time.time) -> None:
        self.carrier = carrier
        self.clock = clock

    def verify(self, call: WebhookCall) -> None:
        settings = self.carrier.vonage
        if settings.signature_secret:
            self._check_signature(_fields(call), settings.signature_secret)
        elif settings.webhook_token:
            given = call.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), settings.webhook_token.encode()):
                raise WebhookRefused(
                    401, "a valid 'Authorization: Bearer <webhook_token>' is required"
                )
        # Neither: open, as docs/carriers/vonage.md says (for tests and closed networks).

    def _check_signature(self, fields: Mapping[str, str], secret: str) -> None:
        given = fields.get("sig", "")
        if not given:
            raise WebhookRefused(403, "missing sig: this carrier requires signed webhooks")
        expected = signature(fields, secret, self.carrier.vonage.signature_method)
        if not hmac.compare_digest(given.lower().encode(), expected.encode()):
            raise WebhookRefused(403, "invalid sig")
        try:
            stamp = float(int(fields.get("timestamp", "")))
        except (ValueError, OverflowError):
            raise WebhookRefused(403, "signed call without a valid timestamp") from None
        if abs(self.clock() - stamp) > SIGNATURE_TOLERANCE:
            raise WebhookRefused(403, "stale timestamp: the signed call is too old or too new")

    def inbound(self, call: WebhookCall) -> InboundSms | Fragment:
        fields = _fields(call)
        sender, to, id = _required(fields, "msisdn", "to", "messageId")
        text = fields.get("text", "")
        if fields.get("type") == "binary":
            # Binary content (a ringtone, an OTA setting) has no text; say that it came.
            text = f"[binary SMS not shown: {len(fields.get('data', '')) // 2} bytes]"
        received = _received_at(fields)
        if _is_concat(fields):
            ref, total, seq = _concat(fields)
            if total > 1:
                at = received if received is not None else self.clock()
                return Fragment(sender, to, ref, total, seq, text, id, at)
        return InboundSms(
            carrier=self.carrier.name,
            carrier_id=id,
            from_=sender,
            to=to,
            text=text,
            received_at=received,
            raw={"kind": "vonage", **fields},
        )

    def status(self, call: WebhookCall) -> DeliveryReport:
        fields = _fields(call)
        id, state = _required(fields, "messageId", "status")
        word = state.strip().lower()
        status = _DLR_STATUS.get(word, ReportStatus.ACCEPTED)
        err = fields.get("err-code", "").strip()[:20]
        code = err if err.strip("0") and status is not ReportStatus.DELIVERED else None
        if code is not None:
            text: str | None = f"{word}: {dsn_codes.from_vonage(code).reason}"
        else:
            text = word if status in (ReportStatus.FAILED, ReportStatus.EXPIRED) else None
        return DeliveryReport(
            self.carrier.name, id, status, code, text, raw={"kind": "vonage", **fields}
        )

    def reply(self, kind: str) -> WebhookReply:
        return WebhookReply(b"", "text/plain", 200)


def _fields(call: WebhookCall) -> dict[str, str]:
    """The call's parameters; JSON scalars in their JSON spelling (``true``, ``3``), which
    is how Vonage writes them when it signs, not Python's (``True``)."""
    fields = dict(call.params)
    if isinstance(call.json, dict):
        fields.update({str(k): _json_text(v) for k, v in call.json.items()})
    return fields


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _required(fields: Mapping[str, str], *names: str) -> list[str]:
    missing = [n for n in names if not fields.get(n)]
    if missing:
        raise WebhookRefused(400, f"missing field(s): {', '.join(missing)}")
    return [fields[n] for n in names]


def _is_concat(fields: Mapping[str, str]) -> bool:
    return fields.get("concat", "").lower() in ("true", "1") or "concat-total" in fields


def _concat(fields: Mapping[str, str]) -> tuple[int, int, int]:
    """(reference, total, part) of one part of a long SMS, or a 400 for values that cannot
    be (a part outside 1..total would never complete its set)."""
    raw_ref, raw_total, raw_part = _required(fields, "concat-ref", "concat-total", "concat-part")
    try:
        total, part = int(raw_total), int(raw_part)
    except ValueError:
        raise WebhookRefused(400, "concat-total and concat-part must be numbers") from None
    if not (1 <= total <= _MAX_PARTS and 1 <= part <= total):
        raise WebhookRefused(400, f"part {raw_part[:10]!r} of {raw_total[:10]!r}")
    return _reference(raw_ref), total, part


def _reference(value: str) -> int:
    """``concat-ref`` as the store's integer; a value that is not a small number (never
    seen, but not ours to refuse) maps to a stable hash, so its parts still meet."""
    if value.isascii() and value.isdigit() and len(value) <= 10 and int(value) <= _MAX_REF:
        return int(value)
    return zlib.crc32(value.encode("utf-8", "surrogatepass")) & _MAX_REF


def _received_at(fields: Mapping[str, str]) -> float | None:
    """``message-timestamp`` (``YYYY-MM-DD HH:MM:SS``, UTC), else None."""
    try:
        at = datetime.strptime(fields.get("message-timestamp", ""), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return at.replace(tzinfo=UTC).timestamp()


def _msisdn(number: str) -> str:
    """Vonage wants E.164 numbers without the ``+``; alphanumeric sender ids pass as they are."""
    return number[1:] if number.startswith("+") and number[1:].isdigit() else number


class VonageCarrier(HttpApiCarrier):
    Settings = VonageSettings

    def __init__(self, settings: CarrierSettings) -> None:
        super().__init__(settings)
        assert isinstance(settings, VonageSettings)
        self.vonage = settings

    def webhooks(self) -> VonageWebhooks:
        return VonageWebhooks(self)

    def request(self, sms: OutboundSms, now: float) -> dict[str, str]:
        """The form fields of the submit, credentials included."""
        unicode = sms.encoding == "ucs2" or sms.shift_table is not None
        form = {
            "api_key": self.vonage.api_key,
            "to": _msisdn(sms.to),
            "text": sms.text,
            "type": "unicode" if unicode else "text",
            "client-ref": sms.message_id,
            "status-report-req": "1",
        }
        if sms.source_addr:
            form["from"] = _msisdn(sms.source_addr)
        if self.vonage.public_url:
            form["callback"] = callback_url(self.vonage.public_url, self.name)
        if self.vonage.signature_secret:
            form["timestamp"] = str(int(now))
            form["sig"] = signature(
                form, self.vonage.signature_secret, self.vonage.signature_method
            )
        else:
            assert self.vonage.api_secret is not None  # the settings check ensures one
            form["api_secret"] = self.vonage.api_secret
        return form

    async def submit(self, sms: OutboundSms) -> Submitted:
        http = self.session()
        if not sms.source_addr:
            raise TemporaryFailure("vonage needs a sender: set `from` on the carrier")
        url = f"{self.vonage.api_url.rstrip('/')}/sms/json"
        try:
            async with http.post(url, data=self.request(sms, time.time())) as resp:
                status, body = resp.status, await resp.text()
        except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError) as exc:
            raise TemporaryFailure(f"vonage: {type(exc).__name__}: {exc}") from None
        result = outcome(status, body, len(sms.parts))
        if result.whole and len(sms.parts) > 1:
            log.warning(
                "vonage cut the text into a different number of parts: receipts of the "
                "first part stand for the whole message",
                extra={"event": "parts_differ", "id": sms.message_id, "carrier": self.name},
            )
        return result


def outcome(http_status: int, body: str, parts: int) -> Submitted:
    """What a ``/sms/json`` answer means: the ids (see the module docstring for how they map
    to our ``parts``), or the failure to raise."""
    if http_status in (401, 403, 408, 429) or http_status >= 500:
        raise TemporaryFailure(f"vonage HTTP {http_status}", str(http_status))
    if not 200 <= http_status < 300:
        raise PermanentFailure(f"vonage HTTP {http_status}", str(http_status))
    try:
        answer = json.loads(body)
    except ValueError:
        raise TemporaryFailure("vonage answered HTTP 200 without JSON") from None
    messages = answer.get("messages") if isinstance(answer, dict) else None
    if not isinstance(messages, list) or not messages:
        raise TemporaryFailure("vonage answered without messages[]")
    entries = [m if isinstance(m, dict) else {} for m in messages]
    refused = [m for m in entries if _status_code(m) != 0]
    if refused:
        raise _refusal(refused, len(entries))
    ids = tuple(str(m["message-id"]) if m.get("message-id") else None for m in entries)
    if len(ids) == parts:
        return Submitted(ids)
    return Submitted(ids[:1], whole=True)


def _status_code(entry: Mapping[str, Any]) -> int | None:
    try:
        return int(str(entry.get("status")))
    except ValueError:
        return None


def _refusal(refused: list[dict[str, Any]], total: int) -> TemporaryFailure | PermanentFailure:
    """One failure for the refused parts: permanent if any part's code is, so a retry is
    never spent on what cannot succeed."""
    codes = [_status_code(m) for m in refused]
    permanent = any(_SUBMIT_STATUS.get(c, ("", False))[1] for c in codes if c is not None)
    first = refused[0]
    code = codes[0]
    known = _SUBMIT_STATUS.get(code) if code is not None else None
    meaning = known[0] if known else "unknown status"
    detail = " ".join(str(first.get("error-text") or "").split())[:200]  # one line
    text = f"vonage refused the message: {meaning}" + (f": {detail}" if detail else "")
    if len(refused) < total:
        text += f" ({total - len(refused)} of {total} parts were accepted and already sent)"
    kind = PermanentFailure if permanent else TemporaryFailure
    # "status N": the submit status table, not a receipt err-code (their numbers overlap).
    return kind(text, f"status {first.get('status')!s:.20}")
