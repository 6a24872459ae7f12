"""The SMPP 3.4 carrier: a client (ESME) of our own, tested against SMSCs written by others.

``pdu`` is the pure codec, ``session`` one bind over one connection, ``carrier`` the driver
(several binds, reconnect, rate cap, submit, receipts, MO), ``status`` the command_status
table, ``receipt`` receipt parsing. See docs/smpp.md.
"""

from __future__ import annotations

from .carrier import SmppCarrier, SmppSettings

__all__ = ["SmppCarrier", "SmppSettings"]
