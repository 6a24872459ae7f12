"""The parse workers: the same answers as parsing on the loop, and no mail lost to them."""

from __future__ import annotations

from pathlib import Path

import aiosmtplib
import pytest

from mailsms.app import Gateway
from mailsms.intake.parse_pool import ParsePool, WorkerUnavailable
from mailsms.mail.parse import BodyOptions, NoTextError, extract
from mailsms.model import State
from mailsms.sms.encode import SmsOptions, TooLong, plan
from tests.conftest import GatewayFactory
from tests.helpers import settled

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
MAIL = (
    b"From: ops@example.test\r\nTo: +447700900123@sms.example.test\r\n"
    b"Subject: disk\r\nMessage-ID: <a@example.test>\r\n\r\nDisk /var on db1 is 91% full.\r\n"
)


async def test_workers_answer_exactly_what_the_loop_computes() -> None:
    body, sms = BodyOptions(), SmsOptions(max_segments=2, on_too_long="reject")
    pool = ParsePool(2, body, sms)
    try:
        mails = sorted(CORPUS.glob("*.eml"))
        assert len(mails) > 30
        for path in mails:
            raw = path.read_bytes()
            try:
                expected = extract(raw, body)
            except NoTextError:
                with pytest.raises(NoTextError):
                    await pool.parse(raw)
                continue
            parsed = await pool.parse(raw)
            assert parsed.mail == expected, path.name
            try:
                assert parsed.plans == plan(expected.text, sms, 0), path.name
            except TooLong as exc:
                assert isinstance(parsed.plans, TooLong), path.name
                assert (parsed.plans.segments, parsed.plans.limit) == (exc.segments, exc.limit)
    finally:
        await pool.stop()


async def send(gw: Gateway) -> None:
    host, port = gw.listening.smtp  # type: ignore[misc]
    async with aiosmtplib.SMTP(hostname=host, port=port) as client:
        await client.sendmail("ops@example.test", ["+447700900123@sms.example.test"], MAIL)


async def test_a_killed_worker_costs_no_mail(gateway: Gateway) -> None:
    pool = gateway.intake.parse_pool
    await pool.warm()
    [first] = pool._workers
    first.proc.kill()
    await first.proc.wait()
    for _ in range(3):  # the first may be parsed on the loop; then a new worker takes over
        await send(gateway)
    assert [w for w in pool._workers if w.alive and w is not first]
    stored = await gateway.store.list_messages()
    assert len(stored) == 3
    for m in stored:
        assert (await settled(gateway, m.id)).state is State.DELIVERED


async def test_workers_that_cannot_start_leave_parsing_to_the_loop(
    gateway_factory: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ParsePool, "module", "mailsms.no_such_module")
    gw = await gateway_factory()
    pool = gw.intake.parse_pool
    for _ in range(4):
        await send(gw)
    assert not pool.enabled  # given up after three deaths in a row
    with pytest.raises(WorkerUnavailable):
        await pool.parse(MAIL)
    assert len(await gw.store.list_messages()) == 4


async def test_workers_exit_with_the_gateway(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(smtp={"parse_workers": 2})
    await gw.intake.parse_pool.warm()
    procs = [w.proc for w in gw.intake.parse_pool._workers]
    assert len(procs) == 2
    await gw.stop()
    assert all(p.returncode == 0 for p in procs)


async def test_parse_workers_zero_parses_on_the_loop(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(smtp={"parse_workers": 0})
    await send(gw)
    assert not gw.intake.parse_pool._workers
    assert len(await gw.store.list_messages()) == 1
