"""The envelope of a mailbox message, read from its header (mailsms/intake/envelope.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mailsms.intake.envelope import authenticated, read_envelope

DOMAINS = ("sms.example.test", "sms2.example.test")


def test_recipients_in_our_domains_in_header_order_without_repeats() -> None:
    raw = (
        b"Return-Path: <bounce@example.com>\r\n"
        b"Delivered-To: gw@example.com\r\n"
        b"X-Original-To: +447700900123@sms.example.test\r\n"
        b"From: Ops Team <ops@example.com>\r\n"
        b'To: "On call" <+447700900123@SMS.example.test>, someone@example.com,\r\n'
        b" +447700900124@sms2.example.test\r\n"
        b"Cc: +447700900125@sms.example.test\r\n"
        b"Message-ID: <a1@example.com>\r\n"
        b"\r\n"
        b"To: +1555@sms.example.test (in the body: not a header)\r\n"
    )
    env = read_envelope(raw, DOMAINS)
    assert env.recipients == (
        "+447700900123@sms.example.test",
        "+447700900124@sms2.example.test",
        "+447700900125@sms.example.test",
    )
    assert (env.sender, env.null_return_path, env.message_id) == (
        "ops@example.com",
        False,
        "<a1@example.com>",
    )


def test_null_return_path_and_no_from() -> None:
    env = read_envelope(b"Return-Path: <>\r\nTo: +1@sms.example.test\r\n\r\nhi", DOMAINS)
    assert env.null_return_path and env.sender == "" and env.message_id is None


def test_encoded_display_names_and_bare_lf() -> None:
    raw = b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.com>\nTo: +1@sms.example.test\n\nx"
    env = read_envelope(raw, DOMAINS)
    assert (env.sender, env.recipients) == ("j@example.com", ("+1@sms.example.test",))


def ar(*results: str, authserv: str = "mx.example.com") -> bytes:
    head = "".join(f"Authentication-Results: {authserv}; {r}\r\n" for r in results)
    return f"{head}From: ops@example.com\r\n\r\nbody".encode()


def test_authenticated_by_dmarc_dkim_or_spf_of_the_from_domain() -> None:
    for result in (
        "dmarc=pass (p=reject) header.from=example.com",
        "dkim=pass (2048-bit key) header.d=example.com header.s=s1",
        'dkim=pass header.i="@example.com"',
        "spf=pass smtp.mailfrom=bounce@example.com",
        "spf=none smtp.mailfrom=x@other.test; dkim=pass header.d=EXAMPLE.com",
    ):
        assert authenticated(ar(result), "mx.example.com", "ops@example.com") is None, result


def test_not_authenticated() -> None:
    cases = {
        ar("dkim=pass header.d=other.test"): "show no pass for example.com",
        ar("dkim=fail header.d=example.com"): "show no pass",
        ar("spf=pass smtp.mailfrom=x@example.com.evil.test"): "show no pass",
        ar("dkim=pass header.d=example.com", authserv="evil.test"): "no Authentication-Results",
        b"From: ops@example.com\r\n\r\n": "no Authentication-Results header from mx.example.com",
    }
    for raw, why in cases.items():
        got = authenticated(raw, "mx.example.com", "ops@example.com")
        assert got is not None and why in got, (raw, got)


def test_only_the_first_header_of_our_mta_counts() -> None:
    # Ours (topmost, added last) says fail; an older one with our id, forged upstream,
    # says pass: the forged one must not count.
    raw = ar("dkim=fail header.d=example.com", "dkim=pass header.d=example.com")
    assert authenticated(raw, "mx.example.com", "ops@example.com") is not None


def test_authserv_id_with_a_version_and_in_another_case() -> None:
    raw = ar("dkim=pass header.d=example.com", authserv="MX.example.com 1")
    assert authenticated(raw, "mx.example.com", "ops@example.com") is None


header_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=80
)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "From",
                    "To",
                    "Cc",
                    "Delivered-To",
                    "X-Original-To",
                    "Return-Path",
                    "Authentication-Results",
                    "Message-ID",
                    "Subject",
                ]
            ),
            header_text,
        ),
        max_size=8,
    ),
    st.binary(max_size=200),
)
def test_any_header_is_read_without_raising(headers: list[tuple[str, str]], tail: bytes) -> None:
    raw = "".join(f"{k}: {v}\r\n" for k, v in headers).encode("utf-8", "surrogateescape") + tail
    env = read_envelope(raw, DOMAINS)
    assert all(r.rpartition("@")[2].lower() in DOMAINS for r in env.recipients)
    assert len({r.lower() for r in env.recipients}) == len(env.recipients)
    authenticated(raw, "mx.example.com", env.sender or "x@example.com")


@given(st.binary(max_size=400))
def test_any_bytes_are_read_without_raising(raw: bytes) -> None:
    read_envelope(raw, DOMAINS)
    authenticated(raw, "mx.example.com", "ops@example.com")
