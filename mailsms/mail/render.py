"""An SMS that a phone sent, rendered as the mail that lands in a person's inbox.

Sits in the inbound flow after the conversation lookup: webhook/SMPP deliver_sm -> store ->
conversation -> **render** -> sign -> relay. Pure: no clock, no I/O; the caller passes the
received time and the jinja2 environment (``mailsms.mail.templates.environment``).

What the mail must do, and how (docs/sms-to-mail.md has the reasoning):

- **Reply goes back as SMS**: ``From`` and ``Reply-To`` are ``<+E164@sms-domain>`` with the
  number for humans as display name.
- **Threads under the mail that started the conversation** in Gmail, Thunderbird and Apple
  Mail: ``In-Reply-To`` is that mail's Message-ID, ``References`` its chain plus its id, the
  subject is ``Re: <its subject>`` (one ``Re:``, however many the original had).
- **Stable Message-ID** from our stored inbound id, so a retried relay is deduplicated.
- **No header injection**: every value comes from a phone, a carrier or an earlier mail, so
  control characters are removed from free text (subject, carrier), ids that are not a
  plain ``<left@right>`` are dropped, our own identifiers are validated and refused, and
  the stdlib ``email`` package (``policy.SMTP``) folds and RFC 2047-encodes what is left.
- **HTML is escaped** whatever the environment's autoescape setting: the HTML template gets
  every string already escaped (``markupsafe.escape``), which autoescape leaves alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from markupsafe import escape

from mailsms.address import human

#: SMTP line ends and folding; 7-bit transfer encodings (quoted-printable or base64, as the
#: email package finds shorter) so no relay has to downgrade 8-bit text, which would break
#: the DKIM body hash.
POLICY: Final = policy.SMTP.clone(cte_type="7bit")
TEXT_TEMPLATE: Final = "inbound/sms.txt.j2"
HTML_TEMPLATE: Final = "inbound/sms.html.j2"

#: Longest References chain kept: the first id (the thread root) and the newest ones.
MAX_REFERENCES: Final = 20
#: Free-text header values are cut here; the email package folds what remains.
MAX_SUBJECT: Final = 500
MAX_CARRIER: Final = 40  # keeps "X-Mailsms-Carrier: ..." on one line

_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_HUMAN = re.compile(r"^[+0-9 ()-]+$")
_INBOUND_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
#: A msg-id we are willing to repeat: ``<left@right>`` in printable ASCII without spaces or
#: inner angle brackets (RFC 5322 section 3.6.4, loosely: real ids are not all dot-atoms).
_MSG_ID = re.compile(r"^<[\x21-\x3b\x3d\x3f-\x7e]{1,250}@[\x21-\x3b\x3d\x3f-\x7e]{1,250}>$")
#: Controls other than TAB/LF, DEL and the C1 block: never legitimate in a header or body.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_HEADER_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_REPLY_PREFIX = re.compile(r"^(?:\s*(?:re|aw|sv)(?:\s*\[\d+\])?\s*:)+\s*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Thread:
    """The conversation this SMS answers: the mail that started it."""

    message_id: str  # Message-ID of that mail, angle brackets kept
    references: tuple[str, ...]  # its References chain (may be empty)
    subject: str  # its decoded subject


@dataclass(frozen=True, slots=True)
class InboundMail:
    """Everything the mail for one received SMS says. ``text`` and ``thread`` are untrusted."""

    inbound_id: str  # our id of the stored inbound SMS (makes the Message-ID stable)
    phone: str  # E.164 of the phone that texted
    our_number: str  # the number / sender id it texted
    domain: str  # the SMS domain: From is <+E164@domain>
    to: str  # the mailbox it goes to
    text: str  # the SMS text
    received_at: float  # epoch seconds
    timezone: str  # IANA name for the Date header and the body, e.g. "Europe/London"
    segments: int
    incomplete: bool  # some parts never arrived
    carrier: str
    thread: Thread | None
    last_outbound: str | None  # the last SMS we sent to this phone, quoted (None: don't)


def message_id_for(inbound_id: str, domain: str) -> str:
    """``<sms.{inbound_id}@{domain}>``: the same for every render of one stored SMS."""
    if not _INBOUND_ID.match(inbound_id):
        raise ValueError(f"inbound id {inbound_id!r} cannot go into a Message-ID")
    return f"<sms.{inbound_id}@{_checked_domain(domain)}>"


def render_inbound(mail: InboundMail, env: jinja2.Environment) -> bytes:
    """The RFC 5322 message (CRLF line ends) for one inbound SMS.

    Raises ``ValueError`` when one of our own fields (numbers, domain, mailbox, id,
    timezone) is malformed; untrusted text is cleaned, never refused.
    """
    if not _E164.match(mail.phone):
        raise ValueError(f"phone {mail.phone!r} is not an E.164 number")
    sender = _sender(mail.phone, _checked_domain(mail.domain))
    when = datetime.fromtimestamp(mail.received_at, _zone(mail.timezone))
    msg = EmailMessage(policy=POLICY)
    msg["From"] = sender
    msg["Reply-To"] = sender
    msg["To"] = _mailbox(mail.to)
    msg["Subject"] = subject_for(mail)
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = message_id_for(mail.inbound_id, mail.domain)
    _thread_headers(msg, mail.thread)
    msg["X-Mailsms-Carrier"] = clean_header(mail.carrier, MAX_CARRIER) or "unknown"
    msg["X-Mailsms-Segments"] = str(int(mail.segments))
    context = template_context(mail, when)
    msg.set_content(env.get_template(TEXT_TEMPLATE).render(context), charset="utf-8")
    html = env.get_template(HTML_TEMPLATE).render(_escaped(context))
    msg.add_alternative(html, subtype="html", charset="utf-8")
    for part in msg.iter_parts():
        del part["MIME-Version"]  # add_alternative leaves one on the part; it belongs on top
    return msg.as_bytes()


def subject_for(mail: InboundMail) -> str:
    """``Re: <thread subject>`` without stacked prefixes, or ``SMS from <number>``."""
    if mail.thread is None:
        return f"SMS from {human(mail.phone)}"
    base = _REPLY_PREFIX.sub("", clean_header(mail.thread.subject, MAX_SUBJECT))
    return f"Re: {base}" if base else "Re:"


def template_context(mail: InboundMail, when: datetime) -> dict[str, Any]:
    """The variables both inbound templates see (documented in docs/sms-to-mail.md)."""
    return {
        "text": clean_body(mail.text),
        "sender": human(mail.phone),
        "phone": mail.phone,
        "our_number": clean_header(human(mail.our_number), MAX_CARRIER),
        "received": when.strftime("%a %d %b %Y %H:%M %Z"),
        "received_iso": when.isoformat(timespec="seconds"),
        "timezone": mail.timezone,
        "segments": int(mail.segments),
        "incomplete": bool(mail.incomplete),
        "carrier": clean_header(mail.carrier, MAX_CARRIER),
        "last_outbound": None if mail.last_outbound is None else clean_body(mail.last_outbound),
        "subject": subject_for(mail),
    }


def clean_header(value: str, limit: int) -> str:
    """Untrusted free text for a header: control characters and line breaks become one
    space, runs of white space collapse, and the result is cut to ``limit`` characters."""
    return " ".join(_HEADER_BREAKS.sub(" ", value).split())[:limit].rstrip()


def clean_body(value: str) -> str:
    """Untrusted text for a body: CRLF/CR become LF, other controls (NUL, ESC, ...) become
    U+FFFD so the reader sees that something was there."""
    return _CONTROLS.sub("\ufffd", value.replace("\r\n", "\n").replace("\r", "\n"))


def _thread_headers(msg: EmailMessage, thread: Thread | None) -> None:
    if thread is None or not _MSG_ID.match(thread.message_id):
        return  # an id we would not repeat verbatim: the mail arrives, unthreaded
    chain = [ref for ref in thread.references if _MSG_ID.match(ref)]
    chain = [ref for ref in chain if ref != thread.message_id] + [thread.message_id]
    if len(chain) > MAX_REFERENCES:
        chain = chain[:1] + chain[-(MAX_REFERENCES - 1) :]
    msg["In-Reply-To"] = thread.message_id
    msg["References"] = " ".join(chain)


def _sender(phone: str, domain: str) -> str:
    """``"+1 555-123-4567" <+15551234567@domain>``, display name always quoted as the
    design asks (Address() would leave it bare: digits, spaces and "+-" are atoms)."""
    name = human(phone)
    if not _HUMAN.match(name):
        return str(Address(display_name=name, addr_spec=f"{phone}@{domain}"))
    return f'"{name}" <{phone}@{domain}>'


def _escaped(context: dict[str, Any]) -> dict[str, Any]:
    return {k: escape(v) if isinstance(v, str) else v for k, v in context.items()}


def _mailbox(address: str) -> Address:
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or _HEADER_BREAKS.search(address) or not _DOMAIN.match(domain):
        raise ValueError(f"recipient {address!r} is not a mailbox")
    try:
        return Address(addr_spec=f"{local}@{domain}")
    except (ValueError, HeaderParseError) as exc:  # InvalidHeaderDefect is a ValueError
        raise ValueError(f"recipient {address!r} is not a mailbox: {exc}") from exc


def _checked_domain(domain: str) -> str:
    if not _DOMAIN.match(domain):
        raise ValueError(f"SMS domain {domain!r} is not a host name")
    return domain


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r}") from exc
