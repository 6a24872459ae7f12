"""mailsms.mail.parse: the corpus of real-shaped mail, then the options table by table."""

from __future__ import annotations

import pathlib

import pytest

from mailsms.mail import BodyOptions, Extracted, NoTextError, extract
from mailsms.mail.charset import codec_for, decode_bytes, decode_header_value
from mailsms.mail.parse import attachment_note, sms_subject, unflow

CORPUS = pathlib.Path(__file__).parent.parent / "corpus"
CASES = sorted(CORPUS.glob("*.eml"))


def expected_text(eml: pathlib.Path) -> str:
    return eml.with_name(eml.name.removesuffix(".eml") + ".expected.txt").read_text("utf-8").strip()


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 25
    assert all(eml.with_name(eml.stem + ".expected.txt").exists() for eml in CASES)


@pytest.mark.parametrize("eml", CASES, ids=lambda p: p.stem)
def test_corpus(eml: pathlib.Path) -> None:
    assert extract(eml.read_bytes()).text == expected_text(eml)


def corpus(name: str) -> bytes:
    (path,) = CORPUS.glob(f"{name}-*.eml")
    return path.read_bytes()


def mail(body: str, *headers: str, ctype: str = "text/plain; charset=utf-8") -> bytes:
    head = "\r\n".join(("From: a@example.com", f"Content-Type: {ctype}", *headers))
    return f"{head}\r\n\r\n{body}".encode()


# --- headers ---------------------------------------------------------------------------


def test_headers_of_a_reply() -> None:
    got = extract(corpus("05"))
    assert got.subject == "Re: Incident review"
    assert got.message_id == "<CAFkW3Z1xY2mQ8h+R0b7=abc123@mail.gmail.com>"
    assert got.in_reply_to == "<CAJx5r8Kq9=alice1@mail.gmail.com>"
    assert got.references == (
        "<CAJx5r8Kq9=alice0@mail.gmail.com>",
        "<CAJx5r8Kq9=alice1@mail.gmail.com>",
    )
    assert got.source == "plain"
    assert not got.auto_generated


@pytest.mark.parametrize(
    ("name", "subject"),
    [
        ("18", "Re: Почта не работает"),
        ("19", "RE: Договор"),
        ("20", "Re: 打ち合わせ"),
        ("21", "Ραντεβού"),
        ("25", "Générateur"),
        ("29", "Call me when you land \u2708"),
    ],
)
def test_encoded_subjects(name: str, subject: str) -> None:
    assert extract(corpus(name)).subject == subject


def test_missing_headers_are_none() -> None:
    got = extract(mail("hi"))
    assert (got.subject, got.message_id, got.in_reply_to, got.references) == ("", None, None, ())


@pytest.mark.parametrize(
    ("header", "auto"),
    [
        ("Auto-Submitted: auto-generated", False),  # alerts: texting them is the point
        ("Auto-Submitted: auto-replied; owner-email=x@example.com", True),
        ("Auto-Submitted: no", False),
        ("Auto-Submitted: No (comment)", False),
        ("X-Autoreply: yes", True),
        ("Precedence: auto_reply", True),
        ("Precedence: bulk", False),
        ("X-Mailer: test", False),
    ],
)
def test_auto_generated_headers(header: str, auto: bool) -> None:
    assert extract(mail("hello", header)).auto_generated is auto


def test_delivery_report_is_auto_generated() -> None:
    got = extract(corpus("33"))
    assert got.auto_generated
    assert got.attachments == 0
    assert got.text.startswith("This is the mail system at host mx.example.com.")


def test_report_without_text_says_it_was_automatic() -> None:
    raw = mail(
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nAction: failed\r\n--b--\r\n",
        ctype='multipart/report; report-type=delivery-status; boundary="b"',
    )
    with pytest.raises(NoTextError) as caught:
        extract(raw)
    assert caught.value.auto_generated
    assert caught.value.__cause__ is None


# --- parts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "source", "attachments"),
    [
        ("01", "plain", 0),
        ("03", "html", 0),
        ("10", "html", 0),
        ("17", "plain", 0),
        ("26", "plain", 2),
        ("27", "plain", 1),
        ("28", "html", 0),
        ("29", "subject", 0),
    ],
)
def test_part_choice(name: str, source: str, attachments: int) -> None:
    got = extract(corpus(name))
    assert (got.source, got.attachments) == (source, attachments)


def test_attachment_note_can_be_turned_off() -> None:
    got = extract(corpus("26"), BodyOptions(note_attachments=False))
    assert got.text == "Here are the photos of the rack and the serial number label."
    assert got.attachments == 2


@pytest.mark.parametrize(("count", "note"), [(1, "[+1 attachment]"), (2, "[+2 attachments]")])
def test_attachment_note(count: int, note: str) -> None:
    assert attachment_note(count) == note


def test_text_attachment_is_not_the_body() -> None:
    raw = mail(
        "--b\r\nContent-Type: text/plain\r\n\r\nSee log.\r\n"
        "--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=x.log\r\n\r\n"
        "ERROR lots of log\r\n--b--\r\n",
        ctype='multipart/mixed; boundary="b"',
    )
    assert extract(raw).text == "See log.\n[+1 attachment]"


def test_signed_message_uses_the_signed_part() -> None:
    raw = mail(
        "--s\r\nContent-Type: text/plain\r\n\r\nSigned hello\r\n"
        "--s\r\nContent-Type: application/pgp-signature\r\n\r\n"
        "-----BEGIN PGP SIGNATURE-----\r\n--s--\r\n",
        ctype='multipart/signed; protocol="application/pgp-signature"; boundary="s"',
    )
    got = extract(raw)
    assert (got.text, got.attachments) == ("Signed hello", 0)


def test_encrypted_message_has_no_text() -> None:
    raw = mail(
        "--e\r\nContent-Type: application/octet-stream\r\n\r\nxx\r\n--e--\r\n",
        "Subject: secret",
        ctype='multipart/encrypted; boundary="e"',
    )
    with pytest.raises(NoTextError):
        extract(raw, BodyOptions(subject="ignore"))


def test_html_when_plain_alternative_is_blank() -> None:
    assert extract(corpus("10")).text == "Printer on floor 3 is fixed."


# --- subject policy --------------------------------------------------------------------

ALERT = mail("Disk /var 96% on db02", "Subject: Re: Fwd: DiskFull prod")
SAME = mail("DiskFull prod\nDisk /var 96% on db02", "Subject: DiskFull prod")
EMPTY = mail("\r\n", "Subject: AW: Call me")


@pytest.mark.parametrize(
    ("raw", "policy", "text", "source"),
    [
        (ALERT, "auto", "Disk /var 96% on db02", "plain"),
        (ALERT, "ignore", "Disk /var 96% on db02", "plain"),
        (ALERT, "prepend", "DiskFull prod\nDisk /var 96% on db02", "plain"),
        (ALERT, "only", "DiskFull prod", "subject"),
        (SAME, "prepend", "DiskFull prod\nDisk /var 96% on db02", "plain"),
        (EMPTY, "auto", "Call me", "subject"),
        (EMPTY, "prepend", "Call me", "subject"),
        (EMPTY, "only", "Call me", "subject"),
        (mail("body only"), "only", "body only", "plain"),
    ],
)
def test_subject_policy(raw: bytes, policy: str, text: str, source: str) -> None:
    got = extract(raw, BodyOptions(subject=policy))  # type: ignore[arg-type]
    assert (got.text, got.source) == (text, source)


def test_empty_body_with_ignore_is_refused() -> None:
    with pytest.raises(NoTextError) as caught:
        extract(EMPTY, BodyOptions(subject="ignore"))
    assert caught.value.__cause__ is None


@pytest.mark.parametrize(
    ("subject", "clean"),
    [
        ("Re: RE: Fwd: hello", "hello"),
        ("AW: WG: Termin", "Termin"),
        ("Re[2]: x", "x"),
        ("Отв: привет", "привет"),
        ("Rebooting now", "Rebooting now"),
        ("re:", ""),
    ],
)
def test_sms_subject(subject: str, clean: str) -> None:
    assert sms_subject(subject) == clean


# --- options ---------------------------------------------------------------------------


def test_no_stripping_keeps_quotes_and_signature() -> None:
    got = extract(corpus("11"), BodyOptions(strip_quotes=False, strip_signatures=False))
    assert "> Which certificates expire this month?" in got.text
    assert got.text.endswith("Platform team, Example AB")


def test_extra_signature_pattern() -> None:
    raw = mail("Done.\nSent by Grafana v10.2\nfooter")
    assert extract(raw, BodyOptions(signature_patterns=(r"^Sent by Grafana",))).text == "Done."


@pytest.mark.parametrize("markers", [("--end--",), ("STOP", "--END--")])
def test_cutoff_markers(markers: tuple[str, ...]) -> None:
    raw = mail("Go.\n  --END--  \nsecret\nSTOP")
    assert extract(raw, BodyOptions(cutoff_markers=markers)).text == "Go."


def test_bad_options_fail_at_configuration_time() -> None:
    with pytest.raises(ValueError, match="signature pattern"):
        BodyOptions(signature_patterns=("([",))
    with pytest.raises(ValueError, match="subject"):
        BodyOptions(subject="sometimes")  # type: ignore[arg-type]


# --- whitespace and characters -----------------------------------------------------------


def test_whitespace_normalisation() -> None:
    raw = mail("\r\n\r\n  first   \r\n\r\n\r\n\r\nsecond\u00a0line\t\r\nthird\u200b\r\n\r\n")
    assert extract(raw).text == "first\n\nsecond line\nthird"


def test_crlf_and_nul_are_dropped() -> None:
    assert extract(mail("a\x00b\rc")).text == "ab\nc"


@pytest.mark.parametrize(
    ("text", "delsp", "joined"),
    [
        ("one \ntwo\n", False, "one two\n"),
        ("one\ntwo", False, "one\ntwo"),
        ("wo \nrd", True, "word"),
        (" >not quote", False, ">not quote"),
        ("-- \nsig", False, "-- \nsig"),
    ],
)
def test_unflow(text: str, delsp: bool, joined: str) -> None:
    assert unflow(text, delsp=delsp) == joined


# --- charsets ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "label", "text"),
    [
        ("café".encode(), "us-ascii", "café"),
        ("café".encode(), None, "café"),
        ("café".encode("cp1252"), "utf-8", "café"),
        (b"\x93quoted\x94", "iso-8859-1", "\u201cquoted\u201d"),
        (b"\x81", "windows-1252", "\x81"),
        ("Привет".encode("koi8-r"), "koi8-r", "Привет"),
        ("Привет".encode("cp1251"), "windows-1251", "Привет"),
        ("テスト".encode("iso2022_jp"), "iso-2022-jp", "テスト"),
        ("テスト".encode("cp932"), "shift_jis", "テスト"),
        ("中文".encode("gb18030"), "gb2312", "中文"),
        ("ทดสอบ".encode("cp874"), "windows-874", "ทดสอบ"),
        (b"ok", "hex", "ok"),
        (b"\\u0041", "unicode_escape", "\\u0041"),
        ("ok €".encode(), "no-such-charset", "ok €"),
    ],
)
def test_decode_bytes(data: bytes, label: str | None, text: str) -> None:
    assert decode_bytes(data, label) == text


def test_codec_for_refuses_non_mail_codecs() -> None:
    assert codec_for("unicode_escape") is None
    assert codec_for("x-unknown") is None
    assert codec_for('"UTF-8"') == "utf_8"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("=?utf-8?q?Caf=C3=A9?= au lait", "Café au lait"),
        ("=?UTF-8?B?0J/RgNC40LLQtdGC?=\r\n =?UTF-8?B?INC80LjRgA==?=", "Привет мир"),
        ("Caf\udcc3\udca9 =?utf-8?q?au_lait?=", "Café au lait"),
        ("=?bogus?q?abc?=", "abc"),
        ("=?utf-8?b?not base64?=", "=?utf-8?b?not base64?="),
        ("=?utf-8?b?!!!!?=", ""),
        ("plain\r\n\tfolded", "plain folded"),
    ],
)
def test_decode_header_value(value: str, text: str) -> None:
    assert decode_header_value(value) == text


# --- cost --------------------------------------------------------------------------------

PLAIN_750 = (
    b"Return-Path: <alice@example.com>\r\nReceived: from mail.example.com (mail.example.com "
    b"[192.0.2.1])\r\n\tby mx.example.test with ESMTPS id 4Tq9; Mon, 4 Mar 2024 09:15:00 +0000\r\n"
    b"From: Alice Example <alice@example.com>\r\nTo: +447700900123@sms.example.test\r\n"
    b"Subject: Server room temperature\r\nDate: Mon, 4 Mar 2024 09:15:00 +0000\r\n"
    b"Message-ID: <20240304091500.1234@example.com>\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n"
    b"\r\nThe server room is at 31 degrees, the second AC unit has stopped. I called the\r\n"
    b"facilities team, they will be here in about an hour. Please do not start the\r\nbatch "
    b"jobs until then.\r\n\r\nThanks,\r\nAlice\r\n\r\nSent from my iPhone\r\n"
)


def test_realistic_plain_message() -> None:
    # Its cost is measured in bench/intake.py, not asserted here (no wall-clock tests).
    assert 650 <= len(PLAIN_750) <= 850
    got = extract(PLAIN_750)
    assert isinstance(got, Extracted) and "Sent from my iPhone" not in got.text
