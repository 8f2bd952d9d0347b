"""In-memory stand-ins for the relay's parts, for tests that need the interface but not the disk."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from relaywizard.relay.inbound import start_inbound
from relaywizard.relay.model import Envelope, State
from relaywizard.relay.policy import InboundPolicy


class FakeSpool:
    """A spool with ``Spool.accept``'s signature that keeps messages in memory.

    ``fail`` makes every accept raise it (a full disk, say); ``delay`` holds each accept that long, like
    a slow fsync, so tests can hang up in the middle of one.
    """

    def __init__(self, *, fail: BaseException | None = None, delay: float = 0.0) -> None:
        self.fail = fail
        self.delay = delay
        self.messages: dict[str, tuple[Envelope, bytes]] = {}
        self.started = 0

    async def accept(self, envelope: Envelope, content: bytes | Sequence[bytes | memoryview]) -> Envelope:
        self.started += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        stored = dataclasses.replace(envelope, state=State.QUEUED, rcpt_tos=list(envelope.rcpt_tos))
        whole = content if isinstance(content, bytes) else b"".join(content)
        self.messages[stored.id] = (stored, whole)
        return stored

    @property
    def contents(self) -> list[bytes]:
        return [content for _, content in self.messages.values()]

    @property
    def envelopes(self) -> list[Envelope]:
        return [envelope for envelope, _ in self.messages.values()]


# -- test support: a running inbound server and a raw SMTP client ---------------------------------------


@dataclasses.dataclass
class RunningRelay:
    """An inbound server on 127.0.0.1 in the test's loop, with what it queued."""

    server: asyncio.Server
    port: int
    spool: Any
    queued: list[Envelope]

    async def messages(self) -> list[tuple[Envelope, bytes]]:
        """Everything the spool holds, envelope and content, whichever spool it is."""
        if isinstance(self.spool, FakeSpool):
            return list(self.spool.messages.values())
        return [(e, await self.spool.content(e.id)) for e in self.spool.list()]

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


async def start_relay(spool: Any, policy: InboundPolicy, *, on_queued: Any = None) -> RunningRelay:
    queued: list[Envelope] = []
    server = await start_inbound(policy, spool, on_queued or queued.append, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return RunningRelay(server, port, spool, queued)


class RawClient:
    """SMTP by hand, byte for byte: for what no client library would send (smuggling, bad paths)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, *, source: str = "127.0.0.1") -> RawClient:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0), limit=2**20), 10
        )
        return cls(reader, writer)

    async def reply(self, wait: float = 10) -> str:
        """One whole reply (all lines of a multi-line one), without the line ends."""
        lines: list[str] = []
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), wait)
            if not raw:
                raise ConnectionError("the server closed the connection: " + " | ".join(lines))
            line = raw.decode("ascii", "replace").rstrip("\r\n")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return "\n".join(lines)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def cmd(self, line: str) -> str:
        await self.send(line.encode("ascii") + b"\r\n")
        return await self.reply()

    async def start_mail(self, recipient: str = "alice@lab.test", *, helo: str = "EHLO scanner") -> None:
        """Greeting, EHLO, MAIL FROM and one RCPT TO, each asserted to succeed."""
        assert (await self.reply()).startswith("220 ")
        assert (await self.cmd(helo)).startswith("250")
        assert (await self.cmd("MAIL FROM:<scanner@lab.test>")).startswith("250 ")
        assert (await self.cmd(f"RCPT TO:<{recipient}>")).startswith("250 ")

    async def silent_for(self, seconds: float) -> bool:
        """True when the server says nothing for that long."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), seconds)
        except TimeoutError:
            return True
        return not data

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def eventually(check: Callable[[], object], seconds: float = 3.0) -> bool:
    """Poll ``check`` (bounded) until it is true: for what the server does after its last reply."""
    for _ in range(int(seconds / 0.01)):
        if check():
            return True
        await asyncio.sleep(0.01)
    return bool(check())
