"""The baseline for ``bench/intake.py``: aiosmtpd with a handler that only answers 250.

It sets up the server the way ``mailsms.intake.smtp.start_server`` does (same protocol
class, same keyword arguments, ``loop.create_server``, uvloop when installed), so that
the only difference the benchmark sees is what the gateway does per message: parse,
encode, commit to SQLite, log, count, dispatch.

Usage: ``python bench/bare_smtpd.py HOST:PORT``; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from aiosmtpd.smtp import SMTP


class AcceptAll:
    """Answers 250 to DATA and throws the mail away."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 2.0.0 OK"


async def serve(listen: str) -> None:
    host, _, port = listen.rpartition(":")
    handler = AcceptAll()

    def factory() -> SMTP:
        # The gateway's settings: 10 MiB limit, SMTPUTF8, raw bytes, 300 s timeout.
        return SMTP(
            handler,
            data_size_limit=10 * 1024 * 1024,
            enable_SMTPUTF8=True,
            decode_data=False,
            ident="bare",
            timeout=300.0,
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, host, int(port))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    listen = sys.argv[1]
    try:
        import uvloop  # the gateway runs on uvloop when it is installed: so does the baseline
    except ImportError:
        asyncio.run(serve(listen))
    else:
        uvloop.run(serve(listen))


if __name__ == "__main__":
    main()
