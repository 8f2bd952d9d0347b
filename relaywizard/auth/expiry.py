"""Warnings ahead of what silently stops OAuth sign-in: an app's client secret or certificate expiring,
and a delegated sign-in's refresh token left unused (Microsoft expires it after 90 days of inactivity).

Pure functions of dates, so the relay's log, the tray and the wizard can all show the same sentences.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

WARN_DAYS = 30
#: Microsoft expires a refresh token after 90 days without use; warn 10 days ahead.
INACTIVITY_LIMIT_DAYS = 90
INACTIVITY_WARN_DAYS = 80

ExpiryKind = Literal["client-secret", "certificate", "refresh-token"]


@dataclass(frozen=True)
class ExpiryWarning:
    kind: ExpiryKind
    days_left: int
    """Whole days until it stops working; 0 or less: it already has."""
    message: str
    hint: str

    def one_line(self) -> str:
        return f"{self.message.rstrip('.')}. {self.hint}"


def _as_datetime(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.combine(value, time.min, tzinfo=UTC)


def _when(days: int) -> str:
    if days <= 0:
        return "has expired"
    return "expires tomorrow" if days == 1 else f"expires in {days} days"


def expiry_warnings(
    *,
    now: datetime | None = None,
    secret_expires: date | datetime | None = None,
    certificate_expires: date | datetime | None = None,
    refresh_last_used: datetime | None = None,
    warn_days: int = WARN_DAYS,
    client_id: str = "",
) -> list[ExpiryWarning]:
    """What to warn about now; empty when nothing is near its end."""
    now = _as_datetime(now or datetime.now(UTC))
    app = f"app {client_id}" if client_id else "the app"
    warnings: list[ExpiryWarning] = []
    for kind, expires, what, fix in (
        (
            "client-secret",
            secret_expires,
            f"The client secret of {app}",
            "Add a new client secret in the app registration and store it with: relaywizard secret set "
            "--profile NAME.",
        ),
        (
            "certificate",
            certificate_expires,
            f"The certificate of {app}",
            "Upload a new certificate to the app registration and give the relay its key.",
        ),
    ):
        if expires is None:
            continue
        days = (_as_datetime(expires) - now) // timedelta(days=1)
        if days < warn_days:
            warnings.append(ExpiryWarning(kind, days, f"{what} {_when(days)}.", fix))  # type: ignore[arg-type]
    if refresh_last_used is not None:
        idle = (now - _as_datetime(refresh_last_used)) // timedelta(days=1)
        if idle >= INACTIVITY_WARN_DAYS:
            left = INACTIVITY_LIMIT_DAYS - idle
            warnings.append(
                ExpiryWarning(
                    "refresh-token",
                    left,
                    f"The saved sign-in has not been used for {idle} days and {_when(left)} "
                    f"(Microsoft ends a sign-in unused for {INACTIVITY_LIMIT_DAYS} days).",
                    "Run the relay, or sign in again with: relaywizard signin.",
                )
            )
    return warnings
