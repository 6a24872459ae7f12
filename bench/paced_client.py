"""An open-loop, paced SMTP client for ``bench/intake.py`` (smtp-source has no rate flag).

Message ``i`` is due at ``start + i / rate``. ``--sessions`` persistent connections take
the next due message, wait for its time, and send one plain SMTP transaction (MAIL, RCPT,
DATA, no pipelining, as smtp-source does). Because the schedule is fixed in advance, a
slow server does not slow the offered load (no coordinated omission) unless every session
is busy; the report says how late the sends were, so a run that could not keep the pace
is visible.

Usage: ``python bench/paced_client.py HOST:PORT --rate R --count N --mail FILE --from A --to B``.
Prints one JSON object: sent, elapsed, offered and achieved rate, send lateness, and the
client-side DATA-to-250 times.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time


def dot_stuffed(path: str) -> bytes:
    """The file as smtp-source -F sends it: CRLF line ends, leading dots doubled, then ``.``."""
    with open(path, "rb") as f:
        lines = f.read().splitlines()
    body = b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n" for ln in lines)
    return body + b".\r\n"


class Session:
    """One SMTP connection that sends transactions on request."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Session:
        reader, writer = await asyncio.open_connection(host, port)
        self = cls(reader, writer)
        await self.expect(b"220")
        await self.command(b"EHLO paced.example.test\r\n", b"250")
        return self

    async def expect(self, code: bytes) -> None:
        while True:  # multi-line replies: "250-..." lines, then "250 ..."
            line = await self.reader.readline()
            if not line:
                raise ConnectionError("server closed the connection")
            if line[3:4] != b"-":
                break
        if not line.startswith(code):
            raise RuntimeError(f"expected {code!r}, got {line!r}")

    async def command(self, data: bytes, code: bytes) -> None:
        self.writer.write(data)
        await self.expect(code)

    async def send(self, sender: bytes, rcpt: bytes, body: bytes) -> float:
        """One transaction; returns the seconds from the end of DATA to the 250."""
        await self.command(b"MAIL FROM:<" + sender + b">\r\n", b"250")
        await self.command(b"RCPT TO:<" + rcpt + b">\r\n", b"250")
        await self.command(b"DATA\r\n", b"354")
        t = time.perf_counter()
        await self.command(body, b"250")
        return time.perf_counter() - t

    async def close(self) -> None:
        try:
            await self.command(b"QUIT\r\n", b"221")
        finally:
            self.writer.close()


async def run(args: argparse.Namespace) -> dict[str, object]:
    host, _, port = args.server.rpartition(":")
    body = dot_stuffed(args.mail)
    sessions = [await Session.open(host, int(port)) for _ in range(args.sessions)]
    next_index = iter(range(args.count))
    late: list[float] = []
    data_250: list[float] = []
    start = time.perf_counter() + 0.05

    async def worker(session: Session) -> None:
        for i in next_index:  # a shared iterator: each session takes the next due message
            due = start + i / args.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            late.append(max(0.0, time.perf_counter() - due))
            data_250.append(await session.send(args.sender.encode(), args.to.encode(), body))

    await asyncio.gather(*(worker(s) for s in sessions))
    elapsed = time.perf_counter() - start
    for s in sessions:
        await s.close()
    return {
        "sent": len(data_250),
        "elapsed": elapsed,
        "offered_rate": args.rate,
        "achieved_rate": len(data_250) / elapsed if elapsed > 0 else 0.0,
        "late_p50": _pct(late, 50),
        "late_p99": _pct(late, 99),
        "late_max": max(late, default=0.0),
        "data_250_p50": _pct(data_250, 50),
        "data_250_p99": _pct(data_250, 99),
    }


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("server", help="HOST:PORT")
    p.add_argument("--rate", type=float, required=True, help="messages per second to offer")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--sessions", type=int, default=10, help="persistent connections")
    p.add_argument("--mail", required=True, help="message file, as for smtp-source -F")
    p.add_argument("--from", dest="sender", required=True)
    p.add_argument("--to", required=True)
    args = p.parse_args()
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(args))
    else:
        result = uvloop.run(run(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
