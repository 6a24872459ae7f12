"""From the raw bytes of a mail to the text of the SMS it becomes.

The mail-to-SMS flow is: intake (SMTP/LMTP) -> **parse** -> policy -> encode
(GSM-7/UCS-2, segments) -> store -> dispatch. This module is the parse step:
pure, no I/O, and it must never fail on hostile bytes with anything but
:class:`NoTextError`, because the intake turns that into a clean SMTP reply.

Steps, each a small function below:

1. parse with the ``compat32`` policy (about 15x cheaper than
   ``policy.default``) and decode the few headers we need ourselves;
2. walk the MIME tree to the body: text/plain wins in multipart/alternative,
   HTML only without it; related resources are not attachments, other
   non-body leaves are counted;
3. decode transfer encoding and charset (:mod:`mailsms.mail.charset`), turn
   HTML into text (:mod:`mailsms.mail.html`), cut quotes, signatures and
   cut-off markers (:mod:`mailsms.mail.quotes`), normalise whitespace;
4. apply the subject policy, note attachments, refuse empty text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from email.utils import collapse_rfc2231_value
from typing import Literal

from mailsms.errors import MailsmsError
from mailsms.mail import quotes
from mailsms.mail.charset import decode_bytes, decode_header_value

SubjectPolicy = Literal["auto", "ignore", "prepend", "only"]
Source = Literal["plain", "html", "subject"]
_SUBJECT_POLICIES = ("auto", "ignore", "prepend", "only")

_MAX_DEPTH = 16
_MAX_PARTS = 256
_PARSER = BytesParser(policy=compat32)


@dataclass(frozen=True, slots=True)
class BodyOptions:
    """How a body becomes SMS text; each field is a config key (see docs/mail-to-sms.md).

    ``signature_patterns`` are regexes searched in each line: the first
    matching line and everything below it are cut. ``cutoff_markers`` are
    compared with whole trimmed lines, case-insensitively. Bad values raise
    ValueError here, at configuration time, never later in :func:`extract`.
    """

    subject: SubjectPolicy = "auto"
    note_attachments: bool = True
    strip_quotes: bool = True
    strip_signatures: bool = True
    signature_patterns: tuple[str, ...] = ()
    cutoff_markers: tuple[str, ...] = ("--end--",)

    def __post_init__(self) -> None:
        if self.subject not in _SUBJECT_POLICIES:
            raise ValueError(f"subject must be one of {_SUBJECT_POLICIES}, not {self.subject!r}")
        quotes.compile_patterns(tuple(self.signature_patterns))


class NoTextError(MailsmsError, ValueError):
    """No text could be extracted: refuse the mail rather than send an empty SMS.

    ``auto_generated`` tells the intake whether the refused mail was an
    automatic one (a bounce, an auto-reply), which must not be answered.
    """

    def __init__(self, reason: str, *, auto_generated: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.auto_generated = auto_generated


@dataclass(frozen=True, slots=True)
class Extracted:
    """The SMS text of one mail and the header facts the rest of the flow needs."""

    text: str
    subject: str
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    auto_generated: bool
    attachments: int
    source: Source


def extract(raw: bytes, options: BodyOptions = BodyOptions()) -> Extracted:
    """The SMS text of the mail ``raw``; raises :class:`NoTextError` and nothing else.

    Any unexpected failure on odd input is turned into NoTextError as well,
    with the original exception chained as ``__cause__`` so tests can tell a
    deliberate refusal (no cause) from a bug.
    """
    try:
        return _extract(raw, options)
    except NoTextError:
        raise
    except Exception as exc:  # the contract: bytes in, Extracted or NoTextError out
        raise NoTextError(f"unparseable message ({type(exc).__name__})") from exc


# --- headers ---------------------------------------------------------------------------

_WANTED_HEADERS = frozenset(
    {
        "subject",
        "message-id",
        "in-reply-to",
        "references",
        "auto-submitted",
        "x-autoreply",
        "x-autorespond",
        "precedence",
    }
)
_MESSAGE_ID = re.compile(r"<[^<>\s]*>")
_COMMENT = re.compile(r"\([^()]*\)")
_REPLY_PREFIX = re.compile(
    r"^(\s*(re|fw|fwd|aw|wg|sv|vs|tr|rif|antw|odp|ynt|enc|res|ha|rv|r|Отв|Пересл|ΑΠ|ΣΧΕΤ|ΠΡΘ"
    r"|回复|答复|转发|رد|توجيه)\s*(\[\d+\]|\(\d+\))?\s*[:：])+\s*",
    re.IGNORECASE,
)


@dataclass(slots=True)
class _Headers:
    subject: str = ""
    message_id: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    auto_generated: bool = False


def _first_headers(msg: Message) -> dict[str, str]:
    """The first value of each header we use, raw (compat32 keeps 8-bit as surrogates)."""
    found: dict[str, str] = {}
    for name, value in msg.raw_items():
        key = name.lower()
        if key in _WANTED_HEADERS and key not in found:
            found[key] = str(value)
    return found


def _read_headers(msg: Message, content_type: str) -> _Headers:
    raw = _first_headers(msg)
    ids_in_reply_to = _MESSAGE_ID.findall(raw.get("in-reply-to", ""))
    return _Headers(
        subject=decode_header_value(raw.get("subject")),
        message_id=_message_id(raw.get("message-id")),
        in_reply_to=ids_in_reply_to[0] if ids_in_reply_to else None,
        references=tuple(_MESSAGE_ID.findall(raw.get("references", ""))),
        auto_generated=_is_auto_generated(raw, content_type),
    )


def _message_id(value: str | None) -> str | None:
    """The Message-ID with its angle brackets, or the bare value when it has none."""
    if value is None:
        return None
    found = _MESSAGE_ID.search(value)
    if found:
        return found.group(0)
    bare = "".join(value.split())
    return bare or None


def _is_auto_generated(raw: dict[str, str], content_type: str) -> bool:
    """Mail that must never turn into an SMS answer loop (RFC 3834 and common practice):
    auto-replies and delivery reports. ``Auto-Submitted: auto-generated`` is *not* one: it is
    what monitoring alerts (Alertmanager, Zabbix...) carry, and texting them is the point."""
    auto_submitted = _COMMENT.sub("", raw.get("auto-submitted", "").split(";")[0]).strip().lower()
    if auto_submitted and auto_submitted not in ("no", "auto-generated"):
        return True
    if "x-autoreply" in raw or "x-autorespond" in raw:
        return True
    if raw.get("precedence", "").strip().lower() == "auto_reply":
        return True
    return content_type in ("multipart/report", "message/delivery-status")


def sms_subject(subject: str) -> str:
    """The subject as it reads in an SMS: without "Re:"/"Fwd:"-style prefixes."""
    return _REPLY_PREFIX.sub("", subject).strip()


# --- MIME walk -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Found:
    """What a MIME subtree offers: body texts of one kind, and attachments counted."""

    kind: Literal["plain", "html"] | None = None
    texts: tuple[str, ...] = ()
    attachments: int = 0

    def has_text(self) -> bool:
        return any(text.strip() for text in self.texts)


_NOTHING = _Found()
_ONE_ATTACHMENT = _Found(attachments=1)
_NOT_CONTENT = frozenset(
    {
        "application/pgp-signature",
        "application/pkcs7-signature",
        "application/x-pkcs7-signature",
        "application/pgp-keys",
        "message/delivery-status",
        "message/disposition-notification",
        "message/feedback-report",
        "text/rfc822-headers",
    }
)


class _Walk:
    """One walk over a message's MIME tree, with a budget against pathological nesting."""

    def __init__(self) -> None:
        self.parts_seen = 0

    def find(self, part: Message, depth: int = 0, ctype: str | None = None) -> _Found:
        self.parts_seen += 1
        if depth > _MAX_DEPTH or self.parts_seen > _MAX_PARTS:
            return _NOTHING
        ctype = ctype or part.get_content_type()
        if ctype in _NOT_CONTENT:
            return _NOTHING
        if depth and _is_attachment(part, ctype):
            return _ONE_ATTACHMENT
        if ctype.startswith("multipart/"):
            return self._multipart(part, ctype, depth)
        return _leaf(part, ctype)

    def _multipart(self, part: Message, ctype: str, depth: int) -> _Found:
        children = _children(part)
        if ctype == "multipart/alternative":
            return self._alternative(children, depth)
        if ctype == "multipart/related":
            return self._related(part, children, depth)
        if ctype in ("multipart/signed", "multipart/report"):
            return self.find(children[0], depth + 1) if children else _NOTHING
        if ctype == "multipart/encrypted":
            return _NOTHING
        return self._mixed(children, depth)

    def _alternative(self, children: list[Message], depth: int) -> _Found:
        """Plain text wins when it has any text; HTML otherwise; RFC 2046 order ignored."""
        found = [self.find(child, depth + 1) for child in children]
        for kind in ("plain", "html"):
            for candidate in found:
                if candidate.kind == kind and candidate.has_text():
                    return candidate
        return next((candidate for candidate in found if candidate.kind), _NOTHING)

    def _related(self, part: Message, children: list[Message], depth: int) -> _Found:
        """The root part is the body; the others are its images, not attachments."""
        if not children:
            return _NOTHING
        root = _related_root(part, children)
        found = self.find(root, depth + 1)
        extra = sum(
            1 for child in children if child is not root and _disposition(child) == "attachment"
        )
        return _Found(found.kind, found.texts, found.attachments + extra)

    def _mixed(self, children: list[Message], depth: int) -> _Found:
        """Inline bodies in order (Apple Mail splits text around images); the rest counted."""
        found = [self.find(child, depth + 1) for child in children]
        attachments = sum(candidate.attachments for candidate in found)
        for kind in ("plain", "html"):
            texts = tuple(text for c in found if c.kind == kind for text in c.texts)
            if texts:
                return _Found(kind, texts, attachments)
        return _Found(None, (), attachments)


def _children(part: Message) -> list[Message]:
    payload = part.get_payload()
    if not isinstance(payload, list):
        return []  # a multipart without a usable boundary: no parts to trust
    return [child for child in payload if isinstance(child, Message)]


def _related_root(part: Message, children: list[Message]) -> Message:
    start = part.get_param("start")
    if isinstance(start, str):
        for child in children:
            if child.get("Content-ID", "").strip() == start.strip():
                return child
    return children[0]


def _disposition(part: Message) -> str:
    value = part.get("Content-Disposition")
    if not isinstance(value, str):
        return ""
    return value.split(";")[0].strip().lower()


def _is_attachment(part: Message, ctype: str) -> bool:
    """An attachment by disposition, by type, or a text part carrying a file name."""
    if _disposition(part) == "attachment":
        return True
    if ctype.startswith(("multipart/", "text/plain", "text/html")):
        filename = part.get_param("filename", header="content-disposition")
        return bool(filename or part.get_param("name"))
    return True


def _leaf(part: Message, ctype: str) -> _Found:
    if ctype == "text/plain":
        return _Found("plain", (_decode_text(part),))
    if ctype == "text/html":
        return _Found("html", (_decode_text(part),))
    if ctype.startswith("multipart/"):
        return _NOTHING
    return _ONE_ATTACHMENT


def _decode_text(part: Message) -> str:
    """Undo transfer encoding and charset; unwrap format=flowed lines."""
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    params = {key.lower(): _param(value) for key, value in part.get_params(failobj=[])[1:]}
    text = decode_bytes(data, _charset_label(params.get("charset")))
    if params.get("format", "").lower() == "flowed":
        text = unflow(text, delsp=params.get("delsp", "").lower() == "yes")
    return text


def _param(value: object) -> str:
    """A parameter value as text; RFC 2231 values come back from compat32 as tuples."""
    if isinstance(value, tuple):
        return collapse_rfc2231_value(value)
    return value if isinstance(value, str) else ""


def _charset_label(value: str | None) -> str | None:
    """The charset parameter without quotes or an RFC 2231 language part."""
    if not value:
        return None
    return value.strip().strip("\"'").split("'")[0] or None


def unflow(text: str, *, delsp: bool = False) -> str:
    """Join RFC 3676 soft line breaks (a line ending in a space continues on the next)."""
    out: list[str] = []
    pending = ""
    for raw_line in text.replace("\r\n", "\n").split("\n"):
        line = raw_line[1:] if raw_line.startswith(" ") else raw_line  # space-stuffing
        if line.endswith(" ") and line != "-- " and not line.startswith(">"):
            pending += line[:-1] if delsp else line
            continue
        out.append(pending + line)
        pending = ""
    if pending:
        out.append(pending)
    return "\n".join(out)


# --- text ------------------------------------------------------------------------------

_NEWLINES = re.compile(r"\r\n?|[\x0b\x0c\x85\u2028\u2029]")
_INVISIBLE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_SPACES = re.compile(r"[\t\xa0\u2000-\u200a\u202f\u205f\u3000]")
_RUNS_OF_SPACES = re.compile(r" {2,}")
_BLANK_RUNS = re.compile(r"\n{3,}")


def prepare(text: str) -> str:
    """Unify newlines and drop characters an SMS cannot show (NUL, zero-width, NBSP)."""
    text = _NEWLINES.sub("\n", text)
    text = _INVISIBLE.sub("", text)
    return _SPACES.sub(" ", text)


def normalise_whitespace(text: str, *, squeeze_spaces: bool = False) -> str:
    """Trim lines' trailing spaces, keep at most one blank line in a row, trim the text."""
    lines = (line.rstrip() for line in text.split("\n"))
    if squeeze_spaces:  # HTML tables and indentation are layout, not content
        lines = (_RUNS_OF_SPACES.sub(" ", line.strip()) for line in lines)
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


def clean_body(text: str, options: BodyOptions, *, squeeze_spaces: bool = False) -> str:
    """Plain body text to SMS text: cut-off markers, quotes, signatures, whitespace."""
    text = prepare(text)
    text = quotes.cut_at_markers(text, options.cutoff_markers)
    if options.strip_quotes:
        text = quotes.strip_quotes(text)
    if options.strip_signatures:
        extra = quotes.compile_patterns(tuple(options.signature_patterns))
        text = quotes.strip_signature(text, extra)
    return normalise_whitespace(text, squeeze_spaces=squeeze_spaces)


def _body(found: _Found, options: BodyOptions) -> str:
    if found.kind == "html":
        from mailsms.mail.html import html_to_text

        rendered = [
            html_to_text(
                prepare(markup),
                strip_quotes=options.strip_quotes,
                strip_signatures=options.strip_signatures,
            )
            for markup in found.texts
        ]
        return clean_body("\n".join(rendered), options, squeeze_spaces=True)
    return clean_body("\n".join(found.texts), options)


# --- composition -----------------------------------------------------------------------


def _compose(body: str, kind: Source, subject: str, options: BodyOptions) -> tuple[str, Source]:
    """Apply the subject policy; ("", ...) means there is nothing to send."""
    title = sms_subject(subject)
    if options.subject == "only" and title:
        return title, "subject"
    if options.subject == "prepend" and title and body:
        if body.casefold().startswith(title.casefold()):
            return body, kind
        return f"{title}\n{body}", kind
    if body:
        return body, kind
    if options.subject != "ignore" and title:
        return title, "subject"
    return "", kind


def attachment_note(count: int) -> str:
    """``[+1 attachment]``, ``[+2 attachments]``."""
    return f"[+{count} attachment{'' if count == 1 else 's'}]"


def _parse(raw: bytes) -> Message:
    """The compat32 message tree; nesting deeper than the stdlib parser can recurse is refused."""
    try:
        return _PARSER.parsebytes(raw)
    except RecursionError:
        raise NoTextError("MIME structure nested too deeply") from None


def _extract(raw: bytes, options: BodyOptions) -> Extracted:
    msg = _parse(raw)
    ctype = msg.get_content_type()
    headers = _read_headers(msg, ctype)
    found = _Walk().find(msg, ctype=ctype)
    body = _body(found, options) if found.kind else ""
    text, source = _compose(body, found.kind or "plain", headers.subject, options)
    if not text:
        raise NoTextError("no text in the message", auto_generated=headers.auto_generated)
    if options.note_attachments and found.attachments:
        text = f"{text}\n{attachment_note(found.attachments)}"
    return Extracted(
        text=text,
        subject=headers.subject,
        message_id=headers.message_id,
        in_reply_to=headers.in_reply_to,
        references=headers.references,
        auto_generated=headers.auto_generated,
        attachments=found.attachments,
        source=source,
    )
