"""Resolving the relay's settings: options over the settings file's profile, with the method's defaults."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from relaywizard.core import settings
from relaywizard.core.errors import ConfigError
from relaywizard.core.paths import AppPaths
from relaywizard.relay.config import RelayOptions, resolve


def with_profile(**fields: object) -> settings.Settings:
    profile = settings.Profile(name="office", domain="contoso.com", **fields)  # type: ignore[arg-type]
    return settings.Settings(profiles={"office": profile}, default_profile="office")


@pytest.mark.parametrize(("method", "port"), [("smtp-auth", 587), ("direct-send", 25), ("connector", 25)])
def test_a_profiles_host_without_a_port_gets_its_methods_port(method: str, port: int, tmp_path: Path) -> None:
    fields: dict[str, object] = {"method": method, "smtp_host": "contoso-com.mail.protection.outlook.com"}
    if method == "smtp-auth":
        fields |= {"smtp_host": "smtp.office365.com", "user": "scanner@contoso.com"}
    config = resolve(with_profile(**fields), RelayOptions(), AppPaths.under(tmp_path))
    assert config.upstream.port == port


def test_an_upstream_option_without_a_port_follows_the_profiles_method(tmp_path: Path) -> None:
    chosen = with_profile(method="connector")
    config = resolve(chosen, RelayOptions(upstream="relay.contoso.com"), AppPaths.under(tmp_path))
    assert (config.upstream.host, config.upstream.port) == ("relay.contoso.com", 25)


def test_without_a_profile_the_default_is_microsofts_submission_endpoint(tmp_path: Path) -> None:
    config = resolve(settings.Settings(), RelayOptions(), AppPaths.under(tmp_path))
    assert (config.upstream.host, config.upstream.port) == ("smtp.office365.com", 587)


def test_a_bad_upstream_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--upstream"):
        resolve(settings.Settings(), RelayOptions(upstream="not a host:99999"), AppPaths.under(tmp_path))


def test_the_apps_secret_expiry_comes_from_the_profile(tmp_path: Path) -> None:
    chosen = with_profile(
        user="scanner@contoso.com",
        auth="oauth-app",
        tenant="contoso.com",
        client_id="abc",
        app_valid_until="2027-06-30",
    )
    config = resolve(chosen, RelayOptions(), AppPaths.under(tmp_path))
    assert config.app_valid_until == dt.date(2027, 6, 30)


def test_bare_lf_comes_from_the_option_else_the_settings_else_refuse(tmp_path: Path) -> None:
    paths = AppPaths.under(tmp_path)
    fields = {"method": "smtp-auth", "smtp_host": "smtp.office365.com", "user": "scanner@contoso.com"}
    chosen = with_profile(**fields)
    assert resolve(chosen, RelayOptions(), paths).bare_lf == "refuse"
    chosen.relay.bare_lf = "normalize"
    assert resolve(chosen, RelayOptions(), paths).bare_lf == "normalize"
    assert resolve(chosen, RelayOptions(bare_lf="refuse"), paths).bare_lf == "refuse"
