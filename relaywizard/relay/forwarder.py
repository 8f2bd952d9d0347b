"""The forwarder: takes messages from the spool and delivers them to the upstream, the way Microsoft wants.

Shape: one dispatcher task claims due messages from the spool and hands them to up to ``connections``
worker tasks; each worker owns one session (from ``session_factory``; by default an SMTP
``UpstreamSession``) that it keeps open across messages (one login, closed after ``idle_timeout``
without work). The dispatcher claims only as many
messages as there are idle workers, so at most ``connections`` messages are being sent at once (a few
more may still be in SENDING while their result is saved in the background), and it takes one pacing
token per message, so all sessions together stay under ``rate`` messages a minute.

``wake()`` (called by the inbound server after each accepted message) starts delivery at once; when
nothing is due, the dispatcher sleeps until the spool's ``next_due()`` instead of polling.

Results: 2xx → DONE (recipients refused with 5xx are kept in ``failed_rcpts``); 4xx, a network error or
a timeout → QUEUED again after a backoff, or DEAD once older than ``max_age``; 5xx → DEAD at once. A
failure of the session itself (network, greeting, AUTH) is not the message's fault: the message is
deferred, the relay reports ``upstream_down`` or ``auth_failed`` once, and ``UpstreamHealth`` holds off
for a backoff, then probes with one message, so a wrong password is not tried once per queued message.
Every attempt is appended to the envelope, persisted with ``spool.finish``, written to the delivery log
and reported as a ``ForwarderEvent``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Sequence
from typing import Literal

from relaywizard.core import m365
from relaywizard.relay.credentials import Credentials
from relaywizard.relay.forwarder_types import (
    Backoff,
    DeliveryLogLike,
    EventCallback,
    ForwarderEvent,
    SessionFactory,
    SpoolLike,
    UpstreamHealth,
    UpstreamSessionLike,
    attempt_for,
    backoff_delay,
    default_backoff,
    describe_delay,
    event_for,
)
from relaywizard.relay.model import Attempt, Envelope, State, Upstream
from relaywizard.relay.pacing import TokenBucket
from relaywizard.relay.rewrite import rewrite_sender
from relaywizard.relay.senders import SenderMap
from relaywizard.relay.upstream_session import (
    AuthFailed,
    Buffer,
    ForwarderConfigError,
    SessionError,
    Transaction,
    UpstreamSession,
    tls_context,
)

__all__ = ["Backoff", "Forwarder", "ForwarderConfigError", "ForwarderEvent", "default_backoff"]

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE = 2 * 86400.0
MAX_SAVING = 16
"""Attempts being saved in the background at most, before the sessions wait for the spool."""
STREAM_ABOVE = 2 << 20
"""Messages larger than this (bytes) are read from the spool a chunk at a time while being sent."""
IDLE_TIMEOUT = 60.0
STOP_GRACE = 10.0


class Forwarder:
    """Delivers spooled messages upstream; ``run()`` until ``stop()``."""

    def __init__(
        self,
        spool: SpoolLike,
        upstream: Upstream,
        credentials: Credentials | None,
        log: DeliveryLogLike,
        *,
        connections: int = m365.SMTP_AUTH_CONNECTIONS_PER_MAILBOX.value,
        rate: int = m365.SMTP_AUTH_MESSAGES_PER_MINUTE.value,
        max_age: float = DEFAULT_MAX_AGE,
        backoff: Backoff = default_backoff,
        sender: str | SenderMap | None = None,
        clock: Callable[[], float] = time.time,
        on_event: EventCallback | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
        stop_grace: float = STOP_GRACE,
        session_factory: SessionFactory | None = None,
        upstream_name: str | None = None,
    ) -> None:
        if connections < 1:
            raise ForwarderConfigError(
                f"The number of upstream connections must be 1 or more, not {connections}."
            )
        if rate < 0:
            raise ForwarderConfigError(f"The sending rate must be 0 (no pacing) or more, not {rate}.")
        self.spool = spool
        self.upstream = upstream
        self.credentials = credentials
        self.delivery_log = log
        self.connections = connections
        self.max_age = max_age
        self.sender = sender
        self.clock = clock
        self.on_event = on_event
        self.idle_timeout = idle_timeout
        self.stop_grace = stop_grace
        self.session_factory = session_factory
        self.health = UpstreamHealth(upstream_name or f"{upstream.host}:{upstream.port}", backoff)
        self._backoff = backoff
        self._context = tls_context(upstream)  # once: loading the system CAs is not free
        # One bucket per forwarder = per upstream mailbox; monotonic, so a wall-clock step cannot stall it.
        self._bucket = TokenBucket(rate) if rate > 0 else None
        self._kick = asyncio.Event()
        self._queue: asyncio.Queue[Envelope | None] = asyncio.Queue()
        self._sessions: list[UpstreamSessionLike] = []
        self._recording: set[asyncio.Future[None]] = set()  # attempts being saved (see _record)
        self._idle = 0  # workers waiting for a message
        self._paused = self._stopping = self._running = False
        self._done = asyncio.Event()

    # -- control ---------------------------------------------------------------------------------------

    def wake(self) -> None:
        """New mail (the inbound side calls this after each 250): look for due messages now."""
        self.health.lift_network_hold()
        self._kick.set()

    def pause(self) -> None:
        """Stop claiming messages; those in flight finish."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._kick.set()

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def running(self) -> bool:
        return self._running

    @property
    def sessions_opened(self) -> int:
        """Upstream connections made by this run so far (for tests and a status view)."""
        return sum(session.connects for session in self._sessions)

    async def stop(self) -> None:
        """Stop claiming, let in-flight messages finish within ``stop_grace``, then QUIT the sessions.

        A message still in flight after the grace period is cancelled and stays in SENDING: the spool's
        recovery puts it back in the queue at the next start, so it is never lost.
        """
        self._stopping = True
        self._kick.set()
        if self._running:
            await self._done.wait()

    async def run(self) -> None:
        """Deliver until ``stop()``. A forwarder runs once; ``stop()`` before ``run()`` makes it return."""
        if self._running:
            raise RuntimeError("this forwarder is already running")
        self._running = True
        workers: list[asyncio.Task[None]] = []
        try:
            factory = self.session_factory or await self._smtp_sessions()
            for _ in range(self.connections):
                session = factory()
                self._sessions.append(session)
                workers.append(asyncio.create_task(self._worker(session)))
            await self._dispatch()
        finally:
            await self._shutdown(workers)
            self._running = False
            self._done.set()

    async def _smtp_sessions(self) -> SessionFactory:
        """The default: SMTP sessions to ``upstream`` with ``credentials``."""
        helo = self.upstream.helo_name
        if not helo:
            helo = await asyncio.to_thread(socket.getfqdn)  # may be slow with a broken resolver

        def new_session() -> UpstreamSessionLike:
            return UpstreamSession(self.upstream, self.credentials, self._context, helo)

        return new_session

    # -- dispatching -----------------------------------------------------------------------------------

    async def _wait_kick(self, seconds: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._kick.wait()

    def _claimable(self, now: float) -> tuple[int, float | None]:
        """How many messages to claim now, else (0, how long to wait at most; None: until kicked)."""
        if self._paused:
            return 0, None
        if self.health.hold_until > now:
            return 0, self.health.hold_until - now
        free = self._idle - self._queue.qsize()
        if self.health.probing:  # unknown or failing: one message alone tries the upstream first
            free = 1 if free == self.connections else 0
        if free > 0 and self._bucket is not None:
            free = min(free, self._bucket.available())
            if free == 0:
                return 0, self._bucket.delay()
        return max(free, 0), None

    async def _dispatch(self) -> None:
        while not self._stopping:
            self._kick.clear()
            now = self.clock()
            free, wait = self._claimable(now)
            if free == 0:
                await self._wait_kick(wait)
                continue
            try:
                batch = await self.spool.claim(free, now)
            except Exception:
                log.exception("Cannot claim messages from the spool; trying again in a few seconds")
                await self._wait_kick(5.0)
                continue
            if not batch:
                due = self.spool.next_due()
                # A floor, so a spool that reports a due message it will not hand out cannot spin the loop.
                await self._wait_kick(None if due is None else max(0.05, due - self.clock()))
                continue
            if self._bucket is not None:
                self._bucket.try_take(len(batch))
            for envelope in batch:
                self._queue.put_nowait(envelope)

    async def _shutdown(self, workers: list[asyncio.Task[None]]) -> None:
        while not self._queue.empty():  # handed out but not started: back to the queue, no attempt
            envelope = self._queue.get_nowait()
            if envelope is not None:
                await self._persist(envelope, State.QUEUED)
        for _ in workers:
            self._queue.put_nowait(None)
        if workers:
            _, pending = await asyncio.wait(workers, timeout=self.stop_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        while self._recording:
            await asyncio.gather(*self._recording, return_exceptions=True)
        await asyncio.gather(*(session.close() for session in self._sessions), return_exceptions=True)

    # -- delivering ------------------------------------------------------------------------------------

    async def _worker(self, session: UpstreamSessionLike) -> None:
        while True:
            self._idle += 1
            self._kick.set()
            try:
                envelope = await self._next(self.idle_timeout if session.connected else None)
            finally:
                self._idle -= 1
            if envelope is False:
                await session.close()  # idle: Microsoft counts open sessions against the mailbox
                continue
            if envelope is None:
                return
            if len(self._recording) >= MAX_SAVING:  # the spool is far behind: let it catch up
                await asyncio.wait(self._recording, return_when=asyncio.FIRST_COMPLETED)
            try:
                await self._deliver(session, envelope)
            except asyncio.CancelledError:
                session.abort()  # mid-transaction: the message stays in SENDING for recovery
                raise
            except Exception:
                log.exception("Unexpected error while delivering message %s", envelope.id)
                session.abort()
                await self._defer(envelope, "The relay failed while sending (an internal error).", None)

    async def _next(self, idle_timeout: float | None) -> Envelope | Literal[False] | None:
        """The next message (None: stop), or False after ``idle_timeout`` without one.

        Not ``asyncio.timeout`` around ``Queue.get``: on Python 3.11 a timeout firing just as an item
        arrives can leave a stray cancellation behind. Cancelling a pending ``get`` never loses an item.
        """
        getter = asyncio.ensure_future(self._queue.get())
        try:
            await asyncio.wait({getter}, timeout=idle_timeout)
        finally:
            if not getter.done():
                getter.cancel()
                await asyncio.wait({getter})
        return False if getter.cancelled() else getter.result()

    async def _content(self, envelope: Envelope) -> tuple[str, Sequence[Buffer]]:
        """The envelope sender and the message to send, after the sender rewrite if one is set.

        A large message is read a chunk at a time while it is sent (``ContentChunks``): with the whole
        of a 35 MB scan in memory here, the relay's peak would be twice its size or more.
        """
        mailbox = self.sender_for(envelope)
        if envelope.size > STREAM_ABOVE:
            chunks = await self.spool.content_chunks(envelope.id)
            if not mailbox:
                return envelope.mail_from, chunks
            head = await asyncio.to_thread(chunks.__getitem__, 0)  # the header block, when it fits
            rewritten = rewrite_sender(head, envelope.mail_from, mailbox)
            return rewritten.mail_from, chunks.with_head(rewritten.header)
        content = await self.spool.content(envelope.id)
        if not mailbox:
            return envelope.mail_from, (content,)
        rewritten = rewrite_sender(content, envelope.mail_from, mailbox)
        return rewritten.mail_from, rewritten.parts

    def sender_for(self, envelope: Envelope) -> str | None:
        """The address this device's message goes out as (its own rule, else the default), or None."""
        if isinstance(self.sender, SenderMap):
            return self.sender.sender_for(envelope.device, envelope.device_login)
        return self.sender

    async def _deliver(self, session: UpstreamSessionLike, envelope: Envelope) -> None:
        try:
            sender, parts = await self._content(envelope)
        except Exception as exc:  # unreadable for now (or gone: then it dies at max_age, never silently)
            await self._defer(envelope, f"The message cannot be read from the spool: {exc}", None)
            return
        envelope.sender = sender
        recipients = [r for r in envelope.rcpt_tos if r not in envelope.failed_rcpts]
        try:
            if await session.ready():
                self._emit(self.health.ok(self.clock()))
                self._kick.set()  # if that was a probe, the other sessions may start now
            result = await session.send(sender, recipients, parts)
        except SessionError as exc:
            log.warning("%s", exc.text)
            failed = self.health.failed(self.clock(), exc.text, exc.reply, isinstance(exc, AuthFailed))
            self._emit(failed)
            await self._defer(envelope, exc.reply or exc.text, exc.reply)
            return
        await self._conclude(envelope, result)

    async def _conclude(self, envelope: Envelope, result: Transaction) -> None:
        """Turn the upstream's replies into the message's new state."""
        for recipient, (code, reply) in result.refused.items():
            if code >= 500:
                envelope.failed_rcpts[recipient] = reply
        now = self.clock()
        if result.ok:
            # HTTP upstreams (Graph) have no login to prove a session: a message through is the proof
            self._emit(self.health.ok(now))
            attempt = attempt_for(now, "delivered", result.reply)
            if envelope.failed_rcpts:
                refused = "; ".join(f"{r}: {reply}" for r, reply in envelope.failed_rcpts.items())
                why = attempt_for(now, "dead", next(iter(envelope.failed_rcpts.values()))).explanation
                attempt.explanation = f"Not delivered to {refused}. {why}"
            await self._record(envelope, attempt, State.DONE)
        elif result.code < 500:
            wait = getattr(result, "retry_after", None)  # Graph's 429/503 Retry-After
            if wait:  # the throttle is per mailbox: every session holds off, not just this message
                self.health.hold_until = max(self.health.hold_until, now + wait)
            await self._defer(envelope, result.reply, result.reply, at_least=wait)
        else:
            await self._record(envelope, attempt_for(now, "dead", result.reply), State.DEAD)

    async def _defer(
        self, envelope: Envelope, text: str, reply: str | None, *, at_least: float | None = None
    ) -> None:
        """Back to the queue after a backoff (at least ``at_least`` s, when the upstream said how long), or
        DEAD when the message has waited ``max_age``."""
        now = self.clock()
        attempt = attempt_for(now, "deferred", text, is_reply=reply is not None)
        deadline = envelope.received_at + self.max_age
        if now >= deadline:
            attempt.result = "dead"
            gave_up = f"The relay gave up after {describe_delay(self.max_age)} of retries."
            attempt.explanation = f"{attempt.explanation} {gave_up}".strip()
            await self._record(envelope, attempt, State.DEAD)
            return
        tries = 1 + sum(1 for a in envelope.attempts if a.result == "deferred")
        # The last try happens at the deadline, so a message dies close to max_age, not up to an hour later.
        delay = max(backoff_delay(self._backoff, tries), at_least or 0.0)
        envelope.next_attempt_at = min(now + delay, deadline)
        await self._record(envelope, attempt, State.QUEUED)

    async def _record(self, envelope: Envelope, attempt: Attempt, state: State) -> None:
        """Persist the attempt (first: the spool is the truth), then log it, then tell the listener.

        In the background: the session goes on with the next message while the spool writes, instead
        of waiting for its fsync (a millisecond or more per message, for each of only three sessions).
        At most ``MAX_SAVING`` of these run at once (then the workers wait), and ``_shutdown`` waits
        for them all, so the spool is never closed under one.
        """
        envelope.attempts.append(attempt)
        task = asyncio.ensure_future(self._persist_and_report(envelope, attempt, state))
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)

    async def _persist_and_report(self, envelope: Envelope, attempt: Attempt, state: State) -> None:
        await self._persist(envelope, state)
        self._kick.set()  # a deferred message is back in the queue: the dispatcher may need a new timer
        try:
            self.delivery_log.write(envelope, attempt)
        except Exception:
            log.exception("Cannot write the delivery log for message %s", envelope.id)
        self._emit(event_for(envelope, attempt))

    async def _persist(self, envelope: Envelope, state: State) -> None:
        try:
            await self.spool.finish(envelope, state)
        except Exception:  # it stays in SENDING on disk, and recovery requeues it at the next start
            log.exception("Cannot move message %s to %s in the spool", envelope.id, state)

    def _emit(self, event: ForwarderEvent | None) -> None:
        if event is None:
            return
        log.info("%s", event.text)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("The forwarder's event listener failed")
