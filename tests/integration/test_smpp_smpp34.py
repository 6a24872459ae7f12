"""The SMPP carrier against smpp34's server (Rust), run by tests/peers/smsc_smpp34.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mailsms.carriers.base import OutboundSms, ReportStatus
from mailsms.carriers.smpp import SmppCarrier, SmppSettings
from mailsms.errors import PermanentFailure, TemporaryFailure
from mailsms.sms.encode import SmsOptions, encode
from tests.peers import Recorder, missing_peer
from tests.peers.smsc_smpp34 import Smpp34Smsc

pytestmark = pytest.mark.peers

LONG_GSM = "The quick brown fox jumps over the lazy dog {curly} [square] €uro. " * 4
LONG_UCS2 = "Привет, мир! Съешь же ещё этих мягких французских булок. 😀 " * 3


@pytest.fixture
async def smsc() -> AsyncIterator[Smpp34Smsc]:
    if not Smpp34Smsc.available():
        missing_peer("smpp34 is not installed (pip install smpp34==1.5.0)")
    peer = Smpp34Smsc(password="secret")
    await peer.start()
    yield peer
    await peer.stop()


def settings(port: int, **overrides: Any) -> SmppSettings:
    values: dict[str, Any] = {
        "name": "smsc1",
        "type": "smpp",
        "host": "127.0.0.1",
        "port": port,
        "system_id": "acme",
        "password": "secret",
        "from": "ACME",
        "request_timeout": 5.0,
        "reconnect_min": 0.05,
        "reconnect_max": 0.2,
    }
    values.update(overrides)
    return SmppSettings.model_validate(values)


@pytest.fixture
async def started(smsc: Smpp34Smsc) -> AsyncIterator[tuple[SmppCarrier, Recorder]]:
    carrier, hooks = SmppCarrier(settings(smsc.port)), Recorder()
    await carrier.start(hooks)
    async with asyncio.timeout(10):
        await carrier.wait_health(lambda h: h.ok)
    yield carrier, hooks
    await carrier.stop()


def outbound(
    text: str, message_id: str = "m1", to: str = "+15551230001", ref: int = 7
) -> OutboundSms:
    enc = encode(text, SmsOptions(max_segments=10), reference=ref)
    return OutboundSms(message_id, to, None, enc.text, enc.encoding, enc.parts, time.time() + 3600)


async def submits_seen(smsc: Smpp34Smsc, count: int) -> list[dict[str, Any]]:
    """The submit events, once there are ``count``: the harness prints each submit before
    answering it, but its stdout can reach the test after the answer reached the carrier."""
    await smsc.wait_for(lambda _: len(smsc.of("submit")) >= count)
    return smsc.of("submit")


async def test_long_gsm_and_ucs2_arrive_with_udh_and_exact_bytes(
    smsc: Smpp34Smsc, started: tuple[SmppCarrier, Recorder]
) -> None:
    carrier, _ = started
    for text in (LONG_GSM, LONG_UCS2):
        sms = outbound(text)
        mark = len(smsc.of("submit"))
        result = await carrier.submit(sms)
        seen = (await submits_seen(smsc, mark + len(sms.parts)))[mark:]
        assert len(sms.parts) > 1
        assert len(seen) == len(sms.parts) == len(result.carrier_ids)
        for part, got, carrier_id in zip(sms.parts, seen, result.carrier_ids, strict=True):
            assert got["esm_class"] == 0x40
            assert got["data_coding"] == (0x08 if sms.encoding == "ucs2" else 0x00)
            assert bytes.fromhex(got["short_message"]) == part.udh + part.payload
            assert got["message_id"] == carrier_id
            assert (got["source_addr"], got["source_addr_ton"], got["source_addr_npi"]) == (
                "ACME",
                5,
                0,
            )
            assert (got["destination_addr"], got["dest_addr_ton"]) == ("15551230001", 1)
            assert got["registered_delivery"] == 1


@pytest.mark.parametrize("concat", ["sar", "payload"])
async def test_sar_and_payload_modes(smsc: Smpp34Smsc, concat: str) -> None:
    carrier = SmppCarrier(settings(smsc.port, concat=concat))
    await carrier.start(Recorder())
    try:
        async with asyncio.timeout(10):
            await carrier.wait_health(lambda h: h.ok)
        sms = outbound(LONG_GSM, ref=42)
        result = await carrier.submit(sms)
    finally:
        await carrier.stop()
    seen = smsc.of("submit")
    assert len(result.carrier_ids) == len(sms.parts)
    if concat == "payload":
        assert len(seen) == 1
        assert seen[0]["short_message"] == ""
        assert seen[0]["tlvs"] == [[0x0424, b"".join(p.payload for p in sms.parts).hex()]]
        return
    assert len(seen) == len(sms.parts)
    for i, (part, got) in enumerate(zip(sms.parts, seen, strict=True), 1):
        assert got["esm_class"] == 0
        assert bytes.fromhex(got["short_message"]) == part.payload
        tlvs = {tag: bytes.fromhex(value) for tag, value in got["tlvs"]}
        assert tlvs == {0x020C: b"\x00\x2a", 0x020E: bytes([len(sms.parts)]), 0x020F: bytes([i])}


async def test_receipts_turn_parts_delivered(
    smsc: Smpp34Smsc, started: tuple[SmppCarrier, Recorder]
) -> None:
    carrier, hooks = started
    result = await carrier.submit(outbound(LONG_GSM))
    first, second, *rest = result.carrier_ids
    assert first and second
    # Part 1: text form, id rendered in decimal although submit_sm_resp gave hex.
    text = (
        f"id:{int(first, 16)} sub:001 dlvrd:001 submit date:2401011200 "
        "done date:2401011201 stat:DELIVRD err:000 text:The quick brown"
    )
    resp = await smsc.deliver(
        source_addr="15551230001",
        destination_addr="ACME",
        esm_class=0x04,
        short_message=text.encode().hex(),
    )
    assert resp["status"] == 0
    # Part 2: TLVs only (receipted_message_id + message_state DELIVERED).
    resp = await smsc.deliver(
        source_addr="15551230001",
        destination_addr="ACME",
        esm_class=0x04,
        tlvs=[[0x001E, second.encode().hex() + "00"], [0x0427, "02"]],
    )
    assert resp["status"] == 0
    # Another part: undeliverable, with an error code.
    third = rest[0] if rest else second
    bad = (
        f"id:{third} sub:001 dlvrd:000 submit date:2401011200 done date:2401011202 "
        "stat:UNDELIV err:034 text:"
    )
    await smsc.deliver(
        source_addr="15551230001",
        destination_addr="ACME",
        esm_class=0x04,
        short_message=bad.encode().hex(),
    )
    await hooks.wait(lambda: len(hooks.reports) == 3)
    by_id = {r.carrier_id: r for r in hooks.reports[:2]}
    assert set(by_id) == {first, second}
    assert all(r.status is ReportStatus.DELIVERED for r in by_id.values())
    assert by_id[first].raw["stat"] == "DELIVRD"
    failed = hooks.reports[2]
    assert (failed.carrier_id, failed.status, failed.error_code) == (
        third,
        ReportStatus.FAILED,
        "034",
    )
    assert failed.raw["err"] == "034"


async def test_multipart_mo_out_of_order_becomes_one_inbound(
    smsc: Smpp34Smsc, started: tuple[SmppCarrier, Recorder]
) -> None:
    _, hooks = started
    sms = outbound(LONG_GSM, ref=99)
    for part in reversed(sms.parts):
        resp = await smsc.deliver(
            source_addr="447700900123",
            source_addr_ton=1,
            source_addr_npi=1,
            destination_addr="ACME",
            esm_class=0x40,
            data_coding=0,
            short_message=(part.udh + part.payload).hex(),
        )
        assert resp["status"] == 0
    # And a UCS-2 message split with SAR TLVs, parts 2 then 1.
    uni = outbound(LONG_UCS2[:100], ref=5)
    assert len(uni.parts) == 2
    for seq in (2, 1):
        part = uni.parts[seq - 1]
        await smsc.deliver(
            source_addr="447700900124",
            source_addr_ton=1,
            destination_addr="ACME",
            data_coding=8,
            short_message=part.payload.hex(),
            tlvs=[[0x020C, "0005"], [0x020E, "02"], [0x020F, f"{seq:02x}"]],
        )
    await hooks.wait(lambda: len(hooks.inbound_sms) == 2)
    gsm, ucs2 = hooks.inbound_sms
    assert (gsm.from_, gsm.to, gsm.text, gsm.segments) == (
        "+447700900123",
        "ACME",
        sms.text,
        len(sms.parts),
    )
    assert not gsm.incomplete
    assert len(gsm.carrier_id.split(",")) == len(sms.parts)
    assert (ucs2.from_, ucs2.text, ucs2.segments) == ("+447700900124", uni.text, 2)


async def test_failing_hook_answers_rx_t_appn_and_the_retry_completes(
    smsc: Smpp34Smsc, started: tuple[SmppCarrier, Recorder]
) -> None:
    _, hooks = started
    sms = outbound(LONG_GSM, ref=3)
    first, *others = sms.parts
    for part in others:
        await smsc.deliver(
            source_addr="447700900125",
            source_addr_ton=1,
            destination_addr="ACME",
            esm_class=0x40,
            short_message=(part.udh + part.payload).hex(),
        )
    hooks.fail = 1
    fields = {
        "source_addr": "447700900125",
        "source_addr_ton": 1,
        "destination_addr": "ACME",
        "esm_class": 0x40,
        "short_message": (first.udh + first.payload).hex(),
    }
    assert (await smsc.deliver(**fields))["status"] == 0x64
    assert hooks.inbound_sms == []
    assert (await smsc.deliver(**fields))["status"] == 0  # the SMSC retries that part
    assert [m.text for m in hooks.inbound_sms] == [sms.text]


async def test_window_is_never_exceeded(smsc: Smpp34Smsc) -> None:
    window = 4
    carrier = SmppCarrier(settings(smsc.port, window=window))
    await carrier.start(Recorder())
    try:
        async with asyncio.timeout(10):
            await carrier.wait_health(lambda h: h.ok)
        # The SMSC holds every submit_sm until `window` are outstanding, then answers.
        await smsc.command(cmd="batch", n=window)
        messages = [outbound("hi", message_id=f"w{i}") for i in range(5 * window)]
        results = await asyncio.gather(*(carrier.submit(m) for m in messages))
    finally:
        await carrier.stop()
    assert len(results) == 5 * window
    assert max(e["outstanding"] for e in smsc.of("submit")) == window


async def test_statuses_map_to_temporary_and_permanent(
    smsc: Smpp34Smsc, started: tuple[SmppCarrier, Recorder]
) -> None:
    carrier, _ = started
    await smsc.command(cmd="script", statuses=[0x58, 0x14, 0x0B])
    with pytest.raises(TemporaryFailure, match="ESME_RTHROTTLED"):
        await carrier.submit(outbound("hi"))
    with pytest.raises(TemporaryFailure, match="ESME_RMSGQFUL"):
        await carrier.submit(outbound("hi"))
    with pytest.raises(PermanentFailure, match="ESME_RINVDSTADR") as info:
        await carrier.submit(outbound("hi"))
    assert info.value.code == "0x0B"
    # Part 2 of a long message refused for good: the whole submit is permanent.
    mark = len(smsc.of("submit"))
    await smsc.command(cmd="script", statuses=[None, 0x0B])
    with pytest.raises(PermanentFailure, match="part 2/"):
        await carrier.submit(outbound(LONG_GSM))
    assert len(await submits_seen(smsc, mark + 2)) - mark == 2


async def test_killed_smsc_loses_no_message(smsc: Smpp34Smsc) -> None:
    carrier, hooks = SmppCarrier(settings(smsc.port)), Recorder()
    await carrier.start(hooks)
    messages = [outbound(f"message {i}", message_id=f"k{i}") for i in range(6)]
    accepted: dict[str, tuple[str | None, ...]] = {}
    temporary: list[str] = []
    try:
        async with asyncio.timeout(10):
            await carrier.wait_health(lambda h: h.ok)
        for m in messages[:2]:
            accepted[m.message_id] = (await carrier.submit(m)).carrier_ids
        await smsc.kill()
        async with asyncio.timeout(10):
            await carrier.wait_health(lambda h: not h.ok)
        for m in messages[2:4]:
            try:
                accepted[m.message_id] = (await carrier.submit(m)).carrier_ids
            except TemporaryFailure:
                temporary.append(m.message_id)
        await smsc.start(port=smsc.port)
        async with asyncio.timeout(10):
            await carrier.wait_health(lambda h: h.ok)
        # What the dispatcher does: resubmit the temporarily failed ones, then go on.
        for m in messages:
            if m.message_id not in accepted:
                accepted[m.message_id] = (await carrier.submit(m)).carrier_ids
    finally:
        await carrier.stop()
    assert temporary == ["k2", "k3"]
    assert sorted(accepted) == [m.message_id for m in messages]
    after_restart = [e for e in smsc.events if e["event"] == "submit"]
    texts = [bytes.fromhex(e["short_message"]) for e in after_restart]
    assert len(texts) == 6  # 2 before the kill, 4 after the restart, none lost


async def test_wrong_password_is_reported_in_health(smsc: Smpp34Smsc) -> None:
    carrier = SmppCarrier(settings(smsc.port, password="wrong"))
    await carrier.start(Recorder())
    try:
        async with asyncio.timeout(10):
            health = await carrier.wait_health(lambda h: "RINVPASWD" in h.detail)
        assert not health.ok
        assert "bind refused: ESME_RINVPASWD (0x0000000E) invalid password" in health.detail
        with pytest.raises(TemporaryFailure, match="RINVPASWD"):
            await carrier.submit(outbound("hi"))
    finally:
        await carrier.stop()
    assert smsc.of("bind_refused")
    assert not smsc.of("bound")


async def test_transmitter_plus_receiver_and_several_binds(smsc: Smpp34Smsc) -> None:
    carrier, hooks = (
        SmppCarrier(settings(smsc.port, bind="transmitter+receiver", binds=2)),
        Recorder(),
    )
    await carrier.start(hooks)
    try:
        async with asyncio.timeout(10):
            await carrier.wait_health(lambda h: h.detail.count(": bound") == 4)
        results = await asyncio.gather(*(carrier.submit(outbound("x", f"b{i}")) for i in range(8)))
        assert len(results) == 8
    finally:
        await carrier.stop()
    assert len(smsc.of("bound")) == 4
    assert len({e["session"] for e in smsc.of("submit")}) == 2  # spread over the tx binds
    await smsc.wait_for(lambda _: len(smsc.of("unbound")) == 4)  # each bind unbound
