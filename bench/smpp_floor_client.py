"""The floor for bench/smpp.py's CPU figure: the least a windowed asyncio SMPP client can do.

Like the throwaway client the issue's 50 us target was set beside: one asyncio.Protocol,
a bind_transceiver, then ``--window`` submit_sm in flight, each response answered by the
next submit in the same loop turn (one write per chunk of responses). The submit_sm body
is encoded once; per PDU there is only a header to pack, a response header to unpack and a
counter. No timeouts, no receipts, no errors handled: it measures what the loop, the socket
and the SMSC cost, which no real client avoids. Our client's CPU per PDU minus this one's,
against the same SMSC in the same run, is what our client adds.

Prints one JSON line: submits, seconds, submits/s, CPU us per PDU (and the kernel's share).
Run by bench/smpp.py; by hand: ``.venv/bin/python bench/smpp_floor_client.py --port P``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import struct
import time
from typing import cast

TEXT = b"Disk /var on db1 is 91% full; rotate logs or grow the volume. ticket OPS-4711"
_HEADER = struct.Struct(">IIII")
# service_type, source ton/npi/addr, dest ton/npi/addr, esm_class, protocol_id, priority,
# schedule, validity, registered_delivery, replace, data_coding, sm_default_msg_id, sm.
_BODY = (
    b"\x00" + b"\x05\x00ACME\x00" + b"\x01\x01447700900123\x00" + b"\x00\x00\x00"
    b"\x00" + b"\x00" + b"\x01\x00\x00\x00" + bytes([len(TEXT)]) + TEXT
)
_BIND = b"bench\x00secret\x00\x00\x34\x00\x00\x00"


class Floor(asyncio.Protocol):
    def __init__(self, n: int, window: int, done: asyncio.Future[None]) -> None:
        self.left, self.answered, self.n, self.window, self.done = n, 0, n, window, done
        self.seq = 1
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.write(_HEADER.pack(16 + len(_BIND), 0x00000009, 0, 1) + _BIND)

    def submits(self, count: int) -> bytes:
        out = []
        for _ in range(count):
            self.seq += 1
            out.append(_HEADER.pack(16 + len(_BODY), 0x00000004, 0, self.seq) + _BODY)
        self.left -= count
        return b"".join(out)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        at, end, answered = 0, len(buf), 0
        while end - at >= 16:
            length, command, status, _ = _HEADER.unpack_from(buf, at)
            if end - at < length:
                break
            at += length
            if command == 0x80000004:
                answered += 1
            elif command == 0x80000009:
                assert status == 0, f"bind refused: {status:#x}"
                answered -= self.window  # the first window's worth, sent now
        self.buf = buf[at:]
        self.answered += max(answered, 0)
        more = min(abs(answered), self.left)
        if more:
            assert self.transport is not None
            self.transport.write(self.submits(more))
        if self.answered >= self.n and not self.done.done():
            self.done.set_result(None)


async def run(port: int, n: int, window: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    transport, _ = await loop.create_connection(lambda: Floor(n, window, done), "127.0.0.1", port)
    before, cpu, start = (
        resource.getrusage(resource.RUSAGE_SELF),
        time.process_time(),
        time.perf_counter(),
    )
    await done
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_SELF)
    transport.close()
    return {
        "submits": n,
        "seconds": seconds,
        "rate": n / seconds,
        "cpu_us": cpu / n * 1e6,
        "sys_us": (after.ru_stime - before.ru_stime) / n * 1e6,
    }


def main() -> None:
    import uvloop

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("-n", type=int, default=4000)
    parser.add_argument("--window", type=int, default=10)
    args = parser.parse_args()
    print(json.dumps(uvloop.run(run(args.port, args.n, args.window))), flush=True)


if __name__ == "__main__":
    main()
