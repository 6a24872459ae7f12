"""Session behaviour against smpp34's server: enquire_link, timeouts, malformed PDUs, rate.

Elapsed time is bounded from below with the SMSC's own timestamps (``t`` of its events),
never with sleeps or wall-clock readings in the test process.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mailsms.carriers.smpp import SmppCarrier
from mailsms.errors import TemporaryFailure
from tests.integration.test_smpp_smpp34 import outbound, settings
from tests.peers import Recorder, missing_peer
from tests.peers.smsc_smpp34 import INJECTED_SEQUENCE, Smpp34Smsc

pytestmark = pytest.mark.peers

GENERIC_NACK = 0x8000_0000
DELIVER_SM = 0x0000_0005
DELIVER_SM_RESP = 0x8000_0005


@pytest.fixture
async def smsc() -> AsyncIterator[Smpp34Smsc]:
    if not Smpp34Smsc.available():
        missing_peer("smpp34 is not installed (pip install smpp34==1.5.0)")
    peer = Smpp34Smsc(password="secret")
    await peer.start()
    yield peer
    await peer.stop()


async def bound(smsc: Smpp34Smsc, **overrides: Any) -> SmppCarrier:
    carrier = SmppCarrier(settings(smsc.port, **overrides))
    await carrier.start(Recorder())
    async with asyncio.timeout(10):
        await carrier.wait_health(lambda h: h.ok)
    await smsc.wait_for(lambda e: e["event"] == "bound")
    return carrier


def pdu(command_id: int, sequence: int, body: bytes = b"", length: int | None = None) -> str:
    """Hex of one PDU as the SMSC front injects it (``length`` overrides command_length)."""
    size = 16 + len(body) if length is None else length
    return (struct.pack(">IIII", size, command_id, 0, sequence) + body).hex()


async def test_enquire_link_on_idle_and_rebind_when_unanswered(
    smsc: Smpp34Smsc, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "mailsms.carriers.smpp")
    interval = 0.3
    carrier = await bound(smsc, enquire_link_interval=interval, request_timeout=0.3)
    try:
        first_bind = smsc.of("bound")[0]
        answered = await smsc.wait_for(lambda e: e["event"] == "enquire_link")
        assert answered["t"] - first_bind["t"] >= interval * 0.9  # only after idling
        await carrier.submit(outbound("still bound"))  # the answered probe kept the bind

        await smsc.command(cmd="mute_enquire_link", on=True)
        muted = await smsc.wait_for(lambda e: e["event"] == "enquire_link" and e["muted"])
        rebind = await smsc.wait_for(
            lambda e: e["event"] == "bound", after=smsc.events.index(muted)
        )
        assert rebind["t"] - muted["t"] >= 0.3 * 0.9  # dropped after request_timeout
        assert any("enquire_link unanswered" in r.getMessage() for r in caplog.records)

        await smsc.command(cmd="mute_enquire_link", on=False)
        async with asyncio.timeout(10):
            await carrier.wait_health(lambda h: h.ok)
        mark = len(smsc.of("submit"))
        await carrier.submit(outbound("after the rebind"))
        assert smsc.of("submit")[mark]["session"] == rebind["session"]
    finally:
        await carrier.stop()


async def test_timeout_is_temporary_and_the_slot_is_held_one_more_timeout(
    smsc: Smpp34Smsc,
) -> None:
    timeout = 0.4
    carrier = await bound(smsc, window=1, request_timeout=timeout)
    try:
        await smsc.command(cmd="batch", n=1000)  # hold every submit_sm, answer none
        first = asyncio.create_task(carrier.submit(outbound("a", "t-a")))
        sent_a = await smsc.wait_for(lambda e: e["event"] == "submit")
        # B queues for the only slot while A is outstanding.
        second = asyncio.create_task(carrier.submit(outbound("b", "t-b")))
        with pytest.raises(TemporaryFailure, match=r"no submit_sm_resp within 0\.4s"):
            await first
        session = next(link.session for link in carrier._links if link.session)
        assert session.outstanding == 1  # A failed, its slot is still taken
        with pytest.raises(TemporaryFailure, match="window full for too long"):
            await second  # B never got the slot within its own timeout
        assert len(smsc.of("submit")) == 1

        # C gets the slot once A's second timeout gives it up, not before.
        third = asyncio.create_task(carrier.submit(outbound("c", "t-c")))
        after_a = smsc.events.index(sent_a) + 1
        sent_c = await smsc.wait_for(lambda e: e["event"] == "submit", after=after_a)
        assert sent_c["t"] - sent_a["t"] >= 2 * timeout * 0.95
        await smsc.command(cmd="release")  # answers A (too late, ignored) and C
        assert (await third).carrier_ids == (sent_c["message_id"],)
    finally:
        await carrier.stop()


async def test_malformed_pdus_from_the_smsc_are_answered_and_the_session_goes_on(
    smsc: Smpp34Smsc,
) -> None:
    carrier = await bound(smsc)
    try:
        seq = INJECTED_SEQUENCE
        # An unknown command_id: generic_nack ESME_RINVCMDID.
        await smsc.command(cmd="raw", hex=pdu(0x0000_0099, seq + 1))
        # A deliver_sm whose body ends inside service_type: deliver_sm_resp with an error.
        await smsc.command(cmd="raw", hex=pdu(DELIVER_SM, seq + 2, b"CMT"))
        # A submit_sm is not something an SMSC may send an ESME.
        await smsc.command(cmd="raw", hex=pdu(0x0000_0004, seq + 3, b"\x00" * 17))
        replies = {}
        for n in (1, 2, 3):
            event = await smsc.wait_for(
                lambda e, n=n: e["event"] == "reply" and e["sequence"] == seq + n
            )
            replies[n] = (event["command_id"], event["status"])
        assert replies[1] == (GENERIC_NACK, 0x03)
        assert replies[2][0] == DELIVER_SM_RESP and replies[2][1] != 0
        assert replies[3] == (GENERIC_NACK, 0x03)
        result = await carrier.submit(outbound("still working"))
        assert result.carrier_ids[0]
        assert len(smsc.of("bound")) == 1  # no reconnect was needed
    finally:
        await carrier.stop()


async def test_bad_command_length_drops_and_rebinds(
    smsc: Smpp34Smsc, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "mailsms.carriers.smpp")
    carrier = await bound(smsc)
    try:
        await smsc.command(cmd="raw", hex=pdu(0x0000_0015, INJECTED_SEQUENCE, length=8))
        await smsc.wait_for(lambda _: len(smsc.of("bound")) == 2)
        async with asyncio.timeout(10):
            await carrier.wait_health(lambda h: h.ok)
        assert (await carrier.submit(outbound("after the rebind"))).carrier_ids[0]
        assert any("command_length 8 out of range" in r.getMessage() for r in caplog.records)
    finally:
        await carrier.stop()


async def test_max_rate_caps_submits_per_second(smsc: Smpp34Smsc) -> None:
    rate, count = 40, 70
    carrier = await bound(smsc, max_rate=rate, window=50)
    try:
        messages = [outbound(f"r{i}", f"r{i}") for i in range(count)]
        await asyncio.gather(*(carrier.submit(m) for m in messages))
    finally:
        await carrier.stop()
    times = sorted(e["t"] for e in smsc.of("submit"))
    assert len(times) == count
    # A bucket of `rate` tokens refilled at `rate`/s: the last (count - rate) submits
    # need at least that many refills, whatever the burst at the start.
    assert times[-1] - times[0] >= (count - rate) / rate * 0.95
