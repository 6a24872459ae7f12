"""An SMSC for integration tests: smpp34's (Rust) server in a child process, scriptable.

Run as a script, it starts ``smpp34.Server`` on 127.0.0.1 behind a small front listener
(port 0 unless ``--port``), prints one JSON line per event on stdout (``listening``,
``bound``, ``bind_refused``, ``submit``, ``deliver_resp``, ``unbound``) and takes one JSON
command per line on stdin:

* ``{"cmd": "script", "statuses": [null, 11]}``: the fate of the next submits, in order
  (``null`` accepts, a number refuses with that command_status);
* ``{"cmd": "batch", "n": 4}``: hold submit_sm unanswered until ``n`` are outstanding,
  then answer them all (the window check: ``outstanding`` in each ``submit`` event is
  counted here, on the SMSC side);
* ``{"cmd": "deliver", ...deliver_sm fields, "short_message": hex, "tlvs": [[tag, hex]]}``;
* ``{"cmd": "release"}``: answer every held submit_sm now and stop holding (batch 0);
* ``{"cmd": "mute_enquire_link", "on": true}``: the front stops relaying the ESME's
  enquire_link (each is still recorded as an ``enquire_link`` event), so it goes unanswered;
* ``{"cmd": "raw", "hex": ...}``: the front writes these octets to the ESME, between two
  whole PDUs. Whatever the ESME answers to a sequence number >= 0x7F000000 is kept from
  smpp34 and recorded as a ``reply`` event (command_id, status, sequence, body hex).

The front listener exists because smpp34's server accepts any password (PEERS.md): it
reads the bind, refuses a wrong password with ESME_RINVPASWD itself, and otherwise relays
the connection PDU by PDU to the smpp34 server. Everything after the bind is smpp34's,
except what the commands above inject or hold back. Events carry ``t``, the SMSC's
``time.monotonic()``, so tests can bound elapsed time on the SMSC's side.

Imported, :class:`Smpp34Smsc` starts and drives that child from a test. It lives in its
own process so a test can kill it (SIGKILL) mid-run and start it again on the same port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import struct
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

Event = dict[str, Any]
SCRIPT = str(Path(__file__).resolve())


# ---- the test side ---------------------------------------------------------------------


class Smpp34Smsc:
    """The child process, seen from a test: events recorded, commands sent, kill/restart."""

    def __init__(self, password: str | None = None) -> None:
        self.password = password
        self.port = 0
        self.events: list[Event] = []
        self._changed = asyncio.Condition()
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    @staticmethod
    def available() -> bool:
        try:
            import smpp34  # noqa: F401
        except ImportError:
            return False
        return True

    async def start(self, port: int = 0) -> None:
        args = [sys.executable, SCRIPT, "--port", str(port)]
        if self.password is not None:
            args += ["--password", self.password]
        self._proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        self._reader = asyncio.create_task(self._read(self._proc))
        listening = await self.wait_for(lambda e: e["event"] == "listening", after=len(self.events))
        self.port = int(listening["port"])

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            async with self._changed:
                self.events.append(json.loads(line))
                self._changed.notify_all()

    async def wait_for(
        self, predicate: Callable[[Event], bool], after: int = 0, within: float = 10.0
    ) -> Event:
        """The first event from index ``after`` on for which ``predicate`` holds."""

        def found() -> Event | None:
            return next((e for e in self.events[after:] if predicate(e)), None)

        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: found() is not None)
        event = found()
        assert event is not None
        return event

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e["event"] == kind]

    async def command(self, **command: Any) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(command).encode() + b"\n")
        await self._proc.stdin.drain()

    async def deliver(self, **fields: Any) -> Event:
        """Send a deliver_sm to the bound ESME and return the ``deliver_resp`` event."""
        mark = len(self.events)
        tag = os.urandom(4).hex()
        await self.command(cmd="deliver", tag=tag, **fields)
        return await self.wait_for(
            lambda e: e["event"] == "deliver_resp" and e["tag"] == tag, after=mark
        )

    async def kill(self) -> None:
        """SIGKILL, as a crash would: no unbind, no FIN handshake worth the name."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGKILL)
            await self._proc.wait()
        if self._reader is not None:
            await self._reader

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                async with asyncio.timeout(5):
                    await self._proc.wait()
            except TimeoutError:
                await self.kill()
        if self._reader is not None:
            await self._reader


# ---- the child process -----------------------------------------------------------------


# Sequence numbers from here up are the front's own (``raw``): the ESME's answers to them
# are recorded, not relayed to smpp34, which never sent those requests.
INJECTED_SEQUENCE = 0x7F00_0000
ENQUIRE_LINK = 0x0000_0015


def _emit(event: Event) -> None:
    event.setdefault("t", time.monotonic())
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def _listening_ports() -> set[int]:
    """Ports this process listens on (smpp34's Server does not tell which port 0 became)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        if cols[3] == "0A" and cols[9] in inodes:  # 0A = LISTEN
            ports.add(int(cols[1].split(":")[1], 16))
    return ports


def _cstrings(body: bytes, count: int) -> list[str]:
    parts = body.split(b"\x00", count)
    return [p.decode("latin-1") for p in parts[:count]]


class _Child:
    def __init__(self, password: str | None) -> None:
        import smpp34

        self.smpp34 = smpp34
        self.password = password
        self.server = smpp34.Server(host="127.0.0.1", port=0, system_id="SMPP34")
        self.inner_port = 0
        self.sessions: dict[str, Any] = {}
        self.bound = asyncio.Event()  # set while at least one ESME is bound
        self.held: list[Any] = []
        self.outstanding = 0
        self.batch = 0
        self.script: list[int | None] = []
        self.counter = 0
        self.mute_enquire_link = False
        self.clients: list[asyncio.StreamWriter] = []

    async def run(self, port: int) -> None:
        before = _listening_ports()
        await self.server.start()
        self.inner_port = (_listening_ports() - before).pop()
        front = await asyncio.start_server(self._front, "127.0.0.1", port, reuse_address=True)
        _emit({"event": "listening", "port": front.sockets[0].getsockname()[1]})
        await asyncio.gather(self._events(), self._commands())

    async def _front(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Check the bind's password, then relay the connection to smpp34's server."""
        try:
            head = await reader.readexactly(16)
            length, command_id, _, seq = struct.unpack(">IIII", head)
            body = await reader.readexactly(length - 16)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        system_id, password = ([*_cstrings(body, 2), "", ""])[:2]
        if command_id in (1, 2, 9) and self.password is not None and password != self.password:
            _emit({"event": "bind_refused", "system_id": system_id})
            resp = b"SMPP34\x00"
            writer.write(struct.pack(">IIII", 16 + len(resp), command_id | 0x80000000, 0x0E, seq))
            writer.write(resp)
            await writer.drain()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.inner_port)
        up_writer.write(head + body)
        self.clients.append(writer)
        try:
            await asyncio.gather(self._upstream(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self.clients.remove(writer)

    async def _upstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """ESME -> smpp34, PDU by PDU: record enquire_link, keep answers to injected PDUs."""
        try:
            async for frame in _frames(reader):
                _, command_id, status, seq = struct.unpack_from(">IIII", frame)
                if command_id == ENQUIRE_LINK:
                    _emit({"event": "enquire_link", "muted": self.mute_enquire_link})
                    if self.mute_enquire_link:
                        continue
                if seq >= INJECTED_SEQUENCE and command_id & 0x8000_0000:
                    reply = {"command_id": command_id, "status": status, "sequence": seq}
                    _emit({"event": "reply", **reply, "body": frame[16:].hex()})
                    continue
                writer.write(frame)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _events(self) -> None:
        smpp34 = self.smpp34
        while True:
            ev = await self.server.next()
            if isinstance(ev, smpp34.Esme):
                self.sessions[ev.session_id] = ev
                self.bound.set()
                _emit({"event": "bound", "session": ev.session_id, "system_id": ev.system_id})
            elif isinstance(ev, smpp34.Unbound):
                self.sessions.pop(ev.session_id, None)
                if not self.sessions:
                    self.bound.clear()
                _emit({"event": "unbound", "session": ev.session_id})
            else:
                self._on_submit(ev)

    def _on_submit(self, ev: Any) -> None:
        self.outstanding += 1
        self.counter += 1
        message_id = f"{0x1A2B0000 + self.counter:08X}"
        record = {
            "event": "submit",
            "session": ev.session_id,
            "source_addr": ev.source_addr,
            "source_addr_ton": ev.source_addr_ton,
            "source_addr_npi": ev.source_addr_npi,
            "destination_addr": ev.destination_addr,
            "dest_addr_ton": ev.dest_addr_ton,
            "dest_addr_npi": ev.dest_addr_npi,
            "esm_class": ev.esm_class,
            "data_coding": ev.data_coding,
            "registered_delivery": ev.registered_delivery,
            "short_message": ev.short_message.hex(),
            "tlvs": [[t.tag, t.value.hex()] for t in ev.tlvs],
            "outstanding": self.outstanding,
            "message_id": message_id,
        }
        status = self.script.pop(0) if self.script else None
        if status is not None:
            record["rejected"] = status
            _emit(record)
            self.outstanding -= 1
            ev.reject(record["rejected"])
            return
        _emit(record)
        self.held.append((ev, message_id))
        if self.outstanding >= self.batch:
            for held, mid in self.held:
                held.accept(mid)
            self.outstanding -= len(self.held)
            self.held.clear()

    async def _commands(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        async for line in reader:
            command = json.loads(line)
            kind = command.pop("cmd")
            if kind == "script":
                self.script += command["statuses"]
            elif kind == "batch":
                self.batch = command["n"]
            elif kind == "release":
                self.batch = 0
                for held, mid in self.held:
                    held.accept(mid)
                self.outstanding -= len(self.held)
                self.held.clear()
            elif kind == "mute_enquire_link":
                self.mute_enquire_link = bool(command["on"])
            elif kind == "raw":
                for client in self.clients:
                    client.write(bytes.fromhex(command["hex"]))
            elif kind == "deliver":
                asyncio.create_task(self._deliver(command))  # noqa: RUF006 - lives with the process

    async def _deliver(self, command: Event) -> None:
        tag = command.pop("tag")
        # The client may see its bind_resp before this process has seen the bind event.
        await asyncio.wait_for(self.bound.wait(), 10)
        session = command.pop("session", None) or next(iter(self.sessions))
        command["short_message"] = bytes.fromhex(command.get("short_message", ""))
        tlvs = command.pop("tlvs", [])
        command["tlvs"] = [self.smpp34.Tlv(t, bytes.fromhex(v)) for t, v in tlvs]
        destination = command.pop("destination_addr")
        try:
            resp = await self.sessions[session].deliver_sm(destination, **command)
            _emit({"event": "deliver_resp", "tag": tag, "status": resp.command_status})
        except Exception as exc:
            _emit({"event": "deliver_resp", "tag": tag, "status": None, "error": repr(exc)})


async def _frames(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """Whole PDUs from a stream, until it ends."""
    while True:
        try:
            head = await reader.readexactly(4)
            length = int.from_bytes(head, "big")
            yield head + await reader.readexactly(max(0, length - 4))
        except asyncio.IncompleteReadError:
            return


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """smpp34 -> ESME, PDU by PDU, so that ``raw`` never lands inside a PDU."""
    try:
        async for frame in _frames(reader):
            writer.write(frame)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--password", default=None)
    args = parser.parse_args()
    asyncio.run(_Child(args.password).run(args.port))


if __name__ == "__main__":
    main()
