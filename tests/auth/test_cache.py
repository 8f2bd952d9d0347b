"""The token cache in a real Secret Service (gnome-keyring on a private D-Bus)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from relaywizard.auth.cache import KeyringTokenCache
from relaywizard.core.secrets import SecretStore
from tests.lab.keyring import SecretServiceSession

pytestmark = pytest.mark.keyring


@pytest.fixture
def store(secret_service: SecretServiceSession, monkeypatch: pytest.MonkeyPatch) -> SecretStore:
    import keyring.backends.SecretService

    for name in ("DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR"):
        monkeypatch.setenv(name, secret_service.env[name])
    return SecretStore(keyring.backends.SecretService.Keyring())


def test_the_cache_round_trips_through_the_keyring_without_access_tokens(store: SecretStore) -> None:
    cache = KeyringTokenCache("oauth-cache-roundtrip", store)
    assert cache.load() is False
    state = {
        "AccessToken": {"k1": {"secret": "at-secret", "credential_type": "AccessToken"}},
        "RefreshToken": {"k2": {"secret": "rt-secret", "credential_type": "RefreshToken"}},
        "Account": {"k3": {"username": "oauth@lab.test", "home_account_id": "u.t"}},
        "IdToken": {"k4": {"secret": "id-token", "credential_type": "IdToken"}},
    }
    cache.msal_cache.deserialize(json.dumps(state))
    cache.msal_cache.has_state_changed = True
    when = datetime(2026, 11, 1, tzinfo=UTC)
    cache.save(refreshed=True, now=when)

    stored = store.get("oauth-cache-roundtrip")
    assert "rt-secret" in stored
    assert "at-secret" not in stored
    assert "id-token" not in stored

    again = KeyringTokenCache("oauth-cache-roundtrip", store)
    assert again.load() is True
    assert again.last_refresh == when
    assert [a["username"] for a in again.accounts()] == ["oauth@lab.test"]
    assert "rt-secret" in again.msal_cache.serialize()
    assert "rt-secret" not in repr(again)


def test_a_damaged_entry_counts_as_no_sign_in(store: SecretStore) -> None:
    store.set("oauth-cache-damaged", "not json")
    cache = KeyringTokenCache("oauth-cache-damaged", store)
    assert cache.load() is False
    assert cache.accounts() == []
