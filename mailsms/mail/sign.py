"""DKIM-sign the mail mailsms writes (SMS turned into mail), with RSA and/or Ed25519.

Sits at the end of the inbound flow: ``render`` -> **sign** -> relay queue. A signer is
built once from the configured key file (:func:`load_signer`) and shared by every worker;
:meth:`DkimSigner.sign` is pure and thread-safe.

dkimpy does the DKIM work: canonicalisation (relaxed/relaxed), header selection, the body
hash, the tag list and its folding, the ``b=`` handling. It does the RSA arithmetic in pure
Python, though (``dkim.crypto.RSASSA_PKCS1_v1_5_sign``: ~5 ms per 2048-bit signature,
where OpenSSL takes ~0.2 ms). The options considered for moving only that step to OpenSSL:

1. Re-implement ``DomainSigner.gen_header`` (fold, ``b=`` stripping, header hashing) and
   sign the digest ourselves: copies 35 lines of dkimpy internals whose bugs would become
   ours, and a change upstream would silently diverge.
2. Run ``gen_header`` down its Ed25519 branch with an RSA key object that has ``.sign()``:
   relies on the branch order and flips ``signature_algorithm`` mid-call.
3. **Chosen**: replace the one module-level name ``dkim.RSASSA_PKCS1_v1_5_sign`` (its
   signature, ``(hash_object, key_dict)``, has been stable since dkimpy 0.x) by a
   dispatcher. If the key's modulus belongs to a key a :class:`DkimSigner` loaded, the
   digest is signed by OpenSSL (``cryptography``, PKCS#1 v1.5 over the prehashed SHA-256);
   any other key, from any other dkimpy user in the process, goes to the original function.
   RSASSA-PKCS1-v1_5 is deterministic, so both paths give byte-identical signatures (the
   unit tests compare them). If dkimpy ever stops calling that name, signing falls back to
   the pure-Python path: slower, never wrong; ``DkimSigner.openssl_signatures`` and a unit
   test make such a regression visible. ``dkim.parse_pem_private_key`` is wrapped the
   same way: ``DKIM.sign`` parses the PEM in pure Python on every call (a quarter of the
   remaining time), so the keys we loaded are parsed once, by dkimpy itself, and reused.

The hook is installed when this module is imported and changes nothing for keys it does
not know. Measured with bench/inbound_sign.py on a busy 2-core machine: pure dkimpy RSA
55-94 signatures/s, with the hook 1,100/s (880/s without the parse cache), Ed25519
1,900-2,400/s. What remains per RSA signature is dkimpy's canonicalisation (~0.4 ms,
the whole Ed25519 cost) plus ~0.35 ms of OpenSSL.

Key formats (``keys`` maps an algorithm name to the private key):

- ``rsa-sha256``: a PEM RSA private key, PKCS#1 (``BEGIN RSA PRIVATE KEY``) or PKCS#8
  (``BEGIN PRIVATE KEY``), unencrypted, at least 1024 bits (RFC 8301); 2048 recommended.
- ``ed25519-sha256`` (RFC 8463): a PKCS#8 PEM (``openssl genpkey -algorithm ed25519``), or
  the base64 of the raw 32-byte seed, which is what dkimpy's ``dknewkey --ktype ed25519``
  writes and what dkimpy itself takes.

A key file for :func:`load_signer` may hold one key of each type, one after the other.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, cast

import dkim  # type: ignore[import-untyped]  # no stubs; see docs/sms-to-mail.md
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from mailsms.errors import ConfigError

Algorithm = Literal["rsa-sha256", "ed25519-sha256"]
ALGORITHMS: Final = ("rsa-sha256", "ed25519-sha256")

#: Signed header fields, in ``h=`` order, whether present or not: naming an absent field
#: (In-Reply-To on an unthreaded mail) stops anyone adding one later. ``from`` is listed
#: twice (oversigned) so that a second From header breaks the signature.
SIGNED_HEADERS: Final = (
    "from", "to", "subject", "date", "message-id", "in-reply-to", "references",
    "reply-to", "mime-version", "content-type", "from",
)  # fmt: skip
CANONICALIZE: Final = (b"relaxed", b"relaxed")
MIN_RSA_BITS: Final = 1024

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.+?-----END \1-----", re.DOTALL)
_RAW_ED25519 = re.compile(rb"^[A-Za-z0-9+/]{43}=$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
_SELECTOR = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")


class DkimSigner:
    """Signs messages for one domain with one key, and one selector, per algorithm.

    ``selector`` is a name, or a mapping algorithm -> name. RSA and Ed25519 keys need
    different selectors: each is one TXT record at ``SELECTOR._domainkey.DOMAIN``, and a
    verifier given two records there picks one (RFC 6376 section 3.6.2.2), so one name
    for both algorithms is refused.
    """

    def __init__(
        self, domain: str, selector: str | Mapping[str, str], keys: Mapping[str, bytes]
    ) -> None:
        if not keys:
            raise ValueError("DkimSigner needs at least one key")
        self.domain = domain
        self.selectors = _selectors(selector, list(keys))
        self._domain = domain.encode("ascii")
        #: algorithm -> (selector, the key in the form dkimpy's ``DKIM.sign`` takes), in
        #: signing order.
        self._keys: dict[bytes, tuple[bytes, bytes]] = {}
        for algorithm, key in keys.items():
            self._keys[_check_algorithm(algorithm).encode("ascii")] = (
                self.selectors[algorithm].encode("ascii"),
                _for_dkimpy(algorithm, key),
            )

    @property
    def algorithms(self) -> tuple[str, ...]:
        return tuple(a.decode("ascii") for a in self._keys)

    @property
    def openssl_signatures(self) -> int:
        """How many RSA signatures OpenSSL made in this process (a regression check)."""
        return _openssl.count

    def sign(self, message: bytes) -> bytes:
        """``message`` with one DKIM-Signature per algorithm prepended, the first configured
        algorithm on top (verifiers that only check the first signature see that one)."""
        signatures = [self._signature(message, algorithm) for algorithm in self._keys]
        return b"".join(signatures) + message

    def _signature(self, message: bytes, algorithm: bytes) -> bytes:
        # A DKIM object per call: dkimpy keeps per-message state on it, so sharing one
        # between threads would not be safe. The key and the hook are read-only.
        signer = dkim.DKIM(message, signature_algorithm=algorithm, linesep=b"\r\n")
        selector, key = self._keys[algorithm]
        header: bytes = signer.sign(
            selector,
            self._domain,
            key,
            canonicalize=CANONICALIZE,
            include_headers=[h.encode("ascii") for h in SIGNED_HEADERS],
        )
        return header


def load_signer(
    domain: str, selector: str | Mapping[str, str], key_file: str, algorithms: Sequence[str]
) -> DkimSigner:
    """A signer with the keys for ``algorithms`` found in ``key_file``.

    Raises :class:`ConfigError` naming the file when it cannot be read, holds no usable key
    for one of the algorithms, or a key is too weak.
    """
    if not algorithms:
        raise ConfigError(f"DKIM key file {key_file}: no signing algorithm configured")
    try:
        content = Path(key_file).read_bytes()
    except OSError as exc:
        raise ConfigError(f"DKIM key file {key_file}: {exc.strerror or exc}") from exc
    found = _keys_in(content, key_file)
    keys: dict[str, bytes] = {}
    for algorithm in algorithms:
        if algorithm not in ALGORITHMS:
            raise ConfigError(
                f"DKIM key file {key_file}: unknown algorithm {algorithm!r} "
                f"(use {' or '.join(ALGORITHMS)})"
            )
        if algorithm not in found:
            raise ConfigError(f"DKIM key file {key_file} holds no {algorithm} private key")
        keys[algorithm] = found[algorithm]
    try:
        return DkimSigner(domain, selector, keys)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"DKIM key file {key_file}: {exc}") from exc


def generate_key(
    algorithm: Literal["rsa-sha256", "ed25519-sha256"], bits: int = 2048
) -> tuple[bytes, str]:
    """A new key: (private key file content as PEM, the DNS TXT record value).

    Publish the value at ``SELECTOR._domainkey.DOMAIN``. ``bits`` applies to RSA only.
    """
    if algorithm == "rsa-sha256":
        if bits < MIN_RSA_BITS:
            raise ValueError(f"an RSA DKIM key needs at least {MIN_RSA_BITS} bits (RFC 8301)")
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        pem = rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        return pem, dns_record(rsa_key)
    if algorithm == "ed25519-sha256":
        ed_key = ed25519.Ed25519PrivateKey.generate()
        pem = ed_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return pem, dns_record(ed_key)
    raise ValueError(f"unknown DKIM algorithm {algorithm!r}")


def dns_record(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    """The TXT record value for a private key's public half.

    RSA publishes the DER SubjectPublicKeyInfo (what opendkim-genkey writes and every
    verifier reads); Ed25519 the raw 32-byte public key (RFC 8463 section 4.2).
    """
    if isinstance(key, rsa.RSAPrivateKey):
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode('ascii')}"


def _selectors(selector: str | Mapping[str, str], algorithms: list[str]) -> dict[str, str]:
    if isinstance(selector, str):
        if len(algorithms) > 1:
            raise ValueError(
                f"{' and '.join(algorithms)} keys need one selector each "
                "(give a mapping algorithm -> selector)"
            )
        chosen = {algorithms[0]: selector}
    else:
        chosen = {a: selector[a] for a in algorithms if a in selector}
        if missing := [a for a in algorithms if a not in chosen]:
            raise ValueError(f"no selector for {', '.join(missing)}")
        if len(set(chosen.values())) < len(chosen):
            raise ValueError("each algorithm needs its own selector")
    for name in chosen.values():
        if not _SELECTOR.match(name):
            raise ValueError(f"selector {name!r} is not a DNS label sequence")
    return chosen


# -- keys --------------------------------------------------------------------------------


def _check_algorithm(algorithm: str) -> str:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown DKIM algorithm {algorithm!r} (use {' or '.join(ALGORITHMS)})")
    return algorithm


def _for_dkimpy(algorithm: str, key: bytes) -> bytes:
    """Validate ``key`` with OpenSSL and return it in the form dkimpy takes."""
    if algorithm == "ed25519-sha256":
        if _RAW_ED25519.match(key.strip()):
            seed = base64.b64decode(key.strip())
            ed25519.Ed25519PrivateKey.from_private_bytes(seed)  # validates the length
            return base64.b64encode(seed)
        ed_key = serialization.load_pem_private_key(key, password=None)
        if not isinstance(ed_key, ed25519.Ed25519PrivateKey):
            raise ValueError(f"the {algorithm} key is {_kind(ed_key)}, not Ed25519")
        seed = ed_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return base64.b64encode(seed)
    rsa_key = serialization.load_pem_private_key(key, password=None)
    if not isinstance(rsa_key, rsa.RSAPrivateKey):
        raise ValueError(f"the {algorithm} key is {_kind(rsa_key)}, not RSA")
    if rsa_key.key_size < MIN_RSA_BITS:
        raise ValueError(f"RSA key of {rsa_key.key_size} bits is too weak for DKIM (RFC 8301)")
    return _openssl.register(rsa_key)


def _kind(key: object) -> str:
    return type(key).__name__.removeprefix("_").removesuffix("PrivateKey") or "unknown"


def _keys_in(content: bytes, key_file: str) -> dict[str, bytes]:
    """The private keys in a key file, by algorithm: PEM blocks and raw Ed25519 seeds."""
    found: dict[str, bytes] = {}
    for block in _PEM_BLOCK.finditer(content):
        try:
            loaded = serialization.load_pem_private_key(block.group(0), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ConfigError(f"DKIM key file {key_file}: unreadable key: {exc}") from exc
        if isinstance(loaded, rsa.RSAPrivateKey):
            found.setdefault("rsa-sha256", block.group(0))
        elif isinstance(loaded, ed25519.Ed25519PrivateKey):
            found.setdefault("ed25519-sha256", block.group(0))
    for line in _PEM_BLOCK.sub(b"", content).split():
        if _RAW_ED25519.match(line):
            try:
                if len(base64.b64decode(line, validate=True)) == 32:
                    found.setdefault("ed25519-sha256", line)
            except binascii.Error:
                continue
    return found


# -- the OpenSSL hook --------------------------------------------------------------------


class _OpenSslRsa:
    """The replacement for ``dkim.RSASSA_PKCS1_v1_5_sign`` (and, to skip a pure-Python
    ASN.1 parse per message, ``dkim.parse_pem_private_key``); see the module docstring."""

    def __init__(
        self,
        original: Callable[[Any, dict[str, int]], bytes],
        original_parse: Callable[[bytes], dict[str, int]],
    ) -> None:
        self.original = original
        self.original_parse = original_parse
        self.keys: dict[int, rsa.RSAPrivateKey] = {}
        self.parsed: dict[bytes, dict[str, int]] = {}
        self.count = 0
        self._lock = threading.Lock()

    def register(self, key: rsa.RSAPrivateKey) -> bytes:
        """Remember ``key``; returns the PEM to hand dkimpy (PKCS#1, which it parses)."""
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        parsed = self.original_parse(pem)  # dkimpy's own reading, once, not per message
        with self._lock:
            self.keys[parsed["modulus"]] = key
            self.parsed[pem] = parsed
        return pem

    def parse(self, data: bytes) -> dict[str, int]:
        parsed = self.parsed.get(data)
        return dict(parsed) if parsed is not None else self.original_parse(data)

    def __call__(self, hash_object: Any, private_key: dict[str, int]) -> bytes:
        key = self.keys.get(private_key.get("modulus", 0))
        if key is None or hash_object.name.lower() != "sha256":
            return self.original(hash_object, private_key)
        signature = key.sign(hash_object.digest(), padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        self.count += 1  # approximate under threads; only ever compared with zero
        return signature


def _install() -> _OpenSslRsa:
    current = dkim.RSASSA_PKCS1_v1_5_sign
    if isinstance(current, _OpenSslRsa):  # a module reload: keep the first hook
        return current
    hook = _OpenSslRsa(
        cast("Callable[[Any, dict[str, int]], bytes]", current),
        cast("Callable[[bytes], dict[str, int]]", dkim.parse_pem_private_key),
    )
    dkim.parse_pem_private_key = hook.parse
    dkim.RSASSA_PKCS1_v1_5_sign = hook
    return hook


_openssl: Final = _install()
