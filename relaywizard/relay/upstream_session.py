"""One SMTP session to the upstream, kept open and reused for many messages.

Opening a session costs a TCP connect, a TLS handshake and an AUTH; Postfix pays that for every message,
and Microsoft 365 allows only three sessions per mailbox, so the forwarder keeps a few sessions open and
sends message after message through each.

aiosmtplib opens the session (connect, EHLO, STARTTLS or implicit TLS, AUTH). Then the session takes the
connection over with ``_Wire``, a small protocol of its own, because aiosmtplib reads one reply per
command written and cannot pipeline. Per message, the round trips are:

- PIPELINING offered (Postfix and Microsoft 365 do): MAIL and all RCPTs in one write, then their
  replies; then ``BDAT <size> LAST`` with the content when CHUNKING is offered (else DATA, 354, the
  content): two round trips (three with DATA) instead of 2 + recipients + 1. A 4xx for any recipient
  still defers the whole message before any content is sent. The content is not written together with
  MAIL and RCPT: Postfix then answers in two segments, and its Nagle delay against our delayed ACK
  cost 40 ms a message (measured: 45 ms against 4.5 ms).
- Not offered: one command at a time, as RFC 5321 describes.

A session that ended its last transaction with a 2xx goes straight to the next MAIL (RFC 5321 §4.1.4:
a completed transaction leaves no state behind); after anything else an ``RSET`` first clears what is
left and proves the server still listens. A server closing an idle session is noticed by ``_Wire``
(end of stream, or a reply nobody asked for, such as "421 timeout"), so the next message reconnects
first; if the close crosses the next message's commands, the message is retried once on a new session.

Failures of the session itself are not a message's fault and raise ``SessionError``: the network
(``UpstreamUnavailable``), a refusal before any message is sent (greeting, EHLO, STARTTLS:
``UpstreamRefused``) or of the login (``AuthFailed``). Replies to MAIL, RCPT and DATA are the message's
result and come back as a ``Transaction``.
"""

from __future__ import annotations

import asyncio
import collections
import re
import ssl
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import aiosmtplib
from aiosmtplib.email import quote_address

from relaywizard.core import m365
from relaywizard.core.errors import ConfigError
from relaywizard.relay.credentials import Credentials
from relaywizard.relay.model import Upstream

QUIT_TIMEOUT = 5.0
CHUNK = 1 << 20
MAX_REPLY = 64 * 1024
_NEWLINE = re.compile(rb"\n")
_LINE_ENDS = re.compile(rb"\r\n|\n|\r(?!\n)")  # bare CR or LF becomes CRLF, as SMTP requires
_LEADING_DOT = re.compile(rb"(?m)^\.")
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
Buffer = bytes | memoryview
DATA_BYTES_PER_SECOND = 100_000  # the slowest uplink a DATA timeout still allows for (about 0.8 Mbit/s)


def data_chunks(content: Sequence[Buffer], size: int = CHUNK) -> Iterator[bytes]:
    """The message as DATA carries it: CRLF line ends, leading dots doubled, ending in CRLF.

    Chunks end just after a line feed, so no CRLF pair and no line start is ever split between two
    chunks. Each part of ``content`` must end at a line end (the rewrite's header block does).
    """
    last = b""
    for part in content:
        view = memoryview(part)
        start = 0
        while start < len(view):
            stop = min(start + size, len(view))
            if stop < len(view):
                newline = _NEWLINE.search(view, stop)
                stop = len(view) if newline is None else newline.end()
            chunk = _LEADING_DOT.sub(b"..", _LINE_ENDS.sub(b"\r\n", view[start:stop]))
            start = stop
            if chunk:
                last = chunk
                yield chunk
    if not last.endswith(b"\r\n"):
        yield b"\r\n"


def content_size(content: Sequence[Buffer]) -> int:
    """The size of ``content``; a spool's ``ContentChunks`` knows it without reading the file."""
    known = getattr(content, "nbytes", None)
    if isinstance(known, int) and not isinstance(content, bytes | memoryview):
        return known
    return sum(len(part) for part in content)


def bdat_size(content: Sequence[Buffer]) -> int | None:
    """What ``BDAT <size> LAST`` announces for ``content``, or None if it has a bare CR or LF.

    BDAT sends bytes unchanged and needs their count up front, so a message that DATA would have to
    repair (line ends) goes by DATA instead. The relay's own spool never holds such a message. A
    message not ending in CRLF gets one (``_needs_crlf``), as DATA would add it.
    """
    if not _line_ends_clean(content):
        return None
    return content_size(content) + (2 if _needs_crlf(content) else 0)


def _needs_crlf(content: Sequence[Buffer]) -> bool:
    for part in reversed(content):
        if len(part):
            return bytes(memoryview(part)[-2:]) != b"\r\n"
    return True


def _then(content: Sequence[Buffer], ending: list[bytes]) -> Iterator[Buffer]:
    yield from content
    yield from ending


def _pieces(content: Sequence[Buffer]) -> Iterator[bytes]:
    """The content as bytes objects of at most ``CHUNK`` (bytes methods are far faster than regexes)."""
    for part in content:
        if isinstance(part, bytes):
            yield part
        else:
            for start in range(0, len(part), CHUNK):
                yield bytes(part[start : start + CHUNK])


def _line_ends_clean(content: Sequence[Buffer]) -> bool:
    """True when every CR and LF in ``content`` is part of a CRLF pair (also across pieces)."""
    cr = lf = pairs = 0
    previous_cr = False
    for piece in _pieces(content):
        if not piece:
            continue
        cr, lf, pairs = cr + piece.count(b"\r"), lf + piece.count(b"\n"), pairs + piece.count(b"\r\n")
        pairs += previous_cr and piece[0] == 0x0A
        previous_cr = piece[-1] == 0x0D
    return cr == lf == pairs


def _eight_bit(content: Sequence[Buffer]) -> bool:
    return not all(piece.isascii() for piece in _pieces(content))


class ForwarderConfigError(ConfigError):
    """The forwarder's settings cannot be used (for example an unreadable CA file)."""

    default_title = "Cannot forward mail"


class SessionError(Exception):
    """The session failed before or outside a message's transaction; ``reply`` is the server's, if any."""

    def __init__(self, text: str, reply: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.reply = reply


class UpstreamUnavailable(SessionError):
    """The upstream could not be reached, or the connection broke or timed out."""


class UpstreamRefused(SessionError):
    """The upstream answered, but refused the session (greeting, EHLO or STARTTLS)."""


class AuthFailed(SessionError):
    """The upstream refused the login, or offers no mechanism the credentials can use."""


def reply_text(code: int, message: str) -> str:
    """An aiosmtplib reply as one line, as people paste it: "451 4.7.500 Server busy ..."."""
    return f"{code} {' '.join(message.split())}".strip()


def tls_context(upstream: Upstream) -> ssl.SSLContext:
    """Verify against the system's CAs plus ``upstream.ca_file``; ``none`` means opportunistic TLS.

    With ``tls = "none"`` (direct send, connector) STARTTLS is still used when the server offers it, but
    without verifying the certificate, like Postfix's ``smtp_tls_security_level = may``: it protects
    against eavesdropping, and a certificate problem never stops mail the admin chose to send in clear.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = m365.SMTP_AUTH_MIN_TLS
    if upstream.tls == "none":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if upstream.ca_file:
        try:
            context.load_verify_locations(cafile=upstream.ca_file)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ForwarderConfigError(
                f"The CA file {upstream.ca_file} cannot be used: {reason}.",
                hint="Give a readable PEM file of CA certificates with --ca-file.",
            ) from None
    return context


@dataclass
class Transaction:
    """What the upstream said to one message: the deciding reply, and per recipient what it refused."""

    stage: Literal["mail", "rcpt", "data"]
    code: int
    reply: str
    accepted: list[str] = field(default_factory=list)
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300


class _Wire(asyncio.Protocol):
    """The session's connection after login: commands written in groups, replies parsed as they come.

    Every complete reply is kept in order, however many arrive in one packet. A reply when none is
    expected (a server closing an idle session says "421 ...") marks the connection as dead, so it is
    never paired with a later command.
    """

    def __init__(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport: asyncio.Transport = transport
        self.expected = 0
        self.dead: str | None = None
        self._buffer = bytearray()
        self._lines: list[bytes] = []
        self._replies: collections.deque[tuple[int, str]] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._paused = False
        transport.set_protocol(self)

    @property
    def alive(self) -> bool:
        return self.dead is None and not self.transport.is_closing()

    # -- asyncio.Protocol -------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        start = 0
        while (end := self._buffer.find(b"\n", start)) != -1:
            line = bytes(self._buffer[start : end + 1])
            start = end + 1
            if len(line) < 4 or not line[:3].isdigit() or line[3:4] not in (b" ", b"-", b"\r", b"\n"):
                self._fail(f"the upstream sent a malformed reply line {line[:60]!r}")
                return
            self._lines.append(line)
            if line[3:4] == b"-":
                continue
            code = int(line[:3])
            text = "\n".join(
                ln[4:].strip(b" \t\r\n").decode("utf-8", "surrogateescape") for ln in self._lines
            )
            self._lines = []
            if self.expected <= len(self._replies):
                self._fail(f"the upstream closed the session: {reply_text(code, text)}")
                return
            self._replies.append((code, text))
        del self._buffer[:start]
        if len(self._buffer) > MAX_REPLY:
            self._fail("the upstream sent a reply that is far too long")
            return
        self._wake()

    def eof_received(self) -> bool:
        self._fail("the upstream closed the connection")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.dead is None:
            self.dead = "the connection was lost" + (f" ({exc})" if exc else "")
        self._wake()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # -- for the session --------------------------------------------------------------------------------

    def _fail(self, why: str) -> None:
        if self.dead is None:
            self.dead = why
        self.transport.abort()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _check(self) -> None:
        if self.dead is not None:
            raise aiosmtplib.SMTPServerDisconnected(self.dead[:1].upper() + self.dead[1:])
        if self.transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")

    def send(self, data: Buffer, replies: int = 0) -> None:
        """Write ``data``, which asks for ``replies`` replies (counted before writing, so none is missed)."""
        self._check()
        self.expected += replies
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the transport's buffer is full (flow control for a large message)."""
        self._check()
        if self._paused:
            self._drained = asyncio.get_running_loop().create_future()
            try:
                await self._drained
            finally:
                self._drained = None
            self._check()

    async def reply(self, seconds: float | None) -> tuple[int, str]:
        """The next reply, in the order the commands were written."""
        async with asyncio.timeout(seconds):
            while not self._replies:
                self._check()
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
        self.expected -= 1
        return self._replies.popleft()


class _Stale(Exception):
    """A reused connection turned out to be closed before the server answered anything."""


@dataclass(frozen=True)
class _Extensions:
    pipelining: bool
    chunking: bool
    size: bool
    eight_bit: bool
    smtputf8: bool

    @classmethod
    def of(cls, smtp: aiosmtplib.SMTP) -> _Extensions:
        has = smtp.supports_extension
        return cls(has("pipelining"), has("chunking"), has("size"), has("8bitmime"), has("smtputf8"))


class UpstreamSession:
    """An SMTP client session that connects (TLS, AUTH) on first use and stays open between messages."""

    def __init__(
        self, upstream: Upstream, credentials: Credentials | None, context: ssl.SSLContext, helo: str
    ) -> None:
        self.upstream = upstream
        self.credentials = credentials
        self.context = context
        self.helo = helo
        self._wire: _Wire | None = None
        self._extensions = _Extensions(False, False, False, False, False)
        self._clean = False  # the last transaction ended with a 2xx: no RSET needed
        self._reused = False  # at least one transaction went through this connection
        self.connects = 0

    @property
    def connected(self) -> bool:
        return self._wire is not None and self._wire.alive

    @property
    def where(self) -> str:
        return f"{self.upstream.host}:{self.upstream.port}"

    async def ready(self) -> bool:
        """Make the session usable for a message; True when a new connection (and AUTH) was made."""
        wire = self._wire
        if wire is not None and wire.alive:
            if self._clean:
                return False
            try:
                wire.send(b"RSET\r\n", 1)
                code, _ = await wire.reply(self.upstream.timeout)
                if code == 250:
                    self._clean = True
                    return False
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                pass
        self.abort()
        await self._open()
        return True

    async def _open(self) -> None:
        tls = self.upstream.tls
        smtp = aiosmtplib.SMTP(
            hostname=self.upstream.host,
            port=self.upstream.port,
            local_hostname=self.helo,
            timeout=self.upstream.timeout,
            use_tls=tls == "implicit",
            start_tls=True if tls == "starttls" else None if tls == "none" else False,
            tls_context=self.context,
        )
        self.connects += 1
        try:
            await smtp.connect()
            if smtp.is_ehlo_or_helo_needed:
                try:
                    await smtp.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await smtp.helo()  # a server without ESMTP: plain SMTP, one command at a time
            if self.credentials is not None:
                await self._authenticate(smtp, self.credentials)
            if smtp.transport is None:
                raise aiosmtplib.SMTPServerDisconnected("Connection lost")
            extensions = _Extensions.of(smtp)
            wire = _Wire(smtp.transport)
        except BaseException as exc:
            smtp.close()
            if isinstance(exc, Exception):
                raise self._session_error(exc) from None
            raise
        self._wire, self._extensions = wire, extensions
        self._clean, self._reused = True, False

    async def _authenticate(self, smtp: aiosmtplib.SMTP, credentials: Credentials) -> None:
        offered = [name.upper() for name in smtp.server_auth_methods]
        usable = [name for name in credentials.mechanisms if name in offered]
        if not usable:
            shown = ", ".join(offered) or "no AUTH at all"
            wanted = " or ".join(credentials.mechanisms)
            raise AuthFailed(f"The upstream {self.where} offers {shown}; the relay needs AUTH {wanted}.")
        try:
            secret = await credentials.secret()
        except Exception as exc:  # a locked keyring, a token that cannot be refreshed...
            reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            raise AuthFailed(f"The relay has no usable secret for {credentials.user}: {reason}") from None
        method = {"PLAIN": smtp.auth_plain, "LOGIN": smtp.auth_login, "XOAUTH2": smtp.auth_xoauth2}
        try:
            await method[usable[0]](credentials.user, secret)
        except aiosmtplib.SMTPAuthenticationError:
            credentials.rejected()
            raise

    def _session_error(self, exc: Exception) -> SessionError:
        """Translate a library or network error into one readable sentence (never containing a secret)."""
        if isinstance(exc, SessionError):
            return exc
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            reply = reply_text(exc.code, exc.message)
            return AuthFailed(f"The upstream {self.where} refused the login: {reply}", reply)
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            reply = reply_text(exc.code, exc.message)
            return UpstreamRefused(f"The upstream {self.where} refused the session: {reply}", reply)
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ssl.SSLCertVerificationError):
                return UpstreamUnavailable(
                    f"The certificate of {self.where} could not be verified ({cause.verify_message})."
                )
            cause = cause.__cause__
        if isinstance(exc, TimeoutError):
            return UpstreamUnavailable(f"The upstream {self.where} did not answer in time.")
        reason = getattr(exc, "strerror", None) or getattr(exc, "message", None) or str(exc)
        reason = str(reason or type(exc).__name__).rstrip(".")
        return UpstreamUnavailable(f"Cannot talk to the upstream {self.where}: {reason}.")

    async def send(self, sender: str, recipients: list[str], content: Sequence[Buffer]) -> Transaction:
        """One transaction: MAIL, RCPT for each recipient, the content unless something decided otherwise.

        Any recipient refused with 4xx defers the whole message (no content sent): retrying only some
        recipients later would need per-recipient state, and a 4xx at submission is nearly always the
        server's (throttling, thread limit) rather than the recipient's. Network errors raise
        ``SessionError``.
        """
        if self._wire is None or not self._wire.alive:
            raise UpstreamUnavailable(f"The session to {self.where} is not open.")
        try:
            try:
                result = await self._transaction(sender, recipients, content)
            except _Stale:
                self.abort()
                await self._open()
                result = await self._transaction(sender, recipients, content)
        except SessionError:
            self.abort()
            raise
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self.abort()
            raise self._session_error(exc) from None
        except ValueError as exc:  # an address that cannot go on the wire (control characters)
            reason = str(exc).rstrip(".")
            return Transaction("mail", 553, f"553 5.1.3 The relay cannot send this address: {reason}")
        self._reused = True
        self._clean = result.ok
        return result

    async def _transaction(
        self, sender: str, recipients: list[str], content: Sequence[Buffer]
    ) -> Transaction:
        wire, ext = self._wire, self._extensions
        assert wire is not None
        size = content_size(content)
        options: list[str] = []
        if ext.size:
            options.append(f"SIZE={size}")
        if ext.eight_bit and _eight_bit(content):
            options.append("BODY=8BITMIME")
        encoding = "ascii"
        if not all(address.isascii() for address in [sender, *recipients]):
            if not ext.smtputf8:
                return Transaction("mail", 553, "553 5.6.7 The upstream does not accept SMTPUTF8 addresses")
            options.append("SMTPUTF8")
            encoding = "utf-8"
        mail = _command(b"MAIL FROM:" + quote_address(sender).encode(encoding), *options)
        rcpts = [_command(b"RCPT TO:" + quote_address(r).encode(encoding)) for r in recipients]
        bdat = bdat_size(content) if ext.chunking else None
        seconds = self.upstream.timeout + size / DATA_BYTES_PER_SECOND
        taken = 0

        async def reply(seconds: float | None) -> tuple[int, str]:
            nonlocal taken
            answer = await wire.reply(seconds)
            taken += 1
            return answer

        try:
            if ext.pipelining:
                wire.send(mail + b"".join(rcpts), 1 + len(rcpts))
                replies = [await reply(self.upstream.timeout) for _ in range(1 + len(rcpts))]
            else:
                wire.send(mail, 1)
                replies = [await reply(self.upstream.timeout)]
                for rcpt in rcpts if replies[0][0] == 250 else []:
                    wire.send(rcpt, 1)
                    replies.append(await reply(self.upstream.timeout))
            result = _envelope_result(replies, recipients)
            if result.stage == "rcpt" and result.code == 250:
                code, text = await self._content(wire, bdat, content, reply, seconds)
                result.stage, result.code, result.reply = "data", code, reply_text(code, text)
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
            if self._reused and taken == 0:
                raise _Stale from exc  # closed by the server while idle: no reply, so nothing was sent
            raise
        return result

    async def _content(
        self,
        wire: _Wire,
        bdat: int | None,
        content: Sequence[Buffer],
        reply: _Reader,
        seconds: float,
    ) -> tuple[int, str]:
        """The message itself, by BDAT when possible, else by DATA; streamed a megabyte at a time.

        Streaming with flow control keeps the extra memory to about one chunk, where ``smtp.data()``
        would hold three more copies of the whole message (line ends, dot-stuffing, the final dot).
        """
        async with asyncio.timeout(seconds):
            if bdat is not None:
                command = b"BDAT %d LAST\r\n" % bdat
                ending = [b"\r\n"] if _needs_crlf(content) else []
                if bdat <= CHUNK:  # one write, so one TCP segment
                    wire.send(b"".join([command, *content, *ending]), 1)
                    return await reply(None)
                wire.send(command, 1)
                for part in _then(content, ending):
                    view = memoryview(part)
                    for start in range(0, len(view), CHUNK):
                        wire.send(view[start : start + CHUNK])
                        await wire.drain()
                return await reply(None)
            wire.send(b"DATA\r\n", 1)
            code, text = await reply(None)
            if code != 354:
                return code, text
            for chunk in data_chunks(content):
                wire.send(chunk)
                await wire.drain()
            wire.send(b".\r\n", 1)
            return await reply(None)

    async def close(self) -> None:
        """End the session politely with QUIT (bounded). Never called while a command is under way."""
        wire, self._wire = self._wire, None
        if wire is None:
            return
        try:
            if wire.alive:
                wire.send(b"QUIT\r\n", 1)
                await wire.reply(QUIT_TIMEOUT)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass
        finally:
            wire.transport.close()

    def abort(self) -> None:
        """Drop the connection at once (after an error, or when cancelled mid-transaction)."""
        wire, self._wire = self._wire, None
        if wire is not None:
            wire.transport.abort()


_Reader = Callable[[float | None], Awaitable[tuple[int, str]]]


def _command(verb_and_path: bytes, *options: str) -> bytes:
    """One command line; a control character in an address or option raises ValueError."""
    line = b" ".join([verb_and_path, *(option.encode("ascii") for option in options)])
    if _CONTROL.search(line):
        raise ValueError("the address contains a control character")
    return line + b"\r\n"


def _envelope_result(replies: list[tuple[int, str]], recipients: list[str]) -> Transaction:
    """What the MAIL and RCPT replies (MAIL's first, then one per recipient) say about the transaction.

    Stage "rcpt" with code 250: go on and send the content. Otherwise the result is decided: MAIL
    refused, no recipient accepted, or a 4xx for any recipient (which defers the whole message).
    """
    code, text = replies[0]
    if code != 250:
        return Transaction("mail", code, reply_text(code, text))
    result = Transaction("rcpt", 250, "")
    for recipient, (code, text) in zip(recipients, replies[1:], strict=True):
        if 200 <= code < 300:
            result.accepted.append(recipient)
        else:
            result.refused[recipient] = (code, reply_text(code, text))
    temporary = [reply for reply in result.refused.values() if reply[0] < 500]
    if temporary or not result.accepted:
        result.code, result.reply = (temporary or list(result.refused.values()))[0]
    return result
