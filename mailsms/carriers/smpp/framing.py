"""Cutting an SMPP byte stream into whole PDUs, with no I/O.

TCP hands the session chunks that have nothing to do with PDU boundaries: half a header,
one PDU, or a window's worth of submit_sm_resp at once. :class:`Framer` keeps the tail
of one chunk until the next completes it, and returns every whole PDU of a chunk in one
call, so the session parses a burst of responses in one ``data_received`` instead of
two ``readexactly`` awaits per PDU. A command_length outside 16..MAX_PDU_SIZE means the
stream can no longer be trusted: the PDUs before it are still returned (a submit_sm_resp
among them is an answer the SMSC really gave), then :attr:`Framer.error` is set and the
framer takes no more input.
"""

from __future__ import annotations

import struct

from .pdu import ESME_RINVCMDLEN, HEADER_SIZE, MAX_PDU_SIZE, PduError

_LENGTH = struct.Struct(">I")


class Framer:
    """Whole PDUs out of a byte stream fed in arbitrary chunks."""

    __slots__ = ("_tail", "error")

    def __init__(self) -> None:
        self._tail = bytearray()  # the start of a PDU whose end has not arrived yet
        self.error: PduError | None = None  # set at a bad command_length, for good

    @property
    def pending(self) -> int:
        """Octets held back waiting for the rest of their PDU."""
        return len(self._tail)

    def feed(self, data: bytes) -> list[bytes]:
        """The PDUs that ``data`` completes, in order (each header included).

        After a command_length out of range, :attr:`error` is set: what came before it is
        returned, the rest of ``data`` and every later chunk are ignored.
        """
        if self.error is not None:
            return []
        if self._tail:
            # Grown in place until the held PDU is complete: a large PDU trickling in,
            # byte by byte even, costs linear time, not a copy per chunk.
            self._tail += data
            if len(self._tail) < 4:
                return []
            (length,) = _LENGTH.unpack_from(self._tail)
            if HEADER_SIZE <= length <= MAX_PDU_SIZE and len(self._tail) < length:
                return []  # (a length out of range is refused below)
            data = bytes(self._tail)
            self._tail.clear()
        end = len(data)
        pos = 0
        frames: list[bytes] = []
        while end - pos >= 4:
            (length,) = _LENGTH.unpack_from(data, pos)
            if not HEADER_SIZE <= length <= MAX_PDU_SIZE:
                message = f"command_length {length} out of range"
                self.error = PduError(message, ESME_RINVCMDLEN, framing=True)
                return frames
            if end - pos < length:
                break
            # The common case, one PDU per chunk, costs no copy.
            frames.append(data if length == end else data[pos : pos + length])
            pos += length
        if pos < end:
            self._tail += memoryview(data)[pos:]
        return frames
