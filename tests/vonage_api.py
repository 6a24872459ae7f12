"""A local stand-in for Vonage's SMS API (the cloud cannot be reached from tests).

It speaks the documented wire format: ``POST /sms/json`` with form or JSON fields (``api_key``
plus ``api_secret``, or a signed request: ``timestamp`` and ``sig``), answering HTTP 200 with
``{"message-count": "N", "messages": [...]}``, one entry per part, each with ``message-id``
and ``status`` ("0" = accepted, else ``error-text``). Like Vonage it cuts the text itself:
GSM text at 160 septets alone or 153 per part (an extension character costs two), unicode at
70 UTF-16 units alone or 67 per part. That counting is written here from the specification,
not taken from mailsms, so a shared misunderstanding cannot pass.

Signed requests are checked with the vendor SDK's own ``Auth.check_signature`` (HMAC
methods) or its documented MD5-hash construction, not with mailsms's code.

``script(...)`` shapes the next answer: per-part statuses, another part count, another HTTP
status, or ``hang=True`` to hold the request until the server stops (for client timeouts).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from vonage_http_client.auth import Auth

from tests.local_api import LocalApi

_GSM_EXTENSION = "\f^{}\\[~]|€"


def vonage_parts(text: str, kind: str) -> list[str]:
    """Cut ``text`` the way Vonage documents: never inside an escape or a surrogate pair."""
    if kind == "unicode":
        units = [len(c.encode("utf-16-le")) // 2 for c in text]
        single, each = 70, 67
    else:
        units = [2 if c in _GSM_EXTENSION else 1 for c in text]
        single, each = 160, 153
    if sum(units) <= single:
        return [text]
    parts, start, used = [], 0, 0
    for i, size in enumerate(units):
        if used + size > each:
            parts.append(text[start:i])
            start, used = i, 0
        used += size
    parts.append(text[start:])
    return parts


@dataclass
class Scripted:
    statuses: tuple[str, ...] = ()  # per part; shorter than the parts: the rest are "0"
    parts: int | None = None  # answer this many messages[] entries instead of Vonage's count
    http_status: int = 200
    body: str | None = None  # a raw body instead of the JSON answer
    hang: bool = False


_ERROR_TEXT = {
    "1": "Throttled",
    "4": "Bad Credentials",
    "6": "Invalid Message",
    "14": "Invalid Signature",
}


class FakeVonage(LocalApi):
    def __init__(
        self,
        api_key: str,
        api_secret: str | None = None,
        signature_secret: str | None = None,
        signature_method: str = "md5hash",
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.api_secret = api_secret
        self.signature_secret = signature_secret
        self.signature_method = signature_method
        self.requests: list[dict[str, str]] = []
        self.scripted: list[Scripted] = []
        self._ids = itertools.count(0x0C000000217B7F02)

    def script(self, *statuses: str, **kw: Any) -> None:
        self.scripted.append(Scripted(statuses=statuses, **kw))

    def _authenticated(self, fields: dict[str, str]) -> bool:
        if fields.get("api_key") != self.api_key:
            return False
        if "sig" in fields:
            return self.signature_secret is not None and self._signed(fields)
        return self.api_secret is not None and fields.get("api_secret") == self.api_secret

    def _signed(self, fields: dict[str, str]) -> bool:
        assert self.signature_secret is not None
        if self.signature_method != "md5hash":
            auth = Auth(
                api_key=self.api_key,
                signature_secret=self.signature_secret,
                signature_method=self.signature_method,  # type: ignore[arg-type]
            )
            return auth.check_signature(dict(fields))
        # The SDK 4.x signs with HMACs only; this is Vonage's documented MD5-hash form.
        given = fields.get("sig", "").lower()
        data = "".join(
            f"&{k}={v.replace('&', '_').replace('=', '_')}"
            for k, v in sorted(fields.items())
            if k != "sig"
        )
        expected = hashlib.md5((data + self.signature_secret).encode()).hexdigest()
        return hmac.compare_digest(given, expected)

    async def sms(self, request: web.Request) -> web.Response:
        if request.content_type == "application/json":
            fields = {k: str(v) for k, v in (await request.json()).items()}
        else:
            fields = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append(fields)
        plan = self.scripted.pop(0) if self.scripted else Scripted()
        if plan.hang:
            await self.held.wait()
        if plan.body is not None or plan.http_status != 200:
            return web.Response(status=plan.http_status, text=plan.body or "error")
        if not self._authenticated(fields):
            return self._answer(fields, ["4"] if "sig" not in fields else ["14"])
        count = plan.parts or len(vonage_parts(fields.get("text", ""), fields.get("type", "")))
        statuses = [*plan.statuses, *["0"] * count][:count]
        return self._answer(fields, statuses)

    def _answer(self, fields: dict[str, str], statuses: list[str]) -> web.Response:
        messages: list[dict[str, str]] = []
        for status in statuses:
            if status == "0":
                entry = {
                    "to": fields.get("to", ""),
                    "message-id": f"{next(self._ids):016X}",
                    "status": "0",
                    "remaining-balance": "15.53590000",
                    "message-price": "0.03330000",
                    "network": "23410",
                }
                if "client-ref" in fields:
                    entry["client-ref"] = fields["client-ref"]
            else:
                entry = {"status": status, "error-text": _ERROR_TEXT.get(status, "Error")}
            messages.append(entry)
        body = {"message-count": str(len(messages)), "messages": messages}
        return web.Response(text=json.dumps(body), content_type="application/json")

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/sms/json", self.sms)

    async def start(self) -> FakeVonage:
        await self.start_server()
        return self
