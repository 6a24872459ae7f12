"""A local stand-in for Telnyx's Messaging API v2 (the cloud cannot be reached from tests).

It speaks the documented wire format: ``POST /v2/messages`` with ``Authorization: Bearer``
and a JSON body (``from``, ``to``, ``text``, ``messaging_profile_id``, ``webhook_url``),
answering 200 with ``{"data": {message}}`` (``id``, ``to[0].status`` ``queued``, ``parts``)
or an error ``{"errors": [{"code", "title", "detail"}]}``. An ``Idempotency-Key`` seen
before gets the first answer again. ``script(status, body)`` makes the next request fail,
``hang()`` makes it never answer (the driver's timeout must fire).

It also plays Telnyx calling us: :meth:`FakeTelnyx.event` builds a ``message.*`` webhook
body, :meth:`FakeTelnyx.sign` signs it with a fresh Ed25519 key (``public_key`` is its
base64 public half, for the carrier's settings) the way Telnyx does: base64 signature of
``f"{timestamp}|{body}"`` in ``telnyx-signature-ed25519``, the time in ``telnyx-timestamp``.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import time
import uuid
from typing import Any

from aiohttp import web
from nacl.signing import SigningKey

from tests.local_api import LocalApi

# GSM 03.38 default alphabet and its extension table: how Telnyx counts parts.
_GSM = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXT = set("^{}\\[~]|€\f")


def parts_of(text: str) -> tuple[str, int]:
    """Telnyx's encoding and part count for ``text`` (GSM-7 153/160, UCS-2 67/70)."""
    if all(c in _GSM or c in _GSM_EXT for c in text):
        units = sum(2 if c in _GSM_EXT else 1 for c in text)
        return "GSM-7", 1 if units <= 160 else math.ceil(units / 153)
    units = len(text.encode("utf-16-le")) // 2
    return "UCS-2", 1 if units <= 70 else math.ceil(units / 67)


def error(code: str, title: str, detail: str = "") -> dict[str, Any]:
    return {"errors": [{"code": code, "title": title, "detail": detail or title}]}


class FakeTelnyx(LocalApi):
    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key
        self.signing_key = SigningKey.generate()
        self.public_key = base64.b64encode(bytes(self.signing_key.verify_key)).decode()
        self.requests: list[dict[str, Any]] = []  # JSON bodies, in order
        self.keys: list[str | None] = []  # the Idempotency-Key of each request
        self.sent: dict[str, dict[str, Any]] = {}  # message id -> message resource
        self.scripted: list[tuple[int, dict[str, Any]] | None] = []  # None: hang
        self._answers: dict[str, dict[str, Any]] = {}
        self._events = itertools.count(1)

    def script(self, status: int, body: dict[str, Any]) -> None:
        self.scripted.append((status, body))

    def hang(self) -> None:
        """The next request gets no answer until stop()."""
        self.scripted.append(None)

    async def messages(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            body = error("10009", "Authentication failed", "Could not understand the API key")
            return web.json_response(body, status=401)
        try:
            sent = await request.json()
        except ValueError:
            return web.json_response(error("10015", "Bad Request"), status=400)
        key = request.headers.get("Idempotency-Key")
        self.requests.append(sent)
        self.keys.append(key)
        if key is not None and key in self._answers:
            return web.json_response({"data": self._answers[key]})
        if self.scripted:
            scripted = self.scripted.pop(0)
            if scripted is None:
                await self.held.wait()
                return web.json_response(error("10007", "Unexpected error"), status=500)
            return web.json_response(scripted[1], status=scripted[0])
        refused = self._validate(sent)
        if refused is not None:
            return web.json_response(refused, status=422)
        message = self._message(sent)
        self.sent[message["id"]] = message
        if key is not None:
            self._answers[key] = message
        return web.json_response({"data": message})

    def _validate(self, sent: dict[str, Any]) -> dict[str, Any] | None:
        if not isinstance(sent.get("to"), str) or not sent["to"].startswith("+"):
            return error("40310", "Invalid 'to' address")
        if not sent.get("from") and not sent.get("messaging_profile_id"):
            return error("10004", "Missing required parameter", "'from' is required")
        if not sent.get("text"):
            return error("40316", "No content provided for message")
        return None

    def _message(self, sent: dict[str, Any]) -> dict[str, Any]:
        encoding, parts = parts_of(sent["text"])
        return {
            "record_type": "message",
            "direction": "outbound",
            "id": str(uuid.uuid4()),
            "type": "SMS",
            "messaging_profile_id": sent.get("messaging_profile_id"),
            "from": {"phone_number": sent.get("from"), "carrier": "TELNYX LLC"},
            "to": [{"phone_number": sent["to"], "status": "queued", "carrier": "T-MOBILE"}],
            "text": sent["text"],
            "encoding": encoding,
            "parts": parts,
            "webhook_url": sent.get("webhook_url"),
            "errors": [],
        }

    # --- Telnyx calling the gateway ---------------------------------------------------------

    def event(self, event_type: str, payload: dict[str, Any]) -> bytes:
        """A webhook body as Telnyx sends it."""
        data = {
            "record_type": "event",
            "id": f"evt-{next(self._events)}",
            "event_type": event_type,
            "occurred_at": "2024-05-01T10:00:00.000+00:00",
            "payload": payload,
        }
        return json.dumps({"data": data, "meta": {"attempt": 1}}).encode()

    def finalized(self, message_id: str, status: str, code: str | None = None) -> bytes:
        """``message.finalized`` for a message we sent: ``status`` and maybe an error."""
        message = json.loads(json.dumps(self.sent[message_id]))
        message["to"][0]["status"] = status
        if code is not None:
            message["errors"] = [{"code": code, "title": f"Telnyx error {code}"}]
        return self.event("message.finalized", message)

    def received(
        self, id: str, frm: str, to: str, text: str, parts: int = 1, media: tuple[str, ...] = ()
    ) -> bytes:
        """``message.received``: an SMS from a phone to our number."""
        payload = {
            "record_type": "message",
            "direction": "inbound",
            "id": id,
            "type": "MMS" if media else "SMS",
            "from": {"phone_number": frm, "carrier": "T-MOBILE", "line_type": "Wireless"},
            "to": [{"phone_number": to, "status": "webhook_delivered"}],
            "text": text,
            "media": [{"url": url, "content_type": "image/jpeg"} for url in media],
            "encoding": parts_of(text)[0],
            "parts": parts,
            "received_at": "2024-05-01T09:59:58.000+00:00",
            "errors": [],
        }
        return self.event("message.received", payload)

    def sign(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """The headers Telnyx sends with ``body``: signature, timestamp, content type."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signed = self.signing_key.sign(stamp.encode() + b"|" + body).signature
        return {
            "telnyx-signature-ed25519": base64.b64encode(signed).decode(),
            "telnyx-timestamp": stamp,
            "Content-Type": "application/json",
        }

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/messages", self.messages)

    async def start(self) -> FakeTelnyx:
        await self.start_server()
        return self
