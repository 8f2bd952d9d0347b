"""Render every page of the setup wizard, in a real run against the lab, to PNGs for the README.

    xvfb-run -a -s "-screen 0 1280x900x24" .venv/bin/python scripts/screenshots.py --out docs/screenshots

A real window on an X server (Xvfb), not Qt's offscreen platform. The script starts the test lab
(``tests.lab.lab.Lab``: Postfix and Dovecot standing in for Microsoft 365, unbound for DNS) or reuses a
running one, and keeps passwords in an in-memory keyring. It goes through the wizard as a person does:

1. a scanner that signs in with a password: start, capabilities, tenant, credentials; the tests with a
   mistyped password (the sign-in row fails and opens), Back, the right password, the tests again with a
   test message; the summary, whose report is exported as a PDF (its first page via ``pdftoppm``);
2. a scanner too old for TLS 1.2: the local relay on this computer, started, a test message delivered
   through it; the summary with the relay's address.

The images have stable names (``01-start.png`` ...), each a grab of the wizard's window at 900×640.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.lab, when run as a file
os.environ.setdefault("QT_API", "pyside6")

WINDOW = (900, 640)
REPORT_WIDTH = 720
DOMAIN = "lab.test"
MAILBOX = "scanner@lab.test"
PASSWORD = "scanner-pass"
LOOPBACK = "127.0.0.1"


class MemoryKeyring:
    """Passwords in memory only (duck-typed like a keyring backend): nothing reaches a real keyring."""

    name = "in-memory keyring"

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, user: str) -> str | None:
        return self.items.get((service, user))

    def set_password(self, service: str, user: str, secret: str) -> None:
        self.items[(service, user)] = secret

    def delete_password(self, service: str, user: str) -> None:
        self.items.pop((service, user), None)


async def until(condition: Callable[[], object], within: float, what: str) -> None:
    """Let the loop run until ``condition()`` holds; a step that never comes stops the script."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise RuntimeError(f"{what} did not happen within {within:g} s")
        await asyncio.sleep(0.02)


class Shooter:
    """Drives one wizard with clicks and keystrokes and saves grabs of its window."""

    def __init__(self, wizard: Any, out: Path) -> None:
        self.wizard = wizard
        self.out = out
        self.saved: list[Path] = []

    async def show(self) -> None:
        self.wizard.resize(*WINDOW)
        self.wizard.show()
        self.wizard.raise_()
        handle = self.wizard.windowHandle()
        await until(lambda: handle is not None and handle.isExposed(), 10, "the window showing")

    async def shot(self, name: str) -> None:
        """Let the layouts settle (scroll areas resize one posted event later), then grab the window."""
        await asyncio.sleep(0.4)
        path = self.out / name
        if not self.wizard.grab().save(str(path)):
            raise RuntimeError(f"could not save {path}")
        self.saved.append(path)
        print(f"  {path}")

    def click(self, button: Any) -> None:
        from PySide6.QtCore import QPoint, Qt
        from PySide6.QtTest import QTest
        from PySide6.QtWidgets import QCheckBox, QRadioButton

        if not (button.isVisible() and button.isEnabled()):
            raise RuntimeError(f"cannot click {button.text()!r}: hidden or disabled")
        middle = button.height() // 2
        pos = (
            QPoint(min(middle, button.width() // 2), middle)
            if isinstance(button, QCheckBox | QRadioButton)
            else button.rect().center()
        )
        QTest.mouseClick(button, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)

    def type(self, widget: Any, text: str) -> None:
        from PySide6.QtTest import QTest

        widget.setFocus()
        QTest.keyClicks(widget, text)

    def key(self, widget: Any, key: Any, modifier: Any = None) -> None:
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest

        widget.setFocus()
        QTest.keyClick(widget, key, modifier or Qt.KeyboardModifier.NoModifier)

    async def next(self, expected: int) -> Any:
        from PySide6.QtWidgets import QWizard

        button = self.wizard.button(QWizard.WizardButton.NextButton)
        await until(button.isEnabled, 10, "Next enabled")
        self.click(button)
        if self.wizard.currentId() != expected:
            raise RuntimeError(f"Next led to page {self.wizard.currentId()}, not {expected}")
        return self.wizard.currentPage()

    async def back(self, expected: int) -> Any:
        from PySide6.QtWidgets import QWizard

        self.click(self.wizard.button(QWizard.WizardButton.BackButton))
        if self.wizard.currentId() != expected:
            raise RuntimeError(f"Back led to page {self.wizard.currentId()}, not {expected}")
        return self.wizard.currentPage()

    async def finish(self) -> None:
        from PySide6.QtWidgets import QWizard

        button = self.wizard.button(QWizard.WizardButton.FinishButton)
        await until(button.isEnabled, 10, "Finish enabled")
        self.click(button)

    async def answer(self, page: Any, answers: dict[str, bool | None]) -> None:
        for question, value in answers.items():
            self.click(page.buttons[question][value])

    async def tenant(self, page: Any) -> None:
        self.type(page.domain.edit, DOMAIN)
        self.type(page.mailbox.edit, MAILBOX)

    async def save_password(self, page: Any, password: str) -> None:
        await until(lambda: not page.tasks.busy, 10, "the keyring look-up")
        page.password.clear()
        self.type(page.password, password)
        self.click(page.save)
        await until(lambda: page.keyring_status.status in {"pass", "fail"}, 10, "the keyring save")
        if page.keyring_status.status != "pass":
            raise RuntimeError(page.keyring_status.text())
        page.profile.edit.setFocus()  # the focus frame belongs on a field, not on the pressed button

    async def run_tests(self, page: Any) -> None:
        from relaywizard.diagnostics.runner import RunState

        await until(lambda: page.controller.state is RunState.RUNNING, 10, "the tests starting")
        await until(lambda: page.controller.state is RunState.FINISHED, 60, "the tests finishing")


def services(lab: Any, home: Path, keyring: MemoryKeyring) -> Any:
    from relaywizard.core.paths import AppPaths
    from relaywizard.core.secrets import SecretStore
    from relaywizard.gui.services import Services

    return Services(
        paths=AppPaths.under(home),
        secret_store=lambda: SecretStore(keyring),
        dns_servers=((lab.host, lab.dns_port),),
        smtp_host=lab.host,
        smtp_port=lab.submission_port,
        ca_file=str(lab.ca_file),
    )


async def password_path(lab: Any, out: Path, work: Path) -> Path:
    """Pages 01–07 and the report: a scanner that signs in to Microsoft 365 with a password."""
    from relaywizard.gui.wizard import PageId, SetupWizard

    wizard = SetupWizard(services=services(lab, work / "home-password", MemoryKeyring()))
    shooter = Shooter(wizard, out)
    await shooter.show()
    await shooter.shot("01-start.png")

    capabilities = await shooter.next(PageId.CAPABILITIES)
    await shooter.answer(
        capabilities,
        {
            "tls12": True,
            "can_authenticate": True,
            "oauth": False,
            "external_recipients": True,
            "static_ip": False,
            "port_587": True,
        },
    )
    capabilities.scroller.verticalScrollBar().setValue(0)
    await shooter.shot("02-capabilities.png")

    tenant = await shooter.next(PageId.TENANT)
    await shooter.tenant(tenant)
    await shooter.shot("03-tenant.png")

    # A mistyped password first: the tests show what a wrong one looks like.
    credentials = await shooter.next(PageId.CREDENTIALS)
    await shooter.save_password(credentials, "scanner-pasw")
    await shooter.shot("04-credentials.png")
    tests = await shooter.next(PageId.TESTS)
    await shooter.run_tests(tests)
    if tests.view.row_state("smtp.auth") != "fail":
        raise RuntimeError(f"expected the sign-in to fail: {tests.view.summary_text('smtp.auth')}")
    detail = tests.view.detail("smtp.auth")
    await until(lambda: detail is not None and detail.isVisible(), 10, "the failed row open")
    await shooter.shot("05-tests-failed.png")

    # Back, the right password, and the tests again, this time sending a test message.
    credentials = await shooter.back(PageId.CREDENTIALS)
    await shooter.save_password(credentials, PASSWORD)
    tests = await shooter.next(PageId.TESTS)
    await shooter.run_tests(tests)
    shooter.click(tests.send)
    shooter.click(tests.view.run_again_button)
    await shooter.run_tests(tests)
    if not wizard.plan.test_message_id:
        raise RuntimeError(f"no test message was sent: {tests.view.summary_text('smtp.data')}")
    tests.view.tree.scrollToTop()
    await shooter.shot("06-tests-passed.png")

    summary = await shooter.next(PageId.SUMMARY)
    await shooter.shot("07-summary.png")
    pdf = work / "report.pdf"
    summary.choose_report_path = lambda: pdf  # the page's own export, without the file dialog
    shooter.click(summary.export_button)
    if not pdf.is_file():
        raise RuntimeError(f"the report was not exported: {summary.status.text()}")
    await shooter.finish()
    return pdf


async def relay_path(lab: Any, out: Path, work: Path) -> None:
    """Pages 08–09: a scanner too old for TLS 1.2, sending through the local relay on this computer."""

    from relaywizard.gui.pages.relay import RelayPage
    from relaywizard.gui.wizard import PageId, SetupWizard
    from tests.lab.process import free_port, port_open

    wizard = SetupWizard(services=services(lab, work / "home-relay", MemoryKeyring()))
    shooter = Shooter(wizard, out)
    await shooter.show()
    capabilities = await shooter.next(PageId.CAPABILITIES)
    await shooter.answer(
        capabilities,
        {
            "tls12": False,
            "can_authenticate": True,
            "oauth": False,
            "external_recipients": True,
            "static_ip": False,
            "port_587": False,
        },
    )
    tenant = await shooter.next(PageId.TENANT)
    await shooter.tenant(tenant)
    credentials = await shooter.next(PageId.CREDENTIALS)
    await shooter.save_password(credentials, PASSWORD)
    tests = await shooter.next(PageId.TESTS)
    await shooter.run_tests(tests)

    page = await shooter.next(PageId.RELAY)
    assert isinstance(page, RelayPage)
    try:
        index = page.listen_box.findData(LOOPBACK)
        if index < 0:
            raise RuntimeError(f"{LOOPBACK} is not among the relay's listen addresses")
        page.listen_box.setCurrentIndex(index)
        port = 2525 if not port_open(LOOPBACK, 2525) else free_port(LOOPBACK)
        page.port_box.setValue(port)
        shooter.type(page.allow_edit.edit, LOOPBACK)
        shooter.click(page.add_button)
        shooter.click(page.start_button)
        await until(lambda: page.state == "running", 15, "the relay running")
        shooter.click(page.test_button)
        await until(lambda: page.test_status.status in {"pass", "fail"}, 30, "the test message delivered")
        if page.test_status.status != "pass":
            raise RuntimeError(page.test_status.text())
        await until(lambda: "1 delivered" in page.relay_status.text(), 5, "the relay's count")
        await shooter.shot("08-relay.png")
        await shooter.next(PageId.SUMMARY)
        await shooter.shot("09-relay-summary.png")
        await shooter.finish()
        await until(lambda: page.relay is None, 15, "the relay stopped")
    finally:
        if page.relay is not None:
            await page.relay.stop()


def pdf_page(pdf: Path, png: Path, width: int, page: int = 1) -> None:
    """One page of the report (1 = the first, -1 = the last) as a PNG ``width`` pixels wide (pdftoppm)."""
    tool = shutil.which("pdftoppm")
    if tool is None:
        raise RuntimeError("pdftoppm is missing: apt-get install poppler-utils")
    if page < 0:
        info = subprocess.run(["pdfinfo", str(pdf)], check=True, capture_output=True, text=True).stdout
        page = (
            int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:"))) + 1 + page
        )
    stem = png.with_suffix("")
    pages = ["-f", str(page), "-l", str(page), "-singlefile", "-scale-to-x", str(width), "-scale-to-y", "-1"]
    subprocess.run([tool, "-png", *pages, str(pdf), str(stem)], check=True)
    print(f"  {png}")


def side_by_side(pngs: list[Path], out: Path) -> None:
    """The report's last two pages (the trace and the rollout checklist) as one picture."""
    from PySide6.QtGui import QColor, QImage, QPainter

    images = [QImage(str(png)) for png in pngs]
    joined = QImage(
        sum(image.width() for image in images),
        max(image.height() for image in images),
        QImage.Format.Format_RGB32,
    )
    joined.fill(QColor("white"))
    painter = QPainter(joined)
    x = 0
    for image in images:
        painter.drawImage(x, 0, image)
        x += image.width()
    painter.end()
    if not joined.save(str(out)):
        raise RuntimeError(f"could not save {out}")
    print(f"  {out}")


async def oauth_path(lab: Any, out: Path, work: Path) -> None:
    """Page 14: the credentials page's OAuth branch, a device code from a (fake, local) Entra authority."""
    import dataclasses

    from relaywizard.core.plan import OAuthPlan, SetupPlan
    from relaywizard.gui.pages.credentials import CredentialsPage
    from relaywizard.gui.wizard import PageId, SetupWizard
    from tests.lab.authority import DEFAULT_CLIENT_ID, FakeAuthority

    authority = FakeAuthority(work / "authority", issue=lab.issue_token).start()
    authority.pending_polls = 1000  # the person has not typed the code yet
    try:
        plan = SetupPlan(method="smtp-auth", auth="oauth")
        plan.tenant.domain, plan.tenant.mailbox = "lab.test", "oauth@lab.test"
        plan.oauth = OAuthPlan(kind="oauth-delegated")
        chosen = dataclasses.replace(
            services(lab, work / "home-oauth", MemoryKeyring()),
            authority=authority.url,
            ca_file=str(authority.ca_file),
        )
        wizard = SetupWizard(plan=plan, services=chosen)
        wizard.setStartId(PageId.CREDENTIALS)
        shooter = Shooter(wizard, out)
        await shooter.show()
        page = wizard.currentPage()
        assert isinstance(page, CredentialsPage)
        panel = page.oauth_panel
        panel.tenant.setText("lab.test")
        panel.client_id.setText(DEFAULT_CLIENT_ID)
        shooter.click(panel.sign_in)
        await until(panel.code_frame.isVisible, 15, "the device code shown")
        await shooter.shot("14-oauth-device-code.png")
        panel.cancel_sign_in()
        await until(lambda: not panel.busy, 5, "the sign-in cancelled")
        panel.app_only.setChecked(True)  # the app-only branch: secret or certificate, and its expiry
        await shooter.shot("16-oauth-app-only.png")
        wizard.close()
    finally:
        authority.stop()


async def shoot(out: Path) -> None:
    from tests.lab.lab import Lab

    lab = Lab.acquire()
    try:
        with tempfile.TemporaryDirectory(prefix="relaywizard-shots-") as temp:
            work = Path(temp)
            pdf = await password_path(lab, out, work)
            pdf_page(pdf, out / "10-report.png", REPORT_WIDTH)
            end = [work / "report-end-1.png", work / "report-end-2.png"]
            pdf_page(pdf, end[0], REPORT_WIDTH, page=-2)
            pdf_page(pdf, end[1], REPORT_WIDTH, page=-1)
            side_by_side(end, out / "15-report-trace-checklist.png")
            await relay_path(lab, out, work)
            await oauth_path(lab, out, work)
    finally:
        lab.release()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="where the PNGs go")
    parser.add_argument("--timeout", type=float, default=300, help="give up after this many seconds")
    args = parser.parse_args(argv)
    if os.environ.get("QT_QPA_PLATFORM", "xcb") != "xcb" or not os.environ.get("DISPLAY"):
        print(
            'screenshots.py needs a real X display: run it under xvfb-run -a -s "-screen 0 1280x900x24"',
            file=sys.stderr,
        )
        return 2
    args.out.mkdir(parents=True, exist_ok=True)

    import qasync

    from relaywizard.gui.app import make_app

    app = make_app()
    app.setQuitOnLastWindowClosed(False)  # the first wizard's Finish must not end the second
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    print(f"Screenshots into {args.out}:")
    with contextlib.closing(loop):
        loop.run_until_complete(asyncio.wait_for(shoot(args.out), args.timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
