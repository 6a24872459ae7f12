"""The character tables of GSM 03.38 / 3GPP TS 23.038: data only, no logic.

The encoder (``encode.py``) and the septet codec (``gsm7.py``) look characters up here. A
*locking shift* table replaces the whole 128-character default alphabet; a *single shift*
table replaces the extension table reached through the escape septet 0x1B. The default
alphabet and its extension table are "language 0"; national tables are selected per message
with UDH information elements 0x25 (locking) and 0x24 (single), TS 23.038 §6.2.1.2.4.

Locking tables are written as rows of 16 characters, code 0x00 first, exactly as the spec
lays them out, with ``\\x1b`` at the escape position (``gsm7`` treats it specially and never
encodes it as a character). Single shift tables are sparse, so they are code -> character maps.
Indian-language tables (ids 4-13) are not included yet.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

ESCAPE: Final = 0x1B

# TS 23.038 §6.2.1: the default alphabet.
DEFAULT_ALPHABET: Final = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)

# TS 23.038 §6.2.1.1: the default alphabet extension table (each costs ESC + code).
DEFAULT_EXTENSION: Final = MappingProxyType(
    {
        0x0A: "\f",
        0x14: "^",
        0x28: "{",
        0x29: "}",
        0x2F: "\\",
        0x3C: "[",
        0x3D: "~",
        0x3E: "]",
        0x40: "|",
        0x65: "€",
    }
)

# TS 23.038 Annex A.3: national locking shift tables (replace the default alphabet).
LOCKING_TABLES: Final = MappingProxyType(
    {
        "turkish": (
            "@£$¥€éùıòÇ\nĞğ\rÅå"
            "Δ_ΦΓΛΩΠΨΣΘΞ\x1bŞşßÉ"
            " !\"#¤%&'()*+,-./"
            "0123456789:;<=>?"
            "İABCDEFGHIJKLMNO"
            "PQRSTUVWXYZÄÖÑÜ§"
            "çabcdefghijklmno"
            "pqrstuvwxyzäöñüà"
        ),
        "portuguese": (
            "@£$¥êéúíóç\nÔô\rÁá"
            "Δ_ªÇÀ∞^\\€Ó|\x1bÂâÊÉ"
            " !\"#º%&'()*+,-./"
            "0123456789:;<=>?"
            "ÍABCDEFGHIJKLMNO"
            "PQRSTUVWXYZÃÕÚÜ§"
            "~abcdefghijklmno"
            "pqrstuvwxyzãõ`üà"
        ),
    }
)

_EXT = dict(DEFAULT_EXTENSION)

# TS 23.038 Annex A.2: national single shift tables (replace the extension table).
SINGLE_SHIFT_TABLES: Final = MappingProxyType(
    {
        "turkish": MappingProxyType(
            _EXT | {0x47: "Ğ", 0x49: "İ", 0x53: "Ş", 0x63: "ç", 0x67: "ğ", 0x69: "ı", 0x73: "ş"}
        ),
        "spanish": MappingProxyType(
            _EXT
            | {0x09: "ç", 0x41: "Á", 0x49: "Í", 0x4F: "Ó", 0x55: "Ú"}
            | {0x61: "á", 0x69: "í", 0x6F: "ó", 0x75: "ú"}
        ),
        "portuguese": MappingProxyType(
            _EXT
            | {0x05: "ê", 0x09: "ç", 0x0B: "Ô", 0x0C: "ô", 0x0E: "Á", 0x0F: "á"}
            | {0x12: "Φ", 0x13: "Γ", 0x15: "Ω", 0x16: "Π", 0x17: "Ψ", 0x18: "Σ", 0x19: "Θ"}
            | {0x1F: "Ê", 0x41: "À", 0x49: "Í", 0x4F: "Ó", 0x55: "Ú", 0x5B: "Ã", 0x5C: "Õ"}
            | {0x61: "Â", 0x69: "í", 0x6F: "ó", 0x75: "ú", 0x7B: "ã", 0x7C: "õ", 0x7F: "â"}
        ),
    }
)

# TS 23.038 §6.2.1.2.4: national language identifiers carried in IEs 0x24 and 0x25.
LANGUAGE_IDS: Final = MappingProxyType({"turkish": 1, "spanish": 2, "portuguese": 3})
LANGUAGE_NAMES: Final = MappingProxyType({v: k for k, v in LANGUAGE_IDS.items()})
