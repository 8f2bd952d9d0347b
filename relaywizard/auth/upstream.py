"""OAuth for the relay's upstream: credentials backed by one shared ``TokenSource``, the first token
fetched before the relay listens, and the warnings ahead of expiry (logged by the headless relay, shown
by the tray as notifications)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import date, datetime
from typing import TYPE_CHECKING

from relaywizard.relay.credentials import TokenCredentials

if TYPE_CHECKING:
    from relaywizard.auth.expiry import ExpiryWarning
    from relaywizard.auth.source import TokenSource

DAY = 86_400.0
_log = logging.getLogger("relaywizard.auth")


class SourceCredentials(TokenCredentials):
    """The relay's upstream login with OAuth: XOAUTH2 tokens from one shared ``TokenSource``."""

    def __init__(self, source: TokenSource, *, secret_expires: date | None = None) -> None:
        super().__init__(source.settings.user, source.token, on_rejected=source.invalidate)
        self.source = source
        self.secret_expires = secret_expires


async def start_relay_sign_in(
    credentials: SourceCredentials, warn: Callable[[str], None] | None = None
) -> asyncio.Task[None]:
    """Before the relay listens: get a first token, so a sign-in that cannot work stops it with one
    sentence (exit 2); an unreachable authority only warns, mail is still queued. Then log the expiry
    warnings now and once a day (the returned task; cancel it at stop)."""
    from relaywizard.auth.errors import AuthorityUnreachable

    try:
        await credentials.source.token()
    except AuthorityUnreachable as exc:
        _log.warning("%s (mail is queued until a token can be fetched)", exc.one_line())
    return asyncio.create_task(log_expiry_warnings(credentials, warn=warn), name="oauth-expiry-warnings")


def expiry_of(credentials: SourceCredentials, now: datetime | None = None) -> list[ExpiryWarning]:
    """What is about to stop this sign-in working: the tray can show the same list."""
    from relaywizard.auth.certificate import not_after
    from relaywizard.auth.expiry import expiry_warnings
    from relaywizard.auth.model import ClientCertificate

    credential = credentials.source.credential
    certificate = not_after(credential.certificate) if isinstance(credential, ClientCertificate) else None
    return expiry_warnings(
        now=now,
        secret_expires=credentials.secret_expires,
        certificate_expires=certificate,
        refresh_last_used=credentials.source.last_refresh,
        client_id=credentials.source.settings.client_id,
    )


async def log_expiry_warnings(
    credentials: SourceCredentials, every: float = DAY, warn: Callable[[str], None] | None = None
) -> None:
    """Tell ``warn`` (by default: log a warning) each of ``expiry_of``, now and then every ``every`` s."""
    while True:
        for warning in expiry_of(credentials):
            if warn is None:
                _log.warning("%s", warning.one_line())
            else:
                warn(warning.one_line())
        await asyncio.sleep(every)
