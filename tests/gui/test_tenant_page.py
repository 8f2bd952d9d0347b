"""The tenant page: inline validation as the admin types, fields by method, and what it writes to the plan."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWizard
from pytestqt.qtbot import QtBot

from relaywizard.core.paths import AppPaths
from relaywizard.core.plan import SetupPlan, UseCase
from relaywizard.diagnostics.model import Method
from relaywizard.gui.pages.tenant import TenantPage, public_ip_warning
from relaywizard.gui.services import Services
from relaywizard.gui.widgets import ValidatedLineEdit
from relaywizard.gui.wizard import PageId, SetupWizard


def open_page(
    qtbot: QtBot, tmp_path: Path, method: Method = "smtp-auth", plan: SetupPlan | None = None
) -> tuple[SetupWizard, TenantPage]:
    plan = plan or SetupPlan(method=method)
    wizard = SetupWizard(plan=plan, services=Services(paths=AppPaths.under(tmp_path)))
    qtbot.addWidget(wizard)
    wizard.setStartId(PageId.TENANT)
    wizard.show()
    page = wizard.currentPage()
    assert isinstance(page, TenantPage)
    return wizard, page


def next_enabled(wizard: SetupWizard) -> bool:
    return wizard.button(QWizard.WizardButton.NextButton).isEnabled()


def type_into(qtbot: QtBot, field: ValidatedLineEdit, text: str) -> None:
    field.edit.clear()
    qtbot.keyClicks(field.edit, text)


def shown(page: TenantPage, widget: object) -> bool:
    return bool(page.form.isRowVisible(widget))  # type: ignore[call-overload]


def save_png(wizard: SetupWizard, name: str) -> None:
    scale = os.environ.get("QT_SCALE_FACTOR", "1")
    suffix = "" if scale == "1" else f"@{scale}x"
    wizard.grab().save(f"/tmp/gui-{name}{suffix}.png")


@pytest.mark.parametrize(
    ("typed", "fragment"),
    [
        ("contoso..com", "empty part between two dots"),
        ("https://contoso.com", "web address"),
        ("admin@contoso.com", "email address"),
        ("contoso", "at least one dot"),
    ],
)
def test_a_mistyped_domain_gets_the_validators_sentence(
    qtbot: QtBot, tmp_path: Path, typed: str, fragment: str
) -> None:
    wizard, page = open_page(qtbot, tmp_path)
    type_into(qtbot, page.mailbox, "scanner@contoso.com")
    type_into(qtbot, page.domain, typed)
    assert fragment in page.domain.message()
    assert page.domain.message_label.isVisible()
    assert page.domain.state == "invalid"
    assert not next_enabled(wizard)

    type_into(qtbot, page.domain, "contoso.com")
    assert page.domain.state == "valid"
    assert next_enabled(wizard)


def test_next_waits_for_every_shown_field(qtbot: QtBot, tmp_path: Path) -> None:
    wizard, page = open_page(qtbot, tmp_path)
    assert not next_enabled(wizard)
    type_into(qtbot, page.domain, "contoso.com")
    assert not next_enabled(wizard)
    type_into(qtbot, page.mailbox, "scanner@")
    assert "nothing" in page.mailbox.message().lower() or "domain" in page.mailbox.message()
    assert not next_enabled(wizard)
    qtbot.keyClicks(page.mailbox.edit, "contoso.com")
    assert next_enabled(wizard)
    type_into(qtbot, page.from_address, "not an address")
    assert not next_enabled(wizard)
    page.from_address.edit.clear()
    assert next_enabled(wizard)  # the sender is optional


def test_smtp_auth_asks_for_the_sender_and_explains_send_as(qtbot: QtBot, tmp_path: Path) -> None:
    wizard, page = open_page(qtbot, tmp_path)
    assert shown(page, page.from_address)
    assert not shown(page, page.matches)
    assert not shown(page, page.public_ip)
    assert not shown(page, page.certificate)
    assert not shown(page, page.method_box)
    assert "sign in as" in page.mailbox_label.text().replace("&", "")
    type_into(qtbot, page.domain, "contoso.com")
    assert page.mailbox.edit.placeholderText() == "scanner@contoso.com"
    type_into(qtbot, page.mailbox, "scanner@contoso.com")
    type_into(qtbot, page.from_address, "frontdesk@contoso.com")
    assert page.from_address.state == "warning"
    assert "Send As" in page.from_address.message()
    assert "5.7.60" in page.from_address.message()
    assert next_enabled(wizard)
    save_png(wizard, "tenant")


def test_next_writes_the_tenant_with_the_sender_defaulting_to_the_mailbox(
    qtbot: QtBot, tmp_path: Path
) -> None:
    wizard, page = open_page(qtbot, tmp_path)
    type_into(qtbot, page.domain, "Contoso.COM")
    type_into(qtbot, page.mailbox, "scanner@Contoso.com")
    qtbot.mouseClick(wizard.button(QWizard.WizardButton.NextButton), Qt.MouseButton.LeftButton)
    assert wizard.currentId() == PageId.CREDENTIALS
    tenant = wizard.plan.tenant
    assert (tenant.domain, tenant.mailbox, tenant.sender) == (
        "contoso.com",
        "scanner@contoso.com",
        "scanner@contoso.com",
    )
    assert (tenant.public_ip, tenant.certificate_name) == ("", "")


def test_the_page_prefills_from_the_plan(qtbot: QtBot, tmp_path: Path) -> None:
    plan = SetupPlan(method="smtp-auth")
    plan.tenant.domain, plan.tenant.mailbox, plan.tenant.sender = (
        "contoso.com",
        "a@contoso.com",
        "b@contoso.com",
    )
    wizard, page = open_page(qtbot, tmp_path, plan=plan)
    assert (page.domain.text(), page.mailbox.text(), page.from_address.text()) == plan_fields(plan)
    assert next_enabled(wizard)


def plan_fields(plan: SetupPlan) -> tuple[str, str, str]:
    return plan.tenant.domain, plan.tenant.mailbox, plan.tenant.sender


def test_connector_fields_appear_only_for_a_connector(qtbot: QtBot, tmp_path: Path) -> None:
    wizard, page = open_page(qtbot, tmp_path, "connector")
    assert shown(page, page.matches)
    assert shown(page, page.public_ip)
    assert not shown(page, page.certificate)
    assert not shown(page, page.from_address)
    assert "Sender" in page.mailbox_label.text().replace("&", "")
    type_into(qtbot, page.domain, "contoso.com")
    type_into(qtbot, page.mailbox, "scanner@contoso.com")
    assert not next_enabled(wizard)  # the connector needs the IP
    type_into(qtbot, page.public_ip, "203.0.113.300")
    assert page.public_ip.state == "invalid"
    assert not next_enabled(wizard)
    type_into(qtbot, page.public_ip, "192.168.1.20")
    assert page.public_ip.state == "warning"
    assert "private" in page.public_ip.message()
    assert next_enabled(wizard)  # a warning, not a refusal: the admin may know better
    save_png(wizard, "tenant-connector")

    qtbot.mouseClick(page.match_certificate, Qt.MouseButton.LeftButton)
    assert page.match_certificate.isChecked()
    assert shown(page, page.certificate)
    assert not shown(page, page.public_ip)
    assert not next_enabled(wizard)
    type_into(qtbot, page.certificate, "*.Contoso.com")
    assert next_enabled(wizard)
    assert page.validatePage()
    assert wizard.plan.tenant.certificate_name == "*.contoso.com"
    assert wizard.plan.tenant.public_ip == ""
    assert wizard.plan.tenant.sender == "scanner@contoso.com"


def test_a_connector_matches_ipv4_only(qtbot: QtBot, tmp_path: Path) -> None:
    _wizard, page = open_page(qtbot, tmp_path, "connector")
    type_into(qtbot, page.public_ip, "2001:db8::1")
    assert page.public_ip.state == "invalid"
    assert "IPv4" in page.public_ip.message()
    type_into(qtbot, page.public_ip, "203.0.113.10:25")
    assert "port" in page.public_ip.message()
    assert page.public_ip.suggestion == "203.0.113.10"


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ("10.1.2.3", "private"),
        ("172.20.0.1", "private"),
        ("192.168.0.10", "private"),
        ("100.64.12.1", "carrier-grade NAT"),
        ("127.0.0.2", "special use"),
        ("169.254.1.1", "special use"),
        ("fd00::1", "private"),
    ],
)
def test_non_public_addresses_are_named(address: str, fragment: str) -> None:
    warning = public_ip_warning(address)
    assert warning is not None
    assert fragment in warning


@pytest.mark.parametrize("address", ["20.1.2.3", "2a01:111:f400::1"])
def test_public_addresses_pass_quietly(address: str) -> None:
    assert public_ip_warning(address) is None


def test_direct_send_takes_an_optional_ip_for_the_spf_check(qtbot: QtBot, tmp_path: Path) -> None:
    wizard, page = open_page(qtbot, tmp_path, "direct-send")
    assert shown(page, page.public_ip)
    assert not shown(page, page.matches)
    assert not shown(page, page.from_address)
    type_into(qtbot, page.domain, "contoso.com")
    type_into(qtbot, page.mailbox, "scanner@fabrikam.com")
    assert page.mailbox.state == "warning"
    assert "contoso.com" in page.mailbox.message()
    assert next_enabled(wizard)
    type_into(qtbot, page.public_ip, "2001:db8::1")  # IPv6 is fine for SPF (ip6:)
    assert page.public_ip.is_valid()


def test_validating_existing_settings_chooses_the_method_here(qtbot: QtBot, tmp_path: Path) -> None:
    wizard, page = open_page(qtbot, tmp_path, plan=SetupPlan(use_case=UseCase.VALIDATE))
    assert shown(page, page.method_box)
    assert shown(page, page.from_address)
    page.method_box.setCurrentIndex(page.method_box.findData("direct-send"))
    assert not shown(page, page.from_address)
    assert shown(page, page.public_ip)
    type_into(qtbot, page.domain, "contoso.com")
    type_into(qtbot, page.mailbox, "scanner@contoso.com")
    assert page.validatePage()
    assert wizard.plan.method == "direct-send"
    assert wizard.plan.auth == "none"


def test_tab_order_follows_the_form(qtbot: QtBot, tmp_path: Path) -> None:
    _wizard, page = open_page(qtbot, tmp_path)
    chain = [page.domain.edit, page.mailbox.edit, page.from_address.edit]
    for current, following in itertools.pairwise(chain):
        assert current.nextInFocusChain() is following or _next_focusable(current) is following
    for field in (page.domain, page.mailbox, page.from_address):
        assert field.edit.accessibleName()


def _next_focusable(widget: object) -> object:
    from PySide6.QtWidgets import QWidget

    assert isinstance(widget, QWidget)
    candidate = widget.nextInFocusChain()
    while candidate is not widget and not (
        candidate.focusPolicy() & Qt.FocusPolicy.TabFocus and candidate.isVisibleTo(candidate.window())
    ):
        candidate = candidate.nextInFocusChain()
    return candidate
