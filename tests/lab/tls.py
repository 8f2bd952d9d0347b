"""The lab's certificates: a test CA and the server certificate Postfix presents, made with trustme."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import trustme

#: Names the lab's server certificate is valid for.
SERVER_NAMES = ("localhost", "smtp.lab.test", "mx.lab.test", "127.0.0.1")


@dataclass(frozen=True)
class LabCertificates:
    ca: Path
    """PEM of the test CA: what a client passes as ``--ca-file``."""
    cert: Path
    """PEM of the server certificate and its chain."""
    key: Path
    """PEM of the server's private key."""


def make_certificates(folder: Path) -> LabCertificates:
    """Create a fresh CA and a server certificate under ``folder`` (valid for a year)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="relaywizard lab CA")
    server = ca.issue_cert(
        *SERVER_NAMES,
        not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=365),
    )
    paths = LabCertificates(ca=folder / "ca.pem", cert=folder / "server.pem", key=folder / "server.key")
    ca.cert_pem.write_to_path(str(paths.ca))
    server.private_key_pem.write_to_path(str(paths.key))
    with paths.cert.open("wb") as out:
        for blob in server.cert_chain_pems:
            out.write(blob.bytes())
    paths.key.chmod(0o644)  # Postfix reads it as root; the lab key protects nothing of value
    return paths
