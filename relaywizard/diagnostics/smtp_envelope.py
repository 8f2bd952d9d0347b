"""The staged checks after TLS: sign-in, sender, recipient, and (only with ``send``) one test message.

Each one is skipped when the technician did not ask for it (no credentials, no ``--from``/``--to``, no
``--send``), so a run without them stops before anything could be delivered. A rejection is explained
with the reply explainer and, where an admin setting is behind it, the PowerShell to paste with the real
mailbox, sender or IP filled in.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.policy
import re

import aiosmtplib

from relaywizard.core import m365, trace
from relaywizard.core.errors import RelayWizardError
from relaywizard.diagnostics import powershell
from relaywizard.diagnostics.base import Context
from relaywizard.diagnostics.model import CheckResult, Status, Target
from relaywizard.diagnostics.smtp_net import method_name
from relaywizard.diagnostics.smtp_pipeline import send_pipelined
from relaywizard.diagnostics.smtp_session import SmtpCheck, SmtpSession, explain_reply

# 5.7.139 variants an admin fixes by turning SMTP AUTH on (not: security defaults, a Basic-auth policy,
# wrong credentials, Conditional Access — their fixes are elsewhere).
_SUBMISSION = f"{m365.SMTP_AUTH_ENDPOINT.host}:{m365.SMTP_AUTH_ENDPOINT.port}"
_NOT_A_SWITCH = re.compile(r"security defaults|basic auth|credentials|criteria", re.IGNORECASE)


def _enhanced(code: int, message: str) -> str | None:
    _, explanation = explain_reply(code, message)
    return explanation.code if explanation else None


def _address(value: str) -> bytes:
    """An envelope address as bytes; ValueError for one no server could take."""
    if not value or any(ch.isspace() or ch in "<>" or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError(value)
    return value.encode("utf-8")


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, RelayWizardError):
        return exc.one_line()
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _challenge(message: str) -> str:
    """The XOAUTH2 error challenge (base64 JSON such as ``{"status":"401",...}``), decoded for the report."""
    try:
        return base64.b64decode(message.strip(), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return message.strip()


# Why a server refuses a token the authority just issued, by the kind of sign-in (XOAUTH2 only).
_OAUTH_REFUSED = {
    "oauth-app": (
        "The token was refused for {user}: it may be for another mailbox or tenant, or expired. An app-only "
        "token also needs the app's service principal in Exchange Online with access to the mailbox "
        "(New-ServicePrincipal with the enterprise application's object id, then Add-MailboxPermission "
        "-Identity {user}) and the SMTP.SendAsApp permission with admin consent."
    ),
    "oauth-delegated": (
        "The token was refused for {user}: the account signed in must be {user} itself, and its token "
        "must not have expired (sign in again with: relaywizard signin); the app needs the delegated "
        "permission SMTP.Send."
    ),
    "password": "",
}


class AuthCheck(SmtpCheck):
    """Signs in with a password (PLAIN or LOGIN) or an OAuth token (XOAUTH2), only over verified TLS."""

    id = "smtp.auth"
    title = "Sign-in (AUTH)"
    requires = ("smtp.tls", "smtp.ehlo")
    steps = 4  # token, AUTH, its continuation, LOGIN's second step

    async def stage(self, ctx: Context, session: SmtpSession) -> CheckResult:
        target = ctx.target
        if target.method != "smtp-auth":
            return self.skipped(f"{method_name(target)} does not sign in; no credentials are sent.")
        if not target.has_credentials or not target.user:
            return self.skipped("No credentials given (--user with a password or OAuth): not signing in.")
        if not session.encrypted:
            return self.skipped(
                "Not signing in: the connection is not protected by a verified TLS certificate."
            )
        smtp = session.client()
        offered = [name.upper() for name in smtp.server_auth_methods]
        if not smtp.supports_extension("auth"):
            return self.result(
                Status.FAIL,
                "The server offers no sign-in (AUTH) after STARTTLS.",
                fix=f"This endpoint does not take sign-ins. SMTP AUTH uses {_SUBMISSION}; Direct Send and "
                "connector relay do not sign in (choose that method instead).",
            )
        if target.auth == "password":
            return await self._password(ctx, session, target, target.user, offered)
        return await self._oauth(ctx, session, target, target.user, offered)

    async def _password(
        self, ctx: Context, session: SmtpSession, target: Target, user: str, offered: list[str]
    ) -> CheckResult:
        if target.secret is None:
            return self.skipped("No password given for --user: not signing in.")
        plain = base64.b64encode(f"\0{user}\0{target.secret}".encode()).decode()
        session.secrets.update({target.secret, plain, base64.b64encode(target.secret.encode()).decode()})
        mechanism = next((m for m in ("PLAIN", "LOGIN") if m in offered), None)
        if mechanism is None:
            return self.result(
                Status.FAIL,
                f"The server offers no password sign-in (PLAIN or LOGIN), only {', '.join(offered)}.",
                fix="Password (Basic) sign-in is not available here: sign in with OAuth instead "
                "(--auth oauth-delegated or --auth oauth-app).",
                data={"offered": offered},
            )
        ctx.progress(f"AUTH {mechanism} as {user}")
        smtp = session.client()
        login = smtp.auth_plain if mechanism == "PLAIN" else smtp.auth_login
        try:
            response = await login(user, target.secret)
        except aiosmtplib.SMTPAuthenticationError as exc:
            return self._rejected(target, user, mechanism, exc.code, exc.message, {"offered": offered})
        return self._signed_in(session, user, mechanism, response.code, response.message, offered)

    async def _oauth(
        self, ctx: Context, session: SmtpSession, target: Target, user: str, offered: list[str]
    ) -> CheckResult:
        if target.token_provider is None:
            return self.skipped("No OAuth sign-in configured for --user: not signing in.")
        if "XOAUTH2" not in offered:
            return self.result(
                Status.FAIL,
                f"The server offers no OAuth sign-in (XOAUTH2), only {', '.join(offered) or 'nothing'}.",
                fix=f"Check the host and port: {_SUBMISSION} offers XOAUTH2 after STARTTLS.",
                data={"offered": offered},
            )
        ctx.progress("Getting an OAuth token")
        try:
            token = await target.token_provider()
        except Exception as exc:  # MSAL, HTTP, keyring: whatever it is, the technician needs its words
            return self.result(
                Status.FAIL,
                f"Could not get an OAuth token: {_error_text(exc)}",
                fix="Sign in again, and check the tenant, the client id, the app's permission "
                "(SMTP.Send, or SMTP.SendAsApp for app-only) and the admin consent.",
            )
        blob = base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode()).decode()
        session.secrets.update({token, blob})
        ctx.progress(f"AUTH XOAUTH2 as {user}")
        smtp = session.client()
        response = await smtp.execute_command(b"AUTH", b"XOAUTH2", blob.encode())
        data: dict[str, object] = {"offered": offered}
        if response.code == 334:  # an error challenge: an empty line fetches the final reply
            data["challenge"] = _challenge(response.message)
            response = await smtp.execute_command(b"")
        if response.code != 235:
            return self._rejected(target, user, "XOAUTH2", response.code, response.message, data)
        return self._signed_in(session, user, "XOAUTH2", response.code, response.message, offered)

    def _signed_in(
        self, session: SmtpSession, user: str, mechanism: str, code: int, message: str, offered: list[str]
    ) -> CheckResult:
        session.authenticated = True
        reply = " ".join(f"{code} {message}".split())
        return self.passed(
            f"Signed in as {user} with {mechanism}: {reply}.",
            mechanism=mechanism,
            user=user,
            reply=reply,
            offered=offered,
        )

    def _rejected(
        self, target: Target, user: str, mechanism: str, code: int, message: str, data: dict[str, object]
    ) -> CheckResult:
        extra = ""
        if _enhanced(code, message) == "5.7.139" and not _NOT_A_SWITCH.search(message):
            extra = powershell.enable_smtp_auth(user)
        elif mechanism == "XOAUTH2" and 500 <= code < 600:
            extra = _OAUTH_REFUSED[target.auth].format(user=user)
        return self.rejected(
            f"The server refused the sign-in of {user} with {mechanism}",
            code,
            message,
            extra_fix=extra,
            data={"mechanism": mechanism, "user": user, **data},
        )


class MailFromCheck(SmtpCheck):
    id = "smtp.mail_from"
    title = "Sender (MAIL FROM)"
    requires = ("smtp.ehlo", "smtp.auth")
    steps = 1

    async def stage(self, ctx: Context, session: SmtpSession) -> CheckResult:
        target = ctx.target
        sender = target.mail_from
        if not sender:
            return self.skipped("No sender given (--from): MAIL FROM not tested.")
        try:
            address = _address(sender)
        except ValueError:
            return self.result(
                Status.FAIL,
                f"'{sender}' is not an address a server accepts.",
                fix="Give --from as name@domain.",
            )
        ctx.progress(f"MAIL FROM:<{sender}>")
        mail = b"MAIL FROM:<" + address + b">"
        commands = [mail, *_with_mail_from(target)] if session.pipelining() else [mail]
        if len(commands) > 1:
            # One round trip for all of them (RFC 2920); smtp.rcpt_to and the session's end read the other
            # replies, which the pipeline takes off the connection even when nothing reads them (this
            # MAIL FROM refused).
            session.envelope = await send_pipelined(session.client(), commands, session.timeout)
            response = await session.envelope.reply_to(b"MAIL")
        else:
            response = await session.client().execute_command(mail)
        if response.code != 250:
            enhanced = _enhanced(response.code, response.message)
            extra = ""
            if enhanced == "5.7.60":
                extra = powershell.grant_send_as(sender, target.user)
            elif enhanced == "5.7.68":
                extra = powershell.reject_direct_send()
            return self.rejected(
                f"The server refused the sender {sender}",
                response.code,
                response.message,
                extra_fix=extra,
                data={"address": sender},
            )
        session.transaction = True
        reply = " ".join(f"{response.code} {response.message}".split())
        return self.passed(f"Sender {sender} accepted: {reply}.", address=sender, reply=reply)


class RcptToCheck(SmtpCheck):
    id = "smtp.rcpt_to"
    title = "Recipient (RCPT TO)"
    requires = ("smtp.mail_from",)
    steps = 1

    async def stage(self, ctx: Context, session: SmtpSession) -> CheckResult:
        target = ctx.target
        recipient = target.rcpt_to
        if not recipient:
            return self.skipped("No recipient given (--to): RCPT TO not tested.")
        if not session.transaction:
            return self.skipped("RCPT TO needs an accepted sender: give --from too.")
        try:
            address = _address(recipient)
        except ValueError:
            return self.result(
                Status.FAIL,
                f"'{recipient}' is not an address a server accepts.",
                fix="Give --to as name@domain.",
            )
        ctx.progress(f"RCPT TO:<{recipient}>")
        if session.envelope is not None and session.envelope.has(b"RCPT"):  # sent with MAIL FROM
            response = await session.envelope.reply_to(b"RCPT")
        else:
            response = await session.client().execute_command(b"RCPT", b"TO:<" + address + b">")
        if response.code not in (250, 251):
            enhanced = _enhanced(response.code, response.message)
            extra = ""
            if enhanced in ("5.7.64", "5.7.54"):
                extra = _connector_block(target)
            elif enhanced == "5.7.68":
                extra = powershell.reject_direct_send()
            return self.rejected(
                f"The server refused the recipient {recipient}",
                response.code,
                response.message,
                extra_fix=extra,
                data={"address": recipient},
            )
        session.recipient_accepted = True
        reply = " ".join(f"{response.code} {response.message}".split())
        return self.passed(f"Recipient {recipient} accepted: {reply}.", address=recipient, reply=reply)


def _with_mail_from(target: Target) -> list[bytes]:
    """What can go out in one write with MAIL FROM: RCPT TO (unless smtp.rcpt_to will not send it: no
    recipient, or one no server accepts), and without ``send`` the session's end, RSET and QUIT, which
    follows whatever the replies say."""
    commands = []
    if target.rcpt_to:
        with contextlib.suppress(ValueError):
            commands.append(b"RCPT TO:<" + _address(target.rcpt_to) + b">")
    if not target.send:
        commands += [b"RSET", b"QUIT"]
    return commands


def _connector_block(target: Target) -> str:
    try:
        return powershell.inbound_connector(target.relay_ip)
    except ValueError:  # an IP a connector cannot take: leave the placeholder for the admin
        return powershell.inbound_connector(None)


def build_test_message(target: Target) -> tuple[bytes, str]:
    """One short message with the headers a receiving server expects, and its traceable Message-ID."""
    message, message_id = trace.test_message(
        target.mail_from or "",
        target.rcpt_to or "",
        body=f"This message was sent by 'relaywizard check --send' to prove that {method_name(target)} works "
        "from this network. It needs no answer.\n",
    )
    return message.as_bytes(policy=email.policy.SMTP), message_id


class DataCheck(SmtpCheck):
    """Sends one test message, only with ``send``; otherwise ends the session with RSET and QUIT."""

    id = "smtp.data"
    title = "Test message (DATA)"
    requires = ("smtp.rcpt_to",)
    steps = 2  # DATA, the message (or RSET, QUIT)

    async def stage(self, ctx: Context, session: SmtpSession) -> CheckResult:
        target = ctx.target
        if not target.send:
            ctx.progress("Ending the session without sending")
            sent = await session.end()
            how = f" with {' and '.join(sent)}" if sent else ""
            return self.skipped(f"Nothing sent (no --send): the session ended{how}.")
        if not session.recipient_accepted:
            return self.skipped("Sending needs an accepted sender and recipient: give --from and --to.")
        message, message_id = build_test_message(target)
        ctx.progress(f"DATA: sending one test message to {target.rcpt_to}")
        try:
            response = await session.client().data(message)
        except aiosmtplib.SMTPDataError as exc:
            return self.rejected(
                "The server refused the test message", exc.code, exc.message, data={"message_id": message_id}
            )
        session.transaction = False
        reply = " ".join(f"{response.code} {response.message}".split())
        found = trace.trace_for(message_id)
        return self.passed(
            f"The test message {message_id} was accepted: {reply}.",
            message_id=message_id,
            reply=reply,
            sent=trace.iso_utc(found.sent),
            trace=found.powershell,
        )
