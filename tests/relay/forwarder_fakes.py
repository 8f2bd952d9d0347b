"""Test doubles for the forwarder: an in-memory spool and delivery log, a scripted upstream, a TCP proxy.

``FakeUpstream`` is a real aiosmtpd server on 127.0.0.1, port 0, created with ``loop.create_server`` in the
test's own loop; its replies are scripted per stage, and it counts connections, AUTHs, RSETs and QUITs so
tests can prove session reuse. ``TcpProxy`` sits between the forwarder and a server and can be closed
and reopened on the same port, to play "the upstream is down, then back".
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import ssl
import tempfile
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from relaywizard.relay.forwarder_types import ForwarderEvent
from relaywizard.relay.model import Attempt, Envelope, State, new_message_id
from relaywizard.relay.spool import ContentChunks


class FakeSpool:
    """The ``Spool`` operations the forwarder uses, in memory, with the same state rules."""

    def __init__(self) -> None:
        self.envelopes: dict[str, Envelope] = {}
        self.contents: dict[str, bytes] = {}
        self.chunked: list[str] = []  # messages read a chunk at a time

    async def accept(self, envelope: Envelope, content: bytes) -> Envelope:
        queued = copy.deepcopy(envelope)
        queued.state = State.QUEUED
        self.envelopes[queued.id] = queued
        self.contents[queued.id] = content
        return copy.deepcopy(queued)

    async def claim(self, limit: int, now: float) -> list[Envelope]:
        due = sorted(
            (e for e in self.envelopes.values() if e.state is State.QUEUED and e.next_attempt_at <= now),
            key=lambda e: (e.received_at, e.id),
        )[:limit]
        for envelope in due:
            envelope.state = State.SENDING
        return [copy.deepcopy(e) for e in due]

    def next_due(self) -> float | None:
        due = [e.next_attempt_at for e in self.envelopes.values() if e.state is State.QUEUED]
        return min(due) if due else None

    async def content(self, envelope_id: str) -> bytes:
        return self.contents[envelope_id]

    async def content_chunks(self, envelope_id: str) -> ContentChunks:
        path = Path(tempfile.mkdtemp(prefix="fake-spool-")) / f"{envelope_id}.eml"
        path.write_bytes(self.contents[envelope_id])
        self.chunked.append(envelope_id)
        return ContentChunks.scan(path)

    async def finish(self, envelope: Envelope, state: State) -> None:
        assert state in (State.QUEUED, State.DONE, State.DEAD), state
        assert self.envelopes[envelope.id].state is State.SENDING, "finish() of a message not being sent"
        saved = copy.deepcopy(envelope)
        saved.state = state
        self.envelopes[envelope.id] = saved

    def get(self, envelope_id: str) -> Envelope:
        return copy.deepcopy(self.envelopes[envelope_id])


class FakeDeliveryLog:
    """Remembers every ``write``."""

    def __init__(self) -> None:
        self.records: list[tuple[Envelope, Attempt]] = []

    def write(self, envelope: Envelope, attempt: Attempt) -> None:
        self.records.append((copy.deepcopy(envelope), attempt))


class Events(list[ForwarderEvent]):
    """An ``on_event`` callback that keeps what it hears."""

    def __call__(self, event: ForwarderEvent) -> None:
        self.append(event)

    def kinds(self) -> list[str]:
        return [event.kind for event in self]


def make_envelope(
    rcpt_tos: list[str] | None = None,
    mail_from: str = "scanner@office.example",
    *,
    received_at: float | None = None,
    next_attempt_at: float = 0.0,
    size: int = 0,
) -> Envelope:
    return Envelope(
        id=new_message_id(),
        received_at=time.time() if received_at is None else received_at,
        device="192.0.2.10",
        mail_from=mail_from,
        rcpt_tos=rcpt_tos or ["alice@example.test"],
        size=size,
        next_attempt_at=next_attempt_at,
    )


def message(subject: str = "scan", sender: str = "Scanner <scanner@office.example>") -> bytes:
    return (
        f"From: {sender}\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\r\nHello.\r\n.dot line\r\n"
    ).encode()


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    at: float
    mail_options: list[str] = field(default_factory=list)


class FakeUpstream:
    """A scripted SMTP server. ``script("mail", reply, ...)`` queues replies for the next MAILs, etc.

    Stages: "mail", "rcpt:<address>", "data", "drop-data" (close the connection instead of answering
    DATA, once per entry). Unscripted commands succeed. ``always`` holds replies that never run out.
    """

    def __init__(
        self,
        *,
        password: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
    ) -> None:
        self.password = password
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls
        self.scripted: dict[str, deque[str]] = defaultdict(deque)
        self.always: dict[str, str] = {}
        self.data_delay = 0.0
        self.received: list[Received] = []
        self.connections = 0
        self.auths = 0
        self.failed_auths = 0
        self.rsets = 0
        self.quits = 0
        self.open_now = 0
        self.max_open = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._protocols: list[SMTP] = []

    def script(self, stage: str, *replies: str) -> None:
        self.scripted[stage].extend(replies)

    def _reply(self, stage: str) -> str | None:
        if self.scripted[stage]:
            return self.scripted[stage].popleft()
        return self.always.get(stage)

    async def start(self) -> FakeUpstream:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, "127.0.0.1", self.port, ssl=self.tls_context if self.implicit_tls else None
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def _protocol(self) -> SMTP:
        self.connections += 1
        kwargs: dict[str, Any] = {"hostname": "upstream.test", "auth_require_tls": False}
        if self.password is not None:
            kwargs["authenticator"] = self._authenticate
        if self.tls_context is not None and not self.implicit_tls:
            kwargs.update(tls_context=self.tls_context, require_starttls=True, auth_require_tls=True)
        protocol = _CountingSMTP(_Handler(self), self, **kwargs)
        self._protocols.append(protocol)
        return protocol

    def _authenticate(
        self, server: SMTP, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        self.auths += 1
        ok = isinstance(data, LoginPassword) and data.password.decode() == self.password
        if not ok:
            self.failed_auths += 1
        return AuthResult(success=ok, handled=False)  # unhandled failure: aiosmtpd answers 535 5.7.8

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for protocol in self._protocols:
                if protocol.transport is not None:
                    protocol.transport.close()
            await self._server.wait_closed()
            self._server = None
        await asyncio.sleep(0)


class _CountingSMTP(SMTP):
    """aiosmtpd's SMTP, counting open connections, RSETs and QUITs for the fake."""

    def __init__(self, handler: Any, upstream: FakeUpstream, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._upstream = upstream

    def connection_made(self, transport: Any) -> None:
        self._upstream.open_now += 1
        self._upstream.max_open = max(self._upstream.max_open, self._upstream.open_now)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._upstream.open_now -= 1
        super().connection_lost(exc)

    async def smtp_RSET(self, arg: str) -> None:
        self._upstream.rsets += 1
        await super().smtp_RSET(arg)

    async def smtp_QUIT(self, arg: str) -> None:
        self._upstream.quits += 1
        await super().smtp_QUIT(arg)


class _Handler:
    def __init__(self, upstream: FakeUpstream) -> None:
        self.upstream = upstream

    async def handle_MAIL(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        reply = self.upstream._reply("mail")
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        reply = self.upstream._reply(f"rcpt:{address}")
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        if self.upstream.data_delay:
            await asyncio.sleep(self.upstream.data_delay)
        if self.upstream._reply("drop-data") is not None:
            assert server.transport is not None
            server.transport.close()
            return "421 4.4.2 dropped"  # never arrives: the connection is gone
        reply = self.upstream._reply("data")
        if reply is not None:
            return reply
        self.upstream.received.append(
            Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.content,
                time.monotonic(),
                list(envelope.mail_options),
            )
        )
        return "250 2.0.0 OK queued as FAKE"


class TcpProxy:
    """Forwards TCP to ``target``; ``close()`` drops it and every connection, ``open()`` reopens it."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.close()
                self._writers.discard(w)
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()


async def wait_until(condition: Any, within: float = 5.0, step: float = 0.01) -> bool:
    """Poll ``condition()`` until it is true or ``within`` seconds pass; returns its last value."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return bool(condition())
        await asyncio.sleep(step)
    return True
