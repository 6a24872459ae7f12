"""Parts of multi-part SMS from phones, committed one by one: on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mailsms.carriers.base import InboundSms
from mailsms.sms.reassemble import Fragment, fragment_from_udh
from mailsms.store import SqlStore, open_store

T0 = 1_800_000_000.0
PHONE, OURS = "+447700900123", "+447700900999"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlStore]:
    s = open_store(store_url)
    await s.open()
    yield s
    await s.close()


def part(seq: int, total: int = 3, ref: int = 7, at: float = T0, **kw: str) -> Fragment:
    fields = {"from_": PHONE, "to": OURS, "text": f"<{seq}>", "carrier_id": f"mo-{ref}-{seq}"}
    fields.update(kw)
    return Fragment(
        fields["from_"], fields["to"], ref, total, seq, fields["text"], fields["carrier_id"], at
    )


async def row(store: SqlStore, id: str | None) -> dict[str, object]:
    assert id is not None
    got = await store.get_inbound(id)
    assert got is not None
    return got


async def test_a_set_out_of_order_becomes_one_inbound_row_when_complete(store: SqlStore) -> None:
    assert await store.inbound_part(part(3, at=T0 + 2), "smsc", T0 + 2) == (None, False)
    assert await store.inbound_part(part(1, at=T0 + 3), "smsc", T0 + 3) == (None, False)
    assert await store.list_inbound() == []
    id, new = await store.inbound_part(part(2, at=T0 + 4), "smsc", T0 + 4)
    assert new
    got = await row(store, id)
    assert (got["carrier"], got["sender"], got["recipient"], got["text"]) == (
        "smsc",
        PHONE,
        OURS,
        "<1><2><3>",
    )
    assert (got["segments"], got["incomplete"], got["state"]) == (3, 0, "received")
    assert got["carrier_id"] == "mo-7-1,mo-7-2,mo-7-3"
    assert got["received_at"] == T0 + 2  # the earliest part's time
    # The done set is dropped by the sweep, not handed over again as an incomplete SMS.
    assert await store.expire_inbound_parts(T0 + 10_000, T0 + 10_000) == []
    assert len(await store.list_inbound()) == 1


async def test_a_part_sent_again_after_its_set_was_done_is_not_a_new_sms(store: SqlStore) -> None:
    # The SMSC lost our deliver_sm_resp for the part that completed the set and, after the
    # rebind, sends that part again (another MO id). It used to start a new set that the
    # sweep stored as an incomplete duplicate.
    for seq in (1, 2):
        await store.inbound_part(part(seq), "smsc", T0 + seq)
    id, new = await store.inbound_part(part(3), "smsc", T0 + 3)
    assert new
    assert await store.inbound_part(part(3, carrier_id="mo-again"), "smsc", T0 + 30) == (
        id,
        False,
    )
    assert await store.inbound_part(part(1, carrier_id="mo-again"), "smsc", T0 + 31) == (
        id,
        False,
    )
    # Swept at T0 + 20 (the set was done at T0 + 3): nothing incomplete comes out of it.
    assert await store.expire_inbound_parts(T0 + 20, T0 + 40) == []
    assert [r["id"] for r in await store.list_inbound()] == [id]


async def test_a_reused_reference_with_other_text_is_a_new_sms(store: SqlStore) -> None:
    for seq in (1, 2):
        await store.inbound_part(part(seq, total=2), "smsc", T0)
    (first,) = await store.list_inbound()
    # The phone wraps its 8-bit reference round: same numbers, ref and count, new text.
    again = {"text": "[1]", "carrier_id": "mo-b1"}
    assert await store.inbound_part(part(1, total=2, **again), "smsc", T0 + 60) == (None, False)
    id, new = await store.inbound_part(
        part(2, total=2, text="[2]", carrier_id="mo-b2"), "smsc", T0 + 61
    )
    assert new and id != first["id"]
    assert (await row(store, id))["text"] == "[1][2]"
    # A retry of the new set's part 1 is recognised against the new text, not the old.
    assert await store.inbound_part(part(1, total=2, **again), "smsc", T0 + 62) == (id, False)


async def test_a_done_set_is_forgotten_after_the_sweep_timeout(store: SqlStore) -> None:
    for seq in (1, 2):
        await store.inbound_part(part(seq, total=2), "smsc", T0)
    # Kept while done for less than the timeout ...
    assert await store.expire_inbound_parts(T0 - 1, T0 + 100) == []
    assert await store.inbound_part(part(2, total=2), "smsc", T0 + 100) != (None, False)
    # ... and dropped after it: the same part is then the start of a new set.
    assert await store.expire_inbound_parts(T0 + 1, T0 + 200) == []
    assert await store.inbound_part(part(2, total=2), "smsc", T0 + 200) == (None, False)
    (late,) = await store.expire_inbound_parts(T0 + 300, T0 + 600)
    assert (await row(store, late))["incomplete"] == 1


async def test_a_repeated_part_is_stored_once(store: SqlStore) -> None:
    await store.inbound_part(part(1), "smsc", T0)
    # The SMSC retries part 1 (our answer was lost): same key, another MO id.
    assert await store.inbound_part(part(1, carrier_id="mo-x"), "smsc", T0 + 1) == (None, False)
    id, new = await store.inbound_part(part(2, total=3), "smsc", T0 + 2)
    assert (id, new) == (None, False)  # 2 of 3: the duplicate did not count as a part
    id, new = await store.inbound_part(part(3), "smsc", T0 + 3)
    assert new
    got = await row(store, id)
    assert (got["text"], got["segments"]) == ("<1><2><3>", 3)
    assert got["carrier_id"] == "mo-7-1,mo-7-2,mo-7-3"  # the first copy of part 1 counts


async def test_sets_are_kept_apart_by_carrier_numbers_reference_and_total(
    store: SqlStore,
) -> None:
    await store.inbound_part(part(1, total=2), "smsc", T0)
    for other in (
        part(2, total=2, ref=8),  # another reference
        part(2, total=3),  # another count
        part(2, total=2, from_="+447700900124"),  # another phone
        part(2, total=2, to="+447700900998"),  # another of our numbers
    ):
        assert await store.inbound_part(other, "smsc", T0) == (None, False)
    assert await store.inbound_part(part(2, total=2), "smsc2", T0) == (None, False)
    id, new = await store.inbound_part(part(2, total=2, text="!"), "smsc", T0)
    assert new
    assert (await row(store, id))["text"] == "<1>!"


@pytest.mark.parametrize(
    "udh",
    [
        (b"\x05\x00\x03\xfe\x02{seq}", 0xFE),  # 8-bit reference
        (b"\x06\x08\x04\x12\x34\x02{seq}", 0x1234),  # 16-bit reference
    ],
    ids=["8-bit", "16-bit"],
)
async def test_udh_references_of_both_sizes(store: SqlStore, udh: tuple[bytes, int]) -> None:
    template, ref = udh
    frags = [
        fragment_from_udh(
            PHONE, OURS, template.replace(b"{seq}", bytes([seq])), f"p{seq} ", f"m{seq}", T0
        )
        for seq in (2, 1)
    ]
    assert {(f.ref, f.total) for f in frags} == {(ref, 2)}
    assert await store.inbound_part(frags[0], "smsc", T0) == (None, False)
    id, new = await store.inbound_part(frags[1], "smsc", T0)
    assert new
    assert (await row(store, id))["text"] == "p1 p2 "


async def test_sar_reference_above_255_is_not_confused_with_its_low_byte(store: SqlStore) -> None:
    # SAR TLVs carry a 16-bit reference: 0x0107 and 0x07 are different sets.
    await store.inbound_part(part(1, total=2, ref=0x0107), "smsc", T0)
    assert await store.inbound_part(part(2, total=2, ref=0x07), "smsc", T0) == (None, False)
    id, new = await store.inbound_part(part(2, total=2, ref=0x0107), "smsc", T0)
    assert new
    assert (await row(store, id))["carrier_id"] == "mo-263-1,mo-263-2"


async def test_a_message_on_its_own_goes_straight_to_inbound(store: SqlStore) -> None:
    id, new = await store.inbound_part(part(1, total=1, text="hi"), "smsc", T0)
    assert new
    got = await row(store, id)
    assert (got["text"], got["segments"], got["incomplete"]) == ("hi", 1, 0)


async def test_a_part_numbered_outside_its_set_is_refused(store: SqlStore) -> None:
    with pytest.raises(ValueError, match="part 4 of 3"):
        await store.inbound_part(part(4), "smsc", T0)
    with pytest.raises(ValueError, match="part 0 of 3"):
        await store.inbound_part(part(0), "smsc", T0)


async def test_a_stale_set_becomes_an_incomplete_inbound_row(store: SqlStore) -> None:
    await store.inbound_part(part(3, at=T0 + 5), "smsc", T0 + 5)
    await store.inbound_part(part(1, at=T0), "smsc", T0)
    await store.inbound_part(part(1, total=2, ref=9, at=T0 + 100), "smsc", T0 + 100)
    # The first set's newest part is T0 + 5: not older than T0 + 5 yet.
    assert await store.expire_inbound_parts(T0 + 5, T0 + 400) == []
    (id,) = await store.expire_inbound_parts(T0 + 50, T0 + 400)
    got = await row(store, id)
    assert (got["text"], got["segments"], got["incomplete"]) == ("<1><3>", 2, 1)
    assert got["carrier_id"] == "mo-7-1,mo-7-3"
    assert (got["received_at"], got["created_at"]) == (T0, T0 + 400)
    # Expired once: a late part 2 starts a set of its own, the other set still waits.
    assert await store.expire_inbound_parts(T0 + 50, T0 + 401) == []
    assert await store.inbound_part(part(2, at=T0 + 402), "smsc", T0 + 402) == (None, False)
    assert len(await store.expire_inbound_parts(T0 + 1000, T0 + 1000)) == 2
    assert len(await store.list_inbound()) == 3


async def test_a_set_already_stored_under_its_carrier_id_is_not_stored_twice(
    store: SqlStore,
) -> None:
    # The SMSC sets receipted_message_id, so the ids repeat when it sends the set again.
    first, new = await store.record_inbound(
        InboundSms("smsc", "r1,r2", PHONE, OURS, "<1><2>", T0, segments=2), T0
    )
    assert new
    await store.inbound_part(part(1, total=2, carrier_id="r1"), "smsc", T0 + 1)
    assert await store.inbound_part(part(2, total=2, carrier_id="r2"), "smsc", T0 + 1) == (
        first,
        False,
    )
    assert len(await store.list_inbound()) == 1
    # And that duplicate set is not left to expire as another row.
    assert await store.expire_inbound_parts(T0 + 1000, T0 + 1000) == []


async def test_parts_committed_at_the_same_time_complete_their_set(store: SqlStore) -> None:
    # Several binds (or processes) may commit parts of one set at once: one of them must
    # see all the others, whatever the interleaving.
    for ref in range(5):
        results = await asyncio.gather(
            *(store.inbound_part(part(seq, total=4, ref=ref), "smsc", T0) for seq in (1, 2, 3, 4))
        )
        assert [new for _, new in results].count(True) == 1, results
    rows = await store.list_inbound(limit=10)
    assert sorted(r["text"] for r in rows) == ["<1><2><3><4>"] * 5
    assert await store.expire_inbound_parts(T0 + 1000, T0 + 1000) == []
