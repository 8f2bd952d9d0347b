"""MSAL's token cache in the OS keyring: loaded before an acquisition, saved after it when it changed.

The keyring entry is JSON: MSAL's serialised cache without its access and ID tokens (short-lived, and
too big for Windows' Credential Manager, which takes 2.5 KB), and the time the refresh token was last
used, so a warning can come before Microsoft expires it after 90 days without use. Nothing of it ever
goes to a file.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from relaywizard.core.secrets import SecretStore

_FORMAT = 1
_SHORT_LIVED = ("AccessToken", "IdToken")


class KeyringTokenCache:
    """One sign-in's ``msal.SerializableTokenCache``, kept in keyring profile ``profile``."""

    def __init__(self, profile: str, store: SecretStore | None = None) -> None:
        import msal

        self.profile = profile
        self.store = store or SecretStore()
        self.msal_cache: Any = msal.SerializableTokenCache()
        self.last_refresh: datetime | None = None
        self._stored: str | None = None

    def load(self) -> bool:
        """Read the cache from the keyring (blocking: call it in a thread); False when there is none."""
        text = self.store.find(self.profile)
        self._stored = text
        if not text:
            return False
        try:
            entry = json.loads(text)
            state = entry["msal"]
            refreshed = entry.get("refreshed")
            self.last_refresh = datetime.fromisoformat(refreshed) if refreshed else None
        except (ValueError, KeyError, TypeError):
            return False  # not ours, or damaged: a fresh sign-in overwrites it
        self.msal_cache.deserialize(json.dumps(state))
        return True

    def save(self, *, refreshed: bool = False, now: datetime | None = None) -> None:
        """Write the cache back when MSAL changed it (blocking: call it in a thread)."""
        if refreshed:
            self.last_refresh = now or datetime.now(UTC)
        if not self.msal_cache.has_state_changed and not refreshed:
            return
        state = {
            key: value
            for key, value in json.loads(self.msal_cache.serialize() or "{}").items()
            if key not in _SHORT_LIVED
        }
        entry: dict[str, Any] = {"format": _FORMAT, "msal": state}
        if self.last_refresh is not None:
            entry["refreshed"] = self.last_refresh.isoformat()
        text = json.dumps(entry, separators=(",", ":"), sort_keys=True)
        if text != self._stored:
            self.store.set(self.profile, text)
            self._stored = text
        self.msal_cache.has_state_changed = False

    def accounts(self) -> list[dict[str, Any]]:
        """The accounts signed in (MSAL's account dicts; ``username`` is the UPN)."""
        from msal import TokenCache

        found: list[dict[str, Any]] = list(self.msal_cache.search(TokenCache.CredentialType.ACCOUNT))
        return found

    def __repr__(self) -> str:
        return f"KeyringTokenCache(profile={self.profile!r})"
