"""Pipelined SMTP commands (RFC 2920) on an aiosmtplib connection: one write, every reply read.

Over a WAN every round trip costs tens of milliseconds, so when the server offers PIPELINING the staged
checks send RCPT TO in one write with MAIL FROM, and without ``send`` the session's end (RSET, QUIT) too:
nothing that follows waits for those replies. Each stage then reads its own command's reply.

aiosmtplib reads one reply per command it sends itself, and drops data that arrives while none of its
commands waits: the second reply of a pair, arriving in a packet of its own a moment after the first,
would be lost and the session would wait for it until the timeout. So for the length of one exchange the
connection's data goes to a ``Pipeline``, which splits it into replies. The connection is handed back to
aiosmtplib the moment the last reply is in, whether or not a stage reads it, so the stream stays in step
with the commands even when the stage that would read a reply does not run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

import aiosmtplib

if TYPE_CHECKING:
    from aiosmtplib.protocol import SMTPProtocol

# aiosmtplib's limits: one reply line, one whole (multiline) reply.
_MAX_LINE = 8192
_MAX_REPLY = 4 * _MAX_LINE


def _command_line(command: bytes) -> bytes:
    """``command`` with its line ending; ValueError for control characters, as aiosmtplib does."""
    if any(byte < 32 or byte == 127 for byte in command):
        raise ValueError("Command arg contains a prohibited control character")
    return command + b"\r\n"


class Pipeline(asyncio.Protocol):
    """The replies to commands written at once, each read by its command's verb (``reply_to``).

    While replies are outstanding it is the connection's protocol (and holds aiosmtplib's command lock,
    so no other command can interleave); connection loss and flow control still reach aiosmtplib.
    """

    def __init__(
        self,
        smtp: aiosmtplib.SMTP,
        protocol: SMTPProtocol,
        lock: asyncio.Lock,
        verbs: list[bytes],
        timeout: float,
    ) -> None:
        self._smtp = smtp
        self._protocol = protocol
        self._lock = lock
        self._verbs = verbs
        self._count = len(verbs)
        self._timeout = timeout
        self._buffer = bytearray()
        self._replies: list[aiosmtplib.SMTPResponse] = []
        self._error: aiosmtplib.SMTPException | None = None
        self._finished = False
        self._changed = asyncio.Event()
        self._transport: asyncio.BaseTransport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def has(self, verb: bytes) -> bool:
        """Whether a command with this verb (``b"RCPT"``) is in the pipeline."""
        return verb.upper() in self._verbs

    async def reply_to(self, verb: bytes) -> aiosmtplib.SMTPResponse:
        """The reply to the (first) command with this verb, once it has come; the exception aiosmtplib
        would raise when it cannot come. Replies can be read in any order, or not at all."""
        position = self._verbs.index(verb.upper())
        while position >= len(self._replies):
            if self._error is not None:
                raise self._error
            self._changed.clear()
            await self._changed.wait()
        return self._replies[position]

    # -- the exchange ----------------------------------------------------------------------------------

    def _start(self, data: bytes) -> None:
        transport = self._protocol.transport
        if transport is None or transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        self._transport = transport
        transport.set_protocol(self)
        self._protocol.write(data)
        self._arm()

    def _arm(self) -> None:
        """Each reply gets ``timeout`` seconds from the one before, like a command of aiosmtplib's."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self._timeout, self._timed_out)

    def _timed_out(self) -> None:
        self._fail(aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response"))
        self._smtp.close()  # a reply may still come: the stream can no longer be trusted

    def _fail(self, error: aiosmtplib.SMTPException) -> None:
        if not self._finished:
            self._error = error
            self._finish()

    def _finish(self) -> None:
        """Hand the connection back to aiosmtplib and let the next command go."""
        if self._finished:
            return
        self._finished = True
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None and self._transport.get_protocol() is self:
            self._transport.set_protocol(self._protocol)
        if self._lock.locked():
            self._lock.release()
        self._changed.set()

    def _parse(self) -> aiosmtplib.SMTPResponse | None:
        """The first complete reply in the buffer, removed from it; None while it is incomplete."""
        code, lines, offset = -1, [], 0
        while (end := self._buffer.find(b"\n", offset)) != -1:
            line = bytes(self._buffer[offset : end + 1])
            if len(line) > _MAX_LINE:
                raise aiosmtplib.SMTPResponseException(
                    aiosmtplib.SMTPStatus.invalid_response.value, "Response too long"
                )
            try:
                code = int(line[:3])
            except ValueError:
                raise aiosmtplib.SMTPResponseException(
                    aiosmtplib.SMTPStatus.invalid_response.value,
                    f"Malformed SMTP response line: {line.decode('utf-8', errors='ignore')}",
                ) from None
            offset = end + 1
            lines.append(line[4:].strip(b" \t\r\n"))
            if line[3:4] != b"-":
                del self._buffer[:offset]
                return aiosmtplib.SMTPResponse(code, b"\n".join(lines).decode("utf-8", "surrogateescape"))
        if len(self._buffer) > _MAX_REPLY:
            raise aiosmtplib.SMTPResponseException(
                aiosmtplib.SMTPStatus.invalid_response.value, "Response too long"
            )
        return None

    # -- asyncio.Protocol: the connection's events while replies are outstanding -----------------------

    def data_received(self, data: bytes) -> None:
        if self._finished:
            return
        self._buffer.extend(data)
        try:
            while len(self._replies) < self._count and (reply := self._parse()) is not None:
                self._replies.append(reply)
                self._changed.set()
                if reply.code == aiosmtplib.SMTPStatus.domain_unavailable:
                    # 421: the server is closing; aiosmtplib closes on it too.
                    self._fail(aiosmtplib.SMTPServerDisconnected("The server is closing the connection"))
                    self._smtp.close()
                    return
        except aiosmtplib.SMTPResponseException as exc:
            self._fail(exc)
            self._smtp.close()
            return
        if len(self._replies) == self._count:
            self._finish()
        else:
            self._arm()

    def eof_received(self) -> bool | None:
        self._fail(aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"))
        return self._protocol.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(aiosmtplib.SMTPServerDisconnected("Connection lost"))
        self._protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        self._protocol.pause_writing()

    def resume_writing(self) -> None:
        self._protocol.resume_writing()


async def send_pipelined(smtp: aiosmtplib.SMTP, commands: Sequence[bytes], step: float) -> Pipeline:
    """Write ``commands`` (without line endings) in one go; read their replies from the ``Pipeline``,
    each within ``step`` seconds of the one before.

    Only for a server that offers PIPELINING, and only with commands RFC 2920 lets share a group.
    """
    data = b"".join(_command_line(command) for command in commands)
    protocol = smtp.protocol
    lock = protocol._command_lock if protocol is not None else None
    if protocol is None or lock is None or not smtp.is_connected:
        raise aiosmtplib.SMTPServerDisconnected("the connection is closed")
    # aiosmtplib serialises its commands with this lock (SMTPProtocol.execute_command); the pipeline holds
    # it until its last reply is in, so nothing else is written in between.
    await lock.acquire()
    verbs = [command.split(b" ", 1)[0].upper() for command in commands]
    pipeline = Pipeline(smtp, protocol, lock, verbs, step)
    try:
        pipeline._start(data)
    except BaseException:
        pipeline._finish()
        raise
    return pipeline
