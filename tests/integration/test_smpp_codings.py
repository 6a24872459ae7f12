"""data_coding options out and in, and MO sets that never complete, against smpp34's server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mailsms.carriers.smpp import SmppCarrier
from tests.integration.test_smpp_smpp34 import LONG_GSM, outbound, settings
from tests.peers import Recorder, missing_peer
from tests.peers.smsc_smpp34 import Smpp34Smsc

pytestmark = pytest.mark.peers


@pytest.fixture
async def smsc() -> AsyncIterator[Smpp34Smsc]:
    if not Smpp34Smsc.available():
        missing_peer("smpp34 is not installed (pip install smpp34==1.5.0)")
    peer = Smpp34Smsc(password="secret")
    await peer.start()
    yield peer
    await peer.stop()


async def started(smsc: Smpp34Smsc, hooks: Recorder, **overrides: Any) -> SmppCarrier:
    carrier = SmppCarrier(settings(smsc.port, **overrides))
    await carrier.start(hooks)
    async with asyncio.timeout(10):
        await carrier.wait_health(lambda h: h.ok)
    return carrier


# text, gsm_data_coding -> data_coding and short_message the SMSC receives
OUTBOUND = [
    ("Hello {world} ~ [ok]", 1, 1, b"Hello {world} ~ [ok]"),
    ("Hello {world} ~ [ok]", 3, 3, b"Hello {world} ~ [ok]"),
    ("Café à 5€? no: Café", 3, 0, None),  # € is GSM but not Latin-1: septets
    ("Café à la gare", 3, 3, "Café à la gare".encode("latin-1")),
    ("Café à la gare", 1, 0, None),  # é is not ASCII: septets
    ("ΔΣ Greek in GSM", 1, 0, None),
    ("ΔΣ Greek in GSM", 3, 0, None),
]


@pytest.mark.parametrize(("text", "option", "dcs", "octets"), OUTBOUND)
async def test_gsm_data_coding_1_and_3(
    smsc: Smpp34Smsc, text: str, option: int, dcs: int, octets: bytes | None
) -> None:
    carrier = await started(smsc, Recorder(), gsm_data_coding=option)
    try:
        sms = outbound(text)
        assert sms.encoding == "gsm7"
        await carrier.submit(sms)
    finally:
        await carrier.stop()
    (seen,) = smsc.of("submit")
    assert seen["data_coding"] == dcs
    expected = octets if octets is not None else sms.parts[0].payload
    assert bytes.fromhex(seen["short_message"]) == expected


async def test_gsm_data_coding_3_keeps_the_udh_of_long_messages(smsc: Smpp34Smsc) -> None:
    carrier = await started(smsc, Recorder(), gsm_data_coding=3)
    try:
        sms = outbound(LONG_GSM.replace("€", "E"))
        await carrier.submit(sms)
    finally:
        await carrier.stop()
    seen = smsc.of("submit")
    assert len(seen) == len(sms.parts) > 1
    for part, got in zip(sms.parts, seen, strict=True):
        assert (got["data_coding"], got["esm_class"]) == (3, 0x40)
        assert bytes.fromhex(got["short_message"]) == part.udh + part.text.encode("latin-1")


# default_alphabet, data_coding, short_message -> the inbound text
INBOUND = [
    ("gsm", 0, b"Caf\x05 \x00 \x1b\x65", "Café @ €"),  # GSM 0x00 is @
    ("latin1", 0, b"Caf\xe9 @", "Café @"),
    ("ascii", 0, b"plain ascii", "plain ascii"),
    ("ascii", 0, b"Caf\xe9", "Caf\ufffd"),
    ("gsm", 3, b"Caf\xe9", "Café"),  # explicit data_coding wins over the default
    ("latin1", 1, b"IA5 text", "IA5 text"),
    ("ascii", 8, "Жж".encode("utf-16-be"), "Жж"),
]


@pytest.mark.parametrize(("alphabet", "dcs", "octets", "text"), INBOUND)
async def test_inbound_default_alphabet_and_data_coding(
    smsc: Smpp34Smsc, alphabet: str, dcs: int, octets: bytes, text: str
) -> None:
    hooks = Recorder()
    carrier = await started(smsc, hooks, default_alphabet=alphabet)
    try:
        resp = await smsc.deliver(
            source_addr="447700900123",
            source_addr_ton=1,
            destination_addr="ACME",
            data_coding=dcs,
            short_message=octets.hex(),
        )
        assert resp["status"] == 0
        await hooks.wait(lambda: len(hooks.inbound_sms) == 1)
    finally:
        await carrier.stop()
    (sms,) = hooks.inbound_sms
    assert (sms.text, sms.from_, sms.raw["data_coding"]) == (text, "+447700900123", dcs)


async def test_reassembly_timeout_hands_over_an_incomplete_set(smsc: Smpp34Smsc) -> None:
    hooks = Recorder()
    carrier = await started(smsc, hooks, reassembly_timeout=1.0)
    try:
        sms = outbound(LONG_GSM * 2, ref=77)
        assert len(sms.parts) >= 3
        sent = [sms.parts[0], sms.parts[2]]  # part 2 (and any after 3) never comes
        for part in sent:
            resp = await smsc.deliver(
                source_addr="447700900126",
                source_addr_ton=1,
                destination_addr="ACME",
                esm_class=0x40,
                short_message=(part.udh + part.payload).hex(),
            )
            assert resp["status"] == 0  # acknowledged while the set is incomplete
        assert hooks.inbound_sms == []
        await hooks.wait(lambda: len(hooks.inbound_sms) == 1)
    finally:
        await carrier.stop()
    (got,) = hooks.inbound_sms
    assert got.incomplete
    assert got.segments == 2
    assert got.text == sent[0].text + sent[1].text
    assert got.from_ == "+447700900126"
    assert len(got.carrier_id.split(",")) == 2
    assert got.raw == {"expired": True}
