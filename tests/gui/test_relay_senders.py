"""The relay page's sender per device, and its relay signing in with OAuth, against the lab."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
import qasync
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from relaywizard.core import handover
from relaywizard.core.paths import AppPaths
from relaywizard.core.plan import OAuthPlan, SetupPlan
from relaywizard.core.secrets import SERVICE, SecretStore
from relaywizard.gui.pages.relay import RelayPage
from relaywizard.gui.sender_table import SenderTable
from relaywizard.gui.services import Services
from relaywizard.gui.wizard import PageId, SetupWizard
from tests.core.test_secrets import MemoryKeyring
from tests.gui.conftest import run, until
from tests.gui.test_relay_page import HOST, fixed_addresses, open_page
from tests.lab.authority import DEFAULT_CLIENT_ID, DEFAULT_SECRET, DEFAULT_TENANT, FakeAuthority
from tests.lab.lab import Lab
from tests.lab.process import free_port

__all__ = ["fixed_addresses"]  # the fixture: the same machine addresses as the relay page's tests


@pytest.fixture(autouse=True)
def same_addresses(fixed_addresses: None) -> None:
    """The relay page lists this machine's addresses: the same fixed ones as in its own tests."""


# -- the table ---------------------------------------------------------------------------------------------


def test_the_table_keeps_valid_rows_and_says_what_is_wrong(qtbot: QtBot) -> None:
    table = SenderTable()
    qtbot.addWidget(table)
    table.add_row("192.168.1.10", "scans@contoso.com")
    table.add_row("LOGIN:warehouse", "printer@contoso.com")
    table.add_row("", "")  # an empty row is ignored
    assert table.is_valid()
    assert table.senders() == {"192.168.1.10": "scans@contoso.com", "login:warehouse": "printer@contoso.com"}
    table.add_row("the printer", "printer@contoso.com")
    assert not table.is_valid()
    assert table.problem.status == "fail"
    assert table.problem.text().startswith("Row 4: ")
    assert "\n" not in table.problem.text()
    assert "the printer" not in "".join(table.senders())
    table.table.selectRow(3)
    table.remove_button.click()
    assert table.is_valid()
    assert table.problem.isHidden()
    table.add_row("192.168.1.11", "")
    assert table.problem.text() == "Row 4: give the address it sends as."


def test_the_default_sender_is_said(qtbot: QtBot) -> None:
    table = SenderTable()
    qtbot.addWidget(table)
    table.set_default("scanner@contoso.com")
    assert table.default_note.text() == "Other allowed devices send as scanner@contoso.com."
    table.set_default(None)
    assert "the mailbox the relay signs in as" in table.default_note.text()


# -- the page ----------------------------------------------------------------------------------------------


def test_the_page_writes_each_devices_sender_into_the_plan(qtbot: QtBot, tmp_path: Path) -> None:
    wizard, page = open_page(qtbot, tmp_path, allow=[f"{HOST}/32"])
    assert not page.sender_table.isVisible()
    page.own_senders.setChecked(True)
    assert page.sender_table.isVisible()
    assert page.sender_table.table.rowCount() == 1  # a row to fill in, ready
    assert page.isComplete()  # an empty row is left out
    table = page.sender_table.table
    table.item(0, 0).setText("192.168.1.0/24")
    table.item(0, 1).setText("not an address")
    assert not page.isComplete()
    table.item(0, 1).setText("scans@lab.test")
    assert page.isComplete()
    assert page.validatePage()
    assert wizard.plan.relay.senders == {"192.168.1.0/24": "scans@lab.test"}
    page.own_senders.setChecked(False)  # turned off: no map, whatever the table holds
    page.validatePage()
    assert wizard.plan.relay.senders == {}


def test_the_tenant_changes_grant_each_devices_sender() -> None:
    plan = SetupPlan(method="smtp-auth", auth="password")
    plan.tenant.domain, plan.tenant.mailbox = "contoso.com", "relay@contoso.com"
    plan.relay.enabled = True
    plan.relay.senders = {"192.168.1.10": "scans@contoso.com", "login:wh": "printer@contoso.com"}
    script = handover.tenant_changes(plan).powershell
    for alias in ("scans@contoso.com", "printer@contoso.com"):
        assert (
            f"Add-RecipientPermission -Identity '{alias}' -Trustee 'relay@contoso.com' -AccessRights SendAs"
            in script
        )
    assert script.count("Connect-ExchangeOnline") == 1

    plan.auth = "oauth"
    plan.oauth = OAuthPlan(kind="oauth-app", tenant="contoso.com", client_id=DEFAULT_CLIENT_ID)
    script = handover.tenant_changes(plan).powershell
    assert 'New-ManagementScope -Name "relaywizard device senders"' in script
    assert "PrimarySmtpAddress -eq 'scans@contoso.com'" in script
    assert f"New-ManagementRoleAssignment -App '{DEFAULT_CLIENT_ID}'" in script

    plan.method, plan.auth = "connector", "none"
    script = handover.tenant_changes(plan).powershell
    assert "any address of an accepted domain may be the sender" in script
    assert "Add-RecipientPermission" not in script


def test_the_saved_settings_keep_the_senders(tmp_path: Path) -> None:
    plan = SetupPlan(method="smtp-auth", auth="password")
    plan.tenant.domain, plan.tenant.mailbox = "contoso.com", "relay@contoso.com"
    plan.relay.enabled, plan.relay.allow = True, ["192.168.1.0/24"]
    plan.relay.senders = {"192.168.1.10": "scans@contoso.com"}
    saved = handover.save_profile(plan, tmp_path / "settings.toml", "office")
    assert saved.relay.senders == {"192.168.1.10": "scans@contoso.com"}


# -- against the lab ---------------------------------------------------------------------------------------


def return_path(lab: Lab, address: str, message_id: str) -> str | None:
    for path in lab.message_files(address):
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if message_id in str(parsed["Message-ID"]).replace("\n", "").replace(" ", ""):
            return str(parsed["Return-Path"])
    return None


@pytest.mark.lab
def test_the_relays_test_message_goes_out_as_the_devices_own_sender(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop, lab: Lab
) -> None:
    port = free_port(HOST)
    wizard, page = open_page(qtbot, tmp_path, lab=lab, port=port, allow=[f"{HOST}/32"])
    page.own_senders.setChecked(True)
    page.sender_table.table.item(0, 0).setText(HOST)
    page.sender_table.table.item(0, 1).setText("scans@lab.test")  # an alias scanner@lab.test may send as

    async def scenario() -> None:
        qtbot.mouseClick(page.start_button, Qt.MouseButton.LeftButton)
        await until(lambda: page.state == "running", 15, "the relay running")
        qtbot.mouseClick(page.test_button, Qt.MouseButton.LeftButton)
        await until(lambda: page.test_status.status in {"pass", "warn", "fail"}, 30, "the test message")
        assert page.test_status.status == "pass", page.test_status.text()
        message_id = wizard.plan.test_message_id
        assert message_id is not None
        await until(lambda: return_path(lab, "scanner@lab.test", message_id.strip("<>")), 15, "the delivery")
        assert return_path(lab, "scanner@lab.test", message_id.strip("<>")) == "<scans@lab.test>"
        await page.stop_relay()

    run(qloop, scenario(), timeout=60)


@pytest.mark.lab
def test_the_relay_signs_in_with_the_apps_oauth_token(
    qtbot: QtBot, tmp_path: Path, qloop: qasync.QEventLoop, lab: Lab, lab_authority: FakeAuthority
) -> None:
    port = free_port(HOST)
    keyring = MemoryKeyring()
    keyring.set_password(SERVICE, "app", DEFAULT_SECRET)
    plan = SetupPlan(method="smtp-auth", auth="oauth", profile="app")
    plan.tenant.domain, plan.tenant.mailbox = "lab.test", "app@lab.test"
    plan.oauth = OAuthPlan(kind="oauth-app", tenant=DEFAULT_TENANT, client_id=DEFAULT_CLIENT_ID)
    plan.relay.enabled, plan.relay.listen, plan.relay.allow = True, f"{HOST}:{port}", [f"{HOST}/32"]
    services = Services(
        paths=AppPaths.under(tmp_path / "home"),
        secret_store=lambda: SecretStore(keyring),
        smtp_host=lab.host,
        smtp_port=lab.submission_port,
        ca_file=str(lab_authority.trust_with(lab.ca_file)),
        authority=lab_authority.url,
    )
    wizard = SetupWizard(plan=plan, services=services)
    qtbot.addWidget(wizard)
    wizard.setStartId(PageId.RELAY)
    wizard.show()
    page = wizard.currentPage()
    assert isinstance(page, RelayPage)
    assert "OAuth" in page.upstream.text() or "token" in page.upstream.text()

    async def scenario() -> None:
        qtbot.mouseClick(page.start_button, Qt.MouseButton.LeftButton)
        await until(lambda: page.state in ("running", "stopped") and page.relay_status.status, 20, "started")
        assert page.state == "running", page.relay_status.text()
        qtbot.mouseClick(page.test_button, Qt.MouseButton.LeftButton)
        await until(lambda: page.test_status.status in {"pass", "warn", "fail"}, 30, "the test message")
        assert page.test_status.status == "pass", page.test_status.text()
        assert lab_authority.issued  # the relay fetched a token from the authority
        await page.stop_relay()

    run(qloop, scenario(), timeout=60)
