"""The dispatcher: claims due messages with a lease and submits them through their carrier.

One loop claims as many messages as there are free submit slots, starts a task per
message and sleeps until woken (the intake calls :meth:`Dispatcher.wake` after each commit),
until the next message is due, or ``poll_interval`` (other processes may enqueue too).
Each carrier has its own concurrency limit and rate limit. A lease left behind by a
crashed process runs out and the message is claimed again (invariant 1: at least once).

When the dispatcher has room and nothing older is waiting in the queue, the intake stores
new messages already claimed by it (:meth:`reserve`, then :meth:`hand_over` after the
commit), so a message needs no claim transaction and no read back: that was about a tenth
of the loop's time per mail at saturation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence

from aiolimiter import AsyncLimiter

from mailsms.address import mask
from mailsms.carriers.base import Carrier, OutboundSms, Submitted
from mailsms.config import DispatchSettings
from mailsms.dispatch.retry import GiveUp, RetryPolicy
from mailsms.dispatch.routing import NoRoute, Router
from mailsms.errors import CarrierError, PermanentFailure, StoreError
from mailsms.model import Message, PartSpec, State
from mailsms.store.base import Lease, Store
from mailsms.web.metrics import Metrics

log = logging.getLogger("mailsms.dispatch")


class CarrierSlot:
    """A carrier with its concurrency and rate limits."""

    def __init__(self, carrier: Carrier) -> None:
        self.carrier = carrier
        s = carrier.settings
        self.semaphore = asyncio.Semaphore(s.concurrency)
        self.limiter = AsyncLimiter(s.max_rate, 1.0) if s.max_rate else None

    async def submit(self, sms: OutboundSms) -> Submitted:
        async with self.semaphore:
            if self.limiter is not None:
                await self.limiter.acquire()
            return await self.carrier.submit(sms)


class Dispatcher:
    def __init__(
        self,
        store: Store,
        carriers: Mapping[str, Carrier],
        router: Router,
        settings: DispatchSettings,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        on_done: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.on_done = on_done  # a message was handled: a DSN may be due
        self.slots = {name: CarrierSlot(c) for name, c in carriers.items()}
        self.router = router
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.policy = RetryPolicy(
            settings.max_attempts, settings.backoff_initial, settings.backoff_max
        )
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        # Claim ahead of the carriers' slots (tasks wait on each carrier's semaphore): one
        # claim then feeds several rounds of submits, so under intake load the dispatcher
        # needs fewer trips through the store's commit queue.
        self.capacity = 4 * max(1, sum(c.settings.concurrency for c in carriers.values()))
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._progress: asyncio.Future[None] | None = None
        self._reserved = 0  # handed-over messages whose commit is still under way
        self._backlog = True  # the queue may hold due messages (until a claim comes up short)
        self._full = False  # the claim loop waits for a free slot

    def reserve(self, count: int) -> Lease | None:
        """A lease under which the intake may store ``count`` messages already claimed by
        us, or None: no room, or older messages are waiting (they go first), or stopping."""
        if self._stopping or self._backlog:
            return None
        if len(self._tasks) + self._reserved + count > self.capacity:
            return None
        self._reserved += count
        return Lease(self.owner, self.clock() + self.settings.lease)

    def unreserve(self, count: int) -> None:
        """The commit failed: nothing was stored under the lease."""
        self._reserved -= count

    def hand_over(self, messages: Sequence[Message], reserved: int) -> None:
        """Messages committed under :meth:`reserve`'s lease: submit them as if claimed."""
        self._reserved -= reserved
        for message in messages:
            self._start(message)

    def wake(self) -> None:
        """Something was queued: look now rather than at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="dispatcher")

    async def stop(self) -> None:
        """Stop claiming; let in-flight submits finish within the grace period; release the rest."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self.settings.shutdown_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            free = self.capacity - len(self._tasks) - self._reserved
            if free <= 0:
                self._full = True
                await self._wait(self.settings.poll_interval)  # a finishing task wakes us
                self._full = False
                continue
            try:
                claimed = await self.store.claim(
                    self.owner, free, self.settings.lease, self.clock()
                )
            except StoreError as exc:
                log.error("claim failed", extra={"event": "claim_failed", "error": str(exc)})
                claimed = []
            for message in claimed:
                self._start(message)
            self._backlog = len(claimed) >= free
            if not self._backlog:
                await self._wait(await self._idle_timeout())

    def _start(self, message: Message) -> None:
        task = asyncio.create_task(self._handle(message))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._full or self._backlog:
            self._wake.set()  # a slot came free and work is waiting for one
        self.on_done()
        if self._progress is not None and not self._progress.done():
            self._progress.set_result(None)
        self._progress = None

    async def progress(self) -> None:
        """Wait until the next message handling finishes (whatever its outcome).

        Lets tests and tools wait for the queue to move instead of sleeping.
        """
        if self._progress is None:
            self._progress = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._progress)

    async def _idle_timeout(self) -> float:
        try:
            due = await self.store.next_wakeup()
        except StoreError:
            return self.settings.poll_interval
        if due is None:
            return self.settings.poll_interval
        return max(0.0, min(self.settings.poll_interval, due - self.clock()))

    async def _wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _handle(self, message: Message) -> None:
        try:
            await self._submit(message)
        except asyncio.CancelledError:
            await self._release(message)
            raise
        except StoreError as exc:
            # The lease runs out and another claim retries it: nothing is lost.
            log.error(
                "store failed after submit",
                extra={"event": "store_error", "id": message.id, "error": str(exc)},
            )

    async def _release(self, message: Message) -> None:
        with contextlib.suppress(StoreError):
            await asyncio.shield(self.store.release(message.id, self.owner, self.clock()))

    async def _submit(self, message: Message) -> None:
        now = self.clock()
        if now >= message.expires_at:
            await self.store.finish(
                message.id, self.owner, State.EXPIRED, "maximum age reached", now
            )
            self.metrics.failed.labels(carrier="none", state="expired").inc()
            return
        try:
            name = self.router.pick(message.to, message.attempts, message.carrier)
        except NoRoute as exc:
            await self.store.finish(message.id, self.owner, State.FAILED, str(exc), now)
            self.metrics.failed.labels(carrier="none", state="failed").inc()
            return
        slot = self.slots[name]
        sms = _outbound(message, slot.carrier.settings.from_)
        try:
            result = await slot.submit(sms)
        except CarrierError as exc:
            await self._failed(message, name, exc)
            return
        except Exception as exc:  # a driver bug must not lose the message
            log.exception(
                "carrier raised an unexpected error", extra={"event": "driver_bug", "carrier": name}
            )
            await self._failed(message, name, CarrierError(f"driver error: {exc!r}"))
            return
        await self._submitted(message, name, result)

    async def _submitted(self, message: Message, name: str, result: Submitted) -> None:
        ids = tuple(result.carrier_ids) + (None,) * (len(message.parts) - len(result.carrier_ids))
        await self.store.mark_submitted(
            message.id,
            self.owner,
            name,
            ids[: len(message.parts)],
            result.delivered,
            self.clock(),
            whole=result.whole,
        )
        self.metrics.submitted.labels(carrier=name).inc()
        self.metrics.submit_latency.observe(max(0.0, self.clock() - message.created_at))
        log.info(
            "submitted",
            extra={
                "event": "submitted",
                "id": message.id,
                "carrier": name,
                "to": mask(message.to),
                "parts": len(message.parts),
            },
        )

    async def _opt_out(self, message: Message, name: str, exc: PermanentFailure) -> None:
        """The carrier refused the number because its owner opted out: remember it, so
        the next mail to it is refused at RCPT instead of failing at the carrier."""
        try:
            await self.store.set_opt_out(
                message.to, True, f"carrier {name} error {exc.code}", self.clock()
            )
        except StoreError as err:  # the message has failed all the same; log and go on
            log.error(
                "opt-out not recorded",
                extra={"event": "store_error", "id": message.id, "error": str(err)},
            )

    async def _failed(self, message: Message, name: str, exc: CarrierError) -> None:
        now = self.clock()
        reason = f"{name}: {exc}"
        if isinstance(exc, PermanentFailure):
            await self.store.finish(message.id, self.owner, State.FAILED, reason, now, name)
            self.metrics.failed.labels(carrier=name, state="failed").inc()
            log.warning(
                "permanent failure",
                extra={"event": "failed", "id": message.id, "carrier": name, "reason": str(exc)},
            )
            if exc.opt_out:
                await self._opt_out(message, name, exc)
            return
        decision = self.policy.decide(message.attempts, message.expires_at, now)
        if isinstance(decision, GiveUp):
            await self.store.finish(
                message.id,
                self.owner,
                decision.state,
                f"{decision.reason}; last: {reason}",
                now,
                name,
            )
            self.metrics.failed.labels(carrier=name, state=decision.state.value).inc()
            return
        await self.store.mark_retry(message.id, self.owner, decision.at, reason, now)
        self._wake.set()  # the claim loop's next wake-up time may now be earlier
        self.metrics.retried.labels(carrier=name).inc()
        log.info(
            "temporary failure",
            extra={
                "event": "retry",
                "id": message.id,
                "carrier": name,
                "reason": str(exc),
                "retry_in": round(decision.at - now, 1),
            },
        )


def _outbound(message: Message, default_from: str | None) -> OutboundSms:
    return OutboundSms(
        message_id=message.id,
        to=message.to,
        source_addr=message.source_addr or default_from,
        text=message.text,
        encoding=message.encoding,
        parts=tuple(PartSpec(p.seq, p.text, p.udh, p.payload, p.size) for p in message.parts),
        expires_at=message.expires_at,
        attempt=message.attempts,
    )
