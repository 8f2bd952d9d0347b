"""Small widgets several pages share: a line edit that judges what is typed, a status line, a task set."""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import Callable, Coroutine
from functools import cache
from typing import Any, Literal

from PySide6.QtCore import QEvent, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QVBoxLayout, QWidget

from relaywizard.gui import icons

log = logging.getLogger(__name__)

Validator = Callable[[str], str]
"""Returns the normalised value, or raises ``ValueError`` whose ``str()`` is one readable sentence."""
Check = Callable[[str], str | None]
"""Given a valid, normalised value: a warning sentence (the value stays acceptable), or None."""
FieldState = Literal["empty", "valid", "warning", "invalid"]

_FILL = re.compile(r'fill="(#[0-9a-fA-F]{6})"')


@cache
def _icon_colour(name: str) -> str:
    match = _FILL.search(icons.path(name).read_text(encoding="utf-8"))
    return match.group(1) if match else "#000000"


def tone(name: str, palette: QPalette) -> QColor:
    """The colour of status icon ``name`` (``fail``, ``warn``, ``pass``) made readable as text on ``palette``.

    Qt's palette has no error role, and colours are only written down in the SVG icons: text takes the
    icon's colour, lightened on a dark window so it keeps its contrast.
    """
    colour = QColor(_icon_colour(name))
    if palette.color(QPalette.ColorRole.Window).lightness() < 128:
        colour = colour.lighter(165)
    return colour


def icon_label(size: int | None = None) -> QLabel:
    """An empty label sized for a status icon; fill it with ``set_icon``."""
    label = QLabel()
    extent = size or label.fontMetrics().height()
    label.setFixedSize(QSize(extent, extent))
    label.setProperty("iconExtent", extent)
    return label


def set_icon(label: QLabel, name: str | None) -> None:
    """Show icon ``name`` (crisp at the screen's scale) in a label from ``icon_label``; None clears it."""
    label.setProperty("iconName", name)
    if name is None:
        label.clear()
        return
    extent = int(label.property("iconExtent") or label.width())
    label.setPixmap(icons.icon(name).pixmap(QSize(extent, extent), label.devicePixelRatioF()))


class StatusLine(QWidget):
    """An icon and a word-wrapped sentence beside it: how an outcome is shown on a page.

    ``fail`` sentences take the error colour; the others the normal text colour. Empty text hides the line.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        self.icon = icon_label()
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.icon, 0, Qt.AlignmentFlag.AlignTop)
        layout.addWidget(self.label, 1)
        self.status: str | None = None
        self.setVisible(False)

    def set_status(self, status: str | None, text: str) -> None:
        """Show ``text`` with icon ``status`` (``pass``, ``warn``, ``fail``, ``skip``, ``running``, ...)."""
        self.status = status
        set_icon(self.icon, status)
        self.icon.setVisible(status is not None)
        self.label.setText(text)
        self.setAccessibleName(text)
        self._recolour()
        self.setVisible(bool(text))

    def clear(self) -> None:
        self.set_status(None, "")

    def text(self) -> str:
        return self.label.text()

    def _recolour(self) -> None:
        palette = self.palette()
        if self.status == "fail":
            palette.setColor(QPalette.ColorRole.WindowText, tone("fail", palette))
        self.label.setPalette(palette)

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self._recolour()


class ValidatedLineEdit(QWidget):
    """A line edit that judges its text as it is typed, with the verdict beside and below it.

    Beside the field: a pass, warning or fail icon. Below it: the validator's sentence in the error colour
    (with a "Use ..." link when the validator guessed what was meant), a warning from ``check``, or else
    the ``hint``. An empty required field stays quiet until the person has typed in it.
    """

    validityChanged = Signal(bool)
    """Emitted whenever ``is_valid()`` changes."""

    def __init__(
        self,
        validator: Validator,
        *,
        accessible_name: str,
        placeholder: str = "",
        hint: str = "",
        optional: bool = False,
        check: Check | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.validator = validator
        self.check = check
        self.optional = optional
        self.hint = hint
        self.touched = False
        self._state: FieldState = "empty"
        self._value: str | None = None
        self._message = ""
        self._suggestion: str | None = None
        self._valid = optional

        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        self.edit.setAccessibleName(accessible_name)
        self.edit.setClearButtonEnabled(True)
        self.icon = icon_label()
        self.icon.setAccessibleName(f"{accessible_name}: status")
        self.message_label = QLabel()
        self.message_label.setWordWrap(True)
        self.message_label.setTextFormat(Qt.TextFormat.RichText)
        self.message_label.linkActivated.connect(self._use_suggestion)

        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(8)
        row.addWidget(self.edit, 1)
        row.addWidget(self.icon)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(row)
        layout.addWidget(self.message_label)
        self.setFocusProxy(self.edit)

        self.edit.textEdited.connect(self._edited)
        self.edit.textChanged.connect(lambda _text: self.revalidate())
        self.revalidate()

    # -- the value ---------------------------------------------------------------------------------------

    def text(self) -> str:
        return self.edit.text()

    def setText(self, text: str) -> None:
        self.edit.setText(text)

    @property
    def value(self) -> str | None:
        """The normalised value; ``""`` for an empty optional field; None while invalid."""
        return self._value

    @property
    def state(self) -> FieldState:
        return self._state

    def is_valid(self) -> bool:
        return self._valid

    def message(self) -> str:
        """The sentence shown under the field (error, warning or hint), as plain text."""
        return self._message

    @property
    def suggestion(self) -> str | None:
        """What the validator guessed was meant, offered as a link; None when it had no guess."""
        return self._suggestion

    def set_validator(self, validator: Validator, check: Check | None = None) -> None:
        """Judge by other rules from now on (a page's other answers changed them)."""
        self.validator = validator
        self.check = check
        self.revalidate()

    # -- judging -----------------------------------------------------------------------------------------

    def _edited(self, _text: str) -> None:
        self.touched = True

    def revalidate(self) -> None:
        """Judge the text again: call when something the validator or ``check`` depends on changed."""
        text = self.edit.text()
        self._suggestion = None
        warning: str | None = None
        if not text.strip():
            self._value = "" if self.optional else None
            self._state = "empty"
            error = ""
            if not self.optional and self.touched:
                error = self._judge(text)[1]
        else:
            value, error = self._judge(text)
            self._value = value
            if value is not None and self.check is not None:
                warning = self.check(value)
            self._state = "invalid" if error else "warning" if warning else "valid"
        self._show(error, warning)
        valid = self._value is not None
        if valid != self._valid:
            self._valid = valid
            self.validityChanged.emit(valid)

    def _judge(self, text: str) -> tuple[str | None, str]:
        try:
            return self.validator(text), ""
        except ValueError as exc:
            suggestion = getattr(exc, "suggestion", None)
            self._suggestion = suggestion if isinstance(suggestion, str) and suggestion else None
            return None, _sentence(str(exc))

    def _show(self, error: str, warning: str | None) -> None:
        palette = self.palette()
        if error:
            icon: str | None = "fail"
            self._message = error
            markup = html.escape(error)
            if self._suggestion is not None:
                markup += f' <a href="suggestion">Use {html.escape(self._suggestion)}</a>'
            palette.setColor(QPalette.ColorRole.WindowText, tone("fail", palette))
        elif warning:
            icon, self._message, markup = "warn", warning, html.escape(warning)
        else:
            icon = "pass" if self._state == "valid" else None
            self._message = self.hint
            markup = html.escape(self.hint)
            palette.setColor(QPalette.ColorRole.WindowText, palette.color(QPalette.ColorRole.PlaceholderText))
        set_icon(self.icon, icon)
        self.message_label.setPalette(palette)
        self.message_label.setText(markup)
        self.message_label.setVisible(bool(self._message))
        flags = Qt.TextInteractionFlag.NoTextInteraction
        if self._suggestion is not None and error:
            flags = (
                Qt.TextInteractionFlag.LinksAccessibleByMouse
                | Qt.TextInteractionFlag.LinksAccessibleByKeyboard
            )
        self.message_label.setTextInteractionFlags(flags)
        self.edit.setAccessibleDescription(self._message)

    def _use_suggestion(self, _link: str) -> None:
        if self._suggestion is not None:
            self.touched = True
            self.edit.setText(self._suggestion)
            self.edit.setFocus()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self.revalidate()


def _sentence(text: str) -> str:
    """A validator's message as a sentence: capital first letter, full stop at the end."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else text + "."


class BackgroundTasks:
    """The asyncio tasks a page started: kept alive until done (asyncio keeps only weak references).

    Tasks run on the running loop (qasync's in the application); a task's unexpected exception is logged,
    never lost.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
        """Run ``coroutine`` on the running loop; None (and a warning logged) when no loop is running."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # A page driven without a running loop (a synchronous test stepping through the wizard):
            # a task on a loop nobody runs would only be destroyed pending.
            log.warning(
                "no running asyncio loop: %s not started", getattr(coroutine, "__qualname__", coroutine)
            )
            coroutine.close()
            return None
        task = loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
