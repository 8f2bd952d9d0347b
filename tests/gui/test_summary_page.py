"""The summary page: copy buttons, the exported report (HTML and PDF), and the saved profile.

The page does no asyncio work, so plain pytest-qt drives it. PNGs of the page (and the PDF's first
page, when poppler's pdftoppm is installed) go to /tmp for a person to look at; run again with
QT_SCALE_FACTOR=2 for the HiDPI ones.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QTextDocument, QTextOption
from PySide6.QtWidgets import QApplication, QLabel, QScrollArea, QToolButton
from pytestqt.qtbot import QtBot

from relaywizard.core import checklist, settings, trace
from relaywizard.core.paths import AppPaths
from relaywizard.core.plan import LocalRelay, SetupPlan, Tenant
from relaywizard.diagnostics.checks import start_run
from relaywizard.diagnostics.model import Report, Target
from relaywizard.gui.pages.summary import SummaryPage
from relaywizard.gui.services import Services
from relaywizard.gui.wizard import PageId, SetupWizard
from tests.diagnostics.fake_dns import FakeResolver, m365_domain

D = "contoso.com"
SECRET = "Sup3r-Secret-pw!"
MESSAGE_ID = trace.new_message_id("office@contoso.com", now=datetime(2026, 11, 20, 14, 3, tzinfo=UTC))


def dns_report() -> Report:
    """A real DNS run: SPF lacks Microsoft's include, DMARC only monitors (the password in the target)."""
    records = m365_domain(D, spf=["v=spf1 a mx -all"], dmarc=["v=DMARC1; p=none"])
    target = Target(domain=D, user="scanner@contoso.com", secret=SECRET)
    return asyncio.run(start_run(target, "dns", resolver=FakeResolver(records)).run())


def a_plan(**changes: object) -> SetupPlan:
    plan = SetupPlan(
        tenant=Tenant(domain=D, mailbox="scanner@contoso.com", sender="office@contoso.com"),
        profile="scanner",
        secret_stored=True,
        keyring_backend="Secret Service",
        report=dns_report(),
        test_message_id=MESSAGE_ID,
    )
    for name, value in changes.items():
        setattr(plan, name, value)
    return plan


def open_page(qtbot: QtBot, tmp_path: Path, plan: SetupPlan | None = None) -> tuple[SetupWizard, SummaryPage]:
    wizard = SetupWizard(plan=plan or a_plan(), services=Services(paths=AppPaths.under(tmp_path / "home")))
    qtbot.addWidget(wizard)
    wizard.setStartId(PageId.SUMMARY)
    wizard.show()
    page = wizard.currentPage()
    assert isinstance(page, SummaryPage)
    return wizard, page


def save_png(wizard: SetupWizard, page: SummaryPage, name: str) -> None:
    scale = os.environ.get("QT_SCALE_FACTOR", "1")
    suffix = "" if scale == "1" else f"@{scale}x"
    QApplication.processEvents()  # the scroll area sizes its content on a posted layout request
    wizard.grab().save(f"/tmp/gui-{name}{suffix}.png")
    scroll = page.findChild(QScrollArea, "summary_scroll")
    assert scroll is not None
    content = scroll.widget()
    assert content is not None
    content.grab().save(f"/tmp/gui-{name}-content{suffix}.png")


def click(qtbot: QtBot, button: QToolButton | None) -> None:
    assert button is not None
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def clipboard() -> str:
    return QGuiApplication.clipboard().text()


# -- what it shows ----------------------------------------------------------------------------------------


def test_shows_the_settings_changes_and_outcome(qtbot: QtBot, tmp_path: Path) -> None:
    wizard, page = open_page(qtbot, tmp_path)
    values = {label: shown.text() for label, shown in page.values.items()}
    assert values["Server (SMTP host)"] == "smtp.office365.com"
    assert values["Port"] == "587"
    assert values["User name"] == "scanner@contoso.com"
    assert values["Password"] == "the one saved in the keyring profile “scanner” (Secret Service)"
    assert values["Sender (From)"] == "office@contoso.com"
    assert "Set-CASMailbox -Identity 'scanner@contoso.com'" in page.powershell_box.toPlainText()
    assert "Add-RecipientPermission" in page.powershell_box.toPlainText()
    dns = page.dns_box.toPlainText()
    assert "include:spf.protection.outlook.com" in dns
    assert '_dmarc.contoso.com TXT "v=DMARC1; p=quarantine"' in dns
    assert page.outcome_text.text().startswith("1 failed, 1 warning, 3 passed of 5 checks")
    assert "Password" not in page.copy_buttons  # it only says where the password is
    assert all(b.accessibleName().startswith("Copy") for b in page.copy_buttons.values())
    assert page.profile_name.text() == "scanner"
    assert page.profile_name.isReadOnly()  # the keyring holds the password under this name
    save_png(wizard, page, "summary")


def test_untested_connector_lists_every_expected_record(qtbot: QtBot, tmp_path: Path) -> None:
    plan = SetupPlan(
        method="connector",
        auth="none",
        tenant=Tenant(domain=D, mailbox="copier@contoso.com", public_ip="203.0.113.10"),
    )
    wizard, page = open_page(qtbot, tmp_path, plan)
    assert page.values["Server (SMTP host)"].text() == "contoso-com.mail.protection.outlook.com"
    assert "ip4:203.0.113.10" in page.dns_box.toPlainText()
    assert "unless they are there already" in page.dns_intro.text()
    assert page.outcome_text.text().startswith("Not tested")
    assert not page.profile_name.isReadOnly()
    save_png(wizard, page, "summary-connector")


def test_shows_the_trace_of_the_test_message(qtbot: QtBot, tmp_path: Path) -> None:
    _, page = open_page(qtbot, tmp_path)
    found = trace.trace_for(MESSAGE_ID)
    assert page.trace_section.isVisible()
    assert page.trace_box.toPlainText() == f"{found.powershell}\n\n{found.detail_powershell}"
    assert MESSAGE_ID in page.trace_text.text()
    assert "(sent 2026-11-20T14:03:00Z)" in page.trace_text.text()
    assert "Mail flow > Message trace" in page.trace_where.text()
    click(qtbot, page.copy_trace)
    assert clipboard().startswith(
        f'Get-MessageTraceV2 -MessageId "{MESSAGE_ID}" -StartDate "2026-11-20T13:03:00Z"'
    )
    assert page.status.text() == "Copied the trace command to the clipboard."


def test_no_test_message_no_trace(qtbot: QtBot, tmp_path: Path) -> None:
    _, page = open_page(qtbot, tmp_path, a_plan(test_message_id=None))
    assert not page.trace_section.isVisible()
    assert page.steps["test"].accessibleName() == "! To verify: Test message delivered"


def test_shows_the_checklist_with_the_states_the_tests_gave(qtbot: QtBot, tmp_path: Path) -> None:
    wizard, page = open_page(qtbot, tmp_path)
    expected = checklist.build(page.plan)
    assert list(page.steps) == [s.id for s in expected.steps]
    states = {sid: label.accessibleName().split(":")[0] for sid, label in page.steps.items()}
    assert states["dns.mx"] == "✓ Verified here"
    assert states["dns.spf"] == "✗ Failed"  # Microsoft's include is missing
    assert states["dns.dmarc"] == "! To verify"  # p=none: a warning
    assert states["credentials"] == "✓ Verified here"  # in the keyring
    assert states["device"] == "! To verify"
    spf = page.steps["dns.spf"].text()
    assert "How to verify: Resolve-DnsName contoso.com -Type TXT" in spf
    assert page.checklist_summary.text().startswith(expected.summary())
    save_png(wizard, page, "summary")
    assert_nothing_clipped(page)


@pytest.mark.parametrize("width", [760, 1100])
def test_no_text_is_clipped_at_any_width(qtbot: QtBot, tmp_path: Path, width: int) -> None:
    plan = SetupPlan(
        method="connector",
        auth="none",
        tenant=Tenant(domain=D, mailbox="copier@contoso.com", public_ip="203.0.113.10"),
        relay=LocalRelay(True, "0.0.0.0:2525", ["192.168.1.0/24"]),
        test_message_id=MESSAGE_ID,
    )
    wizard, page = open_page(qtbot, tmp_path, plan)
    wizard.resize(width, 700)
    QApplication.processEvents()
    assert_nothing_clipped(page)
    save_png(wizard, page, f"summary-relay-{width}")


def assert_nothing_clipped(page: SummaryPage) -> None:
    """Every visible label on the scrolled page is as wide and as tall as its text needs."""
    QApplication.processEvents()
    scroll = page.findChild(QScrollArea, "summary_scroll")
    assert scroll is not None
    content = scroll.widget()
    assert content is not None
    assert content.width() <= scroll.viewport().width()
    for label in content.findChildren(QLabel):
        if not label.isVisibleTo(page) or not label.text():
            continue
        assert label.width() >= label.minimumSizeHint().width(), label.objectName() or label.text()
        if label.wordWrap():
            assert label.height() >= label.heightForWidth(label.width()), label.objectName() or label.text()
        if label.wordWrap():
            # The widest line once wrapped: wider than the label when a word cannot be broken.
            doc = QTextDocument()
            doc.setDefaultFont(label.font())
            doc.setDocumentMargin(0)
            words_only = QTextOption()
            words_only.setWrapMode(QTextOption.WrapMode.WordWrap)  # as QLabel wraps: never inside a word
            doc.setDefaultTextOption(words_only)
            if label.textFormat() is Qt.TextFormat.PlainText:
                doc.setPlainText(label.text())
            else:
                doc.setHtml(label.text())
            doc.setTextWidth(label.contentsRect().width())
            assert doc.idealWidth() <= label.contentsRect().width() + 1, label.objectName() or label.text()
        right = label.mapTo(content, label.rect().topRight()).x()
        assert right <= content.width(), label.objectName() or label.text()


def test_nothing_is_secret_on_the_page(qtbot: QtBot, tmp_path: Path) -> None:
    _, page = open_page(qtbot, tmp_path)
    shown = [w.text() for w in page.values.values()]
    shown += [page.powershell_box.toPlainText(), page.dns_box.toPlainText(), page.outcome_text.text()]
    assert not any(SECRET in text for text in shown)


# -- copying ----------------------------------------------------------------------------------------------


def test_copy_buttons_put_the_text_on_the_clipboard(qtbot: QtBot, tmp_path: Path) -> None:
    _, page = open_page(qtbot, tmp_path)
    click(qtbot, page.findChild(QToolButton, "copy_server"))
    assert clipboard() == "smtp.office365.com"
    click(qtbot, page.findChild(QToolButton, "copy_user_name"))
    assert clipboard() == "scanner@contoso.com"
    click(qtbot, page.findChild(QToolButton, "copy_port"))
    assert clipboard() == "587"
    click(qtbot, page.copy_powershell)
    assert clipboard() == page.powershell_box.toPlainText()
    assert clipboard().startswith("# In Exchange Online PowerShell")
    click(qtbot, page.copy_dns)
    assert clipboard() == page.dns_box.toPlainText()
    assert "include:spf.protection.outlook.com" in clipboard()
    assert page.status.text() == "Copied the DNS records to the clipboard."


# -- the report -------------------------------------------------------------------------------------------


def test_export_html_and_pdf(qtbot: QtBot, tmp_path: Path) -> None:
    _, page = open_page(qtbot, tmp_path)
    html_path = page.export_to(tmp_path / "report.html")
    assert html_path == tmp_path / "report.html"
    document = html_path.read_text(encoding="utf-8")
    for section in ("Device settings", "Tenant changes", "DNS records", "Why this method", "Test results"):
        assert section in document
    assert "smtp.office365.com" in document
    assert escape(MESSAGE_ID) in document
    assert "Rollout checklist" in document
    assert SECRET not in document
    assert page.status.text() == f"Report saved to {html_path}."

    pdf_path = page.export_to(tmp_path / "report.pdf")
    assert pdf_path is not None
    data = pdf_path.read_bytes()
    assert data.startswith(b"%PDF")
    assert len(data) > 5000
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind
    if shutil.which("pdftoppm") and os.environ.get("QT_SCALE_FACTOR", "1") == "1":  # a PDF has no scale
        out = "/tmp/gui-summary-report"
        subprocess.run(
            ["pdftoppm", "-png", "-r", "110", "-f", "1", "-l", "1", "-singlefile", str(pdf_path), out],
            check=True,
        )
        assert Path(out + ".png").stat().st_size > 0
    if shutil.which("pdftotext"):
        text = subprocess.run(
            ["pdftotext", "-layout", str(pdf_path), "-"], capture_output=True, text=True, check=True
        ).stdout
        assert "Mail setup report: contoso.com" in text
        assert "Device settings" in text
        assert "smtp.office365.com" in text


def test_export_button_asks_where_then_writes(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, page = open_page(qtbot, tmp_path)
    target = tmp_path / "handover.pdf"
    monkeypatch.setattr(page, "choose_report_path", lambda: target)
    qtbot.mouseClick(page.export_button, Qt.MouseButton.LeftButton)
    assert target.read_bytes().startswith(b"%PDF")
    monkeypatch.setattr(page, "choose_report_path", lambda: None)  # cancelled: nothing happens
    qtbot.mouseClick(page.export_button, Qt.MouseButton.LeftButton)
    assert page.status.text() == f"Report saved to {target}."


def test_suggested_report_path_names_the_domain(qtbot: QtBot, tmp_path: Path) -> None:
    _, page = open_page(qtbot, tmp_path)
    path = page.suggested_report_path()
    assert path.name.startswith("relaywizard-contoso-com-")
    assert path.suffix == ".html"


def test_export_into_a_missing_folder_is_one_sentence(qtbot: QtBot, tmp_path: Path) -> None:
    _, page = open_page(qtbot, tmp_path)
    for name in ("report.html", "report.pdf"):
        assert page.export_to(tmp_path / "missing" / name) is None
        text = page.status.text()
        assert text.startswith(f"Cannot save the report in {tmp_path / 'missing'}: ")
        assert text.endswith(".")
        assert "\n" not in text


# -- the profile ------------------------------------------------------------------------------------------


def test_save_as_profile_writes_the_settings_file(qtbot: QtBot, tmp_path: Path) -> None:
    _, page = open_page(qtbot, tmp_path)
    qtbot.mouseClick(page.save_button, Qt.MouseButton.LeftButton)
    path = page.services.paths.settings_file
    loaded = settings.load(path)
    profile = loaded.profile("scanner")
    assert (profile.method, profile.domain, profile.user, profile.sender, profile.auth) == (
        "smtp-auth",
        D,
        "scanner@contoso.com",
        "office@contoso.com",
        "password",
    )
    assert loaded.default_profile == "scanner"
    assert page.status.text() == (
        f"Saved as profile “scanner” in {path}; relaywizard check --profile scanner can use it."
    )
    assert SECRET not in path.read_text()


def test_save_with_a_typed_name(qtbot: QtBot, tmp_path: Path) -> None:
    plan = a_plan(profile="", secret_stored=False)
    _, page = open_page(qtbot, tmp_path, plan)
    assert page.profile_name.text() == "scanner-contoso-com"
    page.profile_name.clear()
    qtbot.keyClicks(page.profile_name, "front desk")
    assert not page.save_button.isEnabled()
    assert "profile name" in page.status.text()
    page.profile_name.clear()
    qtbot.keyClicks(page.profile_name, "front-desk")
    assert page.save_button.isEnabled()
    assert page.status.text() == ""
    qtbot.mouseClick(page.save_button, Qt.MouseButton.LeftButton)
    assert "front-desk" in settings.load(page.services.paths.settings_file).profiles
    assert plan.profile == "front-desk"


def test_save_relay_plan_writes_the_relay_table(qtbot: QtBot, tmp_path: Path) -> None:
    relay = LocalRelay(enabled=True, listen="192.168.1.20:2525", allow=["192.168.1.0/24"])
    wizard, page = open_page(qtbot, tmp_path, a_plan(relay=relay, auth="password"))
    assert page.values["Server (SMTP host)"].text() == "192.168.1.20"
    assert page.values["Port"].text() == "2525"
    qtbot.mouseClick(page.save_button, Qt.MouseButton.LeftButton)
    loaded = settings.load(page.services.paths.settings_file)
    assert loaded.relay.profile == "scanner"
    assert loaded.relay.listen == "192.168.1.20:2525"
    assert loaded.relay.allow == ["192.168.1.0/24"]
    assert "relaywizard relay and relaywizard check --profile scanner" in page.status.text()
    save_png(wizard, page, "summary-relay")


def test_invalid_settings_file_is_one_sentence_and_left_alone(qtbot: QtBot, tmp_path: Path) -> None:
    wizard, page = open_page(qtbot, tmp_path)
    path = page.services.paths.settings_file
    path.parent.mkdir(parents=True)
    path.write_text("version = 1\n[profiles.x\n")
    qtbot.mouseClick(page.save_button, Qt.MouseButton.LeftButton)
    text = page.status.text()
    assert text.startswith(f"{path} is not valid TOML")
    assert "\n" not in text
    assert path.read_text() == "version = 1\n[profiles.x\n"
    save_png(wizard, page, "summary-error")


def test_unwritable_folder_is_one_sentence(qtbot: QtBot, tmp_path: Path) -> None:
    _, page = open_page(qtbot, tmp_path)
    config = page.services.paths.config
    config.parent.mkdir(parents=True)
    config.write_text("a file where the folder should be")
    qtbot.mouseClick(page.save_button, Qt.MouseButton.LeftButton)
    assert page.status.text().startswith("Cannot ")
    assert "\n" not in page.status.text()


def test_tab_order_reaches_every_button(qtbot: QtBot, tmp_path: Path) -> None:
    wizard, page = open_page(qtbot, tmp_path)
    wizard.activateWindow()
    qtbot.waitUntil(wizard.isActiveWindow)
    wanted = [
        *page.copy_buttons.values(),
        page.copy_powershell,
        page.copy_dns,
        page.profile_name,
        page.save_button,
        page.export_button,
    ]
    page.values["Server (SMTP host)"].setFocus()
    reached = []
    for _ in range(40):
        focused = QApplication.focusWidget()
        assert focused is not None
        reached.append(focused)
        qtbot.keyClick(focused, Qt.Key.Key_Tab)
    missing = [w.accessibleName() for w in wanted if w not in reached]
    assert missing == []
    first_visits = list(dict.fromkeys(w for w in reached if w in wanted))
    assert first_visits == wanted  # top to bottom, as the page reads
