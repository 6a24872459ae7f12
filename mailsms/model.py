"""The values that flow between the stages: messages, their parts, states and events.

Everything here is plain data (frozen dataclasses and enums) so that the intake, the store,
the dispatcher and the carriers can exchange it without importing one another.
"""

from __future__ import annotations

import enum
import os
import random
import time
from dataclasses import dataclass, field


class State(enum.StrEnum):
    """The life of an outbound message (DESIGN.md invariant 2).

    ``queued`` waits for a worker; ``submitting`` is leased by a worker (a lease left by a
    crashed process expires and the message is claimable again); ``submitted`` was accepted by
    the carrier and waits for delivery reports. The rest are terminal.
    """

    QUEUED = "queued"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    FAILED = "failed"
    EXPIRED = "expired"
    REJECTED = "rejected"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {State.DELIVERED, State.FAILED, State.EXPIRED, State.REJECTED, State.CANCELLED}
)


class PartState(enum.StrEnum):
    """The state of one segment of a message at its carrier (DESIGN.md invariant 4)."""

    PENDING = "pending"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    FAILED = "failed"
    EXPIRED = "expired"


_random = random.Random(os.urandom(16))  # seeded per process from the OS


def new_id() -> str:
    """A sortable, unique message id: 48 bits of milliseconds then 64 random bits, hex.

    Sortable ids keep the queue index append-mostly and make ``messages list`` chronological.
    The random bits come from a per-process generator seeded by the OS, not from
    ``os.urandom`` per id: that syscall drops the GIL, and under load getting it back behind
    the store's writer thread cost more than everything else in this function.
    """
    ms = time.time_ns() // 1_000_000
    return f"{ms:012x}{_random.getrandbits(64):016x}"


@dataclass(frozen=True, slots=True)
class PartSpec:
    """One SMS segment as the encoder produced it, ready to store and to submit.

    ``payload`` is the user data without the UDH: unpacked septets (one byte per septet,
    escapes included) for GSM-7, UTF-16BE for UCS-2. ``size`` counts septets or octets.
    """

    seq: int
    text: str
    udh: bytes = b""
    payload: bytes = b""
    size: int = 0


@dataclass(frozen=True, slots=True)
class NewMessage:
    """What the intake (or the API, or the CLI) asks the store to queue: one per recipient."""

    id: str
    to: str
    text: str
    encoding: str
    parts: tuple[PartSpec, ...]
    sender: str = ""
    origin: str = "smtp"
    source_addr: str | None = None
    carrier: str | None = None
    subject: str | None = None
    mail_message_id: str | None = None
    original_recipient: str | None = None
    shift_table: str | None = None
    expires_at: float = 0.0
    meta: dict[str, object] = field(default_factory=dict)
    notify: frozenset[str] = frozenset()  # which DSNs the sender gets: failed, delayed, delivered
    dsn: dict[str, object] = field(default_factory=dict)  # RET, ENVID, ORCPT as received
    original: bytes | None = None  # what RET asked us to return in a DSN


@dataclass(frozen=True, slots=True)
class Part:
    """A stored segment with its carrier id and status."""

    seq: int
    text: str
    udh: bytes
    payload: bytes
    size: int
    state: PartState
    carrier_id: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One state transition: when, to what, why, and who said so."""

    at: float
    state: str
    reason: str
    source: str = "gateway"


@dataclass(frozen=True, slots=True)
class Message:
    """A stored outbound message as the dispatcher and the CLI see it."""

    id: str
    state: State
    to: str
    text: str
    encoding: str
    sender: str
    origin: str
    source_addr: str | None
    carrier: str | None
    subject: str | None
    mail_message_id: str | None
    created_at: float
    updated_at: float
    expires_at: float
    attempts: int
    next_attempt_at: float
    last_error: str | None
    segments: int
    parts: tuple[Part, ...] = ()
    events: tuple[Event, ...] = ()

    @classmethod
    def claimed_at_intake(cls, new: NewMessage, now: float) -> Message:
        """What a claim would have read back for ``new`` stored under a lease at intake
        (first attempt, parts pending): the dispatcher gets it in memory, not from a query."""
        return cls(
            id=new.id,
            state=State.SUBMITTING,
            to=new.to,
            text=new.text,
            encoding=new.encoding,
            sender=new.sender,
            origin=new.origin,
            source_addr=new.source_addr,
            carrier=new.carrier,
            subject=new.subject,
            mail_message_id=new.mail_message_id,
            created_at=now,
            updated_at=now,
            expires_at=new.expires_at,
            attempts=1,
            next_attempt_at=now,
            last_error=None,
            segments=len(new.parts),
            parts=tuple(
                Part(p.seq, p.text, p.udh, p.payload, p.size, PartState.PENDING) for p in new.parts
            ),
        )
