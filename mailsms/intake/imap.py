"""IMAP intake: a mailbox whose new mail is sent as SMS (``[[imap]]``, docs/imap.md).

For sites where the gateway cannot sit behind the MTA: an ordinary mailbox, which the
gateway logs in to, reads and marks. Each unseen message goes through the same decisions
as a mail over SMTP (:class:`~mailsms.intake.accept.Intake`), with the envelope read from
its header (:mod:`mailsms.intake.envelope`).

DESIGN.md invariant 1 for a mailbox: the message is marked ``\\Seen`` (or moved, or
deleted) only after its SMS are committed. A crash between the commit and the flag would
send it again on the next poll, so the commit also stores the message's key, (account,
UIDVALIDITY, UID): a key found stored means "queued before, only the flag is missing".

What happens to a message:

- queued: ``after`` (``seen``: ``+FLAGS (\\Seen)``; ``move``: ``UID MOVE`` to ``move_to``;
  ``delete``: ``\\Deleted`` and ``UID EXPUNGE``);
- refused for good (sender not allowed, no recipient of ours, no text, too long...): moved
  to ``rejected_to`` when set, else flagged ``\\Seen \\Flagged``; the reason is logged with
  the SMTP code SMTP would have answered. No bounce: the From of a refused mail is not
  trusted, and a bounce to it would be backscatter;
- refused for now (store unavailable, sender rate limit): left unseen, tried again at the
  next poll.

The connection: LOGIN, SELECT, then poll (``UID SEARCH UNSEEN``) and wait, in IDLE when the
server offers it (a new message is read within a second of its delivery), else
``poll_interval``; after an error, reconnect with backoff (1 s doubling to 5 min), shown in
``/healthz``. aioimaplib (PEERS.md: every command used here was tried against Dovecot).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fnmatch
import itertools
import logging
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aioimaplib  # type: ignore[import-untyped]  # no py.typed in 2.0.3

from mailsms.address import Recipient, mask
from mailsms.config import ImapSettings
from mailsms.errors import StoreError
from mailsms.intake.accept import Intake, RefusedError
from mailsms.intake.envelope import authenticated, read_envelope
from mailsms.mail.append import RELAYED
from mailsms.policy import Refusal
from mailsms.policy.senders import NOT_AUTHORISED
from mailsms.store.base import AlreadyQueued

log = logging.getLogger("mailsms.intake.imap")

NO_RECIPIENT = Refusal(550, "5.1.1", "No recipient in a domain served here")
NOT_AUTHENTICATED = Refusal(550, "5.7.1", "Sender not authenticated by our MTA")
TOO_BIG = Refusal(552, "5.3.4", "Message size exceeds the fixed maximum message size")
_MAX_FAILURES = 3
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_FETCH_LITERAL = re.compile(rb"UID (\d+).*\{(\d+)\}$")
_BACKOFF_MAX = 300.0


class ImapError(Exception):
    """The server said NO or BAD to a command we need."""


@dataclass(slots=True)
class ImapHealth:
    ok: bool = False
    detail: str = "not connected yet"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one message (also returned by :meth:`ImapIntake.poll` for tests)."""

    uid: int
    result: str  # queued | duplicate | refused | deferred
    ids: tuple[str, ...] = ()
    reason: str = ""


class ImapIntake:
    """One ``[[imap]]`` mailbox, read by one task for the gateway's lifetime."""

    def __init__(
        self, settings: ImapSettings, intake: Intake, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.intake = intake
        self.clock = clock
        self.health = ImapHealth()
        self._client: Any = None
        self._lost = asyncio.Event()  # set when the current connection is closed
        self._uidvalidity = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._busy = False  # processing mail: stop waits for the message in hand
        self._patterns = tuple(
            p.lower()
            for p in (
                settings.allowed_senders
                if settings.allowed_senders is not None
                else intake.settings.policy.allowed_senders or ()
            )
        )
        self._failures: dict[int, int] = {}  # uid -> unexpected failures in a row
        self.polls = 0  # completed polls
        self.outcomes: collections.Counter[str] = collections.Counter()  # finished, by result
        self._changed = asyncio.Event()  # set when health or polls change (wait_for)

    @property
    def name(self) -> str:
        return self.settings.name

    # --- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=f"imap {self.name}")

    async def stop(self) -> None:
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            if not self._busy:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, self.settings.timeout)
        await self._disconnect()

    async def wait_for(self, check: Callable[[ImapIntake], bool]) -> None:
        """Return once ``check(self)`` holds, re-checked at every change of health, poll
        count or outcomes (tests and embedders wait on conditions, not on time)."""
        while not check(self):
            self._changed.clear()
            await self._changed.wait()

    def _set_health(self, ok: bool, detail: str) -> None:
        self.health = ImapHealth(ok, detail)
        self._changed.set()

    async def _run(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            try:
                await self.connect()
                backoff = 1.0
                while not self._stopping.is_set():
                    await self.poll()
                    await self._wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: drop the connection, try again later
                self._set_health(False, f"{type(exc).__name__}: {exc}")
                log.warning(
                    "imap %s: %s; reconnecting in %.0fs",
                    self.name,
                    self.health.detail,
                    backoff,
                    extra={"event": "imap_error", "imap": self.name},
                )
                await self._disconnect()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)

    # --- the connection ------------------------------------------------------------------

    async def connect(self) -> None:
        """Log in and select the mailbox (raises on failure)."""
        s = self.settings
        if s.tls:
            context = ssl.create_default_context()
            if not s.validate_certs:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            client = aioimaplib.IMAP4_SSL(
                s.host, s.effective_port, timeout=s.timeout, ssl_context=context
            )
        else:
            client = aioimaplib.IMAP4(s.host, s.effective_port, timeout=s.timeout)
        self._client = client
        self._lost = lost = asyncio.Event()
        client.protocol.conn_lost_cb = lambda exc: lost.set()
        await client.wait_hello_from_server()
        await self._ok(client.login(s.username, s.password), "LOGIN")
        selected = await self._ok(client.select(s.mailbox), f"SELECT {s.mailbox}")
        found = [m for line in selected.lines if (m := _UIDVALIDITY.search(bytes(line)))]
        if not found:
            raise ImapError(f"SELECT {s.mailbox}: no UIDVALIDITY in the answer")
        self._uidvalidity = int(found[0][1])
        self._set_health(True, f"{s.mailbox} on {s.host}:{s.effective_port}")
        log.info(
            "imap %s: reading %s on %s:%d as %s",
            self.name,
            s.mailbox,
            s.host,
            s.effective_port,
            s.username,
            extra={"event": "imap_connected", "imap": self.name},
        )

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        with contextlib.suppress(Exception):
            if client.has_pending_idle():
                client.idle_done()
            await asyncio.wait_for(client.logout(), 2.0)
        transport = getattr(client.protocol, "transport", None)
        if transport is not None:
            transport.close()

    async def _ok(self, call: Any, what: str) -> Any:
        """The answer to one command, raising ImapError for NO/BAD and ConnectionError when
        the server closes the connection meanwhile (aioimaplib would wait for ``timeout``)."""
        command = asyncio.ensure_future(call)
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait(
                {command, lost}, timeout=self.settings.timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            lost.cancel()
        if command not in done:
            command.cancel()
            if lost in done:
                raise ConnectionError(f"{what}: connection closed by the server")
            raise TimeoutError(f"{what}: no answer within {self.settings.timeout:g}s")
        response = command.result()
        if response.result != "OK":
            text = b" ".join(bytes(x) for x in response.lines[-1:]).decode("utf-8", "replace")
            raise ImapError(f"{what}: {response.result} {text}")
        return response

    async def _wait(self) -> None:
        """Until the server reports a change (IDLE), ``poll_interval`` passes, or stop.
        A connection the server closes meanwhile (a restart, a kick: Dovecot says BYE,
        which aioimaplib drops) raises ConnectionError at once, for a reconnect."""
        client = self._client
        interval = self.settings.poll_interval
        stop = asyncio.ensure_future(self._stopping.wait())
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            if self.settings.idle and client.has_capability("IDLE"):
                idle = await client.idle_start(timeout=interval)
                push = asyncio.ensure_future(client.wait_server_push(timeout=interval + 5))
                await asyncio.wait({push, stop, lost}, return_when=asyncio.FIRST_COMPLETED)
                push.cancel()
                if self._lost.is_set():
                    idle.cancel()
                    raise ConnectionError("connection closed by the server while idling")
                if client.has_pending_idle():
                    client.idle_done()
                await asyncio.wait_for(idle, self.settings.timeout)
            else:
                await asyncio.wait({stop, lost}, timeout=interval)
                if self._lost.is_set():
                    raise ConnectionError("connection closed by the server")
        finally:
            stop.cancel()
            lost.cancel()

    # --- the mail ------------------------------------------------------------------------

    async def poll(self) -> list[Outcome]:
        """Process every unseen message, oldest first."""
        limit = self.intake.settings.smtp.max_message_size
        outcomes = [await self._too_big(uid) for uid in await self._search("LARGER", str(limit))]
        for uid in await self._search("SMALLER", str(limit + 1)):
            if self._stopping.is_set():
                break
            self._busy = True
            try:
                outcomes.append(await self._guarded(uid))
            finally:
                self._busy = False
        self.polls += 1
        self._changed.set()
        return outcomes

    async def _search(self, *criteria: str) -> list[int]:
        # Not what the relay appended here itself (relay.method = "imap"): replies from
        # phones, not mail to send.
        found = await self._ok(
            self._client.uid_search(
                "UNSEEN", "NOT", "DELETED", "NOT", "KEYWORD", RELAYED, *criteria
            ),
            "UID SEARCH",
        )
        return sorted(int(n) for line in found.lines[:-1] for n in bytes(line).split())

    async def _too_big(self, uid: int) -> Outcome:
        """Over ``smtp.max_message_size``: refused unread, as SMTP would at DATA."""
        await self._reject(uid)
        return self._log(Outcome(uid, "refused", reason=TOO_BIG.reply))

    async def _guarded(self, uid: int) -> Outcome:
        """:meth:`_one`, with a message that keeps failing set aside instead of blocking the
        mailbox: the connection's own errors go up (reconnect), the store's defer the
        message, anything else (a bug meeting an odd message) defers it twice and then
        refuses it, with the traceback logged each time."""
        try:
            outcome = await self._one(uid)
        except (ImapError, OSError, TimeoutError, aioimaplib.AioImapException):
            raise
        except StoreError as exc:
            return self._log(Outcome(uid, "deferred", reason=f"store: {exc}"))
        except Exception as exc:
            failures = self._failures[uid] = self._failures.get(uid, 0) + 1
            log.exception(
                "imap %s: uid %d failed (%d of %d)",
                self.name,
                uid,
                failures,
                _MAX_FAILURES,
                extra={"event": "imap_error", "imap": self.name},
            )
            if failures < _MAX_FAILURES:
                return self._log(Outcome(uid, "deferred", reason=f"internal error: {exc!r}"))
            await self._reject(uid)
            del self._failures[uid]
            return self._log(Outcome(uid, "refused", reason=f"internal error: {exc!r}"))
        self._failures.pop(uid, None)
        return outcome

    async def _one(self, uid: int) -> Outcome:
        key = f"imap:{self.name}:{self._uidvalidity}:{uid}"
        stored = await self.intake.store.intake_key(key)
        if stored is not None:  # queued before the flag could be set (a crash, a drop)
            await self._after(uid)
            return self._log(Outcome(uid, "duplicate", stored))
        raw = await self._fetch(uid)
        try:
            outcome = await self._accept(uid, raw, key)
        except AlreadyQueued as exc:  # another process got there first
            outcome = Outcome(uid, "duplicate", exc.ids)
        if outcome.result in ("queued", "duplicate"):
            await self._after(uid)
        elif outcome.result == "refused":
            await self._reject(uid)
        return self._log(outcome)

    async def _accept(self, uid: int, raw: bytes, key: str) -> Outcome:
        env = read_envelope(raw, self.intake.domains)
        refusal = self._check_sender(raw, env.sender)
        if refusal is not None:
            return _refused(uid, refusal, env.sender)
        if env.null_return_path:
            return _refused(uid, Refusal(550, "5.7.1", "Bounce (Return-Path <>)"), env.sender)
        recipients: list[Recipient] = []
        originals: list[str] = []
        refused: list[str] = []
        for address in env.recipients:
            got = await self.intake.check_recipient(address, env.sender, len(recipients))
            if isinstance(got, Refusal):
                if got.temporary and got.status != "4.5.3":  # too many: not better later
                    return Outcome(uid, "deferred", reason=f"{mask(address)}: {got.reply}")
                refused.append(f"{mask(address)}: {got.reply}")
                continue
            recipients.append(got)
            originals.append(address)
        if not recipients:
            reason = "; ".join(refused) or NO_RECIPIENT.reply
            return Outcome(uid, "refused", reason=reason)
        try:
            accepted = await self.intake.accept_mail(
                raw, env.sender, recipients, originals, origin="imap", key=key
            )
        except RefusedError as exc:
            if exc.refusal.temporary:
                return Outcome(uid, "deferred", reason=exc.refusal.reply)
            return _refused(uid, exc.refusal, env.sender)
        reason = f"refused recipients: {'; '.join(refused)}" if refused else ""
        return Outcome(uid, "queued", accepted.ids, reason)

    def _check_sender(self, raw: bytes, sender: str) -> Refusal | None:
        address = sender.lower()
        if not address or not any(fnmatch.fnmatchcase(address, p) for p in self._patterns):
            return NOT_AUTHORISED
        authserv_id = self.settings.authserv_id or self.intake.settings.policy.authserv_id
        if authserv_id is not None:
            why = authenticated(raw, authserv_id, sender)
            if why is not None:
                return Refusal(NOT_AUTHENTICATED.code, NOT_AUTHENTICATED.status, why)
        return None

    async def _fetch(self, uid: int) -> bytes:
        response = await self._ok(self._client.uid("fetch", str(uid), "(BODY.PEEK[])"), "FETCH")
        for head, literal in itertools.pairwise(response.lines):
            m = _FETCH_LITERAL.search(bytes(head))
            if m and int(m[1]) == uid:
                return bytes(literal)
        raise ImapError(f"UID FETCH {uid}: no message in the answer")

    async def _after(self, uid: int) -> None:
        s = self.settings
        if s.after == "seen":
            await self._ok(
                self._client.uid("store", str(uid), "+FLAGS.SILENT", r"(\Seen)"), "STORE"
            )
        elif s.after == "move":
            assert s.move_to is not None  # config check
            await self._move(uid, s.move_to, r"(\Seen)")
        else:
            await self._delete(uid)

    async def _reject(self, uid: int) -> None:
        flags = r"(\Seen \Flagged)"
        if self.settings.rejected_to:
            await self._move(uid, self.settings.rejected_to, flags)
        else:
            await self._ok(self._client.uid("store", str(uid), "+FLAGS.SILENT", flags), "STORE")

    async def _move(self, uid: int, mailbox: str, flags: str) -> None:
        client = self._client
        await self._ok(client.uid("store", str(uid), "+FLAGS.SILENT", flags), "STORE")
        if client.has_capability("MOVE"):
            await self._ok(client.uid("move", str(uid), _quoted(mailbox)), f"MOVE to {mailbox}")
            return
        await self._ok(client.uid("copy", str(uid), _quoted(mailbox)), f"COPY to {mailbox}")
        await self._delete(uid)

    async def _delete(self, uid: int) -> None:
        client = self._client
        await self._ok(client.uid("store", str(uid), "+FLAGS.SILENT", r"(\Deleted)"), "STORE")
        if client.has_capability("UIDPLUS"):
            await self._ok(client.uid("expunge", str(uid)), "UID EXPUNGE")
        else:
            await self._ok(client.expunge(), "EXPUNGE")

    def _log(self, outcome: Outcome) -> Outcome:
        extra = {
            "event": f"imap_{outcome.result}",
            "imap": self.name,
            "uid": outcome.uid,
            "ids": " ".join(outcome.ids),
        }
        if outcome.result == "queued":
            log.info("imap %s: uid %d queued", self.name, outcome.uid, extra=extra)
            if outcome.reason:
                log.warning("imap %s: uid %d %s", self.name, outcome.uid, outcome.reason)
        elif outcome.result == "duplicate":
            log.info("imap %s: uid %d was queued before", self.name, outcome.uid, extra=extra)
        else:
            log.warning(
                "imap %s: uid %d %s: %s",
                self.name,
                outcome.uid,
                outcome.result,
                outcome.reason,
                extra=extra,
            )
        self.intake.metrics.imap_mail.labels(imap=self.name, result=outcome.result).inc()
        self.outcomes[outcome.result] += 1  # after the flag or move: the message is done
        self._changed.set()
        return outcome


def _refused(uid: int, refusal: Refusal, sender: str) -> Outcome:
    return Outcome(uid, "refused", reason=f"from {sender or '(none)'}: {refusal.reply}")


def _quoted(mailbox: str) -> str:
    """An IMAP quoted string (RFC 3501 section 4.3): a mailbox name may hold spaces."""
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'
