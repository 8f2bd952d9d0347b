"""One SMTP session to the upstream, kept open and reused for many messages.

Opening a session costs a TCP connect, a TLS handshake and an AUTH; Postfix pays that for every message,
and Microsoft 365 allows only three sessions per mailbox, so the forwarder keeps a few sessions open and
sends message after message through each. Before each reuse an ``RSET`` both clears any half-finished
transaction and proves the server still listens (it may have closed an idle session); if it does not,
the session reconnects, and the message does not pay for the server's housekeeping.

Failures of the session itself are not a message's fault and raise ``SessionError``: the network
(``UpstreamUnavailable``), a refusal before any message is sent (greeting, EHLO, STARTTLS:
``UpstreamRefused``) or of the login (``AuthFailed``). Replies to MAIL, RCPT and DATA are the message's
result and come back as a ``Transaction``.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import aiosmtplib

from relaywizard.core import m365
from relaywizard.core.errors import ConfigError
from relaywizard.relay.credentials import Credentials
from relaywizard.relay.model import Upstream

QUIT_TIMEOUT = 5.0
CHUNK = 1 << 20
_NEWLINE = re.compile(rb"\n")
_LINE_ENDS = re.compile(rb"\r\n|\n|\r(?!\n)")  # bare CR or LF becomes CRLF, as SMTP requires
_LEADING_DOT = re.compile(rb"(?m)^\.")
_NON_ASCII = re.compile(rb"[\x80-\xff]")
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


class UpstreamSession:
    """An SMTP client session that connects (TLS, AUTH) on first use and stays open between messages."""

    def __init__(
        self, upstream: Upstream, credentials: Credentials | None, context: ssl.SSLContext, helo: str
    ) -> None:
        self.upstream = upstream
        self.credentials = credentials
        self.context = context
        self.helo = helo
        self._smtp: aiosmtplib.SMTP | None = None
        self.connects = 0

    @property
    def connected(self) -> bool:
        return self._smtp is not None and self._smtp.is_connected

    @property
    def where(self) -> str:
        return f"{self.upstream.host}:{self.upstream.port}"

    async def ready(self) -> bool:
        """Make the session usable for a message; True when a new connection (and AUTH) was made."""
        if self._smtp is not None and self._smtp.is_connected:
            try:
                response = await self._smtp.rset()
                if response.code == 250:
                    return False
            except (aiosmtplib.SMTPException, OSError):
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
            if self.credentials is not None:
                await self._authenticate(smtp, self.credentials)
        except BaseException as exc:
            smtp.close()
            if isinstance(exc, Exception):
                raise self._session_error(exc) from None
            raise
        self._smtp = smtp

    async def _authenticate(self, smtp: aiosmtplib.SMTP, credentials: Credentials) -> None:
        if smtp.is_ehlo_or_helo_needed:
            await smtp.ehlo()
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
        """One transaction: MAIL, RCPT for each recipient, DATA unless something decided otherwise.

        Any recipient refused with 4xx defers the whole message (no DATA): retrying only some recipients
        later would need per-recipient state, and a 4xx at submission is nearly always the server's
        (throttling, thread limit) rather than the recipient's. Network errors raise ``SessionError``.
        """
        smtp = self._smtp
        if smtp is None:
            raise UpstreamUnavailable(f"The session to {self.where} is not open.")
        try:
            result = await self._transaction(smtp, sender, recipients, content)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self.abort()
            raise self._session_error(exc) from None
        except ValueError as exc:  # an address aiosmtplib will not put on the wire (control characters)
            reason = str(exc).rstrip(".")
            return Transaction("mail", 553, f"553 5.1.3 The relay cannot send this address: {reason}")
        return result

    async def _transaction(
        self, smtp: aiosmtplib.SMTP, sender: str, recipients: list[str], content: Sequence[Buffer]
    ) -> Transaction:
        size = sum(len(part) for part in content)
        options: list[str] = []
        if smtp.supports_extension("size"):
            options.append(f"SIZE={size}")
        eight_bit = any(_NON_ASCII.search(part) for part in content)
        if eight_bit and smtp.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        encoding = "ascii"
        if not all(address.isascii() for address in [sender, *recipients]):
            if not smtp.supports_extension("smtputf8"):
                return Transaction("mail", 553, "553 5.6.7 The upstream does not accept SMTPUTF8 addresses")
            options.append("SMTPUTF8")
            encoding = "utf-8"
        try:
            await smtp.mail(sender, options=options, encoding=encoding)
        except aiosmtplib.SMTPSenderRefused as exc:
            return Transaction("mail", exc.code, reply_text(exc.code, exc.message))
        result = Transaction("rcpt", 250, "")
        for recipient in recipients:
            try:
                await smtp.rcpt(recipient, encoding=encoding)
                result.accepted.append(recipient)
            except aiosmtplib.SMTPRecipientRefused as exc:
                result.refused[recipient] = (exc.code, reply_text(exc.code, exc.message))
        temporary = [reply for reply in result.refused.values() if reply[0] < 500]
        if temporary or not result.accepted:
            result.code, result.reply = (temporary or list(result.refused.values()))[0]
            return result
        response = await self._data(smtp, content, self.upstream.timeout + size / DATA_BYTES_PER_SECOND)
        result.stage, result.code, result.reply = "data", response.code, reply_text(*response)
        return result

    async def _data(
        self, smtp: aiosmtplib.SMTP, content: Sequence[Buffer], seconds: float
    ) -> aiosmtplib.SMTPResponse:
        """DATA, streamed a megabyte at a time with flow control.

        ``smtp.data()`` would hold three more copies of the whole message (line endings, dot-stuffing,
        the final dot) on top of the spool's: four times 35 MB for a large scan. Here the extra memory
        is about one chunk. The final "." goes through ``execute_command`` so the reply is read as for
        any command; ``_drain_helper`` is the flow control aiosmtplib's protocol inherits from asyncio.
        """
        response = await smtp.execute_command(b"DATA")
        if response.code != 354:
            return response
        protocol = smtp.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        async with asyncio.timeout(seconds):
            for chunk in data_chunks(content):
                protocol.write(chunk)
                await protocol._drain_helper()
            return await smtp.execute_command(b".", timeout=None)

    async def close(self) -> None:
        """End the session politely with QUIT (bounded). Never called while a command is under way."""
        smtp, self._smtp = self._smtp, None
        if smtp is None or not smtp.is_connected:
            return
        try:
            await smtp.quit(timeout=QUIT_TIMEOUT)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass
        finally:
            smtp.close()

    def abort(self) -> None:
        """Drop the connection at once (after an error, or when cancelled mid-transaction)."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()
