"""IMAP APPEND delivery: the relay's other way out (``[relay] method = "imap"``).

For a site whose mail lives in a hosted mailbox and that has no smarthost the gateway may
use, or that wants SMS replies to land without crossing SMTP (no spam filter, no DMARC
alignment to get right): every mail the gateway writes is appended to one mailbox of an
``[[imap]]`` account. The appended message carries the keyword :data:`RELAYED`, which the
IMAP intake reading the same mailbox skips, so a reply never loops back as an SMS; it is
left unseen so that people notice it.

One connection per append: the relay's volume is that of SMS replies and bounces, and a
fresh login keeps the failure handling to "it did not work, retry later".
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from typing import Any

import aioimaplib  # type: ignore[import-untyped]  # no py.typed in 2.0.3

from mailsms.config import ImapSettings

RELAYED = "$MailsmsRelayed"


class AppendFailed(Exception):
    """The mail was not appended; the relay retries it with backoff."""


async def append(account: ImapSettings, mailbox: str, data: bytes, now: float | None = None) -> str:
    """APPEND ``data`` to ``mailbox``; returns the server's tagged answer (for the log)."""
    s = account
    client: Any
    if s.tls:
        context = ssl.create_default_context()
        if not s.validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        client = aioimaplib.IMAP4_SSL(
            s.host, s.effective_port, timeout=s.timeout, ssl_context=context
        )
    else:
        client = aioimaplib.IMAP4(s.host, s.effective_port, timeout=s.timeout)
    try:
        await client.wait_hello_from_server()
        await _ok(client.login(s.username, s.password), "LOGIN", s.timeout)
        date = now if now is not None else time.time()
        response = await _ok(
            client.append(data, mailbox=_quoted(mailbox), flags=f"({RELAYED})", date=date),
            f"APPEND to {mailbox}",
            s.timeout,
        )
        return b" ".join(bytes(x) for x in response.lines[-1:]).decode("utf-8", "replace")
    except (OSError, TimeoutError, aioimaplib.AioImapException) as exc:
        raise AppendFailed(
            f"IMAP {s.host}:{s.effective_port}: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.logout(), 2.0)
        transport = getattr(client.protocol, "transport", None)
        if transport is not None:
            transport.close()


async def _ok(call: Any, what: str, timeout: float) -> Any:
    response = await asyncio.wait_for(call, timeout)
    if response.result != "OK":
        text = b" ".join(bytes(x) for x in response.lines[-1:]).decode("utf-8", "replace")
        raise AppendFailed(f"{what}: {response.result} {text}")
    return response


def _quoted(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'
