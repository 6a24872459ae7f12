"""SMPP submit benchmark: the whole gateway against smpp34's own client, same SMSC, same run.

One smpp34 server (Rust, ``bench/smpp.py smsc``, accepting every submit_sm) is the SMSC for
the whole run. Rounds are interleaved so that machine noise hits every contender alike; in
each round, each contender is a fresh child process:

* ``gateway w=W``: ``mailsms.app.Gateway`` in-process (SQLite store in a temporary
  directory, log level info to /dev/null, uvloop as ``mailsms serve`` uses), one smpp
  carrier with ``window = W`` and ``concurrency = W``. ``-n`` single-part messages are
  queued through ``gw.intake.accept_text`` in batches of 50 recipients; the figure is
  messages / (last submit_sm_resp - first accept), so it includes intake, store, claim,
  dispatcher and the SMPP client. The store is checked afterwards: every message submitted.
* ``raw w=10``: ``bench/smpp_raw_client.py``, smpp34's client keeping 10 submit_sm in
  flight, the same text on the wire.
* ``carrier w=10`` (CPU): ``SmppCarrier.submit`` driven directly by 10 tasks, no gateway;
  ``time.process_time()`` over the run / PDUs = CPU per PDU in our client.
* ``floor w=10`` (CPU): ``bench/smpp_floor_client.py``, the least a windowed asyncio client
  can do per PDU (the submit_sm encoded once, no bookkeeping): the same-run baseline for
  the CPU figure. Ours minus the floor is what our client's own code costs per PDU.
* ``carrier w=10 stub`` and ``floor w=10 stub``: the same two against
  ``bench/smpp_stub_smsc.py``, an instant SMSC that answers a chunk of PDUs in one write
  (the issue set its target beside a throwaway client against such a stub). smpp34's
  server answers each PDU in a write of its own and is slower than the clients, so against
  it every PDU costs the client a whole loop iteration and a wake-up.

Run: ``.venv/bin/python bench/smpp.py`` (about a minute on 2 cores); ``--help`` for options.
Targets, printed PASS/MISS: gateway at window 10 >= 40% of raw submits/s; <= 50 us CPU per
PDU in our client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

TEXT = "Disk /var on db1 is 91% full; rotate logs or grow the volume. ticket OPS-4711"
NUMBER = "+447700900123"
TARGET_RATIO = 0.40
TARGET_CPU_US = 50.0


# ---- the SMSC child ----------------------------------------------------------------------


async def smsc(port: int) -> None:
    """smpp34's server, accepting every submit_sm with a fresh id; no per-PDU output."""
    import smpp34

    server = smpp34.Server(host="127.0.0.1", port=port, system_id="BENCH")
    await server.start()
    print(json.dumps({"event": "listening", "port": port}), flush=True)
    counter = 0
    while True:
        ev = await server.next()
        if isinstance(ev, smpp34.SubmitSmEvent):
            counter += 1
            ev.accept(f"{counter:08X}")


# ---- the contenders ----------------------------------------------------------------------


def carrier_settings(port: int, window: int) -> dict[str, Any]:
    return {
        "name": "smsc",
        "type": "smpp",
        "host": "127.0.0.1",
        "port": port,
        "system_id": "bench",
        "password": "secret",
        "from": "ACME",
        "window": window,
        "concurrency": window,
    }


async def gateway(port: int, n: int, window: int) -> dict[str, Any]:
    """Queue ``n`` messages through the intake and time them until the last is submitted."""
    from mailsms import log
    from mailsms.app import Gateway
    from mailsms.carriers.base import OutboundSms, Submitted
    from mailsms.carriers.smpp import SmppCarrier, SmppSettings
    from mailsms.config import from_dict
    from mailsms.model import State

    class Counting(SmppCarrier):
        """Notes when the n-th submit came back, so the run ends on the SMSC's answer."""

        done = asyncio.Event()
        count = 0
        last = 0.0

        async def submit(self, sms: OutboundSms) -> Submitted:
            result = await super().submit(sms)
            Counting.count += 1
            if Counting.count == n:
                Counting.last = time.perf_counter()
                Counting.done.set()
            return result

    log.setup("info", "logfmt")  # the shipped level; stderr goes to /dev/null
    with tempfile.TemporaryDirectory(prefix="mailsms-smpp-bench-") as tmp:
        settings = from_dict(
            {
                "gateway": {"domain": "sms.example.test"},
                "smtp": {"listen": None},
                "http": {"listen": None},
                "store": {"url": f"sqlite:///{tmp}/mailsms.db"},
                "carrier": [carrier_settings(port, window)],
            },
            "<bench>",
        )
        carrier = Counting(SmppSettings.model_validate(carrier_settings(port, window)))
        gw = Gateway(settings, carriers={"smsc": carrier})
        await gw.start()

        async def count(state: State) -> int:
            return len(await gw.store.list_messages(state, n + 1))

        try:
            async with asyncio.timeout(10):
                await carrier.wait_health(lambda h: h.ok)
            rcpt = await gw.intake.check_recipient(f"{NUMBER}@sms.example.test", "b@x.test", 0)
            start = time.perf_counter()
            for i in range(0, n, 50):
                await gw.intake.accept_text(TEXT, "b@x.test", [rcpt] * min(50, n - i), "bench")
            async with asyncio.timeout(120):
                await Counting.done.wait()
            seconds = Counting.last - start
            submitted = 0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):  # until the last mark_submitted commits
                    while (submitted := await count(State.SUBMITTED)) < n:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(gw.dispatcher.progress(), 0.2)
        finally:
            await gw.stop()
    return {"submits": n, "seconds": seconds, "rate": n / seconds, "ok": submitted == n}


async def carrier_cpu(port: int, n: int, window: int) -> dict[str, Any]:
    """CPU per PDU of ``SmppCarrier.submit`` alone, ``window`` submits in flight."""
    from mailsms.carriers.base import OutboundSms
    from mailsms.carriers.smpp import SmppCarrier, SmppSettings
    from mailsms.sms.encode import SmsOptions, encode

    class NoHooks:
        async def inbound(self, sms: object) -> None:
            return None

        async def delivery_report(self, report: object) -> None:
            return None

    enc = encode(TEXT, SmsOptions(), reference=1)
    carrier = SmppCarrier(SmppSettings.model_validate(carrier_settings(port, window)))
    await carrier.start(NoHooks())
    async with asyncio.timeout(10):
        await carrier.wait_health(lambda h: h.ok)
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            sms = OutboundSms(
                f"m{left}", NUMBER, None, enc.text, enc.encoding, enc.parts, time.time() + 3600
            )
            await carrier.submit(sms)

    before, cpu, start = (
        resource.getrusage(resource.RUSAGE_SELF),
        time.process_time(),
        time.perf_counter(),
    )
    await asyncio.gather(*(worker() for _ in range(window)))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_SELF)
    await carrier.stop()
    return {
        "submits": n,
        "seconds": seconds,
        "rate": n / seconds,
        "cpu_us": cpu / n * 1e6,
        "sys_us": (after.ru_stime - before.ru_stime) / n * 1e6,
    }


def run_child(role: str, port: int, n: int, window: int) -> None:
    import logging

    import uvloop

    logging.getLogger().setLevel(logging.WARNING)
    fn = {"gateway": gateway, "carrier": carrier_cpu}[role]
    print(json.dumps(uvloop.run(fn(port, n, window))))


# ---- the orchestrator --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child(args: list[str], timeout: float = 180) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    last = out.stdout.strip().splitlines()[-1:] or [""]
    if out.returncode != 0 and not last[0].startswith("{"):
        raise SystemExit(f"{' '.join(args)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return dict(json.loads(last[0]))


def contenders(port: int, stub: int, n: int, windows: list[int]) -> dict[str, list[str]]:
    me = str(Path(__file__).resolve())
    raw = str(HERE / "smpp_raw_client.py")
    floor = str(HERE / "smpp_floor_client.py")
    runs = {
        f"gateway w={w}": [me, "gateway", f"--port={port}", f"-n={n}", f"-w={w}"] for w in windows
    }
    runs["raw w=10"] = [raw, f"--port={port}", f"-n={n}", "--window=10"]
    runs["carrier w=10"] = [me, "carrier", f"--port={port}", f"-n={n}", "-w=10"]
    runs["floor w=10"] = [floor, f"--port={port}", f"-n={n}", "--window=10"]
    # Against the instant stub runs take a fraction of the time: more PDUs per run.
    runs["carrier w=10 stub"] = [me, "carrier", f"--port={stub}", f"-n={n * 5}", "-w=10"]
    runs["floor w=10 stub"] = [floor, f"--port={stub}", f"-n={n * 5}", "--window=10"]
    return runs


def start_server(argv: list[str]) -> tuple[subprocess.Popen[str], int]:
    """A child SMSC that prints ``{"event": "listening", "port": P}`` first."""
    server = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert server.stdout is not None
    return server, int(json.loads(server.stdout.readline())["port"])


def stop_server(server: subprocess.Popen[str]) -> None:
    server.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(5)
    if server.poll() is None:
        server.kill()
        server.wait()


def bench(n: int, rounds: int, windows: list[int]) -> dict[str, Any]:
    results: dict[str, list[dict[str, Any]]] = {}
    with contextlib.ExitStack() as stack:
        server, port = start_server([__file__, "smsc", f"--port={free_port()}"])
        stack.callback(stop_server, server)
        stub, stub_port = start_server([str(HERE / "smpp_stub_smsc.py"), "--port=0"])
        stack.callback(stop_server, stub)
        runs = contenders(port, stub_port, n, windows)
        for r in range(rounds):
            for name, argv in runs.items():
                got = child(argv)
                results.setdefault(name, []).append(got)
                print(f"round {r + 1} {name:17} {got['rate']:8.0f}/s", file=sys.stderr)
    return {name: summary(runs) for name, runs in results.items()}


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"rate": statistics.median(r["rate"] for r in runs)}
    out["rates"] = [round(r["rate"]) for r in runs]
    if "cpu_us" in runs[0]:
        out["cpu_us"] = statistics.median(r["cpu_us"] for r in runs)
        if "sys_us" in runs[0]:
            out["sys_us"] = statistics.median(r["sys_us"] for r in runs)
    if "ok" in runs[0]:
        out["ok"] = all(r["ok"] for r in runs)
    return out


def report(figures: dict[str, Any], n: int, rounds: int) -> bool:
    raw = figures["raw w=10"]["rate"]
    head = f"SMPP submits: {n} single-part messages x {rounds} rounds, median submits/s"
    print(f"{head}; {os.cpu_count()} CPUs; smpp34 server as SMSC")
    print(f"{'contender':17} {'submits/s':>10} {'vs raw':>7}  rounds")
    for name, fig in figures.items():
        extra = ""
        if "cpu_us" in fig:
            extra = f"  {fig['cpu_us']:.1f} us CPU/PDU"
            if "sys_us" in fig:
                extra += f" ({fig['sys_us']:.1f} of it in the kernel)"
        ratio = "" if name.endswith("stub") else f"{fig['rate'] / raw:7.0%}"
        print(f"{name:17} {fig['rate']:10.0f} {ratio:>7}  {fig['rates']}{extra}")
    ratio = figures["gateway w=10"]["rate"] / raw
    pairs = zip(figures["gateway w=10"]["rates"], figures["raw w=10"]["rates"], strict=True)
    per_round = [g / r for g, r in pairs]
    spread = ", ".join(f"{x:.0%}" for x in per_round)
    print(f"gateway w=10 / raw w=10 per round: {spread}")
    cpu = figures["carrier w=10"]["cpu_us"]
    ok = all(f.get("ok", True) for f in figures.values())
    print("CPU us per PDU at window 10, ours / the floor (ours minus the floor):")
    for smsc, suffix in (("smpp34's server", ""), ("the instant stub", " stub")):
        mine, least = (figures[f"{c} w=10{suffix}"]["cpu_us"] for c in ("carrier", "floor"))
        print(f"  against {smsc:17}: {mine:5.1f} / {least:5.1f}  (+{mine - least:.1f})")
    print("targets:")
    passed = _mark(ratio >= TARGET_RATIO)
    print(f"  gateway w=10 >= {TARGET_RATIO:.0%} of raw : {ratio:6.0%}  {passed}")
    print(f"  CPU per PDU <= {TARGET_CPU_US:g} us      : {cpu:6.1f}  {_mark(cpu <= TARGET_CPU_US)}")
    print("    (against smpp34's server, the stricter of the two SMSCs)")
    print(
        f"correctness (every queued message submitted, every gateway run): {'OK' if ok else 'FAIL'}"
    )
    return ok


def _mark(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "role", nargs="?", default="bench", choices=["bench", "smsc", "gateway", "carrier"]
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("-n", type=int, default=4000, help="messages per run (default 4000)")
    parser.add_argument("-w", "--window", type=int, default=10, help="(child roles)")
    parser.add_argument("-r", "--rounds", type=int, default=5)
    parser.add_argument("--windows", default="1,10,50", help="gateway windows to run")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.role == "smsc":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(smsc(args.port))
        return 0
    if args.role in ("gateway", "carrier"):
        run_child(args.role, args.port, args.n, args.window)
        return 0
    windows = [int(w) for w in args.windows.split(",")]
    if 10 not in windows:
        windows.append(10)
    figures = bench(args.n, args.rounds, windows)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    return 0 if report(figures, args.n, args.rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
