"""Invariant 1 under SIGKILL: every message answered 250 reaches a terminal state.

Several SMTP clients send a few hundred messages to a gateway process; the test kills it
with SIGKILL while messages are both arriving and being submitted, restarts it on the same
store, and waits until every acknowledged id is terminal. It then checks the file carrier's
outbox: every acknowledged message was sent, and duplicates (possible only for messages in
flight at the kill) are counted and reported.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import aiosmtplib
import pytest

from tests.e2e.process import GatewayProcess

TOTAL = 300
CLIENTS = 6
MAIL = b"From: ops@example.test\r\nSubject: load\r\n\r\nmessage number %d\r\n"


def config(tmp: Path) -> str:
    return f"""
[gateway]
domain = "sms.example.test"
[smtp]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[store]
url = "sqlite:///{tmp}/mailsms.db"
[dispatch]
lease = "2s"
backoff_initial = "50ms"
[[carrier]]
name = "out"
type = "file"
path = "{tmp}/outbox.jsonl"
max_rate = 100
concurrency = 8
"""


async def client(
    port: int, numbers: list[int], acked: dict[str, int], stop: asyncio.Event, half: asyncio.Event
) -> None:
    """Send until told to stop or the server dies; record only ids answered 250."""
    try:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10) as smtp:
            for n in numbers:
                if stop.is_set():
                    return
                await smtp.mail("ops@example.test")
                await smtp.rcpt("+447700900123@sms.example.test")
                code, text = await smtp.data(MAIL % n)
                if code == 250:
                    acked[text.split()[-1]] = n
                    if len(acked) >= TOTAL // 2:
                        half.set()
    except (aiosmtplib.SMTPException, OSError):
        return  # the gateway was killed under us: the in-flight message was not acked


def terminal_ids(db: Path) -> dict[str, str]:
    with sqlite3.connect(db, timeout=10) as conn:
        return dict(conn.execute("SELECT id, state FROM messages"))


@pytest.mark.slow
async def test_sigkill_loses_no_acknowledged_message(
    tmp_path: Path, gateway_process: Callable[[str], GatewayProcess]
) -> None:
    gp = gateway_process(config(tmp_path))
    assert gp.smtp is not None
    acked: dict[str, int] = {}
    stop, half = asyncio.Event(), asyncio.Event()
    chunks = [list(range(i, TOTAL, CLIENTS)) for i in range(CLIENTS)]
    senders = [asyncio.create_task(client(gp.smtp[1], c, acked, stop, half)) for c in chunks]
    await asyncio.wait(
        [asyncio.create_task(half.wait()), *senders], return_when=asyncio.FIRST_COMPLETED
    )
    gp.kill()  # SIGKILL while clients are still sending and the dispatcher is submitting
    stop.set()
    await asyncio.gather(*senders)
    outbox = tmp_path / "outbox.jsonl"
    sent_before = len(outbox.read_text().splitlines()) if outbox.exists() else 0
    assert acked, "no message was acknowledged before the kill"
    assert sent_before < len(acked), "the kill came too late to test anything"

    gateway_process(config(tmp_path))  # restart on the same store
    db = tmp_path / "mailsms.db"
    deadline = time.monotonic() + 60
    while True:
        states = terminal_ids(db)
        pending = [i for i in acked if states.get(i) not in {"delivered", "failed", "expired"}]
        if not pending or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert not pending, f"{len(pending)} acknowledged messages never finished"
    assert all(states[i] == "delivered" for i in acked)

    sent = collections.Counter(json.loads(line)["id"] for line in outbox.read_text().splitlines())
    missing = [i for i in acked if i not in sent]
    duplicates = {i: n for i, n in sent.items() if n > 1}
    print(
        f"\ncrash test: {len(acked)} acknowledged, {sent_before} sent before SIGKILL, "
        f"{len(missing)} lost, {len(duplicates)} sent twice (in flight at the kill)"
    )
    assert missing == []
    assert len(duplicates) <= 8  # at most the carrier's concurrency was in flight
