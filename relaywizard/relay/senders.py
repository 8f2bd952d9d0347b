"""A sender identity per device: which mailbox or alias each office device's mail goes out as.

The relay rewrites every message's envelope sender (and a foreign From) to one address Microsoft 365 lets
it send as. With one address for all, every scan looks alike; with a map, the front-desk scanner sends as
``scans-frontdesk@contoso.com`` and the warehouse printer as ``printer-warehouse@contoso.com``, so people
(and message trace) can tell them apart, and replies go to a mailbox that means something.

A device is named by its address (``192.168.1.10``), its network (``192.168.1.0/24``) or the device
account it signs in with (``login:frontdesk``). The most specific rule wins: a device account first, then
the narrowest network holding the device's address; a device no rule names sends as the default (the
relay's ``--sender``, else the mailbox it signs in as).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from relaywizard.core import validate

LOGIN_PREFIX = validate.DEVICE_LOGIN_PREFIX
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class SenderRule:
    """One device (an address, a network or ``login:NAME``) and the address it sends as."""

    device: str
    sender: str

    @property
    def login(self) -> str | None:
        return self.device[len(LOGIN_PREFIX) :] if self.device.startswith(LOGIN_PREFIX) else None

    @property
    def network(self) -> Network | None:
        return None if self.login is not None else ipaddress.ip_network(self.device, strict=False)


def device_key(text: str) -> str:
    """A device as the settings write it; ``ValueError`` (one sentence) for anything else."""
    return validate.device(text)


def parse_rule(text: str) -> SenderRule:
    """``DEVICE=ADDRESS`` (the command line's ``--device-sender``) as a rule; ``ValueError`` if not."""
    device, separator, sender = text.partition("=")
    if not separator:
        raise ValueError(f"'{text}' is not DEVICE=ADDRESS, such as 192.168.1.10=scans@contoso.com")
    return SenderRule(device_key(device), validate.email(sender.strip()))


class SenderMap:
    """The rules, and the default for allowed devices that no rule names."""

    def __init__(self, rules: Iterable[SenderRule] = (), default: str | None = None) -> None:
        self.rules = tuple(rules)
        self.default = default
        self._logins = {rule.login.lower(): rule.sender for rule in self.rules if rule.login is not None}
        networks: list[tuple[Network, str]] = []
        for rule in self.rules:
            if (network := rule.network) is not None:
                networks.append((network, rule.sender))
        # narrowest first, so a single address beats its network
        self._networks = sorted(networks, key=lambda pair: -pair[0].prefixlen)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, str], default: str | None = None) -> SenderMap:
        return cls((SenderRule(device_key(device), sender) for device, sender in mapping.items()), default)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def sender_for(self, device: str, login: str | None = None) -> str | None:
        """The address a message from ``device`` (signed in as ``login``, if it did) goes out as."""
        if login is not None and login.lower() in self._logins:
            return self._logins[login.lower()]
        try:
            address = ipaddress.ip_address(device)
        except ValueError:
            return self.default
        for network, sender in self._networks:
            if address.version == network.version and address in network:
                return sender
        return self.default

    def senders(self) -> list[str]:
        """Every address a device may send as, the default first, each once."""
        seen: dict[str, str] = {}
        for address in (self.default, *(rule.sender for rule in self.rules)):
            if address:
                seen.setdefault(address.lower(), address)
        return list(seen.values())
