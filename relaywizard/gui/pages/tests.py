"""Tests: the diagnostics, run from this computer as the device will send, as a live list of checks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtGui import QHideEvent, QPalette
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QVBoxLayout

from relaywizard.core import m365
from relaywizard.core.errors import RelayWizardError
from relaywizard.core.plan import SetupPlan
from relaywizard.diagnostics.model import AuthKind, Report, Status, Target
from relaywizard.diagnostics.runner import RunState
from relaywizard.gui.diagnostics_view import DiagnosticsController, DiagnosticsView, default_checks
from relaywizard.gui.services import Services
from relaywizard.gui.widgets import BackgroundTasks, StatusLine
from relaywizard.gui.wizard import PlanPage

if TYPE_CHECKING:
    from relaywizard.auth.source import TokenSource


def signs_in(plan: SetupPlan) -> bool:
    return plan.method == "smtp-auth" and plan.auth != "none"


def build_target(
    plan: SetupPlan,
    services: Services,
    secret: str | None,
    *,
    send: bool = False,
    token_provider: Callable[[], Awaitable[str]] | None = None,
) -> Target:
    """What the tests page tests: the plan's domain, method and mailbox, through the services' endpoints.

    The mailbox signs in (SMTP AUTH: the password, or with OAuth tokens from ``token_provider``) and
    receives; the sender (or else the mailbox) is MAIL FROM.
    """
    tenant = plan.tenant
    mailbox = tenant.mailbox or None
    auth: AuthKind = plan.oauth.kind if plan.auth == "oauth" else "password"
    relays = plan.method != "smtp-auth"
    return Target(
        domain=tenant.domain,
        method=plan.method,
        dns_servers=services.dns_servers,
        smtp_host=services.smtp_host,
        smtp_port=services.smtp_port,
        ca_file=Path(services.ca_file) if services.ca_file else None,
        user=mailbox if signs_in(plan) else None,
        auth=auth,
        secret=secret if signs_in(plan) and plan.auth == "password" else None,
        token_provider=token_provider if signs_in(plan) and plan.auth == "oauth" else None,
        mail_from=tenant.sender or mailbox,
        rcpt_to=mailbox,
        send=send,
        relay_ip=(tenant.public_ip or None) if relays else None,
    )


def describe_target(plan: SetupPlan, services: Services) -> str:
    """One sentence: what is tested, where, as whom."""
    method = m365.SENDING_METHODS[plan.method]
    host = services.smtp_host or (
        m365.mx_endpoint_for(plan.tenant.domain) if method.host == m365.MX_HOST_PLACEHOLDER else method.host
    )
    port = services.smtp_port or method.port
    text = f"Tests the DNS of {plan.tenant.domain}, then {method.name} to {host}:{port}"
    if signs_in(plan) and plan.tenant.mailbox:
        text += f", signing in as {plan.tenant.mailbox}"
    return text + "."


class TestsPage(PlanPage):
    __test__ = False  # not a pytest test class, whatever its name says
    help_text = (
        "relaywizard tests from <b>this computer</b>, so run it on the network the device is on: DNS "
        "first (MX, SPF, DKIM, DMARC, autodiscover, all at once), then one SMTP conversation step by step "
        "— connection, greeting, EHLO, STARTTLS, the TLS version and certificate, sign-in, sender and "
        "recipient — as a device would hold it. A step that fails skips the steps after it."
        "<br><br>Open a check (the arrow, or the right arrow key) to see what it found and <b>what to "
        "do</b>, with a Copy button. <b>Cancel tests</b> stops at once; <b>Run again</b> starts over, for "
        "instance after you changed a DNS record or a setting in Microsoft 365."
        "<br><br>Nothing is delivered unless you tick <b>Send a test message</b>: otherwise the "
        "conversation ends before the message itself (RSET and QUIT). You can go on with failed checks: "
        "the summary and the report list what is left to fix."
    )

    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Test from this network")
        self.setSubTitle("Each check runs from this computer, the way the device will send.")
        self.tasks = BackgroundTasks()
        self.target: Target | None = None
        """What the last run tested."""
        self._secret: str | None = None
        self._secret_profile: str | None = None
        """The profile ``_secret`` was read for (a found secret is read once per visit)."""
        self._source: TokenSource | None = None
        """OAuth: the token source of this visit (one token for every run, refreshed when it expires)."""

        layout = QVBoxLayout(self)
        layout.setSpacing(12)
        self.target_label = QLabel()
        self.target_label.setObjectName("target")
        self.target_label.setWordWrap(True)
        self.target_label.setTextFormat(Qt.TextFormat.PlainText)
        self.target_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.target_label)

        row = QHBoxLayout()
        row.setSpacing(12)
        self.send = QCheckBox("Send a &test message")
        self.send.setObjectName("send")
        self.send.setAccessibleName("Send a test message")
        self.send.setToolTip("Off: the conversation stops before the message, so nothing is delivered.")
        self.send.toggled.connect(lambda _on: self._update_send_hint())
        self.send_hint = QLabel("Press Run again to use this.")
        self.send_hint.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.send_hint.setVisible(False)
        row.addWidget(self.send)
        row.addWidget(self.send_hint)
        row.addStretch(1)
        layout.addLayout(row)

        self.note = StatusLine()
        self.note.setObjectName("note")
        layout.addWidget(self.note)

        self.controller = DiagnosticsController(lambda target: self.services.start_run(target), self)
        self.view = DiagnosticsView(self.controller)
        self.view.runAgainRequested.connect(self.start)
        self.controller.stateChanged.connect(lambda _state: self._state_changed())
        self.controller.runEnded.connect(self._run_ended)
        layout.addWidget(self.view, 1)

        self.outcome = StatusLine()
        self.outcome.setObjectName("outcome")
        layout.addWidget(self.outcome)
        self.setTabOrder(self.send, self.view.cancel_button)

    # -- the wizard's hooks ------------------------------------------------------------------------------

    def initializePage(self) -> None:
        plan = self.plan
        self.target_label.setText(describe_target(plan, self.services))
        mailbox = plan.tenant.mailbox
        shown = mailbox.replace("&", "&&")  # a literal & in a button's text, not a shortcut
        self.send.setText(f"Send a &test message to {shown}" if mailbox else "Send a &test message")
        self.send.setEnabled(bool(mailbox))
        self._secret, self._secret_profile = None, None
        self._source = None
        self.outcome.clear()
        self.view.set_checks(default_checks())
        self.start()

    def cleanupPage(self) -> None:
        """Back: stop testing what is about to change."""
        self.stop()
        super().cleanupPage()

    def isComplete(self) -> bool:
        return self.controller.state is RunState.FINISHED

    def validatePage(self) -> bool:
        return self.plan.report is not None

    def hideEvent(self, event: QHideEvent) -> None:
        # The window closed (not minimised; QWizard also hides its current page for a moment when the
        # buttons change): nothing should keep connecting on its behalf.
        if not event.spontaneous() and not self.window().isVisible():
            self.stop()
        super().hideEvent(event)

    # -- running -----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Read the password (once), then run the checks; a run under way is cancelled."""
        self.tasks.cancel_all()
        self.tasks.start(self._start())

    def stop(self) -> None:
        self.tasks.cancel_all()
        self.controller.cancel()

    async def _start(self) -> None:
        if not shiboken6.isValid(self):  # the window went away before the task got its turn
            return
        plan = self.plan
        if signs_in(plan) and plan.auth == "oauth":
            secret, tokens = None, await self._token_provider(plan)
        else:
            secret, tokens = await self._read_secret(plan), None
        target = build_target(
            plan,
            self.services,
            secret,
            send=self.send.isChecked() and self.send.isEnabled(),
            token_provider=tokens,
        )
        self.target = target
        self.outcome.clear()
        self.controller.start(target)
        self._update_send_hint()

    async def _read_secret(self, plan: SetupPlan) -> str | None:
        if not signs_in(plan):
            self.note.clear()
            return None
        profile = plan.profile
        if not profile:
            self.note.set_status("skip", "No profile holds a password, so the sign-in check is skipped.")
            return None
        if self._secret is not None and self._secret_profile == profile:
            return self._secret
        self.note.set_status("running", f"Reading the password of the profile '{profile}' from the keyring…")
        make_store = self.services.secret_store

        def find() -> str | None:
            return make_store().find(profile)

        try:
            secret = await asyncio.to_thread(find)
        except asyncio.CancelledError:
            if shiboken6.isValid(self):
                self.note.clear()
            raise
        except RelayWizardError as exc:
            self.note.set_status("fail", f"{exc.one_line()} The sign-in check is skipped.")
            return None
        if secret is None:
            self.note.set_status(
                "warn",
                f"No password is saved for the profile '{profile}', so the sign-in check is skipped. "
                "Go Back to Credentials to save it.",
            )
            return None
        self._secret, self._secret_profile = secret, profile
        self.note.clear()
        return secret

    async def _token_provider(self, plan: SetupPlan) -> Callable[[], Awaitable[str]] | None:
        """OAuth: the saved sign-in (or the app's credential) as a token source, made once per visit."""
        if not plan.secret_stored:
            self.note.set_status(
                "skip",
                "Nobody signed in with OAuth on the Credentials page, so the sign-in check is skipped.",
            )
            return None
        if self._source is not None:
            return self._source.token
        from relaywizard.gui import oauth_source

        try:
            source = await oauth_source.token_source(plan, self.services)
        except RelayWizardError as exc:
            self.note.set_status("fail", f"{exc.one_line()} The sign-in check is skipped.")
            return None
        self._source = source
        self.note.clear()
        return source.token

    def _state_changed(self) -> None:
        self.completeChanged.emit()
        self.send.setEnabled(self.controller.state is not RunState.RUNNING and bool(self.plan.tenant.mailbox))
        self._update_send_hint()

    def _run_ended(self, report: Report) -> None:
        if report.cancelled:
            return
        self.plan.report = report
        data = report.result("smtp.data")
        message_id = data.data.get("message_id") if data is not None and data.status is Status.PASS else None
        self.plan.test_message_id = str(message_id) if message_id else None
        if self.plan.test_message_id:
            self.outcome.set_status(
                "pass",
                f"The test message {self.plan.test_message_id} was accepted; it should arrive in "
                f"{self.plan.tenant.mailbox} within a minute.",
            )
        elif data is not None and data.status is Status.FAIL:
            self.outcome.set_status("fail", f"The test message was not accepted: see {data.title} above.")

    def _update_send_hint(self) -> None:
        ran_with = self.target.send if self.target is not None else False
        self.send_hint.setVisible(
            self.controller.state is not RunState.RUNNING and self.send.isChecked() != ran_with
        )
