"""The SMTP and LMTP edge: aiosmtpd protocol objects and one thin handler.

The handler's hooks return the reply; every decision is made by :class:`Intake`. SMTP
answers DATA once for all recipients (all were checked at RCPT); LMTP answers once per
recipient, in RCPT order, as RFC 2033 requires. ``250`` goes out only after the commit.
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import re
from collections.abc import Sequence
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session

from mailsms.address import Recipient
from mailsms.intake.accept import DsnEnvelope, Intake, RefusedError
from mailsms.intake.data import read_data
from mailsms.mail.dsn import parse_mail_params, parse_rcpt_params
from mailsms.policy import Refusal
from mailsms.web.metrics import Metrics

log = logging.getLogger("mailsms.intake")

# aiosmtpd's own replies carry no RFC 3463 enhanced status; these give them one.
_ENHANCED = {
    "552 Error: Too much mail data": "552 5.3.4 Message exceeds the size limit",
    "552 Error: message size exceeds fixed maximum message size": (
        "552 5.3.4 Message size exceeds the fixed maximum message size"
    ),
    "503 Error: need MAIL command": "503 5.5.1 Error: need MAIL command",
    "503 Error: need RCPT command": "503 5.5.1 Error: need RCPT command",
    "503 Error: nested MAIL command": "503 5.5.1 Error: nested MAIL command",
    "500 Line too long (see RFC5321 4.5.3.1.6)": "500 5.5.2 Line too long",
}


_DSN_KEYS = ("RET", "ENVID", "NOTIFY", "ORCPT")
# A path aiosmtpd's email._header_value_parser would return unchanged: a dot-atom local part
# and a plain domain in angle brackets, or <>. Measured: that parser was ~10% of the loop.
_SIMPLE_PATH = re.compile(
    r"^\s*<((?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)?)>(?:[ \t]+(\S.*?))?[ \t]*$"
)


class _Counting:
    """Mixin: rewrite aiosmtpd's bare replies, count every reply code in metrics, and let
    the RFC 3461 DSN parameters through (aiosmtpd refuses every MAIL/RCPT parameter it does
    not know, and upper-cases the ones it passes on, which would mangle ENVID and ORCPT)."""

    metrics: Metrics | None = None
    raw_params: str = ""

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        match = _SIMPLE_PATH.match(arg)
        if match:  # the everyday "<local@domain> PARAMS": no RFC 5322 header parser needed
            address, params = match.group(1) or "<>", match.group(2) or ""
        else:
            address, params = super()._getaddr(arg)  # type: ignore[misc]
        self.raw_params = params or ""
        return address, params

    def _getparams(self, params: Sequence[str]) -> dict[str, str | bool] | None:
        result: dict[str, str | bool] | None = super()._getparams(params)  # type: ignore[misc]
        if result is not None:
            for key in _DSN_KEYS:
                result.pop(key, None)  # the handler reads them from raw_params
        return result

    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA with the content read in blocks (:mod:`mailsms.intake.data`);
        the checks before ``354`` and the hook call after the content are aiosmtpd's own."""
        server: Any = self
        if await server.check_helo_needed() or await server.check_auth_needed("DATA"):
            return
        envelope = server.envelope
        assert envelope is not None and not server._decode_data
        if not envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            content = await read_data(
                server._reader, server.data_size_limit, server.line_length_limit
            )
        except asyncio.CancelledError:  # the connection was lost during DATA
            log.info("connection lost during DATA", extra={"event": "data_lost"})
            server._writer.close()
            raise
        if isinstance(content, str):
            server._set_post_data_state()
            await self.push(content)
            return
        envelope.content = envelope.original_content = content
        status = await server._call_handler_hook("DATA")
        server._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    async def push(self, status: Any) -> None:
        if isinstance(status, str):
            status = _ENHANCED.get(status, status)
            if self.metrics is not None:
                for line in status.split("\r\n"):
                    self.metrics.smtp_reply(line[:3])
        await super().push(status)  # type: ignore[misc]


class GatewaySMTP(_Counting, SMTP):
    pass


class GatewayLMTP(_Counting, LMTP):
    pass


class IntakeHandler:
    """aiosmtpd hooks; ``lmtp`` selects per-recipient DATA replies."""

    def __init__(self, intake: Intake, lmtp: bool = False) -> None:
        self.intake = intake
        self.lmtp = lmtp

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """Advertise DSN (RFC 3461): we honour NOTIFY, RET, ENVID and ORCPT."""
        session.host_name = hostname
        return [*responses[:-1], "250-DSN", responses[-1]]

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        refusal = self.intake.check_sender(address, _peer_ip(session))
        if refusal is not None:
            log.info(
                "sender refused",
                extra={"event": "refused", "stage": "MAIL", "code": refusal.status},
            )
            return refusal.reply
        try:
            ret, envid = parse_mail_params(_options(server))
        except ValueError as exc:
            return f"501 5.5.4 {exc}"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.mailsms_rcpts = []  # type: ignore[attr-defined]
        envelope.mailsms_dsn = DsnEnvelope(ret, envid)  # type: ignore[attr-defined]
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        accepted: list[Recipient] = envelope.mailsms_rcpts  # type: ignore[attr-defined]
        try:
            notify, orcpt = parse_rcpt_params(_options(server))
        except ValueError as exc:
            return f"501 5.5.4 {exc}"
        result = await self.intake.check_recipient(address, envelope.mail_from or "", len(accepted))
        if isinstance(result, Refusal):
            log.info(
                "recipient refused",
                extra={"event": "refused", "stage": "RCPT", "code": result.status},
            )
            return result.reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        accepted.append(result)
        envelope.mailsms_dsn.recipients.append((notify, orcpt))  # type: ignore[attr-defined]
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        rcpts: list[Recipient] = envelope.mailsms_rcpts  # type: ignore[attr-defined]
        raw = envelope.original_content or b""
        refusal = self.intake.check_authentication(raw, envelope.mail_from or "", _peer_ip(session))
        if refusal is not None:
            log.info(
                "sender not authenticated",
                extra={"event": "refused", "stage": "DATA", "code": refusal.status},
            )
            return "\r\n".join([refusal.reply] * len(rcpts)) if self.lmtp else refusal.reply
        try:
            accepted = await self.intake.accept_mail(
                raw,
                envelope.mail_from or "",
                rcpts,
                envelope.rcpt_tos,
                envelope.mailsms_dsn,  # type: ignore[attr-defined]
            )
        except RefusedError as exc:
            replies = [exc.refusal.reply] * len(rcpts)
        except Exception:  # never drop the session on a bug; the client keeps the mail
            log.exception("intake failed", extra={"event": "intake_bug"})
            replies = ["451 4.3.0 Internal error, try again later"] * len(rcpts)
        else:
            if not self.lmtp:
                return accepted.reply
            replies = accepted.replies()
        return "\r\n".join(replies) if self.lmtp else replies[0]


def _socket_access(path: str, mode: int | None, group: str | None) -> None:
    """Let the MTA's LMTP client (Postfix runs it as ``postfix``) connect to the socket."""
    if group is not None:
        os.chown(path, -1, grp.getgrnam(group).gr_gid)
    if mode is not None:
        os.chmod(path, mode)


def _options(server: SMTP) -> list[str]:
    """The command's parameters as the client sent them (case kept)."""
    return str(getattr(server, "raw_params", "") or "").split()


def _peer_ip(session: Session) -> str | None:
    peer = session.peer
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return None  # Unix socket


async def start_server(
    intake: Intake,
    metrics: Metrics,
    listen: str,
    *,
    lmtp: bool,
    hostname: str | None,
    max_size: int,
    timeout: float,
    socket_mode: int | None = None,
    socket_group: str | None = None,
) -> asyncio.base_events.Server:
    """Listen on ``host:port`` or ``unix:/path`` with the SMTP or LMTP protocol."""
    handler = IntakeHandler(intake, lmtp=lmtp)
    cls = GatewayLMTP if lmtp else GatewaySMTP

    def factory() -> SMTP:
        proto = cls(
            handler,
            hostname=hostname,
            data_size_limit=max_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            ident="mailsms",
            timeout=timeout,
        )
        proto.metrics = metrics
        return proto

    loop = asyncio.get_running_loop()
    if listen.startswith("unix:"):
        path = listen[len("unix:") :]
        server = await loop.create_unix_server(factory, path)
        _socket_access(path, socket_mode, socket_group)
        return server
    host, _, port = listen.rpartition(":")
    return await loop.create_server(factory, host.strip("[]"), int(port))
