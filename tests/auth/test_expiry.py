"""Expiry warnings: client secret, certificate, and a refresh token left unused."""

from __future__ import annotations

import datetime as dt

import trustme

from relaywizard.auth.certificate import not_after, sha1_thumbprint
from relaywizard.auth.expiry import expiry_warnings

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def test_nothing_to_say_far_from_any_expiry() -> None:
    assert expiry_warnings(now=NOW) == []
    assert expiry_warnings(now=NOW, secret_expires=dt.date(2027, 6, 1)) == []
    assert expiry_warnings(now=NOW, refresh_last_used=NOW - dt.timedelta(days=79)) == []


def test_a_client_secret_expiring_within_30_days() -> None:
    (warning,) = expiry_warnings(now=NOW, secret_expires=dt.date(2026, 12, 10), client_id="app-1")
    assert warning.kind == "client-secret"
    assert warning.days_left == 16
    assert warning.message == "The client secret of app app-1 expires in 16 days."
    assert "relaywizard secret set" in warning.hint


def test_an_expired_secret_and_the_window_is_configurable() -> None:
    (warning,) = expiry_warnings(now=NOW, secret_expires=dt.date(2026, 11, 1))
    assert warning.days_left < 0
    assert "has expired" in warning.message
    assert expiry_warnings(now=NOW, secret_expires=dt.date(2026, 12, 10), warn_days=10) == []


def test_a_certificate_expiry_read_from_its_pem() -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("app.example", not_after=NOW + dt.timedelta(days=5))
    pem = cert.cert_chain_pems[0].bytes()
    expires = not_after(pem)
    assert abs(expires - (NOW + dt.timedelta(days=5))) < dt.timedelta(seconds=1)
    assert len(sha1_thumbprint(pem)) == 40
    (warning,) = expiry_warnings(now=NOW, certificate_expires=expires)
    assert warning.kind == "certificate"
    assert warning.message == "The certificate of the app expires in 5 days."


def test_a_refresh_token_unused_for_80_days() -> None:
    (warning,) = expiry_warnings(now=NOW, refresh_last_used=NOW - dt.timedelta(days=83))
    assert warning.kind == "refresh-token"
    assert warning.days_left == 7
    assert "not been used for 83 days and expires in 7 days" in warning.message
    assert "relaywizard signin" in warning.one_line()
