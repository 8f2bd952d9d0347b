"""The relay's password login comes from the keyring profile, the same way for the CLI and the wizard."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaywizard.core import settings
from relaywizard.core.errors import ConfigError, SecretNotFound
from relaywizard.core.paths import AppPaths
from relaywizard.core.secrets import SecretStore
from relaywizard.relay.config import RelayConfig, RelayOptions, resolve
from relaywizard.relay.credentials import PASSWORD_MECHANISMS, password_from_keyring
from tests.core.test_secrets import MemoryKeyring


def config_for(tmp_path: Path, **fields: object) -> RelayConfig:
    profile = settings.Profile(name="office", domain="contoso.com", **fields)  # type: ignore[arg-type]
    chosen = settings.Settings(profiles={"office": profile}, default_profile="office")
    return resolve(chosen, RelayOptions(), AppPaths.under(tmp_path))


SMTP_AUTH = {"method": "smtp-auth", "smtp_host": "smtp.office365.com", "user": "scanner@contoso.com"}


async def test_the_password_of_the_profile_signs_in_as_its_mailbox(tmp_path: Path) -> None:
    store = SecretStore(MemoryKeyring())
    store.set("office", "s3cret")
    credentials = password_from_keyring(config_for(tmp_path, **SMTP_AUTH), store)
    assert credentials is not None
    assert credentials.user == "scanner@contoso.com"
    assert credentials.mechanisms == PASSWORD_MECHANISMS
    assert await credentials.secret() == "s3cret"


def test_no_login_for_an_upstream_without_auth(tmp_path: Path) -> None:
    direct = config_for(tmp_path, method="direct-send", smtp_host="contoso-com.mail.protection.outlook.com")
    assert password_from_keyring(direct, SecretStore(MemoryKeyring())) is None


def test_a_missing_password_keeps_the_stores_words_or_takes_the_callers_hint(tmp_path: Path) -> None:
    config = config_for(tmp_path, **SMTP_AUTH)
    with pytest.raises(SecretNotFound) as plain:
        password_from_keyring(config, SecretStore(MemoryKeyring()))
    with pytest.raises(SecretNotFound) as hinted:
        password_from_keyring(config, SecretStore(MemoryKeyring()), missing_hint="Save it on page 3.")
    assert hinted.value.message == plain.value.message
    assert hinted.value.hint == "Save it on page 3."
    assert plain.value.hint != hinted.value.hint


def test_an_oauth_profile_is_not_read_as_a_password(tmp_path: Path) -> None:
    config = config_for(tmp_path, **SMTP_AUTH, auth="oauth-delegated", tenant="contoso.com", client_id="abc")
    with pytest.raises(ConfigError, match="needs a token, not a password"):
        password_from_keyring(config, SecretStore(MemoryKeyring()))
