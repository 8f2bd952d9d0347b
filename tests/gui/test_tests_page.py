"""The tests page: the plan turned into a target, the run started when the page shows, its report kept.

Scripted runs (``FakeRuns``) pace the events; two tests use the real checks — against a server that never
greets (the window stays responsive) and against the lab (the SMTP rows pass; a wrong password shows the
535 fix). Like the application, everything runs on a qasync loop (see test_diagnostics_view.py).
"""

from __future__ import annotations

import asyncio
import email
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keyring.errors
import pytest
import qasync
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QWizard
from pytestqt.qtbot import QtBot

from relaywizard.core.paths import AppPaths
from relaywizard.core.plan import SetupPlan
from relaywizard.core.secrets import SERVICE, SecretStore
from relaywizard.diagnostics.base import Check, Context
from relaywizard.diagnostics.model import CHECK_IDS, CheckResult, Method, Status
from relaywizard.diagnostics.runner import RunState
from relaywizard.gui.diagnostics_view import default_checks
from relaywizard.gui.pages import tests as tests_page
from relaywizard.gui.services import Services
from relaywizard.gui.wizard import PageId, SetupWizard
from tests.core.test_secrets import MemoryKeyring, RaisingKeyring
from tests.diagnostics.fake_smtp import silent_listener
from tests.gui.conftest import run, until
from tests.gui.test_diagnostics_view import FakeRuns, Scripted
from tests.helpers import LoopWatch
from tests.lab.lab import Lab
from tests.lab.mail import ACCOUNTS

SCANNER = ACCOUNTS[0]


class ThreadNotingKeyring(MemoryKeyring):
    """Remembers which threads asked it: the GUI thread must never wait for a keyring."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[threading.Thread] = []

    def get_password(self, service: str, user: str) -> str | None:
        self.threads.append(threading.current_thread())
        return super().get_password(service, user)


def keyring_with(profile: str, secret: str) -> ThreadNotingKeyring:
    backend = ThreadNotingKeyring()
    backend.set_password(SERVICE, profile, secret)
    return backend


def make_plan(
    method: Method = "smtp-auth", domain: str = "contoso.com", mailbox: str = "scanner@contoso.com"
) -> SetupPlan:
    plan = SetupPlan(method=method, auth="password" if method == "smtp-auth" else "none", profile="scanner")
    plan.tenant.domain, plan.tenant.mailbox = domain, mailbox
    return plan


def open_page(
    qtbot: QtBot, tmp_path: Path, plan: SetupPlan, backend: Any = None, **services: Any
) -> tuple[SetupWizard, tests_page.TestsPage]:
    def store() -> SecretStore:
        return SecretStore(backend if backend is not None else MemoryKeyring())

    wizard = SetupWizard(
        plan=plan, services=Services(paths=AppPaths.under(tmp_path), secret_store=store, **services)
    )
    qtbot.addWidget(wizard)
    wizard.resize(900, 700)
    wizard.setStartId(PageId.TESTS)
    wizard.show()
    page = wizard.currentPage()
    assert isinstance(page, tests_page.TestsPage)
    return wizard, page


def next_enabled(wizard: SetupWizard) -> bool:
    return wizard.button(QWizard.WizardButton.NextButton).isEnabled()


def save_png(wizard: SetupWizard, name: str) -> None:
    scale = os.environ.get("QT_SCALE_FACTOR", "1")
    suffix = "" if scale == "1" else f"@{scale}x"
    wizard.grab().save(f"/tmp/gui-{name}{suffix}.png")


class FakeData(Scripted):
    """smtp.data: skipped unless the target asks to send, as the real one is."""

    async def run(self, ctx: Context) -> CheckResult:
        if not ctx.target.send:
            return self.skipped("Not sending a test message.")
        return self.passed("Sent.", message_id="<abc@relaywizard>", reply="250 2.0.0 OK")


def every_check(gate: asyncio.Event) -> list[Check]:
    """The 14 checks of a real run: DNS done at once, the greeting held back by ``gate``."""
    checks: list[Check] = []
    for check_id, title in default_checks():
        if check_id.startswith("dns."):
            status = Status.WARN if check_id in ("dns.dkim", "dns.autodiscover") else Status.PASS
            checks.append(Scripted(check_id, "dns", status, title=title, delay=0.01))
        elif check_id == "smtp.banner":
            progress = "Waiting for the server's greeting"
            checks.append(Scripted(check_id, title=title, gate=gate, progress=progress))
        else:
            checks.append(
                Scripted(check_id, title=title, requires=("smtp.banner",) * (check_id != "smtp.connect"))
            )
    return checks


def quick_checks(auth: Status = Status.PASS, **auth_result: Any) -> Callable[[], list[Check]]:
    def make() -> list[Check]:
        return [
            Scripted("dns.mx", "dns", title="MX record", delay=0.02),
            Scripted("smtp.connect", title="Connection"),
            Scripted("smtp.auth", status=auth, title="Sign-in (AUTH)", **auth_result),
            Scripted("smtp.rcpt_to", title="Recipient (RCPT TO)"),
        ]

    return make


# -- what is tested --------------------------------------------------------------------------------------


def test_the_target_comes_from_the_plan_and_the_services() -> None:
    services = Services(
        dns_servers=(("127.0.0.1", 5353),), smtp_host="127.0.0.1", smtp_port=2587, ca_file="/tmp/ca.pem"
    )
    plan = make_plan()
    target = tests_page.build_target(plan, services, "pw", send=True)
    assert (target.domain, target.method, target.auth) == ("contoso.com", "smtp-auth", "password")
    assert (target.user, target.secret) == ("scanner@contoso.com", "pw")
    assert (target.mail_from, target.rcpt_to) == ("scanner@contoso.com", "scanner@contoso.com")
    assert target.dns_servers == (("127.0.0.1", 5353),)
    assert (target.smtp_host, target.smtp_port, target.ca_file) == ("127.0.0.1", 2587, Path("/tmp/ca.pem"))
    assert target.send
    assert target.relay_ip is None

    plan.tenant.sender = "scans@contoso.com"
    assert tests_page.build_target(plan, services, "pw").mail_from == "scans@contoso.com"

    direct = make_plan("direct-send")
    direct.tenant.public_ip = "203.0.113.10"
    target = tests_page.build_target(direct, Services(), "pw")
    assert (target.user, target.secret, target.relay_ip) == (None, None, "203.0.113.10")
    assert tests_page.describe_target(direct, Services()) == (
        "Tests the DNS of contoso.com, then Direct Send to contoso-com.mail.protection.outlook.com:25."
    )
    assert tests_page.describe_target(plan, services) == (
        "Tests the DNS of contoso.com, then SMTP AUTH client submission to 127.0.0.1:2587, signing in as "
        "scanner@contoso.com."
    )


def test_the_run_starts_when_the_page_shows_with_the_password_read_off_the_gui_thread(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop
) -> None:
    gate = asyncio.Event()
    runs = FakeRuns(lambda: every_check(gate))
    backend = keyring_with("scanner", "s3cret")

    async def scenario() -> None:
        wizard, page = open_page(qtbot, tmp_path, make_plan(), backend, start_run=runs)
        # Before the run says which checks it has, every check is listed, waiting.
        assert len(page.view.check_ids()) == 14
        await until(lambda: page.view.row_state("smtp.banner") == "running")
        await until(lambda: page.view.row_state("dns.autodiscover") == "warn")
        assert page.controller.state is RunState.RUNNING
        assert page.view.check_ids() == list(CHECK_IDS)
        assert page.view.summary_text("smtp.banner") == "Waiting for the server's greeting…"
        assert page.view.row_state("smtp.auth") == "pending"
        assert page.view.progress.value() == 6
        target = runs.targets[0]
        assert (target.user, target.secret) == ("scanner@contoso.com", "s3cret")
        assert backend.threads
        assert threading.main_thread() not in backend.threads
        assert not next_enabled(wizard)
        save_png(wizard, "tests-running")
        gate.set()
        await until(lambda: page.controller.state is RunState.FINISHED)
        assert next_enabled(wizard)
        assert wizard.plan.report is page.controller.report
        assert wizard.plan.test_message_id is None
        assert not page.note.isVisible()

    run(qloop, scenario())


@pytest.mark.parametrize(
    ("backend", "status", "words"),
    [
        (MemoryKeyring(), "warn", "No password is saved for the profile 'scanner'"),
        (RaisingKeyring(keyring.errors.KeyringLocked("locked")), "fail", "is locked"),
    ],
    ids=["nothing-saved", "locked"],
)
def test_without_the_password_the_sign_in_check_is_skipped_and_the_page_says_why(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop, backend: Any, status: str, words: str
) -> None:
    runs = FakeRuns(quick_checks())

    async def scenario() -> None:
        _wizard, page = open_page(qtbot, tmp_path, make_plan(), backend, start_run=runs)
        await until(lambda: page.controller.state is RunState.FINISHED)
        assert runs.targets[0].secret is None
        assert not runs.targets[0].has_credentials
        assert page.note.status == status
        assert words in page.note.text()
        assert "sign-in check is skipped" in page.note.text()

    run(qloop, scenario())


def test_failed_checks_still_let_the_admin_go_on_and_say_how_many_failed(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop
) -> None:
    runs = FakeRuns(
        lambda: [
            Scripted("smtp.connect", title="Connection"),
            Scripted("smtp.auth", status=Status.FAIL, title="Sign-in (AUTH)", fix="Re-enter the password."),
            Scripted("smtp.rcpt_to", status=Status.FAIL, title="Recipient (RCPT TO)"),
        ]
    )

    async def scenario() -> None:
        wizard, page = open_page(qtbot, tmp_path, make_plan(), keyring_with("scanner", "pw"), start_run=runs)
        await until(lambda: page.controller.state is RunState.FINISHED)
        assert page.view.headline.status == "fail"
        assert page.view.headline.text().startswith(
            "2 checks failed: Sign-in (AUTH), Recipient (RCPT TO). Open them below to see what to fix."
        )
        assert next_enabled(wizard)
        report = wizard.plan.report
        assert report is not None
        assert report.failed
        qtbot.mouseClick(wizard.button(QWizard.WizardButton.NextButton), Qt.MouseButton.LeftButton)
        assert wizard.currentId() == PageId.SUMMARY

    run(qloop, scenario())


def test_a_cancelled_run_keeps_next_disabled_until_a_run_finishes(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop
) -> None:
    gate = asyncio.Event()
    runs = FakeRuns(lambda: [Scripted("smtp.connect", title="Connection", gate=gate)])

    async def scenario() -> None:
        wizard, page = open_page(qtbot, tmp_path, make_plan(), keyring_with("scanner", "pw"), start_run=runs)
        await until(lambda: page.view.row_state("smtp.connect") == "running")
        qtbot.mouseClick(page.view.cancel_button, Qt.MouseButton.LeftButton)
        assert page.controller.state is RunState.CANCELLED
        assert not next_enabled(wizard)
        assert wizard.plan.report is None
        gate.set()
        qtbot.mouseClick(page.view.run_again_button, Qt.MouseButton.LeftButton)
        await until(lambda: page.controller.state is RunState.FINISHED)
        assert len(runs.targets) == 2
        assert next_enabled(wizard)

    run(qloop, scenario())


def test_send_a_test_message_turns_on_send_and_keeps_the_message_id(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop
) -> None:
    def checks() -> list[Check]:
        return [
            Scripted("smtp.connect", title="Connection"),
            FakeData("smtp.data", title="Test message (DATA)"),
        ]

    runs = FakeRuns(checks)

    async def scenario() -> None:
        wizard, page = open_page(qtbot, tmp_path, make_plan(), keyring_with("scanner", "pw"), start_run=runs)
        await until(lambda: page.controller.state is RunState.FINISHED)
        assert not runs.targets[0].send
        assert wizard.plan.test_message_id is None
        assert page.send.text() == "Send a &test message to scanner@contoso.com"
        qtbot.mouseClick(page.send, Qt.MouseButton.LeftButton)
        assert page.send.isChecked()
        assert page.send_hint.isVisible()  # it takes effect with the next run
        qtbot.mouseClick(page.view.run_again_button, Qt.MouseButton.LeftButton)
        await until(lambda: page.controller.state is RunState.FINISHED and len(runs.targets) == 2)
        assert runs.targets[1].send
        assert not page.send_hint.isVisible()
        assert wizard.plan.test_message_id == "<abc@relaywizard>"
        assert page.outcome.status == "pass"
        assert "<abc@relaywizard>" in page.outcome.text()

    run(qloop, scenario())


def test_closing_the_window_cancels_the_run(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop, qapp: QApplication
) -> None:
    qapp.setQuitOnLastWindowClosed(False)  # the last window closing would stop the qasync loop too
    runs = FakeRuns(lambda: [Scripted("smtp.connect", title="Connection", delay=30)])

    async def scenario() -> None:
        wizard, page = open_page(qtbot, tmp_path, make_plan(), keyring_with("scanner", "pw"), start_run=runs)
        await until(lambda: page.view.row_state("smtp.connect") == "running")
        wizard.close()
        assert page.controller.state is RunState.CANCELLED
        await page.controller.wait()
        check = runs.checks[0][0]
        assert isinstance(check, Scripted)
        assert check.cancelled

    try:
        run(qloop, scenario())
    finally:
        qapp.setQuitOnLastWindowClosed(True)


def test_real_checks_in_flight_never_block_the_window(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop
) -> None:
    """The real checks against a server that accepts and never greets: while the greeting check waits,
    asyncio tasks tick, a Qt timer fires and the Cancel button answers at once."""

    async def scenario() -> None:
        server, port = await silent_listener()
        _wizard, page = open_page(
            qtbot,
            tmp_path,
            make_plan("direct-send"),
            dns_servers=(("127.0.0.1", port),),  # a TCP-only port: DNS over UDP gets no answer
            smtp_host="127.0.0.1",
            smtp_port=port,
        )
        fired: list[float] = []
        timer = QTimer()
        timer.setInterval(20)
        timer.timeout.connect(lambda: fired.append(time.monotonic()))
        timer.start()
        try:
            async with LoopWatch() as watch:
                await until(lambda: page.view.row_state("smtp.banner") == "running", within=5)
                assert page.view.row_state("smtp.connect") == "pass"
                started = time.monotonic()
                await asyncio.sleep(1.0)
                assert page.view.row_state("smtp.banner") == "running"  # still waiting for the greeting
                assert len(watch.since(started)) >= 15, len(watch.since(started))
                assert len([t for t in fired if t >= started]) >= 15
                gap = watch.longest_gap(since=started)
                assert gap < 0.25, f"the loop stalled for {gap:.3f} s"
                clicked = time.monotonic()
                qtbot.mouseClick(page.view.cancel_button, Qt.MouseButton.LeftButton)
                assert page.controller.state is RunState.CANCELLED
                await asyncio.wait_for(page.controller.wait(), 3)
                assert time.monotonic() - clicked < 3
                assert page.view.row_state("smtp.banner") == "cancelled"
        finally:
            timer.stop()
            server.close()
            await server.wait_closed()

    run(qloop, scenario(), timeout=30)


# -- the lab ---------------------------------------------------------------------------------------------

SMTP_ROWS = [
    "smtp.connect",
    "smtp.banner",
    "smtp.ehlo",
    "smtp.starttls",
    "smtp.tls",
    "smtp.auth",
    "smtp.mail_from",
    "smtp.rcpt_to",
]


def lab_services(lab: Lab) -> dict[str, Any]:
    return {
        "dns_servers": ((lab.host, lab.dns_port),),
        "smtp_host": lab.host,
        "smtp_port": lab.submission_port,
        "ca_file": str(lab.ca_file),
    }


def lab_plan() -> SetupPlan:
    return make_plan(domain="lab.test", mailbox=SCANNER.login)


@pytest.mark.lab
def test_against_the_lab_the_smtp_rows_pass_and_a_test_message_arrives(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop, lab: Lab
) -> None:
    backend = keyring_with("scanner", SCANNER.password)

    async def scenario() -> None:
        wizard, page = open_page(qtbot, tmp_path, lab_plan(), backend, **lab_services(lab))
        await until(lambda: page.controller.state is RunState.FINISHED, within=30)
        states = {cid: page.view.row_state(cid) for cid in page.view.check_ids()}
        assert {cid: states[cid] for cid in SMTP_ROWS} == dict.fromkeys(SMTP_ROWS, "pass"), lab.logs()
        assert states["smtp.data"] == "skip"
        assert next_enabled(wizard)
        tls = page.view.expand("smtp.tls")
        assert tls is not None
        found = dict(tls.facts)
        assert found["TLS version"] in ("TLSv1.2", "TLSv1.3")
        assert "smtp.lab.test" in found["Certificate names"]
        assert "days left" in found["Valid until"]
        await until(lambda: tls.isVisible())
        save_png(wizard, "tests-lab")

        before = len(lab.message_files(SCANNER.login))
        qtbot.mouseClick(page.send, Qt.MouseButton.LeftButton)
        qtbot.mouseClick(page.view.run_again_button, Qt.MouseButton.LeftButton)
        await until(lambda: page.controller.state is RunState.RUNNING)
        await until(lambda: page.controller.state is RunState.FINISHED, within=30)
        assert page.view.row_state("smtp.data") == "pass", lab.logs()
        message_id = wizard.plan.test_message_id
        assert message_id
        await until(lambda: len(lab.message_files(SCANNER.login)) > before, within=15, what="delivery")
        delivered = [email.message_from_bytes(p.read_bytes()) for p in lab.message_files(SCANNER.login)]
        assert message_id in [m["Message-ID"] for m in delivered]

    run(qloop, scenario(), timeout=60)


@pytest.mark.lab
def test_against_the_lab_a_wrong_password_fails_sign_in_with_the_535_fix(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop, lab: Lab
) -> None:
    backend = keyring_with("scanner", "wrong-password")

    async def scenario() -> None:
        wizard, page = open_page(qtbot, tmp_path, lab_plan(), backend, **lab_services(lab))
        await until(lambda: page.controller.state is RunState.FINISHED, within=30)
        assert page.view.row_state("smtp.auth") == "fail"
        assert page.view.row_state("smtp.mail_from") == "skip"
        assert page.view.headline.text().startswith("1 check failed: Sign-in (AUTH).")
        assert page.view.item("smtp.auth").isExpanded()  # the first failure opens itself
        detail = page.view.detail("smtp.auth")
        assert detail is not None
        assert detail.fix_label is not None
        assert "re-enter the password" in detail.fix_label.text()
        found = dict(detail.facts)
        assert found["Reply code"].startswith("535 · 5.7.")
        assert "535" in found["Server's reply"]
        assert "wrong-password" not in page.view.summary_text("smtp.auth")
        assert next_enabled(wizard)  # failed checks are allowed: the summary says what to fix
        await until(lambda: detail.isVisible())  # scrolled into view
        await asyncio.sleep(0.1)
        save_png(wizard, "tests-failed")

    run(qloop, scenario(), timeout=60)
