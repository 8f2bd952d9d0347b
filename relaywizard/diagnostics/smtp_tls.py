"""TLS for the staged SMTP checks: whom to trust, what the certificate says, and why a handshake failed.

The session's handshake always verifies (system CAs plus ``--ca-file``, TLS 1.2 or newer), because a
password or token is sent over it. When that handshake fails, a technician still needs to see *which*
certificate was presented — a firewall inspecting TLS shows up as an unexpected issuer — so a second,
short probe connection fetches it without verification. Nothing but EHLO and STARTTLS is ever sent on
the probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from relaywizard.core import m365
from relaywizard.diagnostics.smtp_net import open_tcp

if TYPE_CHECKING:
    from cryptography import x509

EXPIRY_WARNING_DAYS = 21

#: TLS versions as ``SSLObject.version()`` names them, oldest first.
_VERSION_ORDER = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
_MIN_VERSION = "TLSv1.2" if m365.SMTP_AUTH_MIN_TLS is ssl.TLSVersion.TLSv1_2 else "TLSv1.3"

# OpenSSL reasons that mean "no common protocol version".
_VERSION_REASONS = (
    "UNSUPPORTED_PROTOCOL",
    "PROTOCOL_VERSION",
    "VERSION_TOO_LOW",
    "WRONG_SSL_VERSION",
    "NO_PROTOCOLS_AVAILABLE",
)
# X509_V_ERR_* codes (OpenSSL x509_vfy.h) that tell which kind of certificate problem it is.
_X509_EXPIRED = 10
_X509_NOT_YET_VALID = 9
_X509_HOSTNAME_MISMATCH = 62
_X509_IP_MISMATCH = 64

TlsProblem = Literal["untrusted", "name", "expired", "version", "other"]


def verifying_context(ca_file: Path | None) -> ssl.SSLContext:
    """The session's context: the system's CAs plus ``ca_file``, host name checked, TLS 1.2 or newer.

    ``OSError``/``ssl.SSLError`` when ``ca_file`` cannot be read.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    context.minimum_version = m365.SMTP_AUTH_MIN_TLS
    return context


def probe_context() -> ssl.SSLContext:
    """Accepts any certificate and any protocol version: only to *look at* what the server presents."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with contextlib.suppress(ssl.SSLError):  # a build without security level 0
        context.set_ciphers("ALL:@SECLEVEL=0")
    return context


def classify(error: ssl.SSLError) -> TlsProblem:
    """What kind of handshake failure ``error`` is."""
    if isinstance(error, ssl.SSLCertVerificationError):
        code = error.verify_code
        if code in (_X509_HOSTNAME_MISMATCH, _X509_IP_MISMATCH):
            return "name"
        if code in (_X509_EXPIRED, _X509_NOT_YET_VALID):
            return "expired"
        return "untrusted"
    reason = (error.reason or "").upper()
    if any(part in reason for part in _VERSION_REASONS):
        return "version"
    return "other"


def describe(error: ssl.SSLError) -> str:
    """OpenSSL's words for the failure, without Python's file/line noise."""
    if isinstance(error, ssl.SSLCertVerificationError) and error.verify_message:
        return str(error.verify_message).rstrip(".")
    reason = error.reason or ""
    return reason.replace("_", " ").lower() if reason else str(error)


@dataclass(frozen=True)
class TlsFailure:
    """A handshake this machine refused: which kind of problem, in OpenSSL's words."""

    problem: TlsProblem
    reason: str

    @classmethod
    def from_error(cls, error: ssl.SSLError) -> TlsFailure:
        return cls(classify(error), describe(error))


def version_too_old(version: str | None) -> bool:
    return version in _VERSION_ORDER and _VERSION_ORDER.index(version) < _VERSION_ORDER.index(_MIN_VERSION)


def _common_name(name: x509.Name) -> str:
    """The part people recognise: the CN ("DigiCert Cloud Services CA-1"), else the organisation."""
    from cryptography.x509.oid import NameOID

    for oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME):
        found = name.get_attributes_for_oid(oid)
        if found:
            return str(found[0].value)
    return name.rfc4514_string()


#: The attribute names ``SSLObject.getpeercert()`` uses, as RFC 4514 (and cryptography) abbreviates them.
_RFC4514_NAMES = {
    "commonName": "CN",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}
_RFC4514_SPECIAL = frozenset('\\"+,;<>\0')


class _NotPlain(ValueError):
    """A decoded certificate that only cryptography can render exactly like a DER-read one."""


def _plain_name(name: Any) -> list[tuple[str, str]]:
    """``getpeercert()``'s name (RDNs of (attribute, value) pairs) as (RFC 4514 abbreviation, value), in
    certificate order; ``_NotPlain`` for anything RFC 4514 would escape or spell as an OID, and for text
    beyond printable ASCII (decoding rules differ there)."""
    pairs = []
    for rdn in name:
        if len(rdn) != 1:
            raise _NotPlain("a multi-valued RDN")
        attribute, value = rdn[0]
        short = _RFC4514_NAMES.get(attribute)
        if (
            short is None
            or not isinstance(value, str)
            or not value
            or not value.isascii()
            or not value.isprintable()
            or value[0] in "# "
            or value[-1] == " "
            or not _RFC4514_SPECIAL.isdisjoint(value)
        ):
            raise _NotPlain(attribute)
        pairs.append((short, value))
    return pairs


def _rfc4514(pairs: list[tuple[str, str]]) -> str:
    return ",".join(f"{short}={value}" for short, value in reversed(pairs))


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _cert_time(text: str) -> dt.datetime:
    """``getpeercert()``'s "Jun  1 12:00:00 2030 GMT" (what ``ssl.cert_time_to_seconds`` reads, without its
    first-use cost of importing ``_strptime``); ValueError for anything else."""
    month, day, clock, year, zone = text.split()
    hour, minute, second = clock.split(":")
    if zone != "GMT" or month not in _MONTHS:
        raise ValueError(text)
    return dt.datetime(
        int(year), _MONTHS.index(month) + 1, int(day), int(hour), int(minute), int(second), tzinfo=dt.UTC
    )


@dataclass(frozen=True)
class CertificateInfo:
    """What a technician compares: who it is for, who issued it, until when."""

    subject: str
    names: list[str]
    issuer: str
    issuer_name: str
    not_before: dt.datetime
    not_after: dt.datetime

    @classmethod
    def from_der(cls, der: bytes) -> CertificateInfo:
        """Read with cryptography: for a certificate the handshake did not verify (``ssl`` decodes only
        verified ones), or one ``from_decoded`` cannot render exactly."""
        from cryptography import x509  # ~20 ms to import: only when it is needed

        cert = x509.load_der_x509_certificate(der)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = [*san.get_values_for_type(x509.DNSName)]
            names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            names = []
        return cls(
            subject=cert.subject.rfc4514_string(),
            names=names,
            issuer=cert.issuer.rfc4514_string(),
            issuer_name=_common_name(cert.issuer),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
        )

    @classmethod
    def from_decoded(cls, cert: Mapping[str, Any]) -> CertificateInfo:
        """From ``getpeercert()`` of a verified certificate, the same as ``from_der`` would read it.

        ``_NotPlain`` when a name needs RFC 4514 escaping or has attributes without an abbreviation:
        ``from_der`` renders those.
        """
        subject, issuer = _plain_name(cert.get("subject", ())), _plain_name(cert.get("issuer", ()))
        dns_names, ips = [], []
        for kind, value in cert.get("subjectAltName", ()):
            if kind == "DNS":
                dns_names.append(value)
            elif kind == "IP Address":
                try:
                    ips.append(str(ipaddress.ip_address(value.strip())))
                except ValueError:
                    raise _NotPlain(f"IP address {value!r}") from None
        issuer_name = next((value for short, value in issuer if short == "CN"), None)
        issuer_name = issuer_name or next((value for short, value in issuer if short == "O"), None)
        return cls(
            subject=_rfc4514(subject),
            names=dns_names + ips,
            issuer=_rfc4514(issuer),
            issuer_name=issuer_name or _rfc4514(issuer),
            not_before=_cert_time(cert["notBefore"]),
            not_after=_cert_time(cert["notAfter"]),
        )

    def days_left(self, now: dt.datetime | None = None) -> int:
        return (self.not_after - (now or dt.datetime.now(dt.UTC))).days

    def to_data(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "names": self.names,
            "issuer": self.issuer,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "days_left": self.days_left(),
        }


@dataclass(frozen=True)
class TlsInfo:
    version: str | None
    cipher: str | None
    certificate: CertificateInfo | None

    @classmethod
    def from_ssl_object(cls, ssl_object: ssl.SSLObject | None) -> TlsInfo:
        if ssl_object is None:
            return cls(None, None, None)
        cipher = ssl_object.cipher()
        return cls(ssl_object.version(), cipher[0] if cipher else None, _certificate(ssl_object))

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"version": self.version, "cipher": self.cipher}
        if self.certificate is not None:
            data.update(self.certificate.to_data())
        return data


def _certificate(ssl_object: ssl.SSLObject) -> CertificateInfo | None:
    return certificate_info(ssl_object.getpeercert(), ssl_object.getpeercert(binary_form=True))


def certificate_info(decoded: Mapping[str, Any] | None, der: bytes | None) -> CertificateInfo | None:
    """The peer's certificate from what ``ssl`` decoded (only a verified one is), which spares importing
    cryptography; from ``der`` when there is no decoded form or it has what only cryptography renders."""
    if decoded:
        with contextlib.suppress(KeyError, ValueError):  # _NotPlain is a ValueError
            return CertificateInfo.from_decoded(decoded)
    return CertificateInfo.from_der(der) if der else None


async def probe(host: str, port: int, source_address: str | None, ehlo: str, step: float) -> TlsInfo | None:
    """A second connection that only fetches the certificate and version, without verifying them."""
    import aiosmtplib  # this module is imported before a run starts (``smtp_ahead``); aiosmtplib is not

    sock = await open_tcp(host, port, source_address, step)
    try:
        smtp = aiosmtplib.SMTP(hostname=host, sock=sock, local_hostname=ehlo, timeout=step, start_tls=False)
    except BaseException:
        sock.close()
        raise
    try:
        await smtp.connect()
        await smtp.ehlo(hostname=ehlo)
        await smtp.starttls(server_hostname=host, tls_context=probe_context())
        info = TlsInfo.from_ssl_object(smtp.get_transport_info("ssl_object"))
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await smtp.execute_command(b"QUIT", timeout=step)
        return info
    finally:
        smtp.close()  # closes the socket too, through its transport


async def probe_quietly(
    host: str, port: int, source_address: str | None, ehlo: str, step: float, rounds: int = 3
) -> TlsInfo | None:
    """``probe`` within ``rounds * step`` seconds; None when it cannot tell (a report then lacks the
    details, never its finding)."""
    try:
        return await asyncio.wait_for(probe(host, port, source_address, ehlo, step), rounds * step)
    except Exception:  # refused, timed out, not TLS at all: the failure itself is already reported
        return None


def refusal(failure: TlsFailure, info: TlsInfo | None, host: str) -> tuple[str, str]:
    """Summary and fix for a refused handshake; ``info`` (from a probe) names the certificate's issuer."""
    cert = info.certificate if info else None
    issuer = f" (issued by {cert.issuer_name})" if cert else ""
    if failure.problem == "untrusted":
        summary = f"The server's certificate is not trusted: {failure.reason}{issuer}."
        fix = (
            "This machine does not trust the certificate's issuer. Microsoft 365's certificates come from "
            "public certificate authorities, so an unknown issuer usually means a firewall, proxy or "
            f"antivirus inspects TLS: exempt {host} from TLS inspection. For a private server, give its CA "
            "certificate with --ca-file."
        )
    elif failure.problem == "name":
        names = ", ".join(cert.names) if cert and cert.names else "other names"
        summary = f"The certificate is not valid for {host}: it is for {names}."
        fix = (
            "Connect with a host name the certificate covers: for SMTP AUTH that is "
            f"{m365.SMTP_AUTH_ENDPOINT.host}. An IP address or an alias of the name fails this check."
        )
    elif failure.problem == "expired":
        until = f" (valid until {cert.not_after:%Y-%m-%d})" if cert else ""
        summary = f"The server's certificate is not valid now: {failure.reason}{until}."
        fix = (
            "Check this machine's clock first. Otherwise the server must renew its certificate; on a "
            "Microsoft 365 endpoint that means a device between presents its own."
        )
    else:
        offers = f": it offers only {info.version}" if info and info.version else ""
        summary = f"The server does not offer {_MIN_VERSION.replace('v', ' ')} or newer{offers}."
        fix = (
            f"Microsoft 365 requires {_MIN_VERSION.replace('v', ' ')} or newer. Update or reconfigure the "
            "server (or the device between that terminates TLS) to offer it."
        )
    return summary, fix + " No password or token was sent."
