"""Bytes to text for mail bodies and headers, whatever charset the sender claimed.

Sits under :mod:`mailsms.mail.parse`: once a MIME part's transfer encoding is
undone, its bytes still have to become ``str``. Mail clients and monitoring
scripts get the label wrong often enough (``us-ascii`` over UTF-8, ``utf-8``
over Windows-1252, made-up names) that trusting it blindly would put mojibake
or a crash into an SMS. So every decode here goes through one fallback chain:

1. the declared charset, mapped to the superset real clients mean by it
   (``iso-8859-1`` -> ``cp1252``, ``gb2312`` -> ``gb18030``, ...);
2. UTF-8 first instead when the label is an ASCII/Latin-1 family name and the
   bytes are valid UTF-8 with multi-byte sequences (a Latin-1 text almost never
   is);
3. then UTF-8, then Windows-1252, then Latin-1, which cannot fail.

Nothing here raises on any input.
"""

from __future__ import annotations

import codecs
from email.errors import HeaderParseError
from email.header import decode_header
from functools import lru_cache

# Labels Python does not know under the name mail clients use.
_ALIASES = {"windows-874": "cp874", "x-sjis": "cp932", "x-euc-jp": "euc_jp"}

# Labels that mean a superset in practice (the WHATWG Encoding Standard makes
# the same substitutions for the web, for the same reason). Keys are Python's
# canonical codec names.
_SUPERSETS = {
    "ascii": "cp1252",
    "iso8859_1": "cp1252",
    "iso8859_9": "cp1254",
    "iso8859_11": "cp874",
    "tis_620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
    "iso2022_jp": "iso2022_jp_ext",
    "big5": "big5hkscs",
}

# Single-byte legacy charsets: real text in them is almost never valid UTF-8
# once it has a non-ASCII byte, so valid UTF-8 under such a label is a
# mislabelled UTF-8 body.
_UTF8_SUSPECT_PREFIXES = ("cp125", "iso8859_", "koi8_", "mac_")

# Python text codecs that are not mail charsets: decoding with them would
# interpret escapes or treat the body as a host name.
_NOT_MAIL_CHARSETS = frozenset(
    {"unicode_escape", "raw_unicode_escape", "punycode", "idna", "undefined", "mbcs", "oem"}
)

_FALLBACKS = ("utf-8", "cp1252")


@lru_cache(maxsize=256)
def codec_for(label: str | None) -> str | None:
    """The Python codec to try for a MIME charset label, or None when unusable."""
    if not label:
        return None
    name = label.strip().strip("\"'").lower()
    if name in ("unknown-8bit", "x-unknown", "default", "unknown"):
        return None
    name = _ALIASES.get(name, name)
    try:
        canonical = codecs.lookup(name).name.replace("-", "_")
    except (LookupError, ValueError):
        return None
    if canonical in _NOT_MAIL_CHARSETS:
        return None
    return _SUPERSETS.get(canonical, canonical)


def _try(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except (UnicodeError, LookupError, ValueError, TypeError):
        # LookupError: a bytes-to-bytes codec such as "hex" named as a charset.
        return None


def _looks_utf8(data: bytes) -> str | None:
    """The UTF-8 reading of bytes that are non-ASCII and valid UTF-8, else None."""
    if data.isascii():
        return None
    return _try(data, "utf-8")


def decode_bytes(data: bytes, label: str | None) -> str:
    """Decode ``data`` labelled ``label``; never raises, never returns None."""
    codec = codec_for(label)
    if codec is None or codec.startswith(_UTF8_SUSPECT_PREFIXES):
        as_utf8 = _looks_utf8(data)
        if as_utf8 is not None:
            return as_utf8
    if codec is not None:
        text = _try(data, codec)
        if text is not None:
            return text
    for fallback in _FALLBACKS:
        text = _try(data, fallback)
        if text is not None:
            return text
    return data.decode("latin-1")


def decode_header_value(value: str | None) -> str:
    """Decode an RFC 2047 (or raw 8-bit) header value to one unfolded line.

    Raw 8-bit bytes, which some clients send in headers, go through the same
    fallback chain as bodies (UTF-8 first, as RFC 6532 intends). The value is
    handed to :func:`email.header.decode_header` as Latin-1 so that its
    unencoded stretches come back as the original bytes.
    """
    if not value:
        return ""
    if value.isascii() and "=?" not in value:
        return " ".join(value.split())
    try:
        raw = value.encode("ascii", "surrogateescape")
    except UnicodeError:
        raw = value.encode("utf-8", "surrogatepass")
    latin = raw.decode("latin-1")
    try:
        parts = decode_header(latin)
    except (HeaderParseError, ValueError, LookupError, TypeError, IndexError):
        parts = [(latin, None)]
    decoded = "".join(_decode_part(chunk, label) for chunk, label in parts)
    return " ".join(decoded.split())


def _decode_part(chunk: bytes | str, label: str | None) -> str:
    if isinstance(chunk, str):
        chunk = chunk.encode("latin-1", "replace")
    return decode_bytes(chunk, label)
