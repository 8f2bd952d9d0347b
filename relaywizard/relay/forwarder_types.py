"""What the forwarder needs from its neighbours, and what it tells the outside world.

``SpoolLike`` and ``DeliveryLogLike`` are the parts of ``Spool`` and ``DeliveryLog`` the forwarder uses,
as protocols, so unit tests can hand it in-memory fakes. ``ForwarderEvent`` is what a listener (the
headless relay's log, later the tray) hears: one event per attempt, plus the relay-level changes
``auth_failed``, ``upstream_down`` and ``upstream_up``, each with one sentence a person understands.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from relaywizard.core.errors import UsageError
from relaywizard.diagnostics.replies import explain, parse_reply
from relaywizard.relay.model import Attempt, Envelope, State
from relaywizard.relay.spool import ContentChunks
from relaywizard.relay.upstream_session import Buffer, Transaction

EventKind = Literal["delivered", "deferred", "dead", "auth_failed", "upstream_down", "upstream_up"]
Result = Literal["delivered", "deferred", "dead"]

NETWORK_EXPLANATION = (
    "The relay could not talk to the upstream server (network down, a firewall, a wrong host or port, "
    "or a TLS problem). The message stays queued and the relay retries by itself."
)


@dataclass(frozen=True)
class ForwarderEvent:
    """Something a person may want to know about; ``text`` is one readable sentence."""

    kind: EventKind
    text: str
    at: float
    envelope_id: str | None = None
    reply: str | None = None
    """The upstream's reply behind the event, or a network error in words."""
    code: str | None = None
    """The enhanced status code of ``reply``, if any ("5.7.139")."""


EventCallback = Callable[[ForwarderEvent], None]
Backoff = Sequence[float] | Callable[[int], float]
"""Seconds to wait before retry number n (1, 2, ...): a function, or steps whose last one repeats."""


def default_backoff(attempt: int) -> float:
    """60 s, doubling per failed attempt up to an hour, ±10 % jitter so retries do not march in step."""
    base = min(3600.0, 60.0 * 2.0 ** max(0, attempt - 1))
    return base * random.uniform(0.9, 1.1)


def backoff_delay(backoff: Backoff, attempt: int) -> float:
    if callable(backoff):
        return max(0.0, backoff(attempt))
    steps = list(backoff) or [60.0]
    return max(0.0, steps[min(max(attempt, 1), len(steps)) - 1])


class SpoolLike(Protocol):
    """The spool operations the forwarder uses (``relaywizard.relay.spool.Spool``)."""

    async def claim(self, limit: int, now: float) -> list[Envelope]: ...

    def next_due(self) -> float | None: ...

    async def content(self, envelope_id: str) -> bytes: ...

    async def content_chunks(self, envelope_id: str) -> ContentChunks: ...

    async def finish(self, envelope: Envelope, state: State) -> None: ...


class UpstreamSessionLike(Protocol):
    """One reusable session to the upstream (``UpstreamSession`` for SMTP; a Graph session later).

    ``ready()`` makes it usable (True: it (re)connected, which tells the forwarder the upstream is up),
    ``send()`` runs one message and returns the upstream's verdict (``SessionError`` when the session
    itself failed), ``close()`` ends it politely when idle, ``abort()`` drops it at once.
    """

    connects: int
    """Connections made so far."""

    @property
    def connected(self) -> bool: ...

    @property
    def where(self) -> str: ...

    async def ready(self) -> bool: ...

    async def send(self, sender: str, recipients: list[str], content: Sequence[Buffer]) -> Transaction: ...

    async def close(self) -> None: ...

    def abort(self) -> None: ...


SessionFactory = Callable[[], UpstreamSessionLike]


class DeliveryLogLike(Protocol):
    """The delivery log (``relaywizard.relay.deliverylog.DeliveryLog``): one line per attempt."""

    def write(self, envelope: Envelope, attempt: Attempt) -> None: ...


_SUCCESS_EXPLANATIONS: dict[tuple[int | None, str | None], str] = {}


def attempt_for(at: float, result: Result, text: str, *, is_reply: bool = True) -> Attempt:
    """An ``Attempt`` for an upstream reply (explained by the reply explainer) or a network error."""
    if not is_reply:
        return Attempt(at, result, text, None, NETWORK_EXPLANATION)
    parsed = parse_reply(text)
    if parsed is None:
        return Attempt(at, result, text, None, "")
    # Looking the reply up in the explainer's table costs about 0.2 ms; every delivered message's
    # "250 ... queued as <id>" means the same, so a success is explained once per code. Only when the
    # table entry does not depend on the text, which no 2xx entry does today.
    key = (parsed.basic, parsed.enhanced)
    known = _SUCCESS_EXPLANATIONS.get(key)
    if known is not None:
        return Attempt(at, result, text, parsed.enhanced, known)
    try:
        explained = explain(parsed)
    except UsageError:
        return Attempt(at, result, text, parsed.enhanced, "")
    explanation = explained.meaning
    if explained.fix and explained.fix != "Nothing to fix.":
        explanation = f"{explanation} {explained.fix}"
    text_free = explained.entry is None or explained.entry.text is None
    if (
        parsed.basic is not None
        and 200 <= parsed.basic < 300
        and text_free
        and len(_SUCCESS_EXPLANATIONS) < 64
    ):
        _SUCCESS_EXPLANATIONS[key] = explanation
    return Attempt(at, result, text, parsed.enhanced, explanation)


def describe_delay(seconds: float) -> str:
    """A duration for people: "0.5 seconds", "2 minutes", "1 hour", "2 days"."""
    for unit, size in (("day", 86400.0), ("hour", 3600.0), ("minute", 60.0)):
        if seconds >= size:
            count = round(seconds / size)
            return f"{count} {unit}{'' if count == 1 else 's'}"
    shown = f"{seconds:.1f}".removesuffix(".0")
    return f"{shown} second{'' if shown == '1' else 's'}"


def event_for(envelope: Envelope, attempt: Attempt) -> ForwarderEvent:
    """The event telling a person what became of one attempt."""
    recipients = ", ".join(r for r in envelope.rcpt_tos if r not in envelope.failed_rcpts) or "nobody"
    if attempt.result == "delivered":
        text = f"Message {envelope.id} delivered to {recipients}."
    elif attempt.result == "deferred":
        wait = describe_delay(max(0.0, envelope.next_attempt_at - attempt.at))
        text = f"Message {envelope.id} deferred ({attempt.reply}); next try in {wait}."
    else:
        text = f"Message {envelope.id} could not be delivered: {attempt.reply}"
    return ForwarderEvent(attempt.result, text, attempt.at, envelope.id, attempt.reply, attempt.code)


class UpstreamHealth:
    """Is the upstream taking sessions? A small circuit breaker shared by all of a forwarder's sessions.

    After a session failure (network, greeting, login) the forwarder holds off claiming for a backoff,
    then sends one message alone as a probe: a wrong password is tried once per backoff, not once per
    queued message (Microsoft throttles accounts that keep failing, 5.2.251-255). Each change of state is
    an event; failures of several sessions at once count as one.
    """

    def __init__(self, where: str, backoff: Backoff) -> None:
        self.where = where
        self.backoff = backoff
        self.state: Literal["unknown", "up", "down", "auth_failed"] = "unknown"
        self.failures = 0
        self.hold_until = 0.0

    @property
    def probing(self) -> bool:
        """True until a session has worked: then only one message at a time is tried."""
        return self.state != "up"

    def lift_network_hold(self) -> None:
        """New mail arrived: try a network-down upstream again now (a wrong password still waits)."""
        if self.state == "down":
            self.hold_until = 0.0

    def ok(self, now: float) -> ForwarderEvent | None:
        """A session opened; the ``upstream_up`` event when it had been failing."""
        was, self.state = self.state, "up"
        self.failures, self.hold_until = 0, 0.0
        if was in ("down", "auth_failed"):
            return ForwarderEvent("upstream_up", f"The upstream {self.where} accepts mail again.", now)
        return None

    def failed(self, now: float, text: str, reply: str | None, auth: bool) -> ForwarderEvent | None:
        """A session failed; the ``auth_failed`` or ``upstream_down`` event when that is news."""
        if self.hold_until <= now:
            self.failures += 1
            self.hold_until = now + backoff_delay(self.backoff, self.failures)
        state: Literal["down", "auth_failed"] = "auth_failed" if auth else "down"
        if self.state == state:
            return None
        self.state = state
        code = attempt_for(now, "deferred", reply).code if reply else None
        kind: EventKind = "auth_failed" if auth else "upstream_down"
        return ForwarderEvent(kind, text, now, None, reply or text, code)
