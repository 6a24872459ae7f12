"""Store operations for the SMS -> mail side: the outgoing mail queue, conversations, and
the processing state of inbound SMS. Mixed into :class:`~mailsms.store.base.SqlStore`.

The outgoing queue has the same shape as the SMS queue (lease, attempts, backoff, an end),
because it keeps the same promise: a smarthost outage delays mail, never loses it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from mailsms.model import new_id

T = TypeVar("T")
Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class OutboundMail:
    id: str
    kind: str
    ref_id: str | None
    mail_from: str
    rcpt_to: str
    data: bytes
    attempts: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    email: str
    phone: str
    our_number: str
    message_id: str | None
    subject: str | None
    references: tuple[str, ...]
    last_text: str | None


def conversation(row: Row) -> Conversation:
    return Conversation(
        id=row["id"],
        email=row["email"],
        phone=row["phone"],
        our_number=row["our_number"],
        message_id=row["message_id"],
        subject=row["subject"],
        references=tuple(r for r in str(row["refs"] or "").split() if r),
        last_text=row["last_text"],
    )


def insert_conversation(tx: Any, conv: dict[str, Any], now: float) -> str:
    """Insert a conversation (keys: email, phone, our_number, message_id, subject,
    references, last_text) and index its Message-ID; returns its id."""
    id = str(conv.get("id") or new_id())
    tx.execute(
        "insert_conversation",
        {
            "id": id,
            "email": conv["email"],
            "phone": conv["phone"],
            "our_number": conv["our_number"],
            "message_id": conv.get("message_id"),
            "subject": conv.get("subject"),
            "refs": " ".join(conv.get("references") or ()),
            "last_text": conv.get("last_text"),
            "now": now,
        },
    )
    if conv.get("message_id"):
        tx.execute(
            "insert_conversation_mail", {"message_id": conv["message_id"], "conversation_id": id}
        )
    return id


class MailOps:
    """Needs ``_run(fn, durable)`` and ``_read(fn)`` from the store it is mixed into."""

    _run: Callable[..., Awaitable[Any]]
    _read: Callable[..., Awaitable[Any]]

    # --- the outgoing mail queue -------------------------------------------------------

    async def enqueue_mail(
        self,
        kind: str,
        ref_id: str | None,
        mail_from: str,
        rcpt_to: str,
        data: bytes,
        now: float,
        expires_at: float,
        after: Callable[[Any], None] | None = None,
    ) -> str:
        """Queue one mail; returns its id after the (durable) commit. ``after(tx)`` runs in
        the same transaction, so marking the source handled commits with the mail."""
        id = new_id()

        def op(tx: Any) -> str:
            tx.execute(
                "insert_mail",
                {
                    "id": id,
                    "kind": kind,
                    "ref_id": ref_id,
                    "mail_from": mail_from,
                    "rcpt_to": rcpt_to,
                    "data": data,
                    "now": now,
                    "expires_at": expires_at,
                },
            )
            if after is not None:
                after(tx)
            return id

        result: str = await self._run(op)
        return result

    async def claim_mail(
        self, owner: str, limit: int, lease: float, now: float
    ) -> list[OutboundMail]:
        def op(tx: Any) -> list[OutboundMail]:
            rows = tx.fetchall(
                "claim_mail",
                {
                    "owner": owner,
                    "limit": limit,
                    "lease_expires_at": now + lease,
                    "now": now,
                },
            )
            return [
                OutboundMail(
                    r["id"],
                    r["kind"],
                    r["ref_id"],
                    r["mail_from"],
                    r["rcpt_to"],
                    bytes(r["data"]),
                    r["attempts"],
                    r["expires_at"],
                )
                for r in rows
            ]

        result: list[OutboundMail] = await self._run(op, durable=False)
        return result

    async def mail_done(
        self,
        id: str,
        owner: str,
        state: str,
        detail: str | None,
        now: float,
        next_attempt_at: float | None = None,
    ) -> bool:
        """``sent``, ``failed`` (both final) or ``queued`` again at ``next_attempt_at``."""
        name = {"sent": "mail_sent", "failed": "mail_failed", "queued": "mail_retry"}[state]

        def op(tx: Any) -> bool:
            return bool(
                tx.execute(
                    name,
                    {
                        "id": id,
                        "owner": owner,
                        "now": now,
                        "detail": detail,
                        "error": detail,
                        "next_attempt_at": next_attempt_at,
                    },
                )
            )

        ok: bool = await self._run(op, durable=state != "queued")
        return ok

    async def mail_for(self, ref_id: str) -> list[Row]:
        rows: list[Row] = await self._read(
            lambda tx: tx.fetchall("mail_for_ref", {"ref_id": ref_id})
        )
        return rows

    async def mail_next_due(self) -> float | None:
        rows = await self._read(lambda tx: tx.fetchall("mail_next_due", {}))
        t = rows[0]["t"] if rows else None
        return None if t is None else float(t)

    # --- conversations ----------------------------------------------------------------

    async def find_conversation(
        self, phone: str, our_number: str, since: float
    ) -> Conversation | None:
        rows = await self._read(
            lambda tx: tx.fetchall(
                "find_conversation", {"phone": phone, "our_number": our_number, "since": since}
            )
        )
        return conversation(rows[0]) if rows else None

    async def conversation_for_mail(self, message_ids: Sequence[str]) -> Conversation | None:
        """The conversation of the newest of ``message_ids`` we know (a reply's References)."""

        def op(tx: Any) -> Conversation | None:
            for mid in reversed(list(message_ids)):
                rows = tx.fetchall("conversation_for_mail", {"message_id": mid})
                if rows:
                    return conversation(rows[0])
            return None

        result: Conversation | None = await self._read(op)
        return result

    # --- inbound processing -------------------------------------------------------------

    async def inbound_pending(self, limit: int = 100) -> list[Row]:
        rows: list[Row] = await self._read(
            lambda tx: tx.fetchall("inbound_pending", {"limit": limit})
        )
        return rows

    async def inbound_result(self, id: str, state: str, error: str | None) -> None:
        """``relayed`` / ``relay_failed`` / ``undeliverable``, with why."""
        await self._run(
            lambda tx: tx.execute("set_inbound_result", {"id": id, "state": state, "error": error})
        )

    async def message_event(
        self, id: str, state: str, reason: str, source: str, now: float
    ) -> None:
        """An event on an outbound message that is not a state change (a DSN sent, say)."""
        await self._run(
            lambda tx: tx.execute(
                "insert_event_only",
                {"message_id": id, "at": now, "state": state, "reason": reason, "source": source},
            )
        )

    async def get_inbound(self, id: str) -> Row | None:
        rows = await self._read(lambda tx: tx.fetchall("get_inbound", {"id": id}))
        return rows[0] if rows else None
