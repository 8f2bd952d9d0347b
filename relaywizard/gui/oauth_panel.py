"""The credentials page's OAuth branch: delegated sign-in with a device code or in this computer's
browser, or an app's own credential saved to the keyring, then "Validate" (a token, and AUTH XOAUTH2
at the SMTP endpoint), with the app registration's steps and PowerShell beside them.

Everything slow runs as asyncio tasks on the qasync loop; MSAL and the keyring run in threads
(``TokenSource`` does that), so the window never waits for the sign-in service.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Callable
from datetime import date
from pathlib import Path

import shiboken6
from PySide6.QtCore import QDate, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QFont, QGuiApplication
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QDateEdit,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from relaywizard.core import app_registration
from relaywizard.core.errors import RelayWizardError
from relaywizard.core.plan import OAuthFlow, SetupPlan
from relaywizard.gui import oauth_source
from relaywizard.gui.services import Services
from relaywizard.gui.widgets import BackgroundTasks, StatusLine, ValidatedLineEdit

TENANT_HINT = "The Directory (tenant) ID from the app registration's Overview, or a domain of the tenant."
CLIENT_HINT = "The Application (client) ID from the app registration's Overview."
BROWSER_WAIT = 300.0
"""Seconds a browser sign-in may take before it is given up (MSAL's loopback listener closes then)."""


def _share_label_column(*forms: QFormLayout) -> None:
    """Give separate forms one label column width, so their fields start at the same x (the tenant and
    client ID above, the app-only credential below, shown or hidden by the flow chosen)."""
    labels: list[QWidget] = []
    for form in forms:
        for row in range(form.rowCount()):
            item = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
            widget = item.widget() if item is not None else None
            if widget is not None:
                labels.append(widget)
    width = max((label.sizeHint().width() for label in labels), default=0)
    for label in labels:
        label.setMinimumWidth(width)


class OAuthPanel(QWidget):
    """Delegated or app-only OAuth for ``plan``'s mailbox; ``changed`` whenever ``is_ready()`` may have."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tasks = BackgroundTasks()
        self._plan: SetupPlan | None = None
        self._services: Services | None = None
        self._profile: Callable[[], str | None] = lambda: None
        self.signed_in_as: str | None = None
        """The account whose sign-in is saved (delegated), for the current tenant, app and profile."""
        self.saved_profile: str | None = None
        """The keyring profile the app's credential was saved to (or found in)."""
        self.backend = ""
        self._signing_in: asyncio.Task[object] | None = None
        self._busy = False
        self._generation = 0

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(12)

        kind_row = QHBoxLayout()
        kind_row.setSpacing(18)
        self.delegated = QRadioButton("The &mailbox signs in (delegated)")
        self.delegated.setObjectName("kind_delegated")
        self.delegated.setToolTip("Someone signs in once as the mailbox; relaywizard keeps the sign-in.")
        self.app_only = QRadioButton("The &app signs in on its own (app-only)")
        self.app_only.setObjectName("kind_app")
        self.app_only.setToolTip("The app's client secret or certificate; for unattended relays.")
        self.kind_group = QButtonGroup(self)
        self.kind_group.addButton(self.delegated)
        self.kind_group.addButton(self.app_only)
        self.delegated.setChecked(True)
        kind_row.addWidget(self.delegated)
        kind_row.addWidget(self.app_only)
        kind_row.addStretch(1)
        layout.addLayout(kind_row)

        form = QFormLayout()
        form.setVerticalSpacing(10)
        form.setHorizontalSpacing(16)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.tenant = ValidatedLineEdit(
            app_registration.tenant,
            accessible_name="Tenant",
            placeholder="contoso.onmicrosoft.com or the tenant id",
            hint=TENANT_HINT,
        )
        self.tenant.setObjectName("tenant")
        self.client_id = ValidatedLineEdit(
            app_registration.client_id,
            accessible_name="Application (client) ID",
            placeholder="00000000-0000-0000-0000-000000000000",
            hint=CLIENT_HINT,
        )
        self.client_id.setObjectName("client_id")
        self._add_row(form, "&Tenant:", self.tenant)
        self._add_row(form, "Application (&client) ID:", self.client_id)
        layout.addLayout(form)

        # -- delegated: the device code ---------------------------------------------------------------
        self.delegated_box = QWidget()
        box = QVBoxLayout(self.delegated_box)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(8)
        sign_row = QHBoxLayout()
        self.sign_in = QPushButton("&Sign in with a code…")
        self.sign_in.setObjectName("sign_in")
        self.sign_in.setAccessibleName("Sign in as the mailbox with a code")
        self.sign_in.setAutoDefault(False)
        self.sign_in.clicked.connect(self.start_sign_in)
        self.sign_in_browser = QPushButton("Sign in in the &browser…")
        self.sign_in_browser.setObjectName("sign_in_browser")
        self.sign_in_browser.setAccessibleName("Sign in as the mailbox in this computer's web browser")
        self.sign_in_browser.setToolTip(
            "Opens the Microsoft sign-in page in this computer's browser; use the code on a computer "
            "where no browser can be opened."
        )
        self.sign_in_browser.setAutoDefault(False)
        self.sign_in_browser.clicked.connect(self.start_browser_sign_in)
        sign_row.addWidget(self.sign_in)
        sign_row.addWidget(self.sign_in_browser)
        sign_row.addStretch(1)
        box.addLayout(sign_row)

        self.code_frame = QFrame()
        self.code_frame.setObjectName("code_frame")
        self.code_frame.setFrameShape(QFrame.Shape.StyledPanel)
        code_layout = QVBoxLayout(self.code_frame)
        code_layout.setSpacing(8)
        self.code_intro = QLabel()
        self.code_intro.setWordWrap(True)
        self.code_intro.setTextFormat(Qt.TextFormat.RichText)
        self.code_intro.setOpenExternalLinks(False)
        self.code_intro.linkActivated.connect(lambda _link: self.open_sign_in_page())
        code_layout.addWidget(self.code_intro)
        code_row = QHBoxLayout()
        code_row.setSpacing(12)
        self.code = QLabel()
        self.code.setObjectName("code")
        self.code.setAccessibleName("Sign-in code")
        self.code.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        code_font = QFont(self.font())
        code_font.setPointSizeF(code_font.pointSizeF() * 2)
        code_font.setBold(True)
        code_font.setStyleHint(QFont.StyleHint.Monospace)
        code_font.setFamilies(["monospace"])
        code_font.setLetterSpacing(QFont.SpacingType.PercentageSpacing, 112)
        self.code.setFont(code_font)
        self.copy_code = QPushButton("C&opy code")
        self.copy_code.setObjectName("copy_code")
        self.copy_code.setAccessibleName("Copy the sign-in code")
        self.copy_code.setAutoDefault(False)
        self.copy_code.clicked.connect(self._copy_code)
        self.open_page = QPushButton("Open the sign-in &page")
        self.open_page.setObjectName("open_page")
        self.open_page.setAutoDefault(False)
        self.open_page.clicked.connect(self.open_sign_in_page)
        code_row.addWidget(self.code)
        code_row.addWidget(self.copy_code)
        code_row.addWidget(self.open_page)
        code_row.addStretch(1)
        code_layout.addLayout(code_row)
        self.code_frame.setVisible(False)
        box.addWidget(self.code_frame)
        self.waiting = QWidget()  # while either sign-in waits for the person: progress and Cancel
        self.waiting.setObjectName("waiting")
        wait_row = QHBoxLayout(self.waiting)
        wait_row.setContentsMargins(0, 0, 0, 0)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)  # busy: the sign-in happens elsewhere
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(10)
        self.progress.setAccessibleName("Waiting for the sign-in")
        self.cancel = QPushButton("Cancel sign-in")
        self.cancel.setObjectName("cancel_sign_in")
        self.cancel.setAutoDefault(False)
        self.cancel.clicked.connect(self.cancel_sign_in)
        wait_row.addWidget(self.progress, 1)
        wait_row.addWidget(self.cancel)
        self.waiting.setVisible(False)
        box.addWidget(self.waiting)
        self.sign_in_status = StatusLine()
        self.sign_in_status.setObjectName("sign_in_status")
        box.addWidget(self.sign_in_status)
        layout.addWidget(self.delegated_box)

        # -- app-only: the credential -------------------------------------------------------------------
        self.app_box = QWidget()
        app_form = QFormLayout(self.app_box)
        app_form.setContentsMargins(0, 0, 0, 0)
        app_form.setVerticalSpacing(10)
        app_form.setHorizontalSpacing(16)
        app_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        which = QHBoxLayout()
        which.setSpacing(18)
        self.use_secret = QRadioButton("Client s&ecret")
        self.use_certificate = QRadioButton("Certificate (PE&M file)")
        self.credential_group = QButtonGroup(self)
        self.credential_group.addButton(self.use_secret)
        self.credential_group.addButton(self.use_certificate)
        self.use_secret.setChecked(True)
        which.addWidget(self.use_secret)
        which.addWidget(self.use_certificate)
        which.addStretch(1)
        app_form.addRow(QLabel("Credential:"), which)
        self.secret = QLineEdit()
        self.secret.setObjectName("client_secret")
        self.secret.setEchoMode(QLineEdit.EchoMode.Password)
        self.secret.setAccessibleName("Client secret")
        self.secret.setPlaceholderText("The secret's Value (not its Secret ID)")
        self.secret_label = QLabel("Client &secret:")
        self.secret_label.setBuddy(self.secret)
        app_form.addRow(self.secret_label, self.secret)
        self.pem = QLineEdit()
        self.pem.setObjectName("pem_file")
        self.pem.setAccessibleName("PEM file with the private key and the certificate")
        self.pem.setPlaceholderText("A PEM file holding the private key and its certificate")
        browse = QToolButton()
        browse.setText("Browse…")
        browse.setAccessibleName("Choose the PEM file")
        browse.clicked.connect(self._browse)
        pem_row = QWidget()
        pem_layout = QHBoxLayout(pem_row)
        pem_layout.setContentsMargins(0, 0, 0, 0)
        pem_layout.addWidget(self.pem, 1)
        pem_layout.addWidget(browse)
        pem_row.setFocusProxy(self.pem)
        self.pem_row = pem_row
        self.pem_label = QLabel("PEM &file:")
        self.pem_label.setBuddy(self.pem)
        app_form.addRow(self.pem_label, pem_row)
        self.expires_known = QCheckBox("The secret e&xpires on")
        self.expires_known.setObjectName("expires_known")
        self.expires = QDateEdit()
        self.expires.setObjectName("expires")
        self.expires.setCalendarPopup(True)
        self.expires.setDisplayFormat("yyyy-MM-dd")
        self.expires.setDate(QDate.currentDate().addYears(1))
        self.expires.setAccessibleName("Expiry date of the client secret")
        self.expires.setEnabled(False)
        self.expires_known.toggled.connect(self.expires.setEnabled)
        expiry_row = QHBoxLayout()
        expiry_row.addWidget(self.expires_known)
        expiry_row.addWidget(self.expires)
        expiry_row.addStretch(1)
        app_form.addRow(QLabel("Expiry:"), expiry_row)
        self.save = QPushButton("Save to &keyring")
        self.save.setObjectName("save_credential")
        self.save.setAutoDefault(False)
        self.save.clicked.connect(self.save_credential)
        save_row = QHBoxLayout()
        save_row.addWidget(self.save)
        save_row.addStretch(1)
        app_form.addRow(QLabel(), save_row)
        self.app_status = StatusLine()
        self.app_status.setObjectName("app_status")
        app_form.addRow(QLabel(), self.app_status)
        self.app_form = app_form
        layout.addWidget(self.app_box)

        # -- validate -----------------------------------------------------------------------------------
        validate_row = QHBoxLayout()
        self.validate = QPushButton("&Validate the sign-in")
        self.validate.setObjectName("validate")
        self.validate.setAccessibleName("Validate: get a token and sign in to the SMTP server with it")
        self.validate.setAutoDefault(False)
        self.validate.clicked.connect(self.start_validation)
        validate_row.addWidget(self.validate)
        validate_row.addStretch(1)
        layout.addLayout(validate_row)
        self.validation = StatusLine()
        self.validation.setObjectName("validation")
        layout.addWidget(self.validation)

        # -- the app registration's steps ---------------------------------------------------------------
        self.show_steps = QToolButton()
        self.show_steps.setObjectName("show_steps")
        self.show_steps.setText("App registration: the steps and PowerShell")
        self.show_steps.setCheckable(True)
        self.show_steps.setArrowType(Qt.ArrowType.RightArrow)
        self.show_steps.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.show_steps.setAutoRaise(True)
        self.show_steps.toggled.connect(self._toggle_steps)
        layout.addWidget(self.show_steps)
        self.steps_box = QWidget()
        steps_layout = QVBoxLayout(self.steps_box)
        steps_layout.setContentsMargins(0, 0, 0, 0)
        steps_layout.setSpacing(8)
        object_form = QFormLayout()
        object_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.object_id = ValidatedLineEdit(
            app_registration.object_id,
            accessible_name="Object ID of the Enterprise application",
            placeholder="optional: fills in New-ServicePrincipal",
            hint="From Enterprise applications (not App registrations), the app's Overview.",
            optional=True,
        )
        self.object_id.setObjectName("object_id")
        self.object_label = QLabel("Enterprise app's &object ID:")
        self.object_label.setBuddy(self.object_id.edit)
        object_form.addRow(self.object_label, self.object_id)
        steps_layout.addLayout(object_form)
        self.steps_text = QPlainTextEdit()
        self.steps_text.setObjectName("steps_text")
        self.steps_text.setReadOnly(True)
        self.steps_text.setAccessibleName("The app registration's steps")
        self.steps_text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.steps_text.setMinimumHeight(220)
        steps_layout.addWidget(self.steps_text)
        copy_row = QHBoxLayout()
        self.copy_steps = QPushButton("Copy the steps")
        self.copy_steps.setObjectName("copy_steps")
        self.copy_steps.setAutoDefault(False)
        self.copy_steps.clicked.connect(lambda: self._copy(self.steps_text.toPlainText(), "The steps"))
        self.copy_powershell = QPushButton("Copy the PowerShell")
        self.copy_powershell.setObjectName("copy_powershell")
        self.copy_powershell.setAutoDefault(False)
        self.copy_powershell.clicked.connect(
            lambda: self._copy(self.registration_powershell(), "The PowerShell")
        )
        copy_row.addWidget(self.copy_steps)
        copy_row.addWidget(self.copy_powershell)
        copy_row.addStretch(1)
        steps_layout.addLayout(copy_row)
        self.copied = StatusLine()
        steps_layout.addWidget(self.copied)
        self.steps_box.setVisible(False)
        layout.addWidget(self.steps_box)

        self.kind_group.buttonToggled.connect(lambda _button, _on: self._kind_changed())
        self.credential_group.buttonToggled.connect(lambda _button, _on: self._credential_kind_changed())
        for field in (self.tenant, self.client_id, self.object_id):
            field.edit.textChanged.connect(lambda _text: self._fields_changed())
        self.secret.textChanged.connect(lambda _text: self._update_buttons())
        self.pem.textChanged.connect(lambda _text: self._update_buttons())
        self._verification_uri = ""
        _share_label_column(form, self.app_form)
        self._credential_kind_changed()
        self._kind_changed()

    @staticmethod
    def _add_row(form: QFormLayout, text: str, field: QWidget) -> None:
        label = QLabel(text)
        label.setBuddy(field.focusProxy() or field)
        form.addRow(label, field)

    # -- what the page gives and takes ----------------------------------------------------------------

    @property
    def kind(self) -> OAuthFlow:
        return "oauth-app" if self.app_only.isChecked() else "oauth-delegated"

    def bind(self, plan: SetupPlan, services: Services, profile: Callable[[], str | None]) -> None:
        """Show ``plan``'s OAuth settings; ``profile`` gives the keyring profile chosen on the page."""
        self._plan, self._services, self._profile = plan, services, profile
        oauth = plan.oauth
        self.tasks.cancel_all()
        self._generation += 1
        self._busy = False
        (self.app_only if oauth.kind == "oauth-app" else self.delegated).setChecked(True)
        self.tenant.setText(oauth.tenant)
        self.client_id.setText(oauth.client_id)
        self.object_id.setText(oauth.object_id)
        self.expires_known.setChecked(oauth.secret_expires is not None)
        if oauth.secret_expires is not None:
            e = oauth.secret_expires
            self.expires.setDate(QDate(e.year, e.month, e.day))
        self.secret.clear()
        self.pem.clear()
        self.code_frame.setVisible(False)
        for line in (self.sign_in_status, self.app_status, self.validation, self.copied):
            line.clear()
        self.signed_in_as, self.saved_profile, self.backend = None, None, ""
        self._kind_changed()
        self.look_up()

    def apply(self, plan: SetupPlan) -> None:
        """Write what was chosen into ``plan.oauth``."""
        oauth = plan.oauth
        oauth.kind = self.kind
        oauth.tenant = self.tenant.value or ""
        oauth.client_id = self.client_id.value or ""
        oauth.object_id = self.object_id.value or ""
        oauth.authority = self._services.authority or "" if self._services else ""
        oauth.signed_in_as = (self.signed_in_as or "") if self.kind == "oauth-delegated" else ""
        if self.kind == "oauth-app" and self.expires_known.isChecked():
            d = self.expires.date()
            oauth.secret_expires = date(d.year(), d.month(), d.day())
        else:
            oauth.secret_expires = None

    def fields_valid(self) -> bool:
        return self.tenant.is_valid() and self.client_id.is_valid() and self.object_id.is_valid()

    def is_ready(self) -> bool:
        """The sign-in is usable: the delegated sign-in saved, or the app's credential in the keyring."""
        if self._busy or not self.fields_valid():
            return False
        if self.kind == "oauth-delegated":
            return self.signed_in_as is not None
        return self.saved_profile is not None and self.saved_profile == self._profile()

    @property
    def busy(self) -> bool:
        return self._busy

    def shutdown(self) -> None:
        """Leaving the page: stop signing in or validating."""
        self.tasks.cancel_all()
        self._generation += 1
        self._busy = False
        self.code_frame.setVisible(False)
        self.waiting.setVisible(False)

    # -- reacting to edits ----------------------------------------------------------------------------

    def _kind_changed(self) -> None:
        app = self.kind == "oauth-app"
        self.delegated_box.setVisible(not app)
        self.app_box.setVisible(app)
        self.tenant.set_validator(lambda text: app_registration.tenant(text, app_only=app))
        self.object_label.setVisible(app)
        self.object_id.setVisible(app)
        self._fields_changed()

    def _credential_kind_changed(self) -> None:
        certificate = self.use_certificate.isChecked()
        self.app_form.setRowVisible(self.secret, not certificate)
        self.app_form.setRowVisible(self.pem_row, certificate)
        self.expires_known.setText("The certificate e&xpires on" if certificate else "The secret e&xpires on")
        self._update_buttons()

    def _fields_changed(self) -> None:
        self._generation += 1  # an answer about other settings no longer counts
        self.signed_in_as = None
        self.validation.clear()
        self._refresh_steps()
        self._update_buttons()
        if self._plan is not None and self.isVisible():
            self.look_up()

    def profile_changed(self) -> None:
        """The page's profile name changed: what is saved under it has to be looked up again."""
        self._fields_changed()

    def _update_buttons(self) -> None:
        valid = self.fields_valid() and self._profile() is not None
        has_credential = bool(
            self.pem.text().strip() if self.use_certificate.isChecked() else self.secret.text()
        )
        self.sign_in.setEnabled(valid and not self._busy)
        self.sign_in_browser.setEnabled(valid and not self._busy)
        self.save.setEnabled(valid and has_credential and not self._busy)
        self.validate.setEnabled(valid and not self._busy and self.is_ready_to_validate())
        self.changed.emit()

    def is_ready_to_validate(self) -> bool:
        if self.kind == "oauth-delegated":
            return self.signed_in_as is not None
        return self.saved_profile is not None and self.saved_profile == self._profile()

    def _refresh_steps(self) -> None:
        mailbox = self._plan.tenant.mailbox if self._plan else ""
        self.steps_text.setPlainText(
            app_registration.text(
                self.kind,
                self.tenant.value or "",
                self.client_id.value or "",
                mailbox,
                self.object_id.value or "",
            )
        )

    def registration_powershell(self) -> str:
        mailbox = self._plan.tenant.mailbox if self._plan else ""
        return app_registration.powershell(
            self.kind,
            self.tenant.value or "",
            self.client_id.value or "",
            mailbox,
            self.object_id.value or "",
        )

    def _toggle_steps(self, shown: bool) -> None:
        self.steps_box.setVisible(shown)
        if shown:
            self._reveal(self.steps_box)
        self.show_steps.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)

    # -- the plan as it stands on screen --------------------------------------------------------------

    def _current_plan(self) -> tuple[SetupPlan, Services] | None:
        if self._plan is None or self._services is None or not self.fields_valid():
            return None
        profile = self._profile()
        if profile is None:
            return None
        plan = SetupPlan(method="smtp-auth", auth="oauth", tenant=self._plan.tenant, profile=profile)
        self.apply(plan)
        return plan, self._services

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        self._update_buttons()

    # -- what is saved already ------------------------------------------------------------------------

    def look_up(self) -> None:
        """Ask the keyring (in a thread) whether a sign-in or credential is saved for these settings."""
        current = self._current_plan()
        if current is None or self._busy:
            return
        self._generation += 1
        self.tasks.start(self._look_up(*current, self._generation))

    async def _look_up(self, plan: SetupPlan, services: Services, generation: int) -> None:
        try:
            if plan.oauth.kind == "oauth-delegated":
                source = await oauth_source.token_source(plan, services)
                who = await source.signed_in_account()
                backend = await asyncio.to_thread(lambda: services.secret_store().backend_name())
            else:
                who = None
                make_store = services.secret_store

                def find() -> tuple[bool, str]:
                    store = make_store()
                    return store.find(plan.profile) is not None, store.backend_name()

                found, backend = await asyncio.to_thread(find)
        except RelayWizardError as exc:
            if generation == self._generation and shiboken6.isValid(self):
                status = self.sign_in_status if plan.oauth.kind == "oauth-delegated" else self.app_status
                status.set_status("fail", exc.one_line())
            return
        if generation != self._generation or not shiboken6.isValid(self):
            return
        self.backend = backend
        if plan.oauth.kind == "oauth-delegated":
            if who:
                self.signed_in_as = who
                self.sign_in_status.set_status(
                    "pass",
                    f"Signed in as {who}; the sign-in is saved in the keyring ({backend}). Sign in again "
                    "only to replace it.",
                )
            else:
                self.sign_in_status.clear()
        elif found:
            self.saved_profile = plan.profile
            self.app_status.set_status(
                "pass",
                f"The app's credential is saved in the keyring ({backend}) under the profile "
                f"'{plan.profile}'. Save again only to replace it.",
            )
        else:
            self.app_status.clear()
        self._update_buttons()

    # -- delegated: signing in ------------------------------------------------------------------------

    def start_sign_in(self) -> None:
        """Delegated sign-in with a device code (the code shown here, entered on any device)."""
        self._start_sign_in(browser=False)

    def start_browser_sign_in(self) -> None:
        """Delegated sign-in in this computer's web browser (MSAL's loopback redirect)."""
        self._start_sign_in(browser=True)

    def _start_sign_in(self, *, browser: bool) -> None:
        current = self._current_plan()
        if current is None or self._busy:
            return
        self._generation += 1
        self._set_busy(True)
        self.signed_in_as = None
        self.validation.clear()
        if browser:
            mailbox = current[0].tenant.mailbox
            self.sign_in_status.set_status(
                "running", f"Sign in as {mailbox} in the browser window that opens; waiting for it…"
            )
            self.waiting.setVisible(True)
        else:
            self.sign_in_status.set_status("running", "Asking the sign-in service for a code…")
        task = self.tasks.start(self._sign_in(*current, browser=browser))
        self._signing_in = task

    async def _sign_in(self, plan: SetupPlan, services: Services, *, browser: bool = False) -> None:
        from relaywizard.auth.errors import SignInRequired

        mailbox = plan.tenant.mailbox
        try:
            source = await oauth_source.token_source(plan, services)
            if browser:
                await source.sign_in_interactively(wait=BROWSER_WAIT)
            else:
                await source.sign_in_with_device_code(self._show_code)
            backend = await asyncio.to_thread(lambda: services.secret_store().backend_name())
        except asyncio.CancelledError:
            if shiboken6.isValid(self):
                self.sign_in_status.set_status("skip", "Sign-in cancelled.")
                self._sign_in_ended()
            raise
        except RelayWizardError as exc:
            if shiboken6.isValid(self):
                text = exc.one_line()
                if browser and isinstance(exc, SignInRequired):  # the CLI's hint names its own option
                    text = f"{exc.message.rstrip('.')}. Use “Sign in with a code” instead."
                self.sign_in_status.set_status("fail", text)
                self._sign_in_ended()
            return
        if not shiboken6.isValid(self):
            return
        self.signed_in_as, self.backend = mailbox, backend
        self.sign_in_status.set_status(
            "pass",
            f"Signed in as {mailbox}; the sign-in is saved in the keyring ({backend}) as "
            f"'{source.settings.cache_profile}'.",
        )
        self._sign_in_ended()

    def _sign_in_ended(self) -> None:
        self.code_frame.setVisible(False)
        self.waiting.setVisible(False)
        self._set_busy(False)

    def _show_code(self, code: object) -> None:
        from relaywizard.auth.source import DeviceCode

        assert isinstance(code, DeviceCode)
        if not shiboken6.isValid(self):
            return
        self._verification_uri = code.verification_uri
        link = html.escape(code.verification_uri)
        mailbox = html.escape(self._plan.tenant.mailbox if self._plan else "the mailbox")
        self.code_intro.setText(
            f'On any device, open <a href="{link}">{link}</a>, enter this code and sign in as '
            f"<b>{mailbox}</b>:"
        )
        self.code.setText(code.user_code)
        self.copy_code.setText("C&opy code")
        self.code_frame.setVisible(True)
        self.waiting.setVisible(True)
        self.sign_in_status.set_status(
            "running", f"Waiting for {self._plan.tenant.mailbox if self._plan else 'the mailbox'} to sign in…"
        )
        self.copy_code.setFocus()
        self._reveal(self.code_frame)

    def _reveal(self, widget: QWidget) -> None:
        """Scroll the page's scroll area (if the panel sits in one) so ``widget`` can be seen."""
        parent = self.parentWidget()
        while parent is not None and not isinstance(parent, QScrollArea):
            parent = parent.parentWidget()
        if parent is not None:
            parent.ensureWidgetVisible(widget)

    def cancel_sign_in(self) -> None:
        if self._signing_in is not None and not self._signing_in.done():
            self._signing_in.cancel()

    def open_sign_in_page(self) -> None:
        if self._verification_uri:
            QDesktopServices.openUrl(QUrl(self._verification_uri))

    def _copy_code(self) -> None:
        QGuiApplication.clipboard().setText(self.code.text())
        self.copy_code.setText("C&opied")

    def _copy(self, text: str, what: str) -> None:
        QGuiApplication.clipboard().setText(text)
        self.copied.set_status("pass", f"{what} copied to the clipboard.")

    def _browse(self) -> None:
        name, _filter = QFileDialog.getOpenFileName(
            self, "The app's private key and certificate", "", "PEM files (*.pem *.crt *.key);;All files (*)"
        )
        if name:
            self.pem.setText(name)

    # -- app-only: the credential into the keyring ----------------------------------------------------

    def save_credential(self) -> None:
        current = self._current_plan()
        if current is None or self._busy:
            return
        plan, services = current
        certificate = self.use_certificate.isChecked()
        source = self.pem.text().strip() if certificate else self.secret.text()
        if not source:
            return
        self._generation += 1
        self._set_busy(True)
        self.app_status.set_status("running", "Saving the app's credential to the keyring…")
        self.tasks.start(self._save(plan, services, source, certificate))

    async def _save(self, plan: SetupPlan, services: Services, given: str, certificate: bool) -> None:
        from relaywizard.auth.certificate import app_credential

        make_store = services.secret_store
        profile = plan.profile

        def store_it() -> str:
            secret = given
            if certificate:
                path = Path(given).expanduser()
                try:
                    secret = path.read_text(encoding="ascii")
                except (OSError, UnicodeDecodeError):
                    raise RelayWizardError(
                        f"'{path}' could not be read as a PEM file.",
                        hint="Choose the PEM file holding the app's private key and certificate.",
                        title="Unreadable file",
                    ) from None
                if "-----BEGIN" not in secret:
                    raise RelayWizardError(f"'{path}' is not a PEM file.", title="Not a PEM file")
                app_credential(secret)  # both the key and the certificate, or one sentence
            store = make_store()
            store.set(profile, secret)
            return store.backend_name()

        try:
            backend = await asyncio.to_thread(store_it)
        except RelayWizardError as exc:
            if shiboken6.isValid(self):
                self.app_status.set_status("fail", exc.one_line())
                self._set_busy(False)
            return
        if not shiboken6.isValid(self):
            return
        self.saved_profile, self.backend = profile, backend
        self.secret.clear()
        what = "certificate" if certificate else "client secret"
        self.app_status.set_status(
            "pass", f"The app's {what} is saved in the keyring ({backend}) under the profile '{profile}'."
        )
        self._set_busy(False)

    # -- validate ---------------------------------------------------------------------------------------

    def start_validation(self) -> None:
        current = self._current_plan()
        if current is None or self._busy:
            return
        self._generation += 1
        self._set_busy(True)
        where = (
            self._services.smtp_host if self._services and self._services.smtp_host else "smtp.office365.com"
        )
        self.validation.set_status("running", f"Getting a token and signing in to {where} with it…")
        self.tasks.start(self._validate(*current))

    async def _validate(self, plan: SetupPlan, services: Services) -> None:
        try:
            found = await oauth_source.validate(plan, services)
        except asyncio.CancelledError:
            if shiboken6.isValid(self):
                self.validation.clear()
                self._set_busy(False)
            raise
        except RelayWizardError as exc:
            if shiboken6.isValid(self):
                self.validation.set_status("fail", exc.one_line())
                self._set_busy(False)
            return
        if not shiboken6.isValid(self):
            return
        self.validation.set_status("pass" if found.passed else "fail", found.message)
        self._set_busy(False)
