"""SMS-to-mail throughput: webhook requests per second that end as mail at a smarthost.

Four runs per round, interleaved (A B C D A B C D ...) so that machine noise hits all alike:

- **plain**: ``mailsms serve`` without DKIM;
- **rsa**: the same with ``[dkim] algorithm = "rsa-sha256"`` (2048-bit key made at start);
- **ed25519**: the same with ``algorithm = "ed25519-sha256"``;
- **relay**: no gateway: aiosmtplib sends the same number of pre-rendered, unsigned mails
  to the same sink with the relay's concurrency, one connection per mail as
  ``RelayWorker._send`` does (what the relay step alone can do here).

A gateway run: a fresh temporary directory, config and SQLite store; a ``fake`` carrier
``sms`` with a ``webhook_token``; ``[inbound] catch_all``; ``[relay] smarthost`` = the
sink. An aiohttp client keeps ``--clients`` requests in flight over ``-n`` generic
webhooks (``POST /webhooks/sms/inbound``, unique ``id`` each). Throughput is N / (time
from the first request to the sink's receipt of the Nth mail); the sink stamps that
receipt with the shared monotonic clock, so the polling interval does not add to it.

The sink is this file run as ``inbound.py sink``: aiosmtpd on uvloop that counts mails
(and those starting with a DKIM-Signature) and answers 250; it answers ``count`` and
``dump PATH`` on stdin. Every server is its own process, so the bench's own client is the
only thing it shares the CPUs with. After each signed run, the last mail the sink got is
verified with dkimpy against the generated TXT record.

    .venv/bin/python bench/inbound.py                 # table, about 1-2 min on 2 cores
    .venv/bin/python bench/inbound.py --json
    .venv/bin/python bench/inbound.py -n 2000 -r 5 --concurrency 8

Exit status 1 when a run loses mail, gets a non-200 reply or a signature does not verify.
See ``bench/README-inbound.md`` for the method and the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

DOMAIN = "sms.example.test"
CATCH_ALL = "ops@example.test"
OUR_NUMBER = "+447700900999"
TOKEN = "bench-webhook-token"
TEXT = "Sure, 1pm works. See you at the usual place 😀"
SENDERS = 100  # distinct phones: most SMS join an existing conversation, as in real use
GATEWAYS = {
    "plain": None,
    "rsa": "rsa-sha256",
    "ed25519": "ed25519-sha256",
}
RUNS = (*GATEWAYS, "relay")
LABELS = {
    "plain": "gateway, no DKIM",
    "rsa": "gateway, DKIM rsa-sha256 (2048)",
    "ed25519": "gateway, DKIM ed25519-sha256",
    "relay": "raw aiosmtplib relay (pre-rendered)",
}
TARGET = 0.50  # signed relay at least 50% of the unsigned rate


def phone(i: int) -> str:
    return f"+4477009{i % SENDERS:05d}"


# --- the sink (a subprocess) -------------------------------------------------------------


class CountingSink:
    """Answers 250 to DATA; counts mails and the DKIM-signed ones, keeps the last one."""

    def __init__(self) -> None:
        self.total = 0
        self.signed = 0
        self.last_at = 0.0
        self.last = b""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or b""
        self.total += 1
        self.signed += data[:16].lower() == b"dkim-signature: "
        self.last, self.last_at = data, time.monotonic()
        return "250 2.0.0 OK"


def _control(sink: CountingSink) -> None:
    """Reads commands from stdin (a thread: the loop only serves SMTP)."""
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "count":
            print(sink.total, sink.signed, repr(sink.last_at), flush=True)
        elif cmd == "dump":
            Path(arg).write_bytes(sink.last)
            print("ok", flush=True)
    os.kill(os.getpid(), signal.SIGTERM)  # stdin closed: the bench is gone


async def _sink_serve() -> None:
    from aiosmtpd.smtp import SMTP

    sink = CountingSink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(sink, enable_SMTPUTF8=True, decode_data=False, ident="sink"),
        "127.0.0.1",
        0,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", server.sockets[0].getsockname()[1], flush=True)
    threading.Thread(target=_control, args=(sink,), daemon=True).start()
    await stop.wait()
    server.close()


def _on_uvloop(coro: Any) -> Any:
    try:
        import uvloop  # the gateway runs on uvloop when installed: so do sink and clients
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


class Sink:
    """The sink process, driven over its stdin/stdout."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "sink"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self._line()
        if not line.startswith("ready "):
            raise RuntimeError(f"the sink did not start: {line!r}")
        self.port = int(line.split()[1])

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the sink exited")
        return line

    def _ask(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._line()

    def count(self) -> tuple[int, int, float]:
        total, signed, last_at = self._ask("count").split()
        return int(total), int(signed), float(last_at)

    def dump(self, path: Path) -> bytes:
        self._ask(f"dump {path}")
        return path.read_bytes()

    def wait_for(self, total: int, deadline: float) -> tuple[int, int, float]:
        """Poll until the sink has ``total`` mails or ``deadline`` (monotonic) passes."""
        while True:
            seen = self.count()
            if seen[0] >= total or time.monotonic() > deadline:
                return seen
            time.sleep(0.01)

    def stop(self) -> None:
        stop(self.proc)


# --- the gateway (a subprocess) ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def stop(
    proc: subprocess.Popen[Any], sig: signal.Signals = signal.SIGTERM, grace: float = 20.0
) -> None:
    """``sig``, then wait; SIGKILL only if it does not exit within ``grace``."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            print(f"!! pid {proc.pid} ignored SIGTERM for {grace}s: killed", file=sys.stderr)
            proc.kill()
            proc.wait()


class Gateway:
    """``mailsms serve`` in a fresh directory, relaying to the sink."""

    def __init__(self, opts: argparse.Namespace, algorithm: str | None, keys: Path, sink: int):
        self.opts = opts
        self.dir = Path(tempfile.mkdtemp(prefix="mailsms-bench-inbound-"))
        self.http = free_port()
        self.db = self.dir / "mailsms.db"
        self.log = self.dir / "gateway.log"
        dkim = (
            f'[dkim]\ndomain = "{DOMAIN}"\nselector = "bench"\n'
            f'key_file = "{keys / algorithm}.pem"\nalgorithm = "{algorithm}"\n'
            if algorithm
            else ""
        )
        (self.dir / "gateway.toml").write_text(f"""
[gateway]
domain = "{DOMAIN}"
[smtp]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:{self.http}"
[store]
url = "sqlite:///{self.db}"
[log]
level = "{opts.log_level}"
[inbound]
catch_all = "{CATCH_ALL}"
[relay]
smarthost = "127.0.0.1:{sink}"
concurrency = {opts.concurrency}
backoff_initial = "100ms"
backoff_max = "500ms"
{dkim}
[[carrier]]
name = "sms"
type = "fake"
webhook_token = "{TOKEN}"
""")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}/webhooks/sms/inbound"

    def start(self) -> None:
        exe = Path(sys.executable).parent / "mailsms"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [str(exe), "serve", "--config", str(self.dir / "gateway.toml")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        health = f"http://127.0.0.1:{self.http}/healthz"
        end = time.monotonic() + 20
        while time.monotonic() < end and self.proc.poll() is None:
            if http_ok(health):
                return
            time.sleep(0.05)
        self.stop()
        tail = self.log.read_text(errors="replace").splitlines()[-8:]
        raise RuntimeError(f"the gateway did not start; end of {self.log}:\n" + "\n".join(tail))

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def states(self) -> dict[str, int]:
        """inbound SMS by state (read after stop)."""
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as c:
            rows = c.execute("SELECT state, COUNT(*) FROM inbound GROUP BY state").fetchall()
        return {state: n for state, n in rows}

    def cleanup(self) -> None:
        if not self.opts.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def profile(opts: argparse.Namespace, gw: Gateway, name: str) -> subprocess.Popen[bytes] | None:
    """py-spy on the gateway for this run (``--py-spy DIR``): every thread, raw
    (collapsed) stacks, ``--nonblocking`` so that sampling does not pause the gateway."""
    if not opts.py_spy or gw.proc is None:
        return None
    exe = Path(sys.executable).parent / "py-spy"
    out = Path(opts.py_spy).resolve() / name
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen(
        [str(exe), "record", "--pid", str(gw.proc.pid), "--threads", "--nonblocking",
         "-r", "200", "-f", "raw", "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)  # py-spy attaches
    return spy


# --- the loads ---------------------------------------------------------------------------


async def webhooks(url: str, n: int, clients: int, tag: str) -> tuple[float, float, int]:
    """POST ``n`` inbound SMS, ``clients`` at a time: (start, all answered, non-200s)."""
    import aiohttp

    headers = {"Authorization": f"Bearer {TOKEN}"}
    todo = iter(range(n))
    failures = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        for i in todo:
            body = {"from": phone(i), "to": OUR_NUMBER, "text": TEXT, "id": f"{tag}-{i}"}
            async with session.post(url, json=body, headers=headers) as r:
                await r.read()
                failures += r.status != 200

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.monotonic()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        return start, time.monotonic(), failures


def rendered(n: int, tag: str) -> list[bytes]:
    """What the gateway would queue without DKIM: render_inbound's output per SMS."""
    from mailsms.mail.render import InboundMail, render_inbound
    from mailsms.mail.templates import environment

    env, now = environment(), time.time()
    return [
        render_inbound(
            InboundMail(
                inbound_id=f"{tag}{i:06d}", phone=phone(i), our_number=OUR_NUMBER,
                domain=DOMAIN, to=CATCH_ALL, text=TEXT, received_at=now, timezone="UTC",
                segments=1, incomplete=False, carrier="sms", thread=None, last_outbound=None,
            ),
            env,
        )
        for i in range(n)
    ]  # fmt: skip


async def relay(port: int, mails: list[bytes], concurrency: int) -> tuple[float, float, int]:
    """Send ``mails`` the way RelayWorker._send does: a new aiosmtplib.SMTP and connection
    per mail, default HELO name, ``concurrency`` at a time. (start, all sent, failures)."""
    import aiosmtplib

    todo = iter(enumerate(mails))
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for i, data in todo:
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60)
            try:
                async with client:
                    errors, _ = await client.sendmail(f"{phone(i)}@{DOMAIN}", [CATCH_ALL], data)
                failures += bool(errors)
            except (aiosmtplib.SMTPException, OSError):
                failures += 1

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return start, time.monotonic(), failures


# --- runs --------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    round: int
    sent: int
    seconds: float  # first request to the sink's receipt of the last mail
    rate: float
    intake_rate: float  # requests answered per second (gateway) / mails sent (relay)
    ok: bool
    note: str = ""


def run_gateway(
    opts: argparse.Namespace, name: str, rnd: int, sink: Sink, keys: Path, txt: dict[str, str]
) -> Run:
    algorithm = GATEWAYS[name]
    gw = Gateway(opts, algorithm, keys, sink.port)
    n, notes = opts.messages, []
    spy = None
    try:
        gw.start()
        spy = profile(opts, gw, f"{name}.txt") if rnd == 1 else None
        before = sink.count()
        start, answered, failures = _on_uvloop(webhooks(gw.url, n, opts.clients, f"r{rnd}-{name}"))
        total, signed, last_at = sink.wait_for(before[0] + n, answered + opts.deadline)
        got, got_signed = total - before[0], signed - before[1]
        if failures:
            notes.append(f"{failures} non-200 replies")
        if got != n:
            notes.append(f"sink got {got} of {n}")
        if got_signed != (n if algorithm else 0):
            notes.append(f"{got_signed} of {got} signed")
        if algorithm and got and not verify(sink.dump(gw.dir / "last.eml"), txt[algorithm]):
            notes.append("the last mail's DKIM signature does not verify")
    finally:
        if spy is not None:
            stop(spy, signal.SIGINT)
        gw.stop()
    states = gw.states()
    if states.get("relayed", 0) != n:
        notes.append(f"inbound states {states}")
    if notes and opts.keep is False:
        notes.append(f"kept {gw.dir}")
    else:
        gw.cleanup()
    seconds = (last_at if got >= n else time.monotonic()) - start
    return Run(name, rnd, n, seconds, got / seconds, n / (answered - start), not notes,
               "; ".join(notes))  # fmt: skip


def run_relay(opts: argparse.Namespace, rnd: int, sink: Sink) -> Run:
    n = opts.messages
    mails = rendered(n, f"r{rnd}x")
    before = sink.count()
    start, sent, failures = _on_uvloop(relay(sink.port, mails, opts.concurrency))
    total, _, last_at = sink.wait_for(before[0] + n, sent + opts.deadline)
    got = total - before[0]
    note = "; ".join(
        ([f"{failures} failed"] if failures else []) + ([f"sink got {got}"] if got != n else [])
    )
    seconds = last_at - start
    return Run("relay", rnd, n, seconds, got / seconds, n / (sent - start), not note, note)


def verify(message: bytes, record: str) -> bool:
    import dkim  # type: ignore[import-untyped]

    name = f"bench._domainkey.{DOMAIN}.".encode()
    return bool(
        dkim.verify(message, dnsfunc=lambda n, timeout=5: record.encode() if n == name else None)
    )


def make_keys(directory: Path) -> dict[str, str]:
    """A key file per algorithm in ``directory``; returns algorithm -> TXT record."""
    from mailsms.mail.sign import generate_key

    records = {}
    for algorithm in ("rsa-sha256", "ed25519-sha256"):
        pem, record = generate_key(algorithm)
        (directory / f"{algorithm}.pem").write_bytes(pem)
        records[algorithm] = record
    return records


# --- report ------------------------------------------------------------------------------


def summary(runs: list[Run]) -> dict[str, Any]:
    median = {
        name: statistics.median(r.rate for r in runs if r.name == name)
        for name in RUNS
        if any(r.name == name for r in runs)
    }
    intake = {
        name: statistics.median(r.intake_rate for r in runs if r.name == name) for name in median
    }
    plain, raw = median.get("plain"), median.get("relay")
    targets = {
        name: {
            "vs_gateway": median[name] / plain if plain else None,
            "vs_relay": median[name] / raw if raw else None,
            "pass": bool(plain and median[name] / plain >= TARGET),
        }
        for name in ("rsa", "ed25519")
        if name in median
    }
    return {"msg_per_s": median, "intake_per_s": intake, "targets": targets}


def table(opts: argparse.Namespace, runs: list[Run], result: dict[str, Any]) -> str:
    rates, intake = result["msg_per_s"], result["intake_per_s"]
    plain, raw = rates.get("plain"), rates.get("relay")
    lines = [
        f"mailsms SMS->mail: {opts.messages} messages x {opts.rounds} rounds, median msg/s; "
        f"{os.cpu_count()} CPUs; {opts.clients} webhook clients; relay concurrency "
        f"{opts.concurrency}; gateway log {opts.log_level}",
        f"{'run':<38}{'msg/s':>8}{'intake/s':>10}{'vs plain gw':>13}{'vs raw relay':>14}   rounds",
    ]
    for name in rates:
        each = " ".join(f"{r.rate:.0f}" for r in runs if r.name == name)
        lines.append(
            f"{LABELS[name]:<38}{rates[name]:>8.0f}{intake[name]:>10.0f}"
            f"{_pct(rates[name], plain):>13}{_pct(rates[name], raw):>14}   {each}"
        )
    lines.append(
        "msg/s = N / (first webhook request -> sink received the Nth mail); intake/s = "
        "webhook replies (relay: SMTP transactions) per second"
    )
    lines.append(f"target: signed gateway >= {TARGET:.0%} of the unsigned gateway")
    for name, t in result["targets"].items():
        vs_gw = f"{t['vs_gateway']:.0%}" if t["vs_gateway"] is not None else "-"
        vs_raw = f"{t['vs_relay']:.0%}" if t["vs_relay"] is not None else "-"
        verdict = ("PASS" if t["pass"] else "MISS") if t["vs_gateway"] is not None else "n/a"
        lines.append(
            f"  {LABELS[name]:<36}: {vs_gw:>5} of unsigned gateway "
            f"({vs_raw} of raw relay)  {verdict}"
        )
    bad = [r for r in runs if not r.ok]
    lines.append(
        "correctness (all delivered, signed where configured, DKIM verifies): "
        + ("OK" if not bad else "FAILED")
    )
    lines += [f"  !! round {r.round} {r.name}: {r.note}" for r in bad]
    return "\n".join(lines)


def _pct(value: float, base: float | None) -> str:
    return f"{value / base:.0%}" if base else "-"


# --- main --------------------------------------------------------------------------------


def options(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("-n", "--messages", type=int, default=1000, help="SMS per run (1000)")
    p.add_argument("-r", "--rounds", type=int, default=3, help="interleaved rounds (3)")
    p.add_argument("--clients", type=int, default=20, help="webhook requests in flight (20)")
    p.add_argument(
        "--concurrency", type=int, default=4, help="[relay] concurrency, also the raw relay's (4)"
    )
    p.add_argument("--only", nargs="+", choices=RUNS, default=list(RUNS), help="runs to do")
    p.add_argument("--log-level", default="info", help="gateway [log] level (info)")
    p.add_argument("--deadline", type=float, default=60.0, help="max s to wait for the sink")
    p.add_argument("--py-spy", metavar="DIR", help="profile round 1 of each gateway run")
    p.add_argument("--keep", action="store_true", help="keep the gateways' directories")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p.parse_args(argv)


def main() -> int:
    if sys.argv[1:2] == ["sink"]:
        _on_uvloop(_sink_serve())
        return 0
    opts = options()
    keys = Path(tempfile.mkdtemp(prefix="mailsms-bench-keys-"))
    sink: Sink | None = None
    runs: list[Run] = []
    try:
        txt = make_keys(keys)
        sink = Sink()
        for rnd in range(1, opts.rounds + 1):
            for name in [r for r in RUNS if r in opts.only]:
                if name == "relay":
                    run = run_relay(opts, rnd, sink)
                else:
                    run = run_gateway(opts, name, rnd, sink, keys, txt)
                runs.append(run)
                if not opts.json:
                    print(f"  round {rnd} {name:<8} {run.rate:7.0f} msg/s  {run.note}",
                          file=sys.stderr, flush=True)  # fmt: skip
    finally:
        if sink is not None:
            sink.stop()
        shutil.rmtree(keys, ignore_errors=True)
    result = summary(runs)
    if opts.json:
        out = {"options": vars(opts), "cpus": os.cpu_count(), **result,
               "runs": [asdict(r) for r in runs]}  # fmt: skip
        print(json.dumps(out, indent=2))
    else:
        print(table(opts, runs, result))
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
