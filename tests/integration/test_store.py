"""One behaviour suite, run on both stores: SQLite and the real PostgreSQL server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailsms.carriers.base import InboundSms
from mailsms.errors import StoreError
from mailsms.model import NewMessage, PartSpec, PartState, State, new_id
from mailsms.store import SqlStore, open_store
from mailsms.store.sqlite import SqliteStore

T0 = 1_800_000_000.0


def msg(to: str = "+447700900123", parts: int = 1, **kw: object) -> NewMessage:
    specs = tuple(
        PartSpec(i, f"part {i}", b"\x05\x00\x03\x01" + bytes([parts, i]), b"p", 6)
        for i in range(1, parts + 1)
    )
    return NewMessage(
        id=new_id(),
        to=to,
        text="hello",
        encoding="gsm7",
        parts=specs,
        sender="ops@example.test",
        expires_at=T0 + 3600,
        **kw,
    )  # type: ignore[arg-type]


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlStore]:
    s = open_store(store_url)
    await s.open()
    yield s
    await s.close()


async def test_enqueue_then_get_round_trips_every_field(store: SqlStore) -> None:
    m = msg(parts=2, subject="Disk full", mail_message_id="<a@b>", original_recipient="x@y")
    await store.enqueue([m], T0)
    got = await store.get(m.id)
    assert got is not None
    assert (got.state, got.to, got.segments, got.subject, got.mail_message_id) == (
        State.QUEUED,
        m.to,
        2,
        "Disk full",
        "<a@b>",
    )
    assert [p.udh for p in got.parts] == [p.udh for p in m.parts]
    assert all(p.state is PartState.PENDING for p in got.parts)
    assert [(e.state, e.source) for e in got.events] == [("queued", "smtp")]


async def test_claim_leases_due_messages_once(store: SqlStore) -> None:
    a, b = msg(), msg()
    await store.enqueue([a, b], T0)
    first = await store.claim("w1", 10, 60, T0)
    assert {m.id for m in first} == {a.id, b.id}
    assert all(m.state is State.SUBMITTING and m.attempts == 1 for m in first)
    assert await store.claim("w2", 10, 60, T0 + 1) == []


async def test_expired_lease_is_reclaimed_and_old_owner_loses(store: SqlStore) -> None:
    m = msg()
    await store.enqueue([m], T0)
    await store.claim("crashed", 10, 60, T0)
    again = await store.claim("w2", 10, 60, T0 + 61)
    assert [x.id for x in again] == [m.id] and again[0].attempts == 2
    assert not await store.mark_submitted(m.id, "crashed", "c", ["x"], False, T0 + 62)
    assert await store.mark_submitted(m.id, "w2", "c", ["y"], False, T0 + 62)


async def test_claim_respects_limit_and_due_time(store: SqlStore) -> None:
    await store.enqueue([msg() for _ in range(5)], T0)
    assert len(await store.claim("w", 3, 60, T0)) == 3
    assert await store.claim("w", 10, 60, T0 - 1) == []


async def test_submitted_then_reports_make_it_delivered_only_when_all_parts_are(
    store: SqlStore,
) -> None:
    m = msg(parts=2)
    await store.enqueue([m], T0)
    await store.claim("w", 1, 60, T0)
    assert await store.mark_submitted(m.id, "w", "smsc", ["id1", "id2"], False, T0 + 1)
    assert (
        await store.delivery_report("smsc", "id1", PartState.DELIVERED, "", "dlr", T0 + 2) == m.id
    )
    got = await store.get(m.id)
    assert got is not None and got.state is State.SUBMITTED
    await store.delivery_report("smsc", "id2", PartState.DELIVERED, "", "dlr", T0 + 3)
    got = await store.get(m.id)
    assert got is not None and got.state is State.DELIVERED
    assert [p.carrier_id for p in got.parts] == ["id1", "id2"]


async def test_one_failed_part_fails_the_message(store: SqlStore) -> None:
    m = msg(parts=2)
    await store.enqueue([m], T0)
    await store.claim("w", 1, 60, T0)
    await store.mark_submitted(m.id, "w", "smsc", ["a", "b"], False, T0)
    await store.delivery_report("smsc", "b", PartState.FAILED, "err 001", "dlr", T0 + 1)
    got = await store.get(m.id)
    assert got is not None and got.state is State.FAILED and got.last_error == "err 001"


async def test_report_for_unknown_id_changes_nothing(store: SqlStore) -> None:
    assert await store.delivery_report("smsc", "nope", PartState.DELIVERED, "", "dlr", T0) is None


async def test_retry_schedules_and_finish_is_terminal(store: SqlStore) -> None:
    m = msg()
    await store.enqueue([m], T0)
    await store.claim("w", 1, 60, T0)
    assert await store.mark_retry(m.id, "w", T0 + 30, "throttled", T0)
    assert await store.claim("w", 1, 60, T0 + 29) == []
    assert [x.id for x in await store.claim("w", 1, 60, T0 + 30)] == [m.id]
    assert await store.finish(m.id, "w", State.EXPIRED, "max age", T0 + 31)
    got = await store.get(m.id)
    assert got is not None and got.state is State.EXPIRED
    assert [e.state for e in got.events] == [
        "queued",
        "submitting",
        "queued",
        "submitting",
        "expired",
    ]
    assert all(p.state is PartState.EXPIRED for p in got.parts)


async def test_operator_cancel_and_retry(store: SqlStore) -> None:
    m = msg()
    await store.enqueue([m], T0)
    assert await store.cancel(m.id, T0)
    assert not await store.cancel(m.id, T0)
    assert await store.retry(m.id, T0 + 3600, T0 + 1)
    got = await store.get(m.id)
    assert got is not None and got.state is State.QUEUED and got.attempts == 0
    assert not await store.retry(m.id, T0 + 3600, T0 + 1)  # only failed/expired/cancelled


async def test_release_returns_a_claim_without_counting_the_attempt(store: SqlStore) -> None:
    m = msg()
    await store.enqueue([m], T0)
    await store.claim("w", 1, 60, T0)
    assert await store.release(m.id, "w", T0)
    [again] = await store.claim("w", 1, 60, T0)
    assert again.attempts == 1


async def test_queue_depth_and_next_wakeup(store: SqlStore) -> None:
    assert await store.next_wakeup() is None
    a, b = msg(), msg()
    await store.enqueue([a, b], T0)
    await store.claim("w", 1, 60, T0)
    assert await store.queue_depth() == {"queued": 1, "submitting": 1}
    assert await store.next_wakeup() == T0


async def test_concurrent_enqueues_all_commit(store: SqlStore) -> None:
    batches = [[msg(), msg()] for _ in range(50)]
    await asyncio.gather(*(store.enqueue(b, T0) for b in batches))
    assert (await store.queue_depth())["queued"] == 100


async def test_a_failing_operation_does_not_sink_its_batch_neighbours(store: SqlStore) -> None:
    dup = msg()
    await store.enqueue([dup], T0)
    good = msg()
    results = await asyncio.gather(
        store.enqueue([dup], T0), store.enqueue([good], T0), return_exceptions=True
    )
    assert isinstance(results[0], Exception) and not isinstance(results[1], BaseException)
    assert await store.get(good.id) is not None


async def test_inbound_is_stored_once_per_carrier_id(store: SqlStore) -> None:
    sms = InboundSms(
        carrier="c", carrier_id="SM1", from_="+447700900123", to="+447700900999", text="hi"
    )
    first = await store.record_inbound(sms, T0)
    second = await store.record_inbound(sms, T0 + 1)
    assert first[1] is True and second == (first[0], False)
    assert [r["text"] for r in await store.list_inbound()] == ["hi"]


async def test_migrations_are_idempotent(store_url: str) -> None:
    for _ in range(2):
        s = open_store(store_url)
        await s.open()
        await s.ping()
        await s.close()


@pytest.mark.postgres
async def test_postgres_concurrent_claims_never_share_a_message(pg_url: str) -> None:
    stores = [open_store(pg_url) for _ in range(3)]
    for s in stores:
        await s.open()
    try:
        await stores[0].enqueue([msg() for _ in range(60)], T0)
        claims = await asyncio.gather(
            *(s.claim(f"w{i}-{j}", 5, 60, T0) for j in range(6) for i, s in enumerate(stores))
        )
        ids = [m.id for batch in claims for m in batch]
        assert len(ids) == len(set(ids)) == 60
    finally:
        for s in stores:
            await s.close()


async def test_concat_references_are_consecutive_per_destination_and_survive_reopen(
    store_url: str,
) -> None:
    s = open_store(store_url)
    await s.open()
    try:
        first = await s.allocate_references("+447700900123", 1, start=250)
        assert first == 250
        assert await s.allocate_references("+447700900123", 3, start=0) == 251
        assert await s.allocate_references("+447700900999", 1, start=7) == 7
    finally:
        await s.close()
    s = open_store(store_url)
    await s.open()
    try:
        assert await s.allocate_references("+447700900123", 1, start=0) == 254
    finally:
        await s.close()


async def test_a_report_that_races_ahead_of_the_submit_response_is_applied_on_submit(
    store: SqlStore,
) -> None:
    m = msg()
    await store.enqueue([m], T0)
    await store.claim("w", 1, 60, T0)
    # The carrier's receipt arrives before we have recorded the id it refers to...
    assert await store.delivery_report("smsc", "early", PartState.DELIVERED, "", "dlr", T0) is None
    # ...and is applied when the submit response tells us that id.
    assert await store.mark_submitted(m.id, "w", "smsc", ["early"], False, T0 + 1)
    got = await store.get(m.id)
    assert got is not None and got.state is State.DELIVERED


async def test_unknown_reports_are_purged_after_a_while(store: SqlStore) -> None:
    await store.delivery_report("smsc", "ghost", PartState.DELIVERED, "", "dlr", T0)
    await store.expire_stale(before=T0, now=T0 + 700, purge_before=T0 + 600)
    m = msg()
    await store.enqueue([m], T0 + 700)
    await store.claim("w", 1, 60, T0 + 700)
    await store.mark_submitted(m.id, "w", "smsc", ["ghost"], False, T0 + 701)
    got = await store.get(m.id)
    assert got is not None and got.state is State.SUBMITTED


async def test_retention_purges_only_what_is_finished_and_old(store: SqlStore) -> None:
    old_done, old_queued, new_done = msg(), msg(), msg()
    await store.enqueue([old_done], T0)
    await store.claim("w", 1, 60, T0)
    assert await store.mark_submitted(old_done.id, "w", "c", ["x"], True, T0)
    await store.enqueue([old_queued], T0)
    await store.enqueue([new_done], T0 + 1000)
    await store.claim("w", 5, 60, T0 + 1000)
    await store.mark_submitted(new_done.id, "w", "c", ["y"], True, T0 + 1000)
    removed = await store.purge(before=T0 + 500, conversations_before=T0 + 500)
    assert removed == 1
    assert await store.get(old_done.id) is None
    assert await store.get(old_queued.id) is not None  # still to be sent: never purged
    assert await store.get(new_done.id) is not None


async def test_sqlite_fsync_child_death_fails_one_round_then_recovers(tmp_path: Path) -> None:
    """The fsync child is killed: no commit is reported durable that was not fsynced (the
    round in flight fails with StoreError, which intake answers 451), the next round starts
    a fresh child, and nothing committed is lost."""
    store = SqliteStore(str(tmp_path / "s.db"))
    await store.open()
    try:
        first = msg()
        await store.enqueue([first], T0)
        child = store._syncer
        assert child is not None
        child.kill()
        await child.wait()
        survivors = [first]
        for _ in range(3):
            m = msg()
            try:
                await store.enqueue([m], T0)
            except StoreError:
                continue  # this round's durability is unknown: the client was told 451
            survivors.append(m)
        assert store._syncer is not None and store._syncer.pid != child.pid
        for m in survivors:
            assert await store.get(m.id) is not None
    finally:
        await store.close()
    assert store._syncer is None


async def test_sqlite_fsync_child_exits_with_the_store(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    await store.open()
    child = store._syncer
    assert child is not None
    await store.close()
    assert child.returncode == 0


async def test_sqlite_wal_stays_bounded_under_sustained_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With commits back to back, background checkpoints never catch up with the last
    frame, and SQLite only rewinds a WAL that one has: the store's connection checkpoints
    between its own commits past a limit, so the file stops growing."""
    from mailsms.store import sqlite as engine

    monkeypatch.setattr(engine, "_WAL_AUTOCHECKPOINT", 64)
    store = SqliteStore(str(tmp_path / "s.db"))
    await store.open()
    try:
        largest = 0
        for _ in range(200):
            await asyncio.gather(*(store.enqueue([msg(parts=3)], T0) for _ in range(5)))
            largest = max(largest, (tmp_path / "s.db-wal").stat().st_size)
        assert largest < 2 << 20  # ~10 MB without the checkpoints between commits
    finally:
        await store.close()


async def test_bookkeeping_waiting_for_a_commit_is_committed_at_close(store_url: str) -> None:
    store = open_store(store_url)
    await store.open()
    m = msg()
    await store.enqueue([m], T0)
    assert len(await store.claim("me", 1, 60, T0)) == 1
    done = asyncio.ensure_future(
        store.mark_submitted(m.id, "me", "c", ["x1"], delivered=True, now=T0 + 1)
    )
    await asyncio.sleep(0)  # queued, not yet committed
    await store.close()
    assert await done
    await store.open()
    try:
        got = await store.get(m.id)
        assert got is not None and got.state is State.DELIVERED
    finally:
        await store.close()


async def reference(store: SqlStore, destination: str = "+447700900123") -> int:
    """One reference, as the enqueue's transaction takes it."""
    value: int = await store._run(lambda tx: store._reference(tx, destination, 1, 0))
    return value


async def test_two_processes_reserving_reference_blocks_never_share_one(store_url: str) -> None:
    a, b = open_store(store_url), open_store(store_url)
    await a.open()
    await b.open()
    try:
        taken = [await reference(s) for _ in range(40) for s in (a, b)]
        assert len(set(taken)) == len(taken) == 80
        mine = [t for i, t in enumerate(taken) if i % 2 == 0]
        assert mine[:16] == list(range(mine[0], mine[0] + 16))  # consecutive within a block
    finally:
        await a.close()
        await b.close()


async def test_a_rolled_back_reservation_is_forgotten(store_url: str) -> None:
    a, b = open_store(store_url), open_store(store_url)
    await a.open()
    await b.open()
    try:

        def reserve_then_fail(tx: object) -> None:
            a._reference(tx, "+447700900123", 1, 0)  # type: ignore[arg-type]
            raise RuntimeError("the rest of the transaction failed")

        with pytest.raises(RuntimeError):
            await a._run(reserve_then_fail)
        first_b = await reference(b)  # the store's counter never moved: b gets that block
        assert await reference(a) not in range(first_b, first_b + 16)
    finally:
        await a.close()
        await b.close()


async def test_an_intake_key_is_committed_once_with_its_messages(store: SqlStore) -> None:
    # IMAP intake: the key of a mailbox message is committed with the SMS it became, so a
    # second attempt (a crash before the \Seen flag, another gateway) queues nothing.
    from mailsms.store.base import AlreadyQueued

    first = msg()
    assert await store.intake_key("imap:a:1:7") is None
    await store.enqueue([first], T0, key="imap:a:1:7")
    assert await store.intake_key("imap:a:1:7") == (first.id,)
    with pytest.raises(AlreadyQueued) as again:
        await store.enqueue([msg(), msg()], T0 + 1, key="imap:a:1:7")
    assert again.value.ids == (first.id,)
    assert [m.id for m in await store.list_messages(limit=10)] == [first.id]  # rolled back
    await store.enqueue([msg()], T0 + 2, key="imap:a:2:7")  # a new UIDVALIDITY: a new key
    # Purged with the retention sweep, like the finished messages they belong to.
    await store.purge(T0 + 1.5, T0 + 1.5)
    assert await store.intake_key("imap:a:1:7") is None
    assert await store.intake_key("imap:a:2:7") is not None
