"""Local relay: where office devices hand their mail to relaywizard, which forwards it to Microsoft 365.

Offered when the device cannot use TLS 1.2 or sign in. The page starts the real relay engine in this
process, on the running asyncio loop (qasync's in the application), and proves it with a test message
sent through it; the relay stops when the page is left (Back) or the wizard closes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from relaywizard.core import handover, m365, netinfo, settings, trace, validate
from relaywizard.core.errors import ConfigError, RelayWizardError
from relaywizard.core.netinfo import ListenChoice, LocalAddress
from relaywizard.core.plan import SetupPlan
from relaywizard.gui.sender_table import SenderTable
from relaywizard.gui.services import Services
from relaywizard.gui.widgets import BackgroundTasks, StatusLine, ValidatedLineEdit
from relaywizard.gui.wizard import PlanPage

if TYPE_CHECKING:
    from relaywizard.relay.config import RelayConfig
    from relaywizard.relay.credentials import Credentials
    from relaywizard.relay.engine import Relay
    from relaywizard.relay.forwarder_types import ForwarderEvent

log = logging.getLogger(__name__)

RelayState = Literal["stopped", "starting", "running", "stopping"]
_QUEUED_AS = re.compile(r"Queued as (\S+)")


class TestMessageError(RelayWizardError):
    default_title = "Test message not sent"


# -- what the page needs from the core (no widgets) --------------------------------------------------------


def machine_addresses() -> list[LocalAddress]:
    """This computer's addresses on interfaces that are up, from Qt (the same on every platform)."""
    from PySide6.QtNetwork import QNetworkInterface

    found: list[LocalAddress] = []
    for interface in QNetworkInterface.allInterfaces():
        if not interface.flags() & QNetworkInterface.InterfaceFlag.IsUp:
            continue
        for entry in interface.addressEntries():
            prefix = entry.prefixLength()
            found.append(
                LocalAddress(
                    entry.ip().toString(), interface.humanReadableName(), prefix if prefix >= 0 else None
                )
            )
    return found


def upstream_profile(plan: SetupPlan, services: Services) -> settings.Profile:
    """The profile the relay forwards through: the plan's, pointed elsewhere when the services say so."""
    profile = handover.profile_from_plan(plan, plan.profile.strip() or handover.suggested_profile_name(plan))
    profile.smtp_host = services.smtp_host or profile.smtp_host
    profile.smtp_port = services.smtp_port or profile.smtp_port
    profile.ca_file = services.ca_file or profile.ca_file
    return profile


def describe_upstream(plan: SetupPlan, profile: settings.Profile) -> str:
    """Where the relay forwards mail, and how it is let in, in one or two sentences."""
    host = profile.smtp_host or (m365.SMTP_AUTH_ENDPOINT.host if profile.method == "smtp-auth" else None)
    if host is None:
        return "The domain's MX endpoint, once the domain is given on the Microsoft 365 step."
    port = profile.smtp_port or (m365.SMTP_AUTH_ENDPOINT.port if profile.method == "smtp-auth" else 25)
    where = validate.format_host_port(host, port)
    if profile.method == "smtp-auth":
        how = (
            "OAuth 2.0"
            if profile.auth != "password"
            else f"the password in the keyring profile “{profile.name}”"
        )
        return f"{where} with STARTTLS, signing in as {profile.user or 'the mailbox'} with {how}."
    if profile.method == "direct-send":
        return f"{where} by Direct Send: no sign-in; only your own domain's mailboxes can receive."
    identity = plan.tenant.certificate_name or plan.tenant.public_ip or "its public IP address"
    return f"{where} through your inbound connector, which recognises this office by {identity}."


def relay_config(
    plan: SetupPlan, services: Services, listen: str, allow: list[str], senders: dict[str, str] | None = None
) -> RelayConfig:
    """The engine's configuration for this plan; a ``ConfigError`` sentence when it is not usable.

    Runs in a worker thread: the relay's host name comes from a DNS lookup that may take a while.
    """
    from relaywizard.relay.config import RelayOptions, resolve

    profile = upstream_profile(plan, services)
    if profile.method != "smtp-auth" and not profile.smtp_host:
        raise ConfigError(
            "The relay needs the domain's MX endpoint to forward to, and no domain is given.",
            hint="Go back to the Microsoft 365 step and enter the domain.",
        )
    chosen = settings.Settings(
        profiles={profile.name: profile},
        default_profile=profile.name,
        relay=settings.RelaySettings(
            profile=profile.name,
            listen=listen,
            allow=list(allow),
            senders=dict(senders or {}),
            bare_lf="normalize" if plan.relay.mend_bare_lf else "refuse",
        ),
    )
    return resolve(chosen, RelayOptions(), services.paths)


async def upstream_credentials(
    plan: SetupPlan, services: Services, config: RelayConfig
) -> Credentials | None:
    """The relay's login: the password from the keyring, or OAuth from the same token source as the
    credentials page (a first token now, so a sign-in that cannot work says so before the relay runs)."""
    if config.auth in ("oauth-app", "oauth-delegated") and config.upstream.user is not None:
        from relaywizard.auth.upstream import SourceCredentials
        from relaywizard.gui.oauth_source import token_source

        source = await token_source(plan, services)
        await source.token()
        return SourceCredentials(source, secret_expires=config.app_valid_until)
    from relaywizard.relay.credentials import password_from_keyring

    hint = "Go back to the Credentials step and save the mailbox's password."
    return await asyncio.to_thread(password_from_keyring, config, services.secret_store(), missing_hint=hint)


async def send_test_message(host: str, port: int, sender: str, recipient: str) -> tuple[str, str]:
    """Send one short message through the relay at ``host:port``; (its Message-ID, the relay's spool id)."""
    import aiosmtplib

    message, message_id = trace.test_message(
        sender,
        recipient,
        subject="relaywizard test message through the local relay",
        body="relaywizard sent this message through its relay on this computer, to prove that the relay "
        "forwards the office devices' mail to Microsoft 365. It needs no answer.",
    )
    where = validate.format_host_port(host, port)
    try:
        _refused, reply = await aiosmtplib.send(
            message, hostname=host, port=port, start_tls=False, use_tls=False, timeout=30
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        first = exc.recipients[0]
        raise TestMessageError(
            f"The relay refused the recipient: {first.code} {first.message.rstrip('.')}."
        ) from None
    except aiosmtplib.SMTPResponseException as exc:
        hint = ""
        if "not allowed to relay" in exc.message:
            hint = "Add this computer to the allowed devices, then stop and start the relay."
        raise TestMessageError(
            f"The relay refused the test message: {exc.code} {exc.message.rstrip('.')}.", hint=hint
        ) from None
    except (aiosmtplib.SMTPException, OSError) as exc:
        reason = str(exc).strip().rstrip(".") or type(exc).__name__
        raise TestMessageError(f"The test message could not reach the relay at {where}: {reason}.") from None
    queued = _QUEUED_AS.search(reply)
    return message_id, queued.group(1) if queued else ""


def _needs_admin(port: int) -> bool:
    return port < 1024 and os.name == "posix" and os.geteuid() != 0


# -- the page ----------------------------------------------------------------------------------------------


class _ReturnKey(QObject):
    """Calls ``action`` on Return/Enter in the watched widget and swallows the key."""

    def __init__(self, action: Callable[[], None], parent: QObject) -> None:
        super().__init__(parent)
        self._action = action

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        returned = isinstance(event, QKeyEvent) and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        if event.type() == QEvent.Type.KeyPress and returned:
            self._action()
            return True
        return super().eventFilter(watched, event)


class RelayPage(PlanPage):
    help_text = (
        "relaywizard's relay runs on this computer. Devices that cannot use TLS 1.2 or sign in send their "
        "mail to it on the office network, without TLS or a password; it keeps each message on disk, then "
        "forwards it to Microsoft 365 the modern way and retries what fails.<br><br>"
        "<b>Listen on</b>: the address devices connect to — pick this computer's address on the office "
        "network. Allow the port in this computer's firewall. Many devices expect port 25, but on Linux "
        "and macOS ports below 1024 need administrator rights: 2525 works without them.<br><br>"
        "<b>Allowed devices</b>: only these addresses or networks may send through the relay, so it is "
        "never an open relay. Give a device's address (just that device, e.g. 192.168.1.50) or a network "
        "(every device on it, e.g. 192.168.1.0/24).<br><br>"
        "<b>Start relay</b> runs it here while the wizard is open; <b>Send a test message</b> sends one "
        "through it and shows when Microsoft 365 took it. For everyday use run <i>relaywizard tray</i> or "
        "<i>relaywizard relay</i> with the saved settings."
    )
    #: Where the page learns this computer's addresses (tests may substitute a fixed list).
    address_source = staticmethod(machine_addresses)

    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Local relay")
        self.setSubTitle(
            "Devices hand their mail to relaywizard on this computer; it forwards it to Microsoft 365."
        )
        self.tasks = BackgroundTasks()
        self.relay: Relay | None = None
        self.state: RelayState = "stopped"
        self._choices: list[ListenChoice] = []
        self._events: dict[str, ForwarderEvent] = {}
        self._upstream_note: ForwarderEvent | None = None
        self._test: tuple[str, str, str] | None = None  # (spool id, Message-ID, recipient) awaiting delivery
        self._hooked = False
        self._stop_requested = False  # the page was left while the relay was starting

        layout = QVBoxLayout(self)
        layout.setSpacing(12)
        form = QFormLayout()
        form.setVerticalSpacing(12)
        form.setHorizontalSpacing(16)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        layout.addLayout(form)

        self.listen_box = QComboBox()
        self.listen_box.setObjectName("listen_host")
        self.listen_box.setAccessibleName("Listen on address")
        self.listen_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.listen_box.setMinimumContentsLength(24)
        self.port_box = QSpinBox()
        self.port_box.setObjectName("listen_port")
        self.port_box.setAccessibleName("Port")
        self.port_box.setRange(1, 65535)
        self.port_box.setValue(settings.DEFAULT_LISTEN_PORT)
        port_label = QLabel("&Port:")
        port_label.setBuddy(self.port_box)
        row = QHBoxLayout()
        row.setSpacing(8)
        row.addWidget(self.listen_box, 1)
        row.addSpacing(8)
        row.addWidget(port_label)
        row.addWidget(self.port_box)
        self.port_note = StatusLine()
        listen = QVBoxLayout()
        listen.setSpacing(4)
        listen.addLayout(row)
        listen.addWidget(self.port_note)
        self._add_row(form, "Listen &on:", listen, self.listen_box)

        self.allowed = QListWidget()
        self.allowed.setObjectName("allowed")
        self.allowed.setAccessibleName("Allowed devices")
        self.allowed.setMaximumHeight(self.allowed.fontMetrics().height() * 5 + 8)
        self.remove_button = QPushButton("&Remove")
        self.remove_button.setAccessibleName("Remove the selected device or network")
        self.allow_edit = ValidatedLineEdit(
            netinfo.device_network,
            accessible_name="Device address or network to allow",
            placeholder="192.168.1.50 or 192.168.1.0/24",
            hint="A device's address (just that device) or a network (every device on it).",
            optional=True,
        )
        self.allow_edit.setObjectName("allow_edit")
        self.add_button = QPushButton("&Add")
        self.add_button.setAccessibleName("Add to the allowed devices")
        self.suggestion = QLabel()
        self.suggestion.setTextFormat(Qt.TextFormat.RichText)
        self.suggestion.setWordWrap(True)
        self.suggestion.setTextInteractionFlags(
            Qt.TextInteractionFlag.LinksAccessibleByMouse | Qt.TextInteractionFlag.LinksAccessibleByKeyboard
        )
        list_row = QHBoxLayout()
        list_row.setSpacing(8)
        list_row.addWidget(self.allowed, 1)
        # The entry field keeps room for its status icon: the list keeps the same right edge.
        list_row.addSpacing(self.allow_edit.icon.width() + 8)
        list_row.addWidget(self.remove_button, 0, Qt.AlignmentFlag.AlignTop)
        add_row = QHBoxLayout()
        add_row.setSpacing(8)
        add_row.addWidget(self.allow_edit, 1)
        add_row.addWidget(self.add_button, 0, Qt.AlignmentFlag.AlignTop)
        allow = QVBoxLayout()
        allow.setSpacing(6)
        allow.addLayout(list_row)
        allow.addLayout(add_row)
        allow.addWidget(self.suggestion)
        self._add_row(form, "Allowed &devices:", allow, self.allow_edit)

        self.own_senders = QGroupBox("Give each device its own sender")
        self.own_senders.setObjectName("own_senders")
        self.own_senders.setCheckable(True)
        self.own_senders.setChecked(False)
        self.own_senders.setAccessibleName("Give each device its own sender")
        self.sender_table = SenderTable()
        senders_box = QVBoxLayout(self.own_senders)
        senders_box.addWidget(self.sender_table)
        self.sender_table.setVisible(False)
        self.own_senders.toggled.connect(self._senders_toggled)
        self.sender_table.changed.connect(self._update_controls)
        layout.addWidget(self.own_senders)

        self.mend_bare_lf = QCheckBox("Accept mail whose lines end without CR, and mend it (o&lder devices)")
        self.mend_bare_lf.setObjectName("mend_bare_lf")
        self.mend_bare_lf.setToolTip(
            "Some device firmware ends lines with LF alone, which SMTP forbids; such mail is refused "
            "(550 5.6.0) unless this is on. The end of a message must still be CRLF.CRLF."
        )
        layout.addWidget(self.mend_bare_lf)

        self.upstream = QLabel()
        self.upstream.setObjectName("upstream")
        self.upstream.setWordWrap(True)
        self.upstream.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("Forwards to:", self.upstream)

        self.start_button = QPushButton("&Start relay")
        self.stop_button = QPushButton("S&top relay")
        self.test_button = QPushButton("Send a test &message through the relay")
        buttons = QHBoxLayout()
        buttons.setSpacing(8)
        for button in (self.start_button, self.stop_button, self.test_button):
            button.setAccessibleName(button.text().replace("&", ""))
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout.addSpacing(4)
        layout.addLayout(buttons)
        self.relay_status = StatusLine()
        self.relay_status.setObjectName("relay_status")
        self.test_status = StatusLine()
        self.test_status.setObjectName("test_status")
        layout.addWidget(self.relay_status)
        layout.addWidget(self.test_status)
        layout.addStretch(1)

        self.refresh_timer = QTimer(self)
        self.refresh_timer.setInterval(1000)
        self.refresh_timer.timeout.connect(self._show_running)
        self.port_box.valueChanged.connect(self._port_changed)
        self.listen_box.currentIndexChanged.connect(lambda _index: self._show_suggestion())
        # Return in the entry field adds the entry; it must not also press the wizard's Next button.
        self._return_adds = _ReturnKey(self._add_typed, self)
        self.allow_edit.edit.installEventFilter(self._return_adds)
        self.allow_edit.validityChanged.connect(lambda _valid: self._update_controls())
        self.allow_edit.edit.textChanged.connect(lambda _text: self._update_controls())
        self.add_button.clicked.connect(self._add_typed)
        self.remove_button.clicked.connect(self._remove_selected)
        self.allowed.itemSelectionChanged.connect(self._update_controls)
        self.suggestion.linkActivated.connect(self._add_suggestion)
        self.start_button.clicked.connect(self.request_start)
        self.stop_button.clicked.connect(lambda: self.tasks.start(self.stop_relay()))
        self.test_button.clicked.connect(lambda: self.tasks.start(self.send_test()))
        self.setTabOrder(self.listen_box, self.port_box)
        self.setTabOrder(self.port_box, self.allowed)
        self.setTabOrder(self.allowed, self.remove_button)
        self.setTabOrder(self.remove_button, self.allow_edit)
        self.setTabOrder(self.allow_edit, self.add_button)
        self.setTabOrder(self.add_button, self.start_button)

    @staticmethod
    def _add_row(form: QFormLayout, text: str, field: QVBoxLayout, buddy: QWidget) -> None:
        label = QLabel(text)
        label.setBuddy(buddy)
        form.addRow(label, field)

    # -- the wizard's calls ----------------------------------------------------------------------------

    def initializePage(self) -> None:
        if not self._hooked:
            self.setup.finished.connect(lambda _result: self.shutdown())
            self._hooked = True
        host, port = self._planned_listen()
        self._choices = netinfo.listen_choices(self.address_source())
        if host and all(choice.host != host for choice in self._choices):
            self._choices.insert(0, ListenChoice(host, f"{host} — from the saved settings", "lan"))
        self.listen_box.blockSignals(True)
        self.listen_box.clear()
        for choice in self._choices:
            self.listen_box.addItem(choice.label, choice.host)
        hosts = [choice.host for choice in self._choices]
        self.listen_box.setCurrentIndex(hosts.index(host) if host in hosts else 0)
        self.listen_box.blockSignals(False)
        self.port_box.setValue(port)
        self.allowed.clear()
        self.allowed.addItems(self.plan.relay.allow)
        self.sender_table.set_senders(self.plan.relay.senders)
        self.sender_table.set_default(
            self.plan.tenant.sender.strip() or self.plan.tenant.mailbox.strip() or None
        )
        self.own_senders.setChecked(bool(self.plan.relay.senders))
        self.mend_bare_lf.setChecked(self.plan.relay.mend_bare_lf)
        self.upstream.setText(describe_upstream(self.plan, upstream_profile(self.plan, self.services)))
        self._port_changed(port)
        self._show_suggestion()
        self._update_controls()

    def _planned_listen(self) -> tuple[str, int]:
        try:
            return validate.host_port(self.plan.relay.listen, settings.DEFAULT_LISTEN_PORT)
        except ValueError:
            return "", settings.DEFAULT_LISTEN_PORT

    def isComplete(self) -> bool:
        senders_ok = not self.own_senders.isChecked() or self.sender_table.is_valid()
        return self.allowed.count() > 0 and senders_ok and self.state in ("stopped", "running")

    def validatePage(self) -> bool:
        self._write_plan()
        return True

    def cleanupPage(self) -> None:
        """Back: the relay stops, since its settings may be about to change."""
        self.shutdown()
        super().cleanupPage()

    def shutdown(self) -> asyncio.Task[None] | None:
        """Stop the relay if it runs (leaving the page or the wizard); the task to await, if any."""
        self._test = None
        if self.state == "starting":
            self._stop_requested = True
        if self.relay is None:
            return None
        return self.tasks.start(self.stop_relay())

    # -- the plan --------------------------------------------------------------------------------------

    def listen(self) -> str:
        host = str(self.listen_box.currentData() or netinfo.ANY_IPV4)
        return validate.format_host_port(host, self.port_box.value())

    def allow_list(self) -> list[str]:
        return [self.allowed.item(row).text() for row in range(self.allowed.count())]

    def senders(self) -> dict[str, str]:
        """The sender per device, when the admin asked for one."""
        return self.sender_table.senders() if self.own_senders.isChecked() else {}

    def _senders_toggled(self, on: bool) -> None:
        self.sender_table.setVisible(on)
        if on and not self.sender_table.table.rowCount():
            self.sender_table.add_row()
        self._update_controls()

    def _write_plan(self) -> None:
        self.plan.relay.listen = self.listen()
        self.plan.relay.allow = self.allow_list()
        self.plan.relay.senders = self.senders()
        self.plan.relay.mend_bare_lf = self.mend_bare_lf.isChecked()

    # -- the allow-list editor -------------------------------------------------------------------------

    def _add(self, network: str) -> None:
        existing = self.allowed.findItems(network, Qt.MatchFlag.MatchExactly)
        if existing:
            self.allowed.setCurrentItem(existing[0])
        else:
            self.allowed.addItem(network)
            self.allowed.setCurrentRow(self.allowed.count() - 1)
        self._write_plan()
        self._show_suggestion()
        self.completeChanged.emit()
        self._update_controls()

    def _add_typed(self) -> None:
        value = self.allow_edit.value
        if not self.allow_edit.text().strip() or not value or not self.add_button.isEnabled():
            return
        self._add(value)
        self.allow_edit.setText("")
        self.allow_edit.touched = False
        self.allow_edit.revalidate()

    def _remove_selected(self) -> None:
        for item in self.allowed.selectedItems():
            self.allowed.takeItem(self.allowed.row(item))
        self._write_plan()
        self._show_suggestion()
        self.completeChanged.emit()
        self._update_controls()

    def _current_choice(self) -> ListenChoice | None:
        index = self.listen_box.currentIndex()
        return self._choices[index] if 0 <= index < len(self._choices) else None

    def _show_suggestion(self) -> None:
        choice = self._current_choice()
        network = netinfo.suggested_network(choice) if choice else None
        if network is None or network in self.allow_list() or self.state != "stopped":
            self.suggestion.setVisible(False)
            return
        what = (
            "this computer" if choice and choice.kind == "loopback" else "every device on the office network"
        )
        self.suggestion.setText(f'<a href="{network}">Allow {what} ({network})</a>')
        self.suggestion.setAccessibleName(f"Allow {what} ({network})")
        self.suggestion.setVisible(True)

    def _add_suggestion(self, network: str) -> None:
        if self.state == "stopped":
            self._add(network)

    def _port_changed(self, port: int) -> None:
        if _needs_admin(port):
            self.port_note.set_status(
                "warn",
                f"Port {port} needs administrator rights on this computer: start relaywizard as "
                f"administrator (root), or use a port from 1024 up such as {settings.DEFAULT_LISTEN_PORT}.",
            )
        else:
            self.port_note.clear()

    # -- the relay -------------------------------------------------------------------------------------

    def _set_state(self, state: RelayState) -> None:
        self.state = state
        self._update_controls()
        self._show_suggestion()
        self.completeChanged.emit()

    def _update_controls(self) -> None:
        stopped = self.state == "stopped"
        for widget in (self.listen_box, self.port_box, self.allowed, self.allow_edit, self.mend_bare_lf):
            widget.setEnabled(stopped)
        typed = bool(self.allow_edit.text().strip())
        self.add_button.setEnabled(stopped and typed and self.allow_edit.value is not None)
        self.remove_button.setEnabled(stopped and bool(self.allowed.selectedItems()))
        self.start_button.setEnabled(stopped and self.allowed.count() > 0)
        self.stop_button.setEnabled(self.state == "running")
        self.test_button.setEnabled(self.state == "running" and bool(self.plan.tenant.mailbox.strip()))
        # Why Start and Finish wait, unless the status line has something else to say.
        if stopped and self.allowed.count() == 0 and self.relay_status.status in (None, "pending"):
            self.relay_status.set_status(
                "pending", "Add a device or network: nothing else may send through the relay."
            )
        elif self.relay_status.status == "pending" and self.allowed.count() > 0:
            self.relay_status.clear()

    def request_start(self) -> None:
        """Start the relay ("Start relay"); the page shows it starting at once, the work runs as a task."""
        if self.state != "stopped" or self.allowed.count() == 0:
            return
        self._write_plan()
        self._set_state("starting")  # now, not when the task first runs: a second click or leaving sees it
        self._stop_requested = False
        if self.tasks.start(self._start_relay()) is None:
            self._set_state("stopped")

    async def _start_relay(self) -> None:
        """Build the configuration from the plan, read the secret off the GUI thread, start the engine."""
        self._events.clear()
        self._upstream_note = None
        self.test_status.clear()
        self.relay_status.set_status("running", "Starting the relay…")
        plan, services, listen, allow = self.plan, self.services, self.listen(), self.allow_list()
        senders = self.senders()
        try:
            config = await asyncio.to_thread(relay_config, plan, services, listen, allow, senders)
            credentials = await upstream_credentials(plan, services, config)
            from relaywizard.relay.engine import Relay

            relay = Relay(config, credentials, on_event=self._on_event)
            await relay.start()
        except RelayWizardError as exc:
            self._set_state("stopped")
            self.relay_status.set_status("fail", exc.one_line())
            return
        except Exception as exc:  # a bug must still leave the page usable and say something
            log.exception("the relay did not start")
            self._set_state("stopped")
            self.relay_status.set_status("fail", f"The relay did not start: {exc}.")
            return
        self.relay = relay
        self._set_state("running")
        if self._stop_requested:  # left meanwhile: it must not keep running unseen
            await self.stop_relay()
            return
        self.refresh_timer.start()
        self._show_running()

    async def stop_relay(self) -> None:
        """Stop accepting; what is queued stays on disk and goes out when the relay runs again."""
        relay = self.relay
        if relay is None or self.state != "running":
            return
        self._set_state("stopping")
        self.refresh_timer.stop()
        self.relay_status.set_status("running", "Stopping the relay…")
        try:
            await relay.stop()
        except RelayWizardError as exc:
            self.relay_status.set_status("fail", exc.one_line())
        else:
            waiting = self._waiting(relay)
            stays = f" {waiting} message(s) stay queued and go out when it runs again." if waiting else ""
            self.relay_status.set_status("skip", f"The relay is stopped.{stays}")
        finally:
            self.relay = None
            self._set_state("stopped")

    @staticmethod
    def _waiting(relay: Relay) -> int:
        counts = relay.counts()
        return sum(count for state, count in counts.items() if state.value in ("queued", "sending"))

    def _show_running(self) -> None:
        relay = self.relay
        if relay is None or self.state != "running":
            return
        counts = {state.value: count for state, count in relay.counts().items()}
        host, port = relay.address
        allowed = ", ".join(self.allow_list())
        delivered, failed = counts.get("done", 0), counts.get("dead", 0)
        text = (
            f"Listening on {validate.format_host_port(host, port)} for {allowed}. In the queue: "
            f"{self._waiting(relay)} waiting, {delivered} delivered, {failed} failed."
        )
        note = self._upstream_note
        if note is not None and note.kind in ("auth_failed", "upstream_down"):
            self.relay_status.set_status("warn", f"{text} {note.text.strip().rstrip('.')}.")
        else:
            self.relay_status.set_status("pass", text)

    def _on_event(self, event: ForwarderEvent) -> None:
        """The forwarder's news, in the loop's thread (the GUI thread under qasync)."""
        if event.envelope_id is not None:
            self._events[event.envelope_id] = event  # the test's may come before its 250 is read
            while len(self._events) > 100:
                del self._events[next(iter(self._events))]
        elif event.kind in ("auth_failed", "upstream_down", "upstream_up"):
            self._upstream_note = event
        if self._test is not None and event.envelope_id == self._test[0]:
            self._show_test_event(event)
        self._show_running()

    # -- the test message ------------------------------------------------------------------------------

    async def send_test(self) -> None:
        """Send one message through the relay as a device would; its delivery shows when it happens."""
        relay = self.relay
        if relay is None or self.state != "running":
            return
        host, port = relay.address
        if ipaddress.ip_address(host).is_unspecified:
            host = "::1" if ":" in host else "127.0.0.1"
        recipient = self.plan.tenant.mailbox.strip()
        sender = self.plan.tenant.sender.strip() or recipient
        self.test_button.setEnabled(False)
        self.test_status.set_status("running", f"Sending a test message to {recipient} through the relay…")
        try:
            message_id, spool_id = await send_test_message(host, port, sender, recipient)
        except RelayWizardError as exc:
            self.test_status.set_status("fail", exc.one_line())
            return
        finally:
            self._update_controls()
        self.plan.test_message_id = message_id
        self._test = (spool_id, message_id, recipient)
        event = self._events.get(spool_id)
        if event is not None:
            self._show_test_event(event)
        else:
            self.test_status.set_status(
                "running",
                f"The relay queued the test message {message_id} and is forwarding it to Microsoft 365…",
            )

    def _show_test_event(self, event: ForwarderEvent) -> None:
        assert self._test is not None
        spool_id, message_id, recipient = self._test
        at = time.strftime("%H:%M:%S", time.localtime(event.at))
        reply = (event.reply or event.text).strip().rstrip(".")
        explanation = ""
        if self.relay is not None and event.kind != "delivered":
            try:
                attempts = self.relay.spool.get(spool_id).attempts
            except RelayWizardError:
                attempts = []
            explanation = f" {attempts[-1].explanation}" if attempts and attempts[-1].explanation else ""
        if event.kind == "delivered":
            self._test = None
            upstream = self.relay.config.upstream.host if self.relay is not None else "Microsoft 365"
            self.test_status.set_status(
                "pass",
                f"Delivered at {at}: {upstream} accepted the test message {message_id} for {recipient}.",
            )
        elif event.kind == "deferred":
            self.test_status.set_status(
                "warn", f"Not delivered yet ({at}): {reply}. The relay keeps it and retries.{explanation}"
            )
        elif event.kind == "dead":
            self._test = None
            self.test_status.set_status(
                "fail", f"The test message was refused at {at}: {reply}.{explanation}"
            )
