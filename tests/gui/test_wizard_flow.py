"""The whole wizard against the lab, page by page, as a person goes through it.

Each test starts on the first page and gets every page by clicking Next; where a person types (domain,
mailbox, password, port, allowed device) the test types with real keystrokes. The services point at the
lab (unbound for DNS, Postfix/Dovecot for SMTP) and at an in-memory keyring. Everything runs on a qasync
loop, as in the application (see tests/gui/conftest.py); every wait is bounded.
"""

from __future__ import annotations

import email
import email.policy
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import qasync
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QAbstractButton, QApplication, QCheckBox, QRadioButton, QWizard
from pytestqt.qtbot import QtBot

from relaywizard.core import trace
from relaywizard.core.netinfo import LocalAddress
from relaywizard.core.paths import AppPaths
from relaywizard.core.plan import UseCase
from relaywizard.core.secrets import SERVICE, SecretStore
from relaywizard.diagnostics.runner import RunState
from relaywizard.gui.diagnostics_view import CheckDetail, DiagnosticsView
from relaywizard.gui.pages import tests as tests_page
from relaywizard.gui.pages.capabilities import CapabilitiesPage
from relaywizard.gui.pages.credentials import CredentialsPage
from relaywizard.gui.pages.relay import RelayPage
from relaywizard.gui.pages.start import StartPage
from relaywizard.gui.pages.summary import SummaryPage
from relaywizard.gui.pages.tenant import TenantPage
from relaywizard.gui.services import Services
from relaywizard.gui.wizard import PageId, SetupWizard
from tests.core.test_secrets import MemoryKeyring
from tests.gui.conftest import run, until
from tests.lab import zones
from tests.lab.lab import Lab
from tests.lab.mail import ACCOUNTS
from tests.lab.process import free_port

pytestmark = pytest.mark.lab

SCANNER = ACCOUNTS[0]  # scanner@lab.test, scanner-pass
PROFILE = "scanner"
HOST = "127.0.0.1"
SMTP_ROWS = (
    "smtp.connect",
    "smtp.banner",
    "smtp.ehlo",
    "smtp.starttls",
    "smtp.tls",
    "smtp.auth",
    "smtp.mail_from",
    "smtp.rcpt_to",
)
#: What the device's answers are on the capabilities page (None: "Don't know").
SIGNS_IN_ITSELF: dict[str, bool | None] = {
    "tls12": True,
    "can_authenticate": True,
    "oauth": False,
    "external_recipients": True,
    "static_ip": False,
    "port_587": True,
}
TOO_OLD_FOR_TLS12: dict[str, bool | None] = {
    "tls12": False,
    "can_authenticate": True,
    "oauth": False,
    "external_recipients": True,
    "static_ip": False,
    "port_587": False,
}


@pytest.fixture(autouse=True)
def window_can_close(qapp: QApplication) -> Iterator[None]:
    """Finish hides the last window; in a test that must not quit Qt's loop, which qasync's loop rides on."""
    qapp.setQuitOnLastWindowClosed(False)
    yield
    qapp.setQuitOnLastWindowClosed(True)


@pytest.fixture(autouse=True)
def fixed_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    """The relay page lists the same network interfaces on every machine the tests run on."""
    machine = [LocalAddress("127.0.0.1", "lo", 8), LocalAddress("192.168.1.20", "eth0", 24)]
    monkeypatch.setattr(RelayPage, "address_source", staticmethod(lambda: list(machine)))


# -- a person at the wizard ------------------------------------------------------------------------------


@dataclass
class Person:
    """Clicks and types through one wizard; ``keyring`` is where the credentials page saves."""

    qtbot: QtBot
    wizard: SetupWizard
    keyring: MemoryKeyring = field(default_factory=MemoryKeyring)

    def click(self, button: QAbstractButton) -> None:
        """Click where a person would: a check box or radio button on its indicator, at the left."""
        assert button.isVisible(), button.text()
        assert button.isEnabled(), button.text()
        middle = button.height() // 2
        pos = (
            QPoint(min(middle, button.width() // 2), middle)
            if isinstance(button, QCheckBox | QRadioButton)
            else button.rect().center()
        )
        self.qtbot.mouseClick(button, Qt.MouseButton.LeftButton, pos=pos)

    def type(self, widget: Any, text: str) -> None:
        widget.setFocus()
        self.qtbot.keyClicks(widget, text)

    async def next(self, expected: PageId, within: float = 5) -> Any:
        """Click Next once it is enabled; the page it leads to."""
        button = self.wizard.button(QWizard.WizardButton.NextButton)
        await until(button.isEnabled, within, what="Next enabled")
        self.click(button)
        assert self.wizard.currentId() == expected, (self.wizard.currentId(), expected)
        return self.wizard.currentPage()

    async def finish(self) -> None:
        button = self.wizard.button(QWizard.WizardButton.FinishButton)
        await until(lambda: button.isVisible() and button.isEnabled(), what="Finish enabled")
        self.click(button)
        assert not self.wizard.isVisible()
        assert self.wizard.result() == QWizard.DialogCode.Accepted

    # -- the pages -----------------------------------------------------------------------------------

    def start(self, use_case: UseCase = UseCase.SCANNER) -> None:
        page = self.wizard.currentPage()
        assert isinstance(page, StartPage)
        self.click(page.buttons[use_case])

    def answer(self, page: CapabilitiesPage, answers: dict[str, bool | None]) -> None:
        for question, value in answers.items():
            self.click(page.buttons[question][value])

    def tenant(self, page: TenantPage, domain: str, mailbox: str) -> None:
        self.type(page.domain.edit, domain)
        self.type(page.mailbox.edit, mailbox)
        assert page.domain.value == domain, page.domain.message()
        assert page.mailbox.value == mailbox, page.mailbox.message()

    async def save_password(self, page: CredentialsPage, password: str) -> None:
        await until(lambda: not page.tasks.busy, what="the keyring look-up")
        assert page.profile.text() == PROFILE
        self.type(page.password, password)
        self.click(page.save)
        await until(lambda: page.keyring_status.status in {"pass", "fail"}, what="the keyring save")
        assert page.keyring_status.status == "pass", page.keyring_status.text()
        assert self.keyring.get_password(SERVICE, PROFILE) == password

    async def walk_to_tests(
        self, answers: dict[str, bool | None], domain: str, mailbox: str, password: str
    ) -> tests_page.TestsPage:
        """Start → capabilities → tenant → credentials → tests, on the advice for ``answers``."""
        self.start()
        capabilities = await self.next(PageId.CAPABILITIES)
        self.answer(capabilities, answers)
        assert "SMTP AUTH with a password" in capabilities.banner_text.text()
        tenant = await self.next(PageId.TENANT)
        self.tenant(tenant, domain, mailbox)
        credentials = await self.next(PageId.CREDENTIALS)
        await self.save_password(credentials, password)
        tests = await self.next(PageId.TESTS)
        assert isinstance(tests, tests_page.TestsPage)
        return tests

    async def open_row(self, view: DiagnosticsView, check_id: str) -> CheckDetail:
        """Open a row of the tests page with the keyboard (select it, right arrow); its detail, in view."""
        view.tree.setFocus()
        view.tree.setCurrentItem(view.item(check_id))
        self.qtbot.keyClick(view.tree, Qt.Key.Key_Right)
        assert view.item(check_id).isExpanded()
        detail = view.detail(check_id)
        assert detail is not None
        await until(detail.isVisible, what=f"the detail of {check_id} in view")
        return detail


def open_wizard(qtbot: QtBot, tmp_path: Path, lab: Lab, **services: Any) -> Person:
    """A fresh wizard on the first page, its services pointing at the lab and an in-memory keyring."""
    keyring = MemoryKeyring()
    lab_services: dict[str, Any] = {
        "dns_servers": ((lab.host, lab.dns_port),),
        "smtp_host": lab.host,
        "smtp_port": lab.submission_port,
        "ca_file": str(lab.ca_file),
    }
    wizard = SetupWizard(
        services=Services(
            paths=AppPaths.under(tmp_path / "home"),
            secret_store=lambda: SecretStore(keyring),
            **(lab_services | services),
        )
    )
    qtbot.addWidget(wizard)
    wizard.show()
    assert wizard.currentId() == PageId.START
    return Person(qtbot, wizard, keyring)


async def finished(page: tests_page.TestsPage, within: float = 30) -> None:
    await until(lambda: page.controller.state is RunState.RUNNING, what="the run started")
    await until(lambda: page.controller.state is RunState.FINISHED, within, what="the run finished")


def message_ids(lab: Lab, address: str) -> set[str]:
    found = set()
    for path in lab.message_files(address):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        found.add(str(message["Message-ID"]).strip())
    return found


def smtp_states(page: tests_page.TestsPage) -> dict[str, str]:
    return {cid: page.view.row_state(cid) for cid in SMTP_ROWS}


# -- the happy path ----------------------------------------------------------------------------------------


def test_a_scanner_signing_in_with_a_password_ends_with_a_delivered_message_and_a_report(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop, lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    person = open_wizard(qtbot, tmp_path, lab)
    wizard = person.wizard

    async def scenario() -> None:
        tests = await person.walk_to_tests(SIGNS_IN_ITSELF, "lab.test", SCANNER.login, SCANNER.password)
        plan = wizard.plan
        assert (plan.use_case, plan.method, plan.auth, plan.relay.enabled) == (
            UseCase.SCANNER,
            "smtp-auth",
            "password",
            False,
        )
        assert (plan.tenant.domain, plan.tenant.mailbox, plan.profile) == ("lab.test", SCANNER.login, PROFILE)
        assert plan.secret_stored
        assert plan.keyring_backend == MemoryKeyring.name

        # The first run tests without sending; ticking the box and Run again sends the test message.
        await finished(tests)
        assert smtp_states(tests) == dict.fromkeys(SMTP_ROWS, "pass"), lab.logs()
        assert tests.view.row_state("smtp.data") == "skip"
        before = message_ids(lab, SCANNER.login)
        person.click(tests.send)
        person.click(tests.view.run_again_button)
        await finished(tests)
        assert smtp_states(tests) == dict.fromkeys(SMTP_ROWS, "pass"), lab.logs()
        assert tests.view.row_state("smtp.data") == "pass", tests.view.summary_text("smtp.data")
        message_id = plan.test_message_id
        assert message_id
        assert message_id not in before
        assert message_id in tests.outcome.text()
        await until(lambda: message_id in message_ids(lab, SCANNER.login), 15, what="delivery to the Maildir")

        summary = await person.next(PageId.SUMMARY)
        assert isinstance(summary, SummaryPage)
        assert summary.values["Server (SMTP host)"].text() == "smtp.office365.com"
        assert summary.values["Port"].text() == "587"
        assert "A test message was sent." in summary.outcome_text.text()

        for name in ("report.html", "report.pdf"):
            target = tmp_path / name
            monkeypatch.setattr(summary, "choose_report_path", lambda target=target: target)
            person.click(summary.export_button)
            assert summary.status.text() == f"Report saved to {target}."
        html_report = (tmp_path / "report.html").read_text(encoding="utf-8")
        assert "lab.test" in html_report
        # The report's Message-ID is the delivered message's, with the trace command and the checklist.
        shown = re.search(r'<code class="message-id">([^<]+)</code>', html_report)
        assert shown is not None
        assert html.unescape(shown.group(1)) == message_id
        assert message_id in message_ids(lab, SCANNER.login)
        found = trace.trace_for(message_id)
        assert html.escape(found.powershell) in html_report
        assert html.escape(found.detail_powershell) in html_report
        step_states = dict(
            re.findall(
                r'<tr class="step" id="step-([\w.-]+)"><td class="status"><span class="(\w+)">', html_report
            )
        )
        assert step_states["smtp-auth"] == "pass", step_states  # the lab's sign-in backs it
        assert step_states["credentials"] == "pass", step_states  # saved in the keyring on the way
        assert step_states["test"] == "pass", step_states  # the DATA check's accepted message
        assert step_states["domain"] == "pass", step_states
        assert step_states["device"] == "warn", step_states  # relaywizard cannot see the device
        assert step_states["dns.dkim"] == "warn", step_states  # the lab has no Microsoft DKIM
        pdf = (tmp_path / "report.pdf").read_bytes()
        assert pdf.startswith(b"%PDF-")
        assert len(pdf) > 2000

        await person.finish()

    run(qloop, scenario(), timeout=90)


# -- what the tests page explains when something is wrong --------------------------------------------------


def test_a_wrong_password_fails_the_sign_in_and_shows_the_535_fix(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop, lab: Lab
) -> None:
    person = open_wizard(qtbot, tmp_path, lab)

    async def scenario() -> None:
        tests = await person.walk_to_tests(SIGNS_IN_ITSELF, "lab.test", SCANNER.login, "wrong-password")
        await finished(tests)
        states = smtp_states(tests)
        assert states["smtp.tls"] == "pass", lab.logs()
        assert states["smtp.auth"] == "fail", lab.logs()
        assert states["smtp.mail_from"] == "skip"
        detail = await person.open_row(tests.view, "smtp.auth")
        assert detail.fix_label is not None
        assert "re-enter the password" in detail.fix_label.text()
        found = dict(detail.facts)
        assert found["Reply code"].startswith("535")
        assert "535" in found["Server's reply"]
        assert "wrong-password" not in detail.summary.text()

    run(qloop, scenario(), timeout=60)


def test_a_closed_port_fails_the_connection_and_points_at_the_firewall(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop, lab: Lab
) -> None:
    port = free_port(HOST)
    person = open_wizard(qtbot, tmp_path, lab, smtp_port=port)

    async def scenario() -> None:
        tests = await person.walk_to_tests(SIGNS_IN_ITSELF, "lab.test", SCANNER.login, SCANNER.password)
        await finished(tests)
        assert tests.view.row_state("smtp.connect") == "fail"
        assert tests.view.row_state("smtp.banner") == "skip"
        detail = await person.open_row(tests.view, "smtp.connect")
        assert f"{HOST}:{port} refused the connection" in detail.summary.text()
        assert detail.fix_label is not None
        assert "firewall" in detail.fix_label.text()

    run(qloop, scenario(), timeout=60)


def test_spf_without_the_microsoft_include_shows_the_record_to_publish(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop, lab: Lab
) -> None:
    person = open_wizard(qtbot, tmp_path, lab)

    async def scenario() -> None:
        tests = await person.walk_to_tests(
            SIGNS_IN_ITSELF, zones.SPF_NO_MICROSOFT, SCANNER.login, SCANNER.password
        )
        await finished(tests)
        assert tests.view.row_state("dns.spf") == "fail", tests.view.summary_text("dns.spf")
        assert tests.view.row_state("dns.mx") == "pass"  # only SPF is broken on this domain
        detail = await person.open_row(tests.view, "dns.spf")
        found = dict(detail.facts)
        assert zones.MICROSOFT_INCLUDE in found["Record to publish"]
        assert zones.MICROSOFT_INCLUDE not in found["SPF record"]
        assert detail.fix_label is not None
        assert zones.MICROSOFT_INCLUDE in detail.fix_label.text()

    run(qloop, scenario(), timeout=60)


# -- the local relay ----------------------------------------------------------------------------------------


def test_a_device_too_old_for_tls12_gets_the_local_relay_which_delivers_its_test_message(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop, lab: Lab
) -> None:
    person = open_wizard(qtbot, tmp_path, lab)
    wizard = person.wizard
    port = free_port(HOST)
    relay_page = wizard.page(PageId.RELAY)
    assert isinstance(relay_page, RelayPage)

    async def scenario() -> None:
        person.start()
        capabilities = await person.next(PageId.CAPABILITIES)
        assert isinstance(capabilities, CapabilitiesPage)
        person.answer(capabilities, TOO_OLD_FOR_TLS12)
        assert capabilities.recommendation is not None
        advice = capabilities.recommendation
        assert (advice.method, advice.auth, advice.local_relay) == ("smtp-auth", "password", True)
        assert "The local relay on this computer, sending by SMTP AUTH with a password" in (
            capabilities.banner_text.text()
        )
        tenant = await person.next(PageId.TENANT)
        assert wizard.plan.relay.enabled
        assert wizard.path()[-2:] == [PageId.RELAY, PageId.SUMMARY]
        person.tenant(tenant, "lab.test", SCANNER.login)
        credentials = await person.next(PageId.CREDENTIALS)
        await person.save_password(credentials, SCANNER.password)
        tests = await person.next(PageId.TESTS)
        await finished(tests)
        assert smtp_states(tests) == dict.fromkeys(SMTP_ROWS, "pass"), lab.logs()

        page = await person.next(PageId.RELAY)
        assert page is relay_page
        try:
            page.listen_box.setFocus()
            qtbot.keyClick(page.listen_box, Qt.Key.Key_End)  # loopback is listed last
            assert page.listen_box.currentData() == HOST
            page.port_box.setFocus()
            qtbot.keyClick(page.port_box, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
            qtbot.keyClicks(page.port_box, str(port))
            assert page.port_box.value() == port
            person.type(page.allow_edit.edit, HOST)
            person.click(page.add_button)
            assert page.allow_list() == [f"{HOST}/32"]
            person.click(page.start_button)
            await until(lambda: page.state == "running", 15, what="the relay running")
            assert page.relay_status.text().startswith(f"Listening on {HOST}:{port} for {HOST}/32.")

            person.click(page.test_button)
            await until(lambda: page.test_status.status in {"pass", "fail"}, 30, what="the test message")
            assert page.test_status.status == "pass", page.test_status.text()
            message_id = wizard.plan.test_message_id
            assert message_id
            assert message_id in page.test_status.text()
            await until(lambda: message_id in message_ids(lab, SCANNER.login), 15, what="delivery")

            summary = await person.next(PageId.SUMMARY)
            assert isinstance(summary, SummaryPage)
            assert wizard.plan.relay.listen == f"{HOST}:{port}"
            assert summary.method_label.text().startswith("Method: The local relay on this computer")
            assert summary.values["Port"].text() == str(port)
            assert (
                summary.values["Server (SMTP host)"].text() == "this computer's address on the office network"
            )
            assert summary.values["Security"].text().startswith("None")
            assert page.state == "running"  # it serves the device until the wizard closes

            await person.finish()
            await until(lambda: page.relay is None and page.state == "stopped", 15, what="the relay stopped")
        finally:
            if page.relay is not None:
                await page.relay.stop()

    run(qloop, scenario(), timeout=120)
