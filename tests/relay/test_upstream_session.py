"""The upstream session's wire: pipelining when offered, one command at a time when not, BDAT, no RSET after
a clean transaction, and a session the server closed while idle.

Against ``ScriptedServer``, a small SMTP server on 127.0.0.1 that records which commands arrived together
(in one read) and can withhold its replies until a whole pipelined group is there, so a client that waited
for each reply would hang instead of passing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from relaywizard.relay.model import Upstream
from relaywizard.relay.upstream_session import (
    UpstreamSession,
    UpstreamUnavailable,
    bdat_size,
    tls_context,
)

MESSAGE = b"From: scanner@office.example\r\nSubject: scan\r\n\r\nHello.\r\n.dot line\r\n"


@dataclass
class Delivered:
    mail_from: bytes
    rcpt_tos: list[bytes]
    content: bytes
    how: str


@dataclass
class ScriptedServer:
    pipelining: bool = False
    chunking: bool = False
    group: int = 1
    """With pipelining: reply only once this many commands have arrived (MAIL + RCPTs)."""
    rcpt_replies: dict[bytes, bytes] = field(default_factory=dict)
    close_on_next_mail: bool = False
    """Close the connection, without a word, when the next MAIL arrives on a used session."""
    batches: list[list[bytes]] = field(default_factory=list)
    delivered: list[Delivered] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    async def start(self) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Session(self), "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    def commands(self) -> list[bytes]:
        return [command.split(b" ")[0].split(b":")[0] for batch in self.batches for command in batch]


class _Session(asyncio.Protocol):
    def __init__(self, script: ScriptedServer) -> None:
        self.script = script
        self.buffer = b""
        self.pending: list[bytes] = []
        self.mail: bytes | None = None
        self.rcpts: list[bytes] = []
        self.data: bytes | None = None  # collecting DATA
        self.bdat_left = 0
        self.bdat = b""
        self.transactions = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.script.connections += 1
        transport.write(b"220 scripted ESMTP\r\n")

    def reply(self, line: bytes) -> None:
        self.pending.append(line + b"\r\n")

    def flush(self) -> None:
        if self.pending:
            self.transport.write(b"".join(self.pending))
            self.pending = []

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        batch: list[bytes] = []
        while self.buffer:
            if self.bdat_left:
                taken = self.buffer[: self.bdat_left]
                self.bdat += taken
                self.bdat_left -= len(taken)
                self.buffer = self.buffer[len(taken) :]
                if not self.bdat_left:
                    self.deliver(self.bdat, "BDAT")
                continue
            if self.data is not None:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    self.data += self.buffer
                    self.buffer = b""
                    break
                self.data += self.buffer[: end + 2]
                self.buffer = self.buffer[end + 5 :]
                content, self.data = self.data.replace(b"\r\n..", b"\r\n."), None
                self.deliver(content, "DATA")
                continue
            line, sep, rest = self.buffer.partition(b"\r\n")
            if not sep:
                break
            self.buffer = rest
            batch.append(line)
            if not self.command(line):
                return
        if batch:
            self.script.batches.append(batch)
        waiting = (
            self.script.pipelining and 0 < len(self.pending) < self.script.group and self.mail is not None
        )
        if not waiting:
            self.flush()

    def command(self, line: bytes) -> bool:
        verb = line.split(b" ")[0].split(b":")[0].upper()
        if verb == b"EHLO":
            extensions = [b"SIZE 1000000"]
            extensions += [b"PIPELINING"] if self.script.pipelining else []
            extensions += [b"CHUNKING"] if self.script.chunking else []
            self.reply(b"\r\n".join([b"250-scripted", *(b"250-" + e for e in extensions[:-1])]))
            self.reply(b"250 " + extensions[-1])
        elif verb == b"MAIL":
            if self.script.close_on_next_mail and self.transactions:
                self.transport.close()
                return False
            self.mail, self.rcpts = line, []
            self.reply(b"250 2.1.0 OK")
        elif verb == b"RCPT":
            address = line.split(b"<", 1)[1].split(b">", 1)[0]
            answer = self.script.rcpt_replies.get(address, b"250 2.1.5 OK")
            if answer.startswith(b"2"):
                self.rcpts.append(address)
            self.reply(answer)
        elif verb == b"DATA":
            self.reply(b"354 go on")
            self.data = b""
            self.flush()
        elif verb == b"BDAT":
            self.bdat_left, self.bdat = int(line.split()[1]), b""
        elif verb == b"RSET":
            self.mail, self.rcpts = None, []
            self.reply(b"250 2.0.0 OK")
        elif verb == b"QUIT":
            self.reply(b"221 2.0.0 Bye")
            self.flush()
            self.transport.close()
            return False
        else:
            self.reply(b"500 5.5.2 What?")
        return True

    def deliver(self, content: bytes, how: str) -> None:
        assert self.mail is not None
        self.script.delivered.append(Delivered(self.mail, self.rcpts, content, how))
        self.transactions += 1
        self.mail, self.rcpts = None, []
        self.reply(b"250 2.0.0 OK queued")
        self.flush()


@pytest.fixture
async def running() -> AsyncIterator[list[asyncio.Server]]:
    servers: list[asyncio.Server] = []
    yield servers
    for server in servers:
        server.close()


async def session_to(script: ScriptedServer, servers: list[asyncio.Server]) -> UpstreamSession:
    servers.append(await script.start())
    upstream = Upstream("127.0.0.1", script.port, tls="none", timeout=5.0)
    session = UpstreamSession(upstream, None, tls_context(upstream), "relay.test")
    assert await session.ready()
    return session


async def test_pipelining_sends_mail_and_all_rcpts_together_then_bdat(running: list[asyncio.Server]) -> None:
    script = ScriptedServer(pipelining=True, chunking=True, group=3)
    session = await session_to(script, running)
    recipients = ["alice@example.test", "bob@example.test"]
    for _ in range(2):
        assert not await session.ready()  # reused, and no RSET after a clean transaction
        result = await session.send("scanner@office.example", recipients, [MESSAGE])
        assert result.ok, result
        assert result.stage == "data"
    await session.close()
    assert script.connections == 1
    assert [d.how for d in script.delivered] == ["BDAT", "BDAT"]
    assert all(d.content == MESSAGE for d in script.delivered)
    envelope_batches = [batch for batch in script.batches if batch[0].startswith(b"MAIL")]
    assert [len(batch) for batch in envelope_batches] == [3, 3]  # MAIL + 2 RCPT in one write each time
    assert b"RSET" not in script.commands()


async def test_without_pipelining_one_command_at_a_time_and_data(running: list[asyncio.Server]) -> None:
    script = ScriptedServer()
    session = await session_to(script, running)
    result = await session.send(
        "scanner@office.example", ["alice@example.test", "bob@example.test"], [MESSAGE]
    )
    assert result.ok, result
    await session.close()
    assert all(len(batch) == 1 for batch in script.batches), script.batches
    [delivered] = script.delivered
    assert delivered.how == "DATA"
    assert delivered.content == MESSAGE  # dot-stuffed on the wire, unstuffed by the server
    assert delivered.rcpt_tos == [b"alice@example.test", b"bob@example.test"]


async def test_a_4xx_recipient_in_a_pipelined_group_defers_without_content_and_rsets_after(
    running: list[asyncio.Server],
) -> None:
    script = ScriptedServer(pipelining=True, chunking=True, group=3)
    script.rcpt_replies[b"bob@example.test"] = b"451 4.7.500 Server busy"
    session = await session_to(script, running)
    result = await session.send(
        "scanner@office.example", ["alice@example.test", "bob@example.test"], [MESSAGE]
    )
    assert not result.ok
    assert (result.stage, result.code, result.reply) == ("rcpt", 451, "451 4.7.500 Server busy")
    assert result.accepted == ["alice@example.test"]
    assert script.delivered == []
    script.rcpt_replies.clear()
    script.group = 2
    assert not await session.ready()  # the same connection, after an RSET
    assert (await session.send("scanner@office.example", ["bob@example.test"], [MESSAGE])).ok
    await session.close()
    assert script.commands().count(b"RSET") == 1
    assert b"BDAT" in script.commands()
    assert len(script.delivered) == 1


async def test_content_with_bare_line_ends_goes_by_data_even_with_chunking(
    running: list[asyncio.Server],
) -> None:
    script = ScriptedServer(pipelining=True, chunking=True, group=2)
    session = await session_to(script, running)
    assert bdat_size([b"a\nb\r\n"]) is None
    assert bdat_size([b"a\r", memoryview(b"\nb")]) == 6  # a CRLF split between two parts is fine
    assert bdat_size([b"a\r\n"]) == 3
    assert (await session.send("s@office.example", ["a@example.test"], [b"Subject: x\n\nbare\n"])).ok
    await session.close()
    [delivered] = script.delivered
    assert (delivered.how, delivered.content) == ("DATA", b"Subject: x\r\n\r\nbare\r\n")


async def test_a_session_closed_by_the_server_while_idle_is_reopened_for_the_message(
    running: list[asyncio.Server],
) -> None:
    script = ScriptedServer(pipelining=True, chunking=True, group=2, close_on_next_mail=True)
    session = await session_to(script, running)
    assert (await session.send("s@office.example", ["a@example.test"], [MESSAGE])).ok
    assert not await session.ready()  # it looks alive: the close comes with the next MAIL
    assert (await session.send("s@office.example", ["a@example.test"], [MESSAGE])).ok
    await session.close()
    assert script.connections == 2
    assert len(script.delivered) == 2  # once each: nothing was sent twice


async def test_an_unsolicited_421_marks_the_session_dead(running: list[asyncio.Server]) -> None:
    script = ScriptedServer(pipelining=True, chunking=True, group=2)
    session = await session_to(script, running)
    assert (await session.send("s@office.example", ["a@example.test"], [MESSAGE])).ok
    wire = session._wire
    assert wire is not None
    wire.data_received(
        b"421 4.4.2 scripted Error: timeout exceeded\r\n"
    )  # as a server closing an idle session
    assert not session.connected
    assert await session.ready()  # a new connection
    assert (await session.send("s@office.example", ["a@example.test"], [MESSAGE])).ok
    await session.close()
    assert script.connections == 2


async def test_a_session_that_is_gone_is_an_upstream_error(running: list[asyncio.Server]) -> None:
    script = ScriptedServer()
    session = await session_to(script, running)
    session.abort()
    with pytest.raises(UpstreamUnavailable, match="not open"):
        await session.send("s@office.example", ["a@example.test"], [MESSAGE])
