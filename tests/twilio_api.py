"""A local stand-in for Twilio's Messages API (the cloud cannot be reached from tests).

It speaks the documented wire format: form-encoded POST to
``/2010-04-01/Accounts/{AccountSid}/Messages.json`` with HTTP basic auth, answering 201 with
a JSON message resource (``sid``, ``status``...) or an error object (``code``, ``message``,
``status``). ``script(status, body)`` makes the next request fail.
"""

from __future__ import annotations

import base64
import itertools
from typing import Any

from aiohttp import web

from tests.local_api import LocalApi


class FakeTwilio(LocalApi):
    def __init__(self, account_sid: str, auth_token: str) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.requests: list[dict[str, str]] = []
        self.scripted: list[tuple[int, dict[str, Any]]] = []
        self._ids = itertools.count(1)

    def script(self, status: int, body: dict[str, Any]) -> None:
        self.scripted.append((status, body))

    async def messages(self, request: web.Request) -> web.Response:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response(
                {"code": 20003, "message": "Authenticate", "status": 401}, status=401
            )
        if request.match_info["sid"] != self.account_sid:
            return web.json_response(
                {"code": 20404, "message": "Not found", "status": 404}, status=404
            )
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append(form)
        if self.scripted:
            status, body = self.scripted.pop(0)
            return web.json_response(body, status=status)
        sid = f"SM{next(self._ids):032x}"
        return web.json_response(
            {
                "sid": sid,
                "account_sid": self.account_sid,
                "to": form.get("To"),
                "from": form.get("From"),
                "body": form.get("Body"),
                "status": "queued",
                "num_segments": "1",
                "direction": "outbound-api",
            },
            status=201,
        )

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self.messages)

    async def start(self) -> FakeTwilio:
        await self.start_server()
        return self
