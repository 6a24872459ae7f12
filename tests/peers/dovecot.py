"""A private Dovecot for tests: the mailbox where the mail mailsms writes finally lands.

:class:`Dovecot` writes a ``dovecot.conf`` into a fresh temporary directory and runs
``dovecot -F -c CONF`` in the background: IMAP and LMTP on free 127.0.0.1 ports, no TLS,
plain passwords from a ``passwd-file``, one maildir per user under the same directory.
Postfix delivers into it with ``virtual_transport = lmtp:inet:127.0.0.1:LMTP_PORT``
(:meth:`Dovecot.postfix_main` gives those settings); tests read the result over IMAP with
:class:`ImapReader` (aioimaplib), as a mail client would.

The settings are the ones /work/shared/PEERS.md found to work here. Mail files belong to
``nobody`` (65534), the user every passwd-file entry maps to.

Waiting is on conditions with deadlines: the start waits for both banners, and
:meth:`ImapReader.wait_count` re-counts the mailbox after every IDLE push (or at least
once a second, should a push be missed) until it holds enough messages.

Tests use :func:`dovecot_factory`; every instance it starts is stopped at teardown with
``doveadm -c CONF stop``, and whatever is left of it (found by its session id: the
master is started in a session of its own, which its children inherit) is killed by
process id. Without the Debian ``dovecot-imapd``/``dovecot-lmtpd`` packages, or without
root, the fixture skips, or fails under ``MAILSMS_REQUIRE_PEERS=1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType

import aioimaplib  # type: ignore[import-untyped]  # no py.typed in 2.0.3
import pytest

from tests.conftest import need_peer
from tests.peers.postfix import SBIN_PATH, free_port, shared_temp_dir

MAIL_UID = 65534  # nobody: owns every maildir; dovecot refuses to deliver as root
START_TRIES = 5  # fresh ports tried when another process grabbed one we picked
IDLE_ROUND = 1.0  # seconds one IDLE waits before the mailbox is counted again anyway
_FETCH_LITERAL = re.compile(rb"UID (\d+)")


def dovecot_binary() -> str | None:
    return shutil.which("dovecot", path=SBIN_PATH)


def lmtp_available() -> bool:
    """``dovecot-lmtpd`` installs the lmtp service binary next to imap's."""
    return any(Path(d, "lmtp").exists() for d in ("/usr/lib/dovecot", "/usr/libexec/dovecot"))


class Dovecot:
    """One private Dovecot in ``root``: ``start`` it, ``stop`` it (idempotent)."""

    def __init__(self, root: Path, users: Mapping[str, str]) -> None:
        self.root = root
        self.conf = root / "dovecot.conf"
        self.mail = root / "mail"
        self.log_file = root / "dovecot.log"
        self.users = dict(users)
        self.imap_port = 0
        self.lmtp_port = 0
        self.process: subprocess.Popen[bytes] | None = None

    # ---- configuration ------------------------------------------------------------------

    def config(self) -> str:
        r = self.root
        return f"""\
base_dir = {r}/run
state_dir = {r}/state
log_path = {self.log_file}
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
auth_username_format = %Ln
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {r}/users
}}
userdb {{
  driver = passwd-file
  args = {r}/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.lmtp_port}
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@example.test
}}
"""

    def _write_config(self) -> None:
        for d in (self.root / "run", self.root / "state", self.mail):
            d.mkdir(exist_ok=True)
        lines = "".join(
            f"{name}:{{PLAIN}}{password}:{MAIL_UID}:{MAIL_UID}::{self.mail / name}::\n"
            for name, password in self.users.items()
        )
        (self.root / "users").write_text(lines)
        for name in self.users:
            (self.mail / name).mkdir(exist_ok=True)
            os.chown(self.mail / name, MAIL_UID, MAIL_UID)
        self.conf.write_text(self.config())

    def postfix_main(self, domain: str, map_name: str = "vmailbox") -> dict[str, str]:
        """``main.cf`` settings that make Postfix deliver ``domain`` into this Dovecot; the
        map file itself is :meth:`postfix_map`, written as ``files={map_name: ...}``."""
        return {
            "virtual_mailbox_domains": domain,
            "virtual_mailbox_maps": f"texthash:$config_directory/{map_name}",
            "virtual_transport": f"lmtp:inet:127.0.0.1:{self.lmtp_port}",
        }

    def postfix_map(self, domain: str) -> str:
        return "".join(f"{name}@{domain} {name}\n" for name in self.users)

    # ---- processes ----------------------------------------------------------------------

    def _start_once(self) -> bool:
        """Try one pair of ports; False when one was taken meanwhile (retry others)."""
        self.imap_port, self.lmtp_port = free_port(), free_port()
        if self.imap_port == self.lmtp_port:
            return False
        self._write_config()
        seen = len(self.log())
        env = {**os.environ, "PATH": SBIN_PATH}
        self.process = subprocess.Popen(
            ["dovecot", "-F", "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # its children share this session: how stragglers are found
        )
        if self._wait_ready():
            return True
        stderr = self._reap()
        if "Address already in use" in self.log()[seen:] + stderr:
            return False
        raise RuntimeError(f"dovecot did not start: {stderr}\n--- log ---\n{self.log()[-4000:]}")

    def _wait_ready(self, within: float = 10.0) -> bool:
        """Both banners answer; False as soon as the master exits."""
        deadline = time.monotonic() + within
        waiting = {self.imap_port: b"* OK", self.lmtp_port: b"220 "}
        while waiting:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            for port, banner in list(waiting.items()):
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), timeout=2) as s,
                ):
                    if s.recv(200).startswith(banner):
                        del waiting[port]
            if time.monotonic() > deadline:
                raise RuntimeError(f"dovecot: no banner on {list(waiting)}:\n{self.log()}")
            if waiting:
                time.sleep(0.02)
        return True

    def _reap(self) -> str:
        """Wait for the master to exit; its stderr (where it writes before ``log_path``)."""
        if self.process is None:
            return ""
        try:
            _, err = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        self._kill_stragglers()
        return err.decode(errors="replace")

    def start_sync(self) -> None:
        for _ in range(START_TRIES):
            if self._start_once():
                return
        raise RuntimeError(f"dovecot: no free ports after {START_TRIES} tries")

    def stop_sync(self) -> None:
        """``doveadm stop``, wait for the master, then SIGKILL what is left. Idempotent."""
        if self.process is None:
            return
        if self.process.poll() is None:
            subprocess.run(
                ["doveadm", "-c", str(self.conf), "stop"],
                capture_output=True,
                env={**os.environ, "PATH": SBIN_PATH},
                timeout=30,
                check=False,
            )
        self._reap()
        self.process = None

    def _our_pids(self) -> list[int]:
        """Live processes in the master's session (/proc/PID/stat: state, ppid, pgrp,
        session). Zombies are left out: they are dead, and whoever adopted them (the
        container's init) reaps them in its own time."""
        assert self.process is not None
        sid = self.process.pid
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                state, _, _, session = stat[stat.rindex(")") + 2 :].split()[:4]
                if int(session) == sid and state != "Z":
                    pids.append(int(entry.name))
        return pids

    def _kill_stragglers(self) -> None:
        deadline = time.monotonic() + 5
        while (pids := self._our_pids()) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # ---- the test-facing API ------------------------------------------------------------

    async def start(self) -> Dovecot:
        await asyncio.to_thread(self.start_sync)
        return self

    async def stop(self) -> None:
        await asyncio.to_thread(self.stop_sync)

    def reader(self, user: str) -> ImapReader:
        """``async with dovecot.reader("alice") as inbox:``: logged in, INBOX selected."""
        return ImapReader("127.0.0.1", self.imap_port, user, self.users[user])


class ImapReader:
    """A mail client's view of one mailbox over IMAP (aioimaplib): count, wait, fetch.

    Fetches use ``BODY.PEEK[]``, so reading leaves the ``\\Seen`` flag alone.
    """

    def __init__(self, host: str, port: int, user: str, password: str) -> None:
        self.host, self.port = host, port
        self.user, self.password = user, password
        self.client: aioimaplib.IMAP4 | None = None

    async def __aenter__(self) -> ImapReader:
        self.client = aioimaplib.IMAP4(self.host, self.port, timeout=10)
        await self.client.wait_hello_from_server()
        await self._ok(self.client.login(self.user, self.password), "LOGIN")
        await self._ok(self.client.select("INBOX"), "SELECT")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.client is None:
            return
        with contextlib.suppress(Exception):
            await self.client.logout()
        transport = self.client.protocol.transport
        if transport is not None:
            transport.close()
        self.client = None

    @staticmethod
    async def _ok(call: Awaitable[aioimaplib.Response], what: str) -> aioimaplib.Response:
        response = await call
        if response.result != "OK":
            raise AssertionError(f"IMAP {what}: {response.result} {response.lines}")
        return response

    def _imap(self) -> aioimaplib.IMAP4:
        assert self.client is not None, "use ImapReader in an async with block"
        return self.client

    async def uids(self, *criteria: str) -> list[int]:
        """``UID SEARCH`` (``ALL`` when no criteria), ascending."""
        response = await self._ok(self._imap().uid_search(*(criteria or ("ALL",))), "SEARCH")
        # aioimaplib strips "* SEARCH" from the untagged lines; the last line is the
        # tagged reply's text ("Search completed ...").
        found = [int(n) for line in response.lines[:-1] for n in bytes(line).split()]
        return sorted(found)

    async def fetch(self, uid: int) -> bytes:
        """The whole message ``uid``, as stored (``UID FETCH uid BODY.PEEK[]``)."""
        response = await self._ok(self._imap().uid("fetch", str(uid), "(BODY.PEEK[])"), "FETCH")
        for head, literal in zip(response.lines, response.lines[1:], strict=False):
            m = _FETCH_LITERAL.search(bytes(head))
            if b"FETCH" in bytes(head) and m and int(m[1]) == uid:
                return bytes(literal)
        raise AssertionError(f"IMAP FETCH {uid}: no literal in {response.lines}")

    async def messages(self) -> list[tuple[int, bytes]]:
        return [(uid, await self.fetch(uid)) for uid in await self.uids()]

    async def wait_count(self, count: int, within: float = 15.0) -> list[int]:
        """The UIDs in the mailbox once it holds at least ``count`` messages.

        Between counts the client IDLEs: Dovecot pushes ``* N EXISTS`` when a delivery
        lands (about 0.5 s after LMTP here). Each IDLE lasts at most ``IDLE_ROUND``, so a
        missed push costs a second, never the test.
        """
        deadline = time.monotonic() + within
        while len(uids := await self.uids()) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"{self.user}: {len(uids)} of {count} messages after {within}s"
                )
            await self._idle(min(IDLE_ROUND, left))
        return uids

    async def _idle(self, seconds: float) -> None:
        imap = self._imap()
        idle = await imap.idle_start(timeout=seconds)
        try:
            with contextlib.suppress(TimeoutError):
                await imap.wait_server_push(timeout=seconds + 1)
        finally:
            imap.idle_done()
            await asyncio.wait_for(idle, imap.timeout)


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


DovecotFactory = Callable[..., Awaitable[Dovecot]]


@contextlib.asynccontextmanager
async def dovecot_instances() -> AsyncIterator[DovecotFactory]:
    """Start private Dovecot instances; stop each and remove its directory on exit."""
    if dovecot_binary() is None or not lmtp_available():
        need_peer(False, "Dovecot is not installed (apt-get install dovecot-imapd dovecot-lmtpd)")
    if os.geteuid() != 0:
        need_peer(False, "a private Dovecot instance must be started as root")
    started: list[Dovecot] = []

    async def make(users: Mapping[str, str] | None = None) -> Dovecot:
        dc = Dovecot(shared_temp_dir("mailsms-dc-"), users or {"alice": "alice-pw"})
        started.append(dc)
        return await dc.start()

    try:
        yield make
    finally:
        for dc in started:
            await dc.stop()
            shutil.rmtree(dc.root, ignore_errors=True)


@pytest.fixture
async def dovecot_factory() -> AsyncIterator[DovecotFactory]:
    """``await dovecot_factory({"alice": "pw"})``: a running Dovecot with those users."""
    async with dovecot_instances() as make:
        yield make
