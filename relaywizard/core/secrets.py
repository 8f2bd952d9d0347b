"""Secrets in the operating system's keyring, and nowhere else.

A profile's secret (a mailbox password, or an app's client secret) is stored under the service name
``relaywizard`` with the profile name as the user name. Every keyring failure — no backend, keyring's
``fail`` backend, a locked keyring, a dismissed unlock prompt, a D-Bus error — becomes one
``SecretStoreError`` with a readable sentence. There is no plaintext fallback, ever.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from relaywizard.core import validate
from relaywizard.core.errors import (
    KeyringLocked,
    KeyringUnavailable,
    SecretNotFound,
    SecretStoreError,
    UsageError,
)

SERVICE = "relaywizard"

T = TypeVar("T")

#: Backends that look like keyrings but keep secrets readable in a file, or nowhere at all.
_REFUSED_BACKENDS = (
    "keyring.backends.fail.",
    "keyring.backends.null.",
    "keyrings.alt.file.PlaintextKeyring",
)

_NO_KEYRING_HINT = (
    "Install and unlock a Secret Service keyring (GNOME Keyring or KWallet) on Linux; on Windows and "
    "macOS the system keyring is used. relaywizard never stores secrets in a file."
)
_LOCKED_HINT = "Unlock the keyring (for example by logging in to the desktop session), then try again."


def _qualified_name(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


class SecretStore:
    """Get, set and delete profile secrets in the OS keyring."""

    def __init__(self, backend: Any | None = None) -> None:
        self._backend = backend

    def _keyring(self) -> Any:
        if self._backend is None:
            import keyring

            self._backend = keyring.get_keyring()
        backend = self._backend
        members = getattr(backend, "backends", None)
        usable = [b for b in members if not self._refused(b)] if members is not None else [backend]
        if not usable or (members is None and self._refused(backend)):
            raise KeyringUnavailable(
                f"No usable keyring was found on this computer (the active backend is "
                f"{self._describe(backend)}).",
                hint=_NO_KEYRING_HINT,
            )
        return backend

    @staticmethod
    def _refused(backend: object) -> bool:
        name = _qualified_name(backend)
        return any(name.startswith(prefix) for prefix in _REFUSED_BACKENDS)

    @staticmethod
    def _describe(backend: object) -> str:
        name = getattr(backend, "name", None)
        return str(name) if name else _qualified_name(backend)

    def backend_name(self) -> str:
        """The keyring in use, as a person would call it (shown in the wizard)."""
        return self._describe(self._keyring())

    def get(self, profile: str) -> str:
        """The secret of ``profile``; ``SecretNotFound`` when none is stored."""
        secret = self.find(profile)
        if secret is None:
            raise SecretNotFound(
                f"No secret is stored for profile '{profile}'.",
                hint=f"Store one with: relaywizard secret set --profile {profile}",
            )
        return secret

    def find(self, profile: str) -> str | None:
        """The secret of ``profile``, or None when none is stored."""
        name = _profile(profile)
        keyring = self._keyring()
        result: str | None = self._call(lambda: keyring.get_password(SERVICE, name))
        return result

    def set(self, profile: str, secret: str) -> None:
        name = _profile(profile)
        if not secret:
            raise UsageError("The secret is empty; nothing was stored.")
        keyring = self._keyring()
        self._call(lambda: keyring.set_password(SERVICE, name, secret))

    def delete(self, profile: str) -> None:
        """Remove the secret of ``profile``; ``SecretNotFound`` when there was none."""
        import keyring.errors

        name = _profile(profile)
        backend = self._keyring()

        def remove() -> bool:
            try:
                backend.delete_password(SERVICE, name)
            except keyring.errors.PasswordDeleteError:
                return False
            return True

        if not self._call(remove):
            raise SecretNotFound(f"No secret is stored for profile '{name}'; nothing was deleted.")

    def _call(self, operation: Callable[[], T]) -> T:
        import keyring.errors

        backend_name = self._describe(self._backend)
        try:
            return operation()
        except keyring.errors.NoKeyringError as exc:
            raise KeyringUnavailable(
                "No usable keyring was found on this computer.", hint=_NO_KEYRING_HINT
            ) from exc
        except keyring.errors.KeyringLocked as exc:
            raise KeyringLocked(f"The keyring ({backend_name}) is locked.", hint=_LOCKED_HINT) from exc
        except keyring.errors.InitError as exc:
            detail = str(exc).strip().rstrip(".")
            if "dismiss" in detail.lower() or "unlock" in detail.lower():
                raise KeyringLocked(
                    f"The keyring ({backend_name}) could not be unlocked: the unlock prompt was "
                    "dismissed or failed.",
                    hint=_LOCKED_HINT,
                ) from exc
            raise KeyringUnavailable(
                f"The keyring ({backend_name}) could not be opened: {detail}.", hint=_NO_KEYRING_HINT
            ) from exc
        except keyring.errors.KeyringError as exc:
            detail = str(exc).strip().rstrip(".") or type(exc).__name__
            raise SecretStoreError(f"The keyring ({backend_name}) failed: {detail}.") from exc
        except Exception as exc:  # D-Bus and backend-specific errors that keyring does not wrap
            detail = str(exc).strip().rstrip(".") or type(exc).__name__
            raise SecretStoreError(
                f"The keyring ({backend_name}) failed: {detail}.",
                hint="Check that the keyring service is running and unlocked.",
            ) from exc


def _profile(name: str) -> str:
    try:
        return validate.profile_name(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
