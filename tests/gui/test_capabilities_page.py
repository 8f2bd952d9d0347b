"""The capabilities page: answers → the advice, live; the admin's own choice; what reaches the plan."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QAbstractButton, QCheckBox, QComboBox, QLabel, QRadioButton, QWidget, QWizard
from pytestqt.qtbot import QtBot

from relaywizard.core import advisor, m365
from relaywizard.core.paths import AppPaths
from relaywizard.core.plan import Capabilities, SetupPlan, UseCase
from relaywizard.gui.pages.capabilities import QUESTIONS, CapabilitiesPage
from relaywizard.gui.services import Services
from relaywizard.gui.wizard import PageId, SetupWizard


def open_page(
    qtbot: QtBot, tmp_path: Path, plan: SetupPlan | None = None
) -> tuple[SetupWizard, CapabilitiesPage]:
    wizard = SetupWizard(plan=plan or SetupPlan(), services=Services(paths=AppPaths.under(tmp_path)))
    qtbot.addWidget(wizard)
    wizard.setStartId(PageId.CAPABILITIES)
    wizard.show()
    page = wizard.currentPage()
    assert isinstance(page, CapabilitiesPage)
    return wizard, page


def click(qtbot: QtBot, button: QAbstractButton) -> None:
    """Click where a person would: a check box or radio button on its indicator, at the left."""
    height = button.height() // 2
    pos = (
        QPoint(min(height, button.width() // 2), height)
        if isinstance(button, QCheckBox | QRadioButton)
        else None
    )
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton, pos=pos or button.rect().center())


def unclipped(page: CapabilitiesPage) -> None:
    """Every shown label has the room its text needs (asserts)."""
    for label in visible_labels(page):
        if label.wordWrap():
            needed = label.heightForWidth(label.width())
            assert needed <= label.height() + 1, (
                label.objectName(),
                label.text()[:60],
                needed,
                label.height(),
            )
        else:
            assert label.sizeHint().width() <= label.width() + 1, (label.objectName(), label.text()[:60])


def settle(qtbot: QtBot, page: CapabilitiesPage) -> None:
    """Wait for the layouts to catch up with rebuilt lists: the scroll area resizes its content one
    posted layout request after the content's layout has squeezed itself into the old height."""
    qtbot.waitUntil(lambda: unclipped(page), timeout=2000)


def visible_labels(root: QWidget) -> list[QLabel]:
    return [label for label in root.findChildren(QLabel) if label.isVisible() and label.text()]


def answer(qtbot: QtBot, page: CapabilitiesPage, field: str, value: bool | None) -> None:
    click(qtbot, page.buttons[field][value])


def next_button(wizard: SetupWizard) -> QAbstractButton:
    return wizard.button(QWizard.WizardButton.NextButton)


def tag(page: CapabilitiesPage, method: str) -> str:
    return page.tags[method][1].text()  # type: ignore[index]


def save_png(widget: QWidget, name: str) -> None:
    scale = os.environ.get("QT_SCALE_FACTOR", "1")
    suffix = "" if scale == "1" else f"@{scale}x"
    widget.grab().save(f"/tmp/gui-{name}{suffix}.png")


# -- prefill and the live advice ---------------------------------------------------------------------------


def test_the_page_prefills_from_the_plan_and_recommends(qtbot: QtBot, tmp_path: Path) -> None:
    wizard, page = open_page(qtbot, tmp_path)
    defaults = Capabilities()
    for question in QUESTIONS:
        assert page.buttons[question.field][getattr(defaults, question.field)].isChecked()
    assert page.capabilities() == defaults
    assert page.headline.text() == "<b>SMTP AUTH with a password</b>"
    assert "Recommended:" in page.banner_text.text()
    assert tag(page, "smtp-auth") == "Recommended"
    assert tag(page, "direct-send") == tag(page, "connector") == ""
    warnings = page.warnings.texts()
    assert any(advisor.basic_auth_warning() in text for text in warnings)
    assert not page.checks.isVisible()  # nothing unknown
    assert next_button(wizard).isEnabled()
    save_png(wizard, "capabilities")


def test_answers_change_the_advice_live(qtbot: QtBot, tmp_path: Path) -> None:
    wizard, page = open_page(qtbot, tmp_path)
    answer(qtbot, page, "tls12", False)
    assert page.headline.text() == "<b>Direct Send</b>"
    assert any("RejectDirectSend" in text for text in page.warnings.texts())
    assert tag(page, "direct-send") == "Recommended"
    assert [method for method, column in page.columns.items() if column.marked] == ["direct-send"]

    answer(qtbot, page, "external_recipients", True)
    assert page.recommendation is not None
    assert page.recommendation.local_relay
    assert "local relay" in page.headline.text()
    assert tag(page, "smtp-auth") == "Recommended, through the local relay"
    assert "local relay" in page.banner_text.text()

    answer(qtbot, page, "static_ip", True)
    assert page.headline.text() == "<b>Connector relay</b>"
    assert tag(page, "connector") == "Recommended"
    assert tag(page, "smtp-auth") == ""

    answer(qtbot, page, "tls12", True)
    answer(qtbot, page, "oauth", True)
    assert page.headline.text() == "<b>SMTP AUTH with OAuth 2.0</b>"
    assert next_button(wizard).isEnabled()


def test_unknown_answers_say_what_to_check(qtbot: QtBot, tmp_path: Path) -> None:
    _wizard, page = open_page(qtbot, tmp_path)
    answer(qtbot, page, "oauth", None)
    assert page.checks.isVisible()
    assert page.checks.texts() == [
        "Check whether the device or application offers OAuth 2.0 (often called modern authentication or "
        "Microsoft 365 sign-in). If it does: SMTP AUTH with OAuth 2.0."
    ]
    assert page.checks.lines[0].status == "pending"
    answer(qtbot, page, "oauth", False)
    assert not page.checks.isVisible()


def test_the_shown_advice_is_the_advisors(qtbot: QtBot, tmp_path: Path) -> None:
    _wizard, page = open_page(qtbot, tmp_path, SetupPlan(use_case=UseCase.APPLICATION))
    answer(qtbot, page, "port_587", False)
    answer(qtbot, page, "external_recipients", True)
    expected = advisor.recommend(page.capabilities(), UseCase.APPLICATION)
    assert page.reasons.texts() == expected.reasons
    assert page.warnings.texts() == expected.warnings
    assert any(m365.HVE.name in text for text in page.warnings.texts())


def test_the_comparison_shows_every_method_from_the_facts(qtbot: QtBot, tmp_path: Path) -> None:
    _wizard, page = open_page(qtbot, tmp_path)
    for card in advisor.compare():
        name = page.findChild(QLabel, f"name_{card.method}")
        assert name is not None
        assert card.name in name.text()
        limits = page.findChild(QLabel, f"{card.method}_limits")
        assert limits is not None
        assert limits.text() == card.limits
        recipients = page.findChild(QLabel, f"{card.method}_recipients")
        assert recipients is not None
        assert recipients.text() == card.recipients


# -- the admin's own choice --------------------------------------------------------------------------------


def test_choosing_differently_sets_the_override_and_explains_the_problems(
    qtbot: QtBot, tmp_path: Path
) -> None:
    wizard, page = open_page(qtbot, tmp_path)
    answer(qtbot, page, "external_recipients", True)
    assert not page.method_combo.isEnabled()
    click(qtbot, page.override)
    assert page.method_combo.isEnabled()
    assert page.auth_combo.isEnabled()
    assert page.relay_box.isEnabled()
    assert page.choice_notes.texts()  # the recommendation itself: only its risks, or "nothing known"

    page.method_combo.setFocus()
    qtbot.keyClick(page.method_combo, Qt.Key.Key_Down)  # SMTP AUTH → Direct Send
    assert page.method_combo.currentData() == "direct-send"
    assert [page.auth_combo.itemData(i) for i in range(page.auth_combo.count())] == ["none"]
    statuses = [line.status for line in page.choice_notes.lines]
    assert "fail" in statuses
    assert any("outside" in text for text in page.choice_notes.texts())
    assert "Your choice:" in page.banner_text.text()
    assert tag(page, "direct-send") == "Your choice"
    assert tag(page, "smtp-auth") == "Recommended"
    assert [method for method, column in page.columns.items() if column.marked] == ["direct-send"]
    assert next_button(wizard).isEnabled()  # the admin decides; the page only warns

    click(qtbot, next_button(wizard))
    assert wizard.currentId() == PageId.TENANT
    plan = wizard.plan
    assert (plan.method, plan.auth, plan.relay.enabled, plan.method_overridden) == (
        "direct-send",
        "none",
        False,
        True,
    )
    assert plan.capabilities.external_recipients is True


def test_the_override_offers_only_sign_ins_that_fit_the_method(qtbot: QtBot, tmp_path: Path) -> None:
    _wizard, page = open_page(qtbot, tmp_path)
    click(qtbot, page.override)
    items = [page.auth_combo.itemData(i) for i in range(page.auth_combo.count())]
    assert items == ["oauth", "password"]
    assert page.auth_combo.currentData() == "password"  # kept from the recommendation
    page.auth_combo.setFocus()
    qtbot.keyClick(page.auth_combo, Qt.Key.Key_Up)
    assert page.auth_combo.currentData() == "oauth"
    assert any("OAuth" in text for text in page.choice_notes.texts())  # the device does not offer it
    click(qtbot, page.relay_box)
    assert not any(line.status == "fail" for line in page.choice_notes.lines)  # the relay signs in for it


def test_unticking_the_override_returns_to_the_advice(qtbot: QtBot, tmp_path: Path) -> None:
    wizard, page = open_page(qtbot, tmp_path)
    click(qtbot, page.override)
    page.method_combo.setFocus()
    qtbot.keyClick(page.method_combo, Qt.Key.Key_End)  # connector
    assert page.method_combo.currentData() == "connector"
    click(qtbot, page.override)
    assert page.method_combo.currentData() == "smtp-auth"
    assert page.auth_combo.currentData() == "password"
    assert not page.choice_notes.isVisible()
    click(qtbot, next_button(wizard))
    assert (wizard.plan.method, wizard.plan.method_overridden) == ("smtp-auth", False)


# -- what reaches the plan ---------------------------------------------------------------------------------


def test_next_writes_the_answers_and_the_advice(qtbot: QtBot, tmp_path: Path) -> None:
    wizard, page = open_page(qtbot, tmp_path)
    answer(qtbot, page, "tls12", False)
    answer(qtbot, page, "external_recipients", True)
    answer(qtbot, page, "static_ip", None)
    answer(qtbot, page, "port_587", None)
    click(qtbot, next_button(wizard))
    assert wizard.currentId() == PageId.TENANT
    plan = wizard.plan
    assert plan.capabilities == Capabilities(
        tls12=False,
        can_authenticate=True,
        oauth=False,
        external_recipients=True,
        static_ip=None,
        port_587=None,
    )
    assert (plan.method, plan.auth, plan.relay.enabled, plan.method_overridden) == (
        "smtp-auth",
        "password",
        True,
        False,
    )
    assert PageId.RELAY in wizard.path()


def test_the_advice_can_also_turn_the_relay_off(qtbot: QtBot, tmp_path: Path) -> None:
    plan = SetupPlan()
    plan.relay.enabled = True
    wizard, _page = open_page(qtbot, tmp_path, plan)
    click(qtbot, next_button(wizard))
    assert (plan.method, plan.auth, plan.relay.enabled) == ("smtp-auth", "password", False)
    assert PageId.RELAY not in wizard.path()


def test_an_overridden_plan_comes_back_as_it_was(qtbot: QtBot, tmp_path: Path) -> None:
    plan = SetupPlan(
        capabilities=Capabilities(tls12=None, static_ip=True, external_recipients=True),
        method="connector",
        auth="none",
        method_overridden=True,
    )
    plan.relay.enabled = True
    wizard, page = open_page(qtbot, tmp_path, plan)
    assert page.buttons["tls12"][None].isChecked()
    assert page.buttons["static_ip"][True].isChecked()
    assert page.override.isChecked()
    assert (page.method_combo.currentData(), page.auth_combo.currentData()) == ("connector", "none")
    assert page.relay_box.isChecked()
    assert "Your choice:" in page.banner_text.text()
    click(qtbot, next_button(wizard))
    assert (plan.method, plan.auth, plan.relay.enabled, plan.method_overridden) == (
        "connector",
        "none",
        True,
        True,
    )


def test_back_and_next_keep_the_answers(qtbot: QtBot, tmp_path: Path) -> None:
    wizard, page = open_page(qtbot, tmp_path)
    answer(qtbot, page, "can_authenticate", False)
    click(qtbot, next_button(wizard))
    assert wizard.currentId() == PageId.TENANT
    wizard.back()
    assert wizard.currentId() == PageId.CAPABILITIES
    assert page.buttons["can_authenticate"][False].isChecked()
    assert page.headline.text() == "<b>Direct Send</b>"


# -- keyboard, accessibility, layout -----------------------------------------------------------------------


def test_arrow_keys_answer_within_a_question(qtbot: QtBot, tmp_path: Path) -> None:
    wizard, page = open_page(qtbot, tmp_path)
    wizard.activateWindow()
    qtbot.waitUntil(wizard.isActiveWindow)
    yes = page.buttons["tls12"][True]
    yes.setFocus()
    assert yes.hasFocus()
    qtbot.keyClick(yes, Qt.Key.Key_Right)
    assert page.buttons["tls12"][False].isChecked()
    assert page.headline.text() == "<b>Direct Send</b>"
    qtbot.keyClick(page.buttons["tls12"][False], Qt.Key.Key_Tab)
    assert page.buttons["can_authenticate"][True].hasFocus()  # Tab: on to the next question's answer


def test_every_control_has_an_accessible_name(qtbot: QtBot, tmp_path: Path) -> None:
    _wizard, page = open_page(qtbot, tmp_path)
    controls = (
        page.findChildren(QRadioButton) + page.findChildren(QComboBox) + [page.override, page.relay_box]
    )
    assert len(controls) >= 3 * len(QUESTIONS)
    for control in controls:
        assert control.accessibleName(), control.objectName()
    names = {button.accessibleName() for button in page.findChildren(QRadioButton)}
    assert "Can it use TLS 1.2? Don't know" in names


@pytest.mark.parametrize(
    "answers",
    [
        {},
        {"tls12": False, "external_recipients": True, "static_ip": None, "port_587": None},
        {"tls12": None, "can_authenticate": None, "oauth": None, "static_ip": None, "port_587": None},
    ],
)
def test_it_fits_900_by_640_without_clipping(
    qtbot: QtBot, tmp_path: Path, answers: dict[str, bool | None]
) -> None:
    wizard, page = open_page(qtbot, tmp_path)
    wizard.resize(900, 640)
    for field, value in answers.items():
        answer(qtbot, page, field, value)
    click(qtbot, page.override)
    assert page.override.isChecked()
    settle(qtbot, page)
    content = page.scroller.widget()
    assert not page.scroller.horizontalScrollBar().isVisible()
    assert content.width() <= page.scroller.viewport().width()
    unclipped(page)
    # every control lies inside the scrolling content, none cut off at the right
    for control in page.findChildren(QAbstractButton) + page.findChildren(QComboBox):
        right = control.mapTo(content, control.rect().topRight()).x()
        assert right <= content.width(), control.objectName()
        assert control.width() >= control.minimumSizeHint().width(), control.objectName()
    # the pinned banner is fully shown
    assert page.banner.isVisible()
    assert page.banner.geometry().bottom() <= page.height()


def test_screenshots_of_the_whole_page(qtbot: QtBot, tmp_path: Path) -> None:
    plan = SetupPlan(capabilities=Capabilities(tls12=False, external_recipients=True, static_ip=None))
    wizard, page = open_page(qtbot, tmp_path, plan)
    wizard.resize(900, 640)
    settle(qtbot, page)
    save_png(wizard, "capabilities-relay")
    bar = page.scroller.verticalScrollBar()
    comparison = page.findChild(QLabel, "name_smtp-auth")
    assert comparison is not None
    bar.setValue(comparison.mapTo(page.scroller.widget(), QPoint(0, 0)).y() - 40)
    save_png(wizard, "capabilities-methods")
    click(qtbot, page.override)
    page.method_combo.setCurrentIndex(page.method_combo.findData("direct-send"))
    settle(qtbot, page)
    bar.setValue(bar.maximum())
    save_png(wizard, "capabilities-override")
    save_png(page.scroller.widget(), "capabilities-full")
