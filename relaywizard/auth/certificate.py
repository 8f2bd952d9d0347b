"""An app's certificate credential: its thumbprint and expiry, read with ``cryptography`` (msal needs it)."""

from __future__ import annotations

from datetime import datetime

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
