"""Where the staged SMTP checks connect, and how: the endpoint, the TCP connection, the EHLO name.

The TCP connection is opened here rather than by aiosmtplib so that "the port is closed", "nothing
answers" and "no greeting" are separate findings, and so that it can be bound to a chosen source address
(a LAN interface; the lab's connector test uses 127.0.0.2). The connected socket is then handed to
``aiosmtplib.SMTP(sock=...)``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from typing import Literal

from relaywizard.core import m365
from relaywizard.diagnostics.model import Target

ConnectFailureKind = Literal["unresolvable", "resolve-timeout", "refused", "timeout", "source", "error"]


def endpoint_for(target: Target) -> tuple[str, int]:
    """Where to connect: ``--smtp-host``/``--smtp-port``, else what the method implies (``core.m365``)."""
    method = m365.SENDING_METHODS[target.method]
    host = m365.mx_endpoint_for(target.domain) if method.host == m365.MX_HOST_PLACEHOLDER else method.host
    return target.smtp_host or host, target.smtp_port or method.port


def method_name(target: Target) -> str:
    return m365.SENDING_METHODS[target.method].name


class ConnectFailure(Exception):
    """Why no TCP connection came about: a kind the check turns into advice, and the system's words."""

    def __init__(self, kind: ConnectFailureKind, detail: str, addresses: list[str] | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.addresses = addresses or []


def _family(source_address: str | None) -> socket.AddressFamily:
    if source_address is None:
        return socket.AF_UNSPEC
    try:
        version = ipaddress.ip_address(source_address).version
    except ValueError:
        raise ConnectFailure("source", f"'{source_address}' is not an IP address") from None
    return socket.AF_INET if version == 4 else socket.AF_INET6


def _literal(host: str, family: socket.AddressFamily) -> list[tuple[int, str]] | None:
    """``host`` when it is an IP address of ``family``: it needs no look-up (nor a worker thread for one)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    literal_family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    if family not in (socket.AF_UNSPEC, literal_family) or "%" in host:
        return None  # getaddrinfo says what is wrong with it, or handles the zone
    return [(int(literal_family), str(ip))]


async def _resolve(host: str, port: int, family: socket.AddressFamily, step: float) -> list[tuple[int, str]]:
    """(family, address) pairs for ``host``, without duplicates, in the resolver's order."""
    literal = _literal(host, family)
    if literal is not None:
        return literal
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM), step
        )
    except TimeoutError:
        raise ConnectFailure("resolve-timeout", f"looking up {host} took longer than {step:g} s") from None
    except socket.gaierror as exc:
        raise ConnectFailure("unresolvable", exc.strerror or str(exc)) from None
    seen: list[tuple[int, str]] = []
    for fam, _, _, _, sockaddr in infos:
        entry = (int(fam), str(sockaddr[0]))
        if entry not in seen:
            seen.append(entry)
    if not seen:
        raise ConnectFailure("unresolvable", "no address found")
    return seen


async def open_tcp(host: str, port: int, source_address: str | None, step: float) -> socket.socket:
    """A connected non-blocking socket to ``host:port``, bound to ``source_address`` when given.

    Every address of the host is tried within ``step`` seconds (each gets a fair share of what is left), as a
    client would; the failure reported is the most telling one: refused beats timed out beats the rest.
    """
    family = _family(source_address)
    addresses = await _resolve(host, port, family, step)
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + step
    failures: list[tuple[ConnectFailureKind, str]] = []
    for index, (fam, address) in enumerate(addresses):
        sock = socket.socket(fam, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            if source_address is not None:
                try:
                    sock.bind((source_address, 0))
                except OSError as exc:
                    raise ConnectFailure(
                        "source", f"cannot use {source_address}: {exc.strerror or exc}"
                    ) from None
            share = max(deadline - time.monotonic(), 0.0) / (len(addresses) - index)
            # Not wait_for, which runs the connect in a task of its own: this way the SYN is sent before
            # the first await, which ``SessionAhead`` relies on.
            async with asyncio.timeout(share):
                await loop.sock_connect(sock, (address, port))
            return sock
        except ConnectionRefusedError:
            failures.append(("refused", f"{address}: connection refused"))
        except TimeoutError:
            failures.append(("timeout", f"{address}: no answer within {share:.3g} s"))
        except OSError as exc:
            failures.append(("error", f"{address}: {exc.strerror or exc}"))
        except BaseException:
            sock.close()
            raise
        sock.close()
    tried = [address for _, address in addresses]
    for kind in ("refused", "timeout", "error"):
        if any(k == kind for k, _ in failures):
            detail = "; ".join(text for _, text in failures)
            raise ConnectFailure(kind, detail, tried)
    raise ConnectFailure("error", "no address could be tried", tried)


async def local_fqdn(step: float) -> str:
    """This machine's FQDN (``socket.getfqdn`` may wait on a slow reverse look-up: it gets ``step`` s)."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(socket.getfqdn), step)
    except TimeoutError:
        return socket.gethostname()


def ehlo_name(target: Target, fqdn: str, sock_name: str | None) -> str:
    """``--helo`` if given, else this machine's FQDN (``local_fqdn``), else an address literal (RFC 5321
    4.1.3)."""
    if target.helo_name:
        return target.helo_name.strip()
    if fqdn and fqdn.isascii() and all(ch.isalnum() or ch in "-._" for ch in fqdn):
        return fqdn
    if sock_name is None:
        return "localhost"
    return f"[IPv6:{sock_name}]" if ":" in sock_name else f"[{sock_name}]"


def right_endpoint(target: Target) -> str:
    """Where the method sends, for fixes that say "check the host and port"."""
    if target.method == "smtp-auth":
        unsupported = ", ".join(str(p) for p in m365.SMTP_AUTH_UNSUPPORTED_PORTS)
        return (
            f"SMTP AUTH uses {m365.SMTP_AUTH_ENDPOINT.host} on port {m365.SMTP_AUTH_ENDPOINT.port} "
            f"(port {unsupported} is not supported)"
        )
    return (
        f"{method_name(target)} uses the domain's MX endpoint ({m365.mx_endpoint_for(target.domain)}) on "
        f"port {m365.MX_PORT}"
    )


def connect_advice(target: Target, host: str, port: int, failure: ConnectFailure) -> tuple[str, str]:
    """Summary and fix for a connection that did not come about: what this kind of failure means here."""
    where = f"{host}:{port}"
    if failure.kind == "refused":
        summary = f"{where} refused the connection: the port is closed ({failure.detail})."
        fix = (
            f"Check the host and port: {right_endpoint(target)}. If they are right, a firewall or "
            "security software on this network rejects the connection."
        )
    elif failure.kind == "timeout":
        summary = (
            f"No answer from {where} within {target.timeout:g} s: the connection is probably blocked by "
            "a firewall or the ISP."
        )
        fix = f"Allow outbound TCP port {port} to {host} in the office firewall (and any proxy or VPN)."
        if port == m365.MX_PORT:
            fix += (
                f" Many ISPs block outbound port {port}: ask the ISP to open it, or send with SMTP AUTH "
                f"to {m365.SMTP_AUTH_ENDPOINT.host}:{m365.SMTP_AUTH_ENDPOINT.port} instead."
            )
        fix += " On a slow link, raise --timeout."
    elif failure.kind in ("unresolvable", "resolve-timeout"):
        what = "could not be resolved" if failure.kind == "unresolvable" else "could not be looked up in time"
        summary = f"The host name {host} {what} ({failure.detail})."
        fix = (
            f"Check the host name: {right_endpoint(target)}. If it is right, check this machine's DNS "
            "settings (the dns checks show what the domain's records say)."
        )
    elif failure.kind == "source":
        summary = f"Cannot connect from the given source address: {failure.detail}."
        fix = "Use an address that belongs to one of this machine's network interfaces."
    else:
        summary = f"Could not connect to {where}: {failure.detail}."
        fix = (
            "This machine has no working route to the server: check its network connection, VPN, and "
            "whether IPv6 is routed when the host resolves to IPv6 addresses."
        )
    return summary, fix
