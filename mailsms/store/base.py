"""The Store protocol: what the intake, the dispatcher, the CLI and the web API need.

Every method that changes state returns only after the change is committed: that is what
lets the intake answer ``250`` (DESIGN.md invariant 1). Every state change writes an event.

Both stores share one implementation of the operations (:class:`SqlStore`): each operation
is a plain synchronous function over a transaction (:class:`Tx`). The SQLite store runs them
on its single writer thread, batching concurrent ones into one commit (group commit); the
PostgreSQL store runs them on a thread with a pooled connection. One code path, two engines.
"""

from __future__ import annotations

import abc
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from mailsms.carriers.base import InboundSms
from mailsms.model import (
    Event,
    Message,
    NewMessage,
    Part,
    PartState,
    State,
)
from mailsms.store.fragments import FragmentOps, insert_inbound
from mailsms.store.mail_ops import MailOps, insert_conversation
from mailsms.store.queries import Dialect, queries

T = TypeVar("T")
Row = dict[str, Any]
Allocate = Callable[[str, int, int], int]  # (destination, count, start) -> first reference
_REF_BLOCK = 16  # concatenation references reserved per trip to the store, per destination
_REF_BLOCKS_KEPT = 4096  # destinations with a block in memory


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds a claimed message, and until when (a crashed holder's lease runs out)."""

    owner: str
    expires_at: float


class Tx(Protocol):
    """One transaction: run a named query, get rows back as dicts."""

    def execute(self, name: str, params: dict[str, Any]) -> int: ...

    def executemany(self, name: str, params: Sequence[dict[str, Any]]) -> None: ...

    def fetchall(self, name: str, params: dict[str, Any]) -> list[Row]: ...


class Store(Protocol):
    """The durable queue. See the module docstring for the commit rule."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    async def enqueue(
        self,
        messages: Sequence[NewMessage] | Callable[[Allocate], Sequence[NewMessage]],
        now: float,
        conversations: Sequence[dict[str, Any]] = (),
        lease: Lease | None = None,
        key: str | None = None,
    ) -> Sequence[NewMessage]: ...
    async def intake_key(self, key: str) -> tuple[str, ...] | None: ...
    async def claim(self, owner: str, limit: int, lease: float, now: float) -> list[Message]: ...
    async def mark_submitted(
        self,
        id: str,
        owner: str,
        carrier: str,
        carrier_ids: Sequence[str | None],
        delivered: bool,
        now: float,
        whole: bool = False,
    ) -> bool: ...
    async def mark_retry(
        self, id: str, owner: str, next_attempt_at: float, reason: str, now: float
    ) -> bool: ...
    async def finish(
        self,
        id: str,
        owner: str,
        state: State,
        reason: str,
        now: float,
        carrier: str | None = None,
    ) -> bool: ...
    async def release(self, id: str, owner: str, now: float) -> bool: ...
    async def get(self, id: str) -> Message | None: ...
    async def list_messages(self, state: State | None = None, limit: int = 50) -> list[Message]: ...
    async def retry(self, id: str, expires_at: float, now: float) -> bool: ...
    async def cancel(self, id: str, now: float) -> bool: ...
    async def delivery_report(
        self,
        carrier: str,
        carrier_id: str,
        part_state: PartState,
        reason: str,
        source: str,
        now: float,
    ) -> str | None: ...
    async def queue_depth(self) -> dict[str, int]: ...
    async def record_inbound(self, sms: InboundSms, now: float) -> tuple[str, bool]: ...
    async def opted_out(self, number: str) -> bool: ...
    async def allocate_references(self, destination: str, count: int, start: int) -> int: ...
    async def set_opt_out(self, number: str, out: bool, source: str, now: float) -> bool: ...
    async def list_opt_outs(self) -> list[Row]: ...
    async def list_inbound(self, limit: int = 50) -> list[Row]: ...
    async def next_wakeup(self) -> float | None: ...


class AlreadyQueued(Exception):
    """:meth:`SqlStore.enqueue` found its intake key stored: queued before, nothing new."""

    def __init__(self, key: str, ids: tuple[str, ...]) -> None:
        super().__init__(f"{key} was queued before")
        self.key = key
        self.ids = ids


class SqlStore(MailOps, FragmentOps, abc.ABC):
    """The operations of :class:`Store`, written once over :class:`Tx`."""

    dialect: Dialect

    def __init__(self) -> None:
        self.sql = queries(self.dialect)
        self._ref_blocks: dict[str, tuple[int, int]] = {}  # destination -> [next, end)
        self._ref_lock = threading.Lock()  # PostgreSQL runs operations on several threads

    def _reference(self, tx: Tx, destination: str, count: int, start: int) -> int:
        """``count`` references for ``destination`` from a block reserved in the store.

        A reservation is one UPSERT in the enqueue's transaction (about 19 us on the
        intake's path); reserving ``_REF_BLOCK`` at a time makes that one in sixteen long
        mails. References still never repeat between processes (each block is the store's
        counter moved on); a restart only skips the rest of a block. A transaction that
        rolls back forgets every block (:meth:`_forget_references`), since its reservation
        never happened."""
        with self._ref_lock:
            block = self._ref_blocks.pop(destination, None)
            if block is None or block[0] + count > block[1]:
                size = max(count, _REF_BLOCK)
                first = _allocate(tx, destination, size, start)
                block = (first, first + size)
            if len(self._ref_blocks) >= _REF_BLOCKS_KEPT:
                del self._ref_blocks[next(iter(self._ref_blocks))]  # the least recent
            self._ref_blocks[destination] = (block[0] + count, block[1])
            return block[0]

    def _forget_references(self) -> None:
        with self._ref_lock:
            self._ref_blocks.clear()

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish pending operations and release connections."""

    @abc.abstractmethod
    async def _run(self, fn: Callable[[Tx], T], durable: bool = True, lazy: bool = False) -> T:
        """Run ``fn`` in a transaction and return its result after the commit.

        ``durable=False`` is for the dispatcher's own bookkeeping (claims, submit results,
        retries): it must survive a process crash, which it does, but need not survive a
        power cut, where losing it only means a message is submitted again (at least once,
        as after any crash). Engines may then skip the fsync (SQLite ``synchronous =
        NORMAL``, PostgreSQL ``synchronous_commit = off``). Everything acknowledged to a
        client (SMTP 250, a webhook 2xx, a delivery report) stays durable.

        ``lazy=True`` (non-durable results nobody waits on to go on: a submit's outcome, a
        retry, a release) lets an engine hold the operation briefly to share a commit with
        others. A claim is never lazy: the dispatcher waits for its rows.
        """

    async def _read(self, fn: Callable[[Tx], T]) -> T:
        """Run a small, indexed read. Engines may answer it without queueing behind writes."""
        return await self._run(fn)

    async def _read_one(self, name: str, params: dict[str, Any]) -> list[Row]:
        """One read statement: engines may run it alone, without BEGIN and COMMIT around it
        (a single statement is consistent by itself)."""
        return await self._read(lambda tx: tx.fetchall(name, params))

    async def ping(self) -> None:
        await self._run(lambda tx: tx.fetchall("ping", {}))

    async def enqueue(
        self,
        messages: Sequence[NewMessage] | Callable[[Allocate], Sequence[NewMessage]],
        now: float,
        conversations: Sequence[dict[str, Any]] = (),
        lease: Lease | None = None,
        key: str | None = None,
    ) -> Sequence[NewMessage]:
        """Queue messages (and remember their conversations) in one durable commit.

        ``key`` (an IMAP message's account, UIDVALIDITY and UID) is committed with them;
        if it is stored already, nothing is written and :class:`AlreadyQueued` is raised
        with the ids queued under it then.

        ``messages`` may be a function that builds them inside the transaction, given
        ``allocate(destination, count, start)`` for concatenation references: one commit
        then covers both (see :meth:`allocate_references`).

        With ``lease`` the messages are stored already claimed by that dispatcher (state
        ``submitting``, attempt 1, both events written), which then takes them from memory:
        no claim round trip. A crash before the submit leaves a lease that runs out and is
        claimed again, exactly like a claim's.
        """

        def op(tx: Tx) -> Sequence[NewMessage]:
            if callable(messages):
                built = messages(lambda d, c, st: self._reference(tx, d, c, st))
            else:
                built = messages
            if key is not None:
                ids = " ".join(m.id for m in built)
                if not tx.execute("insert_intake_key", {"key": key, "ids": ids, "now": now}):
                    found = tx.fetchall("find_intake_key", {"key": key})
                    raise AlreadyQueued(key, tuple(str(found[0]["ids"]).split()) if found else ())
            for msg in built:
                _insert(tx, msg, now, lease)
            for conv in conversations:
                insert_conversation(tx, conv, now)
            return built

        return await self._run(op)

    async def intake_key(self, key: str) -> tuple[str, ...] | None:
        """The ids queued under an intake key (see :meth:`enqueue`), or None if none was."""
        rows = await self._read(lambda tx: tx.fetchall("find_intake_key", {"key": key}))
        return tuple(str(rows[0]["ids"]).split()) if rows else None

    async def claim(self, owner: str, limit: int, lease: float, now: float) -> list[Message]:
        def op(tx: Tx) -> list[Message]:
            rows = tx.fetchall(
                "claim",
                {"owner": owner, "limit": limit, "lease_expires_at": now + lease, "now": now},
            )
            if not rows:
                return []
            parts = self._parts_of(tx, [r["id"] for r in rows])
            tx.executemany(
                "insert_event",
                [
                    {
                        "message_id": r["id"],
                        "at": now,
                        "state": State.SUBMITTING.value,
                        "reason": f"attempt {r['attempts']} claimed by {owner}",
                        "source": "gateway",
                    }
                    for r in rows
                ],
            )
            return [_message(row, parts.get(row["id"], ())) for row in rows]

        return await self._run(op, durable=False)

    def _parts_of(self, tx: Tx, ids: list[str]) -> dict[str, tuple[Part, ...]]:
        """The parts of several messages in one query."""
        param: object = json.dumps(ids) if self.dialect == "sqlite" else ids
        grouped: dict[str, list[Part]] = {}
        for r in tx.fetchall("get_parts_many", {"ids": param}):
            grouped.setdefault(r["message_id"], []).append(_part(r))
        return {k: tuple(v) for k, v in grouped.items()}

    async def mark_submitted(
        self,
        id: str,
        owner: str,
        carrier: str,
        carrier_ids: Sequence[str | None],
        delivered: bool,
        now: float,
        whole: bool = False,
    ) -> bool:
        """Record a carrier's acceptance: one id per part, or with ``whole`` one id for every
        part (stored as part 0, which reports then apply to all parts)."""

        def op(tx: Tx) -> bool:
            p = {"id": id, "owner": owner, "carrier": carrier, "now": now}
            if delivered:
                return _delivered_on_submit(tx, p, carrier_ids)
            if not tx.execute("mark_submitted", p):
                return False
            ids = [(0, carrier_ids[0])] if whole else list(enumerate(carrier_ids, start=1))
            tx.executemany(
                "mark_part_submitted",
                [{"message_id": id, "seq": seq, "carrier_id": cid, "now": now} for seq, cid in ids],
            )
            tx.executemany(  # delivery reports find their part by carrier id
                "insert_carrier_id",
                [
                    {
                        "carrier": carrier,
                        "carrier_id": cid,
                        "message_id": id,
                        "seq": seq,
                        "now": now,
                    }
                    for seq, cid in ids
                    if cid
                ],
            )
            _event(tx, id, State.SUBMITTED, f"accepted by {carrier}", now, carrier)
            _apply_pending_reports(tx, id, carrier, ids, now)
            return True

        return await self._run(op, durable=False, lazy=True)

    async def mark_retry(
        self, id: str, owner: str, next_attempt_at: float, reason: str, now: float
    ) -> bool:
        def op(tx: Tx) -> bool:
            p = {
                "id": id,
                "owner": owner,
                "next_attempt_at": next_attempt_at,
                "reason": reason,
                "now": now,
            }
            if not tx.execute("mark_retry", p):
                return False
            _event(tx, id, State.QUEUED, f"retry at {next_attempt_at:.0f}: {reason}", now)
            return True

        return await self._run(op, durable=False, lazy=True)

    async def finish(
        self,
        id: str,
        owner: str,
        state: State,
        reason: str,
        now: float,
        carrier: str | None = None,
    ) -> bool:
        def op(tx: Tx) -> bool:
            p = {
                "id": id,
                "owner": owner,
                "state": state.value,
                "reason": reason,
                "now": now,
                "carrier": carrier,
            }
            if not tx.execute("finish_leased", p):
                return False
            _finish_parts(tx, id, state, reason, now)
            _event(tx, id, state, reason, now, carrier or "gateway")
            return True

        return await self._run(op, durable=False, lazy=True)

    async def release(self, id: str, owner: str, now: float) -> bool:
        def op(tx: Tx) -> bool:
            if not tx.execute("release", {"id": id, "owner": owner, "now": now}):
                return False
            _event(tx, id, State.QUEUED, "released at shutdown", now)
            return True

        return await self._run(op, durable=False, lazy=True)

    async def get(self, id: str) -> Message | None:
        def op(tx: Tx) -> Message | None:
            rows = tx.fetchall("get_message", {"id": id})
            if not rows:
                return None
            events = tuple(Event(**r) for r in tx.fetchall("get_events", {"id": id}))
            return _message(rows[0], _parts(tx, id), events)

        return await self._read(op)

    async def list_messages(self, state: State | None = None, limit: int = 50) -> list[Message]:
        def op(tx: Tx) -> list[Message]:
            if state is None:
                rows = tx.fetchall("list_messages", {"limit": limit})
            else:
                rows = tx.fetchall("list_messages_in_state", {"limit": limit, "state": state})
            return [_message(r, ()) for r in rows]

        return await self._read(op)

    async def retry(self, id: str, expires_at: float, now: float) -> bool:
        def op(tx: Tx) -> bool:
            if not tx.execute("requeue", {"id": id, "now": now, "expires_at": expires_at}):
                return False
            tx.execute("reset_parts", {"id": id, "now": now})
            _event(tx, id, State.QUEUED, "retried by operator", now, "operator")
            return True

        return await self._run(op)

    async def cancel(self, id: str, now: float) -> bool:
        def op(tx: Tx) -> bool:
            p = {
                "id": id,
                "state": State.CANCELLED.value,
                "from_state": State.QUEUED.value,
                "reason": "cancelled by operator",
                "now": now,
            }
            if not tx.execute("set_state_from", p):
                return False
            _finish_parts(tx, id, State.CANCELLED, "cancelled by operator", now)
            _event(tx, id, State.CANCELLED, "cancelled by operator", now, "operator")
            return True

        return await self._run(op)

    async def delivery_report(
        self,
        carrier: str,
        carrier_id: str,
        part_state: PartState,
        reason: str,
        source: str,
        now: float,
    ) -> str | None:
        """Apply a report to its part; returns the message id, or None for an unknown id."""

        def op(tx: Tx) -> str | None:
            found = tx.fetchall(
                "find_part_by_carrier_id", {"carrier": carrier, "carrier_id": carrier_id}
            )
            if not found:  # may have raced ahead of the submit response: keep it a while
                tx.execute(
                    "insert_pending_report",
                    {
                        "carrier": carrier,
                        "carrier_id": carrier_id,
                        "part_state": part_state.value,
                        "reason": reason,
                        "source": source,
                        "now": now,
                    },
                )
                return None
            mid = found[0]["message_id"]
            _apply_report(tx, mid, found[0]["seq"], part_state, reason, source, now)
            return str(mid)

        return await self._run(op)

    async def record_inbound(self, sms: InboundSms, now: float) -> tuple[str, bool]:
        """Store an SMS from a phone once: (id, True) when new, (existing id, False) on a
        repeated delivery of the same carrier id."""
        return await self._run(lambda tx: insert_inbound(tx, sms, now))

    async def opted_out(self, number: str) -> bool:
        return bool(await self._read_one("find_optout", {"number": number}))

    async def set_opt_out(self, number: str, out: bool, source: str, now: float) -> bool:
        """Add (``out``) or remove a number from the opt-out list; True when it changed."""

        def op(tx: Tx) -> bool:
            present = bool(tx.fetchall("find_optout", {"number": number}))
            if out and not present:
                tx.execute("insert_optout", {"number": number, "at": now, "source": source})
            elif not out and present:
                tx.execute("delete_optout", {"number": number})
            return present != out

        return await self._run(op)

    async def allocate_references(self, destination: str, count: int, start: int) -> int:
        """The first of ``count`` consecutive concatenation references for ``destination``
        (``start`` seeds a destination never seen). The caller reduces it modulo 2**bits."""

        def op(tx: Tx) -> int:
            return _allocate(tx, destination, count, start)

        # Not fsynced: after a power cut a reference may repeat once, harmlessly rare.
        return await self._run(op, durable=False)

    async def list_opt_outs(self) -> list[Row]:
        return await self._read(lambda tx: tx.fetchall("list_optouts", {}))

    async def list_inbound(self, limit: int = 50) -> list[Row]:
        return await self._read(lambda tx: tx.fetchall("list_inbound", {"limit": limit}))

    # --- delivery status notifications ------------------------------------------------

    async def dsn_due(self, limit: int = 50) -> list[tuple[Row, tuple[Event, ...]]]:
        """Messages whose terminal transition made a DSN due, with their events."""

        def op(tx: Tx) -> list[tuple[Row, tuple[Event, ...]]]:
            rows = tx.fetchall("dsn_due", {"limit": limit})
            return [
                (r, tuple(Event(**e) for e in tx.fetchall("get_events", {"id": r["id"]})))
                for r in rows
            ]

        return await self._read(op)

    async def delay_due(self, before: float, limit: int = 50) -> list[Row]:
        """Messages still unsent since ``before`` whose sender asked for delay notices."""
        return await self._read(
            lambda tx: tx.fetchall("delay_due", {"before": before, "limit": limit})
        )

    async def expire_stale(
        self, before: float, now: float, purge_before: float, limit: int = 100
    ) -> list[str]:
        """Submitted messages with no final report since ``before`` become ``expired``;
        reports for unknown ids received before ``purge_before`` are dropped."""

        def op(tx: Tx) -> list[str]:
            ids = [
                r["id"] for r in tx.fetchall("stale_submitted", {"before": before, "limit": limit})
            ]
            for id in ids:
                _finish_submitted(
                    tx,
                    id,
                    State.EXPIRED,
                    "no final delivery report before dlr.timeout",
                    now,
                    "dlr-timeout",
                )
            tx.execute("purge_pending_reports", {"before": purge_before})
            return ids

        # Not fsynced: lost in a power cut, the next sweep simply expires them again.
        return await self._run(op, durable=False)

    async def purge(self, before: float, conversations_before: float, limit: int = 1000) -> int:
        """Delete finished messages, sent mail and handled inbound SMS last changed before
        ``before`` (with their parts and events), and conversations idle since
        ``conversations_before``; at most ``limit`` rows of each per call. Returns how many."""

        def op(tx: Tx) -> int:
            n = tx.execute("purge_messages", {"before": before, "limit": limit})
            n += tx.execute("purge_mail", {"before": before, "limit": limit})
            n += tx.execute("purge_inbound", {"before": before, "limit": limit})
            n += tx.execute("purge_intake_keys", {"before": before, "limit": limit})
            gone = tx.execute(
                "purge_conversations", {"before": conversations_before, "limit": limit}
            )
            if gone:
                tx.execute("purge_conversation_mail", {})
            return n + gone

        return await self._run(op, durable=False)

    async def queue_depth(self) -> dict[str, int]:
        rows = await self._run(lambda tx: tx.fetchall("queue_depth", {}))
        return {str(r["state"]): int(r["n"]) for r in rows}

    async def next_wakeup(self) -> float | None:
        """The earliest time a queued message is due or a lease runs out."""

        def op(tx: Tx) -> float | None:
            times = [r["t"] for q in ("next_due", "next_lease_expiry") for r in tx.fetchall(q, {})]
            found = [float(t) for t in times if t is not None]
            return min(found) if found else None

        return await self._read(op)


def _message_state(part_states: set[str]) -> State | None:
    """Invariant 4: delivered only when every part is; failed as soon as one fails."""
    if PartState.FAILED in part_states:
        return State.FAILED
    if PartState.EXPIRED in part_states:
        return State.EXPIRED
    if part_states == {PartState.DELIVERED}:
        return State.DELIVERED
    return None


def _insert(tx: Tx, msg: NewMessage, now: float, lease: Lease | None = None) -> None:
    tx.execute(
        "insert_message",
        {
            "id": msg.id,
            "origin": msg.origin,
            "sender": msg.sender,
            "recipient": msg.to,
            "original_recipient": msg.original_recipient,
            "source_addr": msg.source_addr,
            "carrier": msg.carrier,
            "text": msg.text,
            "encoding": msg.encoding,
            "shift_table": msg.shift_table,
            "segments": len(msg.parts),
            "subject": msg.subject,
            "mail_message_id": msg.mail_message_id,
            "meta": json.dumps(msg.meta),
            "now": now,
            "expires_at": msg.expires_at,
            "notify_failure": int("failed" in msg.notify),
            "notify_delay": int("delayed" in msg.notify),
            "notify_success": int("delivered" in msg.notify),
            "dsn": json.dumps(msg.dsn),
            "original": msg.original,
            "state": State.SUBMITTING.value if lease else State.QUEUED.value,
            "attempts": 1 if lease else 0,
            "lease_owner": lease.owner if lease else None,
            "lease_expires_at": lease.expires_at if lease else None,
        },
    )
    tx.executemany(
        "insert_part",
        [
            {
                "message_id": msg.id,
                "seq": part.seq,
                "text": part.text,
                "udh": part.udh,
                "payload": part.payload,
                "size": part.size,
                "now": now,
            }
            for part in msg.parts
        ],
    )
    accepted = _event_row(msg.id, State.QUEUED, f"accepted from {msg.origin}", now, msg.origin)
    if lease is None:
        tx.execute("insert_event", accepted)
    else:
        claimed = _event_row(msg.id, State.SUBMITTING, f"attempt 1 claimed by {lease.owner}", now)
        tx.executemany("insert_event", [accepted, claimed])


def _allocate(tx: Tx, destination: str, count: int, start: int) -> int:
    rows = tx.fetchall(
        "allocate_refs", {"destination": destination, "count": count, "start": start}
    )
    return int(rows[0]["next_ref"]) - count


def _apply_report(
    tx: Tx, mid: str, seq: int, part_state: PartState, reason: str, source: str, now: float
) -> None:
    """One part's report; the message ends when its parts say so (invariant 4)."""
    tx.execute(
        "update_part_state",
        {
            "message_id": mid,
            "seq": seq,
            "state": part_state.value,
            "error": reason or None,
            "now": now,
        },
    )
    _event(tx, mid, f"part {seq} {part_state.value}", reason, now, source)
    states = {r["state"] for r in tx.fetchall("part_states", {"id": mid})}
    final = _message_state(states)
    if final is not None:
        _finish_submitted(tx, mid, final, reason or final.value, now, source)


def _apply_pending_reports(
    tx: Tx, mid: str, carrier: str, ids: Sequence[tuple[int, str | None]], now: float
) -> None:
    """Reports that arrived before the submit response told us these carrier ids."""
    for seq, cid in ids:
        if not cid:
            continue
        for r in tx.fetchall("take_pending_report", {"carrier": carrier, "carrier_id": cid}):
            _apply_report(
                tx,
                mid,
                seq,
                PartState(r["part_state"]),
                r["reason"],
                r["source"],
                now,
            )


def _delivered_on_submit(tx: Tx, p: dict[str, Any], carrier_ids: Sequence[str | None]) -> bool:
    """A carrier that is the end of the line (console, file): submitted and delivered in
    one step, without carrier-id rows (no report will ever look them up)."""
    if not tx.execute("mark_delivered_on_submit", p):
        return False
    tx.executemany(
        "mark_part_delivered",
        [
            {"message_id": p["id"], "seq": seq, "carrier_id": cid, "now": p["now"]}
            for seq, cid in enumerate(carrier_ids, start=1)
        ],
    )
    carrier = p["carrier"]
    tx.executemany(
        "insert_event",
        [
            {
                "message_id": p["id"],
                "at": p["now"],
                "state": state,
                "reason": reason,
                "source": carrier,
            }
            for state, reason in (
                (State.SUBMITTED.value, f"accepted by {carrier}"),
                (State.DELIVERED.value, f"delivered by {carrier}"),
            )
        ],
    )
    return True


def _event(tx: Tx, id: str, state: str, reason: str, at: float, source: str = "gateway") -> None:
    tx.execute("insert_event", _event_row(id, state, reason, at, source))


def _event_row(
    id: str, state: str, reason: str, at: float, source: str = "gateway"
) -> dict[str, Any]:
    return {"message_id": id, "at": at, "state": str(state), "reason": reason, "source": source}


def _finish_parts(tx: Tx, id: str, state: State, reason: str, now: float) -> None:
    part_state = {State.DELIVERED: PartState.DELIVERED, State.EXPIRED: PartState.EXPIRED}.get(
        state, PartState.FAILED
    )
    tx.execute(
        "finish_parts", {"id": id, "part_state": part_state.value, "reason": reason, "now": now}
    )


def _finish_submitted(tx: Tx, id: str, state: State, reason: str, now: float, source: str) -> None:
    p = {
        "id": id,
        "state": state.value,
        "reason": None if state is State.DELIVERED else reason,
        "now": now,
    }
    if tx.execute("set_state_from_submitted", p):
        _finish_parts(tx, id, state, reason, now)
        _event(tx, id, state, reason, now, source)


def _part(r: Row) -> Part:
    return Part(
        seq=r["seq"],
        text=r["text"],
        udh=bytes(r["udh"]),
        payload=bytes(r["payload"]),
        size=r["size"],
        state=PartState(r["state"]),
        carrier_id=r["carrier_id"],
        error=r["error"],
    )


def _parts(tx: Tx, id: str) -> tuple[Part, ...]:
    return tuple(_part(r) for r in tx.fetchall("get_parts", {"id": id}))


def _message(row: Row, parts: tuple[Part, ...], events: tuple[Event, ...] = ()) -> Message:
    return Message(
        id=row["id"],
        state=State(row["state"]),
        to=row["recipient"],
        text=row["text"],
        encoding=row["encoding"],
        sender=row["sender"],
        origin=row["origin"],
        source_addr=row["source_addr"],
        carrier=row["carrier"],
        subject=row["subject"],
        mail_message_id=row["mail_message_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        expires_at=row["expires_at"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        segments=row["segments"],
        parts=parts,
        events=events,
    )
