"""SMTP intake benchmark: the gateway against a bare aiosmtpd and Postfix's smtp-sink.

Drives each server with Postfix's ``smtp-source`` and a realistic mail (``bench/mail.eml``:
760 bytes, 10 headers, a body that encodes to 2 GSM-7 segments), in interleaved rounds
(gateway, bare, sink, gateway, bare, sink, ...) so that machine noise hits all alike.
For the gateway it also measures, from its SQLite database, the time from the intake
commit (``messages.created_at``) to the carrier submit (``events.at`` of state
``submitted``), at saturation and at half the maximum rate (paced by
``bench/paced_client.py``), and checks that every accepted message reached the outbox.

Run ``.venv/bin/python bench/intake.py --help``; see ``bench/README.md`` for the method.
"""

from __future__ import annotations

import argparse
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
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SENDER = "ops@example.test"
RCPT = "+447700900123@sms.example.test"
# smtp-source's -d means "don't disconnect": send the next message on the same connection.
LOADS = {
    "s1d": (["-s", "1", "-d"], "-s 1 -d   (1 session, reused)"),
    "s10d": (["-s", "10", "-d"], "-s 10 -d  (10 sessions, reused)"),
    "s50": (["-s", "50"], "-s 50     (50 parallel, new connection per mail)"),
}
SERVERS = ("gateway", "bare", "sink")
TARGETS = {"ratio_bare_s10d": 0.40, "half_p50_ms": 5.0, "half_p99_ms": 50.0, "sat_p99_ms": 250.0}


# --- results ---------------------------------------------------------------------------


@dataclass
class Run:
    """One smtp-source (or paced) run against one server."""

    server: str
    load: str
    round: int
    sent: int
    seconds: float
    rate: float
    ok: bool = True
    note: str = ""
    # gateway only
    stored: int | None = None
    outbox: int | None = None
    drain_seconds: float | None = None
    latencies: list[float] = field(default_factory=list, repr=False)


# --- processes and ports ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: object, deadline: float, what: str) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def stop(proc: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM, then wait; SIGKILL only if it does not exit within ``grace``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            print(f"!! pid {proc.pid} ignored SIGTERM for {grace}s: killed", file=sys.stderr)
            proc.kill()
            proc.wait()


# --- the three servers -------------------------------------------------------------------


class Gateway:
    """``mailsms serve`` in a fresh temporary directory with a fresh SQLite database."""

    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.dir = Path(tempfile.mkdtemp(prefix="mailsms-bench-"))
        self.port, self.http = free_port(), free_port()
        self.db = self.dir / "mailsms.db"
        self.outbox = self.dir / "outbox.jsonl"
        (self.dir / "gateway.toml").write_text(self._config())
        self.proc: subprocess.Popen[bytes] | None = None

    def _config(self) -> str:
        return f"""
[gateway]
domain = "sms.example.test"
[smtp]
listen = "127.0.0.1:{self.port}"
[http]
listen = "127.0.0.1:{self.http}"
[store]
url = "sqlite:///{self.db}"
[policy]
max_segments = 6
[log]
level = "{self.opts.log_level}"
[[carrier]]
name = "out"
type = "file"
path = "{self.outbox}"
concurrency = {self.opts.concurrency}
"""

    def start(self) -> None:
        exe = Path(sys.executable).parent / "mailsms"
        log = open(self.dir / "gateway.log", "wb")  # noqa: SIM115 (lives as long as the process)
        self.proc = subprocess.Popen(
            [str(exe), "serve", "--config", str(self.dir / "gateway.toml")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{self.http}/healthz"
        try:
            wait_until(lambda: self.proc.poll() is not None or http_ok(url), 20, "gateway /healthz")
        finally:
            if self.proc.poll() is not None or not http_ok(url):
                self.stop()
                tail = (self.dir / "gateway.log").read_text(errors="replace").splitlines()[-8:]
                raise RuntimeError(
                    "the gateway did not start; end of its log "
                    f"({self.dir / 'gateway.log'}):\n" + "\n".join(tail)
                )

    def outbox_lines(self) -> int:
        try:
            with open(self.outbox, "rb") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    def drain(self, expected: int) -> float:
        """Wait until the outbox holds ``expected`` lines; return how long that took."""
        t = time.perf_counter()
        end = t + self.opts.drain_timeout
        while self.outbox_lines() < expected and time.perf_counter() < end:
            time.sleep(0.02)
        return time.perf_counter() - t

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def measurements(self) -> tuple[int, list[float]]:
        """(messages stored, commit-to-submit seconds per submitted message)."""
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            stored = conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
            rows = conn.execute(
                "SELECT e.at - m.created_at FROM messages m JOIN events e "
                "ON e.message_id = m.id AND e.state = 'submitted'"
            ).fetchall()
        return stored, [r[0] for r in rows]

    def cleanup(self) -> None:
        if not self.opts.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


class Bare:
    """``bench/bare_smtpd.py``: aiosmtpd answering 250 to everything."""

    def __init__(self, opts: argparse.Namespace) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "bare_smtpd.py"), f"127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL,
        )
        wait_until(lambda: tcp_open(self.port), 20, "bare aiosmtpd")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)


class Sink:
    """Postfix's ``smtp-sink``: the upper bound of what smtp-source can push here."""

    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [self.opts.smtp_sink, f"127.0.0.1:{self.port}", "256"]
        if os.geteuid() == 0:
            cmd[1:1] = ["-u", "nobody"]  # smtp-sink refuses to run as root
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        wait_until(lambda: tcp_open(self.port), 20, "smtp-sink")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, grace=5)


# --- load generators ---------------------------------------------------------------------


def smtp_source(opts: argparse.Namespace, load: str, port: int) -> tuple[bool, float, str]:
    """Run smtp-source to completion; (succeeded, wall seconds, stderr)."""
    cmd = [
        opts.smtp_source,
        *LOADS[load][0],
        "-m",
        str(opts.messages),
        "-f",
        SENDER,
        "-t",
        RCPT,
        "-F",
        str(opts.mail),
        f"127.0.0.1:{port}",
    ]
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, timeout=opts.run_timeout)
    seconds = time.perf_counter() - t
    return done.returncode == 0, seconds, done.stderr.decode(errors="replace").strip()


def paced(opts: argparse.Namespace, rate: float, port: int) -> dict[str, float]:
    count = max(200, round(rate * opts.half_seconds))
    cmd = [
        sys.executable,
        str(HERE / "paced_client.py"),
        f"127.0.0.1:{port}",
        "--rate",
        f"{rate:.1f}",
        "--count",
        str(count),
        "--sessions",
        str(opts.half_sessions),
        "--mail",
        str(opts.mail),
        "--from",
        SENDER,
        "--to",
        RCPT,
    ]
    done = subprocess.run(cmd, capture_output=True, timeout=opts.run_timeout, check=True)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


# --- one run per server -------------------------------------------------------------------


def run_gateway(opts: argparse.Namespace, load: str, rnd: int, rate: float = 0.0) -> Run:
    gw = Gateway(opts)
    gw.start()
    try:
        if load == "half":
            p = paced(opts, rate, gw.port)
            ok, sent, seconds, note = True, int(p["sent"]), p["elapsed"], _paced_note(p)
        else:
            ok, seconds, note = smtp_source(opts, load, gw.port)
            sent = opts.messages if ok else 0
        drain = gw.drain(sent)
    finally:
        gw.stop()
    stored, lat = gw.measurements()
    run = Run(
        "gateway",
        load,
        rnd,
        sent,
        seconds,
        sent / seconds,
        ok,
        note,
        stored,
        gw.outbox_lines(),
        drain,
        lat,
    )
    _check(run, gw.dir)
    gw.cleanup()
    return run


def _paced_note(p: dict[str, float]) -> str:
    return (
        f"offered {p['offered_rate']:.0f}/s achieved {p['achieved_rate']:.0f}/s; "
        f"send lateness p99 {p['late_p99'] * 1e3:.1f} ms; "
        f"client DATA->250 p50 {p['data_250_p50'] * 1e3:.2f} ms "
        f"p99 {p['data_250_p99'] * 1e3:.2f} ms"
    )


def _check(run: Run, where: Path) -> None:
    """Every accepted message stored once and written once to the outbox, or say so loudly."""
    if run.ok and run.stored == run.sent == run.outbox == len(run.latencies):
        return
    run.ok = False
    msg = (
        f"sent {run.sent}, stored {run.stored}, outbox {run.outbox}, "
        f"submitted {len(run.latencies)} ({where})"
    )
    run.note = f"MISMATCH: {msg}; {run.note}"
    print(
        f"\n!!!!! CORRECTNESS MISMATCH in gateway {run.load} round {run.round}: {msg}\n",
        file=sys.stderr,
    )


def run_other(opts: argparse.Namespace, server: str, load: str, rnd: int) -> Run:
    srv = Bare(opts) if server == "bare" else Sink(opts)
    srv.start()
    try:
        ok, seconds, note = smtp_source(opts, load, srv.port)
    finally:
        srv.stop()
    sent = opts.messages if ok else 0
    return Run(server, load, rnd, sent, seconds, sent / seconds, ok, note)


# --- the whole benchmark ------------------------------------------------------------------


def bench(opts: argparse.Namespace) -> list[Run]:
    runs: list[Run] = []
    for rnd in range(1, opts.rounds + 1):
        for load in opts.loads:
            for server in SERVERS:  # interleaved: A B C A B C ...
                run = (
                    run_gateway(opts, load, rnd)
                    if server == "gateway"
                    else run_other(opts, server, load, rnd)
                )
                runs.append(run)
                _progress(run)
    half = 0.5 * max(median_rate(runs, "gateway", load) for load in opts.loads)
    for rnd in range(1, opts.half_runs + 1):
        run = run_gateway(opts, "half", rnd, rate=half)
        runs.append(run)
        _progress(run)
    return runs


def _progress(run: Run) -> None:
    if not run.ok:
        print(f"  ! {run.server} {run.load} round {run.round} failed: {run.note}", file=sys.stderr)
    print(f"  round {run.round} {run.load:5} {run.server:8} {run.rate:8.0f} msg/s", file=sys.stderr)


def median_rate(runs: list[Run], server: str, load: str) -> float:
    rates = [r.rate for r in runs if r.server == server and r.load == load and r.ok]
    return statistics.median(rates) if rates else 0.0


def percentile_ms(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return 1e3 * s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def summarize(opts: argparse.Namespace, runs: list[Run]) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for load in opts.loads:
        gw, bare, sink = (median_rate(runs, s, load) for s in SERVERS)
        lat = [x for r in runs if r.server == "gateway" and r.load == load for x in r.latencies]
        drains = [r.drain_seconds or 0.0 for r in runs if r.server == "gateway" and r.load == load]
        rows[load] = {
            "gateway": gw,
            "bare": bare,
            "sink": sink,
            "gateway_over_bare": gw / bare if bare else None,
            "gateway_over_sink": gw / sink if sink else None,
            "p50_ms": percentile_ms(lat, 50),
            "p99_ms": percentile_ms(lat, 99),
            "max_ms": percentile_ms(lat, 100),
            "drain_s_median": statistics.median(drains),
        }
    half_runs = [r for r in runs if r.load == "half"]
    half_lat = [x for r in half_runs for x in r.latencies]
    half = {
        "rate": statistics.median([r.rate for r in half_runs]) if half_runs else None,
        "p50_ms": percentile_ms(half_lat, 50),
        "p99_ms": percentile_ms(half_lat, 99),
        "notes": [r.note for r in half_runs],
    }
    sat_p99 = max(rows[load]["p99_ms"] for load in opts.loads)  # the worst saturated load
    checks = {
        "ratio_bare_s10d": rows.get("s10d", {}).get("gateway_over_bare"),
        "half_p50_ms": half["p50_ms"],
        "half_p99_ms": half["p99_ms"],
        "sat_p99_ms": sat_p99,
    }
    verdict = {k: _verdict(k, v) for k, v in checks.items()}
    return {
        "rows": rows,
        "half": half,
        "checks": checks,
        "verdict": verdict,
        "correct": all(r.ok for r in runs),
        "version": source_version(),
    }


def _verdict(key: str, value: object) -> str:
    if not isinstance(value, float) or value != value:  # missing or NaN
        return "N/A"
    good = value >= TARGETS[key] if key.startswith("ratio") else value <= TARGETS[key]
    return "PASS" if good else "MISS"


def source_version() -> str:
    """The commit measured, and whether the work tree differed from it (read-only git)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(HERE), "status", "--porcelain", "--", "mailsms"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}{' + uncommitted changes in mailsms/' if dirty else ''}"


def print_table(opts: argparse.Namespace, s: dict[str, Any]) -> None:
    rows, half, checks, verdict = s["rows"], s["half"], s["checks"], s["verdict"]
    print(
        f"\nmailsms SMTP intake: {opts.messages} mails x {opts.rounds} rounds per load, "
        f"median msg/s; {os.cpu_count()} CPUs; mail {opts.mail.name}; "
        f"gateway log {opts.log_level}, carrier concurrency {opts.concurrency}; "
        f"code {s['version']}"
    )
    print(
        f"{'load (smtp-source)':48} {'gateway':>8} {'bare':>8} {'sink':>8} {'gw/bare':>8} "
        f"{'gw/sink':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'drain s':>8}"
    )
    for load in opts.loads:
        r = rows[load]
        print(
            f"{LOADS[load][1]:48} {r['gateway']:8.0f} {r['bare']:8.0f} {r['sink']:8.0f} "
            f"{_pc(r['gateway_over_bare']):>8} {_pc(r['gateway_over_sink']):>8} "
            f"{r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['max_ms']:8.1f} "
            f"{r['drain_s_median']:8.2f}"
        )
    label = f"paced, {opts.half_sessions} sessions (half of max)"
    if half["rate"] is not None:
        print(
            f"{label:48} {half['rate']:8.0f} {'':>8} {'':>8} {'':>8} {'':>8} "
            f"{half['p50_ms']:8.1f} {half['p99_ms']:8.1f}"
        )
    for note in half["notes"]:
        print(f"    half-rate run: {note}")
    print(
        "latency = commit-to-submit (events.at 'submitted' - messages.created_at), "
        "pooled over rounds; drain = time after the last 250 until the outbox was complete"
    )
    print("targets:")
    print(
        f"  gateway >= 40% of bare aiosmtpd at -s 10 -d : {_pc(checks['ratio_bare_s10d']):>7}  "
        f"{verdict['ratio_bare_s10d']}"
    )
    print(
        f"  half rate p50 <= 5 ms                       : {checks['half_p50_ms']:7.1f}  "
        f"{verdict['half_p50_ms']}"
    )
    print(
        f"  half rate p99 <= 50 ms                      : {checks['half_p99_ms']:7.1f}  "
        f"{verdict['half_p99_ms']}"
    )
    print(
        f"  saturation p99 <= 250 ms (worst load)       : {checks['sat_p99_ms']:7.1f}  "
        f"{verdict['sat_p99_ms']}"
    )
    print(
        f"correctness (stored == sent == outbox lines, every run): "
        f"{'OK' if s['correct'] else 'MISMATCH - see above'}"
    )


def _pc(x: object) -> str:
    return f"{100 * x:.0f}%" if isinstance(x, float) else "-"


def _no_nan(x: object) -> object:
    """NaN (no samples) as null: JSON has no NaN."""
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: _no_nan(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_no_nan(v) for v in x]
    return x


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", "-m", type=int, default=2000, help="mails per smtp-source run")
    p.add_argument("--rounds", "-r", type=int, default=3, help="interleaved rounds")
    p.add_argument(
        "--loads", default="s1d,s10d,s50", help=f"comma-separated subset of {','.join(LOADS)}"
    )
    p.add_argument("--half-runs", type=int, default=3, help="paced half-rate gateway runs")
    p.add_argument("--half-seconds", type=float, default=8.0, help="length of a paced run")
    p.add_argument("--half-sessions", type=int, default=10, help="paced client connections")
    p.add_argument("--concurrency", type=int, default=16, help="file carrier concurrency")
    p.add_argument("--log-level", default="info", help="gateway [log] level (shipped: info)")
    p.add_argument("--mail", type=Path, default=HERE / "mail.eml")
    p.add_argument("--smtp-source", default=shutil.which("smtp-source") or "/usr/sbin/smtp-source")
    p.add_argument("--smtp-sink", default=shutil.which("smtp-sink") or "/usr/sbin/smtp-sink")
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the outbox after the load ends",
    )
    p.add_argument("--run-timeout", type=float, default=300.0)
    p.add_argument("--keep", action="store_true", help="keep the gateway temp dirs")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    opts = p.parse_args(argv)
    opts.loads = [x for x in opts.loads.split(",") if x]
    unknown = set(opts.loads) - set(LOADS)
    if unknown:
        p.error(f"unknown loads {sorted(unknown)}")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    runs = bench(opts)
    summary = summarize(opts, runs)
    if opts.json:
        out = {
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(opts).items()},
            "cpus": os.cpu_count(),
            "summary": summary,
            "runs": [{**asdict(r), "latencies": None} for r in runs],
        }
        print(json.dumps(_no_nan(out), indent=2))
    else:
        print_table(opts, summary)
    return 0 if summary["correct"] else 1


if __name__ == "__main__":
    sys.exit(main())
