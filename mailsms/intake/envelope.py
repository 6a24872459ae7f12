"""The envelope of a mail that arrives without one: a message read from an IMAP mailbox.

SMTP tells us the sender and the recipients; a mailbox only holds the header. Recipients
are the addresses in our domains from the headers the delivering MTA and the author wrote
(``X-Original-To`` and ``Delivered-To`` first, as Postfix and Dovecot record the envelope
there, then ``To``, ``Cc``, ``Resent-To``), in that order without repeats. The sender is
the ``From`` address: what the author's mail client wrote and where a reply belongs.

``From`` is the author's own claim. With ``authserv_id`` set, it counts only when an
``Authentication-Results`` header (RFC 8601) that our own MTA added, recognised by its
authserv-id, says the From domain passed DMARC, or DKIM with ``header.d`` that domain, or
SPF with ``smtp.mailfrom`` in that domain. The first such header is the one that counts:
an MTA that adds them removes any with its own id that arrived from outside (Postfix with
OpenDMARC/OpenDKIM does), so later ones may be forged.

Pure functions over bytes; Hypothesis tests feed them arbitrary headers.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses

_RECIPIENT_HEADERS = ("X-Original-To", "Delivered-To", "To", "Cc", "Resent-To")
_COMMENT = re.compile(r"\([^()]*\)")
_METHOD = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*=\s*([A-Za-z0-9_-]+)")
_PROPERTY = re.compile(r"([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)\s*=\s*(\"[^\"]*\"|[^\s;]+)")


@dataclass(frozen=True, slots=True)
class MailboxEnvelope:
    """What a mailbox message says about its envelope."""

    sender: str  # the From address, "" when there is none to be read
    recipients: tuple[str, ...]  # addresses in our domains, header order, no repeats
    null_return_path: bool  # Return-Path: <>, a bounce or other automatic report
    message_id: str | None


def read_envelope(raw: bytes, domains: frozenset[str] | tuple[str, ...]) -> MailboxEnvelope:
    """The envelope of ``raw`` as far as its header tells it (never raises)."""
    header = _header(raw)
    ours = {d.lower() for d in domains}
    recipients: list[str] = []
    seen: set[str] = set()
    for name in _RECIPIENT_HEADERS:
        for address in _addresses(header, name):
            _, _, domain = address.rpartition("@")
            if domain.lower() in ours and address.lower() not in seen:
                seen.add(address.lower())
                recipients.append(address)
    senders = _addresses(header, "From")
    return_path = [str(v).strip() for v in _values(header, "Return-Path")]
    message_id = next(iter(_values(header, "Message-ID")), None)
    return MailboxEnvelope(
        sender=senders[0] if senders else "",
        recipients=tuple(recipients),
        null_return_path=bool(return_path) and return_path[0].replace(" ", "") == "<>",
        message_id=str(message_id).strip() if message_id is not None else None,
    )


def authenticated(raw: bytes, authserv_id: str, sender: str) -> str | None:
    """None when our MTA's first Authentication-Results header vouches for the domain of
    ``sender``; otherwise why not (a sentence for the log)."""
    _, _, domain = sender.rpartition("@")
    domain = domain.lower()
    if not domain:
        return "no From address"
    for value in _values(_header(raw), "Authentication-Results"):
        text = _COMMENT.sub(" ", str(value))
        head, _, rest = text.partition(";")
        if (head.split() or [""])[0].lower() != authserv_id.lower():  # "id [version]"
            continue
        for resinfo in rest.split(";"):
            if _passes(resinfo, domain):
                return None
        return f"Authentication-Results from {authserv_id} show no pass for {domain}"
    return f"no Authentication-Results header from {authserv_id}"


def _passes(resinfo: str, domain: str) -> bool:
    """dmarc=pass for the From domain, dkim=pass signed by it, spf=pass for a bounce
    address in it."""
    m = _METHOD.match(resinfo)
    if m is None or m[2].lower() != "pass":
        return False
    method = m[1].lower()
    props: dict[str, str] = {
        str(k).lower(): str(v).strip('"').lower() for k, v in _PROPERTY.findall(resinfo[m.end() :])
    }
    if method == "dmarc":
        return props.get("header.from", domain) == domain
    if method == "dkim":
        signer = props.get("header.d") or props.get("header.i", "").rpartition("@")[2]
        return signer == domain
    if method == "spf":
        mailfrom = props.get("smtp.mailfrom", "")
        return mailfrom.rpartition("@")[2] == domain
    return False


def _header(raw: bytes) -> EmailMessage:
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    head = raw if end < 0 else raw[: end + 2]
    msg = email.message_from_bytes(head, policy=email.policy.compat32)
    return msg  # type: ignore[return-value]  # compat32: plain strings, never raises


def _values(header: EmailMessage, name: str) -> list[str]:
    out = []
    for value in header.get_all(name) or []:
        text = str(value)
        if isinstance(value, email.header.Header):
            text = str(email.header.make_header(email.header.decode_header(value)))
        out.append(text.replace("\r", "").replace("\n", " "))
    return out


def _addresses(header: EmailMessage, name: str) -> list[str]:
    """The addr-specs of a header's address list, invalid ones left out."""
    out = []
    for _, address in getaddresses(_values(header, name)):
        address = address.strip()
        local, at, domain = address.rpartition("@")
        if at and local and domain and " " not in address:
            out.append(address)
    return out
