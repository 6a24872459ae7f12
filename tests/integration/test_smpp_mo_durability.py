"""Parts of a multi-part MO survive the gateway going away between them (DESIGN.md
invariant 1): each part is committed before its deliver_sm_resp. Against smpp34's server,
on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mailsms.app import Gateway
from mailsms.model import PartSpec
from mailsms.sms.encode import SmsOptions, encode
from tests.conftest import GatewayFactory
from tests.helpers import until
from tests.peers import missing_peer, smpp_carrier
from tests.peers.smsc_smpp34 import Smpp34Smsc

pytestmark = pytest.mark.peers

LONG_GSM = "The quick brown fox jumps over the lazy dog {curly} [square] €uro. " * 4
LONG_UCS2 = "Привет, мир! Съешь же ещё этих мягких французских булок. 😀 " * 3
THREE_PARTS = (LONG_GSM * 2)[:400]
PHONE = "447700900123"


@pytest.fixture
async def smsc() -> AsyncIterator[Smpp34Smsc]:
    if not Smpp34Smsc.available():
        missing_peer("smpp34 is not installed (pip install smpp34==1.5.0)")
    peer = Smpp34Smsc(password="secret")
    await peer.start()
    yield peer
    await peer.stop()


@pytest.fixture
def start_gateway(
    smsc: Smpp34Smsc, store_url: str, gateway_factory: GatewayFactory
) -> GatewayFactory:
    """A gateway with one smpp carrier on the shared store, started once smpp34 saw it bind.

    (Fixture order: gateways stop before the store's schema and the SMSC go away.)
    """

    async def make(**carrier: Any) -> Gateway:
        mark = len(smsc.events)
        gw = await gateway_factory(
            store={"url": store_url},
            carrier=[smpp_carrier(smsc.port, **carrier)],
        )
        await smsc.wait_for(lambda e: e["event"] == "bound", after=mark)
        return gw

    return make


def parts(text: str, ref: int) -> tuple[PartSpec, ...]:
    return encode(text, SmsOptions(max_segments=10), reference=ref).parts


async def send_udh(smsc: Smpp34Smsc, part: PartSpec, data_coding: int = 0) -> int:
    resp = await smsc.deliver(
        source_addr=PHONE,
        source_addr_ton=1,
        source_addr_npi=1,
        destination_addr="ACME",
        esm_class=0x40,
        data_coding=data_coding,
        short_message=(part.udh + part.payload).hex(),
    )
    status: int = resp["status"]
    return status


async def inbound_rows(gw: Gateway, count: int) -> list[dict[str, Any]]:
    async def stored() -> bool:
        return len(await gw.store.list_inbound()) >= count

    await until(gw, stored)
    return list(reversed(await gw.store.list_inbound()))


async def test_part_acknowledged_before_a_restart_is_not_lost(
    smsc: Smpp34Smsc, start_gateway: GatewayFactory
) -> None:
    first, second, third = parts(THREE_PARTS, ref=42)
    before = await start_gateway()
    assert await send_udh(smsc, first) == 0  # acknowledged: from now on it is ours to keep
    assert await before.store.list_inbound() == []
    # The gateway goes away with part 1 acknowledged and its set incomplete. Nothing is
    # flushed on the way out: the old driver held the part in memory and lost it here.
    mark = len(smsc.events)
    await before.stop()
    await smsc.wait_for(lambda e: e["event"] == "unbound", after=mark)

    after = await start_gateway()
    assert await send_udh(smsc, third) == 0
    assert await send_udh(smsc, second) == 0
    (row,) = await inbound_rows(after, 1)
    assert (row["sender"], row["recipient"], row["text"]) == ("+447700900123", "ACME", THREE_PARTS)
    assert (row["segments"], row["incomplete"]) == (3, 0)
    assert len(row["carrier_id"].split(",")) == 3


async def test_sar_ucs2_parts_out_of_order_and_a_retried_part(
    smsc: Smpp34Smsc, start_gateway: GatewayFactory
) -> None:
    gw = await start_gateway()
    uni = parts(LONG_UCS2[:100], ref=5)
    assert len(uni) == 2

    async def send(seq: int) -> int:
        resp = await smsc.deliver(
            source_addr="447700900124",
            source_addr_ton=1,
            destination_addr="ACME",
            data_coding=8,
            short_message=uni[seq - 1].payload.hex(),
            tlvs=[[0x020C, "0105"], [0x020E, "02"], [0x020F, f"{seq:02x}"]],
        )
        status: int = resp["status"]
        return status

    assert await send(2) == 0
    assert await send(2) == 0  # the SMSC sends it again (our answer was lost, say)
    assert await send(1) == 0
    (row,) = await inbound_rows(gw, 1)
    assert (row["sender"], row["text"], row["segments"]) == ("+447700900124", LONG_UCS2[:100], 2)


async def test_a_part_the_store_cannot_take_is_refused_and_its_retry_completes_the_set(
    smsc: Smpp34Smsc, start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = await start_gateway()
    first, *others = parts(LONG_GSM, ref=3)
    for part in others:
        assert await send_udh(smsc, part) == 0
    store_part = gw.store.inbound_part

    async def unavailable(*args: Any) -> Any:
        monkeypatch.setattr(gw.store, "inbound_part", store_part)
        raise RuntimeError("store unavailable (scripted)")

    monkeypatch.setattr(gw.store, "inbound_part", unavailable)
    assert await send_udh(smsc, first) == 0x64  # ESME_RX_T_APPN: not stored, send it again
    assert await gw.store.list_inbound() == []
    assert await send_udh(smsc, first) == 0
    (row,) = await inbound_rows(gw, 1)
    assert (row["text"], row["segments"]) == (LONG_GSM, len(others) + 1)


async def test_a_set_whose_parts_stop_coming_is_stored_incomplete(
    smsc: Smpp34Smsc, start_gateway: GatewayFactory
) -> None:
    gw = await start_gateway(reassembly_timeout="400ms")
    first, _, third = parts(THREE_PARTS, ref=77)
    assert await send_udh(smsc, third) == 0
    assert await send_udh(smsc, first) == 0
    started = time.monotonic()
    (row,) = await inbound_rows(gw, 1)
    assert time.monotonic() - started < 5
    assert (row["text"], row["segments"], row["incomplete"]) == (
        first.text + third.text,
        2,
        1,
    )


async def test_the_last_part_sent_again_after_a_lost_answer_is_not_a_second_sms(
    smsc: Smpp34Smsc, start_gateway: GatewayFactory
) -> None:
    gw = await start_gateway()
    first, second, third = parts(THREE_PARTS, ref=99)
    for part in (first, second, third):
        assert await send_udh(smsc, part) == 0
    (row,) = await inbound_rows(gw, 1)
    # The deliver_sm_resp for part 3 is lost on the way (a dropped connection): the SMSC
    # sends part 3 again. It is acknowledged and recognised as the part already stored.
    assert await send_udh(smsc, third) == 0
    # The sweep, once the reassembly timeout has passed, hands nothing over as incomplete.
    later = time.time() + 3600
    assert await gw.store.expire_inbound_parts(later, later) == []
    assert [r["id"] for r in await gw.store.list_inbound()] == [row["id"]]
