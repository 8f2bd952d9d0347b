"""Credentials: the mailbox's password into the OS keyring, an OAuth sign-in (oauth_panel), or why none
are needed."""

from __future__ import annotations

import asyncio
import html
from typing import Literal

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from relaywizard.core import validate
from relaywizard.core.errors import RelayWizardError
from relaywizard.gui.oauth_panel import OAuthPanel
from relaywizard.gui.widgets import BackgroundTasks, StatusLine, ValidatedLineEdit
from relaywizard.gui.wizard import PlanPage

Mode = Literal["password", "oauth", "none"]

_LOOKUP_DELAY_MS = 400
"""Wait this long after the profile name was last edited before asking the keyring about it."""


def default_profile(mailbox: str) -> str:
    """A profile name from the mailbox's local part (``scanner@contoso.com`` → ``scanner``)."""
    local = mailbox.partition("@")[0]
    try:
        return validate.profile_name(local)
    except validate.InvalidValue as exc:
        return exc.suggestion or "device"


class CredentialsPage(PlanPage):
    help_text = (
        "<b>Password</b>: relaywizard keeps the mailbox's password in this computer's keyring (GNOME "
        "Keyring or KWallet on Linux, Credential Manager on Windows, Keychain on macOS) under the profile "
        "name, and never in a file. The tests, the command line (<i>relaywizard check --profile NAME</i>) "
        "and the local relay take it from there."
        "<br><br>If the keyring is locked, unlock it (logging in to the desktop usually does) and save "
        "again. If there is none, install one; relaywizard has no plain-text fallback on purpose."
        "<br><br><b>Basic authentication</b> (a password) for SMTP AUTH is off by default for existing "
        "tenants from the end of December 2026 and is being retired; OAuth 2.0 is the replacement."
        "<br><br><b>OAuth 2.0, delegated</b>: the mailbox signs in once with a code shown here, on any "
        "device; the sign-in (a refresh token) stays in the keyring and lapses after 90 days without use. "
        "<b>App-only</b>: an app registered in Entra with the SMTP.SendAsApp permission signs in with its "
        "client secret or certificate, kept in the keyring under the profile name. <b>Validate</b> gets a "
        "token and signs in to the SMTP server with it; a 535 reply usually means the service principal "
        "was registered with the wrong object id. The app registration's steps and PowerShell are below "
        "the fields."
        "<br><br><b>Direct Send and connectors</b> do not sign in, so there is nothing to store."
    )

    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Credentials")
        self.tasks = BackgroundTasks()
        self._stored_profile: str | None = None
        """The profile a secret is known to be stored for (found or just saved)."""
        self._backend = ""
        self._lookup_generation = 0
        self._busy = False

        layout = QVBoxLayout(self)
        layout.setSpacing(14)
        self.intro = QLabel()
        self.intro.setWordWrap(True)
        layout.addWidget(self.intro)

        self.form = QFormLayout()
        self.form.setVerticalSpacing(14)
        self.form.setHorizontalSpacing(16)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        layout.addLayout(self.form)

        self.password = QLineEdit()
        self.password.setObjectName("password")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setAccessibleName("Password of the mailbox")
        self.show_password = QToolButton()
        self.show_password.setText("Show")
        self.show_password.setCheckable(True)
        self.show_password.setAccessibleName("Show the password")
        self.show_password.setToolTip("Show or hide the password")
        self.show_password.toggled.connect(self._toggle_echo)
        password_row = QWidget()
        row = QHBoxLayout(password_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(8)
        row.addWidget(self.password, 1)
        row.addWidget(self.show_password)
        password_row.setFocusProxy(self.password)
        self.password_row = password_row
        self._add_row("&Password:", password_row)

        self.profile = ValidatedLineEdit(
            validate.profile_name,
            accessible_name="Profile name",
            hint="The name the password and these settings are saved under.",
        )
        self.profile.setObjectName("profile")
        self._add_row("Pro&file name:", self.profile)

        self.save = QPushButton("&Save to keyring")
        self.save.setObjectName("save")
        self.save.setAccessibleName("Save the password to the keyring")
        self.save.setAutoDefault(False)
        self.save.clicked.connect(self._save_clicked)
        save_row = QWidget()
        save_layout = QHBoxLayout(save_row)
        save_layout.setContentsMargins(0, 0, 0, 0)
        save_layout.addWidget(self.save)
        save_layout.addStretch(1)
        self.save_row = save_row
        self.form.addRow(QLabel(), save_row)
        self.keyring_status = StatusLine()
        self.keyring_status.setObjectName("keyring_status")
        self.form.addRow(QLabel(), self.keyring_status)  # a label, not "": keeps word wrap right

        self.oauth_panel = OAuthPanel()
        self.oauth_panel.setObjectName("oauth_panel")
        self.oauth_panel.changed.connect(self.completeChanged.emit)
        # The panel (with the registration steps open) is taller than the page: it scrolls, never squeezes.
        self.oauth_scroll = QScrollArea()
        self.oauth_scroll.setWidget(self.oauth_panel)
        self.oauth_scroll.setWidgetResizable(True)
        self.oauth_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.oauth_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        layout.addWidget(self.oauth_scroll, 1)

        self.status = StatusLine()
        self.status.setObjectName("status")
        layout.addWidget(self.status)

        self.skip = QCheckBox("&Continue without a saved password (the sign-in test is skipped)")
        self.skip.setObjectName("skip")
        self.skip.setAccessibleName("Continue without a saved password")
        layout.addWidget(self.skip)

        self.note = StatusLine()
        layout.addWidget(self.note)
        self._tail = layout.count()
        layout.addStretch(1)
        self._layout = layout

        self.password.textChanged.connect(lambda _text: self._changed())
        self.password.returnPressed.connect(self._save_clicked)
        self.profile.edit.textChanged.connect(lambda _text: self._profile_edited())
        self.skip.toggled.connect(lambda _on: self.completeChanged.emit())
        self._lookup_timer = QTimer(self)
        self._lookup_timer.setSingleShot(True)
        self._lookup_timer.setInterval(_LOOKUP_DELAY_MS)
        self._lookup_timer.timeout.connect(self._look_up)

    def _add_row(self, text: str, field: QWidget) -> None:
        label = QLabel(text)
        label.setBuddy(field.focusProxy() or field)
        self.form.addRow(label, field)

    # -- which kind of credentials the plan needs ------------------------------------------------------

    @property
    def mode(self) -> Mode:
        if self.plan.method != "smtp-auth":
            return "none"
        return "oauth" if self.plan.auth == "oauth" else "password"

    def initializePage(self) -> None:
        mode = self.mode
        mailbox = self.plan.tenant.mailbox
        self.form.setRowVisible(self.password_row, mode == "password")
        self.form.setRowVisible(self.save_row, mode == "password")
        self.form.setRowVisible(self.keyring_status, mode == "password")
        self.intro.setVisible(mode != "none")
        self.form.setRowVisible(self.profile, mode != "none")
        self.skip.setVisible(mode != "none")
        self.skip.setText(
            "&Continue without signing in (the sign-in test is skipped)"
            if mode == "oauth"
            else "&Continue without a saved password (the sign-in test is skipped)"
        )
        self.oauth_scroll.setVisible(mode == "oauth")
        self._layout.setStretch(self._tail, 0 if mode == "oauth" else 1)  # the OAuth panel takes the room
        self.password.clear()
        self.show_password.setChecked(False)
        self.skip.setChecked(False)
        self.status.clear()
        self.keyring_status.clear()
        self.note.clear()
        self._stored_profile = None
        self._backend = ""
        if mode != "none":
            self.profile.setText(self.plan.profile or default_profile(mailbox))
            self._lookup_timer.stop()  # looked up below, at once
        who = f"<b>{html.escape(mailbox)}</b>" if mailbox else "the mailbox"
        if mode == "password":
            self.setSubTitle("The mailbox's password, kept in this computer's keyring.")
            self.profile.hint = "The name the password and these settings are saved under."
            self.intro.setText(
                f"The device signs in to Microsoft 365 as {who}. relaywizard keeps the password in this "
                "computer's keyring, never in a file, so the tests, the command line and the local relay "
                "can use it."
            )
            self.note.set_status(
                "warn",
                "Passwords (Basic authentication) for SMTP AUTH are off by default from the end of December "
                "2026 and are being retired; plan a move to OAuth 2.0 or a connector.",
            )
            self._look_up()
        elif mode == "oauth":
            self.setSubTitle("Modern authentication (OAuth 2.0) for the mailbox.")
            self.profile.hint = "The name the sign-in and these settings will be saved under."
            self.intro.setText(
                f"The device signs in to Microsoft 365 as {who} with OAuth 2.0 (XOAUTH2): either the mailbox "
                "signs in once, or an app registered in Entra signs in with its own secret or certificate. "
                "relaywizard keeps the sign-in in this computer's keyring, never in a file."
            )
            self.oauth_panel.bind(self.plan, self.services, lambda: self.profile.value)
        else:
            self.setSubTitle("Nothing to sign in with, so nothing to store.")
            self.status.set_status("pass", f"No credentials are needed. {self._no_credentials_reason()}")
        self.profile.revalidate()
        self._update_save()

    def _no_credentials_reason(self) -> str:
        tenant = self.plan.tenant
        if self.plan.method == "direct-send":
            return (
                "Direct Send delivers straight to your domain's Microsoft 365 MX endpoint without signing "
                "in. Microsoft 365 accepts the mail because it is addressed to mailboxes of your own "
                "organisation and comes from one of your domains."
            )
        if tenant.certificate_name:
            how = f"by the name on the device's TLS certificate ({tenant.certificate_name})"
        elif tenant.public_ip:
            how = f"by its public IP address ({tenant.public_ip})"
        else:
            how = "by its public IP address or the device's certificate"
        return f"A connector relay does not sign in: an inbound connector recognises your office {how}."

    # -- typing ----------------------------------------------------------------------------------------

    def _toggle_echo(self, shown: bool) -> None:
        mode = QLineEdit.EchoMode.Normal if shown else QLineEdit.EchoMode.Password
        self.password.setEchoMode(mode)
        self.show_password.setText("Hide" if shown else "Show")
        self.show_password.setAccessibleName("Hide the password" if shown else "Show the password")

    def _changed(self) -> None:
        self._update_save()
        self.completeChanged.emit()

    def _profile_edited(self) -> None:
        self._lookup_generation += 1  # an answer about the old name no longer counts
        self._stored_profile = None
        self._changed()
        if self.mode == "password" and self.profile.is_valid() and self.isVisible():
            self._lookup_timer.start()
        elif self.mode == "oauth":
            self.oauth_panel.profile_changed()

    def _update_save(self) -> None:
        stored = self._is_stored()
        self.save.setText("&Replace in keyring" if stored else "&Save to keyring")
        self.save.setEnabled(not self._busy and bool(self.password.text()) and self.profile.is_valid())
        self.password.setPlaceholderText(
            "Saved in the keyring; type a new password to replace it" if stored else ""
        )

    def _is_stored(self) -> bool:
        return self._stored_profile is not None and self._stored_profile == self.profile.value

    # -- the keyring, off the GUI thread ---------------------------------------------------------------

    def _look_up(self) -> None:
        profile = self.profile.value
        if self.mode != "password" or profile is None:
            return
        self._lookup_generation += 1
        self.tasks.start(self._find(profile, self._lookup_generation))

    async def _find(self, profile: str, generation: int) -> None:
        make_store = self.services.secret_store

        def find() -> tuple[bool, str]:
            store = make_store()
            return store.find(profile) is not None, store.backend_name()

        try:
            found, backend = await asyncio.to_thread(find)
        except RelayWizardError as exc:
            if generation == self._lookup_generation:
                self.keyring_status.set_status("fail", exc.one_line())
            return
        if generation != self._lookup_generation or self._busy:
            return
        if found:
            self._stored_profile, self._backend = profile, backend
            self.keyring_status.set_status(
                "pass",
                f"A password for the profile '{profile}' is already saved in the keyring ({backend}). "
                "Continue with it, or type a new one and replace it.",
            )
        else:
            self.keyring_status.clear()
        self._changed()

    def _save_clicked(self) -> None:
        profile, password = self.profile.value, self.password.text()
        if self._busy or profile is None or not password:
            return
        self._busy = True
        self._lookup_generation += 1
        self.keyring_status.set_status("running", "Saving the password to the keyring…")
        self._changed()
        self.tasks.start(self._save(profile, password))

    async def _save(self, profile: str, password: str) -> None:
        make_store = self.services.secret_store

        def store_secret() -> str:
            store = make_store()
            store.set(profile, password)
            return store.backend_name()

        try:
            backend = await asyncio.to_thread(store_secret)
        except RelayWizardError as exc:
            self.keyring_status.set_status("fail", exc.one_line())
        else:
            self._stored_profile, self._backend = profile, backend
            self.password.clear()
            self.show_password.setChecked(False)
            self.keyring_status.set_status(
                "pass", f"Saved in the keyring ({backend}) under the profile '{profile}'."
            )
        finally:
            self._busy = False
            self._changed()

    # -- the wizard ------------------------------------------------------------------------------------

    def isComplete(self) -> bool:
        mode = self.mode
        if mode == "none":
            return True
        if not self.profile.is_valid() or self._busy:
            return False
        if mode == "oauth":
            panel = self.oauth_panel
            return panel.fields_valid() and not panel.busy and (panel.is_ready() or self.skip.isChecked())
        if self.skip.isChecked():
            return True
        # A typed but unsaved password would silently not be used: it must be saved (or cleared) first.
        return self._is_stored() and not self.password.text()

    def validatePage(self) -> bool:
        if not self.isComplete():
            return False
        mode = self.mode
        if mode == "none":
            self.plan.profile = self.plan.profile or default_profile(self.plan.tenant.mailbox)
        else:
            self.plan.profile = self.profile.value or ""
        if mode == "oauth":
            self.oauth_panel.apply(self.plan)
            stored = self.oauth_panel.is_ready()
            backend = self.oauth_panel.backend
        else:
            stored = mode == "password" and self._is_stored()
            backend = self._backend
        self.plan.secret_stored = stored
        self.plan.keyring_backend = backend if stored else ""
        return True

    def cleanupPage(self) -> None:
        self.oauth_panel.shutdown()
        self._lookup_timer.stop()
        self._lookup_generation += 1
        super().cleanupPage()
