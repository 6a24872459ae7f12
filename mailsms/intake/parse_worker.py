"""The parse worker: a child process that turns raw mail into SMS text and segments.

Why a process. The gateway is one event loop on one core; the MIME parse, body cleaning and
GSM-7/UCS-2 encoding of a mail are pure functions of its bytes and were about a fifth of
that loop's time per mail, while the machine's other cores sat mostly idle. Here they run
beside the loop (``smtp.parse_workers``, :mod:`mailsms.intake.parse_pool`): at
``smtp-source -s 10 -d`` that took 15-20% more mail per second. Same code, same results:
this module only moves :func:`mailsms.mail.parse.extract` and
:func:`mailsms.sms.encode.plan` to another process.

Protocol on stdin/stdout, each frame a 4-byte little-endian length and a :mod:`marshal`
payload (only built-in types cross: fast, and nothing to unpickle from the other side but
the first frame, the options, which comes from our own parent):

* first frame: ``pickle`` of ``(BodyOptions, SmsOptions)``;
* request: ``(id, raw_bytes)``;
* reply: ``(id, OK, extracted_fields, plans)``, ``(id, NO_TEXT, reason)``,
  ``(id, TOO_LONG, extracted_fields, (segments, limit))`` or ``(id, FAILED, repr)``.

EOF on stdin (the gateway stopped, or died) ends the worker.
"""

from __future__ import annotations

import marshal
import pickle
import signal
import struct
import sys
from typing import IO, Any

from mailsms.mail.parse import NoTextError, extract
from mailsms.sms.encode import TooLong, plan

LENGTH = struct.Struct("<I")
OK, NO_TEXT, TOO_LONG, FAILED = 0, 1, 2, 3


def read_frame(stream: IO[bytes]) -> bytes | None:
    head = stream.read(LENGTH.size)
    if len(head) < LENGTH.size:
        return None
    (size,) = LENGTH.unpack(head)
    body = stream.read(size)
    return body if len(body) == size else None


def frame(payload: bytes) -> bytes:
    return LENGTH.pack(len(payload)) + payload


def answer(raw: bytes, body_options: Any, sms_options: Any) -> tuple[Any, ...]:
    """The reply fields for one mail (without the request id)."""
    try:
        mail = extract(raw, body_options)
    except NoTextError as exc:
        return (NO_TEXT, exc.reason)
    fields = (
        mail.text,
        mail.subject,
        mail.message_id,
        mail.in_reply_to,
        mail.references,
        mail.auto_generated,
        mail.attachments,
        mail.source,
    )
    try:
        plans = plan(mail.text, sms_options, 0)
    except TooLong as exc:
        return (TOO_LONG, fields, (exc.segments, exc.limit))
    return (
        OK,
        fields,
        [
            (
                e.text,
                e.encoding,
                e.shift_table,
                tuple((p.seq, p.text, p.udh, p.payload, p.size) for p in e.parts),
                e.transliterated,
                e.segments_saved,
            )
            for e in plans
        ],
    )


def main() -> int:
    # SIGTERM/SIGINT to the whole process group (systemd, Ctrl-C) are the gateway's to
    # handle: it finishes its mail, then closes our stdin, and EOF ends us.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    first = read_frame(inp)
    if first is None:
        return 0
    body_options, sms_options = pickle.loads(first)
    while (request := read_frame(inp)) is not None:
        rid, raw = marshal.loads(request)
        try:
            reply = (rid, *answer(raw, body_options, sms_options))
        except Exception as exc:  # a bug: the parent parses this mail itself instead
            reply = (rid, FAILED, repr(exc))
        out.write(frame(marshal.dumps(reply)))
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
