"""What every driver that talks to its carrier over HTTPS shares (Twilio, Vonage, Telnyx, the
generic ``http`` type): one aiohttp session from ``start`` to ``stop``, with the driver's own
default headers and total timeout, and the callback URLs built from ``public_url``.

One session per carrier, not per submit: it keeps connections (and TLS sessions) alive
between submits, which is most of the cost of a submit to a cloud API.
"""

from __future__ import annotations

import aiohttp

from mailsms.carriers.base import Carrier, CarrierHooks, CarrierSettings
from mailsms.errors import TemporaryFailure


class HttpApiCarrier(Carrier):
    """Base of the HTTP API drivers; subclasses implement ``submit`` with :meth:`session`."""

    def __init__(self, settings: CarrierSettings) -> None:
        super().__init__(settings)
        self._http: aiohttp.ClientSession | None = None

    def session_headers(self) -> dict[str, str]:
        """Headers sent with every request (credentials, for most APIs)."""
        return {}

    async def start(self, hooks: CarrierHooks) -> None:
        timeout = aiohttp.ClientTimeout(total=float(getattr(self.settings, "timeout", 30.0)))
        self._http = aiohttp.ClientSession(headers=self.session_headers(), timeout=timeout)

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def session(self) -> aiohttp.ClientSession:
        """The open session; TemporaryFailure before ``start`` or after ``stop``."""
        if self._http is None:
            raise TemporaryFailure(f"{self.name}: carrier is not started")
        return self._http

    def callback_url(self, kind: str) -> str | None:
        """``{public_url}/webhooks/{name}/{kind}``, or None without a ``public_url``."""
        public_url: str | None = getattr(self.settings, "public_url", None)
        if not public_url:
            return None
        return f"{public_url.rstrip('/')}/webhooks/{self.name}/{kind}"
