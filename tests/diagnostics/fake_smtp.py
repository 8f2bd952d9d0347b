"""A scripted SMTP peer for the staged-check unit tests: every reply a test needs, on 127.0.0.1:0.

Real servers cannot easily produce every case (a greeting that is a refusal, STARTTLS refused, a
certificate expiring in ten days, TLS 1.1 only), so this peer answers from a ``Script``. It runs inside
the test's event loop, records every command line it received and every message it accepted, and does a
real server-side TLS upgrade with trustme certificates (``Certificates``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import json
import ssl
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import trustme

HOST = "127.0.0.1"
USER = "scanner@fake.test"
PASSWORD = "s3cret-Pass-7731"
TOKEN = "tok-Valid-0f9e8d7c6b5a"

CertKind = Literal["valid", "wrong-name", "expiring", "expired", "untrusted", "old-tls"]


class Certificates:
    """A test CA the client trusts (``ca_file``), and server certificates of every kind a test needs."""

    def __init__(self, folder: Path) -> None:
        self.ca = trustme.CA(organization_name="fake smtp test CA")
        self.other_ca = trustme.CA(organization_name="untrusted test CA")
        self.ca_file = folder / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def server_context(self, kind: CertKind = "valid") -> ssl.SSLContext:
        now = dt.datetime.now(dt.UTC)
        if kind == "wrong-name":
            cert = self.ca.issue_cert("other.example")
        elif kind == "expiring":
            cert = self.ca.issue_cert(HOST, not_after=now + dt.timedelta(days=10, hours=1))
        elif kind == "expired":
            cert = self.ca.issue_cert(
                HOST, not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1)
            )
        elif kind == "untrusted":
            cert = self.other_ca.issue_cert(HOST)
        else:
            cert = self.ca.issue_cert(HOST, "localhost")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(context)
        if kind == "old-tls":
            with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated: that is the point here
                warnings.simplefilter("ignore", DeprecationWarning)
                context.minimum_version = ssl.TLSVersion.TLSv1
                context.maximum_version = ssl.TLSVersion.TLSv1_1
            context.set_ciphers("ALL:@SECLEVEL=0")
        return context


@dataclass
class Script:
    """How the peer answers. A reply given here replaces the accepting default for that stage."""

    greeting: str | None = "220 fake.test ESMTP ready"
    """None: accept the connection and never say anything."""
    ehlo_reply: str | None = None
    """A refusal of EHLO instead of the capability list."""
    ehlo_reply_after_tls: str | None = None
    starttls: bool = True
    starttls_reply: str = "220 2.0.0 Ready to start TLS"
    tls: ssl.SSLContext | None = None
    """The server side of the upgrade; None after a 220 sends garbage instead of a TLS handshake."""
    auth: tuple[str, ...] = ("PLAIN", "LOGIN", "XOAUTH2")
    auth_before_tls: bool = False
    passwords: dict[str, str] = field(default_factory=lambda: {USER: PASSWORD})
    tokens: dict[str, str] = field(default_factory=lambda: {USER: TOKEN})
    auth_reply: str | None = None
    """Refuse every sign-in with this reply."""
    mail_replies: dict[str, str] = field(default_factory=dict)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_start_reply: str = "354 Start mail input; end with <CRLF>.<CRLF>"
    data_reply: str = "250 2.0.0 OK queued as FAKE123"
    close_at: str | None = None
    """Drop the connection when this command (its verb) arrives."""
    hang_at: str | None = None
    """Stop answering, but keep the connection, when this command (its verb) arrives."""
    pipelining: bool = True
    """Offer PIPELINING (RFC 2920) in the EHLO reply."""
    coalesce_replies: bool = False
    """Answer commands that arrived together in one packet, as Postfix does; else one write per reply."""


_AUTH_OK = "235 2.7.0 Authentication successful"
_AUTH_FAILED = "535 5.7.3 Authentication unsuccessful"
_XOAUTH2_CHALLENGE = base64.b64encode(
    json.dumps(
        {"status": "401", "schemes": "bearer", "scope": "https://outlook.office.com/SMTP.Send"}
    ).encode()
).decode()


class _Closed(Exception):
    pass


class FakeSmtp:
    """One listening peer; ``commands`` and ``messages`` span every session it served."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.commands: list[str] = []
        self.batches: list[list[str]] = []
        """The commands again, grouped by the read they arrived in: one group per client write."""
        self.messages: list[bytes] = []
        self.sessions = 0
        self.disconnects = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> FakeSmtp:
        self._server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()

    def verbs(self) -> list[str]:
        return [line.split(" ", 1)[0].upper() for line in self.commands]

    def writes(self) -> list[list[str]]:
        """The verbs of the commands, grouped by the client write they came in."""
        return [[line.split(" ", 1)[0].upper() for line in batch] for batch in self.batches if batch]

    # -- one session ---------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        self._writers.add(writer)
        try:
            await _Session(self, reader, writer).run()
        except (_Closed, ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            self.disconnects += 1
            self._writers.discard(writer)
            writer.close()


class _Session:
    def __init__(self, peer: FakeSmtp, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.peer = peer
        self.script = peer.script
        self.reader = reader
        self.writer = writer
        self.tls = False
        self.sender: str | None = None
        self.pending = bytearray()
        """Read but not yet handled: the rest of a client write (pipelined commands)."""
        self.batch: list[str] = []
        self.held: list[str] = []
        """Replies kept back to go out together (``coalesce_replies``)."""

    async def send(self, *lines: str) -> None:
        self.held += lines
        if self.script.coalesce_replies and b"\n" in self.pending:
            return  # more commands of this write to answer first
        self.writer.write("".join(line + "\r\n" for line in self.held).encode())
        self.held = []
        await self.writer.drain()

    async def raw_line(self) -> bytes:
        """One line as the client sent it (b"" at the end of the stream)."""
        while b"\n" not in self.pending:
            chunk = await self.reader.read(65536)
            if not chunk:
                return b""
            self.pending += chunk
            self.batch = []
            self.peer.batches.append(self.batch)
        end = self.pending.index(b"\n") + 1
        raw = bytes(self.pending[:end])
        del self.pending[:end]
        return raw

    async def line(self) -> str:
        raw = await self.raw_line()
        if not raw:
            raise _Closed
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        self.peer.commands.append(text)
        self.batch.append(text)
        return text

    async def run(self) -> None:
        if self.script.greeting is None:
            while await self.reader.read(1024):  # silent until the client gives up
                pass
            return
        await self.send(self.script.greeting)
        while True:
            command = await self.line()
            verb, _, argument = command.partition(" ")
            verb = verb.upper()
            if self.script.close_at is not None and verb == self.script.close_at.upper():
                return
            if self.script.hang_at is not None and verb == self.script.hang_at.upper():
                while await self.reader.read(1024):  # silent until the client gives up
                    pass
                return
            handler = getattr(self, f"do_{verb.lower()}", None)
            if handler is None:
                await self.send("500 5.5.2 Unrecognized command")
            elif await handler(argument) is False:
                return

    async def do_ehlo(self, argument: str) -> None:
        refusal = self.script.ehlo_reply_after_tls if self.tls else self.script.ehlo_reply
        if refusal is not None:
            await self.send(refusal)
            return
        lines = [f"fake.test Hello {argument}", "SIZE 36700160", "ENHANCEDSTATUSCODES"]
        if self.script.pipelining:
            lines.insert(2, "PIPELINING")
        if self.script.starttls and not self.tls:
            lines.append("STARTTLS")
        if self.script.auth and (self.tls or self.script.auth_before_tls):
            lines.append("AUTH " + " ".join(self.script.auth))
        lines.append("8BITMIME")
        await self.send(*(f"250-{line}" for line in lines[:-1]), f"250 {lines[-1]}")

    async def do_starttls(self, argument: str) -> bool:
        if not self.script.starttls or self.tls:
            await self.send("503 5.5.1 STARTTLS not available")
            return True
        await self.send(self.script.starttls_reply)
        if not self.script.starttls_reply.startswith("220"):
            return True
        if self.script.tls is None:
            await self.send("this is not a TLS handshake")
            return False
        await self.writer.start_tls(self.script.tls)
        self.tls = True
        return True

    async def do_auth(self, argument: str) -> None:
        mechanism, _, initial = argument.partition(" ")
        mechanism = mechanism.upper()
        if mechanism not in self.script.auth or not (self.tls or self.script.auth_before_tls):
            await self.send("504 5.7.4 Unrecognized authentication type")
            return
        if mechanism == "PLAIN":
            if not initial:
                await self.send("334 ")
                initial = await self.line()
            parts = _b64(initial).split("\0")
            ok = len(parts) == 3 and self.script.passwords.get(parts[1]) == parts[2]
        elif mechanism == "LOGIN":
            if not initial:
                await self.send("334 VXNlcm5hbWU6")
                initial = await self.line()
            await self.send("334 UGFzc3dvcmQ6")
            password = _b64(await self.line())
            ok = self.script.passwords.get(_b64(initial)) == password
        else:
            fields = dict(part.split("=", 1) for part in _b64(initial).split("\x01") if "=" in part)
            ok = self.script.tokens.get(fields.get("user", "")) == fields.get("auth", "").removeprefix(
                "Bearer "
            )
            if not ok and self.script.auth_reply is None:
                await self.send(f"334 {_XOAUTH2_CHALLENGE}")
                await self.line()
        if self.script.auth_reply is not None:
            await self.send(self.script.auth_reply)
        else:
            await self.send(_AUTH_OK if ok else _AUTH_FAILED)

    async def do_mail(self, argument: str) -> None:
        reply = self.script.mail_replies.get(_path(argument), "250 2.1.0 Sender OK")
        self.sender = _path(argument) if reply.startswith("250") else None
        await self.send(reply)

    async def do_rcpt(self, argument: str) -> None:
        if self.sender is None:
            await self.send("503 5.5.1 Error: need MAIL command")
            return
        await self.send(self.script.rcpt_replies.get(_path(argument), "250 2.1.5 Recipient OK"))

    async def do_data(self, argument: str) -> None:
        await self.send(self.script.data_start_reply)
        if not self.script.data_start_reply.startswith("354"):
            return
        lines: list[bytes] = []
        while True:
            raw = await self.raw_line()
            if not raw:
                raise _Closed
            if raw == b".\r\n":
                break
            lines.append(raw[1:] if raw.startswith(b"..") else raw)
        self.peer.commands.append("<message>")
        if self.script.data_reply.startswith("250"):
            self.peer.messages.append(b"".join(lines))
        self.sender = None
        await self.send(self.script.data_reply)

    async def do_rset(self, argument: str) -> None:
        self.sender = None
        await self.send("250 2.0.0 Resetting")

    async def do_noop(self, argument: str) -> None:
        await self.send("250 2.0.0 OK")

    async def do_quit(self, argument: str) -> bool:
        await self.send("221 2.0.0 Service closing transmission channel")
        return False


def _b64(text: str) -> str:
    try:
        return base64.b64decode(text.strip(), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return ""


def _path(argument: str) -> str:
    """``FROM:<a@b> SIZE=1`` → ``a@b``."""
    start, end = argument.find("<"), argument.find(">")
    return argument[start + 1 : end] if 0 <= start < end else ""


StartPeer = Callable[..., Awaitable[FakeSmtp]]
"""The ``peer`` fixture: starts a ``FakeSmtp`` with the trusted certificate and ``Script(**kwargs)``."""


async def silent_listener() -> tuple[asyncio.Server, int]:
    """A port that accepts TCP and never says a word (a greeting that never comes)."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(1024):
                pass
        writer.close()

    server = await asyncio.start_server(hold, HOST, 0)
    return server, server.sockets[0].getsockname()[1]
