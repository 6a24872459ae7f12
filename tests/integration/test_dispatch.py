"""The dispatcher with the scriptable fake carrier: retries, backoff, expiry, limits, shutdown."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from mailsms.address import parse_recipient
from mailsms.app import Gateway
from mailsms.carriers.fake import FakeCarrier
from mailsms.model import Message, NewMessage, PartSpec, State, new_id
from mailsms.store import open_store
from mailsms.store.base import Lease
from tests.conftest import GatewayFactory
from tests.helpers import settled, until

UK = "+447700900123"


async def queue(gw: Gateway, text: str = "hello", to: str = UK) -> str:
    rcpt = parse_recipient(f"{to}@sms.example.test", gw.intake.domains, "GB")
    accepted = await gw.intake.accept_text(text, "test", [rcpt], "test")
    return accepted.ids[0]


def fake(gw: Gateway, name: str = "fake") -> FakeCarrier:
    carrier = gw.carriers[name]
    assert isinstance(carrier, FakeCarrier)
    return carrier


async def test_temporary_failures_are_retried_with_backoff(gateway: Gateway) -> None:
    fake(gateway).script("temporary", "temporary")
    id = await queue(gateway)
    m = await settled(gateway, id)
    assert m.state is State.DELIVERED and m.attempts == 3
    retries = [e for e in m.events if e.state == "queued" and e.reason.startswith("retry at")]
    assert len(retries) == 2
    # Backoff grows: each retry is scheduled after the previous one's delay.
    claims = [e.at for e in m.events if e.state == "submitting"]
    assert claims[2] - claims[1] >= (claims[1] - claims[0]) * 0.5


async def test_permanent_failure_ends_failed_without_retry(gateway: Gateway) -> None:
    fake(gateway).script("permanent")
    m = await settled(gateway, await queue(gateway))
    assert m.state is State.FAILED and m.attempts == 1
    assert m.last_error is not None and "fake-perm" in m.last_error
    assert fake(gateway).attempts == 1


async def test_gives_up_after_max_attempts(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(dispatch={"max_attempts": 3})
    fake(gw).script(*["temporary"] * 10)
    m = await settled(gw, await queue(gw))
    assert m.state is State.FAILED and m.attempts == 3
    assert m.last_error is not None and "gave up after 3 attempts" in m.last_error


async def test_expires_at_max_age(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(
        dispatch={
            "max_age": "300ms",
            "backoff_initial": "200ms",
            "backoff_max": "200ms",
            "max_attempts": 100,
        }
    )
    fake(gw).script(*["temporary"] * 100)
    m = await settled(gw, await queue(gw))
    assert m.state is State.EXPIRED
    assert m.events[-1].state == "expired"


async def test_a_crashed_workers_lease_is_reclaimed(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(dispatch={"lease": "300ms"})
    await gw.dispatcher.stop()  # this gateway's dispatcher plays dead
    id = await queue(gw)
    [claimed] = await gw.store.claim("crashed-process", 1, 0.3, time.time())
    assert claimed.id == id
    other = await gateway_factory(store={"url": gw.settings.store.url})
    m = await settled(other, id)
    assert m.state is State.DELIVERED and m.attempts == 2
    assert fake(other).submitted[0].attempt == 2


async def test_per_carrier_concurrency_is_enforced(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(
        carrier=[{"name": "fake", "type": "fake", "concurrency": 3, "latency": "20ms"}]
    )
    ids = [await queue(gw, f"m{i}") for i in range(12)]
    for id in ids:
        await settled(gw, id)
    assert fake(gw).max_in_flight == 3


async def test_rate_limit_spaces_submits(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(carrier=[{"name": "fake", "type": "fake", "max_rate": 20}])
    ids = [await queue(gw, f"m{i}") for i in range(30)]
    for id in ids:
        await settled(gw, id)
    # 30 submits at 20/s: the leaky bucket lets a burst of 20 through, then the other 10 are
    # spaced at 1/20 s. Checked on the carrier's own submit times, as a lower bound.
    times = fake(gw).submit_times
    assert len(times) == 30 and times[-1] - times[0] >= 10 / 20 * 0.9


async def test_failover_to_the_next_carrier(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(
        carrier=[
            {"name": "primary", "type": "fake", "temporary_failures": 1},
            {"name": "backup", "type": "fake"},
        ]
    )
    m = await settled(gw, await queue(gw))
    assert m.state is State.DELIVERED and m.carrier == "backup"
    assert fake(gw, "primary").attempts == 1 and len(fake(gw, "backup").submitted) == 1


async def test_prefix_routing(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(
        carrier=[
            {"name": "us", "type": "fake", "prefixes": ["+1"]},
            {"name": "uk", "type": "fake", "prefixes": ["+44"]},
        ]
    )
    m = await settled(gw, await queue(gw))
    assert m.carrier == "uk"


async def test_carrier_from_is_the_default_source_address(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(carrier=[{"name": "fake", "type": "fake", "from": "ACME"}])
    await settled(gw, await queue(gw))
    assert fake(gw).submitted[0].source_addr == "ACME"


async def test_carrier_without_final_delivery_leaves_message_submitted_until_a_report(
    gateway_factory: GatewayFactory,
) -> None:
    from mailsms.carriers.base import DeliveryReport, ReportStatus

    gw = await gateway_factory(carrier=[{"name": "fake", "type": "fake", "report": "none"}])
    id = await queue(gw, "x" * 200)

    async def submitted() -> bool:
        m = await gw.store.get(id)
        return m is not None and m.state is State.SUBMITTED

    await until(gw, submitted)
    m = await gw.store.get(id)
    assert m is not None
    hooks = fake(gw).hooks
    assert hooks is not None
    for part in m.parts:
        assert part.carrier_id is not None
        await hooks.delivery_report(DeliveryReport("fake", part.carrier_id, ReportStatus.DELIVERED))
    m = await gw.store.get(id)
    assert m is not None and m.state is State.DELIVERED


async def test_shutdown_releases_unsent_work(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(
        carrier=[{"name": "fake", "type": "fake", "latency": "30s", "concurrency": 2}],
        dispatch={"shutdown_grace": "50ms"},
    )
    ids = [await queue(gw) for _ in range(2)]

    async with asyncio.timeout(5):
        await fake(gw).wait_in_flight(2)
    await gw.stop()
    await gw.store.open()
    try:
        for id in ids:
            m = await gw.store.get(id)
            assert m is not None and m.state is State.QUEUED and m.attempts == 0
            assert m.events[-1].reason == "released at shutdown"
    finally:
        await gw.store.close()


async def test_long_messages_to_one_number_get_successive_references(gateway: Gateway) -> None:
    from mailsms.sms.udh import parse_udh

    refs = []
    for _ in range(3):
        m = await settled(gateway, await queue(gateway, "long " * 60))
        concat = parse_udh(m.parts[0].udh).concat
        assert concat is not None
        refs.append(concat[0])
    assert [(r - refs[0]) % 256 for r in refs] == [0, 1, 2]


def record_claims(gw: Gateway) -> list[str]:
    """The ids every later claim returns (the store's claim, wrapped)."""
    claimed: list[str] = []
    claim = gw.store.claim

    async def recording(owner: str, limit: int, lease: float, now: float) -> list[Message]:
        got = await claim(owner, limit, lease, now)
        claimed.extend(m.id for m in got)
        return got

    gw.store.claim = recording  # type: ignore[method-assign]
    return claimed


async def test_an_idle_dispatcher_takes_new_mail_from_the_intake_without_a_claim(
    gateway: Gateway,
) -> None:
    async def idle() -> bool:
        return gateway.dispatcher.reserve(0) is not None  # its first claim found no backlog

    await until(gateway, idle)
    claimed = record_claims(gateway)
    id = await queue(gateway)
    m = await settled(gateway, id)
    assert m.state is State.DELIVERED and m.attempts == 1
    assert id not in claimed
    # The history is the same as a claim's: accepted, then claimed by this dispatcher.
    assert [e.state for e in m.events[:3]] == ["queued", "submitting", "submitted"]
    assert m.events[1].reason == f"attempt 1 claimed by {gateway.dispatcher.owner}"


async def test_older_queued_mail_goes_first_new_mail_waits_its_turn(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    """A backlog (here left by an earlier run) is claimed before anything new is handed over:
    new mail is stored queued, in line behind it."""
    store = open_store(f"sqlite:///{tmp_path}/mailsms.db")
    await store.open()
    old = [
        NewMessage(
            new_id(),
            UK,
            f"old {i}",
            "gsm7",
            (PartSpec(1, f"old {i}"),),
            "t",
            "test",
            expires_at=time.time() + 3600,
        )
        for i in range(12)
    ]
    await store.enqueue(old, time.time())
    await store.close()
    gw = await gateway_factory(
        carrier=[{"name": "fake", "type": "fake", "concurrency": 1, "latency": "5ms"}]
    )
    id = await queue(gw, "new")
    m = await gw.store.get(id)
    assert m is not None and m.state is State.QUEUED
    await settled(gw, id)
    for o in old:
        await settled(gw, o.id)
    order = [s.text for s in fake(gw).submitted]
    assert order[-1] == "new" and len(order) == 13


async def test_mail_stored_under_a_dead_dispatchers_lease_is_claimed_when_it_runs_out(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    """The intake committed under a lease and the process died before the handover."""
    store = open_store(f"sqlite:///{tmp_path}/mailsms.db")
    await store.open()
    msg = NewMessage(
        new_id(),
        UK,
        "orphan",
        "gsm7",
        (PartSpec(1, "orphan"),),
        "t",
        "test",
        expires_at=time.time() + 3600,
    )
    await store.enqueue([msg], time.time(), lease=Lease("dead-process", time.time() + 0.3))
    await store.close()
    gw = await gateway_factory(dispatch={"lease": "300ms"})
    m = await settled(gw, msg.id)
    assert m.state is State.DELIVERED and m.attempts == 2
    assert [e.state for e in m.events[:3]] == ["queued", "submitting", "submitting"]
