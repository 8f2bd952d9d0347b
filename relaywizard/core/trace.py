"""Traceable test messages: a Message-ID of relaywizard's own, and how to find it in Microsoft 365.

Every test message relaywizard sends (the wizard's tests, ``check --send``, the relay's test button)
carries ``<relaywizard-test.<uuid>@<sender domain>>``. The uuid is a version-7 UUID (RFC 9562): its first
48 bits are the send time in milliseconds, so the trace's time window can be rebuilt from the ID alone,
wherever it was written down (a report, a delivery log, the recipient's headers).

The trace itself runs in the tenant: ``Get-MessageTraceV2`` in Exchange Online PowerShell, or the message
trace page of the Exchange admin center. Microsoft keeps 90 days of trace data and answers at most 10 days
per query (``SRC_MESSAGE_TRACE``); the window here is a couple of hours around the send. No Qt.
"""

from __future__ import annotations

import email.policy
import os
import re
import textwrap
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate

from relaywizard.core import validate

__all__ = [
    "ADMIN_CENTER_MESSAGE_TRACE",
    "TRACE_MARGIN",
    "TRACE_QUERY_DAYS",
    "TRACE_RETENTION_DAYS",
    "Trace",
    "compose_test_message",
    "iso_utc",
    "new_message_id",
    "sent_at",
    "test_message",
    "trace_for",
]

SRC_MESSAGE_TRACE = "Microsoft Learn: Get-MessageTraceV2 and Get-MessageTraceDetailV2 (Exchange PowerShell)"
TRACE_RETENTION_DAYS = 90  # message trace data is searchable for 90 days
TRACE_QUERY_DAYS = 10  # one Get-MessageTraceV2 query covers at most 10 days
#: Before and after the send: room for a wrong clock here and for Microsoft's own delay.
TRACE_MARGIN = timedelta(hours=1)
ADMIN_CENTER_MESSAGE_TRACE = (
    "Exchange admin center (admin.exchange.microsoft.com) > Mail flow > Message trace"
)

_PREFIX = "relaywizard-test."
_FALLBACK_DOMAIN = "relaywizard.invalid"
_OURS = re.compile(
    r"^<relaywizard-test\.([0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12})@[^<>@\s]+>$"
)


# -- the Message-ID ----------------------------------------------------------------------------------------


def _uuid7(when: datetime) -> uuid.UUID:
    """A version-7 UUID: 48 bits of Unix time in ms, then the version, the variant and 74 random bits."""
    millis = int(when.timestamp() * 1000) & ((1 << 48) - 1)
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return uuid.UUID(int=value)


def _domain_of(sender: str) -> str:
    """The sender's domain when it is a plain domain name, else a reserved one (RFC 2606)."""
    domain = sender.strip().strip("<>").rpartition("@")[2]
    try:
        return validate.domain(domain) if domain else _FALLBACK_DOMAIN
    except ValueError:
        return _FALLBACK_DOMAIN


def new_message_id(sender: str, *, now: datetime | None = None) -> str:
    """``<relaywizard-test.<uuid>@<sender's domain>>``, unique, with the send time inside the uuid."""
    when = now or datetime.now(UTC)
    return f"<{_PREFIX}{_uuid7(when)}@{_domain_of(sender)}>"


def sent_at(message_id: str) -> datetime | None:
    """When a relaywizard Message-ID was made (UTC, to the millisecond); None for any other ID."""
    found = _OURS.match(message_id.strip())
    if found is None:
        return None
    millis = uuid.UUID(found.group(1)).int >> 80
    return datetime.fromtimestamp(millis / 1000, UTC)


def compose_test_message(
    sender: str,
    recipient: str,
    *,
    subject: str = "relaywizard test message",
    body: str = "relaywizard sent this message to prove that mail from this network reaches Microsoft 365. "
    "It needs no answer.\n",
    now: datetime | None = None,
) -> tuple[EmailMessage, str]:
    """One short test message with the headers a receiving server expects, and its Message-ID."""
    message_id = new_message_id(sender, now=now)
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = formatdate((now or datetime.now(UTC)).timestamp(), localtime=True)
    message["Message-ID"] = message_id
    # Wrapped here, so the body goes as plain 7-bit lines rather than quoted-printable.
    text = "\n\n".join(textwrap.fill(part, 76) for part in body.strip().split("\n\n"))
    message.set_content(f"{text}\n\nMessage-ID for the message trace:\n{message_id}\n", cte="7bit")
    return message, message_id


# -- the trace ---------------------------------------------------------------------------------------------


def iso_utc(when: datetime) -> str:
    """``2026-11-23T22:06:47Z``: read the same way by PowerShell whatever the computer's date format."""
    return when.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ps_string(value: str) -> str:
    """A PowerShell string literal: double quotes as Microsoft writes them, single when ``$`` or a quote
    would be read inside double ones."""
    if not any(c in value for c in '$`"'):
        return f'"{value}"'
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class Trace:
    """Where to find one sent message in Microsoft 365's message trace."""

    message_id: str
    sent: datetime
    """When it was sent (UTC): from the caller, or from the ID itself."""
    start: datetime
    end: datetime

    @property
    def powershell(self) -> str:
        """``Get-MessageTraceV2 -MessageId "<...>" -StartDate "..." -EndDate "..."``."""
        return (
            f"Get-MessageTraceV2 -MessageId {_ps_string(self.message_id)} "
            f'-StartDate "{iso_utc(self.start)}" -EndDate "{iso_utc(self.end)}"'
        )

    @property
    def detail_powershell(self) -> str:
        """The same search piped to ``Get-MessageTraceDetailV2``: each event (received, delivered, failed)."""
        return f"{self.powershell} | Get-MessageTraceDetailV2"

    @property
    def search_until(self) -> datetime:
        """After this the trace data is gone (Microsoft keeps 90 days)."""
        return self.sent + timedelta(days=TRACE_RETENTION_DAYS)

    @property
    def admin_center(self) -> str:
        """The same search in the admin center, as one sentence."""
        return (
            f"{ADMIN_CENTER_MESSAGE_TRACE}: start a trace with the Message ID {self.message_id} and a custom "
            f"time range from {iso_utc(self.start)} to {iso_utc(self.end)} (UTC)."
        )

    def lines(self) -> list[str]:
        """Everything an admin needs, as short lines: the ID, both commands, the admin center, the limits."""
        return [
            f"Message-ID: {self.message_id} (sent {iso_utc(self.sent)})",
            "Trace it in Exchange Online PowerShell:",
            f"  {self.powershell}",
            "Every event on its way (received, delivered or failed):",
            f"  {self.detail_powershell}",
            f"Or in the {self.admin_center}",
            f"Microsoft keeps trace data for {TRACE_RETENTION_DAYS} days: search before "
            f"{self.search_until:%Y-%m-%d}. A message can take a few minutes to appear in the trace.",
        ]

    def text(self) -> str:
        return "\n".join(self.lines())

    def to_json(self) -> dict[str, str]:
        return {
            "message_id": self.message_id,
            "sent": iso_utc(self.sent),
            "start": iso_utc(self.start),
            "end": iso_utc(self.end),
            "powershell": self.powershell,
            "detail_powershell": self.detail_powershell,
            "admin_center": self.admin_center,
        }


def trace_for(message_id: str, *, sent: datetime | None = None, now: datetime | None = None) -> Trace:
    """The trace of ``message_id``, sent at ``sent`` (default: the time inside a relaywizard ID, else now)."""
    when = sent or sent_at(message_id) or now or datetime.now(UTC)
    when = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    return Trace(message_id.strip(), when, when - TRACE_MARGIN, when + TRACE_MARGIN)


#: The name both senders use (the wizard's pages, the tray); ``compose_`` keeps pytest from collecting it.
test_message = compose_test_message
