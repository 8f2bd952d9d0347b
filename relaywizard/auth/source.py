"""``TokenSource``: one access token for SMTP, shared by every connection, refreshed before it expires.

    source = TokenSource(settings, credential=client_secret)            # app-only
    TokenCredentials(settings.user, source.token, on_rejected=source.invalidate)   # the relay
    Target(..., token_provider=source.token)                            # check

MSAL is blocking, so each of its calls runs in a thread (``asyncio.to_thread``); one ``asyncio.Lock``
makes concurrent callers wait for the same token instead of each fetching its own. A delegated sign-in's
cache lives in the keyring (``cache.KeyringTokenCache``); an app's token is only held in memory, as its
credential can always fetch a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from relaywizard.auth import aadsts
from relaywizard.auth.cache import KeyringTokenCache
from relaywizard.auth.errors import OAuthError, SignInRequired
from relaywizard.auth.http import authority_session, network_error
from relaywizard.auth.model import ClientCertificate, OAuthSettings
from relaywizard.core.secrets import SecretStore

T = TypeVar("T")


async def _in_daemon_thread(call: Callable[[float], T], argument: float) -> T:
    """``call(argument)`` in a new daemon thread; its result or exception comes back to the loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():  # nobody waits any more after a cancellation
            outcome()

    def run() -> None:
        try:
            result = call(argument)
        except BaseException as exc:  # handed to the awaiting task
            error = exc
            with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
                loop.call_soon_threadsafe(settle, lambda: future.set_exception(error))
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, lambda: future.set_result(result))

    threading.Thread(target=run, name="relaywizard-browser-sign-in", daemon=True).start()
    return await future


#: MSAL treats a token with under five minutes left as expired; so does the source.
REFRESH_MARGIN = 300.0
_PENDING = ("authorization_pending", "slow_down")


@dataclass(frozen=True)
class DeviceCode:
    """What a person needs to sign in on another device: show the code and link (with a copy button)."""

    user_code: str
    verification_uri: str
    message: str
    expires_at: float
    """``time.time()`` when the code stops working."""


class TokenSource:
    """Access tokens for ``settings.user`` over XOAUTH2, app-only or delegated."""

    def __init__(
        self,
        settings: OAuthSettings,
        *,
        credential: str | ClientCertificate | None = None,
        store: SecretStore | None = None,
        http: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings.kind == "oauth-app" and not credential:
            raise OAuthError(
                f"App-only sign-in for {settings.user} needs the app's client secret or certificate.",
                hint="Store the client secret with: relaywizard secret set --profile NAME; "
                "then give --profile NAME.",
            )
        self.settings = settings
        self._credential = credential
        self._store = store
        self._http = http
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._expires = 0.0
        self._force = False
        self._app: Any = None
        self._cache: KeyringTokenCache | None = None

    @property
    def credential(self) -> str | ClientCertificate | None:
        """The app's client secret or certificate (oauth-app); never shown in a repr."""
        return self._credential

    def __repr__(self) -> str:
        return f"TokenSource(kind={self.settings.kind!r}, user={self.settings.user!r})"

    # -- what callers use ------------------------------------------------------------------------------

    async def token(self) -> str:
        """A valid access token: the one held while it has five minutes left, else a fresh one."""
        async with self._lock:
            if self._token is not None and self._clock() < self._expires - REFRESH_MARGIN:
                return self._token
            return self._accept(await asyncio.to_thread(self._acquire_silently))

    def invalidate(self) -> None:
        """The server refused the token: the next ``token()`` fetches a new one from the authority."""
        self._token = None
        self._force = True

    @property
    def last_refresh(self) -> datetime | None:
        """When a delegated sign-in's refresh token was last used (None: unknown, or app-only)."""
        return self._cache.last_refresh if self._cache is not None else None

    async def signed_in_account(self) -> str | None:
        """The account a delegated sign-in's cache holds for ``settings.user``, or None."""
        if self.settings.kind != "oauth-delegated":
            return None
        await asyncio.to_thread(self._load_cache)
        account = await asyncio.to_thread(self._cached_account, False)
        return str(account["username"]) if account else None

    async def sign_in_with_device_code(self, show: Callable[[DeviceCode], object]) -> str:
        """Delegated sign-in on another device: ``show`` gets the code and link; returns a token.

        Cancelling the task stops the polling (within one poll's HTTP request)."""
        self._require_delegated()
        async with self._lock:
            flow = await asyncio.to_thread(self._initiate_device_flow)
            show(
                DeviceCode(
                    user_code=str(flow["user_code"]),
                    verification_uri=str(flow.get("verification_uri") or flow.get("verification_url")),
                    message=str(flow.get("message") or ""),
                    expires_at=float(flow.get("expires_at") or self._clock() + 900),
                )
            )
            interval = max(1, int(flow.get("interval") or 5))
            flow["interval"] = interval  # msal's one-poll loop spins forever on 0
            while True:
                result = await asyncio.to_thread(self._poll_device_flow, flow)
                if "access_token" in result:
                    break
                if result.get("error") not in _PENDING:
                    raise aadsts.explain(result, self.settings)
                if self._clock() > float(flow.get("expires_at") or 0):
                    raise aadsts.explain({"error": "expired_token"}, self.settings)
                await asyncio.sleep(interval)
            await asyncio.to_thread(self._signed_in, result)
            return self._accept(result)

    async def sign_in_interactively(self, wait: float = 300) -> str:
        """Delegated sign-in in this computer's browser (MSAL's loopback redirect); returns a token.

        MSAL waits for the browser in a blocking call that cannot be interrupted, so it runs in a daemon
        thread of its own: cancelling stops the wait at once, and a program quitting meanwhile does not
        wait up to ``wait`` seconds for a worker thread (an unused loopback listener just ends with it).
        """
        self._require_delegated()
        async with self._lock:
            result = await _in_daemon_thread(self._interactive, wait)
            if "access_token" not in result:
                raise aadsts.explain(result, self.settings)
            await asyncio.to_thread(self._signed_in, result)
            return self._accept(result)

    # -- blocking parts, run in a thread -----------------------------------------------------------------

    def _guarded(self, call: Callable[[], T]) -> T:
        """Run an MSAL call; a network or TLS failure becomes one ``AuthorityUnreachable`` sentence."""
        try:
            return call()
        except OAuthError:
            raise
        except Exception as exc:
            error = network_error(exc, self.settings.authority_url, self.settings.ca_file)
            if error is not None:
                raise error from None
            if isinstance(exc, ValueError) and "authority" in str(exc).lower():
                raise OAuthError(
                    f"{self.settings.authority_url} did not answer as an OpenID sign-in authority.",
                    hint="Check --tenant and --authority (for Microsoft 365: "
                    "https://login.microsoftonline.com/<tenant>).",
                    title="Wrong authority",
                ) from None
            raise

    def _application(self) -> Any:
        if self._app is None:
            self._app = self._guarded(self._build_application)
        return self._app

    def _build_application(self) -> Any:
        import msal

        settings = self.settings
        http = self._http or authority_session(settings.authority_url, settings.ca_file)
        common: dict[str, Any] = {
            "authority": settings.authority_url,
            "instance_discovery": False,
            "http_client": http,
            "timeout": settings.timeout,
        }
        if settings.kind == "oauth-app":
            return msal.ConfidentialClientApplication(
                settings.client_id, client_credential=self._client_credential(), **common
            )
        self._load_cache()
        assert self._cache is not None
        return msal.PublicClientApplication(settings.client_id, token_cache=self._cache.msal_cache, **common)

    def _client_credential(self) -> str | dict[str, str]:
        credential = self._credential
        if isinstance(credential, ClientCertificate):
            from relaywizard.auth.certificate import sha1_thumbprint

            return {
                "private_key": credential.private_key,
                "thumbprint": sha1_thumbprint(credential.certificate),
            }
        assert credential
        return credential

    def _load_cache(self) -> None:
        if self._cache is None:
            self._cache = KeyringTokenCache(self.settings.cache_profile, self._store)
            self._cache.load()

    def _cached_account(self, required: bool = True) -> dict[str, Any] | None:
        app = self._application()
        accounts: list[dict[str, Any]] = app.get_accounts()
        user = self.settings.user.lower()
        for account in accounts:
            if str(account.get("username", "")).lower() == user:
                return account
        if not required:
            return None
        others = ", ".join(sorted(str(a.get("username")) for a in accounts))
        if others:
            raise SignInRequired(
                f"The saved sign-in is for {others}, not {self.settings.user}.",
                hint="Sign in as the mailbox itself with: relaywizard signin.",
                title="Another account signed in",
            )
        raise SignInRequired(
            f"Nobody has signed in for {self.settings.user} on this computer yet.",
            hint="Sign in once with: relaywizard signin (or in the wizard).",
        )

    def _acquire_silently(self) -> dict[str, Any]:
        app = self._application()
        scopes = self.settings.scopes
        if self.settings.kind == "oauth-app":
            if self._force:
                cache = app.token_cache
                for entry in list(cache.search(cache.CredentialType.ACCESS_TOKEN)):
                    cache.remove_at(entry)
            result: dict[str, Any] | None = self._guarded(lambda: app.acquire_token_for_client(scopes))
        else:
            account = self._guarded(self._cached_account)
            result = self._guarded(
                lambda: app.acquire_token_silent_with_error(scopes, account, force_refresh=self._force)
            )
            if result is None:
                raise SignInRequired(
                    f"The saved sign-in of {self.settings.user} holds no refresh token.",
                    hint="Sign in again with: relaywizard signin.",
                )
        if not result or "access_token" not in result:
            raise aadsts.explain(result or {}, self.settings)
        if self._cache is not None:
            self._cache.save(refreshed=result.get("token_source") == "identity_provider")
        self._force = False
        return result

    def _initiate_device_flow(self) -> dict[str, Any]:
        app = self._application()
        flow: dict[str, Any] = self._guarded(lambda: app.initiate_device_flow(scopes=self.settings.scopes))
        if "user_code" not in flow:
            raise aadsts.explain(flow, self.settings)
        return flow

    def _poll_device_flow(self, flow: dict[str, Any]) -> dict[str, Any]:
        app = self._application()
        result: dict[str, Any] = self._guarded(
            lambda: app.acquire_token_by_device_flow(flow, exit_condition=lambda _flow: True)
        )
        return result

    def _interactive(self, timeout: float) -> dict[str, Any]:
        from msal.oauth2cli.oauth2 import BrowserInteractionTimeoutError

        app = self._application()
        try:
            result: dict[str, Any] = self._guarded(
                lambda: app.acquire_token_interactive(
                    self.settings.scopes,
                    login_hint=self.settings.user,
                    timeout=timeout,
                    prompt="select_account",
                )
            )
        except BrowserInteractionTimeoutError:
            raise SignInRequired(
                f"The sign-in in the browser was not completed within {timeout:.0f} seconds (or no browser "
                "could be opened on this computer).",
                hint="Sign in with a code on another device instead: relaywizard signin without --browser.",
            ) from None
        return result

    def _signed_in(self, result: dict[str, Any]) -> None:
        """Keep a fresh delegated sign-in if it is the right account; forget it otherwise."""
        claims = result.get("id_token_claims") or {}
        who = str(claims.get("preferred_username") or claims.get("upn") or claims.get("email") or "")
        if who.lower() != self.settings.user.lower():
            app = self._application()
            for account in app.get_accounts(username=who) if who else []:
                app.remove_account(account)
            raise SignInRequired(
                f"{who or 'An unknown account'} signed in, but the mailbox to send as is "
                f"{self.settings.user}.",
                hint=f"Sign in again as {self.settings.user}.",
                title="Another account signed in",
            )
        assert self._cache is not None
        self._cache.save(refreshed=True)
        self._force = False

    def _require_delegated(self) -> None:
        if self.settings.kind != "oauth-delegated":
            raise OAuthError(
                "Only a delegated sign-in (--auth oauth-delegated) has a person sign in; "
                "app-only access uses the app's own credential.",
            )

    def _accept(self, result: dict[str, Any]) -> str:
        token = str(result["access_token"])
        self._token = token
        self._expires = self._clock() + float(result.get("expires_in") or 0)
        return token
