"""The shared widgets: a line edit judging what is typed, a status line, and the page's task set."""

from __future__ import annotations

import asyncio
import logging

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QWidget
from pytestqt.qtbot import QtBot

from relaywizard.core import validate
from relaywizard.gui.widgets import BackgroundTasks, StatusLine, ValidatedLineEdit, tone


def domain_field(qtbot: QtBot, **kwargs: object) -> ValidatedLineEdit:
    field = ValidatedLineEdit(validate.domain, accessible_name="Domain", hint="Your domain.", **kwargs)  # type: ignore[arg-type]
    qtbot.addWidget(field)
    field.show()
    return field


def shown_icon(field: ValidatedLineEdit) -> str | None:
    name = field.icon.property("iconName")
    return str(name) if name else None


def test_an_untouched_empty_field_is_quiet_but_not_valid(qtbot: QtBot) -> None:
    field = domain_field(qtbot)
    assert field.state == "empty"
    assert not field.is_valid()
    assert field.value is None
    assert field.message() == "Your domain."
    assert shown_icon(field) is None


def test_typing_shows_the_validators_sentence_then_the_pass_icon(qtbot: QtBot) -> None:
    field = domain_field(qtbot)
    with qtbot.waitSignal(field.validityChanged, timeout=0, raising=False) as changes:
        qtbot.keyClicks(field.edit, "contoso..com")
    assert not changes.signal_triggered
    assert field.state == "invalid"
    assert "empty part between two dots" in field.message()
    assert field.message() == field.edit.accessibleDescription()
    assert shown_icon(field) == "fail"
    assert field.message_label.palette().color(QPalette.ColorRole.WindowText) == tone("fail", field.palette())

    field.edit.clear()
    with qtbot.waitSignal(field.validityChanged) as became:
        qtbot.keyClicks(field.edit, "Contoso.com")
    assert became.args == [True]
    assert field.state == "valid"
    assert field.value == "contoso.com"
    assert shown_icon(field) == "pass"
    assert field.message() == "Your domain."


def test_clearing_a_required_field_says_so(qtbot: QtBot) -> None:
    field = domain_field(qtbot)
    qtbot.keyClicks(field.edit, "c")
    qtbot.keyClick(field.edit, Qt.Key.Key_Backspace)
    assert field.state == "empty"
    assert "empty" in field.message().lower()
    assert shown_icon(field) == "fail"


def test_the_validators_guess_is_offered_as_a_link(qtbot: QtBot) -> None:
    field = domain_field(qtbot)
    qtbot.keyClicks(field.edit, "https://contoso.com/owa")
    assert "web address" in field.message()
    assert field.suggestion == "contoso.com"
    assert 'href="suggestion"' in field.message_label.text()
    field.message_label.linkActivated.emit("suggestion")
    assert field.text() == "contoso.com"
    assert field.is_valid()
    assert field.suggestion is None


def test_an_optional_field_is_valid_empty(qtbot: QtBot) -> None:
    field = domain_field(qtbot, optional=True)
    assert field.is_valid()
    assert field.value == ""
    qtbot.keyClicks(field.edit, "x y")
    assert not field.is_valid()


def test_a_check_warns_without_refusing(qtbot: QtBot) -> None:
    field = domain_field(qtbot, check=lambda value: "Not yours." if value.endswith(".test") else None)
    qtbot.keyClicks(field.edit, "contoso.test")
    assert field.is_valid()
    assert field.state == "warning"
    assert field.message() == "Not yours."
    assert shown_icon(field) == "warn"


def test_changing_the_rules_judges_the_text_again(qtbot: QtBot) -> None:
    field = domain_field(qtbot)
    field.setText("203.0.113.7")
    assert not field.is_valid()
    field.set_validator(validate.ip_address)
    assert field.is_valid()
    assert field.value == "203.0.113.7"


def test_error_text_stays_readable_on_a_dark_palette() -> None:
    light, dark = QPalette(), QPalette()
    light.setColor(QPalette.ColorRole.Window, QColor("#f6f6f6"))
    dark.setColor(QPalette.ColorRole.Window, QColor("#202020"))
    on_light, on_dark = tone("fail", light), tone("fail", dark)
    assert on_light == QColor("#c50f1f")  # the colour of the fail icon
    assert on_dark.lightness() > on_light.lightness()


def test_a_status_line_shows_an_icon_and_hides_when_empty(qtbot: QtBot) -> None:
    page = QWidget()
    qtbot.addWidget(page)
    line = StatusLine(page)
    page.show()
    assert not line.isVisible()
    line.set_status("fail", "The keyring is locked. Unlock it.")
    assert line.isVisible()
    assert line.icon.property("iconName") == "fail"
    assert line.label.palette().color(QPalette.ColorRole.WindowText) == tone("fail", line.palette())
    line.set_status("pass", "Saved.")
    assert line.label.palette().color(QPalette.ColorRole.WindowText) != tone("fail", line.palette())
    line.clear()
    assert not line.isVisible()


async def test_background_tasks_are_kept_until_done_and_failures_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = BackgroundTasks()

    async def fail() -> None:
        raise RuntimeError("boom")

    async def wait() -> None:
        await asyncio.sleep(10)

    tasks.start(fail())
    slow = tasks.start(wait())
    assert slow is not None
    assert tasks.busy
    with caplog.at_level(logging.ERROR):
        await asyncio.sleep(0.01)
    assert "background task failed" in caplog.text
    tasks.cancel_all()
    await asyncio.sleep(0.01)
    assert slow.cancelled()
    assert not tasks.busy


def test_without_a_running_loop_nothing_starts_and_a_warning_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def work() -> None:
        raise AssertionError("must not run")

    with caplog.at_level(logging.WARNING):
        assert BackgroundTasks().start(work()) is None
    assert "no running asyncio loop" in caplog.text
