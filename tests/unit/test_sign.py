"""DkimSigner: signatures that dkimpy verifies, the OpenSSL hook, key loading."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dkim  # type: ignore[import-untyped]
import dkim.crypto  # type: ignore[import-untyped]
import dkim.util  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from mailsms.errors import ConfigError
from mailsms.mail import sign as sign_module
from mailsms.mail.render import InboundMail, Thread, render_inbound
from mailsms.mail.sign import DkimSigner, generate_key, load_signer
from mailsms.mail.templates import environment

DOMAIN = "sms.example.test"
SELECTOR = "mailsms"
BOTH = {"rsa-sha256": "mailsms-rsa", "ed25519-sha256": "mailsms-ed25519"}


@pytest.fixture(scope="module")
def rsa_key() -> tuple[bytes, str]:
    return generate_key("rsa-sha256")


@pytest.fixture(scope="module")
def ed_key() -> tuple[bytes, str]:
    return generate_key("ed25519-sha256")


@pytest.fixture(scope="module")
def message() -> bytes:
    mail = InboundMail(
        inbound_id="42", phone="+447700900123", our_number="+447700900999", domain=DOMAIN,
        to="alice@example.com", text="Привет 😀 <b>yes</b>", received_at=1764057600.0,
        timezone="Europe/London", segments=1, incomplete=False, carrier="smpp",
        thread=Thread("<orig@example.com>", (), "Обед?"), last_outbound="Lunch?",
    )  # fmt: skip
    return render_inbound(mail, environment())


def dns(records: dict[str, str]) -> Callable[..., bytes | None]:
    """A dnsfunc for dkimpy: selector -> TXT record, under our domain only."""

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        for selector, record in records.items():
            if name.decode() == f"{selector}._domainkey.{DOMAIN}.":
                return record.encode()
        return None

    return lookup


def signatures(signed: bytes) -> list[dict[bytes, bytes]]:
    d = dkim.DKIM(signed)
    return [
        dkim.util.parse_tag_value(value)
        for name, value in d.headers
        if name.lower() == b"dkim-signature"
    ]


def verifies(signed: bytes, records: dict[str, str] | str, idx: int = 0) -> bool:
    """Signature number ``idx`` (0 = topmost) verifies; dkim.verify only checks the first."""
    try:
        if isinstance(records, str):
            records = {SELECTOR: records}
        return bool(dkim.DKIM(signed).verify(idx=idx, dnsfunc=dns(records)))
    except dkim.DKIMException:  # a body hash mismatch raises instead of returning False
        return False


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "ed25519-sha256"])
def test_signature_verifies_with_dkimpy(
    algorithm: str, rsa_key: tuple[bytes, str], ed_key: tuple[bytes, str], message: bytes
) -> None:
    pem, record = rsa_key if algorithm == "rsa-sha256" else ed_key
    signed = DkimSigner(DOMAIN, SELECTOR, {algorithm: pem}).sign(message)
    assert signed.endswith(message)
    assert verifies(signed, record)
    (tags,) = signatures(signed)
    assert tags[b"a"] == algorithm.encode()
    assert tags[b"d"] == DOMAIN.encode() and tags[b"s"] == SELECTOR.encode()
    assert tags[b"c"] == b"relaxed/relaxed"
    assert re.sub(rb"\s", b"", tags[b"h"]).split(b":") == [
        b"from", b"to", b"subject", b"date", b"message-id", b"in-reply-to", b"references",
        b"reply-to", b"mime-version", b"content-type", b"from",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "tamper",
    [
        lambda m: m.replace(b"Subject: Re:", b"Subject: RE:"),
        lambda m: m.replace(b"To: alice@example.com", b"To: mallory@example.com"),
        lambda m: m.replace(b"\r\n\r\n", b"\r\nFrom: ceo@example.com\r\n\r\n", 1),
        lambda m: m.replace(b"\r\n\r\n", b"\r\nIn-Reply-To: <other@x>\r\n\r\n", 1),
        lambda m: m[:-40] + m[-40:].replace(b"--", b"-x", 1),
        lambda m: m + b"extra\r\n",
    ],
    ids=["subject", "to", "second-from", "added-in-reply-to", "body", "appended"],
)
def test_tampered_copy_fails(
    tamper: Callable[[bytes], bytes],
    rsa_key: tuple[bytes, str],
    ed_key: tuple[bytes, str],
    message: bytes,
) -> None:
    signer = DkimSigner(DOMAIN, BOTH, {"rsa-sha256": rsa_key[0], "ed25519-sha256": ed_key[0]})
    records = published(rsa_key, ed_key)
    signed = signer.sign(message)
    assert verifies(signed, records, 0) and verifies(signed, records, 1)
    bad = tamper(signed)
    assert bad != signed
    assert not verifies(bad, records, 0)
    assert not verifies(bad, records, 1)


def test_one_signature_per_algorithm_first_configured_on_top(
    rsa_key: tuple[bytes, str], ed_key: tuple[bytes, str], message: bytes
) -> None:
    keys = {"ed25519-sha256": ed_key[0], "rsa-sha256": rsa_key[0]}
    signer = DkimSigner(DOMAIN, BOTH, keys)
    assert signer.algorithms == ("ed25519-sha256", "rsa-sha256")
    signed = signer.sign(message)
    tags = signatures(signed)
    assert [(t[b"a"], t[b"s"]) for t in tags] == [
        (b"ed25519-sha256", b"mailsms-ed25519"), (b"rsa-sha256", b"mailsms-rsa"),
    ]  # fmt: skip
    assert tags[0][b"bh"] == tags[1][b"bh"]  # both cover the same body
    assert signed.startswith(b"DKIM-Signature: ")
    records = published(rsa_key, ed_key)
    assert verifies(signed, records, 0) and verifies(signed, records, 1)
    assert dkim.verify(signed, dnsfunc=dns(records))


@pytest.mark.parametrize(
    ("selector", "error"),
    [
        ("mailsms", "need one selector each"),
        ({"rsa-sha256": "same", "ed25519-sha256": "same"}, "its own selector"),
        ({"rsa-sha256": "mailsms-rsa"}, "no selector for ed25519-sha256"),
        ({**BOTH, "rsa-sha256": "bad selector"}, "not a DNS label"),
    ],
)
def test_one_selector_per_algorithm(
    rsa_key: tuple[bytes, str],
    ed_key: tuple[bytes, str],
    selector: str | dict[str, str],
    error: str,
) -> None:
    # Two TXT records under one name: a verifier picks one (RFC 6376 3.6.2.2).
    with pytest.raises(ValueError, match=error):
        DkimSigner(DOMAIN, selector, {"rsa-sha256": rsa_key[0], "ed25519-sha256": ed_key[0]})


def published(rsa_key: tuple[bytes, str], ed_key: tuple[bytes, str]) -> dict[str, str]:
    return {BOTH["rsa-sha256"]: rsa_key[1], BOTH["ed25519-sha256"]: ed_key[1]}


def test_openssl_does_the_rsa_and_matches_pure_python(rsa_key: tuple[bytes, str]) -> None:
    signer = DkimSigner(DOMAIN, SELECTOR, {"rsa-sha256": rsa_key[0]})
    hook = dkim.RSASSA_PKCS1_v1_5_sign
    assert isinstance(hook, sign_module._OpenSslRsa)
    before = signer.openssl_signatures
    signer.sign(b"From: a@b\r\n\r\nx\r\n")
    assert signer.openssl_signatures == before + 1
    # RSASSA-PKCS1-v1_5 is deterministic: OpenSSL and dkimpy's arithmetic agree bit for bit.
    pk = dkim.crypto.parse_pem_private_key(rsa_key[0])
    digest = hashlib.sha256(b"the canonicalised headers")
    assert hook(digest, pk) == hook.original(digest, pk)
    # The PEM handed to dkimpy is parsed once, by dkimpy, and the reading reused.
    (pem,) = [pem for pem, parsed in hook.parsed.items() if parsed["modulus"] == pk["modulus"]]
    assert dkim.parse_pem_private_key(pem) == hook.original_parse(pem) == pk
    assert dkim.parse_pem_private_key(pem) is not hook.parsed[pem]  # a copy: dkimpy may keep it


def test_keys_we_did_not_load_take_dkimpys_path() -> None:
    hook = dkim.RSASSA_PKCS1_v1_5_sign
    assert isinstance(hook, sign_module._OpenSslRsa)
    calls: list[int] = []
    real = hook.original

    def spy(h: object, pk: dict[str, int]) -> bytes:
        calls.append(pk["modulus"])
        return real(h, pk)

    other = generate_key("rsa-sha256", bits=1024)[0]
    hook.original = spy
    try:
        dkim.sign(b"From: a@b\r\n\r\nx\r\n", b"s", b"example.org", other)
    finally:
        hook.original = real
    assert len(calls) == 1


def test_threads_share_one_signer(
    rsa_key: tuple[bytes, str], ed_key: tuple[bytes, str], message: bytes
) -> None:
    signer = DkimSigner(DOMAIN, BOTH, {"rsa-sha256": rsa_key[0], "ed25519-sha256": ed_key[0]})
    records = published(rsa_key, ed_key)
    bodies = [message.replace(b"Lunch?", f"Lunch {i}?".encode()) for i in range(64)]
    with ThreadPoolExecutor(8) as pool:
        signed = list(pool.map(signer.sign, bodies))
    for body, one in zip(bodies, signed, strict=True):
        assert one.endswith(body)
        assert verifies(one, records, 0) and verifies(one, records, 1)


def test_ed25519_raw_seed_as_dkimpy_writes_it(ed_key: tuple[bytes, str], message: bytes) -> None:
    key = serialization.load_pem_private_key(ed_key[0], password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    signer = DkimSigner(DOMAIN, SELECTOR, {"ed25519-sha256": base64.b64encode(seed) + b"\n"})
    assert verifies(signer.sign(message), ed_key[1])


def test_generated_records(rsa_key: tuple[bytes, str], ed_key: tuple[bytes, str]) -> None:
    assert rsa_key[0].startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")
    assert re.fullmatch(r"v=DKIM1; k=rsa; p=[A-Za-z0-9+/]+=*", rsa_key[1])
    assert ed_key[0].startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert ed_key[1].startswith("v=DKIM1; k=ed25519; p=")
    assert len(base64.b64decode(ed_key[1].split("p=")[1])) == 32


def test_generate_refuses_weak_rsa() -> None:
    with pytest.raises(ValueError, match="1024"):
        generate_key("rsa-sha256", bits=512)


@pytest.mark.parametrize(
    "keys",
    [{}, {"rsa-sha1": b""}, {"rsa-sha256": b"not a key"}, {"ed25519-sha256": b"AAAA"}],
)
def test_signer_refuses_bad_keys(keys: dict[str, bytes]) -> None:
    with pytest.raises(ValueError):
        DkimSigner(DOMAIN, SELECTOR, keys)


def test_signer_refuses_key_of_the_other_type(rsa_key: tuple[bytes, str]) -> None:
    with pytest.raises(ValueError, match="RSA"):
        DkimSigner(DOMAIN, SELECTOR, {"ed25519-sha256": rsa_key[0]})


# -- load_signer -------------------------------------------------------------------------


def test_load_one_file_with_both_keys(
    tmp_path: Path, rsa_key: tuple[bytes, str], ed_key: tuple[bytes, str], message: bytes
) -> None:
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(rsa_key[0] + ed_key[0])
    signer = load_signer(DOMAIN, BOTH, str(key_file), ["rsa-sha256", "ed25519-sha256"])
    signed = signer.sign(message)
    records = published(rsa_key, ed_key)
    assert verifies(signed, records, 0) and verifies(signed, records, 1)


def test_load_raw_ed25519_line(tmp_path: Path, ed_key: tuple[bytes, str]) -> None:
    key = serialization.load_pem_private_key(ed_key[0], password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    key_file = tmp_path / "ed.key"
    key_file.write_bytes(base64.b64encode(raw) + b"\n")
    assert load_signer(DOMAIN, SELECTOR, str(key_file), ["ed25519-sha256"]).algorithms == (
        "ed25519-sha256",
    )


@pytest.mark.parametrize(
    ("content", "algorithms", "message"),
    [
        (None, ["rsa-sha256"], "No such file"),
        (b"", ["rsa-sha256"], "no rsa-sha256 private key"),
        (b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
         ["rsa-sha256"], "unreadable key"),
        ("rsa", ["ed25519-sha256"], "no ed25519-sha256 private key"),
        ("rsa", ["rsa-sha1"], "unknown algorithm"),
        ("rsa", [], "no signing algorithm"),
        ("both", ["rsa-sha256", "ed25519-sha256"], "need one selector each"),
    ],
)  # fmt: skip
def test_load_errors_name_the_file(
    tmp_path: Path,
    rsa_key: tuple[bytes, str],
    content: bytes | str | None,
    algorithms: list[str],
    message: str,
) -> None:
    key_file = tmp_path / "dkim.pem"
    if content == "rsa":
        key_file.write_bytes(rsa_key[0])
    elif content == "both":
        key_file.write_bytes(rsa_key[0] + generate_key("ed25519-sha256")[0])
    elif isinstance(content, bytes):
        key_file.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as caught:
        load_signer(DOMAIN, SELECTOR, str(key_file), algorithms)
    assert str(key_file) in str(caught.value)
