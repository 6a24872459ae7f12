"""Who may send: trusted client networks, or an envelope sender matching ``allowed_senders``.

The default (neither key set) trusts loopback clients only, so a fresh install behind a
local MTA works and is still not an open relay. Setting ``allowed_senders`` drops the
loopback default: then the MTA in front must be listed in ``allowed_networks`` to be trusted
whatever the sender, as Postfix's ``mynetworks`` would be.
"""

from __future__ import annotations

import fnmatch
import ipaddress

from mailsms.config import PolicySettings
from mailsms.policy import Refusal

NOT_AUTHORISED = Refusal(550, "5.7.1", "Sender not authorised to send SMS through this gateway")


class SenderRule:
    name = "senders"
    description = "the client network or the envelope sender must be allowed"

    def __init__(self, policy: PolicySettings) -> None:
        self.networks = policy.trusted_networks
        self.patterns = tuple(p.lower() for p in policy.allowed_senders or ())

    def check(self, sender: str, peer_ip: str | None) -> Refusal | None:
        if self.trusted(peer_ip):
            return None
        address = sender.lower().strip("<>")
        if address and any(fnmatch.fnmatchcase(address, p) for p in self.patterns):
            return None
        return NOT_AUTHORISED

    def trusted(self, peer_ip: str | None) -> bool:
        """Whether the client's network is trusted whatever the sender."""
        if peer_ip is None:  # a Unix socket: only local processes can connect
            return True
        try:
            ip = ipaddress.ip_address(peer_ip.split("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # an IPv4 client on a dual-stack socket
        return any(ip in net for net in self.networks)
