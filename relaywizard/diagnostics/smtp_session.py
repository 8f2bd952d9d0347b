"""The one SMTP connection the staged checks share, and the pieces each stage is built from.

The checks behave like ``swaks --quit-after``: one TCP connection, opened by ``smtp.connect`` (or begun
ahead of the run, ``smtp_ahead``, and taken over by it) and used by every later stage, so each stage's
result says exactly where a session stops. ``SmtpCheck`` is the
base of every stage after the connection: it turns a lost or silent connection into a result and keeps
secrets out of every result.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import ssl
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import aiosmtplib

from relaywizard.core.errors import UsageError
from relaywizard.diagnostics.base import Check, Context
from relaywizard.diagnostics.model import CheckResult, Group, Status, Target
from relaywizard.diagnostics.smtp_net import ehlo_name, local_fqdn
from relaywizard.diagnostics.smtp_pipeline import Pipeline, send_pipelined
from relaywizard.diagnostics.smtp_tls import verifying_context

if TYPE_CHECKING:
    from relaywizard.diagnostics.replies import Explanation
    from relaywizard.diagnostics.smtp_ahead import SessionAhead
    from relaywizard.diagnostics.smtp_tls import TlsFailure, TlsInfo

SHARED_KEY = "smtp"


@dataclass
class SmtpSession:
    """What the staged checks share in ``ctx.shared["smtp"]``: the connection and how far it got."""

    host: str
    port: int
    timeout: float
    sock: socket.socket | None = None
    """The connected socket until the greeting stage hands it to aiosmtplib, whose transport then owns
    (and closes) it: closing it here as well could free its descriptor while the transport still uses it."""
    smtp: aiosmtplib.SMTP | None = None
    local_address: str | None = None
    ehlo: str = ""
    tls_context: ssl.SSLContext | None = None
    tls_failure: TlsFailure | None = None
    """A handshake refused for its certificate or protocol version: the TLS check reports it."""
    tls_probe: TlsInfo | None = None
    """What a probe without verification saw, when one was needed to explain a failed handshake."""
    encrypted: bool = False
    """TLS is up and the certificate was verified: only then may credentials be sent."""
    authenticated: bool = False
    transaction: bool = False
    """MAIL FROM was accepted and no message finished: RSET before QUIT."""
    recipient_accepted: bool = False
    envelope: Pipeline | None = None
    """MAIL FROM and what went out with it in one write (PIPELINING): RCPT TO, and without ``send`` the
    session's end, RSET and QUIT. The stages read their replies from it."""
    ended: bool = False
    secrets: set[str] = field(default_factory=set, repr=False)
    """The password or token in use, so no result ever shows them."""
    _fqdn: asyncio.Future[str] | None = field(default=None, init=False, repr=False)
    _verifying_context: asyncio.Future[ssl.SSLContext] | None = field(default=None, init=False, repr=False)

    @property
    def connected(self) -> bool:
        return self.smtp is not None and self.smtp.is_connected

    def client(self) -> aiosmtplib.SMTP:
        """The SMTP client; ``SMTPServerDisconnected`` when the connection is already gone."""
        if self.smtp is None or not self.smtp.is_connected:
            raise aiosmtplib.SMTPServerDisconnected("the connection is closed")
        return self.smtp

    def pipelining(self) -> bool:
        """The server takes several commands in one write (RFC 2920)."""
        return self.smtp is not None and self.smtp.supports_extension("pipelining")

    def prepare(self, target: Target, ahead: SessionAhead | None = None) -> None:
        """Start, while the greeting is on its way, what later stages need: this machine's name for EHLO
        (a reverse look-up) and the TLS context (reading the system's CA certificates takes tens of
        milliseconds); or take them over from ``ahead``, which started them even earlier."""
        if ahead is not None:
            self._fqdn, self._verifying_context = ahead.fqdn, ahead.tls_context
            return
        if not target.helo_name:
            self._fqdn = asyncio.ensure_future(local_fqdn(self.timeout))
        self._verifying_context = asyncio.get_running_loop().run_in_executor(
            None, verifying_context, target.ca_file
        )

    async def local_name(self, target: Target) -> str:
        """The name to send in EHLO (``smtp_net.ehlo_name``)."""
        fqdn = ""
        if not target.helo_name:
            fqdn = await (self._fqdn if self._fqdn is not None else local_fqdn(self.timeout))
        return ehlo_name(target, fqdn, self.local_address)

    async def verifying_context(self, target: Target) -> ssl.SSLContext:
        """The verifying context (``smtp_tls.verifying_context``); its ``OSError``/``ssl.SSLError`` when
        the CA file cannot be used."""
        if self._verifying_context is None:
            return await asyncio.to_thread(verifying_context, target.ca_file)
        return await self._verifying_context

    async def end(self) -> list[str]:
        """RSET (if a transaction is open) and QUIT, best effort: nothing is sent after this.

        The commands whose replies came, in order. When they went out with MAIL FROM (``envelope``), only
        their replies are read.
        """
        sent: list[str] = []
        if self.ended:
            return sent
        self.ended = True
        envelope, self.envelope = self.envelope, None
        if envelope is not None and envelope.has(b"QUIT"):
            sent = await self._replies_to_end(envelope, [b"RSET", b"QUIT"])
        elif self.connected and self.smtp is not None:
            commands = [b"RSET", b"QUIT"] if self.transaction else [b"QUIT"]
            if len(commands) > 1 and self.pipelining():
                with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                    pipeline = await send_pipelined(self.smtp, commands, self.timeout)
                    sent = await self._replies_to_end(pipeline, commands)
            else:
                for command in commands:
                    with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                        await self.smtp.execute_command(command, timeout=self.timeout)
                        sent.append(command.decode())
        self.transaction = False
        self.close()
        return sent

    async def _replies_to_end(self, pipeline: Pipeline, commands: list[bytes]) -> list[str]:
        """Read the replies to the pipelined ``commands`` as ``end`` reads them one at a time."""
        sent: list[str] = []
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            for command in commands:
                try:
                    await pipeline.reply_to(command)
                except aiosmtplib.SMTPServerDisconnected:
                    if command != b"QUIT":
                        raise
                    # The server hung up after QUIT without a reply: aiosmtplib counts that as done too.
                sent.append(command.decode())
        return sent

    def close(self) -> None:
        for job in (self._fqdn, self._verifying_context):
            if job is None:
                continue
            if not job.done():
                job.cancel()
            elif not job.cancelled():
                job.exception()  # retrieved: a CA file no stage got to use is not worth a warning
        if self.smtp is not None:
            self.smtp.close()
        if self.sock is not None:
            self.sock.close()

    async def aclose(self) -> None:
        """The run's closer: end the session politely, then drop the connection."""
        try:
            await asyncio.wait_for(self.end(), 2 * self.timeout)
        finally:
            self.close()


def session_of(ctx: Context) -> SmtpSession:
    session = ctx.shared.get(SHARED_KEY)
    if not isinstance(session, SmtpSession):
        raise RuntimeError("smtp.connect has not run in this diagnostics run")
    return session


def explain_reply(code: int, message: str) -> tuple[str, Explanation | None]:
    """The reply as one line, and its explanation (None for something that is not an SMTP reply)."""
    from relaywizard.diagnostics.replies import explain  # the reply table: only when something is refused

    reply = " ".join(f"{code} {message}".split())
    try:
        return reply, explain(reply)
    except UsageError:
        return reply, None


# -- the base of every stage after smtp.connect -------------------------------------------------------------

_HIDDEN = "********"


#: Shorter "secrets" are not replaced: hiding every "a" of a report protects nothing and garbles it.
_MIN_SECRET = 4


def scrub(value: Any, secrets: set[str]) -> Any:
    """``value`` with every secret replaced, in strings nested in dicts and lists too."""
    if isinstance(value, str):
        for secret in sorted(secrets, key=len, reverse=True):
            if len(secret) >= _MIN_SECRET:
                value = value.replace(secret, _HIDDEN)
        return value
    if isinstance(value, dict):
        return {key: scrub(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(item, secrets) for item in value]
    return value


class SmtpCheck(Check):
    """A stage on the shared connection: a lost connection or a silent server becomes a ``fail``.

    Every result passes through ``scrub``, so a password or token can never reach a report, even when a
    server or a library echoes it in an error.
    """

    group: ClassVar[Group] = "smtp"

    async def run(self, ctx: Context) -> CheckResult:
        session = session_of(ctx)
        try:
            result = await self.stage(ctx, session)
        except aiosmtplib.SMTPTimeoutError:
            result = self.result(
                Status.FAIL,
                f"The server did not answer within {session.timeout:g} seconds.",
                fix="The server, or a firewall or proxy between, stopped answering mid-session. Try again; "
                "raise --timeout on a slow link; check for SMTP inspection on the firewall.",
            )
        except aiosmtplib.SMTPServerDisconnected:
            result = self.result(
                Status.FAIL,
                "The server closed the connection.",
                fix="The server ended the session without a reply: it may limit connections from this "
                "address or have refused an earlier step. Run the check again and read the previous stage.",
            )
        except aiosmtplib.SMTPResponseException as exc:  # a refusal where none was expected
            result = self.rejected("The server answered unexpectedly", exc.code, exc.message)
        except aiosmtplib.SMTPException as exc:
            result = self.result(
                Status.FAIL,
                f"The SMTP session broke off: {exc}",
                fix="Run the check again; if it repeats, the server or a device between does not speak SMTP "
                "as expected.",
            )
        return dataclasses.replace(
            result,
            summary=scrub(result.summary, session.secrets),
            fix=scrub(result.fix, session.secrets),
            data=scrub(result.data, session.secrets),
        )

    @abstractmethod
    async def stage(self, ctx: Context, session: SmtpSession) -> CheckResult:
        """This stage's work on the open session."""

    def rejected(
        self, what: str, code: int, message: str, *, extra_fix: str = "", data: dict[str, Any] | None = None
    ) -> CheckResult:
        """A ``fail`` for a refusing reply: the reply, its plain meaning, and the explainer's fix.

        ``code`` of the result is the reply's enhanced status code (None when it has none); the basic
        code is always kept in ``data["reply_code"]``.
        """
        reply, explanation = explain_reply(code, message)
        payload: dict[str, Any] = {"reply": reply, "reply_code": code, **(data or {})}
        if explanation is None:
            return self.result(
                Status.FAIL,
                f"{what}: {reply}",
                fix="The answer is not SMTP: check that the host and port belong to a mail server.",
                data=payload,
            )
        fix = explanation.fix if not extra_fix else f"{explanation.fix}\n\n{extra_fix}"
        return self.result(
            Status.FAIL,
            f"{what}: {reply} — {explanation.meaning}",
            fix=fix,
            code=explanation.code,
            data=payload,
        )
