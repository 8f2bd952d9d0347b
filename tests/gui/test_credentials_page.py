"""The credentials page: the password into a keyring off the GUI thread, its failures in one sentence.

The page's keyring calls are asyncio tasks, so these tests run the wizard on a qasync loop (as the
application does) and wait by polling with ``await asyncio.sleep`` — ``qtbot.waitUntil`` would not run them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import keyring.backends.fail
import pytest
import qasync
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QLineEdit, QWizard
from pytestqt.qtbot import QtBot

from relaywizard.core.paths import AppPaths
from relaywizard.core.plan import AuthChoice, SetupPlan
from relaywizard.core.secrets import SERVICE, SecretStore
from relaywizard.diagnostics.model import Method
from relaywizard.gui.pages.credentials import CredentialsPage, default_profile
from relaywizard.gui.services import Services
from relaywizard.gui.wizard import PageId, SetupWizard
from tests.core.test_secrets import MemoryKeyring
from tests.lab.keyring import SecretServiceSession

T = TypeVar("T")


@pytest.fixture
def qloop(qapp: QApplication) -> Iterator[qasync.QEventLoop]:
    """qasync's loop, as the application runs the wizard on."""
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def run(loop: qasync.QEventLoop, coroutine: Coroutine[Any, Any, T], timeout: float = 15) -> T:
    result: T = loop.run_until_complete(asyncio.wait_for(coroutine, timeout))
    return result


async def until(condition: Callable[[], object], within: float = 5.0) -> None:
    """Let the loop run (Qt events and asyncio tasks) until ``condition()`` holds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(0.02)


def open_page(
    qtbot: QtBot,
    tmp_path: Path,
    store: Callable[[], SecretStore],
    *,
    method: Method = "smtp-auth",
    auth: AuthChoice = "password",
    mailbox: str = "scanner@contoso.com",
) -> tuple[SetupWizard, CredentialsPage]:
    plan = SetupPlan(method=method, auth=auth)
    plan.tenant.domain, plan.tenant.mailbox = "contoso.com", mailbox
    plan.tenant.public_ip = "203.0.113.10" if method == "connector" else ""
    wizard = SetupWizard(plan=plan, services=Services(paths=AppPaths.under(tmp_path), secret_store=store))
    qtbot.addWidget(wizard)
    wizard.setStartId(PageId.CREDENTIALS)
    wizard.show()
    page = wizard.currentPage()
    assert isinstance(page, CredentialsPage)
    return wizard, page


def memory_store(backend: Any) -> Callable[[], SecretStore]:
    return lambda: SecretStore(backend)


def next_enabled(wizard: SetupWizard) -> bool:
    return wizard.button(QWizard.WizardButton.NextButton).isEnabled()


def save_png(wizard: SetupWizard, name: str) -> None:
    scale = os.environ.get("QT_SCALE_FACTOR", "1")
    suffix = "" if scale == "1" else f"@{scale}x"
    wizard.grab().save(f"/tmp/gui-{name}{suffix}.png")


async def save_password(qtbot: QtBot, page: CredentialsPage, password: str) -> None:
    page.password.clear()
    typed = password.encode("ascii", "ignore").decode()
    qtbot.keyClicks(page.password, typed)  # QTest types ASCII only; the rest arrives as if pasted
    page.password.insert(password[len(typed) :])
    assert page.save.isEnabled()
    qtbot.mouseClick(page.save, Qt.MouseButton.LeftButton)
    await until(lambda: page.keyring_status.status in {"pass", "fail"})


# -- SMTP AUTH with a password -----------------------------------------------------------------------------


def test_saving_stores_the_password_under_the_profile_and_names_the_backend(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop
) -> None:
    backend = MemoryKeyring()

    async def scenario() -> None:
        wizard, page = open_page(qtbot, tmp_path, memory_store(backend))
        await until(lambda: not page.tasks.busy)
        assert page.profile.text() == "scanner"
        assert page.password.echoMode() is QLineEdit.EchoMode.Password
        assert not next_enabled(wizard)
        assert not page.save.isEnabled()
        await save_password(qtbot, page, "s3cret-Ω")
        assert backend.items == {(SERVICE, "scanner"): "s3cret-Ω"}
        assert page.keyring_status.status == "pass"
        assert "Memory Keyring" in page.keyring_status.text()
        assert "s3cret" not in page.keyring_status.text()
        assert page.password.text() == ""  # nothing left in the widget
        assert next_enabled(wizard)
        save_png(wizard, "credentials")
        qtbot.mouseClick(wizard.button(QWizard.WizardButton.NextButton), Qt.MouseButton.LeftButton)
        assert wizard.currentId() == PageId.TESTS
        plan = wizard.plan
        assert (plan.profile, plan.secret_stored, plan.keyring_backend) == ("scanner", True, "Memory Keyring")

    run(qloop, scenario())


def test_the_password_can_be_shown_and_hidden(qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop) -> None:
    async def scenario() -> None:
        _wizard, page = open_page(qtbot, tmp_path, memory_store(MemoryKeyring()))
        qtbot.keyClicks(page.password, "pw")
        qtbot.mouseClick(page.show_password, Qt.MouseButton.LeftButton)
        assert page.password.echoMode() is QLineEdit.EchoMode.Normal
        assert page.show_password.text() == "Hide"
        qtbot.mouseClick(page.show_password, Qt.MouseButton.LeftButton)
        assert page.password.echoMode() is QLineEdit.EchoMode.Password
        assert page.show_password.accessibleName() == "Show the password"

    run(qloop, scenario())


def test_a_missing_keyring_is_one_sentence_with_what_to_do(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop
) -> None:
    async def scenario() -> None:
        wizard, page = open_page(qtbot, tmp_path, memory_store(keyring.backends.fail.Keyring()))
        await until(lambda: page.keyring_status.status == "fail")  # the look-up already found no keyring
        page.keyring_status.clear()
        await save_password(qtbot, page, "pw")
        text = page.keyring_status.text()
        assert page.keyring_status.status == "fail"
        assert "No usable keyring" in text
        assert "Install and unlock a Secret Service keyring" in text  # the hint: what to do
        assert "\n" not in text
        assert "Traceback" not in text
        assert page.password.text() == "pw"  # kept for another try, never written elsewhere
        assert not next_enabled(wizard)
        save_png(wizard, "credentials-no-keyring")
        qtbot.mouseClick(page.skip, Qt.MouseButton.LeftButton)
        assert next_enabled(wizard)
        assert page.validatePage()
        assert (wizard.plan.secret_stored, wizard.plan.keyring_backend) == (False, "")

    run(qloop, scenario())
    assert not list(tmp_path.rglob("*pw*"))


def test_an_existing_secret_is_found_and_can_be_replaced(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop
) -> None:
    backend = MemoryKeyring()
    backend.items[(SERVICE, "scanner")] = "old"

    async def scenario() -> None:
        wizard, page = open_page(qtbot, tmp_path, memory_store(backend))
        await until(lambda: page.keyring_status.status == "pass")
        assert "already saved" in page.keyring_status.text()
        assert "Memory Keyring" in page.keyring_status.text()
        assert next_enabled(wizard)
        assert "Replace" in page.save.text()
        assert "Saved in the keyring" in page.password.placeholderText()
        qtbot.keyClicks(page.password, "new")
        assert not next_enabled(wizard)  # a typed password must be saved before it counts
        page.keyring_status.clear()
        qtbot.keyClick(page.password, Qt.Key.Key_Return)
        await until(lambda: page.keyring_status.status == "pass")
        assert backend.items[(SERVICE, "scanner")] == "new"
        assert next_enabled(wizard)

    run(qloop, scenario())


def test_editing_the_profile_looks_it_up_again(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop
) -> None:
    backend = MemoryKeyring()
    backend.items[(SERVICE, "frontdesk")] = "pw"

    async def scenario() -> None:
        wizard, page = open_page(qtbot, tmp_path, memory_store(backend))
        await until(lambda: not page.tasks.busy)
        assert not next_enabled(wizard)
        page.profile.edit.clear()
        qtbot.keyClicks(page.profile.edit, "front desk")
        assert page.profile.state == "invalid"
        assert page.profile.suggestion == "front-desk"
        page.profile.edit.clear()
        qtbot.keyClicks(page.profile.edit, "frontdesk")
        await until(lambda: next_enabled(wizard), within=3)
        assert "already saved" in page.keyring_status.text()
        assert page.validatePage()
        assert (wizard.plan.profile, wizard.plan.secret_stored) == ("frontdesk", True)

    run(qloop, scenario())


class SlowKeyring(MemoryKeyring):
    """A keyring as slow as a D-Bus round trip to gnome-keyring, and then some."""

    def set_password(self, service: str, user: str, secret: str) -> None:
        time.sleep(0.4)
        super().set_password(service, user, secret)


def test_the_window_stays_responsive_while_the_keyring_works(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop
) -> None:
    backend = SlowKeyring()
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))

    async def scenario() -> None:
        wizard, page = open_page(qtbot, tmp_path, memory_store(backend))
        await until(lambda: not page.tasks.busy)
        qtbot.keyClicks(page.password, "pw")
        timer.start()
        qtbot.mouseClick(page.save, Qt.MouseButton.LeftButton)
        assert page.keyring_status.status == "running"
        assert not page.save.isEnabled()
        assert not next_enabled(wizard)
        await until(lambda: page.keyring_status.status == "pass")
        timer.stop()

    run(qloop, scenario())
    assert len(ticks) >= 10  # Qt's timers kept firing during the 0.4 s keyring call
    assert max(b - a for a, b in itertools.pairwise(ticks)) < 0.2


@pytest.mark.parametrize(
    ("mailbox", "profile"),
    [("scanner@contoso.com", "scanner"), ("first+scan@contoso.com", "first-scan"), ("", "device")],
)
def test_the_profile_name_comes_from_the_mailbox(mailbox: str, profile: str) -> None:
    assert default_profile(mailbox) == profile


# -- OAuth, Direct Send, connector -------------------------------------------------------------------------


def test_oauth_shows_its_panel_and_continues_only_signed_in_or_skipping(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop
) -> None:
    backend = MemoryKeyring()
    wizard, page = open_page(qtbot, tmp_path, memory_store(backend), auth="oauth")
    assert not page.form.isRowVisible(page.password_row)
    assert not page.form.isRowVisible(page.save_row)
    assert page.form.isRowVisible(page.profile)
    assert page.oauth_panel.isVisible()
    assert "OAuth sign-in arrives with" not in page.status.text()  # the old placeholder is gone
    assert not next_enabled(wizard)  # no tenant, no app yet
    page.oauth_panel.tenant.setText("contoso.onmicrosoft.com")
    page.oauth_panel.client_id.setText("0f1e2d3c-4b5a-6978-8a9b-acbdcedf0011")
    assert not next_enabled(wizard)  # nobody signed in
    page.skip.setChecked(True)
    assert next_enabled(wizard)
    save_png(wizard, "credentials-oauth")
    assert page.validatePage()
    plan = wizard.plan
    assert (plan.profile, plan.secret_stored) == ("scanner", False)
    assert (plan.oauth.kind, plan.oauth.tenant, plan.oauth.client_id) == (
        "oauth-delegated",
        "contoso.onmicrosoft.com",
        "0f1e2d3c-4b5a-6978-8a9b-acbdcedf0011",
    )
    page.oauth_panel.shutdown()
    assert backend.items == {}


@pytest.mark.parametrize(
    ("method", "reason"), [("direct-send", "MX endpoint"), ("connector", "203.0.113.10")]
)
def test_direct_send_and_connectors_need_no_credentials(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop, method: Method, reason: str
) -> None:
    wizard, page = open_page(qtbot, tmp_path, memory_store(MemoryKeyring()), method=method, auth="none")
    assert page.status.text().startswith("No credentials are needed. ")
    assert reason in page.status.text()
    assert not page.intro.isVisible()
    assert not page.form.isRowVisible(page.password_row)
    assert not page.form.isRowVisible(page.profile)
    assert not page.skip.isVisible()
    assert next_enabled(wizard)
    save_png(wizard, f"credentials-{method}")
    assert page.validatePage()
    assert (wizard.plan.profile, wizard.plan.secret_stored) == ("scanner", False)


# -- the real Secret Service -------------------------------------------------------------------------------


@pytest.mark.keyring
def test_saving_to_gnome_keyring(
    qtbot: QtBot,
    tmp_path: Path,
    qloop: qasync.QEventLoop,
    secret_service: SecretServiceSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import keyring.backends.SecretService

    for name in ("DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR"):
        monkeypatch.setenv(name, secret_service.env[name])

    def store() -> SecretStore:
        return SecretStore(keyring.backends.SecretService.Keyring())

    async def scenario() -> None:
        wizard, page = open_page(qtbot, tmp_path, store, mailbox="gui-test@contoso.com")
        await until(lambda: not page.tasks.busy)
        await save_password(qtbot, page, "gui-s3cret")
        assert page.keyring_status.status == "pass", page.keyring_status.text()
        assert "SecretService" in page.keyring_status.text()
        found: Awaitable[str | None] = asyncio.to_thread(store().find, "gui-test")
        assert await found == "gui-s3cret"
        assert page.validatePage()
        assert wizard.plan.keyring_backend == "SecretService Keyring"

    try:
        run(qloop, scenario())
    finally:
        store().delete("gui-test")
