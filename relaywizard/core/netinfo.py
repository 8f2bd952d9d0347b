"""This computer's addresses, judged for the local relay: which ones an office device can reach.

The addresses themselves come from the platform (the wizard asks Qt's ``QNetworkInterface``, which knows
every interface on Windows, macOS and Linux alike); this module only judges and orders them, so the
judgement is the same everywhere and testable without a network. It also holds the rule for the relay's
allow-list entries: an address or a network, a bare address meaning just that one host.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from relaywizard.core import validate

__all__ = [
    "ANY_IPV4",
    "ANY_IPV6",
    "AddressKind",
    "ListenChoice",
    "LocalAddress",
    "classify",
    "device_network",
    "listen_choices",
    "ordered",
    "suggested_network",
]

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
AddressKind = Literal["lan", "public", "link-local", "loopback", "any"]

ANY_IPV4 = "0.0.0.0"
ANY_IPV6 = "::"

# Devices on the office network reach the LAN addresses; loopback only serves this computer itself.
_RANK: dict[AddressKind, int] = {"lan": 0, "public": 1, "link-local": 2, "any": 3, "loopback": 4}
# A network this wide is not "the office": suggesting it would let far too many hosts relay.
_WIDEST_SUGGESTED = {4: 16, 6: 48}


def classify(ip: IP) -> AddressKind:
    """What kind of address ``ip`` is, as far as a device on the office network is concerned."""
    if ip.is_unspecified:
        return "any"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_global:
        return "public"
    return "lan"


@dataclass(frozen=True)
class LocalAddress:
    """One address of one interface of this computer."""

    address: str
    """The address in its normal written form, without an IPv6 zone ("192.168.1.5", "fd00::2")."""
    interface: str
    """The interface's name as the system shows it ("eth0", "Ethernet", "Wi-Fi")."""
    prefix: int | None = None
    """The length of the network prefix on that interface (24 for a /24), when known."""

    @property
    def ip(self) -> IP:
        return ipaddress.ip_address(self.address)

    @property
    def kind(self) -> AddressKind:
        return classify(self.ip)

    @property
    def network(self) -> Network | None:
        """The network the interface is on (``192.168.1.0/24``), when the prefix is known."""
        if self.prefix is None:
            return None
        return ipaddress.ip_network(f"{self.address}/{self.prefix}", strict=False)


def _usable(address: LocalAddress) -> LocalAddress | None:
    """The address without its zone, or None when no device could connect to it."""
    text = address.address.strip().partition("%")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    # An IPv6 link-local address only works with a zone id, which no device's settings take.
    if ip.is_multicast or ip.is_unspecified or (ip.version == 6 and ip.is_link_local):
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return None
    prefix = (
        address.prefix if address.prefix is not None and 0 <= address.prefix <= ip.max_prefixlen else None
    )
    return LocalAddress(str(ip), address.interface, prefix)


def ordered(addresses: Iterable[LocalAddress]) -> list[LocalAddress]:
    """The addresses a device could connect to: office network first, then public, loopback last.

    IPv4 comes before IPv6 within a kind (most devices only know IPv4); duplicates are dropped.
    """
    seen: set[str] = set()
    result: list[LocalAddress] = []
    for candidate in addresses:
        address = _usable(candidate)
        if address is None or address.address in seen:
            continue
        seen.add(address.address)
        result.append(address)
    return sorted(result, key=lambda a: (_RANK[a.kind], a.ip.version, a.ip))


@dataclass(frozen=True)
class ListenChoice:
    """One entry of the "listen on" list: the host to bind, and how to describe it to a person."""

    host: str
    label: str
    kind: AddressKind
    network: Network | None = None


def _describe(address: LocalAddress) -> str:
    network = address.network
    where = f"{address.interface}, " if address.interface else ""
    if address.kind == "loopback":
        return f"{address.address} — this computer only: devices cannot reach it"
    if address.kind == "lan":
        on = f" {network}" if network is not None else ""
        return f"{address.address} — {where}office network{on}"
    if address.kind == "public":
        return f"{address.address} — {where}public address: allow only your devices"
    return f"{address.address} — {where}link-local (self-assigned) address"


def listen_choices(addresses: Iterable[LocalAddress]) -> list[ListenChoice]:
    """The "listen on" list: this computer's reachable addresses, then every address, loopback last."""
    usable = ordered(addresses)
    choices = [
        ListenChoice(a.address, _describe(a), a.kind, a.network) for a in usable if a.kind != "loopback"
    ]
    choices.append(ListenChoice(ANY_IPV4, f"{ANY_IPV4} — every IPv4 address of this computer", "any"))
    if any(a.ip.version == 6 for a in usable if a.kind != "loopback"):
        choices.append(ListenChoice(ANY_IPV6, f"{ANY_IPV6} — every address of this computer", "any"))
    loopback = [a for a in usable if a.kind == "loopback"]
    if not any(a.ip.version == 4 for a in loopback):
        loopback.insert(0, LocalAddress("127.0.0.1", "", 8))  # always there, even if not reported
    choices += [ListenChoice(a.address, _describe(a), a.kind, a.network) for a in loopback]
    return choices


def suggested_network(choice: ListenChoice) -> str | None:
    """The allow-list entry that admits the devices beside this listen address, or None.

    The office network for a LAN address (unless it is wider than a /16 or a /48), this computer itself
    for loopback, nothing for public, link-local and every-address choices: those need a deliberate entry.
    """
    if choice.kind == "loopback":
        ip = ipaddress.ip_address(choice.host)
        return f"{ip}/{ip.max_prefixlen}"
    if choice.kind != "lan" or choice.network is None:
        return None
    if choice.network.prefixlen < _WIDEST_SUGGESTED[choice.network.version]:
        return None
    return str(choice.network)


def device_network(text: str) -> str:
    """An allow-list entry: a network such as ``192.168.1.0/24``, or one address (a /32 or /128)."""
    expected = "an IP address or a network such as 192.168.1.0/24"
    stripped = text.strip()
    if not stripped:
        raise validate.InvalidValue(text, expected, message=f"The value is empty; {expected} is needed")
    if "/" in stripped:
        return validate.cidr(stripped)
    try:
        ip = ipaddress.ip_address(validate.ip_address(stripped))
    except validate.InvalidValue as exc:
        raise validate.InvalidValue(text, expected, reason=exc.reason, suggestion=exc.suggestion) from None
    return f"{ip}/{ip.max_prefixlen}"
