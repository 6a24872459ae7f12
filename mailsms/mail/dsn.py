"""Delivery status notifications (RFC 3464) for SMS, and the RFC 3461 parameters that ask for them.

A sender who mails an SMS learns what became of it the way mail always told them: a bounce
when it failed, a warning when it hangs, a success notice when they asked for one with
``NOTIFY=SUCCESS``. This module is the pure part of that: it reads the SMTP parameters
(``RET``/``ENVID`` on MAIL, ``NOTIFY``/``ORCPT`` on RCPT) into :class:`DsnParams`, decides with
:meth:`DsnParams.wants` which notifications the client asked for, and :func:`build_dsn` turns
a :class:`DsnReport` into the bytes of a ``multipart/report`` message, ready to send from the
null sender. The store, the clock and the relay queue are the caller's (see
docs/delivery-reports.md); the status codes come from :mod:`mailsms.mail.dsn_codes`.

Everything in a DSN that came from outside (numbers, SMS text, carrier diagnostics, the
original message) goes through the :mod:`email` package, never into hand-glued header
text: header values are flattened to one line first and the policy refuses line breaks,
and the generator picks a MIME boundary that no body line equals.
"""

from __future__ import annotations

import re
import textwrap
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, Message, MIMEPart
from email.parser import BytesParser
from email.utils import format_datetime
from typing import Literal

import jinja2

from mailsms.address import human

Action = Literal["failed", "delayed", "delivered"]
Ret = Literal["FULL", "HDRS"]

_NOTIFY_KEYWORDS = ("SUCCESS", "FAILURE", "DELAY")  # canonical order
_ACTION_KEYWORD: dict[str, str] = {"failed": "FAILURE", "delayed": "DELAY", "delivered": "SUCCESS"}
_ENVID_MAX = 100  # RFC 3461 section 4.4
_ORCPT_MAX = 500  # RFC 3461 section 4.2
_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+$")  # RFC 5322 atext
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x80-\x9f\u2028\u2029]+")
_POLICY = policy.SMTP  # CRLF line ends, refuses CR/LF inside header values


# --- RFC 3461: the SMTP parameters ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DsnParams:
    """What the SMTP client asked for (RFC 3461), stored with each message.

    ``notify`` is ``()`` when the client gave no NOTIFY: the RFC default is failure
    notices, delay notices at our discretion (we send them), no success notices.
    ``envid`` and ``orcpt`` are already xtext-decoded; ``orcpt`` keeps its address type,
    ``"rfc822;+15551234567@sms.example.com"``.
    """

    ret: Ret | None = None
    envid: str | None = None
    notify: tuple[str, ...] = ()
    orcpt: str | None = None

    def wants(self, action: Action) -> bool:
        """Whether a DSN for ``action`` was asked for (RFC 3461 section 4.1)."""
        if not self.notify:
            return action in ("failed", "delayed")
        return _ACTION_KEYWORD[action] in self.notify

    def to_dict(self) -> dict[str, object]:
        """A JSON-able form for the store (``NewMessage.dsn``)."""
        return {
            "ret": self.ret,
            "envid": self.envid,
            "notify": list(self.notify),
            "orcpt": self.orcpt,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> DsnParams:
        """The inverse of :meth:`to_dict`; missing keys are the defaults."""
        ret = data.get("ret")
        notify = data.get("notify") or ()
        envid, orcpt = data.get("envid"), data.get("orcpt")
        if ret not in (None, "FULL", "HDRS") or not isinstance(notify, list | tuple):
            raise ValueError(f"not stored DSN parameters: {data!r}")
        return cls(
            ret=ret,
            envid=envid if isinstance(envid, str) else None,
            notify=tuple(str(word) for word in notify),
            orcpt=orcpt if isinstance(orcpt, str) else None,
        )


def should_notify(envelope_sender: str, params: DsnParams, action: Action) -> bool:
    """:meth:`DsnParams.wants`, and never a DSN to the null sender (RFC 3461 section 6.2)."""
    sender = envelope_sender.strip().removeprefix("<").removesuffix(">")
    return bool(sender) and params.wants(action)


def xtext_decode(value: str) -> str:
    """Decode RFC 3461 xtext: ``+2B`` is ``+``. Raises :class:`ValueError` saying where."""
    out = bytearray()
    i = 0
    while i < len(value):
        char = value[i]
        if char == "+":
            digits = value[i + 1 : i + 3]
            if len(digits) != 2 or not re.fullmatch(r"[0-9A-F]{2}", digits):
                raise ValueError(
                    f"bad xtext escape at position {i}: '+' must be followed by "
                    f"two upper-case hex digits, got {digits!r}"
                )
            out.append(int(digits, 16))
            i += 3
            continue
        if not ("!" <= char <= "~") or char == "=":
            raise ValueError(f"character {char!r} at position {i} is not allowed in xtext")
        out.append(ord(char))
        i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("xtext does not decode to UTF-8 text") from None


def xtext_encode(value: str) -> str:
    """Encode text as RFC 3461 xtext (for tests, and for relaying the parameters onwards)."""
    return "".join(
        chr(b) if 33 <= b <= 126 and b not in (0x2B, 0x3D) else f"+{b:02X}"
        for b in value.encode("utf-8")
    )


def _split(options: list[str]) -> dict[str, str]:
    """``KEY=value`` options as an upper-case-keyed dict; a repeated DSN keyword is refused."""
    seen: dict[str, str] = {}
    for option in options:
        key, eq, value = option.partition("=")
        key = key.strip().upper()
        if key in seen:
            raise ValueError(f"{key} given more than once")
        seen[key] = value if eq else ""
    return seen


def parse_mail_params(options: list[str]) -> tuple[Ret | None, str | None]:
    """``RET=`` and ``ENVID=`` from the MAIL command's parameters; others are ignored.

    Raises :class:`ValueError` with the reason, for a ``501 5.5.4`` reply.
    """
    given = {k: v for k, v in _split(options).items() if k in ("RET", "ENVID")}
    ret: Ret | None = None
    if "RET" in given:
        word = given["RET"].upper()
        if word not in ("FULL", "HDRS"):
            raise ValueError(f"RET must be FULL or HDRS, not {given['RET']!r}")
        ret = "FULL" if word == "FULL" else "HDRS"
    envid = None
    if "ENVID" in given:
        raw = given["ENVID"]
        if not raw:
            raise ValueError("ENVID needs a value")
        if len(raw) > _ENVID_MAX:
            raise ValueError(f"ENVID is longer than {_ENVID_MAX} characters")
        envid = xtext_decode(raw)
        if not all(" " <= c <= "~" for c in envid):
            raise ValueError("ENVID must decode to printable US-ASCII")
    return ret, envid


def parse_rcpt_params(options: list[str]) -> tuple[tuple[str, ...], str | None]:
    """``NOTIFY=`` and ``ORCPT=`` from a RCPT command's parameters; others are ignored.

    NOTIFY comes back in canonical order (``("SUCCESS", "FAILURE", "DELAY")``, or
    ``("NEVER",)``); ORCPT as ``addr-type;decoded-address``. Raises :class:`ValueError`.
    """
    given = {k: v for k, v in _split(options).items() if k in ("NOTIFY", "ORCPT")}
    notify: tuple[str, ...] = ()
    if "NOTIFY" in given:
        notify = _parse_notify(given["NOTIFY"])
    orcpt = _parse_orcpt(given["ORCPT"]) if "ORCPT" in given else None
    return notify, orcpt


def _parse_notify(value: str) -> tuple[str, ...]:
    words = [w.strip().upper() for w in value.split(",")]
    if not value or "" in words:
        raise ValueError(f"NOTIFY needs a comma-separated list of keywords, got {value!r}")
    if "NEVER" in words:
        if len(words) > 1:
            raise ValueError("NOTIFY=NEVER cannot be combined with other keywords")
        return ("NEVER",)
    unknown = [w for w in words if w not in _NOTIFY_KEYWORDS]
    if unknown:
        raise ValueError(
            f"unknown NOTIFY keyword {unknown[0]!r} (allowed: NEVER, or SUCCESS, FAILURE, DELAY)"
        )
    return tuple(k for k in _NOTIFY_KEYWORDS if k in words)


def _parse_orcpt(value: str) -> str:
    if len(value) > _ORCPT_MAX:
        raise ValueError(f"ORCPT is longer than {_ORCPT_MAX} characters")
    addr_type, semi, encoded = value.partition(";")
    if not semi or not _ATOM.match(addr_type):
        raise ValueError(f"ORCPT must be addr-type;xtext (e.g. rfc822;...), got {value!r}")
    if not encoded:
        raise ValueError("ORCPT has an empty address")
    address = xtext_decode(encoded)
    if _CONTROL.search(address) or " " in address:
        raise ValueError(
            "ORCPT address decodes to spaces or control characters "
            "(a literal '+' must be written +2B)"
        )
    return f"{addr_type};{address}"


# --- RFC 3464: the report ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DsnReport:
    """Everything one DSN says, for one recipient (one SMS) of one message."""

    action: Action
    reporting_mta: str
    from_domain: str
    envelope_sender: str
    final_recipient: str
    number: str
    status: str
    diagnostic: str | None
    reason: str
    message_id: str
    text: str
    arrival: float
    last_attempt: float | None
    params: DsnParams
    original: bytes | None
    will_retry_until: float | None = None


_SUBJECT: dict[str, str] = {
    "failed": "Undelivered SMS to {number}",
    "delayed": "Delayed SMS to {number}",
    "delivered": "SMS delivered to {number}",
}
_STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
_QUOTE_CHARS = 480  # about three SMS segments: enough to recognise the message
_QUOTE_LINES = 12


def build_dsn(report: DsnReport, env: jinja2.Environment, *, now: float | None = None) -> bytes:
    """The DSN as a complete RFC 5322 message with CRLF line ends, to send from ``<>``.

    ``now`` is the Date header's time (the clock is the caller's; default: the current time).
    Raises :class:`ValueError` for a report that must not become a DSN (null sender, a
    status code whose class contradicts the action, a malformed host name).
    """
    _check(report)
    # A sender who used SMTPUTF8 (non-ASCII local part) can only be written to in kind.
    top = _POLICY if report.envelope_sender.isascii() else policy.SMTPUTF8
    msg = EmailMessage(policy=top)
    _headers(msg, report, time.time() if now is None else now)
    msg.set_type("multipart/report")
    msg.set_param("report-type", "delivery-status")
    returned = _returned_part(report)
    parts: list[Message | str] = [_human_part(report, env), _status_part(report)]
    msg.set_payload(parts if returned is None else [*parts, returned])
    return msg.as_bytes(policy=top)


def _check(report: DsnReport) -> None:
    sender = report.envelope_sender.strip().removeprefix("<").removesuffix(">")
    if not sender:
        raise ValueError("no DSN is ever sent to the null sender")
    if not _STATUS.match(report.status):
        raise ValueError(f"{report.status!r} is not an RFC 3463 status code")
    expected = {"failed": "45", "delayed": "4", "delivered": "2"}[report.action]
    if report.status[0] not in expected:
        raise ValueError(f"status {report.status} does not fit action {report.action}")
    for name in ("reporting_mta", "from_domain"):
        if not _HOST.match(getattr(report, name)):
            raise ValueError(f"{name} {getattr(report, name)!r} is not a host name")


def _headers(msg: EmailMessage, report: DsnReport, now: float) -> None:
    number = _oneline(human(_oneline(report.number)))
    msg["From"] = Address("Mail Delivery System", "MAILER-DAEMON", report.from_domain)
    sender = report.envelope_sender.strip().removeprefix("<").removesuffix(">")
    msg["To"] = _one_address(sender)
    msg["Subject"] = _SUBJECT[report.action].format(number=number)
    msg["Date"] = _date(now)
    msg["Message-ID"] = f"<{_token(report.message_id)}.{report.action}@{report.from_domain}>"
    original_id = _original_message_id(report.original)
    if original_id:
        msg["In-Reply-To"] = original_id
        msg["References"] = original_id
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Mailsms-Id"] = _token(report.message_id)
    msg["MIME-Version"] = "1.0"
    msg["Content-Type"] = "multipart/report"


def _human_part(report: DsnReport, env: jinja2.Environment) -> MIMEPart:
    quoted, truncated = _quote(report.text)
    body = env.get_template(f"dsn/{report.action}.txt.j2").render(
        number=_oneline(human(_oneline(report.number))),
        address=_oneline(report.final_recipient),
        reason=_oneline(report.reason),
        status=report.status,
        diagnostic=_diagnostic(report.diagnostic) if report.diagnostic else None,
        quoted=quoted,
        truncated=truncated,
        message_id=_token(report.message_id),
        arrival=_date(report.arrival),
        last_attempt=_date(report.last_attempt) if report.last_attempt else None,
        will_retry_until=_date(report.will_retry_until) if report.will_retry_until else None,
        reporting_mta=report.reporting_mta,
    )
    part = MIMEPart(policy=_POLICY)
    part.set_content(body, charset="utf-8", cte=_cte(body))
    return part


def _status_part(report: DsnReport) -> MIMEPart:
    """``message/delivery-status``: a per-message block, then one per-recipient block."""
    per_message = Message(policy=_POLICY)
    per_message["Reporting-MTA"] = f"dns; {report.reporting_mta}"
    if report.params.envid:
        per_message["Original-Envelope-Id"] = _ascii(report.params.envid)
    per_message["Arrival-Date"] = _date(report.arrival)
    recipient = Message(policy=_POLICY)
    if report.params.orcpt:
        addr_type, _, address = report.params.orcpt.partition(";")
        recipient["Original-Recipient"] = f"{_ascii(addr_type)};{_ascii(address)}"
    recipient["Final-Recipient"] = f"rfc822; {_ascii(report.final_recipient)}"
    recipient["Action"] = report.action
    recipient["Status"] = report.status
    if report.diagnostic:
        recipient["Diagnostic-Code"] = _diagnostic(report.diagnostic)
    if report.last_attempt:
        recipient["Last-Attempt-Date"] = _date(report.last_attempt)
    if report.action == "delayed" and report.will_retry_until:
        recipient["Will-Retry-Until"] = _date(report.will_retry_until)
    part = MIMEPart(policy=_POLICY)
    part["Content-Type"] = "message/delivery-status"
    part.set_payload([per_message, recipient])
    return part


def _returned_part(report: DsnReport) -> MIMEPart | None:
    """The original as RET asked: all of it only for a failure with RET=FULL (RFC 3461
    section 4.3: a DSN that reports no failure returns the headers only)."""
    if not report.original:
        return None
    part = MIMEPart(policy=_POLICY)
    if report.params.ret == "FULL" and report.action == "failed":
        original = BytesParser(policy=policy.compat32).parsebytes(report.original)
        part["Content-Type"] = "message/rfc822"
        if not report.original.isascii():
            part["Content-Transfer-Encoding"] = "8bit"
        part.set_payload([original])
        return part
    headers = _header_block(report.original)
    part.set_content(headers, subtype="rfc822-headers", charset="utf-8", cte=_cte(headers))
    return part


# --- helpers ----------------------------------------------------------------------------------


def _header_block(original: bytes) -> str:
    """The original's header section (up to the first empty line), as text."""
    match = re.search(rb"\r?\n\r?\n", original)
    head = original[: match.start()] if match else original
    text = head.decode("utf-8", errors="replace").replace("\r\n", "\n")
    return text.rstrip("\n") + "\n"


def _one_address(sender: str) -> Address:
    """The envelope sender as one address; anything else (a list, a header) raises."""
    if sender.isascii():
        return Address(addr_spec=sender)
    # The stdlib parser refuses non-ASCII local parts even under SMTPUTF8: check by hand.
    local, at, domain = sender.rpartition("@")
    if not local or not at or re.search(r'[\s<>()\[\],;:"\\@\x00-\x1f\x7f]', local + domain):
        raise ValueError(f"{sender!r} is not one address")
    return Address(username=local, domain=domain)


def _original_message_id(original: bytes | None) -> str | None:
    if not original:
        return None
    parsed = BytesParser(policy=policy.compat32).parsebytes(original, headersonly=True)
    value = str(parsed.get("Message-ID", "")).strip()
    return value if re.fullmatch(r"<[!-;=?-~]{1,250}>", value) else None


def _quote(text: str) -> tuple[list[str], bool]:
    """The SMS as quoted lines, cut at a word boundary when long."""
    clean = text.replace("\r\n", "\n").replace("\r", "\n")
    clean = "".join(c for c in clean if c in "\n\t" or not _CONTROL.match(c)).strip()
    truncated = len(clean) > _QUOTE_CHARS
    if truncated:
        cut = clean[:_QUOTE_CHARS]
        space = cut.rfind(" ")
        clean = (cut[:space] if space > _QUOTE_CHARS // 2 else cut).rstrip()
    lines = [piece for line in clean.split("\n") for piece in textwrap.wrap(line, 72) or [""]]
    if len(lines) > _QUOTE_LINES:
        lines, truncated = lines[:_QUOTE_LINES], True
    return lines, truncated


def _oneline(value: str) -> str:
    """Untrusted text for a header or a one-line slot: control characters become spaces."""
    return re.sub(r"\s+", " ", _CONTROL.sub(" ", value)).strip()


def _ascii(value: str) -> str:
    """DSN fields are US-ASCII (RFC 3464); anything else is escaped, not dropped."""
    return _oneline(value).encode("ascii", "backslashreplace").decode("ascii")


def _diagnostic(value: str) -> str:
    """``type; text``. Types other than the registered ``smtp`` get the ``X-`` prefix that
    RFC 3464 asks for unregistered names (``smpp; ...`` -> ``X-smpp; ...``)."""
    kind, semi, text = _ascii(value).partition(";")
    kind = kind.strip()
    if not semi or not _ATOM.match(kind):
        return f"X-mailsms; {_ascii(value)}"
    if kind.lower() != "smtp" and not kind.lower().startswith("x-"):
        kind = "X-" + kind
    return f"{kind}; {text.strip()}"


def _token(value: str) -> str:
    """Our message id in a Message-ID or header: only id-safe characters survive."""
    return re.sub(r"[^A-Za-z0-9._-]", "", value) or "unknown"


def _cte(text: str) -> str:
    """7bit when it is (RFC 5322 line limit included), else quoted-printable: a DSN must
    pass relays without 8BITMIME."""
    fits = text.isascii() and all(len(line) <= 998 for line in text.splitlines())
    return "7bit" if fits else "quoted-printable"


def _date(epoch: float) -> str:
    """RFC 5322 date-time in UTC with a numeric zone (``+0000``)."""
    return format_datetime(datetime.fromtimestamp(epoch, UTC))
