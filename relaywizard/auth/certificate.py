"""An app's certificate credential: its thumbprint and expiry, read with ``cryptography`` (msal needs it),
and a keyring secret told apart as a client secret or a PEM key with its certificate."""

from __future__ import annotations

import re
from datetime import datetime

from relaywizard.auth.model import ClientCertificate
from relaywizard.core.errors import ConfigError


def _load(pem: str | bytes) -> object:
    from cryptography import x509

    data = pem.encode() if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ConfigError(
            "The app's certificate is not a PEM certificate (-----BEGIN CERTIFICATE-----).",
            hint="Give the certificate uploaded to the app registration, in PEM form.",
        ) from None


def sha1_thumbprint(pem: str | bytes) -> str:
    """The SHA-1 thumbprint Entra shows for a certificate (hex, upper case)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = _load(pem)
    assert isinstance(cert, x509.Certificate)
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # Entra's x5t is SHA-1


def not_after(pem: str | bytes) -> datetime:
    """When the certificate expires (aware, UTC)."""
    from cryptography import x509

    cert = _load(pem)
    assert isinstance(cert, x509.Certificate)
    return cert.not_valid_after_utc


_PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.DOTALL)


def app_credential(secret: str) -> str | ClientCertificate:
    """A client secret as it is, or a PEM private key and its certificate (one text) as a certificate
    credential; ``ConfigError`` when a PEM text lacks one of the two."""
    if "-----BEGIN" not in secret:
        return secret
    blocks = {match[1]: match[0] for match in _PEM.finditer(secret)}
    key = next((block for kind, block in blocks.items() if kind.endswith("PRIVATE KEY")), None)
    certificate = blocks.get("CERTIFICATE")
    if key is None or certificate is None:
        raise ConfigError(
            "The app's certificate credential must hold both the PEM private key and its certificate.",
            hint="Put the private key and the certificate uploaded to the app registration in one PEM file.",
        )
    return ClientCertificate(private_key=key, certificate=certificate)
