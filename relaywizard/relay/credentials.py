"""How the forwarder proves who it is to the upstream: a password now, an OAuth token later.

The forwarder asks a ``Credentials`` object for the secret once per upstream session, just before AUTH,
and never keeps it: a password comes from the keyring, a token from a token cache that refreshes it, and
neither ends up in the spool, a log or an exception. ``mechanisms`` says which SASL mechanisms the secret
works with, in order of preference; the forwarder picks the first one the server offers (Microsoft 365
offers ``LOGIN`` and ``XOAUTH2``, Postfix usually ``PLAIN`` and ``LOGIN``).

When the server refuses the secret (535), the forwarder calls ``rejected()``: a token source drops its
cached token there, so the next session asks for a fresh one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from relaywizard.core.errors import ConfigError, SecretNotFound

if TYPE_CHECKING:
    from relaywizard.core.secrets import SecretStore
    from relaywizard.relay.config import RelayConfig

PASSWORD_MECHANISMS = ("PLAIN", "LOGIN")
TOKEN_MECHANISMS = ("XOAUTH2",)


@runtime_checkable
class Credentials(Protocol):
    """A mailbox's login for the upstream."""

    @property
    def user(self) -> str:
        """The login (for Microsoft 365: the mailbox's user principal name)."""
        ...

    @property
    def mechanisms(self) -> tuple[str, ...]:
        """SASL mechanisms this secret works with, preferred first ("PLAIN", "LOGIN", "XOAUTH2")."""
        ...

    async def secret(self) -> str:
        """The password, or a currently valid bearer token for XOAUTH2."""
        ...

    def rejected(self) -> None:
        """The upstream refused the secret: forget any cached copy."""
        ...


class PasswordCredentials:
    """A user name and password, for AUTH PLAIN or LOGIN (Basic authentication)."""

    def __init__(self, user: str, password: str) -> None:
        self._user = user
        self._password = password

    @property
    def user(self) -> str:
        return self._user

    @property
    def mechanisms(self) -> tuple[str, ...]:
        return PASSWORD_MECHANISMS

    async def secret(self) -> str:
        return self._password

    def rejected(self) -> None:
        """A password cannot refresh itself; the admin has to fix it."""

    def __repr__(self) -> str:  # never show the password, not even in a debugger or a traceback
        return f"PasswordCredentials(user={self._user!r}, password=***)"


class TokenCredentials:
    """A user name and an async source of OAuth 2.0 access tokens, for AUTH XOAUTH2.

    ``token_source`` returns a valid token (refreshing it when needed); ``on_rejected``, if given, is
    called when the upstream refuses a token, so the source can drop its cache.
    """

    def __init__(
        self,
        user: str,
        token_source: Callable[[], Awaitable[str]],
        *,
        on_rejected: Callable[[], None] | None = None,
    ) -> None:
        self._user = user
        self._token_source = token_source
        self._on_rejected = on_rejected

    @property
    def user(self) -> str:
        return self._user

    @property
    def mechanisms(self) -> tuple[str, ...]:
        return TOKEN_MECHANISMS

    async def secret(self) -> str:
        return await self._token_source()

    def rejected(self) -> None:
        if self._on_rejected is not None:
            self._on_rejected()

    def __repr__(self) -> str:
        return f"TokenCredentials(user={self._user!r})"


def password_from_keyring(
    config: RelayConfig, store: SecretStore, *, missing_hint: str | None = None
) -> PasswordCredentials | None:
    """The upstream's password login from the keyring profile, or None when the upstream takes no AUTH.

    Blocking (the keyring may wait for D-Bus or an unlock prompt): the GUI runs it in a worker thread.
    ``missing_hint`` replaces the hint of "no secret stored" with where this caller's user saves it.
    """
    if config.auth == "none" or config.upstream.user is None:
        return None
    if config.auth != "password":
        raise ConfigError(f"The relay signs in with {config.auth}, which needs a token, not a password.")
    assert config.profile is not None
    try:
        secret = store.get(config.profile)
    except SecretNotFound as exc:
        if missing_hint is None:
            raise
        raise SecretNotFound(exc.message, hint=missing_hint) from None
    return PasswordCredentials(config.upstream.user, secret)
