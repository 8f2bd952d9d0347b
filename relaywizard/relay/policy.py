"""Who may relay through the inbound server, and which messages it takes: pure decisions, no sockets.

The inbound server (``inbound.py``) asks these functions at each SMTP step and sends the ``Reply`` they
return. Keeping the decisions here, as plain functions of plain values, lets every rule be unit-tested
without a server, and keeps the wording of every refusal in one place: each is a reply a person who
set up a scanner can understand, with the enhanced status code Microsoft 365 would use for the same thing.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Literal

from relaywizard.core.errors import ConfigError

__all__ = [
    "BARE_LF_CHOICES",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "BareLf",
    "InboundPolicy",
    "Network",
    "Reply",
    "bare_line_ending_refusal",
    "parse_ip",
    "source_route_refusal",
]

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address

DEFAULT_MAX_MESSAGE_SIZE = 36_700_160
"""35 MB, the largest message Microsoft 365 accepts by default (its limit includes encoding overhead)."""

# RFC 5321 dot-string atoms and RFC 1035 host names. Deliberately stricter than aiosmtpd's parser, which
# follows the lenient RFC 5322 header grammar (comments, obsolete routes, spaces around dots).
_ATOM = re.compile(r"[A-Za-z0-9#$&'*+/=?^_`{|}~-]+")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# The relay tricks: user%domain@relay (percent hack), domain!user@relay (bang path), user@domain@relay.
_ROUTING_CHARACTERS = ("@", "%", "!")


@dataclass(frozen=True)
class Reply:
    """One SMTP reply line: ``550 5.7.1 text``."""

    code: int
    status: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text}"


def parse_ip(text: str | Address) -> Address | None:
    """The peer's address as aiosmtpd reports it; an IPv4-mapped IPv6 address becomes plain IPv4.

    A dual-stack listener on ``::`` sees IPv4 devices as ``::ffff:192.168.1.20``; the allow-list is
    written in IPv4, so compare the IPv4 form.
    """
    if isinstance(text, IPv4Address | IPv6Address):
        address: Address = text
    else:
        try:
            address = ipaddress.ip_address(text.partition("%")[0])  # drop an IPv6 zone id
        except ValueError:
            return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _in_any(ip: str | Address, networks: tuple[Network, ...]) -> bool:
    address = parse_ip(ip)
    return address is not None and any(address in network for network in networks)


def _size_text(size: int) -> str:
    megabytes = size / (1024 * 1024)
    shown = f"{megabytes:.0f}" if megabytes >= 10 else f"{megabytes:.1f}"
    return f"{shown} MB ({size} bytes)"


BareLf = Literal["refuse", "normalize"]
BARE_LF_CHOICES: tuple[BareLf, ...] = ("refuse", "normalize")


@dataclass(frozen=True)
class InboundPolicy:
    """What the inbound server accepts. Built by the engine from the settings; holds no secret."""

    hostname: str
    """The relay's name in the greeting, in EHLO and in the Received header it adds."""
    allow: tuple[Network, ...] = ()
    """Devices that may send without AUTH. Nothing else may relay unless it authenticates."""
    authenticate: Callable[[str, str], bool] | None = None
    """(login, password) -> ok, for device accounts; None offers no AUTH at all."""
    auth_networks: tuple[Network, ...] = ()
    """Networks where AUTH PLAIN/LOGIN without TLS is explicitly allowed; elsewhere only after STARTTLS."""
    allowed_recipient_domains: tuple[str, ...] | None = None
    """Internal-only mode: recipients must be in one of these domains (exact match, no subdomains)."""
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    """Announced in EHLO (SIZE), refused at MAIL FROM (SIZE=) and at the end of DATA."""
    max_recipients: int = 500
    max_line_length: int = 998
    """Characters per line of a message, without CRLF (RFC 5322 §2.1.1: MUST be no more than 998)."""
    max_connections: int = 50
    """Sessions at once; more are answered 421 4.7.0 and closed."""
    tls_context: ssl.SSLContext | None = None
    """Offer STARTTLS when set (the relay's own certificate)."""
    idle_timeout: float = 300.0
    """Seconds a session may stay silent (RFC 5321 §4.5.3.2 suggests 5 minutes)."""
    bare_lf: BareLf = "refuse"
    """A bare LF in a message: "refuse" it (550 5.6.0), or "normalize" it to CRLF for devices whose
    software ends lines with LF alone (Postfix's ``smtpd_forbid_bare_newline = normalize``). Either way
    the data ends only at CRLF.CRLF, and a bare CR is refused."""

    def __post_init__(self) -> None:
        for name, value, minimum in (
            ("max_message_size", self.max_message_size, 1024),
            ("max_recipients", self.max_recipients, 1),
            ("max_line_length", self.max_line_length, 78),
            ("max_connections", self.max_connections, 1),
        ):
            if value < minimum:
                raise ConfigError(
                    f"The relay's {name.replace('_', ' ')} must be at least {minimum}, not {value}."
                )
        if self.idle_timeout <= 0:
            raise ConfigError(
                f"The relay's idle timeout must be more than 0 seconds, not {self.idle_timeout}."
            )
        if self.allowed_recipient_domains is not None and not self.allowed_recipient_domains:
            raise ConfigError("Internal-only mode needs at least one recipient domain.")
        if self.bare_lf not in BARE_LF_CHOICES:
            raise ConfigError(
                f"The relay's bare LF handling must be refuse or normalize, not {self.bare_lf!r}."
            )

    # -- clients ------------------------------------------------------------------------------------------

    def client_allowed(self, ip: str | Address) -> bool:
        """True when the device at ``ip`` may send without AUTH."""
        return _in_any(ip, self.allow)

    def auth_without_tls_allowed(self, ip: str | Address) -> bool:
        """True when a client at ``ip`` may send its password before STARTTLS."""
        return _in_any(ip, self.auth_networks)

    @property
    def auth_offered(self) -> bool:
        """AUTH exists at all: a device-account check is configured."""
        return self.authenticate is not None

    def relay_refusal(self, ip: str, *, authenticated: bool) -> Reply | None:
        """The 550 for a client that may not relay, or None when it may."""
        if authenticated or self.client_allowed(ip):
            return None
        return Reply(
            550, "5.7.1", f"{ip} is not allowed to relay through this relay; add it to the allowed devices"
        )

    # -- sizes and counts ---------------------------------------------------------------------------------

    def size_reply(self) -> Reply:
        """The 552 for a message over the limit (declared with SIZE= or actually sent)."""
        return Reply(
            552,
            "5.3.4",
            f"Message too big: this relay accepts messages of at most {_size_text(self.max_message_size)}",
        )

    def size_refusal(self, size: int) -> Reply | None:
        return self.size_reply() if size > self.max_message_size else None

    def recipients_refusal(self, count_so_far: int) -> Reply | None:
        """The 452 for one recipient too many (the client sends the rest in another message)."""
        if count_so_far >= self.max_recipients:
            return Reply(452, "4.5.3", f"Too many recipients: at most {self.max_recipients} per message")
        return None

    def long_line_refusal(self, data: bytes) -> Reply | None:
        """The refusal for message data with a line longer than ``max_line_length``, else None.

        aiosmtpd's own limit lets one more character through on every line (it counts the transparent
        dot whether or not the line had one), so the exact RFC 5322 check is made on the content. About
        80 ms for 35 MB of base64 lines; the usual 10 KB message takes microseconds.
        """
        limit, end, find = self.max_line_length, len(data), data.find
        position = 0
        while position < end:
            line_end = find(b"\r\n", position, position + limit + 2)
            if line_end < 0:
                return self.line_too_long_reply() if end - position > limit else None
            position = line_end + 2
        return None

    def line_too_long_reply(self) -> Reply:
        return Reply(
            500,
            "5.5.2",
            f"Line too long: a line of a message may have at most {self.max_line_length} characters",
        )

    # -- addresses ----------------------------------------------------------------------------------------

    def recipient_ok(self, address: str) -> Reply | None:
        """None when ``address`` may be relayed to; else the refusal.

        ``address`` is the path of RCPT TO, with or without its angle brackets. Refused: empty and
        malformed addresses, and the classic ways of making a relay forward mail to a third host:
        source routes (``@host:user@domain``), the percent hack (``user%domain@relay``), bang paths
        (``domain!user@relay``), ``user@domain@relay``, quoted local parts hiding any of these, and
        address literals (``user@[192.0.2.1]``).
        """
        path = address.strip()
        if path.startswith("<") and path.endswith(">"):
            path = path[1:-1].strip()
        shown = f"<{path}>"
        if not path:
            return Reply(553, "5.1.3", "An empty recipient address cannot receive mail")
        if path.startswith("@"):
            return _relay_trick(shown, "source routes (@host:user@domain)")
        local, at, domain = path.rpartition("@")
        if not at or not local or not domain:
            return Reply(
                553, "5.1.3", f"{shown} is not a complete address; write it in full, such as name@example.com"
            )
        if local.startswith('"') and local.endswith('"') and len(local) >= 2:
            inside = local[1:-1]
            if any(c in inside for c in _ROUTING_CHARACTERS):
                return _relay_trick(shown, "quoted local parts containing @, % or !")
            if any(ord(c) < 32 or ord(c) > 126 for c in inside):
                return _malformed(shown)
        else:
            if "@" in local:
                return _relay_trick(shown, "addresses with more than one @")
            if "%" in local:
                return _relay_trick(shown, "the percent hack (user%domain@relay)")
            if "!" in local:
                return _relay_trick(shown, "bang paths (domain!user@relay)")
            if not all(_ATOM.fullmatch(atom) for atom in local.split(".")):
                return _malformed(shown)
        if domain.startswith("["):
            return _relay_trick(shown, "address literals (user@[IP address])")
        labels = domain.rstrip(".").split(".") if domain != "." else [""]
        if len(domain) > 255 or not all(_LABEL.fullmatch(label) for label in labels):
            return _malformed(shown)
        return self._domain_refusal(shown, ".".join(labels).lower())

    def _domain_refusal(self, shown: str, domain: str) -> Reply | None:
        allowed = self.allowed_recipient_domains
        if allowed is None or domain in {d.strip().rstrip(".").lower() for d in allowed}:
            return None
        listed = ", ".join(allowed)
        return Reply(550, "5.7.54", f"{shown}: only {listed} may be mailed through this relay")


def source_route_refusal(path: str) -> Reply | None:
    """The refusal for a source-routed RCPT TO path (``<@host:user@domain>``), else None.

    aiosmtpd's parser silently drops the route and hands on ``user@domain``, so the raw text of the
    command is checked before it parses it.
    """
    text = path.strip()
    inner = text[1:].lstrip() if text.startswith("<") else text
    if not inner.startswith("@"):
        return None
    route = inner.partition(">")[0].split()[0]
    return _relay_trick(f"<{route}>", "source routes (@host:user@domain)")


def bare_line_ending_refusal(data: bytes) -> Reply | None:
    """The refusal for message data with a CR or LF that is not part of a CRLF pair, else None.

    This is the defence against SMTP smuggling: a server that took ``<LF>.<LF>`` (or ``<CR>.<CR><LF>``...)
    as the end of the data would see a second, forged message where this relay sees one. RFC 5321
    §2.3.8 forbids bare CR and LF in SMTP data, so rather than guess what the client meant, the whole
    message is refused. Three counts at C speed: fast enough for a 35 MB message.
    """
    pairs = data.count(b"\r\n")
    if data.count(b"\r") == pairs and data.count(b"\n") == pairs:
        return None
    return Reply(
        550,
        "5.6.0",
        "Bare LF/CR not allowed: the message has a line ending that is not CRLF "
        "(RFC 5321 section 2.3.8); nothing was queued",
    )


def _relay_trick(shown: str, what: str) -> Reply:
    return Reply(550, "5.7.1", f"{shown}: this relay does not forward {what}")


def _malformed(shown: str) -> Reply:
    return Reply(553, "5.1.3", f"{shown} is not a valid email address")
