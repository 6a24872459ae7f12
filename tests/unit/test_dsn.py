"""RFC 3461 parameters and RFC 3464 reports (mailsms.mail.dsn).

Every DSN built here is read back by parsers that are not ours: Mailman's bounce detector
(flufl.bounce) must find the failed recipient, and the stdlib parser (policy.default) must
see the multipart/report structure, the delivery-status fields and the returned original.
"""

from __future__ import annotations

import dataclasses
import email
import re
from email import policy
from email.message import EmailMessage, Message
from typing import Any

import pytest
from flufl.bounce import all_failures, scan_message
from hypothesis import given
from hypothesis import strategies as st

from mailsms.mail.dsn import (
    DsnParams,
    DsnReport,
    build_dsn,
    parse_mail_params,
    parse_rcpt_params,
    should_notify,
    xtext_decode,
    xtext_encode,
)
from mailsms.mail.templates import environment

ADDRESS = "+15551234567@sms.example.com"
ORIGINAL = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: +15551234567@sms.example.com\r\n"
    b"Subject: Dinner\r\n"
    b"Message-ID: <m1@example.com>\r\n"
    b"Date: Tue, 14 Nov 2023 22:13:00 +0000\r\n"
    b"\r\n"
    b"See you at eight\r\n"
    b"--Alice\r\n"
)
STATUS_FOR = {"failed": "5.1.1", "delayed": "4.4.1", "delivered": "2.0.0"}


def report(**changes: Any) -> DsnReport:
    base = DsnReport(
        action="failed",
        reporting_mta="gw.example.com",
        from_domain="sms.example.com",
        envelope_sender="alice@example.com",
        final_recipient=ADDRESS,
        number="+15551234567",
        status="5.1.1",
        diagnostic="smpp; 0x0000000B invalid destination address",
        reason="the number does not exist",
        message_id="018bd0c0ffee00112233445566778899",
        text="See you at eight",
        arrival=1_700_000_000.0,
        last_attempt=1_700_000_060.0,
        params=DsnParams(),
        original=ORIGINAL,
    )
    if "action" in changes and "status" not in changes:
        changes["status"] = STATUS_FOR[changes["action"]]
    return dataclasses.replace(base, **changes)


def build(rep: DsnReport) -> bytes:
    return build_dsn(rep, environment(), now=1_700_000_100.0)


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def status_blocks(msg: EmailMessage) -> list[Message]:
    part = msg.get_payload()[1]
    assert part.get_content_type() == "message/delivery-status"
    blocks = part.get_payload()
    assert isinstance(blocks, list) and len(blocks) == 2
    return blocks


# --- the report as independent parsers see it ------------------------------------------------


@pytest.mark.parametrize("ret", [None, "HDRS", "FULL"])
@pytest.mark.parametrize("action", ["failed", "delayed", "delivered"])
def test_structure_as_the_stdlib_parser_sees_it(action: str, ret: str | None) -> None:
    raw = build(report(action=action, params=DsnParams(ret=ret)))  # type: ignore[arg-type]
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    human, _, returned = msg.get_payload()
    assert human.get_content_type() == "text/plain"
    assert human.get_content_charset() == "utf-8"
    per_message, per_recipient = status_blocks(msg)
    assert per_message["Reporting-MTA"] == "dns; gw.example.com"
    assert per_message["Arrival-Date"] == "Tue, 14 Nov 2023 22:13:20 +0000"
    assert per_recipient["Final-Recipient"] == f"rfc822; {ADDRESS}"
    assert per_recipient["Action"] == action
    assert per_recipient["Status"] == STATUS_FOR[action]
    assert per_recipient["Last-Attempt-Date"] == "Tue, 14 Nov 2023 22:14:20 +0000"
    if ret == "FULL" and action == "failed":  # RFC 3461 4.3: the content only with failures
        assert returned.get_content_type() == "message/rfc822"
        inner = returned.get_payload()[0]
        assert inner["Subject"] == "Dinner"
        assert inner.get_payload() == "See you at eight\r\n--Alice\r\n"
    else:
        assert returned.get_content_type() == "text/rfc822-headers"
        headers = returned.get_content()
        assert "Subject: Dinner" in headers and "See you at eight" not in headers


@pytest.mark.parametrize("orcpt", [None, f"rfc822;{ADDRESS}"])
@pytest.mark.parametrize("ret", [None, "HDRS", "FULL"])
@pytest.mark.parametrize(
    ("status", "diagnostic"),
    [
        ("5.1.1", "smpp; 0x0000000B invalid destination address"),
        ("5.7.1", "twilio; 21610 attempt to send to unsubscribed recipient"),
        ("4.4.7", "x-mailsms; expired after 2d"),
        ("5.0.0", None),
    ],
)
def test_flufl_bounce_finds_the_failed_recipient(
    status: str, diagnostic: str | None, ret: str | None, orcpt: str | None
) -> None:
    params = DsnParams(ret=ret, orcpt=orcpt)  # type: ignore[arg-type]
    raw = build(report(status=status, diagnostic=diagnostic, params=params))
    msg = email.message_from_bytes(raw)
    assert scan_message(msg) == {ADDRESS.encode()}
    temporary, permanent = all_failures(msg)
    assert permanent == {ADDRESS.encode()} and not temporary


def test_flufl_bounce_sees_a_delay_as_temporary_and_success_as_nothing() -> None:
    delayed = email.message_from_bytes(build(report(action="delayed")))
    assert all_failures(delayed) == ({ADDRESS.encode()}, frozenset())
    delivered = email.message_from_bytes(build(report(action="delivered")))
    assert scan_message(delivered) == frozenset()


def test_headers() -> None:
    msg = parse(build(report()))
    (sender,) = msg["From"].addresses
    assert sender.display_name == "Mail Delivery System"
    assert sender.addr_spec == "MAILER-DAEMON@sms.example.com"
    assert msg["To"] == "alice@example.com"
    assert msg["Subject"] == "Undelivered SMS to +1 555-123-4567"
    assert msg["Date"] == "Tue, 14 Nov 2023 22:15:00 +0000"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["MIME-Version"] == "1.0"
    assert msg["X-Mailsms-Id"] == "018bd0c0ffee00112233445566778899"
    assert msg["Message-ID"] == "<018bd0c0ffee00112233445566778899.failed@sms.example.com>"
    assert msg["In-Reply-To"] == msg["References"] == "<m1@example.com>"


@pytest.mark.parametrize(
    ("action", "subject"),
    [
        ("failed", "Undelivered SMS to +1 555-123-4567"),
        ("delayed", "Delayed SMS to +1 555-123-4567"),
        ("delivered", "SMS delivered to +1 555-123-4567"),
    ],
)
def test_subject_per_action(action: str, subject: str) -> None:
    assert parse(build(report(action=action)))["Subject"] == subject


def test_message_id_is_stable_per_message_and_action() -> None:
    first = parse(build_dsn(report(), environment(), now=1.0))["Message-ID"]
    again = parse(build_dsn(report(), environment(), now=99.0))["Message-ID"]
    delayed = parse(build(report(action="delayed")))["Message-ID"]
    assert first == again != delayed


def test_crlf_line_ends_only() -> None:
    raw = build(report(params=DsnParams(ret="FULL"), original=ORIGINAL.replace(b"\r\n", b"\n")))
    assert b"\r" not in raw.replace(b"\r\n", b"") and b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def test_optional_fields_appear_only_when_given() -> None:
    bare = status_blocks(parse(build(report(diagnostic=None, last_attempt=None))))
    assert "Original-Envelope-Id" not in bare[0]
    assert all(f not in bare[1] for f in ("Original-Recipient", "Diagnostic-Code"))
    assert all(f not in bare[1] for f in ("Last-Attempt-Date", "Will-Retry-Until"))
    params = DsnParams(envid="QQ314159", orcpt=f"rfc822;{ADDRESS}")
    full = status_blocks(parse(build(report(params=params))))
    assert full[0]["Original-Envelope-Id"] == "QQ314159"
    assert full[1]["Original-Recipient"] == f"rfc822;{ADDRESS}"


def test_will_retry_until_for_delays() -> None:
    rep = report(action="delayed", will_retry_until=1_700_172_800.0)
    msg = parse(build(rep))
    assert status_blocks(msg)[1]["Will-Retry-Until"] == "Thu, 16 Nov 2023 22:13:20 +0000"
    assert "keep trying until Thu, 16 Nov 2023 22:13:20 +0000" in msg.get_payload()[0].get_content()
    failed = status_blocks(parse(build(report(will_retry_until=1_700_172_800.0))))
    assert "Will-Retry-Until" not in failed[1]


@pytest.mark.parametrize(
    ("given_", "field"),
    [
        ("smpp; 0x0000000B invalid destination address", "X-smpp; 0x0000000B invalid"),
        ("smtp; 550 5.1.1 no such user", "smtp; 550 5.1.1 no such user"),
        ("x-mailsms; expired after 2d", "x-mailsms; expired after 2d"),
        ("no type here", "X-mailsms; no type here"),
    ],
)
def test_diagnostic_types_unregistered_get_x_prefix(given_: str, field: str) -> None:
    value = status_blocks(parse(build(report(diagnostic=given_))))[1]["Diagnostic-Code"]
    assert value.startswith(field)


def test_no_original_no_third_part() -> None:
    assert len(parse(build(report(original=None))).get_payload()) == 2


def test_headers_only_original() -> None:
    headers_only = b"From: a@example.com\r\nSubject: no body"
    returned = parse(build(report(original=headers_only))).get_payload()[2]
    assert returned.get_content() == "From: a@example.com\r\nSubject: no body\r\n"


# --- the part a person reads -----------------------------------------------------------------


def human_text(rep: DsnReport) -> str:
    text = parse(build(rep)).get_payload()[0].get_content()
    assert isinstance(text, str)
    return text


def test_human_part_says_what_happened() -> None:
    text = human_text(report())
    assert "Your SMS to +1 555-123-4567 could not be delivered:" in text
    assert "the number does not exist." in text
    assert "> See you at eight" in text
    assert "check the number" in text
    assert "018bd0c0ffee00112233445566778899" in text


@pytest.mark.parametrize(
    ("status", "advice"),
    [
        ("5.1.1", "check the number"),
        ("5.7.1", "sending it again will not help"),
        ("4.4.7", "we tried until the message expired"),
        ("5.3.0", "contact your postmaster"),
    ],
)
def test_advice_follows_the_status(status: str, advice: str) -> None:
    assert advice in human_text(report(status=status))


def test_delayed_and_delivered_wording() -> None:
    assert "has not been delivered yet" in human_text(report(action="delayed"))
    assert "was delivered" in human_text(report(action="delivered"))


def test_long_sms_is_quoted_shortened() -> None:
    text = human_text(report(text="word " * 400))
    quoted = [line for line in text.splitlines() if line.startswith("> ")]
    assert quoted[-1] == "> [... shortened]"
    assert sum(len(line) for line in quoted) < 700
    assert all(len(line) <= 76 for line in quoted)


def test_many_lines_are_shortened() -> None:
    text = human_text(report(text="\n".join(f"line {i}" for i in range(50))))
    assert "> line 11" in text and "> line 12" not in text and "[... shortened]" in text


def test_non_ascii_sms_text_survives() -> None:
    rep = report(text="Привет 👋 — ça va?")
    human = parse(build(rep)).get_payload()[0]
    assert human["Content-Transfer-Encoding"] == "quoted-printable"
    assert "> Привет 👋 — ça va?" in human.get_content()


def test_template_syntax_in_sms_text_is_just_text() -> None:
    assert "> {{ 7*7 }} {% raw %}" in human_text(report(text="{{ 7*7 }} {% raw %}"))


def test_operator_override_dir(tmp_path: Any) -> None:
    (tmp_path / "dsn").mkdir()
    (tmp_path / "dsn" / "failed.txt.j2").write_text("Custom: {{ number }} {{ reason }}\n")
    raw = build_dsn(report(), environment(str(tmp_path)), now=0.0)
    assert parse(raw).get_payload()[0].get_content() == (
        "Custom: +1 555-123-4567 the number does not exist\r\n"
    )


# --- refusals and injection ------------------------------------------------------------------


@pytest.mark.parametrize("sender", ["", "<>", " <> "])
def test_never_a_dsn_to_the_null_sender(sender: str) -> None:
    with pytest.raises(ValueError, match="null sender"):
        build(report(envelope_sender=sender))
    assert not should_notify(sender, DsnParams(), "failed")


@pytest.mark.parametrize(
    "changes",
    [
        {"action": "delayed", "status": "5.1.1"},
        {"action": "delivered", "status": "5.1.1"},
        {"action": "failed", "status": "2.0.0"},
        {"status": "5.1"},
        {"status": "550"},
        {"reporting_mta": "gw.example.com\r\nX: y"},
        {"from_domain": "sms.example.com>, evil@example.net"},
    ],
)
def test_inconsistent_reports_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        build(report(**changes))


@pytest.mark.parametrize(
    "sender",
    [
        "alice@example.com\r\nBcc: victim@example.net",
        "alice@example.com, victim@example.net",
        "jöhn@example.com, victim@example.net",
        "jöhn@example.com\r\nBcc: victim@example.net",
        "jö hn@example.com",
    ],
)
def test_envelope_sender_is_one_address(sender: str) -> None:
    with pytest.raises(ValueError):
        build(report(envelope_sender=sender))


def test_smtputf8_sender_gets_a_utf8_header() -> None:
    raw = build(report(envelope_sender="jöhn@exämple.com"))
    assert "To: jöhn@exämple.com\r\n".encode() in raw
    assert parse(raw)["To"] == "jöhn@exämple.com"


INJECT = "\r\nBcc: victim@example.net\r\nX-Injected: yes\r\n\r\n--===============0==\r\n"


@pytest.mark.parametrize(
    "field",
    ["number", "final_recipient", "diagnostic", "reason", "text", "message_id"],
)
def test_outside_values_cannot_add_headers_or_parts(field: str) -> None:
    value = getattr(report(), field) + INJECT
    raw = build(report(**{field: value}))
    msg = parse(raw)
    assert "Bcc" not in msg and "X-Injected" not in msg
    assert len(msg.get_payload()) == 3
    for block in status_blocks(msg):
        assert "Bcc" not in block and "X-Injected" not in block
    assert not re.search(rb"^(Bcc|X-Injected):", raw, re.MULTILINE)


def test_params_from_the_store_cannot_inject_either() -> None:
    params = DsnParams(envid="id" + INJECT, orcpt=f"rfc822;{ADDRESS}{INJECT}")
    raw = build(report(params=params))
    assert not re.search(rb"^(Bcc|X-Injected):", raw, re.MULTILINE)
    per_message, per_recipient = status_blocks(parse(raw))
    assert per_message["Original-Envelope-Id"].strip().startswith("id Bcc: victim")
    assert per_recipient["Original-Recipient"].strip().startswith(f"rfc822;{ADDRESS} Bcc")


BOUNDARYISH = (
    "--===============0==\n--===============1234567890==--\n"
    '--\nContent-Type: multipart/mixed; boundary="x"\n--x\n--x--'
)


def test_boundary_looking_sms_text_stays_in_its_part() -> None:
    msg = parse(build(report(text=BOUNDARYISH)))
    human, _, _ = msg.get_payload()
    assert "> --===============1234567890==--" in human.get_content()
    assert len(msg.get_payload()) == 3


@pytest.mark.parametrize("ret", ["FULL", "HDRS"])
def test_boundary_looking_original_stays_in_its_part(ret: str) -> None:
    original = (
        b"Subject: tricky\r\nX-Boundary: --===============0==\r\n\r\n"
        + BOUNDARYISH.replace("\n", "\r\n").encode()
        + b"\r\n"
    )
    raw = build(report(params=DsnParams(ret=ret), original=original))  # type: ignore[arg-type]
    msg = parse(raw)
    assert len(msg.get_payload()) == 3
    returned = msg.get_payload()[2]
    if ret == "FULL":
        body = returned.get_payload()[0].get_payload()
        assert body == BOUNDARYISH.replace("\n", "\r\n") + "\r\n"
    assert status_blocks(msg)[1]["Action"] == "failed"


def test_eight_bit_original_is_returned() -> None:
    original = "Subject: Grüße\r\n\r\nÇa marche, 👋\r\n".encode()
    hdrs = parse(build(report(original=original))).get_payload()[2]
    assert "Subject: Grüße" in hdrs.get_content()
    full = parse(build(report(params=DsnParams(ret="FULL"), original=original))).get_payload()[2]
    assert full["Content-Transfer-Encoding"] == "8bit"
    assert "Ça marche".encode() in full.get_payload()[0].get_payload(decode=True)


# --- NOTIFY rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("notify", "failed", "delayed", "delivered"),
    [
        ((), True, True, False),  # RFC default: failures; delays at our discretion
        (("NEVER",), False, False, False),
        (("SUCCESS",), False, False, True),
        (("FAILURE",), True, False, False),
        (("DELAY",), False, True, False),
        (("SUCCESS", "FAILURE"), True, False, True),
        (("SUCCESS", "FAILURE", "DELAY"), True, True, True),
    ],
)
def test_wants(notify: tuple[str, ...], failed: bool, delayed: bool, delivered: bool) -> None:
    params = DsnParams(notify=notify)
    assert (params.wants("failed"), params.wants("delayed"), params.wants("delivered")) == (
        failed,
        delayed,
        delivered,
    )
    assert should_notify("<alice@example.com>", params, "failed") == failed


def test_params_round_trip_through_the_store_form() -> None:
    params = DsnParams(ret="HDRS", envid="QQ314159", notify=("SUCCESS",), orcpt=f"rfc822;{ADDRESS}")
    assert DsnParams.from_dict(params.to_dict()) == params
    assert DsnParams.from_dict({}) == DsnParams()
    with pytest.raises(ValueError):
        DsnParams.from_dict({"ret": "ALL"})


# --- MAIL and RCPT parameters ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], (None, None)),
        (["RET=FULL"], ("FULL", None)),
        (["ret=hdrs"], ("HDRS", None)),
        (["ENVID=QQ314159"], (None, "QQ314159")),
        (["RET=HDRS", "ENVID=a+2Bb+3Dc+20d"], ("HDRS", "a+b=c d")),
        (["SIZE=1000", "BODY=8BITMIME", "SMTPUTF8"], (None, None)),
        (["ENVID=" + "x" * 100], (None, "x" * 100)),
    ],
)
def test_parse_mail_params(options: list[str], expected: tuple[str | None, str | None]) -> None:
    assert parse_mail_params(options) == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["RET=ALL"], "RET must be FULL or HDRS"),
        (["RET="], "RET must be FULL or HDRS"),
        (["RET"], "RET must be FULL or HDRS"),
        (["RET=FULL", "RET=HDRS"], "RET given more than once"),
        (["ENVID="], "ENVID needs a value"),
        (["ENVID=" + "x" * 101], "longer than 100"),
        (["ENVID=a+2b"], "two upper-case hex digits"),
        (["ENVID=a+2"], "two upper-case hex digits"),
        (["ENVID=a=b"], "not allowed in xtext"),
        (["ENVID=a b"], "not allowed in xtext"),
        (["ENVID=é"], "not allowed in xtext"),
        (["ENVID=+0D+0AX"], "printable US-ASCII"),
        (["ENVID=+FF"], "UTF-8"),
    ],
)
def test_parse_mail_params_refuses(options: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_mail_params(options)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], ((), None)),
        (["NOTIFY=NEVER"], (("NEVER",), None)),
        (["notify=never"], (("NEVER",), None)),
        (["NOTIFY=DELAY,SUCCESS"], (("SUCCESS", "DELAY"), None)),
        (["NOTIFY=failure,Delay,FAILURE"], (("FAILURE", "DELAY"), None)),
        (["ORCPT=rfc822;+2B15551234567@sms.example.com"], ((), f"rfc822;{ADDRESS}")),
        (
            ["NOTIFY=SUCCESS", "ORCPT=rfc822;alice+2Bsms@example.com"],
            (("SUCCESS",), "rfc822;alice+sms@example.com"),
        ),
        (["ORCPT=x-local;box"], ((), "x-local;box")),
    ],
)
def test_parse_rcpt_params(options: list[str], expected: Any) -> None:
    assert parse_rcpt_params(options) == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["NOTIFY="], "comma-separated list"),
        (["NOTIFY=SUCCESS,,FAILURE"], "comma-separated list"),
        (["NOTIFY=NEVER,FAILURE"], "NEVER cannot be combined"),
        (["NOTIFY=SOMETIMES"], "unknown NOTIFY keyword 'SOMETIMES'"),
        (["NOTIFY=SUCCESS", "NOTIFY=FAILURE"], "NOTIFY given more than once"),
        (["ORCPT=+2B15551234567@sms.example.com"], "addr-type;xtext"),
        (["ORCPT=;+2B1555@sms.example.com"], "addr-type;xtext"),
        (["ORCPT=rfc 822;a@b"], "addr-type;xtext"),
        (["ORCPT=rfc822;"], "empty address"),
        (["ORCPT=rfc822;+15551234567@sms.example.com"], "+2B"),  # '+' not encoded
        (["ORCPT=rfc822;a+0D+0Ab@example.com"], "control characters"),
        (["ORCPT=rfc822;" + "a" * 500], "longer than 500"),
    ],
)
def test_parse_rcpt_params_refuses(options: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_rcpt_params(options)


@given(st.text())
def test_xtext_round_trip(text: str) -> None:
    encoded = xtext_encode(text)
    assert all("!" <= c <= "~" and c != "=" for c in encoded)
    assert xtext_decode(encoded) == text
