"""The real DNS behind the ``Resolver`` interface: dnspython's asyncio resolver.

The checks only ever see record texts or a ``DnsLookupError`` that names what went wrong and which server
was asked, so a technician can tell "the office's DNS server refused" from "the domain does not exist".

dnspython takes about 40 ms to import, longer than a DNS answer on a LAN takes to arrive. So it is imported
where it is used, and a run's first query does that in a worker thread, while the SMTP stages that start
at the same time wait for the server: the import costs a run nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from relaywizard.core import validate
from relaywizard.diagnostics.base import DnsFailureKind, DnsLookupError

if TYPE_CHECKING:
    import dns.asyncresolver
    import dns.rdata
    import dns.resolver

__all__ = ["DnsResolver", "parse_dns_server"]

DEFAULT_DNS_PORT = 53


def parse_dns_server(text: str) -> tuple[str, int]:
    """``--dns-server`` as (IP address, port): ``192.0.2.53``, ``192.0.2.53:5353``, ``[2001:db8::53]:53``.

    A DNS server has to be given by address: looking up its name would need DNS already.
    """
    expected = "a DNS server address such as 192.0.2.53 or 192.0.2.53:5353"
    give_address = "give its IP address, as in 192.0.2.53 or [2001:db8::53]:5353"
    try:
        host, port = validate.host_port(text, DEFAULT_DNS_PORT)
    except validate.InvalidValue as exc:
        reason = exc.reason or give_address
        message = f"{validate.show(text)} is not a DNS server: {reason}"
        raise validate.InvalidValue(text, expected, message=message) from None
    try:
        address = validate.ip_address(host)
    except validate.InvalidValue:
        message = f"{validate.show(text)} is not a DNS server: {give_address}"
        raise validate.InvalidValue(text, expected, message=message) from None
    return address, port


def _format_server(address: str, port: int) -> str:
    return validate.format_host_port(address, port)


class DnsResolver:
    """Asks the given servers (or the system's resolver) with one overall time limit per query."""

    def __init__(self, servers: Sequence[tuple[str, int]] = (), timeout: float = 10.0) -> None:
        self._system = not servers
        self._given = tuple(servers)
        self._timeout = timeout
        self._servers = [_format_server(address, port) for address, port in servers]
        self._resolver: dns.asyncresolver.Resolver | None = None
        self._loading: asyncio.Future[dns.asyncresolver.Resolver] | None = None

    def _build(self) -> dns.asyncresolver.Resolver:
        """dnspython's resolver, set up (importing dnspython and reading resolv.conf when needed)."""
        import dns.asyncresolver
        import dns.nameserver
        import dns.resolver

        try:
            resolver = dns.asyncresolver.Resolver(configure=self._system)
        except dns.resolver.NoResolverConfiguration:
            # No resolv.conf (a container, a broken network setup): every query then fails with a
            # message naming "the system resolver (none configured)" instead of crashing here.
            resolver = dns.asyncresolver.Resolver(configure=False)
        if self._given:
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(address, port) for address, port in self._given
            ]
        servers = _server_texts(resolver)
        # One try per server must fit in the lifetime, or a dead first server would hide the second.
        resolver.lifetime = self._timeout
        resolver.timeout = self._timeout / max(1, len(servers))
        resolver.cache = None  # a run asks each name once; a stale answer would hide a fix
        self._servers = servers
        return resolver

    def _ready_now(self) -> dns.asyncresolver.Resolver:
        if self._resolver is None:
            self._resolver = self._build()
        return self._resolver

    async def _ready(self) -> dns.asyncresolver.Resolver:
        """The resolver, built in a worker thread the first time: concurrent queries share that build."""
        if self._resolver is None:
            loop = asyncio.get_running_loop()
            if self._loading is None or self._loading.get_loop() is not loop:
                self._loading = loop.run_in_executor(None, self._build)
            resolver = await asyncio.shield(self._loading)
            if self._resolver is None:
                self._resolver = resolver
        return self._resolver

    def describe(self) -> str:
        if self._system:
            self._ready_now()
        listed = ", ".join(self._servers) or "none configured"
        return f"the system resolver ({listed})" if self._system else listed

    async def query(self, name: str, rdtype: str) -> list[str]:
        resolver = await self._ready()
        import dns.exception
        import dns.name
        import dns.resolver

        try:
            qname = dns.name.from_text(name)
            answer = await resolver.resolve(qname, rdtype, search=False)
        except dns.resolver.NoAnswer:
            return []
        except dns.resolver.NXDOMAIN:
            raise self._error("nxdomain", name, rdtype) from None
        except dns.resolver.LifetimeTimeout:
            raise self._error("timeout", name, rdtype) from None
        except dns.resolver.NoNameservers as exc:
            raise self._no_nameservers(exc, name, rdtype) from None
        except (dns.exception.DNSException, OSError, ValueError) as exc:
            raise self._error("error", name, rdtype, str(exc) or type(exc).__name__) from None
        return [_text(rdata) for rdata in answer]

    def _error(self, kind: DnsFailureKind, name: str, rdtype: str, detail: str = "") -> DnsLookupError:
        return DnsLookupError(kind, name, rdtype, self.describe(), detail)

    def _no_nameservers(self, exc: dns.resolver.NoNameservers, name: str, rdtype: str) -> DnsLookupError:
        """Every server failed: say SERVFAIL or REFUSED when that is what they answered."""
        import dns.exception
        import dns.rcode

        errors: list[tuple[Any, ...]] = list(exc.kwargs.get("errors") or [])
        rcodes = {_rcode(error) for error in errors} - {None}
        servers = sorted({_format_server(*_address_port(error)) for error in errors}) or self._servers
        server = ", ".join(servers) if servers else self.describe()
        kind: DnsFailureKind
        detail = ""
        if rcodes == {dns.rcode.SERVFAIL}:
            kind = "servfail"
        elif rcodes == {dns.rcode.REFUSED}:
            kind = "refused"
        elif any(isinstance(error[3], dns.exception.Timeout) for error in errors if len(error) > 3):
            kind = "timeout"
        else:
            kind = "error"
            detail = "; ".join(sorted({str(error[3]) for error in errors if len(error) > 3})) or str(exc)
        return DnsLookupError(kind, name, rdtype, server, detail)


def _server_texts(resolver: dns.asyncresolver.Resolver) -> list[str]:
    import dns.nameserver

    texts = []
    for server in resolver.nameservers:
        if isinstance(server, dns.nameserver.Nameserver):
            texts.append(_format_server(server.answer_nameserver(), server.answer_port()))
        else:
            texts.append(_format_server(server, resolver.port))
    return texts


def _rcode(error: tuple[Any, ...]) -> int | None:
    import dns.message

    response = error[4] if len(error) > 4 else None
    if isinstance(response, dns.message.Message):
        return int(response.rcode())
    return None


def _address_port(error: tuple[Any, ...]) -> tuple[str, int]:
    """dnspython names a server "Do53:127.0.0.1@25353"; the address alone is what people recognise."""
    text = str(error[0] or "")
    port = int(error[2]) if len(error) > 2 else DEFAULT_DNS_PORT
    address = text.split(":", 1)[1] if text.startswith("Do53:") else text
    return address.rsplit("@", 1)[0], port


def _text(rdata: dns.rdata.Rdata) -> str:
    """TXT: the character-strings of one record joined, unquoted; everything else in presentation form."""
    import dns.rdtypes.ANY.TXT

    if isinstance(rdata, dns.rdtypes.ANY.TXT.TXT):
        return b"".join(rdata.strings).decode("utf-8", errors="replace")
    return str(rdata.to_text())
