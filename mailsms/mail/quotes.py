"""Cut what the sender did not write for this message: quotes, signatures, footers.

Runs on plain text in :mod:`mailsms.mail.parse`, after the body part is decoded
(and, for HTML, after :mod:`mailsms.mail.html` has dropped the quote markup and
rendered text). An SMS has room for the new words only, so this module removes:

* quoted replies: ``>`` lines with their "On ... wrote:" attribution (which
  keeps interleaved and bottom-posted answers), and everything from an
  Outlook-style separator down ("-----Original Message-----", a line of
  underscores before a "From:" block, a bare "From:/Sent:" header block,
  "Forwarded message" banners);
* signatures: the ``-- `` delimiter, mobile-client lines ("Sent from my
  iPhone", "Get Outlook for Android", their common translations), legal
  footers, operator patterns; each cuts its line and everything below;
* the operator's cut-off markers (a line such as ``--end--``).

When a forward or an Outlook separator leaves nothing above it, the forwarded
message itself is what the person meant to send, so it is unwrapped instead.

Rules are our own rather than email-reply-parser's or quotequail's: on the test
corpus they cover more clients and languages (see docs/mail-to-sms.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

_ATTRIBUTION_START = re.compile(
    r"^\s*(On|Am|Le|El|Il giorno|Em|Op|Den|Dne|W dniu|Στις|في)\s", re.IGNORECASE
)
_ATTRIBUTION_END = re.compile(
    r"(wrote|writes|schrieb|a écrit|escribió|escreveu|ha scritto|schreef|skrev|kirjoitti"
    r"|napsal\(a\)|napsal|napisał\(a\)|napisał|написал\(а\)|написала|написал|έγραψε|كتب"
    r"|のメール|書きました|写道)\s*[:：]\s*$"
    r"|<[^<>\s]+@[^<>\s]+>\s*[:：]\s*$",
    re.IGNORECASE,
)
_SEPARATOR = re.compile(
    r"^\s*-{2,}\s*(Original Message|Forwarded message|Ursprüngliche Nachricht"
    r"|Weitergeleitete Nachricht|Message d'origine|Message transféré|Mensaje original"
    r"|Mensaje reenviado|Mensagem original|Messaggio originale|Messaggio inoltrato"
    r"|Oorspronkelijk bericht|Doorgestuurd bericht|Originalmeddelande|Исходное сообщение"
    r"|Пересылаемое сообщение|Αρχικό μήνυμα|الرسالة الأصلية)\s*-{2,}\s*$"
    r"|^\s*(Begin forwarded message|Anfang der weitergeleiteten (E-Mail|Nachricht)"
    r"|Début du message réexpédié|Inicio del mensaje reenviado)\s*:\s*$",
    re.IGNORECASE,
)
_UNDERSCORES = re.compile(r"^\s*_{10,}\s*$")
_FROM_KEY = re.compile(
    r"^\s*\*?(From|De|Von|Van|Da|Från|Fra|Od|От|Από|من|差出人|发件人|寄件者|送信者)\s?\*?\s?[:：]",
    re.IGNORECASE,
)
_DATE_KEY = re.compile(
    r"^\s*\*?(Sent|Date|Gesendet|Datum|Envoyé|Enviado|Enviada|Inviato|Data|Verzonden"
    r"|Skickat|Sendt|Wysłano|Отправлено|Дата|Στάλθηκε|Ημερομηνία|تاريخ|أرسلت|送信日時|日付"
    r"|发送时间|日期)(\s(el|le|am|on))?\s?\*?\s?[:：]",
    re.IGNORECASE,
)
_HEADER_LINE = re.compile(r"^\s*\*?[^\s:：][^:：]{0,30}\*?\s?[:：]")

_MOBILE_SIGNATURE = re.compile(
    r"^\s*(Sent from my .{1,40}"
    r"|Sent (from|with|via) (the )?(Mail|Yahoo|Outlook|Proton ?Mail|AOL|Gmail|BlueMail|Spark"
    r"|Samsung|Android|iPhone|iPad|mobile|my mobile|Huawei|Xiaomi)\b.{0,40}"
    r"|Get Outlook for (iOS|Android|Mac|Windows).{0,10}"
    r"|Envoyé (de|depuis) (mon|ma|l'application) .{1,30}|Von meinem .{1,30} gesendet"
    r"|Gesendet (von|mit) .{1,30}|Enviado desde mi .{1,30}|Enviado do meu .{1,30}"
    r"|Enviado desde .{1,30}|Inviato da .{1,30}|Verzonden (met|vanaf) .{1,30}"
    r"|Verstuurd vanaf mijn .{1,30}|Skickat från min .{1,30}|Sendt fra min .{1,30}"
    r"|Wysłane z .{1,30}|Отправлено (с|из) .{1,40}|Στάλθηκε από .{1,30}|أرسلت من .{1,30}"
    r"|.{1,20}から送信)\s*(<[^<>\s]+>)?\s*$",
    re.IGNORECASE,
)
_LEGAL_FOOTER = re.compile(
    r"^\s*(CONFIDENTIALITY( NOTICE)?\s*:?|CONFIDENTIAL NOTICE|DISCLAIMER\s*:?|LEGAL NOTICE"
    r"|IMPORTANT NOTICE\s*:"
    r"|This (e-?mail|message|communication|transmission)\b.{0,60}\b(is|are|may be|contains?)"
    r"\b.{0,30}\b(confidential|privileged|intended solely|intended only)"
    r"|The information (contained )?in this (e-?mail|message|communication)"
    r"|Please consider the environment before printing"
    r"|Diese (E-Mail|Nachricht)\b.{0,40}\bvertraulich"
    r"|Ce (message|courriel)\b.{0,60}\bconfidentiel)",
    re.IGNORECASE,
)

_MAX_UNWRAP = 5


def is_quoted(line: str) -> bool:
    """A ``>``-quoted line."""
    return line.lstrip().startswith(">")


def _skip_blank(lines: Sequence[str], index: int) -> int:
    while index < len(lines) and not lines[index].strip():
        index += 1
    return index


def _ends_attribution(line: str) -> bool:
    # The colon test first: the regex searches the whole line and most lines lack one.
    return line.rstrip().endswith((":", "：")) and bool(_ATTRIBUTION_END.search(line))


def attribution_span(lines: Sequence[str], index: int) -> int:
    """How many lines an "On <date>, <name> wrote:" attribution at ``index`` covers (0: none).

    Gmail and Thunderbird wrap long attributions, so up to three lines are joined.
    """
    line = lines[index]
    if not line.strip() or is_quoted(line):
        return 0
    if _ends_attribution(line):
        if _ATTRIBUTION_START.match(line) or any(c.isdigit() for c in line) or "@" in line:
            return 1
        following = _skip_blank(lines, index + 1)
        return 1 if following < len(lines) and is_quoted(lines[following]) else 0
    if not _ATTRIBUTION_START.match(line):
        return 0
    for extra in (1, 2):
        if index + extra < len(lines) and _ends_attribution(lines[index + extra]):
            return extra + 1
    return 0


def header_block_span(lines: Sequence[str], index: int) -> int:
    """Lines in an Outlook/forward header block ("From:" then "Sent:"/"Date:") at ``index``."""
    if not _FROM_KEY.match(lines[index]):
        return 0
    end = index + 1
    saw_date = False
    while end < len(lines) and end - index < 8 and _HEADER_LINE.match(lines[end]):
        saw_date = saw_date or bool(_DATE_KEY.match(lines[end]))
        end += 1
    return end - index if saw_date else 0


def separator_span(lines: Sequence[str], index: int) -> int:
    """Lines taken by a reply/forward separator at ``index`` (0: none), header block included."""
    line = lines[index]
    if _SEPARATOR.match(line):
        after = _skip_blank(lines, index + 1)
        block = header_block_span(lines, after) if after < len(lines) else 0
        return (after - index + block) if block else 1
    if _UNDERSCORES.match(line):
        after = _skip_blank(lines, index + 1)
        block = header_block_span(lines, after) if after < len(lines) else 0
        return (after - index + block) if block else 0
    return header_block_span(lines, index)


def strip_quotes(text: str) -> str:
    """Remove quoted replies; keep what the sender wrote, above, between or below quotes."""
    return _strip_quotes(text.split("\n"), 0)


def _strip_quotes(lines: list[str], depth: int) -> str:
    kept: list[str] = []
    index = 0
    while index < len(lines):
        span = attribution_span(lines, index)
        if span:
            following = _skip_blank(lines, index + span)
            if following < len(lines) and is_quoted(lines[following]):
                index = following
                continue
            return "\n".join(kept)
        span = separator_span(lines, index)
        if span:
            return _above_or_unwrapped(kept, lines[index + span :], depth)
        if not is_quoted(lines[index]):
            kept.append(lines[index])
        index += 1
    return "\n".join(kept)


def _above_or_unwrapped(kept: list[str], below: list[str], depth: int) -> str:
    """Text above a separator; a forward with nothing above it yields the forwarded text."""
    if any(line.strip() for line in kept) or depth >= _MAX_UNWRAP:
        return "\n".join(kept)
    return _strip_quotes(below, depth + 1)


def cut_at_markers(text: str, markers: Sequence[str]) -> str:
    """Cut at the first line equal (trimmed, case-insensitive) to a cut-off marker."""
    if not markers:
        return text
    wanted = {marker.strip().casefold() for marker in markers if marker.strip()}
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if line.strip().casefold() in wanted:
            return "\n".join(lines[:index])
    return text


@lru_cache(maxsize=64)
def compile_patterns(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    """Compile operator signature patterns once; raises ValueError naming a bad one."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ValueError(f"bad signature pattern {pattern!r}: {exc}") from None
    return tuple(compiled)


def is_signature_start(line: str, extra: Sequence[re.Pattern[str]] = ()) -> bool:
    """Whether ``line`` opens a signature or footer (it and everything below go)."""
    if line.rstrip() == "--":
        return True
    if _MOBILE_SIGNATURE.match(line) or _LEGAL_FOOTER.match(line):
        return True
    return any(pattern.search(line) for pattern in extra)


def strip_signature(text: str, extra: Sequence[re.Pattern[str]] = ()) -> str:
    """Cut at the first signature line (see :func:`is_signature_start`)."""
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if is_signature_start(line, extra):
            return "\n".join(lines[:index])
    return text
