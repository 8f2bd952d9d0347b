"""cli/oauth.py: the relay's daily expiry warnings and the certificate credential's parsing."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import pytest

from relaywizard.auth.model import OAuthSettings
from relaywizard.auth.source import TokenSource
from relaywizard.auth.upstream import SourceCredentials, expiry_of, log_expiry_warnings
from relaywizard.cli.oauth import app_credential
from relaywizard.core.errors import UsageError

SETTINGS = OAuthSettings(kind="oauth-app", tenant="t", client_id="app-1", user="app@contoso.com")


def credentials(expires: dt.date | None) -> SourceCredentials:
    return SourceCredentials(TokenSource(SETTINGS, credential="s3cret"), secret_expires=expires)


def test_expiry_of_names_the_secret_about_to_expire() -> None:
    now = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    (warning,) = expiry_of(credentials(dt.date(2026, 12, 3)), now=now)
    assert warning.message == "The client secret of app app-1 expires in 10 days."
    assert expiry_of(credentials(None), now=now) == []


async def test_warnings_are_logged_at_start_and_again_each_period(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="relaywizard.auth")
    task = asyncio.create_task(log_expiry_warnings(credentials(dt.date(2000, 1, 1)), every=0.05))
    await asyncio.sleep(0.12)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    logged = [r.getMessage() for r in caplog.records if "client secret" in r.getMessage()]
    assert len(logged) >= 2
    assert "has expired" in logged[0]
    assert "s3cret" not in " ".join(logged)


def test_a_pem_credential_needs_both_key_and_certificate() -> None:
    assert app_credential("plain-secret") == "plain-secret"
    with pytest.raises(UsageError, match="both the PEM private key and its certificate"):
        app_credential("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
