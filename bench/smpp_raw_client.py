"""The reference for bench/smpp.py: smpp34's own client (Rust core) doing raw submit_sm.

Binds one transceiver to the SMSC, keeps ``--window`` submit_sm in flight (one task per
window slot, each submitting again as soon as its response is back) until ``-n`` are
answered, and prints one JSON line: submits, seconds, submits/s, CPU seconds of this
process. The text is the one the gateway run sends, so both put the same PDUs on the wire.

Run by bench/smpp.py; by hand: ``.venv/bin/python bench/smpp_raw_client.py --port P``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

import smpp34

TEXT = "Disk /var on db1 is 91% full; rotate logs or grow the volume. ticket OPS-4711"


async def run(port: int, n: int, window: int) -> dict[str, float]:
    client = smpp34.Client(
        "127.0.0.1", port, "bench", "secret", bind_type="TRX", window_size=window
    )
    smsc = await client.connect()
    payload = TEXT.encode("ascii")
    left = n
    refused = 0

    async def worker() -> None:
        nonlocal left, refused
        while left > 0:
            left -= 1
            resp = await smsc.submit_sm(
                "447700900123",
                payload,
                source_addr="ACME",
                source_addr_ton=5,
                dest_addr_ton=1,
                dest_addr_npi=1,
                registered_delivery=1,
            )
            refused += not resp.is_success

    cpu, start = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(window)))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    result = {"submits": n, "seconds": seconds, "rate": n / seconds, "cpu_us": cpu / n * 1e6}
    # Printed before the teardown: smpp34 1.5.0's client sometimes segfaults while the
    # interpreter shuts down (about 1 run in 10 here), after the work is done.
    print(json.dumps({**result, "refused": refused}), flush=True)
    await smsc.unbind()
    await client.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--window", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(run(args.port, args.n, args.window))
    sys.stdout.flush()
    os._exit(0)  # skip the interpreter shutdown that smpp34's client can crash in


if __name__ == "__main__":
    main()
