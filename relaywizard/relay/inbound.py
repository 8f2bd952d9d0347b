"""The relay's SMTP server for office devices: aiosmtpd on the caller's event loop, guarded by the policy.

Created with ``loop.create_server`` (never aiosmtpd's ``Controller``, which runs its own thread), so the
same code runs under plain asyncio in ``relaywizard relay`` and under qasync in the tray.

What this module adds to aiosmtpd 1.4.6, and why:

- Relay control: only devices in the allow-list, or authenticated device accounts, may give MAIL FROM
  and RCPT TO; open-relay address tricks are refused at RCPT TO (see ``policy.recipient_ok``). aiosmtpd
  silently drops source routes, so the raw RCPT text is checked first.
- DATA is read by ``read_data`` instead of aiosmtpd's line-by-line reader: in a few large pieces,
  kept once in memory and written to the spool as they are (a 35 MB scan is not copied three times).
- SMTP smuggling: DATA ends only at CRLF.CRLF (a bare LF or CR never ends it). On top of that, any
  bare LF or CR in the data refuses the whole message (550 5.6.0), so nothing ambiguous is ever
  queued and later handed to a server that might read it differently; for devices whose software
  ends lines with LF alone, ``bare_lf = "normalize"`` turns each bare LF into CRLF instead.
- Durability: 250 only after ``spool.accept`` returned (the message is on disk); a spool error is a 451.
- Readable replies: aiosmtpd's terse size and line-length replies are rewritten with enhanced codes.
- Limits: sessions at once (421 4.7.0), recipients (452 4.5.3), size (aiosmtpd's SIZE at MAIL FROM,
  ``read_data`` at DATA), line length (the exact RFC 5322 limit of 998 characters, on the content).
- AUTH PLAIN/LOGIN for device accounts, over TLS only unless the peer is in ``auth_networks``; AUTH
  results are logged with the login, never the password, and aiosmtpd's own log is filtered so that
  a stray base64 password line never reaches it either.

Each stored message gets one ``Received:`` header on top (naming the device's IP and HELO, the relay,
the protocol and the spool id), like any MTA adds; the rest of the content is kept byte for byte as
the device sent it (after dot-unstuffing, which is SMTP's transport encoding, not content).
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import errno
import logging
import re
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, AnyStr, Protocol

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, Session
from aiosmtpd.smtp import Envelope as SMTPEnvelope

from relaywizard.core.errors import ConfigError
from relaywizard.core.validate import format_host_port
from relaywizard.relay.model import Envelope, new_message_id
from relaywizard.relay.policy import (
    InboundPolicy,
    Reply,
    bare_line_ending_refusal,
    parse_ip,
    source_route_refusal,
)

__all__ = ["AcceptingSpool", "InboundHandler", "RelaySMTP", "received_header", "start_inbound"]

log = logging.getLogger("relaywizard.relay.inbound")

STORE_FAILED = Reply(451, "4.3.0", "The relay could not store the message; please try again")
INTERNAL_ERROR = Reply(451, "4.3.0", "The relay met an internal error; please try again")
AUTH_UNAVAILABLE = Reply(454, "4.7.0", "Temporary authentication failure; please try again")
Buffer = bytes | memoryview
READER_LIMIT = 64 * 1024
_BARE = bare_line_ending_refusal(b"\n")
assert _BARE is not None
BARE_LINE_END: Reply = _BARE
_SAFE_HELO = re.compile(r"[^A-Za-z0-9.:_\[\]-]")
_UNRECOGNISED = re.compile(r'command ".*" not recognized')
_BARE_LF = re.compile(rb"(?<!\r)\n")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_PLAIN_PATH = re.compile(rf"[ \t]*<({_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*)>[ \t]*")
"""``<local@domain>`` with a dot-atom local part and a host name: what nearly every device sends."""


class AcceptingSpool(Protocol):
    """The part of ``relaywizard.relay.spool.Spool`` the inbound server uses."""

    async def accept(self, envelope: Envelope, content: bytes | Sequence[Buffer]) -> Envelope: ...


def peer_ip(session: Session) -> str:
    """The client's IP address as text (IPv4-mapped IPv6 shown as IPv4)."""
    peer: Any = session.peer
    raw = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
    address = parse_ip(raw)
    return str(address) if address is not None else raw


def received_header(session: Session, *, ip: str, hostname: str, message_id: str, when: float) -> bytes:
    """The ``Received:`` trace header (RFC 5321 §4.4, RFC 3848 protocol names) put on top of each message."""
    protocol = "SMTP"
    if session.extended_smtp:
        protocol = "ESMTP" + ("S" if session.ssl is not None else "") + ("A" if session.authenticated else "")
    helo = _SAFE_HELO.sub("?", session.host_name or "")[:100] or "unknown"
    literal = f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"
    return (
        f"Received: from {helo} ({literal})\r\n"
        f"\tby {hostname} (relaywizard) with {protocol} id {message_id};\r\n"
        f"\t{email.utils.formatdate(when, localtime=True)}\r\n"
    ).encode("ascii", "replace")


_SMTP_VERB = re.compile(r"\s*(HELO|EHLO|MAIL|RCPT|DATA|RSET|NOOP|QUIT|VRFY|EXPN|HELP|STARTTLS|AUTH)\b", re.I)
_AIOSMTPD_LINE_LOGS = frozenset({"%r >> %r", "_handle_client readline: %r", "%r unrecognised: %s"})


def _hide_echo(reply: str) -> str:
    return _UNRECOGNISED.sub('command "..." not recognized', reply)


class _RedactNonCommands(logging.Filter):
    """Keeps secrets out of aiosmtpd's own log ("mail.log"), which records every command line.

    aiosmtpd masks the argument of ``AUTH <mechanism> <secret>``, but a device that keeps sending its
    AUTH LOGIN answers after a refusal sends its base64 login and password as lines of their own, which
    aiosmtpd logs as commands (and echoes in its 500 reply). Any logged line that does not start with an
    SMTP verb is masked, and so is the echo.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.args, tuple) or not record.args:
            return True
        last = record.args[-1]
        text = last.decode("ascii", "replace") if isinstance(last, bytes) else str(last)
        if record.msg in _AIOSMTPD_LINE_LOGS and not _SMTP_VERB.match(text):
            record.args = (*record.args[:-1], "<not a command: hidden>")
        elif record.msg == "%r << %r":
            record.args = (*record.args[:-1], _hide_echo(text))
        return True


def _redact_aiosmtpd_log() -> None:
    logger = logging.getLogger("mail.log")
    if not any(isinstance(f, _RedactNonCommands) for f in logger.filters):
        logger.addFilter(_RedactNonCommands())


class _Gate:
    """Counts sessions, so that one more than ``limit`` is turned away instead of slowing everyone."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def enter(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active -= 1


@dataclass
class MessageData:
    """What a device sent after DATA: the content (dot-unstuffed) in pieces, and what is wrong with it."""

    parts: list[Buffer]
    size: int
    refusal: Reply | None


async def read_data(reader: asyncio.StreamReader, policy: InboundPolicy) -> MessageData | None:
    """Read a message's data up to the CRLF.CRLF that ends it; None when the connection ends first.

    aiosmtpd reads DATA one line at a time, into one buffer per line, then joins them (and the relay
    then copied the whole again to put the Received header on top): three to four times the message
    in memory and two Python calls per line. Here the stream is cut only where ".<CRLF>" occurs (the
    end of data always ends so) or where the reader's buffer is full, so a 10 KB message takes one or
    two reads and a 35 MB one is kept once, as the pieces the spool then writes with one ``writev``.

    The rules are the ones aiosmtpd applied, on every piece as it comes:

    - The end is only a line "." after CRLF (or at the very start): ``<LF>.<LF>``, ``<CR>.<CR><LF>``
      and the like are data, never the end, so nothing can be smuggled in behind them.
    - A bare CR or LF anywhere refuses the message (550 5.6.0); see ``policy.bare_line_ending_refusal``.
      With ``policy.bare_lf == "normalize"`` a bare LF is taken as a line end and stored as CRLF (also
      for the unstuffing and the line length); the end is still only CRLF.CRLF, and a bare CR refuses.
    - Dot-unstuffing: a line starting with "." loses that dot.
    - A line longer than ``policy.max_line_length`` (after unstuffing) and data over
      ``policy.max_message_size`` refuse the message; the rest of it is then read and thrown away,
      so memory stays bounded, and the reply comes after the end of data (RFC 5321 §4.2.5).
    """
    parts: list[Buffer] = []
    size = raw = 0
    line_limit = policy.max_line_length + 5  # CRLF, a stuffed dot, the line, a CR
    pending = b"\r\n"  # since the last CRLF; starts with one, so a "." first thing is an end too
    first = True
    too_much = too_long = bare = False
    normalize = policy.bare_lf == "normalize"
    while True:
        try:
            piece = await reader.readuntil(b".\r\n")
            may_end = True
        except asyncio.LimitOverrunError as exc:
            piece = await reader.read(max(exc.consumed, 1))
            may_end = False
        except asyncio.IncompleteReadError:
            return None
        if not piece:
            return None
        data = pending + piece
        end = may_end and data.endswith(b"\r\n.\r\n")
        raw += len(piece) - (3 if end else 0)
        too_much = too_much or raw > policy.max_message_size
        if too_much or too_long or bare:
            if end:
                break
            parts.clear()
            pending = data[-4:]  # enough to see the end coming
            continue
        if end:
            complete, pending = data[:-3], b""
        else:
            if normalize:  # lines may end with LF alone: cut at the last line end of either kind
                cut = data.rfind(b"\n")
                if cut > 0 and data[cut - 1] == 0x0D:  # a CRLF: cut before its CR
                    cut -= 1
            else:
                cut = data.rfind(b"\r\n")
            complete, pending = data[:cut], data[cut:]
            too_long = len(pending) > line_limit
        if complete:
            # ``complete`` starts with a CRLF and holds whole lines: the counts and the unstuffing
            # never see a CRLF or a line start cut in two.
            pairs = complete.count(b"\r\n")
            if normalize and complete.count(b"\n") != pairs:
                complete = _BARE_LF.sub(b"\r\n", complete)
                pairs = complete.count(b"\r\n")
            bare = complete.count(b"\r") != pairs or complete.count(b"\n") != pairs
            text = complete.replace(b"\r\n.", b"\r\n")
            too_long = too_long or policy.long_line_refusal(text) is not None
            if first:
                parts.append(memoryview(text)[2:])
                first = False
            else:
                parts.append(text)
            size += len(parts[-1])
        if end:
            break
    refusal: Reply | None = None
    if too_much:
        refusal = policy.size_reply()
    elif bare:
        refusal = BARE_LINE_END
    elif too_long:
        refusal = policy.line_too_long_reply()
    if refusal is not None:
        parts.clear()
    return MessageData(parts, size, refusal)


class RelaySMTP(SMTP):
    """aiosmtpd's SMTP protocol with the relay's session limit, raw-path checks and readable replies."""

    def __init__(self, handler: InboundHandler, *, gate: _Gate, **kwargs: Any) -> None:
        policy = handler.policy
        # aiosmtpd reads this (a class attribute) in __init__ for its StreamReader limit. It bounds a
        # command line in memory (the reply to a long one is the same "500 Command line too long"), and
        # the reader stops the socket whenever twice as much is buffered: at aiosmtpd's 1001 bytes,
        # every 10 KB message cost a pause and a resume of the socket (two epoll calls on the loop).
        # ``read_data`` checks the message's line length itself.
        self.line_length_limit = READER_LIMIT
        super().__init__(handler, **kwargs)
        # aiosmtpd keeps these per class and grows them at each EHLO; keep them per session instead.
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        self._policy = policy
        self._handler = handler
        self._gate = gate
        self._admitted: bool | None = None
        self._peer = "unknown"
        self._queued = 0
        self._refusals: list[str] = []  # for the log; a session ends after a few thousand commands at most
        self._translations = {
            "552 Error: message size exceeds fixed maximum message size": str(policy.size_reply()),
            "552 Error: Too much mail data": str(policy.size_reply()),
            "500 Line too long (see RFC5321 4.5.3.1.6)": str(policy.line_too_long_reply()),
            "538 5.7.11 Encryption required for requested authentication mechanism": (
                "538 5.7.11 Encryption required: send STARTTLS before AUTH"
                if policy.tls_context is not None
                else "538 5.7.11 AUTH needs TLS and this relay has no certificate; "
                "send from an allowed device without AUTH"
            ),
        }

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's address parsing, with a fast path for the plain ``<local@domain>`` of nearly every
        message: the email package's parser took a fifth of a millisecond an address, two a message."""
        plain = _PLAIN_PATH.match(arg)
        if plain is None or arg.startswith("(", plain.end()):  # a comment after it: let the parser judge
            try:
                return super()._getaddr(arg)
            except Exception:  # the email package's parser fails on some garbage ("MAIL FROM:<")
                return None, None  # "553 5.1.3 malformed address", not an internal error
        address = plain.group(1)
        if self.local_part_limit and address.rindex("@") > self.local_part_limit:
            return None, None
        return address, arg[plain.end() :]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._admitted is None:  # the first call; a second one comes after STARTTLS
            self._admitted = self._gate.enter()
            peer = transport.get_extra_info("peername")
            address = parse_ip(str(peer[0])) if isinstance(peer, tuple) and peer else None
            self._peer = str(address) if address is not None else str(peer)
            if not self._admitted:
                log.warning("refused %s: already %d sessions at once", self._peer, self._gate.limit)
                text = f"421 4.7.0 {self._policy.hostname} Too many connections at once; try again later\r\n"
                if isinstance(transport, asyncio.WriteTransport):
                    transport.write(text.encode("ascii"))
                transport.close()
                return
            log.debug("session from %s", self._peer)
        super().connection_made(transport)
        # Whether AUTH may come before STARTTLS depends on who is asking; aiosmtpd decides it per server,
        # and each session has its own protocol object, so set it per session here.
        self._auth_require_tls = not self._policy.auth_without_tls_allowed(self._peer)

    def connection_lost(self, error: Exception | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        self._gate.leave()
        last = f", last: {self._refusals[-1]}" if self._refusals else ""
        log.info(
            "session from %s ended: %d queued, %d refused%s",
            self._peer,
            self._queued,
            len(self._refusals),
            last,
        )
        super().connection_lost(error)

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str):
            text = self._translations.get(status, status)
            if text[:1] in ("4", "5"):
                shown = _hide_echo(text)  # the echoed "command" may be an AUTH secret
                self._refusals.append(shown)
                log.info("refused %s: %s", self._peer, shown)
            elif text.startswith("250 2.0.0 Queued as "):
                self._queued += 1
            await super().push(text)
        else:
            await super().push(status)

    async def smtp_RCPT(self, arg: str | None) -> None:
        session, envelope = self.session, self.envelope
        if arg is not None and session is not None and session.host_name and envelope is not None:
            path = self._strip_command_keyword("TO:", arg)
            reply = source_route_refusal(path) if path is not None and envelope.mail_from else None
            if reply is not None:
                await self.push(str(reply))
                return
        await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, with the data read by ``read_data`` and stored by the handler in pieces."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        session, envelope = self.session, self.envelope
        assert session is not None
        assert envelope is not None
        if not envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            data = await read_data(self._reader, self._policy)
        except asyncio.CancelledError:
            log.info("connection from %s lost during DATA", self._peer)
            self._writer.close()
            raise
        if data is None:  # the device hung up before the end of data: nothing to answer
            return
        reply = await self._handler.receive(session, envelope, data)
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push(reply)


class InboundHandler:
    """The aiosmtpd handler: policy at MAIL and RCPT, the spool at DATA.

    No method name starts with ``auth_``: aiosmtpd would take it for an AUTH mechanism.
    """

    def __init__(
        self, policy: InboundPolicy, spool: AcceptingSpool, on_queued: Callable[[Envelope], None]
    ) -> None:
        self.policy = policy
        self.spool = spool
        self.on_queued = on_queued

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: SMTPEnvelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        # aiosmtpd lists "AUTH" even with no mechanism left; offer it only when it can succeed.
        return [r for r in responses if not r.startswith("250-AUTH") or r.strip() != "250-AUTH"]

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: SMTPEnvelope, address: str, options: list[str]
    ) -> str:
        refusal = self.policy.relay_refusal(peer_ip(session), authenticated=bool(session.authenticated))
        if refusal is not None:
            return str(refusal)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: SMTPEnvelope, address: str, options: list[str]
    ) -> str:
        policy = self.policy
        refusal = (
            policy.relay_refusal(peer_ip(session), authenticated=bool(session.authenticated))
            or policy.recipient_ok(address)
            or policy.recipients_refusal(len(envelope.rcpt_tos))
        )
        if refusal is not None:
            return str(refusal)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Recipient OK"

    async def receive(self, session: Session, envelope: SMTPEnvelope, data: MessageData) -> str:
        """The reply to a message's data: stored in the spool (250), or why not."""
        ip = peer_ip(session)
        refusal = (
            self.policy.relay_refusal(ip, authenticated=bool(session.authenticated))
            or data.refusal
            or self.policy.size_refusal(data.size)
        )
        if refusal is not None:
            return str(refusal)
        message_id, now, helo = new_message_id(), time.time(), session.host_name or ""
        header = received_header(
            session, ip=ip, hostname=self.policy.hostname, message_id=message_id, when=now
        )
        spooled = Envelope(
            id=message_id,
            received_at=now,
            device=ip,
            mail_from="" if envelope.mail_from == "<>" else envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            size=len(header) + data.size,
            device_login=session.auth_data if isinstance(session.auth_data, str) else None,
            helo=helo,
        )
        # The header and the pieces go to the spool as they are (one writev): never joined in memory.
        stored = await self._store(spooled, [header, *data.parts])
        data.parts.clear()
        if stored is None:
            return str(STORE_FAILED)
        login = f", login {spooled.device_login!r}" if spooled.device_login else ""
        log.info(
            "queued %s from %s (%s%s): %d bytes, <%s> to %d recipient(s)",
            *(message_id, ip, helo, login, spooled.size, spooled.mail_from, len(spooled.rcpt_tos)),
        )
        self._notify(stored)
        return f"250 2.0.0 Queued as {message_id}"

    async def _store(self, envelope: Envelope, content: Sequence[Buffer]) -> Envelope | None:
        """The stored envelope, or None when the spool failed (logged; the device gets a 451)."""
        # Shielded: if the device hangs up while the spool writes, the write still finishes and the
        # forwarder still hears of it (the device got no 250 and may send again: at least once, never lost).
        task = asyncio.ensure_future(self.spool.accept(envelope, content))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(self._stored_late)
            raise
        except Exception as exc:
            log.error("could not store a message from %s: %s", envelope.device, _describe(exc))
            return None

    def _stored_late(self, task: asyncio.Future[Envelope]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("could not store a message (its sender had hung up): %s", _describe(exc))
        else:
            self._notify(task.result())

    def _notify(self, envelope: Envelope) -> None:
        try:
            self.on_queued(envelope)
        except Exception:
            log.exception("on_queued failed for %s (the message is queued all the same)", envelope.id)

    async def handle_exception(self, error: Exception) -> str:
        """An unexpected error in a command: a 451 for the device, the details in the log, never a crash."""
        log.error("internal error in an SMTP session: %s", _describe(error), exc_info=error)
        return str(INTERNAL_ERROR)

    def check_login(
        self, server: SMTP, session: Session, envelope: SMTPEnvelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        """aiosmtpd's ``authenticator``: the policy's device-account check. The password is never logged."""
        ip = peer_ip(session)
        if self.policy.authenticate is None or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        try:
            login = auth_data.login.decode("utf-8")
            password = auth_data.password.decode("utf-8")
        except UnicodeDecodeError:
            log.warning("AUTH %s from %s failed: the login or password is not UTF-8", mechanism, ip)
            return AuthResult(success=False, handled=False)
        try:
            ok = self.policy.authenticate(login, password)
        except Exception as exc:
            log.error("AUTH %s from %s as %r could not be checked: %s", mechanism, ip, login, _describe(exc))
            return AuthResult(success=False, handled=False, message=str(AUTH_UNAVAILABLE))
        if not ok:
            log.warning("AUTH %s from %s as %r failed: wrong login or password", mechanism, ip, login)
            return AuthResult(success=False, handled=False)
        log.info("AUTH %s from %s as %r succeeded", mechanism, ip, login)
        return AuthResult(success=True, auth_data=login)


def _describe(exc: BaseException) -> str:
    """An exception as one line for the log: relaywizard errors by their sentence, others by type and text."""
    one_line = getattr(exc, "one_line", None)
    if callable(one_line):
        return str(one_line())
    return f"{type(exc).__name__}: {exc}"


async def start_inbound(
    policy: InboundPolicy,
    spool: AcceptingSpool,
    on_queued: Callable[[Envelope], None],
    host: str,
    port: int,
) -> asyncio.Server:
    """Listen for devices on ``host:port`` (port 0: any free port) in the running loop.

    ``on_queued`` is called (in the loop) with each envelope once it is durably queued. Close the
    returned server to stop listening; sessions in progress end by themselves.
    Raises ``ConfigError`` with one sentence when the address cannot be used.
    """
    _redact_aiosmtpd_log()
    loop = asyncio.get_running_loop()
    handler = InboundHandler(policy, spool, on_queued)
    gate = _Gate(policy.max_connections)
    offered = policy.auth_offered

    def new_session() -> RelaySMTP:
        return RelaySMTP(
            handler,
            gate=gate,
            data_size_limit=policy.max_message_size,
            hostname=policy.hostname,
            ident="ESMTP relaywizard",
            tls_context=policy.tls_context,
            timeout=policy.idle_timeout,
            auth_require_tls=True,
            authenticator=handler.check_login if offered else None,
            auth_exclude_mechanism=() if offered else ("PLAIN", "LOGIN"),
            loop=loop,
        )

    try:
        server = await loop.create_server(new_session, host or None, port)
    except OSError as exc:
        raise listen_error(host, port, exc) from None
    where = ", ".join(format_host_port(*sock.getsockname()[:2]) for sock in server.sockets)
    log.info("listening for devices on %s", where)
    return server


def listen_error(host: str, port: int, exc: OSError) -> ConfigError:
    """The one-sentence ``ConfigError`` for a listening socket the system refused."""
    where = f"Cannot listen on {format_host_port(host or '0.0.0.0', port)}"
    if isinstance(exc, socket.gaierror):
        return ConfigError(
            f"{where}: the name {host} is not known.", hint="Listen on an IP address of this computer."
        )
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(
            f"{where}: the port is in use by another program.",
            hint="Stop the other program (perhaps another relay), or choose another port.",
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        if 0 < port < 1024:
            return ConfigError(
                f"{where}: the port needs administrator rights for ports below 1024.",
                hint="Run the relay as administrator (root), or listen on a port such as 2525 "
                "and point the devices there.",
            )
        return ConfigError(f"{where}: the system did not allow it (permission denied).")
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigError(
            f"{where}: {host} is not an address of this computer.",
            hint="Listen on 0.0.0.0 (every address) or on one of this computer's addresses.",
        )
    reason = (exc.strerror or str(exc)).rstrip(".")
    return ConfigError(f"{where}: {reason[:1].lower()}{reason[1:]}.")
