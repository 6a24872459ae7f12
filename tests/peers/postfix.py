"""A private Postfix instance for tests: the MTA an operator puts in front of mailsms.

:class:`Postfix` writes a ``main.cf``/``master.cf`` into a fresh temporary directory and
runs ``postfix -c DIR start``: its own queue, data directory and log file, one smtpd on a
free 127.0.0.1 port, and a ``transport_maps`` that sends our SMS domain to the gateway
(``smtp:[127.0.0.1]:PORT`` or ``lmtp:inet:127.0.0.1:PORT``). Every other destination ends
in an ``error:`` transport, so nothing a test submits can leave the machine; DNS is off.
Queue times are seconds, not hours, so deferred mail is retried within a test.

The settings are the ones /work/shared/PEERS.md found to work here, and the same ones
``deploy/postfix/`` documents for operators. Extra ``main.cf`` settings (for instance a
Dovecot mailbox: ``virtual_mailbox_domains``, ``virtual_transport = lmtp:inet:...``) are
passed as a dict and win over the defaults.

Postfix has no event to wait on from outside, so :meth:`Postfix.wait_log` polls its
``maillog_file`` (every 20 ms, with a deadline). Tests use :func:`postfix_factory`; every
instance it starts is stopped at teardown, and stragglers are killed by process id.

Running a private Postfix needs root (``master`` binds, then drops to ``postfix``) and the
Debian ``postfix`` package; without them the fixture skips, or fails under
``MAILSMS_REQUIRE_PEERS=1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.conftest import need_peer

SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
SMS_DOMAIN = "sms.example.test"
START_TRIES = 5  # fresh ports tried when another process grabbed the one we picked
POLL_INTERVAL = 0.02  # seconds between reads of the Postfix log
T = TypeVar("T")

# Everything a test instance needs, beside the paths, the port and the transport map.
# Comments say why a setting is here; deploy/postfix/main.cf.snippet is the operator's copy.
BASE_MAIN_CF: dict[str, str] = {
    "compatibility_level": "3.6",
    "mail_owner": "postfix",
    "setgid_group": "postdrop",
    "inet_interfaces": "127.0.0.1",
    "inet_protocols": "ipv4",
    "mynetworks": "127.0.0.0/8",
    # No local delivery at all: this instance is a relay in front of the gateway.
    "mydestination": "",
    "alias_maps": "",
    "alias_database": "",
    "local_recipient_maps": "",
    "relay_domains": SMS_DOMAIN,
    "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
    # Anything the transport map does not name fails here instead of leaving the machine.
    "default_transport": "error:5.7.1 mailsms test instance delivers to the gateway only",
    "relay_transport": "error:5.7.1 mailsms test instance delivers to the gateway only",
    "local_transport": "error:5.7.1 mailsms test instance has no local delivery",
    "virtual_transport": "error:5.7.1 mailsms test instance has no mailboxes",
    # Offline machine: never ask DNS; "[127.0.0.1]" needs no lookup, the rest uses hosts.
    "disable_dns_lookups": "yes",
    "smtp_host_lookup": "native",
    "lmtp_host_lookup": "native",
    "smtputf8_enable": "no",
    # Debian's main.cf sets it; the leading "+" of our E.164 local parts must survive it.
    "recipient_delimiter": "+",
    "biff": "no",
    # Deferred mail comes back within a test, and undeliverable bounces are not kept.
    "queue_run_delay": "1s",
    "minimal_backoff_time": "1s",
    "maximal_backoff_time": "2s",
    "maximal_queue_lifetime": "5m",
    "bounce_queue_lifetime": "0",
    "smtp_connect_timeout": "5s",
    "lmtp_connect_timeout": "5s",
}


def postfix_binary() -> str | None:
    return shutil.which("postfix", path=SBIN_PATH)


def free_port() -> int:
    """A port the kernel just handed out for 127.0.0.1; taken by someone else rarely."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def shared_temp_dir(prefix: str) -> Path:
    """A fresh directory the ``postfix`` user can traverse (mode 0755), with a short path.

    pytest's ``tmp_path`` does not fit: it is 0700 and long (a Unix socket name has room
    for about 100 bytes). The caller removes it.
    """
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


@dataclass
class Submission:
    """What Postfix's smtpd answered: its queue id, and the recipients it refused."""

    queue_id: str | None
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)
    reply: str = ""


@dataclass
class Delivery:
    """One ``to=<...>, relay=..., status=...`` line of the Postfix log."""

    queue_id: str
    to: str
    relay: str
    status: str
    detail: str
    line: str


DELIVERY = re.compile(
    r"postfix/\w+\[\d+\]: (?P<qid>[0-9A-F]+): to=<(?P<to>[^>]*)>,.*? relay=(?P<relay>[^,]+),"
    r".*? status=(?P<status>\w+) \((?P<detail>.*)\)$"
)


class Postfix:
    """One private Postfix instance in ``root``; ``start`` it, ``stop`` it (idempotent)."""

    def __init__(
        self,
        root: Path,
        transport: Mapping[str, str],
        main: Mapping[str, str] | None = None,
        files: Mapping[str, str] | None = None,
    ) -> None:
        self.root = root
        self.etc = root / "etc"
        self.queue_dir = root / "queue"
        self.data_dir = root / "data"
        self.maillog = root / "log" / "maillog"
        self.transport = dict(transport)
        self.extra = dict(main or {})
        self.files = dict(files or {})
        self.hostname = f"mx-{os.getpid()}-{root.name[-8:].lower()}.postfix.test"
        self.port = 0
        self.running = False

    # ---- configuration ------------------------------------------------------------------

    def main_cf(self) -> dict[str, str]:
        return {
            **BASE_MAIN_CF,
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(self.root),
            "myhostname": self.hostname,
            "myorigin": "$myhostname",
            "smtpd_banner": "$myhostname ESMTP",
            "transport_maps": "texthash:$config_directory/transport",
            **self.extra,
        }

    def master_cf(self) -> str:
        """The stock service list, no chroot, plus our smtpd on ``self.port``."""
        services = [
            f"127.0.0.1:{self.port} inet n - n - - smtpd",
            "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "proxywrite unix - - n - 1 proxymap",
            "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "local unix - n n - - local",
            "virtual unix - n n - - virtual",
            "lmtp unix - - n - - lmtp",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ]
        return "\n".join(services) + "\n"

    def _write_config(self) -> None:
        for d in (self.etc, self.queue_dir, self.maillog.parent):
            d.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        shutil.chown(self.data_dir, "postfix", "postfix")
        main = "".join(f"{k} = {v}\n" for k, v in self.main_cf().items())
        (self.etc / "main.cf").write_text(main)
        (self.etc / "master.cf").write_text(self.master_cf())
        lines = "".join(f"{domain} {nexthop}\n" for domain, nexthop in self.transport.items())
        (self.etc / "transport").write_text(lines)
        for name, text in self.files.items():
            (self.etc / name).write_text(text)
        # Postfix waits (in 0.3 s steps, about 2 s) for a main.cf changed in the last
        # seconds to "settle"; an old mtime makes every start that much faster.
        past = time.time() - 60
        for path in self.etc.iterdir():
            os.utime(path, (past, past))

    # ---- commands -----------------------------------------------------------------------

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PATH": SBIN_PATH}
        done = subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=30, check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}\n"
                f"--- maillog ---\n{self.log()[-4000:]}"
            )
        return done

    def _start_once(self) -> bool:
        """Try one port; False when the smtpd port was taken meanwhile (retry another)."""
        self.port = free_port()
        self._write_config()
        seen = len(self.log())
        done = self._run("postfix", "-c", str(self.etc), "start", check=False)
        if done.returncode == 0:
            self.running = True
            return True
        self._kill_stragglers()
        if "Address already in use" in self.log()[seen:]:
            return False
        raise RuntimeError(
            f"postfix start exited {done.returncode}: {done.stderr.strip()}\n"
            f"--- maillog ---\n{self.log()[-4000:]}"
        )

    def start_sync(self) -> None:
        for _ in range(START_TRIES):
            if self._start_once():
                self._wait_banner()
                return
        raise RuntimeError(f"postfix: no free port after {START_TRIES} tries")

    def _wait_banner(self, within: float = 10.0) -> None:
        """Our own smtpd answers on ``self.port`` (its banner names our hostname)."""
        deadline = time.monotonic() + within
        while True:
            with contextlib.suppress(OSError), smtplib.SMTP(timeout=5) as client:
                code, banner = client.connect("127.0.0.1", self.port)
                if code == 220 and self.hostname.encode() in banner:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"no Postfix banner on port {self.port}:\n{self.log()}")
            time.sleep(0.02)

    def stop_sync(self) -> None:
        """``postfix stop``, then ``abort`` and SIGKILL for whatever is left. Idempotent."""
        if self.running:
            self._run("postfix", "-c", str(self.etc), "stop", check=False)
            self.running = False
        self._kill_stragglers()

    def _our_pids(self) -> list[int]:
        """Processes of this instance: Postfix passes ``MAIL_CONFIG`` to every child."""
        marker = f"MAIL_CONFIG={self.etc}".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
        return pids

    def _kill_stragglers(self) -> None:
        if not self._our_pids():
            return
        self._run("postfix", "-c", str(self.etc), "abort", check=False)
        deadline = time.monotonic() + 5
        while (pids := self._our_pids()) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # ---- the test-facing API (async: the gateway shares the test's event loop) ----------

    async def start(self) -> Postfix:
        await asyncio.to_thread(self.start_sync)
        return self

    async def stop(self) -> None:
        await asyncio.to_thread(self.stop_sync)

    def _submit_sync(
        self, sender: str, rcpts: list[str], data: bytes, source: tuple[str, int] | None
    ) -> Submission:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10, source_address=source) as client:
            client.ehlo("client.example.test")
            code, text = client.mail(sender)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, text, sender)
            refused = {}
            for rcpt in rcpts:
                code, text = client.rcpt(rcpt)
                if code not in (250, 251):
                    refused[rcpt] = (code, text.decode())
            if len(refused) == len(rcpts):
                return Submission(None, refused)
            code, text = client.data(data)
            reply = text.decode()
            if code != 250:
                raise smtplib.SMTPDataError(code, reply)
            return Submission(reply.rsplit(" ", 1)[-1], refused, reply)

    async def submit(
        self,
        sender: str,
        to: str | list[str],
        data: bytes,
        source_address: tuple[str, int] | None = None,
    ) -> Submission:
        """Hand a mail to Postfix's smtpd as any client would; its queue id and refusals.

        ``source_address=("127.0.0.2", 0)`` plays a client outside ``mynetworks`` when the
        instance was started with ``mynetworks = 127.0.0.1/32``.
        """
        rcpts = [to] if isinstance(to, str) else list(to)
        return await asyncio.to_thread(self._submit_sync, sender, rcpts, data, source_address)

    async def flush(self) -> None:
        """``postqueue -f``: retry every deferred message now."""
        await asyncio.to_thread(self._run, "postqueue", "-c", str(self.etc), "-f")

    async def queue(self) -> list[dict[str, Any]]:
        """``postqueue -j``: one dict per queued message (queue_name, recipients, ...).

        showq scans one queue directory after another, so a message that moves (active ->
        deferred) during the scan is listed twice; the later listing is kept.
        """
        done = await asyncio.to_thread(self._run, "postqueue", "-c", str(self.etc), "-j")
        entries = (json.loads(line) for line in done.stdout.splitlines() if line.strip())
        return list({e["queue_id"]: e for e in entries}.values())

    def log(self) -> str:
        try:
            return self.maillog.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def deliveries(self, queue_id: str | None = None) -> list[Delivery]:
        found = []
        for line in self.log().splitlines():
            m = DELIVERY.search(line)
            if m and (queue_id is None or m["qid"] == queue_id):
                found.append(
                    Delivery(m["qid"], m["to"], m["relay"], m["status"], m["detail"], line)
                )
        return found

    async def wait_log(self, pattern: str, within: float = 15.0) -> re.Match[str]:
        """The first log line matching ``pattern`` (a regex), polling until ``within``."""
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            return next(filter(None, map(regex.search, self.log().splitlines())), None)

        return await self._poll(found, within, f"no log line matches {pattern!r}")

    async def wait_deliveries(
        self, queue_id: str, count: int, within: float = 15.0, final: bool = True
    ) -> list[Delivery]:
        """The first ``count`` delivery lines of ``queue_id`` (only final ones if ``final``:
        ``sent``/``bounced``, not ``deferred``)."""

        def found() -> list[Delivery] | None:
            ds = [d for d in self.deliveries(queue_id) if not final or d.status != "deferred"]
            return ds[:count] if len(ds) >= count else None

        return await self._poll(found, within, f"{queue_id}: fewer than {count} deliveries")

    async def _poll(self, found: Callable[[], T | None], within: float, what: str) -> T:
        """Postfix signals nothing to an outside process: re-read its log every 20 ms."""
        deadline = time.monotonic() + within
        while (result := found()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} after {within}s; log:\n{self.log()[-4000:]}")
            await asyncio.sleep(POLL_INTERVAL)
        return result


PostfixFactory = Callable[..., Awaitable[Postfix]]


@contextlib.asynccontextmanager
async def postfix_instances() -> AsyncIterator[PostfixFactory]:
    """Start private Postfix instances; stop each and remove its directory on exit."""
    if postfix_binary() is None:
        need_peer(False, "Postfix is not installed (apt-get install postfix)")
    if os.geteuid() != 0:
        need_peer(False, "a private Postfix instance must be started as root")
    started: list[Postfix] = []

    async def make(
        transport: Mapping[str, str],
        main: Mapping[str, str] | None = None,
        files: Mapping[str, str] | None = None,
    ) -> Postfix:
        pf = Postfix(shared_temp_dir("mailsms-pf-"), transport, main, files)
        started.append(pf)
        return await pf.start()

    try:
        yield make
    finally:
        for pf in started:
            await pf.stop()
            shutil.rmtree(pf.root, ignore_errors=True)


@pytest.fixture
async def postfix_factory() -> AsyncIterator[PostfixFactory]:
    """``await postfix_factory({"sms.example.test": "smtp:[127.0.0.1]:PORT"}, main={...})``.

    ``main`` adds or overrides ``main.cf`` settings; ``files`` are written into the config
    directory, for maps that ``main`` names as ``texthash:$config_directory/NAME``.
    """
    async with postfix_instances() as make:
        yield make
