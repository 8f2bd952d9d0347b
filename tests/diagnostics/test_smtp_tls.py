"""The certificate as the TLS check reports it: read from what ``ssl`` decoded of a verified certificate
(no cryptography import), it must say exactly what cryptography reads from the DER."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from relaywizard.diagnostics.smtp_tls import CertificateInfo, _NotPlain, certificate_info

CN, ORG, UNIT, COUNTRY = (
    NameOID.COMMON_NAME,
    NameOID.ORGANIZATION_NAME,
    NameOID.ORGANIZATIONAL_UNIT_NAME,
    NameOID.COUNTRY_NAME,
)


def _name(*rdns: Any) -> x509.Name:
    """RDNs in certificate order; a tuple of (oid, value) pairs is one multi-valued RDN."""
    parts = []
    for rdn in rdns:
        pairs = rdn if isinstance(rdn[0], tuple) else (rdn,)
        parts.append(x509.RelativeDistinguishedName([x509.NameAttribute(oid, value) for oid, value in pairs]))
    return x509.Name(parts)


def _certificate(
    tmp_path: Path, subject: x509.Name, issuer: x509.Name, names: list[x509.GeneralName]
) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=90))
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    path = tmp_path / "cert.pem"
    path.write_bytes(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return path


MICROSOFT = _name((COUNTRY, "US"), (ORG, "Microsoft Corporation"), (CN, "outlook.com"))
DIGICERT = _name((COUNTRY, "US"), (ORG, "DigiCert Inc"), (CN, "DigiCert Cloud Services CA-1"))
HOSTS: list[x509.GeneralName] = [x509.DNSName("smtp.office365.com"), x509.DNSName("*.outlook.com")]


@pytest.mark.parametrize(
    ("subject", "issuer", "names", "decoded_is_enough"),
    [
        (MICROSOFT, DIGICERT, HOSTS, True),
        (MICROSOFT, _name((ORG, "Fortinet"), (UNIT, "Certificate Authority")), [], True),
        (
            _name((CN, "mail.lab.test")),
            _name((ORG, "lab CA")),
            [x509.IPAddress(ipaddress.ip_address("::1"))],
            True,
        ),
        (
            _name((CN, "mail.lab.test")),
            _name((CN, "lab CA")),
            [*HOSTS, x509.IPAddress(ipaddress.ip_address("192.0.2.1"))],
            True,
        ),
        (_name((ORG, "Contoso, Inc."), (CN, "mail")), DIGICERT, HOSTS, False),
        (_name((CN, "#hash"), (CN, " lead")), DIGICERT, HOSTS, False),
        (_name(((ORG, "a+b"), (UNIT, "multi-valued"))), DIGICERT, HOSTS, False),
        (_name((NameOID.EMAIL_ADDRESS, "pki@contoso.com"), (CN, "mail")), DIGICERT, HOSTS, False),
        (_name((ORG, "Bücher GmbH"), (CN, "mail")), DIGICERT, HOSTS, False),
        (_name((CN, "x")), _name((NameOID.SERIAL_NUMBER, "42")), HOSTS, False),
    ],
)
def test_the_decoded_certificate_reads_as_cryptography_reads_the_der(
    tmp_path: Path,
    subject: x509.Name,
    issuer: x509.Name,
    names: list[x509.GeneralName],
    decoded_is_enough: bool,
) -> None:
    path = _certificate(tmp_path, subject, issuer, names)
    decoded = ssl._ssl._test_decode_cert(str(path))  # what getpeercert() gives for a verified certificate
    der = ssl.PEM_cert_to_DER_cert(path.read_text())
    expected = CertificateInfo.from_der(der)
    assert certificate_info(decoded, der) == expected
    if decoded_is_enough:
        assert CertificateInfo.from_decoded(decoded) == expected
    else:
        with pytest.raises(_NotPlain):
            CertificateInfo.from_decoded(decoded)


def test_without_a_decoded_form_the_der_is_read(tmp_path: Path) -> None:
    der = ssl.PEM_cert_to_DER_cert(_certificate(tmp_path, MICROSOFT, DIGICERT, HOSTS).read_text())
    info = certificate_info({}, der)
    assert info is not None
    assert info.issuer_name == "DigiCert Cloud Services CA-1"
    assert info.names == ["smtp.office365.com", "*.outlook.com"]
    assert certificate_info({}, None) is None
