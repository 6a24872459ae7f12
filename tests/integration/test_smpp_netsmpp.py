"""The SMPP carrier against Net::SMPP (Perl), run from tests/peers/netsmpp_smsc.pl."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from mailsms.carriers.base import OutboundSms
from mailsms.carriers.smpp import SmppCarrier, SmppSettings
from mailsms.errors import PermanentFailure, TemporaryFailure
from mailsms.sms.encode import SmsOptions, encode
from tests.peers import Recorder, missing_peer

pytestmark = pytest.mark.peers

SCRIPT = Path(__file__).resolve().parents[1] / "peers" / "netsmpp_smsc.pl"
LONG_GSM = "Net::SMPP is a Perl SMSC, {independent} of our codec; ~€ and ^ escape. " * 4
LONG_UCS2 = "Ελληνικά και 日本語のテキスト, segmented as UCS-2. " * 4


def netsmpp_installed() -> bool:
    if shutil.which("perl") is None:
        return False
    probe = subprocess.run(["perl", "-MNet::SMPP", "-e", "1"], capture_output=True, check=False)
    return probe.returncode == 0


class NetSmppSmsc:
    """The Perl SMSC in its own process group (it forks one child per connection)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.port = 0
        self._changed = asyncio.Condition()
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            "perl",
            str(SCRIPT),
            "0",
            "secret",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        self._reader = asyncio.create_task(self._read())
        line = await self.wait_line(lambda s: s.startswith("LISTENING "))
        self.port = int(line.split()[1])

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for raw in self._proc.stdout:
            async with self._changed:
                self.lines.append(raw.decode().rstrip("\n"))
                self._changed.notify_all()

    async def wait_line(self, predicate: Callable[[str], bool], within: float = 10.0) -> str:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: any(predicate(s) for s in self.lines))
        return next(s for s in self.lines if predicate(s))

    def pdus(self, command_id: int) -> list[dict[str, bytes]]:
        """Received PDUs of one command, fields decoded from the hex log."""
        out = []
        prefix = f"PDU {command_id:08x} "
        for line in self.lines:
            if line.startswith(prefix):
                fields = dict(f.split("=", 1) for f in line[len(prefix) :].split() if "=" in f)
                out.append({k: bytes.fromhex(v) for k, v in fields.items() if k != "seq"})
        return out

    async def stop(self) -> None:
        if self._proc is not None:
            with_group = self._proc.pid
            with contextlib.suppress(ProcessLookupError):
                os.killpg(with_group, signal.SIGTERM)
            await self._proc.wait()
        if self._reader is not None:
            await self._reader


@pytest.fixture
async def smsc() -> AsyncIterator[NetSmppSmsc]:
    if not netsmpp_installed():
        missing_peer("Net::SMPP is not installed (apt-get install libnet-smpp-perl)")
    peer = NetSmppSmsc()
    await peer.start()
    yield peer
    await peer.stop()


def settings(port: int, **overrides: Any) -> SmppSettings:
    values: dict[str, Any] = {
        "name": "perl",
        "type": "smpp",
        "host": "127.0.0.1",
        "port": port,
        "system_id": "acme",
        "password": "secret",
        "from": "+15550001111",
        "request_timeout": 5.0,
        "reconnect_min": 0.05,
        "reconnect_max": 0.2,
    }
    values.update(overrides)
    return SmppSettings.model_validate(values)


async def running(port: int, hooks: Recorder | None = None, **overrides: Any) -> SmppCarrier:
    carrier = SmppCarrier(settings(port, **overrides))
    await carrier.start(hooks or Recorder())
    async with asyncio.timeout(10):
        await carrier.wait_health(lambda h: h.ok)
    return carrier


def outbound(text: str, to: str = "+15551230001", ref: int = 9) -> OutboundSms:
    enc = encode(text, SmsOptions(max_segments=10), reference=ref)
    return OutboundSms("n1", to, None, enc.text, enc.encoding, enc.parts, time.time() + 600)


async def test_long_gsm_and_ucs2_bytes_as_net_smpp_decodes_them(smsc: NetSmppSmsc) -> None:
    carrier = await running(smsc.port)
    try:
        sent = [outbound(LONG_GSM), outbound(LONG_UCS2, ref=10)]
        results = [await carrier.submit(sms) for sms in sent]
    finally:
        await carrier.stop()
    await smsc.wait_line(lambda s: s == "UNBOUND")  # the unbind got its unbind_resp
    got = smsc.pdus(0x04)
    parts = [(sms, part) for sms in sent for part in sms.parts]
    assert len(got) == len(parts) == sum(len(r.carrier_ids) for r in results)
    for (sms, part), pdu in zip(parts, got, strict=True):
        assert pdu["short_message"] == part.udh + part.payload
        # Net::SMPP decodes integer fields to Perl numbers: they come as decimal text.
        assert int(pdu["esm_class"]) == 0x40
        assert int(pdu["data_coding"]) == (8 if sms.encoding == "ucs2" else 0)
        assert (pdu["source_addr"], int(pdu["source_addr_ton"])) == (b"15550001111", 1)
        assert pdu["destination_addr"] == b"15551230001"
        assert len(pdu["validity_period"]) == 16 and pdu["validity_period"].endswith(b"+")
    assert all(r.carrier_ids[0] for r in results)


async def test_sar_tlvs_as_net_smpp_decodes_them(smsc: NetSmppSmsc) -> None:
    carrier = await running(smsc.port, concat="sar")
    try:
        sms = outbound(LONG_GSM, ref=200)
        await carrier.submit(sms)
    finally:
        await carrier.stop()
    got = smsc.pdus(0x04)
    assert [p["sar_segment_seqnum"] for p in got] == [bytes([i + 1]) for i in range(len(got))]
    assert {p["sar_msg_ref_num"] for p in got} == {b"\x00\xc8"}
    assert {p["sar_total_segments"] for p in got} == {bytes([len(sms.parts)])}
    assert [p["short_message"] for p in got] == [part.payload for part in sms.parts]


async def test_refusals_are_permanent_or_temporary(smsc: NetSmppSmsc) -> None:
    carrier = await running(smsc.port)
    try:
        with pytest.raises(PermanentFailure, match="ESME_RINVDSTADR"):
            await carrier.submit(outbound("hi", to="+9990001"))
        with pytest.raises(TemporaryFailure, match="ESME_RTHROTTLED"):
            await carrier.submit(outbound("hi", to="+8880001"))
        assert (await carrier.submit(outbound("hi"))).carrier_ids[0]
    finally:
        await carrier.stop()


async def test_wrong_password_is_reported_in_health(smsc: NetSmppSmsc) -> None:
    carrier = SmppCarrier(settings(smsc.port, password="nope"))
    await carrier.start(Recorder())
    try:
        async with asyncio.timeout(10):
            health = await carrier.wait_health(lambda h: "RINVPASWD" in h.detail)
    finally:
        await carrier.stop()
    assert not health.ok
    assert "bind refused: ESME_RINVPASWD (0x0000000E)" in health.detail


async def test_multipart_mo_in_reverse_order_becomes_one_inbound(smsc: NetSmppSmsc) -> None:
    hooks = Recorder()
    carrier = await running(smsc.port, hooks)
    try:
        sms = outbound(LONG_UCS2, to="+7770001", ref=77)
        await carrier.submit(sms)  # Net::SMPP echoes it back as MO, last part first
        await hooks.wait(lambda: len(hooks.inbound_sms) == 1)
    finally:
        await carrier.stop()
    mo = hooks.inbound_sms[0]
    assert (mo.from_, mo.text, mo.segments, mo.incomplete) == (
        "+7770001",
        sms.text,
        len(sms.parts),
        False,
    )
    assert smsc.lines.count("DELIVER_RESP status=0") == len(sms.parts)
