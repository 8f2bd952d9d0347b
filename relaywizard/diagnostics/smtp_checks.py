"""The staged SMTP checks, like ``swaks --quit-after``: each stage of one session is its own finding.

``SMTP_CHECKS`` lists them in session order. The connection stages (TCP, greeting, EHLO, STARTTLS, TLS)
live here; signing in and the envelope (AUTH, MAIL FROM, RCPT TO, DATA) in ``smtp_envelope``. All of them
share one ``SmtpSession`` (``smtp_session``). Without ``send`` the session ends after RCPT TO with RSET
and QUIT, so nothing is sent.

Round trips are what a check costs on a WAN: commands that need no reply before the next go out in one
write when the server offers PIPELINING (``smtp_pipeline``), and a run can take over a session begun
before it (``smtp_ahead``).
"""

from __future__ import annotations

import ssl
from typing import Any, ClassVar

import aiosmtplib

from relaywizard.diagnostics.base import Check, Context
from relaywizard.diagnostics.model import CheckResult, Group, Status, Target
from relaywizard.diagnostics.smtp_ahead import SessionAhead
from relaywizard.diagnostics.smtp_envelope import AuthCheck, DataCheck, MailFromCheck, RcptToCheck
from relaywizard.diagnostics.smtp_net import (
    ConnectFailure,
    connect_advice,
    endpoint_for,
    open_tcp,
    right_endpoint,
)
from relaywizard.diagnostics.smtp_session import SHARED_KEY, SmtpCheck, SmtpSession
from relaywizard.diagnostics.smtp_tls import (
    EXPIRY_WARNING_DAYS,
    TlsFailure,
    TlsInfo,
    probe_quietly,
    refusal,
    version_too_old,
)

__all__ = [
    "SMTP_CHECKS",
    "AuthCheck",
    "BannerCheck",
    "ConnectCheck",
    "DataCheck",
    "EhloCheck",
    "MailFromCheck",
    "RcptToCheck",
    "StartTlsCheck",
    "TlsCheck",
]


class ConnectCheck(Check):
    """TCP only: "is the port reachable from here" is the first thing a technician needs to know."""

    id = "smtp.connect"
    title = "Connection"
    group: ClassVar[Group] = "smtp"
    steps = 2  # name look-up, connect

    async def run(self, ctx: Context) -> CheckResult:
        target = ctx.target
        host, port = endpoint_for(target)
        source = f" from {target.source_address}" if target.source_address else ""
        ctx.progress(f"Connecting to {host}:{port}{source}")
        ahead = ctx.shared.pop(SessionAhead.SHARED_KEY, None)
        if not isinstance(ahead, SessionAhead) or not ahead.serves(target):
            ahead = None
        try:
            if ahead is not None:
                sock = await ahead.take().connection
            else:
                sock = await open_tcp(host, port, target.source_address, target.timeout)
        except ConnectFailure as failure:
            return self._failed(target, host, port, failure)
        finally:
            if ahead is not None and not ahead.connection.done():
                ahead.connection.cancel()  # this check was cancelled or timed out: so is the attempt
        session = SmtpSession(host, port, target.timeout, sock=sock)
        ctx.shared[SHARED_KEY] = session
        ctx.on_close(session.aclose)
        peer, local = sock.getpeername(), sock.getsockname()
        session.local_address = str(local[0])
        session.prepare(target, ahead)
        return self.passed(
            f"Connected to {host}:{port} ({peer[0]}) from {local[0]}.",
            host=host,
            port=port,
            address=str(peer[0]),
            local_address=str(local[0]),
            local_port=int(local[1]),
        )

    def _failed(self, target: Target, host: str, port: int, failure: ConnectFailure) -> CheckResult:
        summary, fix = connect_advice(target, host, port, failure)
        data = {"host": host, "port": port, "addresses": failure.addresses, "error": failure.kind}
        return self.result(Status.FAIL, summary, fix=fix, data=data)


class BannerCheck(SmtpCheck):
    """The greeting: a port that accepts TCP but never greets is a proxy, a filter or not SMTP at all."""

    id = "smtp.banner"
    title = "Greeting"
    requires = ("smtp.connect",)
    steps = 1

    async def stage(self, ctx: Context, session: SmtpSession) -> CheckResult:
        ctx.progress("Waiting for the server's greeting")
        # The EHLO name is settled by smtp.ehlo; a placeholder keeps aiosmtplib from looking it up now.
        smtp = aiosmtplib.SMTP(
            hostname=session.host,
            sock=session.sock,
            local_hostname="localhost",
            timeout=session.timeout,
            start_tls=False,
        )
        session.smtp, session.sock = smtp, None  # the transport owns the socket from here on
        try:
            response = await smtp.connect()
        except aiosmtplib.SMTPConnectResponseError as exc:
            return self.rejected(
                "The server refused this connection in its greeting",
                exc.code,
                exc.message,
                extra_fix="A refusal in the greeting concerns this connection as a whole: the sending IP "
                "address (blocklisted, or not allowed here) or too many connections at once.",
            )
        except aiosmtplib.SMTPTimeoutError:
            return self.result(
                Status.FAIL,
                f"No greeting within {session.timeout:g} s: the port accepts connections, but no SMTP server "
                "speaks.",
                fix="Something between holds the connection (a firewall's SMTP inspection, antivirus mail "
                f"scanning, a proxy), or the port expects implicit TLS. Check the host and port: "
                f"{right_endpoint(ctx.target)}.",
            )
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected):
            return self.result(
                Status.FAIL,
                "The server closed the connection without a greeting.",
                fix="The server or a firewall drops connections from this address; check whether this IP "
                "is blocklisted or limited, and that the host and port are right.",
            )
        except aiosmtplib.SMTPResponseException as exc:
            return self.result(
                Status.FAIL,
                f"The greeting is not SMTP: {exc.message}",
                fix=f"This port is not a mail server. {right_endpoint(ctx.target)}.",
            )
        greeting = " ".join(response.message.split())
        return self.passed(f"{response.code} {greeting}", reply_code=response.code, greeting=greeting)


def _extensions(smtp: aiosmtplib.SMTP) -> list[str]:
    return [f"{name.upper()} {value}".strip() for name, value in smtp.esmtp_extensions.items()]


class EhloCheck(SmtpCheck):
    id = "smtp.ehlo"
    title = "EHLO"
    requires = ("smtp.banner",)
    steps = 2  # the local name (a reverse look-up), EHLO

    async def stage(self, ctx: Context, session: SmtpSession) -> CheckResult:
        smtp = session.client()
        name = await session.local_name(ctx.target)
        session.ehlo = smtp.local_hostname = name
        ctx.progress(f"EHLO {name}")
        try:
            response = await smtp.ehlo(hostname=name)
        except ValueError:
            return self.result(
                Status.FAIL,
                f"'{name}' cannot be used as the EHLO name.",
                fix="Give a host name without spaces or control characters as the EHLO name.",
            )
        except aiosmtplib.SMTPHeloError as exc:
            return self.rejected(
                f"The server refused EHLO {name}",
                exc.code,
                exc.message,
                extra_fix="Give the device's fully qualified host name as its EHLO name.",
            )
        offered = _extensions(smtp)
        names = ", ".join(item.split()[0] for item in offered) or "no extensions"
        return self.passed(
            f"{response.code}: the server accepted EHLO {name} and offers {names}.",
            name=name,
            extensions=offered,
        )


class StartTlsCheck(SmtpCheck):
    """The STARTTLS command and the handshake; certificate and version problems are ``smtp.tls``'s."""

    id = "smtp.starttls"
    title = "STARTTLS"
    requires = ("smtp.ehlo",)
    steps = 5  # STARTTLS, handshake, EHLO again; or a probe (2) to explain a broken-off handshake

    async def stage(self, ctx: Context, session: SmtpSession) -> CheckResult:
        target = ctx.target
        smtp = session.client()
        if not smtp.supports_extension("starttls"):
            return self._not_offered(target)
        try:
            context = await session.verifying_context(target)
        except (OSError, ssl.SSLError) as exc:
            return self.result(
                Status.FAIL,
                f"Cannot use the CA file {target.ca_file}: {exc}",
                fix="Give --ca-file a readable PEM file of CA certificates.",
            )
        session.tls_context = context
        ctx.progress("STARTTLS")
        try:
            response = await smtp.starttls(server_hostname=session.host, tls_context=context)
        except aiosmtplib.SMTPResponseException as exc:
            return self.rejected("The server refused STARTTLS", exc.code, exc.message)
        except ssl.SSLError as exc:
            smtp.close()
            failure = TlsFailure.from_error(exc)
            if failure.problem != "other":
                return self._refused_by_us(session, failure)
            return await self._broken_off(ctx, session, failure.reason)
        except (aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected) as exc:
            smtp.close()
            return await self._broken_off(ctx, session, str(exc).rstrip("."))
        session.encrypted = True
        try:
            ehlo = await smtp.ehlo(hostname=session.ehlo)
        except aiosmtplib.SMTPHeloError as exc:
            return self.rejected("The server refused EHLO after STARTTLS", exc.code, exc.message)
        reply = " ".join(f"{response.code} {response.message}".split())
        return self.passed(
            f"Upgraded the connection with STARTTLS ({reply}).",
            reply=reply,
            extensions=_extensions(smtp),
            ehlo_reply_code=ehlo.code,
        )

    def _refused_by_us(self, session: SmtpSession, failure: TlsFailure) -> CheckResult:
        session.tls_failure = failure
        return self.passed(
            "The server accepted STARTTLS; this machine refused the handshake (see TLS). Nothing more is "
            "sent on this connection.",
            handshake="refused",
            problem=failure.problem,
        )

    async def _broken_off(self, ctx: Context, session: SmtpSession, detail: str) -> CheckResult:
        """A handshake that ended without a reason: a server offering only TLS 1.0/1.1 often just hangs
        up. A probe that accepts old versions tells that apart from a real breakdown."""
        ctx.progress("Probing which TLS versions the server offers")
        info = await probe_quietly(
            session.host, session.port, ctx.target.source_address, session.ehlo, session.timeout, rounds=2
        )
        if info is not None and version_too_old(info.version):
            session.tls_probe = info
            return self._refused_by_us(session, TlsFailure("version", f"the server offers {info.version}"))
        return self.result(
            Status.FAIL,
            f"The TLS upgrade failed: {detail}.",
            fix="The server or a device between broke off the TLS handshake. Check for a firewall, proxy or "
            "antivirus that inspects TLS on this port, and try again.",
        )

    def _not_offered(self, target: Target) -> CheckResult:
        if target.method == "smtp-auth":
            return self.result(
                Status.FAIL,
                "The server does not offer STARTTLS, which SMTP AUTH requires.",
                fix=f"Check the host and port: {right_endpoint(target)}, and STARTTLS is always offered "
                "there. A firewall's SMTP inspection can strip STARTTLS from the server's answer: turn it "
                "off for this traffic.",
                data={"offered": False},
            )
        return self.result(
            Status.WARN,
            "The server does not offer STARTTLS: mail would travel unencrypted.",
            fix="Microsoft 365's MX endpoint offers STARTTLS, so something between (a firewall's SMTP "
            "inspection) may strip it, or this is not the MX endpoint. A connector created with "
            "-RequireTls $true refuses unencrypted mail.",
            data={"offered": False},
        )


class TlsCheck(SmtpCheck):
    """Version and certificate of the upgraded connection: the reason credentials are safe to send."""

    id = "smtp.tls"
    title = "TLS and certificate"
    requires = ("smtp.starttls",)
    steps = 4  # a probe connection to show a refused certificate: connect, greeting, EHLO, handshake

    async def stage(self, ctx: Context, session: SmtpSession) -> CheckResult:
        failure = session.tls_failure
        if failure is not None:
            info = session.tls_probe
            if info is None:
                ctx.progress("Fetching the refused certificate (without verification) to show it")
                info = await probe_quietly(
                    session.host, session.port, ctx.target.source_address, session.ehlo, session.timeout
                )
            data: dict[str, Any] = {"verified": False, "error": failure.reason, "problem": failure.problem}
            data.update(info.to_data() if info else {})
            summary, fix = refusal(failure, info, session.host)
            return self.result(Status.FAIL, summary, fix=fix, data=data)
        if not session.encrypted:
            return self.skipped("Not encrypted: the server offered no STARTTLS.")
        info = TlsInfo.from_ssl_object(session.client().get_transport_info("ssl_object"))
        data = {"verified": True, **info.to_data()}
        if version_too_old(info.version):
            summary, fix = refusal(TlsFailure("version", str(info.version)), info, session.host)
            return self.result(Status.FAIL, summary, fix=fix, data=data)
        about = f"{info.version} with {info.cipher}"
        cert = info.certificate
        if cert is None:
            return self.passed(f"{about}; the certificate is valid for {session.host}.", **data)
        days = cert.days_left()
        valid = (
            f"the certificate for {', '.join(cert.names) or cert.subject} from {cert.issuer_name} is valid "
            f"until {cert.not_after:%Y-%m-%d}"
        )
        if days < EXPIRY_WARNING_DAYS:
            return self.result(
                Status.WARN,
                f"{about}; {valid}, only {days} more days.",
                fix=f"The certificate of {session.host} must be renewed before {cert.not_after:%Y-%m-%d}, or "
                "mail will stop then. Microsoft renews its own in time: a certificate about to expire on a "
                "Microsoft 365 endpoint means a device between (TLS inspection) presents its own.",
                data=data,
            )
        return self.passed(f"{about}; {valid} ({days} days).", **data)


SMTP_CHECKS: tuple[type[Check], ...] = (
    ConnectCheck,
    BannerCheck,
    EhloCheck,
    StartTlsCheck,
    TlsCheck,
    AuthCheck,
    MailFromCheck,
    RcptToCheck,
    DataCheck,
)
