"""The local relay page: the real relay engine started in the wizard, a test message through it to the lab.

The relay, the keyring read and the test message are asyncio work, so these tests run the wizard on a
qasync loop (as the application does) and wait by polling with ``await asyncio.sleep`` — ``qtbot.waitUntil``
would not run them. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import socket
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import qasync
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QWidget, QWizard
from pytestqt.qtbot import QtBot

from relaywizard.core import handover
from relaywizard.core.netinfo import LocalAddress
from relaywizard.core.paths import AppPaths
from relaywizard.core.plan import SetupPlan
from relaywizard.core.secrets import SERVICE, SecretStore
from relaywizard.diagnostics.model import Method
from relaywizard.gui.pages import relay as relay_page
from relaywizard.gui.pages.relay import RelayPage
from relaywizard.gui.services import Services
from relaywizard.gui.wizard import PageId, SetupWizard
from tests.core.test_secrets import MemoryKeyring
from tests.helpers import send_with_bare_lf
from tests.lab.lab import Lab
from tests.lab.process import free_port

T = TypeVar("T")

MAILBOX = "scanner@lab.test"
PASSWORD = "scanner-pass"
PROFILE = "scanner"
HOST = "127.0.0.1"
MACHINE = [
    LocalAddress("127.0.0.1", "lo", 8),
    LocalAddress("fd00::2", "eth0", 64),
    LocalAddress("192.168.1.20", "eth0", 24),
]
OPENED: list[RelayPage] = []


@pytest.fixture
def qloop(qapp: QApplication) -> Iterator[qasync.QEventLoop]:
    """qasync's loop, as the application runs the wizard on."""
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    try:
        yield loop
        for page in OPENED:  # a relay a failed test left running (its widgets may be gone by now)
            if page.relay is not None:
                loop.run_until_complete(asyncio.wait_for(page.relay.stop(), 15))
    finally:
        OPENED.clear()
        asyncio.set_event_loop(None)
        loop.close()


@pytest.fixture(autouse=True)
def fixed_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same network interfaces on every machine the tests run on."""
    monkeypatch.setattr(RelayPage, "address_source", staticmethod(lambda: list(MACHINE)))


def run(loop: qasync.QEventLoop, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
    result: T = loop.run_until_complete(asyncio.wait_for(coroutine, timeout))
    return result


async def until(condition: Callable[[], object], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Let the loop run (Qt events and asyncio tasks) until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(0.02)


def memory_store(password: str | None = PASSWORD) -> Callable[[], SecretStore]:
    backend = MemoryKeyring()
    if password is not None:
        backend.set_password(SERVICE, PROFILE, password)
    return lambda: SecretStore(backend)


def open_page(
    qtbot: QtBot,
    tmp_path: Path,
    *,
    lab: Lab | None = None,
    port: int = 2525,
    allow: list[str] | None = None,
    store: Callable[[], SecretStore] | None = None,
    method: Method = "smtp-auth",
) -> tuple[SetupWizard, RelayPage]:
    plan = SetupPlan(method=method, auth="password" if method == "smtp-auth" else "none", profile=PROFILE)
    plan.tenant.domain, plan.tenant.mailbox = "lab.test", MAILBOX
    plan.relay.enabled = True
    plan.relay.listen = f"{HOST}:{port}"
    plan.relay.allow = list(allow or [])
    services = Services(paths=AppPaths.under(tmp_path), secret_store=store or memory_store())
    if lab is not None:
        services.smtp_host, services.smtp_port, services.ca_file = (
            lab.host,
            lab.submission_port,
            str(lab.ca_file),
        )
    wizard = SetupWizard(plan=plan, services=services)
    qtbot.addWidget(wizard)
    wizard.setStartId(PageId.RELAY)
    wizard.show()
    page = wizard.currentPage()
    assert isinstance(page, RelayPage)
    OPENED.append(page)
    return wizard, page


def click(qtbot: QtBot, button: Any) -> None:
    assert button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def finish_enabled(wizard: SetupWizard) -> bool:
    """Whether the page lets the admin go on (Next to the summary, or Finish when it is the last page)."""
    last = wizard.nextId() == -1
    button = QWizard.WizardButton.FinishButton if last else QWizard.WizardButton.NextButton
    return wizard.button(button).isEnabled()


def save_png(wizard: SetupWizard, name: str) -> None:
    scale = os.environ.get("QT_SCALE_FACTOR", "1")
    suffix = "" if scale == "1" else f"@{scale}x"
    wizard.grab().save(f"/tmp/gui-{name}{suffix}.png")


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((HOST, port)) == 0


def message_ids(lab: Lab, address: str) -> set[str]:
    found = set()
    for path in lab.message_files(address):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        found.add(str(message["Message-ID"]).strip())
    return found


# -- against the lab ---------------------------------------------------------------------------------------


@pytest.mark.lab
def test_the_relay_starts_and_delivers_a_test_message_to_the_lab(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop, lab: Lab
) -> None:
    port = free_port(HOST)
    wizard, page = open_page(qtbot, tmp_path, lab=lab, port=port)
    assert page.listen_box.currentData() == HOST
    assert page.port_box.value() == port
    assert page.upstream.text() == (
        f"{lab.host}:{lab.submission_port} with STARTTLS, signing in as {MAILBOX} with the password in the "
        f"keyring profile “{PROFILE}”."
    )
    assert not page.start_button.isEnabled()  # nobody is allowed yet
    assert not finish_enabled(wizard)
    assert page.relay_status.text() == "Add a device or network: nothing else may send through the relay."

    qtbot.keyClicks(page.allow_edit.edit, HOST)
    click(qtbot, page.add_button)
    assert page.allow_list() == [f"{HOST}/32"]
    assert wizard.plan.relay.allow == [f"{HOST}/32"]
    assert page.relay_status.isHidden()
    assert finish_enabled(wizard)

    async def scenario() -> None:
        click(qtbot, page.start_button)
        await until(lambda: page.state == "running", 15)
        assert page.relay_status.status == "pass"
        assert page.relay_status.text().startswith(f"Listening on {HOST}:{port} for {HOST}/32.")
        assert port_open(port)
        assert not page.allow_edit.isEnabled()  # the settings of a running relay are fixed

        click(qtbot, page.test_button)
        await until(lambda: page.test_status.status in {"pass", "warn", "fail"}, 30)
        assert page.test_status.status == "pass", page.test_status.text()
        message_id = wizard.plan.test_message_id
        assert message_id is not None
        assert page.test_status.text().startswith("Delivered at ")
        assert f"{lab.host} accepted the test message {message_id} for {MAILBOX}." in page.test_status.text()
        await until(lambda: message_id in message_ids(lab, MAILBOX), 15)
        await until(lambda: "1 delivered" in page.relay_status.text(), 5)
        save_png(wizard, "relay")

        click(qtbot, page.stop_button)
        await until(lambda: page.state == "stopped", 10)
        assert page.relay is None
        assert page.relay_status.text() == "The relay is stopped."
        assert not port_open(port)
        assert page.start_button.isEnabled()
        assert page.allow_edit.isEnabled()

    run(qloop, scenario())
    wizard.accept()  # Finish
    assert wizard.plan.relay.listen == f"{HOST}:{port}"
    assert wizard.plan.relay.allow == [f"{HOST}/32"]


@pytest.mark.lab
def test_mending_bare_lf_is_chosen_here_and_reaches_the_relay_and_the_settings(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop, lab: Lab
) -> None:
    port = free_port(HOST)
    wizard, page = open_page(qtbot, tmp_path, lab=lab, port=port, allow=[f"{HOST}/32"])
    assert not page.mend_bare_lf.isChecked()  # refusing is the default
    page.mend_bare_lf.setChecked(True)

    async def scenario() -> None:
        click(qtbot, page.start_button)
        await until(lambda: page.state == "running", 15)
        assert not page.mend_bare_lf.isEnabled()  # fixed while the relay runs, as its other settings
        answer = await asyncio.to_thread(send_with_bare_lf, port, "mended")
        assert answer.startswith("250 2.0.0 Queued as"), answer
        click(qtbot, page.stop_button)
        await until(lambda: page.state == "stopped", 10)

    run(qloop, scenario())
    wizard.accept()
    assert wizard.plan.relay.mend_bare_lf
    saved = handover.save_profile(wizard.plan, tmp_path / "settings.toml", PROFILE)
    assert saved.relay.bare_lf == "normalize"


@pytest.mark.lab
@pytest.mark.parametrize("leave", ["close", "back"])
def test_leaving_the_page_stops_the_relay(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop, lab: Lab, leave: str
) -> None:
    port = free_port(HOST)
    wizard, page = open_page(qtbot, tmp_path, lab=lab, port=port, allow=[f"{HOST}/32"])

    async def scenario() -> None:
        click(qtbot, page.start_button)
        await until(lambda: page.state == "running", 15)
        assert port_open(port)
        # The application's loop outlives the window; here the last window closing would quit Qt's loop.
        QApplication.setQuitOnLastWindowClosed(False)
        try:
            if leave == "close":
                wizard.reject()
            else:
                page.cleanupPage()  # what Back calls (the page was opened first: no Back button here)
            await until(lambda: page.relay is None and page.state == "stopped", 10)
        finally:
            QApplication.setQuitOnLastWindowClosed(True)
        assert not port_open(port)

    run(qloop, scenario())


def test_leaving_while_the_relay_starts_stops_it_once_started(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop
) -> None:
    port = free_port(HOST)
    _wizard, page = open_page(qtbot, tmp_path, port=port, allow=[f"{HOST}/32"])

    async def scenario() -> None:
        click(qtbot, page.start_button)
        assert page.state == "starting"
        assert not page.start_button.isEnabled()
        assert page.shutdown() is None  # nothing to stop yet: it is stopped as soon as it has started
        await until(lambda: page.state == "stopped" and page.relay_status.status == "skip", 15)
        assert page.relay is None
        assert not port_open(port)

    run(qloop, scenario())


@pytest.mark.lab
def test_a_wrong_password_shows_the_upstreams_refusal_and_the_fix(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop, lab: Lab
) -> None:
    wizard, page = open_page(
        qtbot, tmp_path, lab=lab, port=free_port(HOST), allow=[f"{HOST}/32"], store=memory_store("wrong")
    )

    async def scenario() -> None:
        click(qtbot, page.start_button)
        await until(lambda: page.state == "running", 15)
        click(qtbot, page.test_button)
        await until(lambda: page.test_status.status in {"pass", "warn", "fail"}, 30)
        await until(lambda: page.relay_status.status == "warn", 5)

    run(qloop, scenario())
    assert page.test_status.status == "warn"
    assert page.test_status.text().startswith("Not delivered yet (")
    assert "): 535 5.7.8 " in page.test_status.text()
    assert (
        "The relay keeps it and retries. The server did not accept the credentials" in page.test_status.text()
    )
    assert "1 waiting, 0 delivered, 0 failed." in page.relay_status.text()
    assert f"The upstream {lab.host}:{lab.submission_port} refused the login: 535" in page.relay_status.text()
    save_png(wizard, "relay-wrong-password")


def test_a_refused_test_message_says_why_in_one_sentence(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop
) -> None:
    """The relay only lets the allowed devices send: this computer (127.0.0.1) is not one of them."""
    port = free_port(HOST)
    _wizard, page = open_page(qtbot, tmp_path, port=port, allow=["192.168.1.0/24"], method="direct-send")

    async def scenario() -> None:
        click(qtbot, page.start_button)
        await until(lambda: page.state == "running", 15)
        click(qtbot, page.test_button)
        await until(lambda: page.test_status.status == "fail", 15)
        text = page.test_status.text()
        assert text.startswith("The relay refused the test message: 550 5.7.1 127.0.0.1 is not allowed")
        assert text.endswith("Add this computer to the allowed devices, then stop and start the relay.")
        assert page.shutdown() is not None
        await until(lambda: page.state == "stopped", 10)

    run(qloop, scenario())


# -- errors ------------------------------------------------------------------------------------------------


def test_a_port_in_use_is_one_sentence_and_nothing_runs(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop
) -> None:
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        wizard, page = open_page(qtbot, tmp_path, port=port, allow=[f"{HOST}/32"])

        async def scenario() -> None:
            click(qtbot, page.start_button)
            await until(lambda: page.relay_status.status == "fail", 15)

        run(qloop, scenario())
    assert page.relay_status.text() == (
        f"Cannot listen on {HOST}:{port}: the port is in use by another program. Stop the other program "
        "(perhaps another relay), or choose another port."
    )
    assert page.state == "stopped"
    assert page.relay is None
    assert page.start_button.isEnabled()
    assert not page.stop_button.isEnabled()
    assert not page.test_button.isEnabled()
    save_png(wizard, "relay-error")


def test_a_missing_secret_sends_the_admin_back_to_the_credentials(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop
) -> None:
    _wizard, page = open_page(
        qtbot, tmp_path, port=free_port(HOST), allow=[f"{HOST}/32"], store=memory_store(None)
    )

    async def scenario() -> None:
        click(qtbot, page.start_button)
        await until(lambda: page.relay_status.status == "fail", 15)

    run(qloop, scenario())
    assert page.relay_status.text() == (
        f"No secret is stored for profile '{PROFILE}'. Go back to the Credentials step and save the "
        "mailbox's password."
    )
    assert page.state == "stopped"


def test_a_locked_keyring_is_explained(qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop) -> None:
    import keyring.errors

    from tests.core.test_secrets import RaisingKeyring

    locked = RaisingKeyring(keyring.errors.KeyringLocked("locked"))
    _wizard, page = open_page(
        qtbot, tmp_path, port=free_port(HOST), allow=[f"{HOST}/32"], store=lambda: SecretStore(locked)
    )

    async def scenario() -> None:
        click(qtbot, page.start_button)
        await until(lambda: page.relay_status.status == "fail", 15)

    run(qloop, scenario())
    assert page.relay_status.text().startswith("The keyring (Memory Keyring) is locked. Unlock the keyring")


# -- the form ----------------------------------------------------------------------------------------------


def test_the_listen_addresses_put_the_office_network_first_and_loopback_last(
    qtbot: QtBot, tmp_path: Path
) -> None:
    wizard, page = open_page(qtbot, tmp_path)
    hosts = [page.listen_box.itemData(i) for i in range(page.listen_box.count())]
    assert hosts == ["192.168.1.20", "fd00::2", "0.0.0.0", "::", "127.0.0.1"]
    assert page.listen_box.itemText(0) == "192.168.1.20 — eth0, office network 192.168.1.0/24"
    assert page.listen_box.currentData() == HOST  # from the plan
    page.listen_box.setCurrentIndex(0)
    save_png(wizard, "relay-start")


def test_a_planned_address_that_is_not_here_is_kept(qtbot: QtBot, tmp_path: Path) -> None:
    plan_listen = "10.9.9.9:25"
    wizard, page = open_page(qtbot, tmp_path)
    wizard.plan.relay.listen = plan_listen
    page.initializePage()
    assert page.listen_box.currentText() == "10.9.9.9 — from the saved settings"
    assert page.listen() == plan_listen


def test_the_office_network_can_be_allowed_with_one_click(qtbot: QtBot, tmp_path: Path) -> None:
    wizard, page = open_page(qtbot, tmp_path)
    assert page.suggestion.text() == '<a href="127.0.0.1/32">Allow this computer (127.0.0.1/32)</a>'
    page.listen_box.setCurrentIndex(0)
    assert "Allow every device on the office network (192.168.1.0/24)" in page.suggestion.text()
    page.suggestion.linkActivated.emit("192.168.1.0/24")
    assert page.allow_list() == ["192.168.1.0/24"]
    assert page.suggestion.isHidden()  # already allowed
    page.validatePage()
    assert wizard.plan.relay.listen == "192.168.1.20:2525"
    assert wizard.plan.relay.allow == ["192.168.1.0/24"]


def test_the_allow_list_editor_judges_each_entry(qtbot: QtBot, tmp_path: Path) -> None:
    wizard, page = open_page(qtbot, tmp_path)
    qtbot.keyClicks(page.allow_edit.edit, "192.168.1.5/24")
    assert page.allow_edit.state == "invalid"
    assert "192.168.1.5 is one address inside 192.168.1.0/24" in page.allow_edit.message()
    assert page.allow_edit.suggestion == "192.168.1.0/24"
    assert not page.add_button.isEnabled()
    page.allow_edit.setText("")
    qtbot.keyClicks(page.allow_edit.edit, "scanner.local")
    assert page.allow_edit.message() == (
        "'scanner.local' is not an IP address or a network such as 192.168.1.0/24."
    )
    page.allow_edit.setText("")
    qtbot.keyClicks(page.allow_edit.edit, "fd00::50")
    qtbot.keyClick(page.allow_edit.edit, Qt.Key.Key_Return)
    qtbot.keyClicks(page.allow_edit.edit, "192.168.1.50")
    qtbot.keyClick(page.allow_edit.edit, Qt.Key.Key_Return)
    qtbot.keyClicks(page.allow_edit.edit, "192.168.1.50")  # twice: still one entry
    qtbot.keyClick(page.allow_edit.edit, Qt.Key.Key_Return)
    assert page.allow_list() == ["fd00::50/128", "192.168.1.50/32"]
    assert page.allow_edit.text() == ""
    assert page.allow_edit.message() == page.allow_edit.hint
    assert finish_enabled(wizard)
    page.allowed.setCurrentRow(0)
    click(qtbot, page.remove_button)
    page.allowed.setCurrentRow(0)
    click(qtbot, page.remove_button)
    assert page.allow_list() == []
    assert not finish_enabled(wizard)
    assert not page.start_button.isEnabled()


def test_ports_below_1024_warn_about_administrator_rights(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay_page.os, "geteuid", lambda: 1000, raising=False)
    monkeypatch.setattr(relay_page.os, "name", "posix")
    _wizard, page = open_page(qtbot, tmp_path)
    assert page.port_note.isHidden()
    page.port_box.setValue(25)
    assert page.port_note.status == "warn"
    assert page.port_note.text().startswith("Port 25 needs administrator rights on this computer")
    page.port_box.setValue(2525)
    assert page.port_note.isHidden()


@pytest.mark.parametrize(
    ("method", "upstream"),
    [
        ("direct-send", "lab-test.mail.protection.outlook.com:25 by Direct Send: no sign-in"),
        ("connector", "lab-test.mail.protection.outlook.com:25 through your inbound connector"),
    ],
)
def test_direct_send_and_connectors_forward_to_the_mx_endpoint(
    qtbot: QtBot, tmp_path: Path, method: Method, upstream: str
) -> None:
    _wizard, page = open_page(qtbot, tmp_path, method=method)
    assert page.upstream.text().startswith(upstream)


def test_the_tab_order_follows_the_form(qtbot: QtBot, tmp_path: Path) -> None:
    _wizard, page = open_page(qtbot, tmp_path, allow=[f"{HOST}/32"])
    page.allowed.setCurrentRow(0)
    expected = [page.listen_box, page.port_box, page.allowed, page.remove_button, page.allow_edit.edit]
    order: list[QWidget] = []
    widget: QWidget = page.listen_box
    for _ in range(200):  # the chain is a ring: bounded, in case a widget were missing from it
        if len(order) == len(expected):
            break
        focusable = widget.focusPolicy() & Qt.FocusPolicy.TabFocus and widget.isVisible()
        owner = next((w for w in expected if w is widget or w.isAncestorOf(widget)), None)
        if focusable and owner is not None and (not order or order[-1] is not owner):
            order.append(owner)
        widget = widget.nextInFocusChain()
    assert order == expected
