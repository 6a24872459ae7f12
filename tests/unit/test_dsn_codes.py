"""Carrier outcomes -> RFC 3463 codes (mailsms.mail.dsn_codes), and the doc that shows them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailsms.carriers.smpp import status as smpp_status
from mailsms.mail import dsn_codes
from mailsms.mail.dsn_codes import (
    Mapped,
    from_generic,
    from_receipt,
    from_smpp_status,
    from_telnyx,
    from_twilio,
    from_vonage,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "delivery-reports.md"
# RFC 3463: class 2/4/5, subjects 0-7, and the details each subject defines.
DETAILS = {"0": 0, "1": 8, "2": 4, "3": 5, "4": 7, "5": 5, "6": 5, "7": 7}

ALL_TABLES: list[tuple[str, dict[object, Mapped]]] = [
    ("smpp", dict(dsn_codes.SMPP_STATUS)),
    ("receipt", dict(dsn_codes.RECEIPT_STAT)),
    ("twilio", dict(dsn_codes.TWILIO_ERROR)),
    ("vonage", dict(dsn_codes.VONAGE_ERROR)),
    ("telnyx", dict(dsn_codes.TELNYX_ERROR)),
    ("generic", dict(dsn_codes.GENERIC_STATUS)),
]
ALL_ROWS = [(name, key, m) for name, table in ALL_TABLES for key, m in table.items()]


@pytest.mark.parametrize(("table", "key", "mapped"), ALL_ROWS)
def test_every_row_is_a_defined_rfc3463_code(table: str, key: object, mapped: Mapped) -> None:
    klass, subject, detail = mapped.status.split(".")
    assert klass in "245" and subject in DETAILS and 0 <= int(detail) <= DETAILS[subject]
    expired = mapped.status == "4.4.7"
    assert mapped.permanent == (klass == "5" or expired), "permanent agrees with the class"
    assert mapped.reason and mapped.reason == mapped.reason.strip()
    assert not mapped.reason.endswith(".") and mapped.reason[0].islower()
    assert not mapped.opt_out or mapped.status == "5.7.1"


def test_smpp_table_follows_the_carriers_retry_decision() -> None:
    assert set(dsn_codes.SMPP_STATUS) == set(smpp_status.STATUSES)
    for code, mapped in dsn_codes.SMPP_STATUS.items():
        if code == smpp_status.ESME_ROK:
            continue
        retried = smpp_status.kind(code) is smpp_status.Kind.TEMPORARY
        assert mapped.permanent != retried, f"0x{code:02X}"


@pytest.mark.parametrize(
    ("command_status", "status", "permanent"),
    [
        (0x0B, "5.1.1", True),
        (0x58, "4.7.1", False),
        (0x14, "4.3.2", False),
        (0x08, "4.3.0", False),
        (0x0A, "5.1.7", True),
        (0x45, "4.3.0", False),  # retried by the SMPP carrier (status.py): not 5.3.0
        (0x66, "5.7.1", True),
        (0x401, "4.0.0", False),  # vendor-specific: retried, like status.py does
    ],
)
def test_from_smpp_status(command_status: int, status: str, permanent: bool) -> None:
    mapped = from_smpp_status(command_status)
    assert (mapped.status, mapped.permanent) == (status, permanent)


def test_unknown_smpp_status_names_the_code() -> None:
    assert "0x00000401" in from_smpp_status(0x401).reason


@pytest.mark.parametrize(
    ("stat", "err", "status", "permanent"),
    [
        ("DELIVRD", "000", "2.0.0", False),
        ("delivrd", None, "2.0.0", False),
        ("EXPIRED", "000", "4.4.7", True),
        ("UNDELIV", "001", "5.0.0", True),
        ("REJECTD", None, "5.7.1", True),
        ("DELETED", None, "5.3.0", True),
        ("UNKNOWN", None, "4.0.0", False),
        ("ENROUTE", None, "4.4.0", False),
        ("ACCEPTD", None, "4.4.0", False),
        ("GARBAGE", None, "4.0.0", False),
    ],
)
def test_from_receipt(stat: str, err: str | None, status: str, permanent: bool) -> None:
    mapped = from_receipt(stat, err)
    assert (mapped.status, mapped.permanent) == (status, permanent)


def test_receipt_err_adds_detail_but_not_zero() -> None:
    assert from_receipt("UNDELIV", "034").reason.endswith("(network error 034)")
    assert from_receipt("UNDELIV", "000") == dsn_codes.RECEIPT_STAT["UNDELIV"]
    assert from_receipt("DELIVRD", "005") == dsn_codes.RECEIPT_STAT["DELIVRD"]


@pytest.mark.parametrize(
    ("code", "status", "permanent", "opt_out", "words"),
    [
        ("30003", "4.4.1", False, False, "switched off"),
        (30004, "5.7.1", True, False, "blocks"),
        ("30005", "5.1.1", True, False, "does not exist"),
        ("30006", "5.1.1", True, False, "not a mobile number"),
        (30007, "5.7.1", True, False, "filtered"),
        ("30008", "4.0.0", False, False, "error"),
        ("21610", "5.7.1", True, True, "STOP"),
        (21211, "5.1.1", True, False, "not a valid phone number"),
        ("21614", "5.1.1", True, False, "not a mobile number"),
        ("39999", "5.0.0", True, False, "error 39999"),
    ],
)
def test_from_twilio_error_codes(
    code: str | int, status: str, permanent: bool, opt_out: bool, words: str
) -> None:
    mapped = from_twilio(code, "undelivered")
    assert (mapped.status, mapped.permanent, mapped.opt_out) == (status, permanent, opt_out)
    assert words in mapped.reason


@pytest.mark.parametrize(
    ("code", "message_status", "status"),
    [
        (None, "delivered", "2.0.0"),
        ("", "read", "2.0.0"),
        ("0", "delivered", "2.0.0"),
        (None, "undelivered", "5.0.0"),
        (None, "failed", "5.0.0"),
        (None, "sent", "4.4.0"),
        (None, "queued", "4.4.0"),
        (None, "whatever", "4.0.0"),
    ],
)
def test_from_twilio_status_without_error(
    code: str | None, message_status: str, status: str
) -> None:
    assert from_twilio(code, message_status).status == status


@pytest.mark.parametrize(
    ("code", "status", "permanent", "opt_out"),
    [
        ("0", "2.0.0", False, False),
        (1, "4.0.0", False, False),
        ("2", "4.4.1", False, False),
        ("3", "5.1.1", True, False),
        (4, "5.2.1", True, False),
        (5, "5.4.4", True, False),
        (6, "5.7.1", True, False),
        (7, "4.4.1", False, False),
        (8, "4.4.0", False, False),
        ("9", "5.7.1", True, True),  # "Illegal Number": the user asked not to get messages
        (10, "5.6.0", True, False),  # "Illegal Message" in Vonage's table
        (11, "5.4.4", True, False),
        (12, "5.4.4", True, False),
        (13, "5.7.1", True, False),
        (14, "5.7.1", True, False),
        (15, "5.2.0", True, False),
        (99, "4.0.0", False, False),
        ("42", "4.0.0", False, False),
        ("oops", "4.0.0", False, False),
    ],
)
def test_from_vonage(code: str | int, status: str, permanent: bool, opt_out: bool) -> None:
    mapped = from_vonage(code)
    assert (mapped.status, mapped.permanent, mapped.opt_out) == (status, permanent, opt_out)


@pytest.mark.parametrize(
    ("code", "status", "permanent", "opt_out", "words"),
    [
        ("40300", "5.7.1", True, True, "STOP"),  # "Blocked due to STOP message"
        (40310, "5.1.1", True, False, "not a valid phone number"),
        ("40001", "5.1.1", True, False, "not a mobile number"),
        ("40002", "4.7.1", False, False, "spam"),
        ("40005", "4.4.7", True, False, "expired"),
        ("40006", "4.4.1", False, False, "not answering"),
        ("40008", "5.0.0", True, False, "did not accept"),
        ("40011", "4.7.1", False, False, "throttled"),
        ("10009", "4.7.0", False, False, "log in"),
        ("49999", "5.0.0", True, False, "error 49999"),
        (None, "5.0.0", True, False, "could not deliver"),
        ("", "5.0.0", True, False, "could not deliver"),
        ("oops", "5.0.0", True, False, "could not deliver"),
    ],
)
def test_from_telnyx(
    code: str | int | None, status: str, permanent: bool, opt_out: bool, words: str
) -> None:
    mapped = from_telnyx(code)
    assert (mapped.status, mapped.permanent, mapped.opt_out) == (status, permanent, opt_out)
    assert words in mapped.reason


def test_only_the_stop_block_is_a_telnyx_opt_out() -> None:
    assert [c for c, m in dsn_codes.TELNYX_ERROR.items() if m.opt_out] == [40300]


@pytest.mark.parametrize(
    ("status", "code", "text", "expected", "permanent"),
    [
        ("delivered", None, None, "2.0.0", False),
        ("DELIVERED", "0", "ok", "2.0.0", False),
        ("failed", None, None, "5.0.0", True),
        ("failed", "E42", None, "5.0.0", True),
        ("failed", "E42", "no such subscriber", "5.0.0", True),
        ("expired", None, None, "4.4.7", True),
        ("accepted", None, None, "4.4.0", False),
        ("bogus", None, None, "4.0.0", False),
    ],
)
def test_from_generic(
    status: str, code: str | None, text: str | None, expected: str, permanent: bool
) -> None:
    mapped = from_generic(status, code, text)
    assert (mapped.status, mapped.permanent) == (expected, permanent)
    if expected != "2.0.0" and (text or code):
        assert (text or f"error {code}") in mapped.reason


def test_carrier_words_are_one_bounded_line() -> None:
    reason = from_generic("failed", None, "bad\r\nX-Injected: yes " + "x" * 500).reason
    assert "\n" not in reason and "\r" not in reason and len(reason) < 200
    assert "\n" not in from_receipt("BAD\r\nX: y", None).reason


def test_doc_carries_the_generated_tables() -> None:
    """docs/delivery-reports.md shows exactly the code's tables (regenerate with
    ``python -m mailsms.mail.dsn_codes``)."""
    doc = DOC.read_text(encoding="utf-8")
    match = re.search(r"<!-- BEGIN dsn_codes -->\n(.*)<!-- END dsn_codes -->", doc, re.DOTALL)
    assert match, "docs/delivery-reports.md lost its generated-table markers"
    assert match.group(1) == dsn_codes.markdown_tables()


def test_failed_telnyx_messages_bounce_with_telnyx_statuses() -> None:
    from mailsms.dispatch.notify import classify

    types = {"tx": "telnyx"}
    invalid = classify("failed", "tx", "telnyx HTTP 400: invalid 'to' (code 40310)", types)
    assert invalid.status == "5.1.1"
    stop = classify("failed", "tx", "tx: blocked due to STOP message (code 40300)", types)
    assert (stop.status, stop.opt_out) == ("5.7.1", True)


def test_failed_vonage_receipts_bounce_with_vonage_statuses() -> None:
    from mailsms.dispatch.notify import classify

    types = {"vg": "vonage"}
    receipt = classify("failed", "vg", "vg: failed (code 9)", types)  # err-code 9: opted out
    assert receipt == dsn_codes.from_vonage(9)
    submit = classify("failed", "vg", "vonage: Non-Whitelisted Destination (code status 6)", types)
    assert submit.status.startswith("5.")  # a submit status is not a receipt err-code
