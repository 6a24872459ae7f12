"""``mailsms serve`` reading a real Dovecot mailbox (``[[imap]]``), as an operator runs it:
mail appended to the mailbox leaves as SMS, is marked seen, and the gateway stops cleanly."""

from __future__ import annotations

import asyncio
import imaplib
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.process import GatewayProcess
from tests.e2e.test_serve import config, outbox
from tests.peers.dovecot import DovecotFactory

pytestmark = pytest.mark.peers


async def test_serve_sends_what_lands_in_the_mailbox(
    tmp_path: Path,
    dovecot_factory: DovecotFactory,
    gateway_process: Callable[[str], GatewayProcess],
) -> None:
    dc = await dovecot_factory({"gw": "gw-pw"})
    gp = gateway_process(
        config(tmp_path)
        + f"""
[policy]
allowed_senders = ["*@example.test"]
[[imap]]
name = "alerts"
host = "127.0.0.1"
port = {dc.imap_port}
tls = false
username = "gw"
password = "gw-pw"
"""
    )
    assert gp.http is not None
    client = imaplib.IMAP4("127.0.0.1", dc.imap_port)
    try:
        client.login("gw", "gw-pw")
        mail = (
            b"From: Ops <ops@example.test>\r\nTo: +447700900123@sms.example.test\r\n"
            b"Subject: db1\r\nMessage-ID: <e2e-1@example.test>\r\n\r\nreplica lag 40s\r\n"
        )
        typ, _ = client.append("INBOX", "", imaplib.Time2Internaldate(0), mail)
        assert typ == "OK"
        [sent] = outbox(tmp_path, 1)  # read over IDLE, queued, submitted
        assert (sent["to"], sent["text"]) == ("+447700900123", "replica lag 40s")
        # The flag follows the commit, the SMS may leave before it: wait for it (polling
        # another process's mailbox, with a deadline, like outbox()).
        deadline = time.monotonic() + 15
        while True:
            client.select("INBOX")
            typ, data = client.fetch("1", "(FLAGS)")
            if (typ == "OK" and b"\\Seen" in data[0]) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert typ == "OK" and b"\\Seen" in data[0]
    finally:
        client.logout()
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://{gp.http[0]}:{gp.http[1]}/healthz") as r,
    ):
        health = await r.json()
    assert health["imap"]["alerts"]["ok"] is True
    assert gp.terminate() == 0
    assert any("gateway stopped" in line for line in gp.stderr)
