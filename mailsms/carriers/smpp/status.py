"""SMPP command_status values, and whether a refusal is worth retrying.

The dispatcher retries a :class:`~mailsms.errors.TemporaryFailure` with backoff and fails
the message for good on a :class:`~mailsms.errors.PermanentFailure`; this table is where
an SMSC's answer becomes one or the other. The same table is in ``docs/smpp.md``.
Statuses not listed (vendor codes 0x400-0x4FF and anything unknown) are temporary: a
message is retried until its maximum age rather than dropped on a code we do not know.
Operators can override single codes with the carrier's ``status_overrides`` setting.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from mailsms.errors import CarrierError, PermanentFailure, TemporaryFailure


class Kind(enum.StrEnum):
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


T, P = Kind.TEMPORARY, Kind.PERMANENT

# code: (name, kind, description)
STATUSES: dict[int, tuple[str, Kind, str]] = {
    0x00: ("ESME_ROK", T, "no error"),
    0x01: ("ESME_RINVMSGLEN", P, "message length is invalid"),
    0x02: ("ESME_RINVCMDLEN", P, "command length is invalid"),
    0x03: ("ESME_RINVCMDID", P, "invalid command id"),
    0x04: ("ESME_RINVBNDSTS", T, "incorrect bind status for the command"),
    0x05: ("ESME_RALYBND", T, "already bound"),
    0x06: ("ESME_RINVPRTFLG", P, "invalid priority flag"),
    0x07: ("ESME_RINVREGDLVFLG", P, "invalid registered delivery flag"),
    0x08: ("ESME_RSYSERR", T, "system error"),
    0x0A: ("ESME_RINVSRCADR", P, "invalid source address"),
    0x0B: ("ESME_RINVDSTADR", P, "invalid destination address"),
    0x0C: ("ESME_RINVMSGID", P, "invalid message id"),
    0x0D: ("ESME_RBINDFAIL", T, "bind failed"),
    0x0E: ("ESME_RINVPASWD", P, "invalid password"),
    0x0F: ("ESME_RINVSYSID", P, "invalid system id"),
    0x11: ("ESME_RCANCELFAIL", P, "cancel_sm failed"),
    0x13: ("ESME_RREPLACEFAIL", P, "replace_sm failed"),
    0x14: ("ESME_RMSGQFUL", T, "message queue full"),
    0x15: ("ESME_RINVSERTYP", P, "invalid service type"),
    0x33: ("ESME_RINVNUMDESTS", P, "invalid number of destinations"),
    0x34: ("ESME_RINVDLNAME", P, "invalid distribution list name"),
    0x40: ("ESME_RINVDESTFLAG", P, "invalid destination flag"),
    0x42: ("ESME_RINVSUBREP", P, "invalid submit-with-replace request"),
    0x43: ("ESME_RINVESMCLASS", P, "invalid esm_class"),
    0x44: ("ESME_RCNTSUBDL", P, "cannot submit to distribution list"),
    0x45: ("ESME_RSUBMITFAIL", T, "submit failed"),
    0x48: ("ESME_RINVSRCTON", P, "invalid source address TON"),
    0x49: ("ESME_RINVSRCNPI", P, "invalid source address NPI"),
    0x50: ("ESME_RINVDSTTON", P, "invalid destination address TON"),
    0x51: ("ESME_RINVDSTNPI", P, "invalid destination address NPI"),
    0x53: ("ESME_RINVSYSTYP", P, "invalid system_type"),
    0x54: ("ESME_RINVREPFLAG", P, "invalid replace_if_present flag"),
    0x55: ("ESME_RINVNUMMSGS", P, "invalid number of messages"),
    0x58: ("ESME_RTHROTTLED", T, "throttled: too many submits"),
    0x61: ("ESME_RINVSCHED", P, "invalid scheduled delivery time"),
    0x62: ("ESME_RINVEXPIRY", P, "invalid validity period"),
    0x63: ("ESME_RINVDFTMSGID", P, "predefined message id invalid"),
    0x64: ("ESME_RX_T_APPN", T, "receiver temporary application error"),
    0x65: ("ESME_RX_P_APPN", P, "receiver permanent application error"),
    0x66: ("ESME_RX_R_APPN", P, "receiver reject message error"),
    0x67: ("ESME_RQUERYFAIL", T, "query_sm failed"),
    0xC0: ("ESME_RINVOPTPARSTREAM", P, "error in the optional part of the PDU"),
    0xC1: ("ESME_ROPTPARNOTALLWD", P, "optional parameter not allowed"),
    0xC2: ("ESME_RINVPARLEN", P, "invalid parameter length"),
    0xC3: ("ESME_RMISSINGOPTPARAM", P, "expected optional parameter missing"),
    0xC4: ("ESME_RINVOPTPARAMVAL", P, "invalid optional parameter value"),
    0xFE: ("ESME_RDELIVERYFAILURE", T, "delivery failure"),
    0xFF: ("ESME_RUNKNOWNERR", T, "unknown error"),
}

ESME_ROK = 0x00
ESME_RX_T_APPN = 0x64


def name(code: int) -> str:
    """``ESME_RTHROTTLED (0x00000058)``, or ``0x00000401`` for a code we do not know."""
    entry = STATUSES.get(code)
    return f"{entry[0]} (0x{code:08X})" if entry else f"0x{code:08X}"


def describe(code: int) -> str:
    entry = STATUSES.get(code)
    return f"{name(code)} {entry[2]}" if entry else f"{name(code)} unknown status"


def kind(code: int, overrides: Mapping[int, Kind] | None = None) -> Kind:
    """Whether ``code`` is worth retrying; unknown codes are temporary (see module doc)."""
    if overrides and code in overrides:
        return overrides[code]
    entry = STATUSES.get(code)
    return entry[1] if entry else Kind.TEMPORARY


def failure(code: int, context: str, overrides: Mapping[int, Kind] | None = None) -> CarrierError:
    """The exception a submit raises for a refusal with ``code``."""
    text = f"{context}: {describe(code)}"
    if kind(code, overrides) is Kind.PERMANENT:
        return PermanentFailure(text, f"0x{code:02X}")
    return TemporaryFailure(text, f"0x{code:02X}")
