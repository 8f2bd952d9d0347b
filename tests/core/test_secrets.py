"""The keyring wrapper with in-memory backends: every failure becomes one clear error."""

from __future__ import annotations

import keyring.backends.fail
import keyring.errors
import pytest

from relaywizard.core.errors import (
    KeyringLocked,
    KeyringUnavailable,
    SecretNotFound,
    SecretStoreError,
    UsageError,
)
from relaywizard.core.secrets import SERVICE, SecretStore


class MemoryKeyring:
    """Duck-typed, not a KeyringBackend subclass: a subclass would join keyring's own backend discovery."""

    name = "Memory Keyring"

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, user: str) -> str | None:
        return self.items.get((service, user))

    def set_password(self, service: str, user: str, secret: str) -> None:
        self.items[(service, user)] = secret

    def delete_password(self, service: str, user: str) -> None:
        if (service, user) not in self.items:
            raise keyring.errors.PasswordDeleteError("not found")
        del self.items[(service, user)]


class RaisingKeyring(MemoryKeyring):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def get_password(self, service: str, user: str) -> str | None:
        raise self.error

    def set_password(self, service: str, user: str, secret: str) -> None:
        raise self.error


def test_round_trip_under_the_relaywizard_service() -> None:
    backend = MemoryKeyring()
    store = SecretStore(backend)
    store.set("scanner", "pw")
    assert backend.items == {(SERVICE, "scanner"): "pw"}
    assert store.get("scanner") == "pw"
    store.delete("scanner")
    assert store.find("scanner") is None
    assert store.backend_name() == "Memory Keyring"


def test_missing_secret_names_the_profile_and_the_fix() -> None:
    with pytest.raises(SecretNotFound) as caught:
        SecretStore(MemoryKeyring()).get("scanner")
    assert "relaywizard secret set --profile scanner" in caught.value.hint
    with pytest.raises(SecretNotFound):
        SecretStore(MemoryKeyring()).delete("scanner")


def test_empty_secret_and_bad_profile_names_are_refused() -> None:
    store = SecretStore(MemoryKeyring())
    with pytest.raises(UsageError):
        store.set("scanner", "")
    with pytest.raises(UsageError):
        store.set("../etc", "x")


def test_the_fail_backend_is_refused_before_any_call() -> None:
    with pytest.raises(KeyringUnavailable) as caught:
        SecretStore(keyring.backends.fail.Keyring()).get("scanner")
    assert "never stores secrets in a file" in caught.value.hint


def test_a_plaintext_backend_is_refused() -> None:
    plaintext = type("PlaintextKeyring", (MemoryKeyring,), {"__module__": "keyrings.alt.file"})
    with pytest.raises(KeyringUnavailable):
        SecretStore(plaintext()).set("scanner", "pw")


def test_a_chainer_of_only_refused_backends_is_refused() -> None:
    chainer = type("ChainerBackend", (), {"backends": [keyring.backends.fail.Keyring()]})()
    with pytest.raises(KeyringUnavailable):
        SecretStore(chainer).get("scanner")


@pytest.mark.parametrize(
    ("error", "expected", "fragment"),
    [
        (keyring.errors.KeyringLocked("Failed to unlock the collection!"), KeyringLocked, "is locked"),
        (
            keyring.errors.InitError("Failed to create the collection: Prompt dismissed.."),
            KeyringLocked,
            "could not be unlocked",
        ),
        (keyring.errors.InitError("Failed to connect"), KeyringUnavailable, "could not be opened"),
        (keyring.errors.NoKeyringError("No recommended backend"), KeyringUnavailable, "no usable keyring"),
        (keyring.errors.KeyringError("boom"), SecretStoreError, "failed: boom"),
        (ConnectionError("org.freedesktop.DBus.Error.NoReply"), SecretStoreError, "NoReply"),
    ],
)
def test_backend_failures_become_one_readable_error(
    error: Exception, expected: type[SecretStoreError], fragment: str
) -> None:
    store = SecretStore(RaisingKeyring(error))
    for call in (lambda: store.find("scanner"), lambda: store.set("scanner", "pw")):
        with pytest.raises(expected) as caught:
            call()
        assert fragment.lower() in caught.value.message.lower()
        assert "\n" not in caught.value.one_line()
