"""extract() on hostile input: anything but a clean NoTextError is a bug.

``extract`` wraps unexpected exceptions in NoTextError to keep its contract in
production, chaining the original; these tests therefore also require that a
NoTextError has no ``__cause__``, so a wrapped bug still fails here.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsms.mail import BodyOptions, Extracted, NoTextError, extract

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


DEFAULTS = BodyOptions()


def check(raw: bytes, options: BodyOptions = DEFAULTS) -> None:
    try:
        got = extract(raw, options)
    except NoTextError as exc:
        assert exc.__cause__ is None, f"wrapped bug: {exc.__cause__!r}"
        return
    assert isinstance(got, Extracted)
    assert got.text.strip() == got.text and got.text
    assert "\r" not in got.text and "\x00" not in got.text


@FUZZ
@given(st.binary(max_size=4000))
def test_arbitrary_bytes(raw: bytes) -> None:
    check(raw)


CHARSETS = st.sampled_from(
    [
        "utf-8",
        "us-ascii",
        "iso-8859-1",
        "windows-1251",
        "iso-2022-jp",
        "koi8-r",
        "utf-16",
        "utf-7",
        "bogus",
        "",
        "hex",
        "zlib",
        "unicode_escape",
        "idna",
        "base64",
        "utf-8\x00",
        "x" * 300,
    ]
)
ENCODINGS = st.sampled_from(
    ["7bit", "8bit", "base64", "quoted-printable", "x-uuencode", "binary", "bogus", ""]
)
SUBTYPES = st.sampled_from(
    ["mixed", "alternative", "related", "signed", "encrypted", "report", "digest", "bogus"]
)
LEAF_TYPES = st.sampled_from(
    [
        "text/plain",
        "text/html",
        "image/png",
        "message/rfc822",
        "application/pgp-signature",
        "message/delivery-status",
        "text/calendar",
        "bogus",
    ]
)


@st.composite
def leaf(draw: st.DrawFn) -> str:
    ctype = draw(LEAF_TYPES)
    charset = draw(CHARSETS)
    cte = draw(ENCODINGS)
    body = draw(st.text(max_size=200))
    extra = draw(
        st.sampled_from(
            [
                "",
                "Content-Disposition: attachment; filename=a\r\n",
                "Content-Disposition: inline; filename*=utf-8''%E2%82%AC\r\n",
            ]
        )
    )
    return (
        f'Content-Type: {ctype}; charset="{charset}"\r\nContent-Transfer-Encoding: {cte}\r\n'
        f"{extra}\r\n{body}\r\n"
    )


def multipart(draw: st.DrawFn, depth: int) -> str:
    boundary = draw(st.sampled_from(["b", "=_x", "a b", "", "b" * 80]))
    children = draw(st.lists(st.just(0), max_size=4))
    parts = [
        multipart(draw, depth - 1) if depth and draw(st.booleans()) else draw(leaf())
        for _ in children
    ]
    close = draw(st.sampled_from([f"--{boundary}--\r\n", "", f"--{boundary}\r\n"]))
    body = "".join(f"--{boundary}\r\n{p}" for p in parts) + close
    return f'Content-Type: multipart/{draw(SUBTYPES)}; boundary="{boundary}"\r\n\r\n{body}'


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    head = draw(
        st.sampled_from(
            [
                "Subject: =?utf-8?b?w6k=?=\r\n",
                "Subject: =?bogus?q?x?=\r\n",
                "Subject: " + "x" * 5000 + "\r\n",
                "Subject: \xe9t\xe9\r\n",
                "Auto-Submitted: auto-replied\r\n",
                "References: <a> <b\r\n",
                "",
                "Message-ID: \r\n",
                "X-Long: " + "a " * 3000 + "\r\n",
            ]
        )
    )
    body = multipart(draw, 3) if draw(st.booleans()) else draw(leaf())
    text = draw(st.sampled_from(["From: x@y\r\n", ""])) + head + "MIME-Version: 1.0\r\n" + body
    return text.encode("utf-8", "surrogatepass")


@FUZZ
@given(messages(), st.sampled_from(["auto", "ignore", "prepend", "only"]), st.booleans())
def test_structurally_odd_mime(raw: bytes, subject: str, strip: bool) -> None:
    options = BodyOptions(subject=subject, strip_quotes=strip, strip_signatures=strip)  # type: ignore[arg-type]
    check(raw, options)


@pytest.mark.parametrize("depth", [50, 500, 5000])
def test_deep_nesting(depth: int) -> None:
    head = "".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(depth)
    )
    raw = (head + "Content-Type: text/plain\r\n\r\ndeep\r\n").encode()
    check(raw)


def test_deep_html() -> None:
    markup = "<div>" * 5000 + "deep" + "</div>" * 5000
    check(f"Content-Type: text/html\r\n\r\n{markup}".encode())


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\r\n\r\n",
        b"Content-Type: multipart/mixed\r\n\r\nno boundary at all",
        b'Content-Type: multipart/alternative; boundary="x"\r\n\r\n--x\r\n',
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!",
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ=\r\n=",
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n"
        b"begin 644 x\r\nbad\r\n",
        b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nbody",
        b"Content-Type: text/html\r\n\r\n<html><body></body></html>",
        b"Content-Type: text/html\r\n\r\n\x00\x01<p>\x00</p>",
        b"Subject: " + b"\xff" * 100000 + b"\r\n\r\nx",
        b"X: " + b"y" * 1_000_000 + b"\r\n\r\nbody",
        b"\xff\xfe\x00\x00" * 1000,
        b"Content-Type: text/plain; charset*=utf-8''%ZZ\r\n\r\nx",
        b"Content-Type: text/plain; format=flowed; delsp=yes\r\n\r\n \r\n \r\n",
        b"Content-Type: text/plain; charset*=utf-8''utf-8; format*=''flowed\r\n\r\nx \r\ny",
        b"Content-Type: text/plain; charset*0*=utf-8''u; charset*1=tf-8\r\n\r\nx",
    ],
)
def test_known_odd_inputs(raw: bytes) -> None:
    check(raw)
