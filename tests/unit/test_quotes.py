"""mailsms.mail.quotes and mailsms.mail.html: what counts as quote, signature and cut-off."""

from __future__ import annotations

import pytest

from mailsms.mail.html import html_to_text
from mailsms.mail.quotes import (
    attribution_span,
    compile_patterns,
    cut_at_markers,
    header_block_span,
    strip_quotes,
    strip_signature,
)


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        # top-posted, attribution on one line or wrapped over two or three
        ("Yes.\n\nOn Mon, 4 Mar 2024 at 09:15, Al <al@x.com> wrote:\n> q", "Yes.\n"),
        ("Yes.\nOn Mon, Mar 4, 2024 at 9:15 AM Al <\nal@x.com> wrote:\n> q", "Yes."),
        ("Yes.\nOn Mon, Mar 4, 2024 at 9:15 AM\nAl Example\n<al@x.com> wrote:\n> q", "Yes."),
        # attribution not followed by ">" lines: everything below is history
        ("Yes.\nOn 4 Mar 2024, Al wrote:\nunquoted history", "Yes."),
        # bottom-posted and interleaved answers survive
        ("Al wrote:\n> q1\nA1\n> q2\nA2", "A1\nA2"),
        ("> q1\n> q1b\n\nanswer", "\nanswer"),
        # other languages
        ("Ja.\nAm 04.03.2024 um 09:15 schrieb Al <al@x.de>:\n> q", "Ja."),
        ("Oui.\nLe lun. 4 mars 2024 à 09:15, Al <al@x.fr> a écrit :\n> q", "Oui."),
        ("Sí.\nEl lun, 4 mar 2024 a las 9:15, Al (<al@x.es>) escribió:\n> q", "Sí."),
        ("Да.\n04.03.2024 9:15, Ал написал(а):\n> q", "Да."),
        ("はい。\n2024年3月4日(月) 9:15 山田 <y@x.jp>:\n> q", "はい。"),
        # Outlook separators and header blocks
        ("Ok.\n-----Original Message-----\nFrom: Al\nSent: today\nhistory", "Ok."),
        (
            "Ok.\n" + "_" * 32 + "\nFrom: Al <al@x.com>\nSent: today\nTo: me\nhistory",
            "Ok.",
        ),
        ("Ok.\nFrom: Al <al@x.com>\nSent: Monday\nTo: me\nSubject: s\n\nhistory", "Ok."),
        ("Ok.\n*From:* Al\n*Sent:* Monday\nhistory", "Ok."),
        ("Ok.\nVon: Al\nGesendet: Montag\nAn: mich\nhistory", "Ok."),
        ("Ok.\nDe : Al\nEnvoyé : lundi\nÀ : moi\nhistory", "Ok."),
        # things that are not quotes
        ("From: the team\nWe ship today.", "From: the team\nWe ship today."),
        ("________________________\nsignature line", "________________________\nsignature line"),
        ("He wrote: nothing", "He wrote: nothing"),
        ("Host: web01\nState: DOWN\nDate/Time: now", "Host: web01\nState: DOWN\nDate/Time: now"),
    ],
)
def test_strip_quotes(text: str, kept: str) -> None:
    assert strip_quotes(text) == kept


@pytest.mark.parametrize(
    "text",
    [
        "---------- Forwarded message ---------\nFrom: a@x.com\nDate: Thu\nSubject: s\n\nDisk full",
        "Begin forwarded message:\n\nFrom: a@x.com\nSubject: s\nDate: Thu\nTo: b\n\nDisk full",
        "-----Original Message-----\nFrom: a@x.com\nSent: Thu\nTo: b\nSubject: s\n\nDisk full",
    ],
)
def test_forward_with_nothing_above_is_unwrapped(text: str) -> None:
    assert strip_quotes(text).strip() == "Disk full"


def test_forward_with_a_note_keeps_the_note() -> None:
    text = "FYI\n---------- Forwarded message ---------\nFrom: a\nDate: b\n\nDisk full"
    assert strip_quotes(text) == "FYI"


@pytest.mark.parametrize(
    ("lines", "span"),
    [
        (["On Mon, Al <a@x.com> wrote:"], 1),
        (["On Monday", "Al wrote:"], 2),
        (["John wrote:", "> x"], 1),
        (["John wrote:", "plain"], 0),
        (["> On Mon, Al wrote:"], 0),
        ([""], 0),
    ],
)
def test_attribution_span(lines: list[str], span: int) -> None:
    assert attribution_span(lines, 0) == span


def test_header_block_needs_a_date_line() -> None:
    assert header_block_span(["From: a", "To: b", "Subject: c"], 0) == 0
    assert header_block_span(["From: a", "To: b", "Date: c", "", "body"], 0) == 3


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Hi\n-- \nBob\nACME", "Hi"),
        ("Hi\n--\nBob", "Hi"),
        ("Hi\n\nSent from my iPhone", "Hi\n"),
        ("Hi\nSent from my Samsung Galaxy smartphone.", "Hi"),
        ("Hi\nGet Outlook for iOS<https://aka.ms/o0ukef>", "Hi"),
        ("Hi\nSent from Mail for Windows", "Hi"),
        ("Hi\nSent from Yahoo Mail on Android", "Hi"),
        ("Hi\nVon meinem iPhone gesendet", "Hi"),
        ("Hi\nEnvoyé de mon iPhone", "Hi"),
        ("Hi\nEnviado desde mi iPhone", "Hi"),
        ("Hi\nОтправлено с iPhone", "Hi"),
        ("Hi\niPhoneから送信", "Hi"),
        ("Hi\nCONFIDENTIALITY NOTICE: This email is confidential.", "Hi"),
        ("Hi\nThis e-mail and any attachments may be confidential and privileged.", "Hi"),
        ("Hi\nPlease consider the environment before printing this email.", "Hi"),
        # not signatures
        (
            "Sent from the data centre: all racks powered.",
            "Sent from the data centre: all racks powered.",
        ),
        ("a -- b", "a -- b"),
        ("---\ntable", "---\ntable"),
    ],
)
def test_strip_signature(text: str, kept: str) -> None:
    assert strip_signature(text) == kept


def test_operator_signature_pattern() -> None:
    assert strip_signature("Ok\nACME Corp | www", compile_patterns((r"^ACME Corp",))) == "Ok"


@pytest.mark.parametrize(
    ("text", "markers", "kept"),
    [
        ("a\n--end--\nb", ("--end--",), "a"),
        ("a\n  --END--\nb", ("--end--",), "a"),
        ("a --end-- b", ("--end--",), "a --end-- b"),
        ("a\n--end--", (), "a\n--end--"),
        ("a\n\nb", ("",), "a\n\nb"),
    ],
)
def test_cut_at_markers(text: str, markers: tuple[str, ...], kept: str) -> None:
    assert cut_at_markers(text, markers) == kept


# --- HTML ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ('<div>New</div><div class="gmail_quote">Old</div>', "New"),
        ('<div>New</div><blockquote type="cite">Old</blockquote>', "New"),
        ('<p>New</p><div id="divRplyFwdMsg">From: x</div><div>Old</div>', "New"),
        (
            '<p>New</p><div><div style="border:none;border-top:solid #E1E1E1 1.0pt">h</div></div>'
            "<p>Old</p>",
            "New",
        ),
        ('<p>New</p><div class="gmail_signature">Sig</div>', "New"),
        ('<p>New</p><div id="Signature">Sig</div>', "New"),
        ("<p>a</p><p>b</p>", "a\nb"),
        ("<p>a&nbsp;&amp;&lt;</p>", "a &<"),
        ("<table><tr><td>k</td><td>v</td></tr></table>", "k  v"),
        ("", ""),
        ("<?xml version='1.0' encoding='utf-8'?><p>x</p>", "x"),
    ],
)
def test_html_to_text(markup: str, text: str) -> None:
    assert html_to_text(markup).strip() == text


def test_html_quotes_kept_when_asked() -> None:
    markup = (
        '<div>New</div><blockquote type="cite">Old</blockquote><div class="gmail_signature">S</div>'
    )
    assert html_to_text(markup, strip_quotes=False, strip_signatures=False).split() == [
        "New",
        "Old",
        "S",
    ]
