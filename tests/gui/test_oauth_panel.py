"""The credentials page's OAuth branch against the fake authority (MSAL's real code paths on 127.0.0.1) and
the lab's Dovecot (XOAUTH2 with token introspection): the device code shown and copied, the sign-in saved
in the keyring, a refused sign-in in one sentence, the window responsive while waiting, and app-only
validation accepted, or refused with the registration mistakes explained."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import qasync
from PySide6.QtCore import QObject, Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication
from pytestqt.qtbot import QtBot

from relaywizard.core.paths import AppPaths
from relaywizard.core.plan import OAuthPlan, SetupPlan
from relaywizard.core.secrets import SERVICE, SecretStore
from relaywizard.gui.oauth_panel import OAuthPanel
from relaywizard.gui.pages.credentials import CredentialsPage
from relaywizard.gui.pages.tests import TestsPage
from relaywizard.gui.services import Services
from relaywizard.gui.wizard import PageId, SetupWizard
from tests.core.test_secrets import MemoryKeyring
from tests.gui.conftest import run, until
from tests.helpers import LoopWatch
from tests.lab.authority import DEFAULT_CLIENT_ID, DEFAULT_SECRET, FakeAuthority, stand_in_browser
from tests.lab.lab import Lab


class UrlRecorder(QObject):
    """QDesktopServices' handler for https links: records instead of starting a browser."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: list[str] = []

    @Slot(QUrl)
    def open(self, url: QUrl) -> None:
        self.opened.append(url.toString())


@pytest.fixture
def opened_urls() -> Iterator[list[str]]:
    recorder = UrlRecorder()
    QDesktopServices.setUrlHandler("https", recorder, "open")
    yield recorder.opened
    QDesktopServices.unsetUrlHandler("https")


def open_oauth_page(
    qtbot: QtBot,
    tmp_path: Path,
    keyring: MemoryKeyring,
    *,
    mailbox: str,
    kind: str = "oauth-delegated",
    **services: Any,
) -> tuple[SetupWizard, CredentialsPage, OAuthPanel]:
    plan = SetupPlan(method="smtp-auth", auth="oauth")
    plan.tenant.domain, plan.tenant.mailbox = "lab.test", mailbox
    plan.oauth = OAuthPlan(kind=kind)  # type: ignore[arg-type]
    wizard = SetupWizard(
        plan=plan,
        services=Services(
            paths=AppPaths.under(tmp_path), secret_store=lambda: SecretStore(backend=keyring), **services
        ),
    )
    qtbot.addWidget(wizard)
    wizard.setStartId(PageId.CREDENTIALS)
    wizard.show()
    page = wizard.currentPage()
    assert isinstance(page, CredentialsPage)
    panel = page.oauth_panel
    assert panel.isVisible()
    panel.tenant.setText("lab.test")
    panel.client_id.setText(DEFAULT_CLIENT_ID)
    return wizard, page, panel


def open_delegated(
    qtbot: QtBot, tmp_path: Path, keyring: MemoryKeyring, authority: FakeAuthority
) -> tuple[SetupWizard, CredentialsPage, OAuthPanel]:
    """The OAuth page for the mailbox oauth@lab.test signing in (delegated) at the fake authority."""
    return open_oauth_page(
        qtbot,
        tmp_path,
        keyring,
        mailbox="oauth@lab.test",
        authority=authority.url,
        ca_file=str(authority.ca_file),
    )


async def cancel_promptly(qtbot: QtBot, panel: OAuthPanel) -> None:
    """Click Cancel while a sign-in waits: the panel stops waiting within a second and says so."""
    clicked = time.monotonic()
    qtbot.mouseClick(panel.cancel, Qt.MouseButton.LeftButton)
    await until(lambda: not panel.busy, within=3, what="the cancel")
    assert time.monotonic() - clicked < 1
    assert panel.sign_in_status.text() == "Sign-in cancelled."
    assert not panel.waiting.isVisible()
    assert panel.sign_in.isEnabled()
    assert panel.sign_in_browser.isEnabled()


def one_sentence(text: str) -> None:
    assert text
    assert "\n" not in text
    assert "Traceback" not in text
    assert text.rstrip().endswith((".", ")"))


def test_device_code_is_shown_copied_opened_and_the_sign_in_saved(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop, authority: FakeAuthority, opened_urls: list[str]
) -> None:
    keyring = MemoryKeyring()
    authority.pending_polls = 2  # the person takes a moment: two polls answer authorization_pending

    async def scenario() -> None:
        _wizard, page, panel = open_delegated(qtbot, tmp_path, keyring, authority)
        assert not page.isComplete()  # nobody signed in yet
        async with LoopWatch() as watch:
            qtbot.mouseClick(panel.sign_in, Qt.MouseButton.LeftButton)
            await until(lambda: panel.code_frame.isVisible(), within=10, what="the code shown")
            code = panel.code.text()
            assert code
            assert code in authority.requests[-1].form.get("user_code", code)  # the authority's own code
            assert f"{authority.base}/devicelogin" in panel.code_intro.text()
            qtbot.mouseClick(panel.copy_code, Qt.MouseButton.LeftButton)
            assert QGuiApplication.clipboard().text() == code
            qtbot.mouseClick(panel.open_page, Qt.MouseButton.LeftButton)
            assert opened_urls == [f"{authority.base}/devicelogin"]
            assert not page.isComplete()  # waiting: Next stays off
            started = time.monotonic()
            await until(lambda: panel.signed_in_as is not None, within=15, what="the sign-in")
            assert time.monotonic() - started > 0.5  # it really waited for the polls
        assert watch.longest_gap() < 0.25, (
            f"the loop stalled for {watch.longest_gap():.3f} s while signing in"
        )
        assert panel.signed_in_as == "oauth@lab.test"
        status = panel.sign_in_status.text()
        assert "Signed in as oauth@lab.test" in status
        assert "(Memory Keyring)" in status  # the keyring backend's name
        cache = keyring.get_password(SERVICE, "oauth-cache-oauth")
        assert cache is not None
        assert "refresh_token" in cache.lower() or "RefreshToken" in cache
        assert not panel.code_frame.isVisible()
        assert page.isComplete()
        assert page.validatePage()
        assert page.plan.oauth.signed_in_as == "oauth@lab.test"
        assert page.plan.secret_stored

    run(qloop, scenario(), timeout=40)


def test_a_refused_sign_in_is_one_sentence(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop, authority: FakeAuthority
) -> None:
    authority.refuse(65001, "invalid_grant", grant="urn:ietf:params:oauth:grant-type:device_code")

    async def scenario() -> None:
        _wizard, page, panel = open_delegated(qtbot, tmp_path, MemoryKeyring(), authority)
        qtbot.mouseClick(panel.sign_in, Qt.MouseButton.LeftButton)
        await until(lambda: not panel.busy, within=15, what="the refusal")
        text = panel.sign_in_status.text()
        one_sentence(text)
        assert "consent" in text.lower()
        assert panel.signed_in_as is None
        assert not panel.code_frame.isVisible()
        assert panel.sign_in.isEnabled()
        assert not page.isComplete()

    run(qloop, scenario(), timeout=30)


def test_cancelling_the_sign_in_stops_waiting_at_once(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop, authority: FakeAuthority
) -> None:
    authority.pending_polls = 1000

    async def scenario() -> None:
        _wizard, page, panel = open_delegated(qtbot, tmp_path, MemoryKeyring(), authority)
        qtbot.mouseClick(panel.sign_in, Qt.MouseButton.LeftButton)
        await until(lambda: panel.code_frame.isVisible(), within=10, what="the code shown")
        await cancel_promptly(qtbot, panel)
        assert not panel.code_frame.isVisible()
        assert not page.isComplete()

    run(qloop, scenario(), timeout=30)


def test_browser_sign_in_is_saved_and_the_window_stays_responsive(
    qtbot: QtBot,
    tmp_path: Path,
    qloop: qasync.QEventLoop,
    authority: FakeAuthority,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import webbrowser

    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", stand_in_browser(authority, opened))
    monkeypatch.setenv("BROWSER", "none-here")  # keep MSAL from preferring an installed Edge
    keyring = MemoryKeyring()

    async def scenario() -> None:
        _wizard, page, panel = open_delegated(qtbot, tmp_path, keyring, authority)
        async with LoopWatch() as watch:
            qtbot.mouseClick(panel.sign_in_browser, Qt.MouseButton.LeftButton)
            assert panel.waiting.isVisible()
            assert "in the browser window" in panel.sign_in_status.text()
            assert not panel.sign_in.isEnabled()
            await until(lambda: panel.signed_in_as is not None, within=20, what="the browser sign-in")
        assert watch.longest_gap() < 0.25, (
            f"the loop stalled for {watch.longest_gap():.3f} s while signing in"
        )
        assert opened[0].startswith(f"{authority.url}/oauth2/v2.0/authorize?")
        assert "login_hint=oauth%40lab.test" in opened[0]
        assert authority.grants()[-1] == "authorization_code"
        assert "Signed in as oauth@lab.test" in panel.sign_in_status.text()
        assert not panel.waiting.isVisible()
        assert not panel.code_frame.isVisible()
        assert panel.validate.isEnabled()
        assert page.isComplete()
        assert keyring.get_password(SERVICE, "oauth-cache-oauth") is not None

    run(qloop, scenario(), timeout=40)


def test_a_browser_sign_in_can_be_cancelled_or_run_out_of_time(
    qtbot: QtBot,
    tmp_path: Path,
    qloop: qasync.QEventLoop,
    authority: FakeAuthority,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading
    import webbrowser

    from relaywizard.gui import oauth_panel

    monkeypatch.setattr(webbrowser, "open", lambda *args, **kwargs: True)  # opened, and nobody signs in
    monkeypatch.setenv("BROWSER", "none-here")

    async def scenario() -> None:
        _wizard, page, panel = open_delegated(qtbot, tmp_path, MemoryKeyring(), authority)
        qtbot.mouseClick(panel.sign_in_browser, Qt.MouseButton.LeftButton)
        await asyncio.sleep(0.5)
        await cancel_promptly(qtbot, panel)
        assert not page.isComplete()
        # MSAL's wait goes on in a daemon thread, which a program quitting does not wait for.
        waiting = [t for t in threading.enumerate() if t.name == "relaywizard-browser-sign-in"]
        assert waiting
        assert all(t.daemon for t in waiting)

        monkeypatch.setattr(oauth_panel, "BROWSER_WAIT", 1.0)
        qtbot.mouseClick(panel.sign_in_browser, Qt.MouseButton.LeftButton)
        await until(lambda: not panel.busy, within=10, what="the browser sign-in to run out of time")
        text = panel.sign_in_status.text()
        one_sentence(text)
        assert "not completed within 1 seconds" in text
        assert "Sign in with a code" in text
        assert "--browser" not in text  # the command line's hint is not for the wizard
        assert panel.signed_in_as is None

    run(qloop, scenario(), timeout=40)


def test_fields_are_validated_inline(qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop) -> None:
    async def scenario() -> None:
        _wizard, page, panel = open_oauth_page(qtbot, tmp_path, MemoryKeyring(), mailbox="app@lab.test")
        panel.client_id.edit.clear()
        qtbot.keyClicks(panel.client_id.edit, "my-app")
        assert not panel.client_id.is_valid()
        assert "application (client) id" in panel.client_id.message().lower()
        assert not panel.sign_in.isEnabled()
        panel.client_id.setText(DEFAULT_CLIENT_ID.replace("-", ""))
        assert panel.client_id.value == DEFAULT_CLIENT_ID
        qtbot.mouseClick(panel.app_only, Qt.MouseButton.LeftButton)
        panel.tenant.setText("common")
        assert not panel.tenant.is_valid()  # app-only needs the real tenant
        assert "real tenant" in panel.tenant.message()
        panel.tenant.setText("contoso.onmicrosoft.com")
        assert panel.tenant.is_valid()
        page.skip.setChecked(True)
        assert page.isComplete()
        panel.object_id.setText("not-a-guid")
        assert not page.isComplete()

    run(qloop, scenario())


def test_the_registration_steps_follow_the_fields_and_copy(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop
) -> None:
    async def scenario() -> None:
        _wizard, _page, panel = open_oauth_page(qtbot, tmp_path, MemoryKeyring(), mailbox="app@lab.test")
        qtbot.mouseClick(panel.app_only, Qt.MouseButton.LeftButton)
        qtbot.mouseClick(panel.show_steps, Qt.MouseButton.LeftButton)
        assert panel.steps_text.isVisible()
        object_id = "aabbccdd-eeff-0011-2233-445566778899"
        panel.object_id.setText(object_id)
        steps = panel.steps_text.toPlainText()
        assert f"-AppId '{DEFAULT_CLIENT_ID}' -ObjectId '{object_id}'" in steps
        assert "Enterprise applications, not the one under App registrations" in steps
        qtbot.mouseClick(panel.copy_powershell, Qt.MouseButton.LeftButton)
        assert QGuiApplication.clipboard().text().startswith("# Exchange Online PowerShell")
        assert "Add-MailboxPermission -Identity 'app@lab.test'" in QGuiApplication.clipboard().text()
        qtbot.mouseClick(panel.delegated, Qt.MouseButton.LeftButton)
        assert "Allow public client flows" in panel.steps_text.toPlainText()

    run(qloop, scenario())


@pytest.mark.lab
def test_app_only_saves_the_secret_and_validates_against_the_lab(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop, lab: Lab, lab_authority: FakeAuthority
) -> None:
    keyring = MemoryKeyring()

    async def scenario() -> None:
        wizard, page, panel = open_oauth_page(
            qtbot,
            tmp_path,
            keyring,
            mailbox="app@lab.test",
            kind="oauth-app",
            authority=lab_authority.url,
            ca_file=str(lab_authority.trust_with(lab.ca_file)),
            smtp_host=lab.host,
            smtp_port=lab.submission_port,
            dns_servers=((lab.host, lab.dns_port),),
        )
        assert panel.app_only.isChecked()
        assert not panel.validate.isEnabled()  # nothing saved yet
        qtbot.keyClicks(panel.secret, DEFAULT_SECRET)
        qtbot.mouseClick(panel.save, Qt.MouseButton.LeftButton)
        await until(lambda: panel.saved_profile is not None, what="the secret saved")
        assert keyring.get_password(SERVICE, "app") == DEFAULT_SECRET
        assert panel.secret.text() == ""
        assert "(Memory Keyring)" in panel.app_status.text()
        assert page.isComplete()

        qtbot.mouseClick(panel.validate, Qt.MouseButton.LeftButton)
        await until(lambda: not panel.busy, within=20, what="the validation")
        assert panel.validation.text() == "Validated: the server accepted the token for app@lab.test.", (
            panel.validation.text(),
            lab.logs(),
        )

        lab_authority.token_user = "scanner@lab.test"  # a token, but another mailbox's
        qtbot.mouseClick(panel.validate, Qt.MouseButton.LeftButton)
        await until(lambda: not panel.busy, within=20, what="the second validation")
        text = panel.validation.text()
        one_sentence(text)
        assert "535" in text
        assert "App registration's object id instead of the Enterprise application's" in text
        assert "FullAccess on app@lab.test" in text

        # The tests page then signs in with the app's token.
        lab_authority.token_user = None
        assert page.validatePage()
        assert page.plan.oauth.kind == "oauth-app"
        assert page.plan.oauth.client_id == DEFAULT_CLIENT_ID
        wizard.next()
        tests_page = wizard.currentPage()
        assert isinstance(tests_page, TestsPage)
        await until(
            lambda: tests_page.view.row_state("smtp.auth") not in ("pending", "running"),
            within=20,
            what="the sign-in check",
        )
        await asyncio.wait_for(tests_page.controller.wait(), 20)  # the run ends before the window
        auth = tests_page.controller.report.result("smtp.auth") if tests_page.controller.report else None
        assert tests_page.view.row_state("smtp.auth") == "pass", (auth, lab_authority.grants())
        assert tests_page.target is not None
        assert tests_page.target.auth == "oauth-app"

    run(qloop, scenario(), timeout=60)
