"""One SMPP bind over one TCP (or TLS) connection.

A :class:`Session` owns the connection and everything that is per connection: sequence
numbers, the window of outstanding submits (a slot that a late response, not the caller's
timeout, gives back), per-request timeouts, enquire_link on idle, answering the SMSC's
enquire_link and unbind, and handing deliver_sm/data_sm to the carrier, whose returned
command_status goes into the response. It never reconnects: the carrier watches
:attr:`Session.closed` and opens a new one.

It is the connection's :class:`asyncio.Protocol` rather than a task reading a stream:
every submit costs a round trip through this code, so the read side parses a whole chunk
of PDUs in ``data_received`` and resolves their callers' futures directly, and the write
side sends the PDUs of one loop turn in one ``transport.write``. One timer per session,
not one per request, enforces the request timeouts.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from mailsms.errors import TemporaryFailure

from . import status as st
from .framing import Framer
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
    """A request sent and not answered yet: its future, its slot, when it times out.

    ``late`` is set at the first timeout, when the caller was failed but the slot kept;
    ``deadline`` is then the second timeout, which gives the slot back.
    """

    future: asyncio.Future[Pdu]
    windowed: bool
    command_id: CommandId
    deadline: float
    late: bool = False


class _Window:
    """The submit window: ``size`` slots, taken without awaiting while one is free.

    asyncio.Semaphore would do, at the cost of a coroutine per acquire and a Python-level
    wake-up scan per release, on every submit; slots are handed to waiters first come,
    first served.
    """

    __slots__ = ("_waiters", "free")

    def __init__(self, size: int) -> None:
        self.free = size
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def try_take(self) -> bool:
        """Take a slot if one is free and nobody queues for it."""
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return True
        return False

    async def take(self) -> None:
        """Wait for a slot (bound it with a timeout: a silent SMSC keeps them all)."""
        if self.try_take():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a slot, then cancelled before using it: pass it on
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def give(self) -> None:
        """Return a slot: to the first live waiter, else to the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1


class Session(asyncio.Protocol):
    """A bound SMPP session; create it with :meth:`connect`."""

    def __init__(self, config: SessionConfig, handler: RequestHandler, label: str) -> None:
        self.config = config
        self.label = label
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.peer_system_id = ""
        self._handler = handler
        self._loop = asyncio.get_running_loop()  # kept: each lookup costs a getpid()
        self._transport: asyncio.Transport | None = None
        self._framer = Framer()
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._writable = asyncio.Event()  # cleared while the transport is above high water
        self._writable.set()
        self._paused = False  # (the same, read on every submit without a method call)
        self._out: list[bytes] = []  # PDUs queued in this loop turn, written as one
        self._flush_due = False  # a _flush is scheduled
        self._window = _Window(config.window)
        self._pending: dict[int, _Pending] = {}
        self._outstanding = 0  # windowed entries of _pending
        self._timer: asyncio.TimerHandle | None = None  # at the earliest deadline
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
        await asyncio.wait_for(
            self._loop.create_connection(lambda: self, c.host, c.port, ssl=c.ssl),
            c.connect_timeout,
        )
        resp = await self._request(c.bind_command, c.bind, windowed=False)
        if resp.status != 0:
            raise BindRefused(resp.status)
        # Never bound once torn down (the connection may have dropped during the bind): the
        # bound property relies on it.
        self._bound = not self.closed.is_set()
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
        if self._bound and self._transport is not None and not self._transport.is_closing():
            self._bound = False
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self._request(CommandId.UNBIND, EMPTY, windowed=False),
                    min(self.config.request_timeout, 5.0),
                )
        await self._teardown(reason)

    async def _teardown(self, reason: str) -> None:
        was_bound, self._bound = self._bound, False
        if not self.closed.is_set():
            self.close_reason = reason
            self.closed.set()
            if was_bound:
                log.warning(
                    "%s lost: %s",
                    self.label,
                    reason,
                    extra={"event": "smpp.closed", "bind": self.label},
                )
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for seq, pending in list(self._pending.items()):
            self._finish(seq, pending, TemporaryFailure(f"SMPP session closed: {reason}"))
        if self._transport is not None:
            self._flush()  # an unbind_resp queued in this turn still goes out
            self._transport.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._lost), 2.0)
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
        return self._bound  # cleared before closed is set, never set after (_teardown, _open)

    @property
    def outstanding(self) -> int:
        """Requests in the window (sent, no response yet)."""
        return self._outstanding

    # ---- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not subclass asyncio.Transport, hence a cast).
        self._transport = cast(asyncio.Transport, transport)
        self._transport.set_write_buffer_limits(high=_HIGH_WATER)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._lost.done():
            self._lost.set_result(None)
        self._paused = False
        self._writable.set()  # let blocked senders find out
        reason = "connection closed by the SMSC" if exc is None else f"connection error: {exc}"
        if not self.closed.is_set():
            self._spawn(self._teardown(reason))

    def pause_writing(self) -> None:
        self._paused = True
        self._writable.clear()

    def resume_writing(self) -> None:
        self._paused = False
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        self._last_rx = time.monotonic()
        framer = self._framer
        for frame in framer.feed(data):
            self._on_frame(frame)
        if not self._flush_due:
            # Scheduled now, after the wake-ups of the callers whose responses these were:
            # what they submit next goes out in the same loop turn as their wake-up, not
            # one turn (and one more poll of the socket) later.
            self._flush_due = True
            self._loop.call_soon(self._flush)
        if framer.error is not None and not self.closed.is_set():
            reason = f"protocol error: {framer.error}"
            log.error("%s: %s", self.label, reason, extra={"event": "smpp.protocol_error"})
            self._spawn(self._teardown(reason))

    # ---- requests --------------------------------------------------------------------

    def submit(self, command_id: CommandId, body: ShortMessage | DataSm) -> Awaitable[Pdu]:
        """Send submit_sm or data_sm within the window; await the response.

        TemporaryFailure when not bound or on timeout. Not a coroutine: with a slot free
        and the socket keeping up, the awaitable is the response's future itself, which
        saves a coroutine frame per submit, on the way out and on the wake-up.
        """
        if not self.bound:
            raise TemporaryFailure(f"{self.label} is not bound")
        if not self._window.try_take():
            return self._submit_later(command_id, body)
        if not self._paused:
            return self._start(command_id, body, windowed=True)
        return self._request(command_id, body, windowed=True)

    async def _submit_later(self, command_id: CommandId, body: ShortMessage | DataSm) -> Pdu:
        """submit with the window full: wait for a slot, at most ``request_timeout``."""
        try:
            await asyncio.wait_for(self._window.take(), self.config.request_timeout)
        except TimeoutError:
            raise TemporaryFailure(f"{self.label}: window full for too long") from None
        return await self._request(command_id, body, windowed=True)

    async def _request(self, command_id: CommandId, body: Body, *, windowed: bool) -> Pdu:
        """Send one request and await its response (see :meth:`_start`)."""
        response = self._start(command_id, body, windowed=windowed)
        if self._paused:
            await self._writable.wait()
        return await response

    def _start(self, command_id: CommandId, body: Body, *, windowed: bool) -> asyncio.Future[Pdu]:
        """Queue one request; its response (or TemporaryFailure) will be in the future.

        The window slot, if ``windowed``, is already held. At ``request_timeout`` the
        caller fails with TemporaryFailure but the slot stays taken until the response, or
        a second timeout, gives it back (a slow SMSC must not see more than ``window``
        submits at once). A caller cancelled while waiting leaves the slot to the same
        timeouts.
        """
        seq = self._next_sequence()
        loop = self._loop
        deadline = loop.time() + self.config.request_timeout
        pending = _Pending(loop.create_future(), windowed, command_id, deadline)
        self._pending[seq] = pending
        self._outstanding += windowed
        if self._timer is None:
            # Later requests have later deadlines: the armed timer is never too late.
            self._timer = loop.call_at(deadline, self._on_timer)
        try:
            self._send(Pdu(command_id, seq, 0, body))
        except (OSError, ValueError) as exc:
            self._finish(seq, pending, TemporaryFailure(f"{self.label}: send failed: {exc}"))
        return pending.future

    def _on_timer(self) -> None:
        """Fail or expire what is due, then wait for the next deadline."""
        self._timer = None
        now = self._loop.time()
        due = now + 0.001  # the loop's clock ticks in milliseconds: never fire a tick early
        timeout = self.config.request_timeout
        earliest = 0.0
        for seq, pending in list(self._pending.items()):
            if pending.deadline <= due:
                if pending.late:
                    self._finish(seq, pending, TemporaryFailure("expired"))
                    continue
                self._late(pending, timeout)
                pending.deadline = now + timeout
            if not earliest or pending.deadline < earliest:
                earliest = pending.deadline
        if earliest:
            self._timer = self._loop.call_at(earliest, self._on_timer)

    def _late(self, pending: _Pending, timeout: float) -> None:
        """First timeout: fail the caller, keep the slot for one more timeout."""
        pending.late = True
        if not pending.future.done():
            name = pending.command_id.name.lower()
            failure = TemporaryFailure(f"{self.label}: no {name}_resp within {timeout:g}s")
            pending.future.set_exception(failure)

    def _finish(self, seq: int, pending: _Pending, result: Pdu | Exception) -> None:
        if self._pending.get(seq) is not pending:
            return
        del self._pending[seq]
        if pending.windowed:
            self._outstanding -= 1
            self._window.give()
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

    def _send(self, pdu: Pdu) -> None:
        """Queue one PDU for this loop turn's write; OSError if the connection is gone.

        PDUs sent in the same turn (a window's worth of submits woken by one chunk of
        responses) go out in one write: one syscall instead of one per PDU. Callers that
        can wait do so while the transport is above its high-water mark.
        """
        data = encode(pdu)
        transport = self._transport
        if transport is None or transport.is_closing():
            raise OSError("connection is closed")
        self._out.append(data)
        if not self._flush_due:
            self._flush_due = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        if not self._out:
            return
        data = b"".join(self._out)
        self._out.clear()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    # ---- incoming --------------------------------------------------------------------

    def _on_frame(self, frame: bytes) -> None:
        try:
            pdu = decode(frame)
        except PduError as exc:
            self._on_malformed(exc, frame)
            return
        command_id = pdu.command_id
        if command_id & RESPONSE_BIT:
            self._on_response(pdu)
        elif command_id == CommandId.ENQUIRE_LINK:
            self._reply(pdu, CommandId.ENQUIRE_LINK_RESP, 0, EMPTY)
        elif command_id == CommandId.UNBIND:
            self._bound = False
            self._reply(pdu, CommandId.UNBIND_RESP, 0, EMPTY)
            self._spawn(self._teardown("unbind from the SMSC"))
        elif command_id in (CommandId.DELIVER_SM, CommandId.DATA_SM):
            self._spawn(self._deliver(pdu))
        else:
            # submit_sm or a bind sent to us: not something an SMSC may send an ESME.
            self._reply(pdu, CommandId.GENERIC_NACK, 0x03, EMPTY)

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

    def _on_malformed(self, exc: PduError, frame: bytes) -> None:
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
            self._send(Pdu(answer, exc.sequence, exc.status, body))

    async def _deliver(self, pdu: Pdu) -> None:
        try:
            status = await self._handler(pdu)
        except Exception:
            log.exception("%s: deliver handler failed", self.label)
            status = st.ESME_RX_T_APPN
        if self._paused:
            await self._writable.wait()
        with contextlib.suppress(OSError):
            self._reply(pdu, response_id(pdu.command_id), status, MessageResp())

    def _reply(self, request: Pdu, command_id: CommandId, status: int, body: Body) -> None:
        """Queue a response; sent in this turn's write, never waiting for the socket."""
        self._send(Pdu(command_id, request.sequence, status, body))

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
