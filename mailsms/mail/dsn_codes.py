"""What a carrier's answer means for the sender: an RFC 3463 status code and plain words.

Delivery reports arrive in each carrier's vocabulary (SMPP command_status and receipt
``stat:``/``err:``, Twilio ``ErrorCode``, Vonage ``err-code``, Telnyx ``errors[].code``,
the generic webhook's ``status``); :mod:`mailsms.mail.dsn` speaks RFC 3463. This module is
the one translation table between them, and ``docs/delivery-reports.md`` shows it (a unit
test checks that the doc still carries exactly :func:`markdown_tables`;
``python -m mailsms.mail.dsn_codes`` prints them).

``Mapped.permanent`` answers "would sending the same SMS again later help?": False means a
later attempt may succeed (the dispatcher may retry until the message's maximum age, then
the bounce says 4.4.7), True means bounce now. It agrees with the first digit of the code
except for ``4.4.7`` (expired), which is final but keeps its RFC 3463 "transient" class,
the way MTAs report a queue lifetime that ran out. ``opt_out`` marks answers that say the
recipient asked not to get messages, so the caller can add the number to the opt-out list.

The SMPP submit table follows the retry decision in :mod:`mailsms.carriers.smpp.status`
(a test holds the two together): a code that module retries has a 4.x.x status here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Mapped:
    """An outcome in mail terms: RFC 3463 ``status``, ``reason`` in words for a person."""

    status: str
    reason: str
    permanent: bool
    opt_out: bool = False


# Reasons are completions of "Your SMS to +1 555-123-4567 could not be delivered: ...".
_NO_SUCH_NUMBER = "the number does not exist or is not in service"
_NOT_MOBILE = "the number is not a mobile number (a landline cannot receive SMS)"
_UNREACHABLE = "the phone was switched off, out of coverage or busy"
_OPTED_OUT = "the recipient has asked not to receive messages from this sender (STOP)"
_FILTERED = "the mobile network filtered the message (spam or content rules)"
_BAD_REQUEST = "the SMS centre rejected a parameter of our request (a gateway problem)"
_SMSC_BUSY = "the SMS centre was too busy to take the message"
_UNKNOWN = "the mobile network reported an error without saying why"


def _m(status: str, reason: str, *, opt_out: bool = False, final: bool | None = None) -> Mapped:
    permanent = status.startswith("5") if final is None else final
    return Mapped(status, reason, permanent, opt_out)


# --- SMPP 3.4 submit_sm_resp command_status (section 5.1.3) ---------------------------------

SMPP_STATUS: dict[int, Mapped] = {
    0x00: _m("2.0.0", "the SMS centre accepted the message"),
    0x01: _m("5.3.4", "the message is too long for the SMS centre"),
    0x02: _m("5.5.0", "the SMS centre did not understand our request (command length)"),
    0x03: _m("5.5.1", "the SMS centre did not understand our request (command id)"),
    0x04: _m("4.4.2", "the connection to the SMS centre was not ready (bind status)"),
    0x05: _m("4.4.2", "the connection to the SMS centre was not ready (already bound)"),
    0x06: _m("5.5.4", _BAD_REQUEST),
    0x07: _m("5.5.4", _BAD_REQUEST),
    0x08: _m("4.3.0", "the SMS centre had a system error"),
    0x0A: _m("5.1.7", "the SMS centre refused our sender id"),
    0x0B: _m("5.1.1", "the number is not a valid destination"),
    0x0C: _m("5.5.4", _BAD_REQUEST),
    0x0D: _m("4.7.0", "the gateway could not log in to the SMS centre"),
    0x0E: _m("5.7.0", "the SMS centre refused the gateway's password"),
    0x0F: _m("5.7.0", "the SMS centre refused the gateway's system id"),
    0x11: _m("5.5.4", _BAD_REQUEST),
    0x13: _m("5.5.4", _BAD_REQUEST),
    0x14: _m("4.3.2", "the SMS centre's queue was full"),
    0x15: _m("5.5.4", _BAD_REQUEST),
    0x33: _m("5.5.4", _BAD_REQUEST),
    0x34: _m("5.5.4", _BAD_REQUEST),
    0x40: _m("5.5.4", _BAD_REQUEST),
    0x42: _m("5.5.4", _BAD_REQUEST),
    0x43: _m("5.5.4", _BAD_REQUEST),
    0x44: _m("5.5.4", _BAD_REQUEST),
    0x45: _m("4.3.0", "the SMS centre could not take the message"),
    0x48: _m("5.1.7", "the SMS centre refused our sender id (type of number)"),
    0x49: _m("5.1.7", "the SMS centre refused our sender id (numbering plan)"),
    0x50: _m("5.1.3", "the SMS centre refused the number's format (type of number)"),
    0x51: _m("5.1.3", "the SMS centre refused the number's format (numbering plan)"),
    0x53: _m("5.7.0", "the SMS centre refused the gateway's system type"),
    0x54: _m("5.5.4", _BAD_REQUEST),
    0x55: _m("5.5.4", _BAD_REQUEST),
    0x58: _m("4.7.1", "the SMS centre throttled us (too many messages at once)"),
    0x61: _m("5.5.4", _BAD_REQUEST),
    0x62: _m("5.5.4", _BAD_REQUEST),
    0x63: _m("5.5.4", _BAD_REQUEST),
    0x64: _m("4.3.0", "the SMS centre had a temporary application error"),
    0x65: _m("5.3.0", "the SMS centre had a permanent application error"),
    0x66: _m("5.7.1", "the SMS centre rejected the message"),
    0x67: _m("4.3.0", "the SMS centre could not answer a query"),
    0xC0: _m("5.5.4", _BAD_REQUEST),
    0xC1: _m("5.5.4", _BAD_REQUEST),
    0xC2: _m("5.5.4", _BAD_REQUEST),
    0xC3: _m("5.5.4", _BAD_REQUEST),
    0xC4: _m("5.5.4", _BAD_REQUEST),
    0xFE: _m("4.4.0", "the SMS centre reported a delivery failure"),
    0xFF: _m("4.0.0", "the SMS centre reported an unknown error"),
}


def from_smpp_status(command_status: int) -> Mapped:
    """A submit_sm_resp refusal. Codes we do not know (vendor 0x400-0x4FF...) are temporary,
    as in :mod:`mailsms.carriers.smpp.status`: retried until the maximum age, not dropped."""
    known = SMPP_STATUS.get(command_status)
    if known is not None:
        return known
    return _m("4.0.0", f"the SMS centre refused the message (code 0x{command_status:08X})")


# --- SMPP delivery receipts (SMPP 3.4 appendix B text, message_state TLV) -------------------

RECEIPT_STAT: dict[str, Mapped] = {
    "DELIVRD": _m("2.0.0", "the message was delivered to the phone"),
    "EXPIRED": _m("4.4.7", "the mobile network gave up: the phone was unreachable", final=True),
    "UNDELIV": _m("5.0.0", "the mobile network could not deliver the message"),
    "REJECTD": _m("5.7.1", "the mobile network rejected the message"),
    "DELETED": _m("5.3.0", "the message was deleted at the SMS centre before delivery"),
    "UNKNOWN": _m("4.0.0", "the SMS centre does not know what became of the message"),
    "ACCEPTD": _m("4.4.0", "the network accepted the message but has not delivered it yet"),
    "ENROUTE": _m("4.4.0", "the message is on its way"),
}


def from_receipt(stat: str, err: str | None) -> Mapped:
    """A receipt's ``stat:`` word; ``err:`` is network-specific, so it only adds detail."""
    base = RECEIPT_STAT.get(stat.strip().upper())
    if base is None:
        return _m("4.0.0", f"the SMS centre sent a receipt we do not understand ({_clip(stat)})")
    code = (err or "").strip().lstrip("0")
    if base.status.startswith("2") or not code:
        return base
    return Mapped(
        base.status,
        f"{base.reason} (network error {_clip(err or '')})",
        base.permanent,
        base.opt_out,
    )


# --- Twilio Message ErrorCode (twilio.com/docs/api/errors) ----------------------------------

TWILIO_ERROR: dict[int, Mapped] = {
    20429: _m("4.7.1", "the SMS provider throttled us (too many requests)"),
    21211: _m("5.1.1", "the number is not a valid phone number"),
    21408: _m("5.7.1", "sending SMS to this country is not enabled for the gateway"),
    21606: _m("5.1.7", "the gateway's sender number cannot send SMS"),
    21608: _m("5.7.1", "the SMS provider account may only send to verified numbers"),
    21610: _m("5.7.1", _OPTED_OUT, opt_out=True),
    21611: _m("4.3.2", "too many messages are queued for the gateway's sender number"),
    21612: _m("5.4.4", "the SMS provider cannot route messages to this number"),
    21614: _m("5.1.1", _NOT_MOBILE),
    21617: _m("5.3.4", "the message is too long for the SMS provider"),
    21635: _m("5.1.1", _NOT_MOBILE),
    30001: _m("4.3.2", "the SMS provider's queue overflowed"),
    30002: _m("5.7.0", "the gateway's SMS provider account is suspended"),
    30003: _m("4.4.1", _UNREACHABLE),
    30004: _m("5.7.1", "the recipient or their network blocks messages from this sender"),
    30005: _m("5.1.1", _NO_SUCH_NUMBER),
    30006: _m("5.1.1", _NOT_MOBILE),
    30007: _m("5.7.1", _FILTERED),
    30008: _m("4.0.0", _UNKNOWN),
    30009: _m("4.4.0", "part of the message was lost on the way"),
    30010: _m("5.3.0", "the message costs more than the gateway's price limit"),
    30034: _m("5.7.1", "the gateway's sender number is not registered for US A2P messaging"),
}

_TWILIO_DONE = {"delivered": "the message was delivered", "read": "the message was read"}
_TWILIO_FAILED = frozenset({"failed", "undelivered", "canceled"})
_TWILIO_PENDING = frozenset({"accepted", "scheduled", "queued", "sending", "sent"})


def from_twilio(error_code: str | int | None, status: str) -> Mapped:
    """A Twilio status callback: ``ErrorCode`` when given, else ``MessageStatus``."""
    number = _int(error_code)
    if number:  # ErrorCode 0 or "" is no error
        known = TWILIO_ERROR.get(number)
        if known is not None:
            return known
        return _m("5.0.0", f"the SMS provider reported error {number}")
    word = status.strip().lower()
    if word in _TWILIO_DONE:
        return _m("2.0.0", _TWILIO_DONE[word])
    if word in _TWILIO_FAILED:
        return _m("5.0.0", f"the SMS provider reported the message {word}")
    if word in _TWILIO_PENDING:
        return _m("4.4.0", "the message is on its way")
    return _m("4.0.0", f"the SMS provider sent a status we do not understand ({_clip(word)})")


# --- Vonage (Nexmo) SMS API delivery receipt err-code ---------------------------------------

VONAGE_ERROR: dict[int, Mapped] = {
    0: _m("2.0.0", "the message was delivered"),
    1: _m("4.0.0", _UNKNOWN),
    2: _m("4.4.1", _UNREACHABLE),
    3: _m("5.1.1", "the number is no longer in service"),
    4: _m("5.2.1", "the recipient's line is barred from receiving messages"),
    5: _m("5.4.4", "the number's network could not be determined (number portability)"),
    6: _m("5.7.1", _FILTERED),
    7: _m("4.4.1", _UNREACHABLE),
    8: _m("4.4.0", "a mobile network error stopped the message"),
    9: _m("5.7.1", _OPTED_OUT, opt_out=True),
    10: _m("5.6.0", "the mobile network refused the message's format or encoding"),
    11: _m("5.4.4", "the SMS provider has no route to this number"),
    12: _m("5.4.4", "the SMS provider could not reach this number's network"),
    13: _m("5.7.1", "the recipient may not receive this message (age restriction)"),
    14: _m("5.7.1", "the recipient's network blocks SMS to this number"),
    15: _m("5.2.0", "the recipient's pre-paid account has insufficient funds"),
    99: _m("4.0.0", "the SMS provider reported a general error"),
}


def from_vonage(err_code: str | int) -> Mapped:
    number = _int(err_code)
    known = VONAGE_ERROR.get(number) if number is not None else None
    if known is not None:
        return known
    return _m("4.0.0", f"the SMS provider reported error {_clip(str(err_code))}")


# --- Telnyx Messaging errors[].code (developers.telnyx.com/docs/messaging/messages/error-codes)
# The submit decision in mailsms/carriers/telnyx.py (PERMANENT / TEMPORARY) agrees with
# ``permanent`` here; a test holds the two together.

TELNYX_ERROR: dict[int, Mapped] = {
    10002: _m("5.1.1", "the number is not a valid phone number"),
    10007: _m("4.3.0", "the SMS provider had an unexpected error"),
    10008: _m("4.3.0", "the SMS provider timed out"),
    10009: _m("4.7.0", "the gateway could not log in to the SMS provider"),
    10010: _m("4.7.0", "the SMS provider refused the gateway's request (permissions)"),
    10011: _m("4.7.1", "the SMS provider throttled us (too many requests)"),
    10016: _m("5.1.3", "the number is not in international (E.164) format"),
    20100: _m("4.3.0", "the gateway's SMS provider account has run out of credit"),
    40001: _m("5.1.1", _NOT_MOBILE),
    40002: _m("4.7.1", "the mobile network's spam filter held the message back for now"),
    40003: _m("5.7.1", "the mobile network blocks the gateway's sender number as spam"),
    40004: _m("4.0.0", "the recipient's network rejected the message without saying why"),
    40005: _m("4.4.7", "the mobile network gave up: the message expired on its way", final=True),
    40006: _m("4.4.1", "the recipient's mobile network was not answering"),
    40007: _m("5.4.6", "the message went round in a loop between networks"),
    40008: _m("5.0.0", "the recipient's network did not accept the message"),
    40009: _m("5.6.0", "the mobile network refused the message's content or encoding"),
    40010: _m(
        "5.7.1", "the gateway's sender number is not registered for US A2P (10DLC) messaging"
    ),
    40011: _m("4.7.1", "the mobile network throttled the gateway's messages"),
    40012: _m("5.1.1", "the number is not a valid destination"),
    40013: _m("5.1.7", "the mobile network refused the gateway's sender number"),
    40014: _m("4.4.7", "the message expired in the SMS provider's queue", final=True),
    40015: _m("5.7.1", "the SMS provider's spam filter blocked the message"),
    40016: _m("4.7.1", "the mobile network's daily limit for the gateway's sender was reached"),
    40017: _m("5.7.1", _FILTERED),
    40018: _m("4.7.1", "the mobile network throttled the gateway's messages"),
    40300: _m("5.7.1", _OPTED_OUT, opt_out=True),
    40301: _m("5.1.1", "the number cannot receive this type of message"),
    40302: _m("5.3.4", "the message is too long for the SMS provider"),
    40304: _m("5.5.4", "the SMS provider rejected a parameter of our request (a gateway problem)"),
    40305: _m("5.1.7", "the SMS provider refused the gateway's sender number"),
    40306: _m("5.1.7", "the SMS provider refused the gateway's sender id (not configured)"),
    40309: _m("5.7.1", "sending SMS to this country is not enabled for the gateway"),
    40310: _m("5.1.1", "the number is not a valid phone number"),
    40312: _m("4.7.0", "the gateway's SMS provider messaging profile is disabled"),
    40314: _m("4.7.0", "messaging is disabled on the gateway's SMS provider account"),
    40316: _m("5.6.0", "the message had no text"),
    40318: _m("4.3.2", "the SMS provider's queue was full"),
    40322: _m("5.7.1", "the SMS provider blocked the message because of its content"),
}


def from_telnyx(code: str | int | None) -> Mapped:
    """A Telnyx error code, from a submit refusal or a ``message.finalized`` event's
    ``errors[0].code``. The message has already failed at Telnyx when this is asked, so a
    code we do not know bounces (``5.0.0``), as for Twilio."""
    number = _int(code)
    if not number:
        return _m("5.0.0", "the SMS provider could not deliver the message")
    known = TELNYX_ERROR.get(number)
    if known is not None:
        return known
    return _m("5.0.0", f"the SMS provider reported error {number}")


# --- The generic status webhook (DESIGN.md: delivered | failed | expired | accepted) --------

GENERIC_STATUS: dict[str, Mapped] = {
    "delivered": _m("2.0.0", "the message was delivered"),
    "failed": _m("5.0.0", "the carrier could not deliver the message"),
    "expired": _m("4.4.7", "the carrier gave up: the phone was unreachable", final=True),
    "accepted": _m("4.4.0", "the message is on its way"),
}


def from_generic(status: str, error_code: str | None, error_text: str | None) -> Mapped:
    """The generic webhook; ``error_text`` (the carrier's words) is added to the reason."""
    base = GENERIC_STATUS.get(status.strip().lower())
    if base is None:
        return _m("4.0.0", f"the carrier sent a status we do not understand ({_clip(status)})")
    detail = error_text or (f"error {error_code}" if error_code else None)
    if base.status.startswith("2") or not detail:
        return base
    return Mapped(base.status, f"{base.reason} ({_clip(detail)})", base.permanent, base.opt_out)


# --- helpers and the documentation tables ----------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _clip(text: str, limit: int = 120) -> str:
    """Carrier text on one line and of bounded length (it ends up in a mail body)."""
    flat = _CONTROL.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _int(value: str | int | None) -> int | None:
    if isinstance(value, int):
        return value
    if value is None or not value.strip():
        return None
    try:
        return int(value.strip(), 0) if value.strip().lower().startswith("0x") else int(value)
    except ValueError:
        return None


def _rows(title: str, header: str, rows: list[tuple[str, Mapped]]) -> list[str]:
    lines = [f"### {title}", "", f"| {header} | status | kind | reason |", "|---|---|---|---|"]
    for key, mapped in rows:
        kind = "permanent" if mapped.permanent else "temporary"
        if mapped.status.startswith("2"):
            kind = "success"
        elif mapped.status == "4.4.7":
            kind = "final (expired)"
        if mapped.opt_out:
            kind += ", opt-out"
        lines.append(f"| {key} | `{mapped.status}` | {kind} | {mapped.reason} |")
    return [*lines, ""]


def markdown_tables() -> str:
    """The mapping tables as Markdown, for docs/delivery-reports.md."""
    from_smpp = [(f"`0x{code:02X}`", m) for code, m in sorted(SMPP_STATUS.items())]
    receipt = list(RECEIPT_STAT.items())
    twilio = [(str(code), m) for code, m in sorted(TWILIO_ERROR.items())]
    vonage = [(str(code), m) for code, m in sorted(VONAGE_ERROR.items())]
    telnyx = [(str(code), m) for code, m in sorted(TELNYX_ERROR.items())]
    generic = list(GENERIC_STATUS.items())
    parts = [
        *_rows("SMPP submit_sm_resp command_status", "command_status", from_smpp),
        "Any other command_status: `4.0.0`, retried.",
        "",
        *_rows("SMPP delivery receipt stat", "stat", receipt),
        "A non-zero `err:` is added to the reason. Any other stat word: `4.0.0`.",
        "",
        *_rows("Twilio ErrorCode", "ErrorCode", twilio),
        "Any other ErrorCode: `5.0.0`. No ErrorCode: `delivered`/`read` `2.0.0`,"
        " `failed`/`undelivered`/`canceled` `5.0.0`, `queued`/`sending`/`sent`/..."
        " `4.4.0` (not final).",
        "",
        *_rows("Vonage err-code", "err-code", vonage),
        "Any other err-code: `4.0.0`, retried.",
        "",
        *_rows("Telnyx errors[].code", "code", telnyx),
        "Any other code: `5.0.0`. A `delivery_failed`/`sending_failed` event without a code:"
        " `5.0.0`.",
        "",
        *_rows("Generic status webhook", "status", generic),
        "`error_text` (or `error_code`) is added to the reason.",
    ]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    print(markdown_tables(), end="")
