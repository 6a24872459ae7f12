"""Replace typographic characters that would force UCS-2 with their GSM-7 look-alikes.

Mail bodies are full of curly quotes, dashes, non-breaking spaces and ellipses that word
processors insert. One of them is enough to switch a message to UCS-2, which halves its
capacity (70 instead of 160 characters), so a three-line note costs two or three SMS instead
of one. ``encode.py`` calls ``transliterate`` only when these characters are the only thing
forcing UCS-2, and records what it changed; this module just holds the table and applies it.

Every replacement is made of default-alphabet characters only (a test checks it), so the
result never needs an escape or a national table.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Final

__all__ = ["TRANSLITERATIONS", "transliterate"]


def _same(chars: str, to: str) -> dict[str, str]:
    return dict.fromkeys(chars, to)


TRANSLITERATIONS: Final = MappingProxyType(
    # Quotes and primes.
    _same("‘’‚‛′‹›`´", "'")
    | _same("“”„‟″«»", '"')
    # Dashes and minus signs.
    | _same("‐‑‒–—―−", "-")
    # Spaces: no-break, en/em and the other fixed widths, tab; separators become newlines.
    | _same("\t\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006", " ")
    | _same("\u2007\u2008\u2009\u200a\u202f\u205f\u3000", " ")
    | _same("\u2028\u2029\u0085", "\n")
    # Invisible characters HTML-to-text conversion leaves behind.
    | _same("\u00ad\u200b\u200c\u200d\u2060\ufeff", "")
    # Punctuation.
    | {"…": "...", "•": "*", "·": ".", "‣": "*", "⁃": "-", "×": "x", "÷": "/"}
    | {"™": "TM", "©": "(c)", "®": "(R)", "¨": '"'}
    # Accented letters without a GSM form (those with one, like é or ñ, are left alone).
    | _same("áâãāăą", "a")
    | _same("ÁÀÂÃĀĂĄ", "A")
    | _same("çćĉčċ", "c")
    | _same("ĆĈČĊ", "C")
    | _same("ďđ", "d")
    | _same("ĎĐ", "D")
    | _same("êëēėęě", "e")
    | _same("ÈÊËĒĖĘĚ", "E")
    | _same("ğĝ", "g")
    | _same("ĞĜ", "G")
    | _same("íîïīįı", "i")
    | _same("ÍÌÎÏĪĮİ", "I")
    | _same("łľĺ", "l")
    | _same("ŁĽĹ", "L")
    | _same("ńňņ", "n")
    | _same("ŃŇŅ", "N")
    | _same("óôõōő", "o")
    | _same("ÓÒÔÕŌŐ", "O")
    | _same("ŕř", "r")
    | _same("ŔŘ", "R")
    | _same("śşšș", "s")
    | _same("ŚŞŠȘ", "S")
    | _same("ťţț", "t")
    | _same("ŤŢȚ", "T")
    | _same("úûūůűų", "u")
    | _same("ÚÙÛŪŮŰŲ", "U")
    | _same("ýÿ", "y")
    | _same("ÝŸ", "Y")
    | _same("źżž", "z")
    | _same("ŹŻŽ", "Z")
    | {"œ": "oe", "Œ": "OE", "ð": "d", "Ð": "D", "þ": "th", "Þ": "Th"}
)


def transliterate(
    text: str, keep: Callable[[str], bool] = lambda _char: False
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """``text`` with every tabled character replaced, except those ``keep`` accepts.

    Returns the new text and the (from, to) pairs applied, each once, in order of first use.
    ``keep`` lets the encoder leave alone what its chosen tables carry (a Turkish "ş" when
    the Turkish table is in use).
    """
    out: list[str] = []
    applied: dict[str, str] = {}
    for char in text:
        to = TRANSLITERATIONS.get(char)
        if to is None or keep(char):
            out.append(char)
        else:
            out.append(to)
            applied.setdefault(char, to)
    return "".join(out), tuple(applied.items())
