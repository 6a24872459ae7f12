"""Our DKIM signatures checked by OpenDKIM (``opendkim -t``), an implementation other than
the dkimpy that made them, so a misunderstanding we share with dkimpy cannot pass.

OpenDKIM reads the public keys from a ``TestPublicKeys`` file instead of DNS (see
/work/shared/PEERS.md "OpenDKIM"). It exits 0 either way; the verdict is in its output.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from mailsms.mail.render import InboundMail, Thread, render_inbound
from mailsms.mail.sign import Algorithm, DkimSigner, generate_key
from mailsms.mail.templates import environment
from tests.conftest import need_peer

pytestmark = pytest.mark.peers

DOMAIN = "sms.example.test"
MAIL = InboundMail(
    inbound_id="7f3a", phone="+447700900123", our_number="+447700900999", domain=DOMAIN,
    to="alice@example.com", text="Да, в 13:00 😀 <script>x</script>\nSee you",
    received_at=1764057600.0, timezone="Europe/London", segments=2, incomplete=True, carrier="smpp",
    thread=Thread("<orig.1@mail.example.com>", ("<root@example.org>",), "Обед в пятницу?"),
    last_outbound="Lunch on Friday?",
)  # fmt: skip


class OpenDkim:
    """``opendkim -t`` in verify mode against a key file we write."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.keys = workdir / "keys"
        self.keys.write_text("")
        self.conf = workdir / "opendkim.conf"
        self.conf.write_text(f"Mode v\nSyslog no\nLogResults yes\nTestPublicKeys {self.keys}\n")

    def publish(self, selector: str, record: str) -> None:
        with self.keys.open("a") as keys:
            keys.write(f"{selector}._domainkey.{DOMAIN} {record}\n")

    def verify(self, message: bytes, name: str) -> str:
        path = self.workdir / f"{name}.eml"
        path.write_bytes(message)
        done = subprocess.run(
            ["opendkim", "-x", str(self.conf), "-t", str(path)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        return done.stdout + done.stderr


@pytest.fixture
def opendkim(tmp_path: Path) -> OpenDkim:
    need_peer(shutil.which("opendkim") is not None, "opendkim is not installed (apt opendkim)")
    return OpenDkim(tmp_path)


def signed_by(opendkim: OpenDkim, *algorithms: Algorithm) -> bytes:
    """The rendered mail signed by one signer holding a fresh key for each algorithm."""
    keys: dict[str, bytes] = {}
    selectors: dict[str, str] = {}
    for algorithm in algorithms:
        pem, record = generate_key(algorithm)
        selectors[algorithm] = algorithm.split("-")[0]
        opendkim.publish(selectors[algorithm], record)
        keys[algorithm] = pem
    return DkimSigner(DOMAIN, selectors, keys).sign(render_inbound(MAIL, environment()))


TAMPER: dict[str, Callable[[bytes], bytes]] = {
    "subject": lambda m: m.replace(b"Subject: Re:", b"Subject: Fw:"),
    "body": lambda m: m.replace(b"--\r\n", b"--\r\nX\r\n", 1),
    "from": lambda m: m.replace(b"\r\n\r\n", b"\r\nFrom: boss@example.com\r\n\r\n", 1),
}


@pytest.mark.parametrize(
    ("algorithm", "selector", "detail"),
    [("rsa-sha256", "rsa", "2048-bit key"), ("ed25519-sha256", "ed25519", "")],
)
def test_opendkim_passes_our_signature(
    opendkim: OpenDkim, algorithm: Algorithm, selector: str, detail: str
) -> None:
    signed = signed_by(opendkim, algorithm)
    out = opendkim.verify(signed, algorithm)
    assert f"s={selector}, d={DOMAIN}" in out and detail in out
    assert "verification" in out and "succeeded" in out, out
    for name, tamper in TAMPER.items():
        bad = tamper(signed)
        assert bad != signed
        out = opendkim.verify(bad, f"{algorithm}-{name}")
        assert "failed" in out and "succeeded" not in out, (name, out)


@pytest.mark.parametrize(
    "order", [("rsa-sha256", "ed25519-sha256"), ("ed25519-sha256", "rsa-sha256")]
)
def test_opendkim_with_both_signatures(opendkim: OpenDkim, order: tuple[Algorithm, ...]) -> None:
    # opendkim -t reports the topmost signature only; the two orders cover both.
    signed = signed_by(opendkim, *order)
    out = opendkim.verify(signed, "both")
    assert f"s={order[0].split('-')[0]}, d={DOMAIN}" in out, out
    assert "succeeded" in out and "failed" not in out, out
    out = opendkim.verify(TAMPER["body"](signed), "both-body")
    assert "succeeded" not in out, out
