"""One SMPP bind over one TCP (or TLS) connection.

A :class:`Session` owns the socket and everything that is per connection: sequence
numbers, the window of outstanding submits (a semaphore that a late response, not the
caller's timeout, gives back), per-request timeouts, enquire_link on idle, answering the
SMSC's enquire_link and unbind, and handing deliver_sm/data_sm to the carrier, whose
returned command_status goes into the response. It never reconnects: the carrier watches
:attr:`Session.closed` and opens a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mailsms.errors import TemporaryFailure

from . import status as st
from .pdu import (
    EMPTY,
    RESPONSE_BIT,
    Bind,
    Body,
    CommandId,
    DataSm,
    MessageResp,
    Pdu,
    PduError,
    ShortMessage,
    decode,
    encode,
    frame_length,
    response_id,
)

log = logging.getLogger("mailsms.carriers.smpp")

RequestHandler = Callable[[Pdu], Awaitable[int]]


class BindRefused(Exception):
    """The SMSC answered the bind with a non-zero command_status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"bind refused: {st.describe(status)}")
        self.status = status


@dataclass(frozen=True, slots=True)
class SessionConfig:
    host: str
    port: int
    bind_command: CommandId
    bind: Bind
    window: int = 10
    request_timeout: float = 10.0
    connect_timeout: float = 10.0
    enquire_link_interval: float = 30.0
    ssl: ssl.SSLContext | None = None


# Above this many octets waiting in the transport, a sender waits for the socket to drain.
_HIGH_WATER = 64 * 1024


@dataclass(slots=True)
class _Pending:
    """A request sent and not answered yet: its future, its slot, its current timer."""

    future: asyncio.Future[Pdu]
    windowed: bool
    command_id: CommandId
    timer: asyncio.TimerHandle | None = None


class Session:
    """A bound SMPP session; create it with :meth:`connect`."""

    def __init__(self, config: SessionConfig, handler: RequestHandler, label: str) -> None:
        self.config = config
        self.label = label
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.peer_system_id = ""
        self._handler = handler
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._write_lock = asyncio.Lock()
        self._out: list[bytes] = []  # PDUs queued in this loop turn, written as one
        self._window = asyncio.Semaphore(config.window)
        self._pending: dict[int, _Pending] = {}
        self._outstanding = 0  # windowed entries of _pending
        self._sequence = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_rx = time.monotonic()
        self._bound = False

    # ---- life cycle ------------------------------------------------------------------

    @classmethod
    async def connect(cls, config: SessionConfig, handler: RequestHandler, label: str) -> Session:
        """Open the connection and bind; raises BindRefused, OSError or TemporaryFailure."""
        session = cls(config, handler, label)
        try:
            await session._open()
        except BaseException:
            await session._teardown("bind failed")
            raise
        return session

    async def _open(self) -> None:
        c = self.config
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(c.host, c.port, ssl=c.ssl), c.connect_timeout
        )
        self._spawn(self._read_loop())
        resp = await self._request(c.bind_command, c.bind, windowed=False)
        if resp.status != 0:
            raise BindRefused(resp.status)
        self._bound = True
        self.peer_system_id = getattr(resp.body, "system_id", "")
        self._spawn(self._keepalive_loop())
        log.info(
            "bound %s to %s:%d as %s (SMSC %r)",
            self.label,
            c.host,
            c.port,
            c.bind_command.name.lower(),
            self.peer_system_id,
            extra={"event": "smpp.bound", "bind": self.label},
        )

    async def close(self, reason: str = "closed by us") -> None:
        """Unbind politely (waiting briefly for unbind_resp), then drop the connection."""
        if self.closed.is_set():
            return
        if self._bound and self._writer is not None and not self._writer.is_closing():
            self._bound = False
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self._request(CommandId.UNBIND, EMPTY, windowed=False),
                    min(self.config.request_timeout, 5.0),
                )
        await self._teardown(reason)

    async def _teardown(self, reason: str) -> None:
        if not self.closed.is_set():
            self.close_reason = reason
            self.closed.set()
            if self._bound:
                log.warning(
                    "%s lost: %s",
                    self.label,
                    reason,
                    extra={"event": "smpp.closed", "bind": self.label},
                )
        self._bound = False
        for seq, pending in list(self._pending.items()):
            self._finish(seq, pending, TemporaryFailure(f"SMPP session closed: {reason}"))
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.wait_closed(), 2.0)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def bound(self) -> bool:
        return self._bound and not self.closed.is_set()

    @property
    def outstanding(self) -> int:
        """Requests in the window (sent, no response yet)."""
        return self._outstanding

    # ---- requests --------------------------------------------------------------------

    async def submit(self, command_id: CommandId, body: ShortMessage | DataSm) -> Pdu:
        """Send submit_sm or data_sm within the window; TemporaryFailure on timeout."""
        if not self.bound:
            raise TemporaryFailure(f"{self.label} is not bound")
        if self._window.locked():  # only then is a timer worth its cost (wait_for = a task)
            try:
                await asyncio.wait_for(self._window.acquire(), self.config.request_timeout)
            except TimeoutError:
                raise TemporaryFailure(f"{self.label}: window full for too long") from None
        else:
            await self._window.acquire()  # returns at once
        return await self._request(command_id, body, windowed=True)

    async def _request(self, command_id: CommandId, body: Body, *, windowed: bool) -> Pdu:
        """Send one request and await its response; the window slot is already held.

        One timer per request, not ``wait_for``: at ``request_timeout`` it fails the caller
        with TemporaryFailure but keeps the slot, which the response, or a second timeout,
        gives back (a slow SMSC must not see more than ``window`` submits at once). A caller
        cancelled while waiting leaves the slot to the same timer.
        """
        seq = self._next_sequence()
        loop = asyncio.get_running_loop()
        pending = _Pending(loop.create_future(), windowed, command_id)
        self._pending[seq] = pending
        self._outstanding += windowed
        pending.timer = loop.call_later(self.config.request_timeout, self._late, seq, pending)
        try:
            await self._send(Pdu(command_id, seq, 0, body))
        except (OSError, ValueError) as exc:
            self._finish(seq, pending, TemporaryFailure(f"{self.label}: send failed: {exc}"))
        return await pending.future

    def _late(self, seq: int, pending: _Pending) -> None:
        """First timeout: fail the caller, keep the slot for one more timeout."""
        if self._pending.get(seq) is not pending:
            return
        timeout = self.config.request_timeout
        if not pending.future.done():
            name = pending.command_id.name.lower()
            failure = TemporaryFailure(f"{self.label}: no {name}_resp within {timeout:g}s")
            pending.future.set_exception(failure)
        loop = asyncio.get_running_loop()
        pending.timer = loop.call_later(timeout, self._expire, seq, pending)

    def _expire(self, seq: int, pending: _Pending) -> None:
        if self._pending.get(seq) is pending:
            self._finish(seq, pending, TemporaryFailure("expired"))

    def _finish(self, seq: int, pending: _Pending, result: Pdu | Exception) -> None:
        if self._pending.get(seq) is not pending:
            return
        del self._pending[seq]
        if pending.timer is not None:
            pending.timer.cancel()
        if pending.windowed:
            self._outstanding -= 1
            self._window.release()
        if pending.future.done():
            return
        if isinstance(result, Exception):
            pending.future.set_exception(result)
            # Retrieved by nobody when the caller already timed out: mark it seen.
            pending.future.exception()
        else:
            pending.future.set_result(result)

    def _next_sequence(self) -> int:
        # SMPP sequence numbers run 0x00000001..0x7FFFFFFF.
        self._sequence = self._sequence % 0x7FFF_FFFF + 1
        return self._sequence

    async def _send(self, pdu: Pdu) -> None:
        """Queue one PDU for this loop turn's write; wait only when the socket is backed up.

        PDUs sent in the same turn (a window's worth of submits woken by one read of
        responses) go out in one write: one syscall instead of one per PDU.
        """
        data = encode(pdu)
        writer = self._writer
        if writer is None or writer.is_closing():
            raise OSError("connection is closed")
        self._out.append(data)
        if len(self._out) == 1:
            asyncio.get_running_loop().call_soon(self._flush)
        if writer.transport.get_write_buffer_size() > _HIGH_WATER:
            async with self._write_lock:
                await writer.drain()

    def _flush(self) -> None:
        data = b"".join(self._out)
        self._out.clear()
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(data)

    # ---- incoming --------------------------------------------------------------------

    async def _read_loop(self) -> None:
        assert self._reader is not None
        reason = "connection closed by the SMSC"
        try:
            while True:
                head = await self._reader.readexactly(4)
                length = frame_length(head)
                frame = head + await self._reader.readexactly(length - 4)
                self._last_rx = time.monotonic()
                await self._on_frame(frame)
        except asyncio.IncompleteReadError:
            pass
        except PduError as exc:
            reason = f"protocol error: {exc}"
            log.error("%s: %s", self.label, reason, extra={"event": "smpp.protocol_error"})
        except OSError as exc:
            reason = f"connection error: {exc}"
        except asyncio.CancelledError:
            return
        self._spawn(self._teardown(reason))

    async def _on_frame(self, frame: bytes) -> None:
        try:
            pdu = decode(frame)
        except PduError as exc:
            if exc.framing:
                raise
            await self._on_malformed(exc, frame)
            return
        if pdu.command_id.is_response:
            self._on_response(pdu)
        elif pdu.command_id == CommandId.ENQUIRE_LINK:
            await self._reply(pdu, CommandId.ENQUIRE_LINK_RESP, 0, EMPTY)
        elif pdu.command_id == CommandId.UNBIND:
            self._bound = False
            await self._reply(pdu, CommandId.UNBIND_RESP, 0, EMPTY)
            self._spawn(self._teardown("unbind from the SMSC"))
        elif pdu.command_id in (CommandId.DELIVER_SM, CommandId.DATA_SM):
            self._spawn(self._deliver(pdu))
        else:
            # submit_sm or a bind sent to us: not something an SMSC may send an ESME.
            await self._reply(pdu, CommandId.GENERIC_NACK, 0x03, EMPTY)

    def _on_response(self, pdu: Pdu) -> None:
        pending = self._pending.get(pdu.sequence)
        if pending is None:
            log.warning(
                "%s: %s for unknown sequence %d",
                self.label,
                pdu.command_id.name.lower(),
                pdu.sequence,
                extra={"event": "smpp.unexpected_response"},
            )
            return
        self._finish(pdu.sequence, pending, pdu)

    async def _on_malformed(self, exc: PduError, frame: bytes) -> None:
        """Answer a PDU we cannot decode instead of dying on it (SMPP 3.4 section 4.3)."""
        log.error(
            "%s: malformed PDU (%s): %s",
            self.label,
            exc,
            frame[:64].hex(),
            extra={"event": "smpp.protocol_error"},
        )
        cid = exc.command_id or 0
        if cid & RESPONSE_BIT:
            pending = self._pending.get(exc.sequence)
            if pending is not None:
                failure = TemporaryFailure(f"{self.label}: malformed response: {exc}")
                self._finish(exc.sequence, pending, failure)
            return
        answer: CommandId = CommandId.GENERIC_NACK
        body: Body = EMPTY
        if cid in (CommandId.DELIVER_SM, CommandId.DATA_SM):
            answer, body = response_id(CommandId(cid)), MessageResp()
        with contextlib.suppress(OSError):
            await self._send(Pdu(answer, exc.sequence, exc.status, body))

    async def _deliver(self, pdu: Pdu) -> None:
        try:
            status = await self._handler(pdu)
        except Exception:
            log.exception("%s: deliver handler failed", self.label)
            status = st.ESME_RX_T_APPN
        answer = response_id(pdu.command_id)
        with contextlib.suppress(OSError):
            await self._reply(pdu, answer, status, MessageResp())

    async def _reply(self, request: Pdu, command_id: CommandId, status: int, body: Body) -> None:
        await self._send(Pdu(command_id, request.sequence, status, body))

    async def _keepalive_loop(self) -> None:
        interval = self.config.enquire_link_interval
        while self.bound:
            idle = time.monotonic() - self._last_rx
            if idle < interval:
                await asyncio.sleep(interval - idle)
                continue
            try:
                await self._request(CommandId.ENQUIRE_LINK, EMPTY, windowed=False)
            except TemporaryFailure:
                self._spawn(self._teardown("enquire_link unanswered"))
                return
