"""The plumbing every local stand-in for a carrier's cloud API shares (tests/twilio_api.py,
tests/vonage_api.py, tests/telnyx_api.py, the generic http carrier's): an aiohttp server on
127.0.0.1, port 0, its base URL, and a stop that first releases requests held open (to
script a timeout) so the server can shut down."""

from __future__ import annotations

import asyncio

from aiohttp import web


class LocalApi:
    """Subclasses add their routes in :meth:`routes`; ``start`` returns the instance."""

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.held = asyncio.Event()  # set at stop: a handler holding a request returns

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start_server(self) -> None:
        app = web.Application()
        self.routes(app)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        self.held.set()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
