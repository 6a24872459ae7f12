"""The gateway's side of the parse workers (:mod:`mailsms.intake.parse_worker`).

``smtp.parse_workers`` child processes are started by ``mailsms serve`` right after start-up
(:meth:`ParsePool.warm`), otherwise on the first mail (an in-process gateway that never
receives mail, as in most tests, pays nothing). Each request goes to the worker
with the fewest in flight. The pool never decides anything a worker could get wrong: when a
worker is gone (crashed, killed) or fails on a mail, the intake parses that mail on the loop
itself, exactly as with ``parse_workers = 0``, so a mail is never refused because of the
pool; a dead worker is replaced on the next mail, and after three deaths in a row the pool
gives up and the loop parses everything (logged as an error).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import marshal
import pickle
import sys
from dataclasses import dataclass
from typing import Any

from mailsms.intake.parse_worker import FAILED, LENGTH, NO_TEXT, OK, frame
from mailsms.mail.parse import BodyOptions, Extracted, NoTextError
from mailsms.model import PartSpec
from mailsms.sms.encode import Encoded, SmsOptions, TooLong

log = logging.getLogger("mailsms.intake")

_GIVE_UP_AFTER = 3  # worker deaths in a row


class WorkerUnavailable(Exception):
    """No answer from a worker for this mail: parse it on the loop instead."""


@dataclass(frozen=True, slots=True)
class Parsed:
    """A worker's answer: the extracted mail and its encoding (or why it is too long)."""

    mail: Extracted
    plans: list[Encoded] | TooLong


class _Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pending: dict[int, asyncio.Future[tuple[Any, ...]]] = {}
        self.next_id = 0
        self.alive = True
        self.reader = asyncio.create_task(self._read(), name="parse-worker-reader")

    async def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            while True:
                (size,) = LENGTH.unpack(await stdout.readexactly(LENGTH.size))
                reply = marshal.loads(await stdout.readexactly(size))
                fut = self.pending.pop(reply[0], None)
                if fut is not None and not fut.done():
                    fut.set_result(reply)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, EOFError) as exc:
            if self.alive:
                log.warning(
                    "parse worker gone", extra={"event": "parse_worker_gone", "error": repr(exc)}
                )
        finally:
            self.alive = False
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(WorkerUnavailable())
            self.pending.clear()

    async def ask(self, raw: bytes) -> tuple[Any, ...]:
        stdin = self.proc.stdin
        if not self.alive or stdin is None or stdin.is_closing():
            raise WorkerUnavailable()
        self.next_id += 1
        fut: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        stdin.write(frame(marshal.dumps((self.next_id, raw))))
        return await fut

    async def stop(self) -> None:
        self.alive = False
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # EOF: the worker finishes its mail and exits
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        if self.proc.returncode not in (0, None):
            log.warning(
                "parse worker ended abnormally",
                extra={"event": "parse_worker_exit", "returncode": self.proc.returncode},
            )
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader


class ParsePool:
    module = "mailsms.intake.parse_worker"  # what the workers run (``python -m``)

    def __init__(self, size: int, body: BodyOptions, sms: SmsOptions) -> None:
        self.size = size
        self._options = frame(pickle.dumps((body, sms)))
        self._workers: list[_Worker] = []
        self._lock = asyncio.Lock()
        self._deaths = 0
        self._closed = False

    @property
    def enabled(self) -> bool:
        return self.size > 0 and self._deaths < _GIVE_UP_AFTER and not self._closed

    async def parse(self, raw: bytes) -> Parsed:
        """The worker's answer; NoTextError as :func:`extract` raises it;
        WorkerUnavailable when the caller must parse the mail itself."""
        worker = await self._worker()
        reply = await worker.ask(raw)
        self._deaths = 0  # "in a row": a worker answered
        status = reply[1]
        if status == NO_TEXT:
            raise NoTextError(reply[2])
        if status == FAILED:
            raise WorkerUnavailable()
        mail = Extracted(*reply[2])
        if status != OK:
            return Parsed(mail, TooLong(*reply[3]))
        plans = [
            Encoded(text, encoding, shift, tuple(PartSpec(*p) for p in parts), translit, saved)
            for text, encoding, shift, parts, translit, saved in reply[3]
        ]
        return Parsed(mail, plans)

    async def warm(self) -> None:
        """Start the workers now rather than on the first mail (``mailsms serve`` does)."""
        if self.enabled:
            async with self._lock:
                await self._fill()

    async def _worker(self) -> _Worker:
        if not self.enabled:
            raise WorkerUnavailable()
        alive = [w for w in self._workers if w.alive]
        if len(alive) < self.size:
            async with self._lock:
                alive = await self._fill()
        if not alive:
            raise WorkerUnavailable()
        return min(alive, key=lambda w: len(w.pending))

    async def _fill(self) -> list[_Worker]:
        """Start workers up to ``size``; count the dead ones it replaces."""
        dead = [w for w in self._workers if not w.alive]
        self._deaths += len(dead)
        for w in dead:
            await w.stop()
        self._workers = [w for w in self._workers if w.alive]
        if self._deaths >= _GIVE_UP_AFTER:
            log.error(
                "parse workers keep dying; parsing on the event loop from now on",
                extra={"event": "parse_workers_off", "deaths": self._deaths},
            )
            return []
        while not self._closed and len(self._workers) < self.size:
            try:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    self.module,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
            except OSError as exc:
                log.error(
                    "cannot start a parse worker",
                    extra={"event": "parse_worker_failed", "error": str(exc)},
                )
                self._deaths += 1
                break
            assert proc.stdin is not None
            proc.stdin.write(self._options)
            self._workers.append(_Worker(proc))
        return [w for w in self._workers if w.alive]

    async def stop(self) -> None:
        self._closed = True
        workers, self._workers = self._workers, []
        await asyncio.gather(*(w.stop() for w in workers))
