"""render_inbound: headers, threading, injection, escaping, time zones, templates."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import pytest

from mailsms.mail.render import (
    MAX_CARRIER,
    MAX_REFERENCES,
    MAX_SUBJECT,
    InboundMail,
    Thread,
    message_id_for,
    render_inbound,
)
from mailsms.mail.templates import environment

WINTER = 1764057600.0  # 2025-11-25 08:00:00 UTC
SUMMER = 1751356800.0  # 2025-07-01 08:00:00 UTC
THREAD = Thread(
    message_id="<CAF=orig.1@mail.example.com>",
    references=("<root.0@example.org>", "<mid.5@example.net>"),
    subject="Lunch on Friday?",
)
MAIL = InboundMail(
    inbound_id="01JDX5T8",
    phone="+15551234567",
    our_number="+15557654321",
    domain="sms.example.test",
    to="alice@example.com",
    text="Sure, 1pm works.",
    received_at=WINTER,
    timezone="Europe/London",
    segments=1,
    incomplete=False,
    carrier="twilio",
    thread=THREAD,
    last_outbound=None,
)
EXPECTED_HEADERS = [
    "From", "Reply-To", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
    "X-Mailsms-Carrier", "X-Mailsms-Segments", "MIME-Version", "Content-Type",
]  # fmt: skip


def mail(**changes: Any) -> InboundMail:
    return dataclasses.replace(MAIL, **changes)


def render(m: InboundMail = MAIL, env: jinja2.Environment | None = None) -> bytes:
    return render_inbound(m, env or environment())


def parse(raw: bytes) -> EmailMessage:
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    return msg


def parts(msg: EmailMessage) -> tuple[str, str]:
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and html is not None
    # The decoded payload keeps the wire CRLFs; compare text with LF.
    return plain.get_content().replace("\r\n", "\n"), html.get_content().replace("\r\n", "\n")


def header_lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


# -- headers -----------------------------------------------------------------------------


def test_every_header() -> None:
    raw = render()
    msg = parse(raw)
    assert list(msg.keys()) == EXPECTED_HEADERS
    assert b'\r\nFrom: "+1 555-123-4567" <+15551234567@sms.example.test>\r\n' in b"\r\n" + raw
    assert msg["From"].addresses[0].display_name == "+1 555-123-4567"
    assert msg["From"].addresses[0].addr_spec == "+15551234567@sms.example.test"
    assert str(msg["Reply-To"]) == str(msg["From"])
    assert str(msg["To"]) == "alice@example.com"
    assert str(msg["Subject"]) == "Re: Lunch on Friday?"
    assert parsedate_to_datetime(str(msg["Date"])).timestamp() == WINTER
    assert str(msg["Message-ID"]) == "<sms.01JDX5T8@sms.example.test>"
    assert str(msg["In-Reply-To"]) == "<CAF=orig.1@mail.example.com>"
    assert str(msg["References"]).split() == [
        "<root.0@example.org>", "<mid.5@example.net>", "<CAF=orig.1@mail.example.com>",
    ]  # fmt: skip
    assert str(msg["X-Mailsms-Carrier"]) == "twilio"
    assert str(msg["X-Mailsms-Segments"]) == "1"
    assert str(msg["MIME-Version"]) == "1.0"
    assert msg.get_content_type() == "multipart/alternative"
    kinds = [(p.get_content_type(), p.get_content_charset()) for p in msg.iter_parts()]
    assert kinds == [("text/plain", "utf-8"), ("text/html", "utf-8")]
    assert "Auto-Submitted" not in msg  # a person wrote it: clients must not treat it as auto


def test_wire_format_is_crlf_7bit_and_folded() -> None:
    raw = render(
        mail(text="Привет 😀 " * 2000, thread=dataclasses.replace(THREAD, subject="Ж" * 900))
    )
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert max(raw) < 128  # every transfer encoding is 7-bit: nothing for a relay to downgrade
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78


def test_message_id_is_stable() -> None:
    assert message_id_for("01JDX5T8", "sms.example.test") == "<sms.01JDX5T8@sms.example.test>"
    first, second = parse(render()), parse(render(mail(received_at=WINTER + 60)))
    assert (
        str(first["Message-ID"])
        == str(second["Message-ID"])
        == message_id_for(MAIL.inbound_id, MAIL.domain)
    )


@pytest.mark.parametrize(
    ("original", "subject"),
    [
        ("Lunch?", "Re: Lunch?"),
        ("Re: Lunch?", "Re: Lunch?"),
        ("RE: re: Re:Lunch?", "Re: Lunch?"),
        ("Re[2]: Lunch?", "Re: Lunch?"),
        ("AW: Sv: Lunch?", "Re: Lunch?"),
        ("Fwd: Lunch?", "Re: Fwd: Lunch?"),
        ("Regarding lunch", "Re: Regarding lunch"),
        ("  Lunch  \t on\tFriday ", "Re: Lunch on Friday"),
        ("", "Re:"),
        ("Re: ", "Re:"),
    ],
)
def test_reply_subject_does_not_stack(original: str, subject: str) -> None:
    msg = parse(render(mail(thread=dataclasses.replace(THREAD, subject=original))))
    assert str(msg["Subject"]) == subject


def test_without_thread() -> None:
    msg = parse(render(mail(thread=None)))
    assert str(msg["Subject"]) == "SMS from +1 555-123-4567"
    assert "In-Reply-To" not in msg and "References" not in msg


def test_references_without_chain() -> None:
    msg = parse(render(mail(thread=dataclasses.replace(THREAD, references=()))))
    assert str(msg["References"]) == "<CAF=orig.1@mail.example.com>"


def test_references_not_repeated_and_bad_ids_dropped() -> None:
    refs = ("<a@x>", "<CAF=orig.1@mail.example.com>", "not-an-id", "<b@y>\r\nBcc: e@vil", "<c@z>")
    msg = parse(render(mail(thread=dataclasses.replace(THREAD, references=refs))))
    assert str(msg["References"]).split() == ["<a@x>", "<c@z>", "<CAF=orig.1@mail.example.com>"]


def test_long_references_keep_root_and_newest() -> None:
    refs = tuple(f"<r{i}@example.org>" for i in range(100))
    msg = parse(render(mail(thread=dataclasses.replace(THREAD, references=refs))))
    chain = str(msg["References"]).split()
    assert len(chain) == MAX_REFERENCES
    assert chain[0] == "<r0@example.org>"
    assert chain[-2:] == ["<r99@example.org>", "<CAF=orig.1@mail.example.com>"]


# -- injection ---------------------------------------------------------------------------

INJECTIONS = [
    "x\r\nBcc: evil@example.net",
    "x\nBcc: evil@example.net",
    "x\rBcc: evil@example.net",
    "x\r\n\r\n<html>body</html>",
    "x\x00Bcc: evil@example.net",
    "x\u2028Bcc: evil@example.net",
    "x\x85Bcc: evil@example.net",
]


@pytest.mark.parametrize("evil", INJECTIONS)
def test_no_injection_through_untrusted_fields(evil: str) -> None:
    thread = Thread(message_id=THREAD.message_id, references=(evil,), subject=evil)
    raw = render(mail(text=evil, carrier=evil, thread=thread, last_outbound=evil))
    msg = parse(raw)
    assert list(msg.keys()) == EXPECTED_HEADERS
    assert "Bcc" not in msg
    assert not msg.defects and all(not p.defects for p in msg.walk())
    assert b"\x00" not in raw
    assert "\n" not in str(msg["Subject"]) and "\x00" not in str(msg["Subject"])
    assert str(msg["X-Mailsms-Carrier"]).startswith("x ")
    assert str(msg["References"]) == THREAD.message_id
    plain, _ = parts(msg)
    assert "\x00" not in plain and "\r" not in plain.replace("\r\n", "\n")


@pytest.mark.parametrize("evil", INJECTIONS[:3])
def test_thread_id_with_line_break_is_not_repeated(evil: str) -> None:
    thread = Thread(message_id="<a@b>" + evil, references=(), subject="Lunch?")
    msg = parse(render(mail(thread=thread)))
    assert list(msg.keys()) == [
        h for h in EXPECTED_HEADERS if h not in ("In-Reply-To", "References")
    ]
    assert str(msg["Subject"]) == "Re: Lunch?"  # still the reply, just not threaded


@pytest.mark.parametrize(
    "change",
    [
        {"phone": "+15551234567\r\nBcc: evil@example.net"},
        {"phone": "15551234567"},
        {"phone": "+1555<script>"},
        {"domain": "sms.example.test\r\nBcc: evil@example.net"},
        {"domain": "sms.example.test>"},
        {"to": "alice@example.com\r\nBcc: evil@example.net"},
        {"to": "alice@example.com, evil@example.net"},
        {"to": "alice"},
        {"to": "Alice <alice@example.com>"},
        {"inbound_id": "1\r\nBcc: evil@example.net"},
        {"inbound_id": "a@b"},
        {"inbound_id": "x" * 65},
        {"timezone": "Mars/Olympus_Mons"},
        {"timezone": "../../etc/passwd"},
    ],
)
def test_our_own_fields_are_refused_when_malformed(change: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        render(mail(**change))


def test_non_ascii_subject_is_rfc2047() -> None:
    thread = dataclasses.replace(THREAD, subject="Re: Обед в пятницу? 🍕")
    raw = render(mail(thread=thread))
    subject_line = next(line for line in header_lines(raw) if line.startswith(b"Subject:"))
    assert b"=?utf-8?" in subject_line
    assert str(parse(raw)["Subject"]) == "Re: Обед в пятницу? 🍕"


def test_very_long_values() -> None:
    thread = Thread(message_id=THREAD.message_id, references=(), subject="word " * 2000)
    raw = render(mail(thread=thread, carrier="c" * 5000, text="A" * 40_000))
    msg = parse(raw)
    assert str(msg["Subject"]) == "Re: " + ("word " * 2000)[:MAX_SUBJECT].strip()
    assert str(msg["X-Mailsms-Carrier"]) == "c" * MAX_CARRIER
    assert "A" * 40_000 in parts(msg)[0]
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78


# -- bodies ------------------------------------------------------------------------------


def test_non_ascii_text_survives() -> None:
    text = "Привет! Встречаемся в 13:00 😀👍 — ça va? 你好"
    msg = parse(render(mail(text=text, last_outbound="Обед? 🍕")))
    plain, html = parts(msg)
    assert text in plain and text in html
    assert "> Обед? 🍕" in plain
    encodings = {str(p["Content-Transfer-Encoding"]) for p in msg.iter_parts()}
    assert encodings <= {"quoted-printable", "base64"}


def test_html_is_escaped() -> None:
    evil = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'
    msg = parse(render(mail(text=evil, carrier=evil, last_outbound=evil)))
    plain, html = parts(msg)
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;img" in html
    assert evil in plain  # plain text is not HTML: shown as written


def test_html_escaped_even_if_environment_does_not_autoescape(tmp_path: Path) -> None:
    (tmp_path / "inbound").mkdir()
    (tmp_path / "inbound" / "sms.html.j2").write_text("<p>{{ text }} {{ sender }}</p>\n")
    loader = jinja2.ChoiceLoader(
        [jinja2.FileSystemLoader(str(tmp_path)), jinja2.PackageLoader("mailsms", "templates")]
    )
    env = jinja2.Environment(loader=loader, autoescape=False, undefined=jinja2.StrictUndefined)
    _, html = parts(parse(render(mail(text="<b>hi</b>"), env)))
    assert html.strip() == "<p>&lt;b&gt;hi&lt;/b&gt; +1 555-123-4567</p>"


def test_line_breaks() -> None:
    plain, html = parts(parse(render(mail(text="one\r\ntwo\rthree\nfour"))))
    assert "one\ntwo\nthree\nfour" in plain
    assert "one<br>\ntwo<br>\nthree<br>\nfour" in html


def test_control_characters_are_marked() -> None:
    plain, html = parts(parse(render(mail(text="a\x00b\x1bc\td"))))
    assert "a\ufffdb\ufffdc\td" in plain and "a\ufffdb\ufffdc\td" in html


def test_details_in_both_parts() -> None:
    m = mail(segments=3, incomplete=True, last_outbound="Lunch on Friday?\nSay 1pm?")
    plain, html = parts(parse(render(m)))
    for body in (plain, html):
        assert "+1 555-123-4567" in body and "+1 555-765-4321" in body
        assert "3 segments" in body
        assert "(incomplete: some parts never arrived)" in body
        assert "Tue 25 Nov 2025 08:00 GMT" in body
    assert "> Lunch on Friday?\n> Say 1pm?" in plain
    assert "<blockquote" in html and "Say 1pm?" in html


def test_complete_single_segment_without_quote() -> None:
    plain, html = parts(parse(render()))
    for body in (plain, html):
        assert "1 segment)" in body
        assert "incomplete" not in body
        assert "Your last SMS" not in body
    assert plain.startswith("Sure, 1pm works.\n")


@pytest.mark.parametrize(
    ("when", "zone", "shown", "offset"),
    [
        (WINTER, "Europe/London", "Tue 25 Nov 2025 08:00 GMT", "+0000"),
        (SUMMER, "Europe/London", "Tue 01 Jul 2025 09:00 BST", "+0100"),
        (WINTER, "America/New_York", "Tue 25 Nov 2025 03:00 EST", "-0500"),
        (WINTER, "Asia/Kolkata", "Tue 25 Nov 2025 13:30 IST", "+0530"),
        (WINTER, "UTC", "Tue 25 Nov 2025 08:00 UTC", "+0000"),
    ],
)
def test_time_zone(when: float, zone: str, shown: str, offset: str) -> None:
    msg = parse(render(mail(received_at=when, timezone=zone)))
    assert str(msg["Date"]).endswith(offset)
    date = parsedate_to_datetime(str(msg["Date"]))
    assert date == datetime.fromtimestamp(when, ZoneInfo(zone))
    plain, html = parts(msg)
    assert shown in plain and shown in html


def test_sender_id_as_our_number() -> None:
    plain, _ = parts(parse(render(mail(our_number="ACME\r\nBcc: x"))))
    assert "to ACME Bcc: x\n" in plain


def test_text_template_overridable(tmp_path: Path) -> None:
    (tmp_path / "inbound").mkdir()
    (tmp_path / "inbound" / "sms.txt.j2").write_text(
        "{{ sender }} at {{ received_iso }} ({{ timezone }}): {{ text }}\n"
    )
    plain, html = parts(parse(render(env=environment(str(tmp_path)))))
    assert (
        plain == "+1 555-123-4567 at 2025-11-25T08:00:00+00:00 (Europe/London): Sure, 1pm works.\n"
    )
    assert "Reply to this mail to answer by SMS." in html  # the other template is the default


def test_misspelt_variable_in_override_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "inbound").mkdir()
    (tmp_path / "inbound" / "sms.txt.j2").write_text("{{ txet }}\n")
    with pytest.raises(jinja2.UndefinedError):
        render(env=environment(str(tmp_path)))


def test_boundary_is_not_predictable_from_the_text() -> None:
    raw = render()
    boundary = re.search(rb'boundary="([^"]+)"', raw)
    assert boundary is not None and MAIL.inbound_id.encode() not in boundary.group(1)
