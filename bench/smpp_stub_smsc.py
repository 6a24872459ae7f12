"""An instant SMPP stub SMSC for bench/smpp.py: the fast peer the issue's target was set against.

smpp34's server answers each submit_sm with a write of its own, and is slower than the
clients it serves, so a client facing it wakes once per response: its CPU per PDU is then
mostly the cost of a loop iteration. A fast SMSC (an aggregator's, or this stub) answers
every PDU of a chunk in one write, and a client's own cost per PDU shows. Both are measured.

Answers bind_transmitter/receiver/transceiver, submit_sm (a fresh message id each),
enquire_link and unbind; anything else gets generic_nack. Hand-written rather than built on
smpp34 or our codec on purpose: it must cost the least per PDU, and share no code with the
client under test. Prints one JSON line ``{"event": "listening", "port": P}``, then serves
until SIGTERM.

Run: ``.venv/bin/python bench/smpp_stub_smsc.py --port 0``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import struct

_HEADER = struct.Struct(">IIII")
_BINDS = {0x00000001, 0x00000002, 0x00000009}
_SUBMIT_SM, _ENQUIRE_LINK, _UNBIND, _GENERIC_NACK = 0x00000004, 0x00000015, 0x00000006, 0x80000000


class Stub(asyncio.Protocol):
    counter = 0

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        out: list[bytes] = []
        at, end, closing = 0, len(buf), False
        while end - at >= 16:
            length, command, _, seq = _HEADER.unpack_from(buf, at)
            if length < 16 or length > 65536:
                closing = True
                break
            if end - at < length:
                break
            at += length
            if command == _SUBMIT_SM:
                Stub.counter += 1
                body = b"%08X\x00" % Stub.counter
                out.append(_HEADER.pack(16 + len(body), command | _GENERIC_NACK, 0, seq) + body)
            elif command in _BINDS:
                body = b"STUB\x00"
                out.append(_HEADER.pack(16 + len(body), command | _GENERIC_NACK, 0, seq) + body)
            elif command in (_ENQUIRE_LINK, _UNBIND):
                out.append(_HEADER.pack(16, command | _GENERIC_NACK, 0, seq))
                closing = closing or command == _UNBIND
            elif not command & _GENERIC_NACK:
                out.append(_HEADER.pack(16, _GENERIC_NACK, 3, seq))
        self.buf = buf[at:]
        assert self.transport is not None
        if out:
            self.transport.write(b"".join(out))
        if closing:
            self.transport.close()


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Stub, "127.0.0.1", port)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"event": "listening", "port": port}), flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    import uvloop

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.port))


if __name__ == "__main__":
    main()
