"""Delivery receipts carried in deliver_sm (esm_class 0x04): parsing, status, id matching.

SMSCs report the outcome in two ways, often both: the ``receipted_message_id`` and
``message_state`` TLVs (SMPP 3.4 section 5.3.2), and the de-facto text of SMPP 3.4
appendix B, ``id:IIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm
stat:DDDDDDD err:E text:...``. TLVs win where present; the text fills in the rest.

Carriers disagree on how they render ids: some answer submit_sm_resp with a hex id and put
the same number in decimal in the receipt (or the other way round). :class:`IdIndex`
remembers the ids we were given and matches a receipt id to one of them by value.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field

from mailsms.carriers.base import ReportStatus

from .pdu import Tag, Tlv, tlv_get, tlv_int, tlv_str

RECEIPT_MASK = 0x3C  # esm_class bits 5..2: message type
RECEIPT_TYPES = frozenset({0x04, 0x20})  # SMSC delivery receipt, intermediate notification

STAT_TO_STATUS: dict[str, ReportStatus] = {
    "DELIVRD": ReportStatus.DELIVERED,
    "EXPIRED": ReportStatus.EXPIRED,
    "UNDELIV": ReportStatus.FAILED,
    "REJECTD": ReportStatus.FAILED,
    "DELETED": ReportStatus.FAILED,
    "ACCEPTD": ReportStatus.ACCEPTED,
    "ENROUTE": ReportStatus.ACCEPTED,
}

# message_state TLV values (SMPP 3.4 section 5.2.28) as the stat words of the text form.
MESSAGE_STATES: dict[int, str] = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}

_FIELD = re.compile(
    r"(?P<key>id|sub|dlvrd|submit[ _]date|done[ _]date|stat|err|text)\s*:\s*",
    re.IGNORECASE,
)


def is_receipt(esm_class: int) -> bool:
    return (esm_class & RECEIPT_MASK) in RECEIPT_TYPES


def parse_text(text: str) -> dict[str, str]:
    """The ``key:value`` fields of a receipt text; ``text`` runs to the end of the string.

    Keys are lower case with ``_`` for the space (``submit_date``); unknown words between
    fields belong to the value before them.
    """
    matches = list(_FIELD.finditer(text))
    fields: dict[str, str] = {}
    for i, m in enumerate(matches):
        key = m.group("key").lower().replace(" ", "_")
        if key in fields:
            continue
        end = len(text) if key == "text" or i + 1 == len(matches) else matches[i + 1].start()
        fields[key] = text[m.end() : end].strip()
        if key == "text":
            break
    return fields


@dataclass(frozen=True, slots=True)
class Receipt:
    """A parsed receipt: the id it is for, the stat word, the error code, the raw fields."""

    message_id: str
    stat: str
    err: str | None
    status: ReportStatus | None
    fields: dict[str, str] = field(default_factory=dict)


def parse(short_message: bytes, tlvs: tuple[Tlv, ...]) -> Receipt | None:
    """The receipt in a deliver_sm body, or None when it names no message id."""
    payload = tlv_get(tlvs, Tag.MESSAGE_PAYLOAD)
    text = (payload if payload is not None else short_message).decode("latin-1")
    fields = parse_text(text)
    message_id = tlv_str(tlvs, Tag.RECEIPTED_MESSAGE_ID) or fields.get("id", "")
    state = tlv_int(tlvs, Tag.MESSAGE_STATE)
    stat = (MESSAGE_STATES.get(state, "UNKNOWN") if state is not None else None) or fields.get(
        "stat", "UNKNOWN"
    )
    stat = stat.upper()
    err = fields.get("err")
    network_error = tlv_get(tlvs, Tag.NETWORK_ERROR_CODE)
    if network_error is not None and len(network_error) == 3:
        fields["network_error_code"] = network_error.hex()
        if err is None:
            err = str(int.from_bytes(network_error[1:], "big"))
    if state is not None:
        fields["message_state"] = str(state)
    if not message_id:
        return None
    return Receipt(message_id, stat, err, STAT_TO_STATUS.get(stat), fields)


def error_code(err: str | None) -> str | None:
    """The receipt's err field when it says something (``000`` means no error)."""
    if err is None or not err.strip("0 "):
        return None
    return err


_HEX = re.compile(r"[0-9a-fA-F]+").fullmatch


def _is_decimal(value: str) -> bool:
    return value.isascii() and value.isdigit()


def _value_keys(carrier_id: str) -> tuple[str | int, ...]:
    """Keys under which an id is findable: its lowercase self (a str), and its numeric
    value(s) (ints, so they never collide with a string key). Runs for every submit."""
    if _is_decimal(carrier_id):  # and so hex as well
        return (carrier_id.lower(), int(carrier_id, 10), int(carrier_id, 16))
    if _HEX(carrier_id):
        return (carrier_id.lower(), int(carrier_id, 16))
    return (carrier_id.lower(),)


def candidate_ids(receipt_id: str) -> tuple[str, ...]:
    """Renderings of a receipt id a store may hold: as given, decimal->hex, hex->decimal."""
    out = [receipt_id]
    if _is_decimal(receipt_id):
        value = int(receipt_id, 10)
        out += [f"{value:x}", f"{value:X}"]
    if _HEX(receipt_id):
        out.append(str(int(receipt_id, 16)))
    return tuple(dict.fromkeys(out))


class IdIndex:
    """The last ``size`` carrier ids we were given, findable by any rendering of their value.

    A receipt id that matches the string of a stored id wins over one that matches only by
    numeric value, so an SMSC that is consistent is never second-guessed; of two stored ids
    under one key, the more recent is taken.
    """

    def __init__(self, size: int = 100_000) -> None:
        self._size = size
        # Each id with its keys, oldest first: kept, not worked out again at eviction
        # (this runs for every submit_sm_resp).
        self._ids: OrderedDict[str, tuple[str | int, ...]] = OrderedDict()
        self._keys: dict[str | int, str] = {}

    def add(self, carrier_id: str) -> None:
        ids = self._ids
        mine = ids.get(carrier_id)
        if mine is not None:
            ids.move_to_end(carrier_id)
        else:
            mine = ids[carrier_id] = _value_keys(carrier_id)
        keys = self._keys
        for key in mine:
            # The most recent id holding a key wins it: then an evicted (least recent) id
            # still holding a key is the only one with it, and the key can go. (Keeping the
            # first holder lost the key of a newer id sharing it, "a1" after "A1", when the
            # first was evicted.)
            keys[key] = carrier_id
        if len(ids) > self._size:
            old, theirs = ids.popitem(last=False)
            for key in theirs:
                if keys.get(key) == old:
                    del keys[key]

    def match(self, receipt_id: str) -> str | None:
        """The stored id that ``receipt_id`` refers to, or None."""
        exact = self._keys.get(receipt_id.lower())
        if exact is not None:
            return exact
        if _is_decimal(receipt_id):
            found = self._keys.get(int(receipt_id, 10))
            if found is not None:
                return found
        if _HEX(receipt_id):
            return self._keys.get(int(receipt_id, 16))
        return None
