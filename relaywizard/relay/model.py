"""The relay's shared vocabulary: a spooled message's envelope and state, and the relay's settings.

Every part of the relay (inbound server, spool, forwarder, delivery log, queue CLI, tray) speaks in these
types; none of them holds a secret.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal

TlsMode = Literal["starttls", "implicit", "none"]


class State(StrEnum):
    """Where a message is in its life. Each state is a folder of the spool; moves are atomic renames."""

    INCOMING = "incoming"
    """Being received; never answered 250 yet. Discarded on recovery."""
    QUEUED = "queued"
    """Durably on disk and answered 250; waiting for (another) delivery attempt."""
    SENDING = "sending"
    """An attempt is under way. On recovery after a crash it goes back to queued."""
    DONE = "done"
    """Accepted by the upstream."""
    DEAD = "dead"
    """Refused for good (5xx), or out of retries; kept with its reason until retried or deleted."""


def new_message_id() -> str:
    """A unique, time-sortable spool id: milliseconds since the epoch, then 8 random hex digits."""
    return f"{time.time_ns() // 1_000_000:013d}-{os.urandom(4).hex()}"


@dataclass
class Attempt:
    """One delivery attempt, as the delivery log and the queue view show it."""

    at: float
    result: Literal["delivered", "deferred", "dead"]
    reply: str
    """The upstream's reply ("250 2.0.0 OK ..." or "451 4.7.500 ...") or a network error in words."""
    code: str | None = None
    """The enhanced status code of the reply, if any."""
    explanation: str = ""
    """What the reply means and what to do (from the reply explainer), for people."""


@dataclass
class Envelope:
    """Everything about a spooled message except its content."""

    id: str
    received_at: float
    device: str
    """The sending device's IP address."""
    mail_from: str
    rcpt_tos: list[str]
    size: int
    device_login: str | None = None
    """The device account it authenticated as, if it did."""
    helo: str = ""
    state: State = State.QUEUED
    sender: str | None = None
    """The envelope sender actually used upstream, after rewriting."""
    attempts: list[Attempt] = field(default_factory=list)
    next_attempt_at: float = 0.0
    failed_rcpts: dict[str, str] = field(default_factory=dict)
    """Recipients the upstream refused for good, with the reply (the others may still be delivered)."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = str(self.state)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Envelope:
        values = dict(data)
        values["state"] = State(values.get("state", State.QUEUED))
        values["attempts"] = [Attempt(**a) for a in values.get("attempts", [])]
        return cls(**values)

    @property
    def last_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None


@dataclass(frozen=True)
class Upstream:
    """Where and how the relay forwards mail."""

    host: str
    port: int
    tls: TlsMode = "starttls"
    user: str | None = None
    """The mailbox to authenticate as; None for direct-send and connector."""
    ca_file: str | None = None
    helo_name: str | None = None
    timeout: float = 60.0
