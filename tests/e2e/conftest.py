from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mailsms.app import Gateway
from tests.conftest import GatewayFactory
from tests.e2e.process import GatewayProcess
from tests.peers import dovecot as dovecot_peer
from tests.peers import postfix as postfix_peer
from tests.peers.dovecot import Dovecot, DovecotFactory, ImapReader
from tests.peers.postfix import Delivery, Postfix, PostfixFactory


@pytest.fixture
def gateway_process(tmp_path: Path) -> Iterator[Callable[[str], GatewayProcess]]:
    """Start ``mailsms serve`` processes from a config text; all are killed at teardown."""
    started: list[GatewayProcess] = []

    def start(config: str) -> GatewayProcess:
        path = tmp_path / "mailsms.toml"
        path.write_text(config)
        gp = GatewayProcess(path, tmp_path).start()
        started.append(gp)
        return gp

    yield start
    for gp in started:
        gp.kill()


# ---- Postfix + Dovecot + the in-process gateway (issues 6 and 8) --------------------------

# Imported into this module so pytest sees the fixtures in every e2e test.
postfix_factory = postfix_peer.postfix_factory
dovecot_factory = dovecot_peer.dovecot_factory

MAILBOX_DOMAIN = "example.test"  # alice's: Postfix delivers it into Dovecot over LMTP


@dataclass
class MailStack:
    """An operator's whole set-up on 127.0.0.1: Postfix in front of the gateway for the SMS
    domain and the gateway's smarthost, delivering ``example.test`` into Dovecot."""

    gw: Gateway
    pf: Postfix
    dc: Dovecot

    def inbox(self, user: str = "alice") -> ImapReader:
        return self.dc.reader(user)

    async def deliveries_to(self, rcpt: str, count: int, within: float = 15.0) -> list[Delivery]:
        """Postfix's final delivery lines for ``rcpt``, once there are ``count`` of them.

        Dovecot stores a message (and IMAP shows it) before Postfix has its LMTP reply
        and logs the delivery, so a test that has just read a mail waits for the line.
        """
        deadline = time.monotonic() + within
        while True:
            found = [d for d in self.pf.deliveries() if d.to == rcpt and d.status != "deferred"]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} of {count} deliveries to {rcpt}: {found}")
            await asyncio.sleep(postfix_peer.POLL_INTERVAL)


MailStackFactory = Callable[..., Awaitable[MailStack]]


@pytest.fixture
async def mail_stack(
    gateway_factory: GatewayFactory,
    postfix_factory: PostfixFactory,
    dovecot_factory: DovecotFactory,
) -> MailStackFactory:
    """``await mail_stack(carrier=[...], dkim={...})``: Dovecot, Postfix, then the gateway
    (with those settings, its ``relay.smarthost`` the Postfix smtpd).

    Each side has to know the other's port: the gateway's SMTP port is picked first (a
    free one), Postfix's transport map names it, and the gateway starts on it with
    Postfix's port as its smarthost. Postfix retries the gateway if it is not up yet.
    """

    async def make(**sections: Any) -> MailStack:
        dc = await dovecot_factory({"alice": "alice-pw"})
        gateway_port = postfix_peer.free_port()
        pf = await postfix_factory(
            {postfix_peer.SMS_DOMAIN: f"smtp:[127.0.0.1]:{gateway_port}"},
            main=dc.postfix_main(MAILBOX_DOMAIN),
            files={"vmailbox": dc.postfix_map(MAILBOX_DOMAIN)},
        )
        relay = {"smarthost": f"127.0.0.1:{pf.port}", "backoff_initial": "100ms"}
        gw = await gateway_factory(
            **{
                **sections,
                "smtp": {"listen": f"127.0.0.1:{gateway_port}", **sections.get("smtp", {})},
                "relay": {**relay, **sections.get("relay", {})},
            }
        )
        return MailStack(gw, pf, dc)

    return make
