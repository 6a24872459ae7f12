"""Store operations for the parts of multi-part SMS from phones. Mixed into
:class:`~mailsms.store.base.SqlStore`.

An SMSC expects each deliver_sm answered within seconds, so the parts of a long SMS are
acknowledged one by one, long before the set is complete. To keep DESIGN.md invariant 1
(nothing acknowledged is lost), each part is committed before its acknowledgement
(:meth:`FragmentOps.inbound_part`); the part that completes a set turns it into an
``inbound`` row in the same transaction. Sets whose missing parts never come become
``inbound`` rows marked incomplete (:meth:`FragmentOps.expire_inbound_parts`). The pure
:class:`~mailsms.sms.reassemble.Reassembler` puts the parts in order: no reassembly in SQL.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from mailsms.carriers.base import InboundSms
from mailsms.model import new_id
from mailsms.sms.reassemble import Assembled, Fragment, Reassembler

Row = dict[str, Any]


def insert_inbound(tx: Any, sms: InboundSms, now: float) -> tuple[str, bool]:
    """Store an SMS from a phone once per carrier id: (id, True) when new, (existing id,
    False) for a repeated carrier id. Used by ``SqlStore.record_inbound`` and for
    reassembled MOs, so both follow one dedupe rule."""
    key = {"carrier": sms.carrier, "carrier_id": sms.carrier_id}
    found = tx.fetchall("find_inbound", key)
    if found:
        return str(found[0]["id"]), False
    id = new_id()
    tx.execute(
        "insert_inbound",
        {
            **key,
            "id": id,
            "sender": sms.from_,
            "recipient": sms.to,
            "text": sms.text,
            "segments": sms.segments,
            "incomplete": int(sms.incomplete),
            "received_at": sms.received_at or now,
            "now": now,
        },
    )
    return id, True


def _set_key(carrier: str, f: Fragment) -> dict[str, Any]:
    return {
        "carrier": carrier,
        "sender": f.from_,
        "recipient": f.to,
        "ref": f.ref,
        "total": f.total,
    }


def _parts(tx: Any, key: dict[str, Any]) -> list[Fragment]:
    return [
        Fragment(
            key["sender"],
            key["recipient"],
            key["ref"],
            key["total"],
            r["seq"],
            r["text"],
            r["carrier_id"],
            float(r["received_at"]),
        )
        for r in tx.fetchall("inbound_parts_of_set", key)
    ]


def _sms(carrier: str, assembled: Assembled) -> InboundSms:
    return InboundSms(
        carrier=carrier,
        carrier_id=",".join(assembled.carrier_ids),
        from_=assembled.from_,
        to=assembled.to,
        text=assembled.text,
        received_at=assembled.received_at,
        segments=assembled.segments,
        incomplete=assembled.incomplete,
    )


class FragmentOps:
    """Needs ``_run(fn, durable)`` from the store it is mixed into."""

    _run: Callable[..., Awaitable[Any]]

    async def inbound_part(
        self, fragment: Fragment, carrier: str, now: float
    ) -> tuple[str | None, bool]:
        """Commit one part (a repeated part changes nothing). Returns (inbound id, True) when
        it completed its set, which is then an ``inbound`` row; (existing id, False) when that
        row's carrier id was stored before, or when the part repeats one of a set that became
        a row less than the sweep's timeout ago; (None, False) while the set waits for parts.

        A done set keeps its parts until :meth:`expire_inbound_parts` drops it: an SMSC whose
        deliver_sm_resp was lost sends the part again, and with the set forgotten that retry
        began a new set, later stored as an incomplete duplicate. A part of a done set with a
        different text is a new message under a reused reference and reopens the set.

        Raises ValueError for a part numbered outside 1..total, before writing anything.
        """
        if not 1 <= fragment.seq <= max(fragment.total, 1):
            raise ValueError(f"part {fragment.seq} of {fragment.total}")

        def op(tx: Any) -> tuple[str | None, bool]:
            if fragment.total <= 1:
                assembled = Reassembler().add(fragment)
                assert assembled is not None  # a message on its own is always whole
                return insert_inbound(tx, _sms(carrier, assembled), now)
            key = _set_key(carrier, fragment)
            tx.execute("touch_inbound_part_set", {**key, "received_at": fragment.received_at})
            (state,) = tx.fetchall("inbound_part_set_state", key)
            if state["done_at"] is not None:
                stored = tx.fetchall("inbound_part_text", {**key, "seq": fragment.seq})
                if stored and stored[0]["text"] == fragment.text:
                    # The SMSC sent again a part we answered (the answer was lost): the set
                    # is already an inbound row.
                    return str(state["inbound_id"]), False
                # The phone reused the reference for a new message.
                tx.execute("delete_inbound_parts_of_set", key)
                tx.execute("reopen_inbound_part_set", {**key, "received_at": fragment.received_at})
            tx.execute(
                "insert_inbound_part",
                {
                    **key,
                    "seq": fragment.seq,
                    "text": fragment.text,
                    "carrier_id": fragment.carrier_id,
                    "received_at": fragment.received_at,
                },
            )
            reassembler = Reassembler()
            for part in _parts(tx, key):
                assembled = reassembler.add(part)
                if assembled is not None:
                    id, new = insert_inbound(tx, _sms(carrier, assembled), now)
                    tx.execute("finish_inbound_part_set", {**key, "done_at": now, "inbound_id": id})
                    return id, new
            return None, False

        result: tuple[str | None, bool] = await self._run(op)
        return result

    async def expire_inbound_parts(self, before: float, now: float, limit: int = 1000) -> list[str]:
        """Sets with no new part since ``before`` become ``inbound`` rows marked incomplete
        (the parts that arrived, in order), in the transaction that deletes the parts; sets
        done before ``before`` are dropped with their parts. Returns the ids of the new
        rows."""

        def op(tx: Any) -> list[str]:
            ids: list[str] = []
            for key in tx.fetchall(
                "old_done_inbound_part_sets", {"before": before, "limit": limit}
            ):
                if tx.execute("take_old_done_inbound_part_set", {**key, "before": before}):
                    tx.execute("delete_inbound_parts_of_set", key)
            for key in tx.fetchall("stale_inbound_part_sets", {"before": before, "limit": limit}):
                if not tx.execute("take_stale_inbound_part_set", {**key, "before": before}):
                    continue  # a part came in meanwhile (another process)
                parts = _parts(tx, key)
                tx.execute("delete_inbound_parts_of_set", key)
                if not parts:
                    continue
                reassembler = Reassembler()
                whole = [a for part in parts if (a := reassembler.add(part)) is not None]
                # Stale by the query above: hand the set out whatever the timeout.
                (assembled,) = whole or reassembler.expire(math.inf)
                id, new = insert_inbound(tx, _sms(key["carrier"], assembled), now)
                if new:
                    ids.append(id)
            return ids

        result: list[str] = await self._run(op)
        return result
