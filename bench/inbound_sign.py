"""DKIM signing only: signatures per second for one rendered SMS-to-mail message.

    .venv/bin/python bench/inbound_sign.py              # table, about 20 s
    .venv/bin/python bench/inbound_sign.py --json       # the same, machine-readable
    .venv/bin/python bench/inbound_sign.py --seconds 1 --rounds 3

Three signers over the same message (render_inbound's output, about 1.6 kB):

- **dkimpy RSA**: ``dkim.sign`` with a 2048-bit key that no DkimSigner loaded, so dkimpy's
  own pure-Python RSA arithmetic runs (the hook in mailsms.mail.sign passes such keys on);
- **OpenSSL RSA**: ``DkimSigner`` with ``rsa-sha256``: dkimpy canonicalises and hashes,
  OpenSSL (``cryptography``) makes the RSA signature;
- **ed25519**: ``DkimSigner`` with ``ed25519-sha256`` (dkimpy with PyNaCl).

Rounds are interleaved (each round runs every signer once) so that noise from other work on
the machine hits all of them alike; the figure is the median over rounds. One thread: the
figures are per core. Every signer's output is verified with dkimpy once before timing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dkim  # type: ignore[import-untyped]

from mailsms.mail.render import InboundMail, Thread, render_inbound
from mailsms.mail.sign import CANONICALIZE, SIGNED_HEADERS, DkimSigner, generate_key
from mailsms.mail.templates import environment

DOMAIN = "sms.example.test"
MAIL = InboundMail(
    inbound_id="01JDX5T8", phone="+447700900123", our_number="+447700900999", domain=DOMAIN,
    to="alice@example.com", text="Sure, 1pm works. See you at the usual place 😀",
    received_at=1764057600.0, timezone="Europe/London", segments=1, incomplete=False,
    carrier="smpp", thread=Thread("<orig.1@mail.example.com>", (), "Lunch on Friday?"),
    last_outbound="Lunch on Friday? Say 1pm?",
)  # fmt: skip


def signers(message: bytes) -> dict[str, tuple[Callable[[], bytes], str, str]]:
    """name -> (sign the message, selector, TXT record)."""
    plain_pem, plain_txt = generate_key("rsa-sha256")
    rsa_pem, rsa_txt = generate_key("rsa-sha256")
    ed_pem, ed_txt = generate_key("ed25519-sha256")
    include = [h.encode() for h in SIGNED_HEADERS]
    openssl = DkimSigner(DOMAIN, "rsa", {"rsa-sha256": rsa_pem})
    ed = DkimSigner(DOMAIN, "ed", {"ed25519-sha256": ed_pem})

    def pure() -> bytes:
        header: bytes = dkim.sign(
            message, b"plain", DOMAIN.encode(), plain_pem,
            canonicalize=CANONICALIZE, include_headers=include,
        )  # fmt: skip
        return header + message

    return {
        "dkimpy RSA-2048": (pure, "plain", plain_txt),
        "OpenSSL RSA-2048": (lambda: openssl.sign(message), "rsa", rsa_txt),
        "ed25519": (lambda: ed.sign(message), "ed", ed_txt),
    }


def check(sign: Callable[[], bytes], selector: str, record: str) -> None:
    name = f"{selector}._domainkey.{DOMAIN}.".encode()
    ok = dkim.verify(sign(), dnsfunc=lambda n, timeout=5: record.encode() if n == name else None)
    if not ok:
        raise SystemExit(f"signature by {selector} does not verify")


def rate(sign: Callable[[], bytes], seconds: float) -> float:
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while (now := time.perf_counter()) < deadline or count < 3:
        sign()
        count += 1
    return count / (now - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per signer per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    message = render_inbound(MAIL, environment())
    table = signers(message)
    for sign, selector, record in table.values():
        check(sign, selector, record)
    rates: dict[str, list[float]] = {name: [] for name in table}
    for _ in range(args.rounds):
        for name, (sign, _selector, _record) in table.items():
            rates[name].append(rate(sign, args.seconds))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    base = medians["dkimpy RSA-2048"]
    if args.json:
        result = {"message_bytes": len(message), "signatures_per_second": medians}
        print(json.dumps(result, indent=2))
        return
    print(f"DKIM signing, {len(message)}-byte message, 1 thread, median of {args.rounds} rounds")
    print(f"{'signer':<18} {'sig/s':>10} {'ms/sig':>8} {'vs dkimpy RSA':>14}")
    for name, value in medians.items():
        print(f"{name:<18} {value:>10,.0f} {1000 / value:>8.3f} {value / base:>13.1f}x")


if __name__ == "__main__":
    main()
