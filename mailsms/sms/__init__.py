"""SMS encoding: alphabets, segmentation, UDH, transliteration and inbound reassembly.

Pure, typed, no I/O. Outbound, ``encode.plan`` turns a text into stored parts; inbound,
``reassemble.Reassembler`` joins parts back into one text. See docs/sms-encoding.md.
"""

from mailsms.sms.encode import (
    Encoded,
    Encoding,
    ReferenceCounter,
    SmsOptions,
    TooLong,
    count_segments,
    describe,
    encode,
    format_human,
    plan,
)
from mailsms.sms.reassemble import Assembled, Fragment, Reassembler, fragment_from_udh

__all__ = [
    "Assembled",
    "Encoded",
    "Encoding",
    "Fragment",
    "Reassembler",
    "ReferenceCounter",
    "SmsOptions",
    "TooLong",
    "count_segments",
    "describe",
    "encode",
    "format_human",
    "fragment_from_udh",
    "plan",
]
