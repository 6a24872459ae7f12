"""Where an SMS from a phone goes: the conversation it answers, a static route, the
catch-all, or nowhere (stored and marked undeliverable).

A conversation is (sender email, phone, our number) recorded when a mail is accepted for a
phone. Several people may text from the same sender number: an SMS from a phone goes to
whoever most recently wrote to that phone from that number, within
``inbound.conversation_ttl``. That is the only thing the phone's reply tells us (an SMS has
no thread); docs/sms-to-mail.md spells out the limits. Pure rules here; the store lookups
are passed in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mailsms.config import InboundSettings
from mailsms.store.mail_ops import Conversation


class Keyword(enum.StrEnum):
    """Carrier-standard keywords (CTIA/GSMA practice): STOP and friends opt out."""

    STOP = "stop"
    START = "start"
    HELP = "help"


_KEYWORDS = {
    **dict.fromkeys(
        ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT"), Keyword.STOP
    ),
    **dict.fromkeys(("START", "UNSTOP", "YES", "OPTIN"), Keyword.START),
    **dict.fromkeys(("HELP", "INFO"), Keyword.HELP),
}


def keyword(text: str) -> Keyword | None:
    """The keyword an SMS consists of (alone, any case, surrounding punctuation ignored)."""
    word = text.strip().strip(".!").upper()
    return _KEYWORDS.get(word)


@dataclass(frozen=True, slots=True)
class Destination:
    mailbox: str
    via: str  # "conversation" | "route" | "catch_all"
    conversation: Conversation | None = None


def route(
    settings: InboundSettings, phone: str, our_number: str, conversation: Conversation | None
) -> Destination | None:
    """Conversation first, then the first matching static route, then the catch-all."""
    if conversation is not None:
        return Destination(conversation.email, "conversation", conversation)
    for r in settings.route:  # a route naming neither number takes everything
        if (r.to is None or r.to == our_number) and (r.from_ is None or r.from_ == phone):
            return Destination(r.mailbox, "route")
    if settings.catch_all:
        return Destination(settings.catch_all, "catch_all")
    return None
