"""The relay page's sender per device: a small table of device → the address its mail goes out as.

A device is its address, its network or ``login:NAME``; the address is a mailbox or an alias the relay's
mailbox may send as. Cells are checked as they are edited (``validate.device`` / ``validate.email``); a
wrong cell is marked, says why in one sentence below the table, and is left out of ``senders()``.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from relaywizard.core import validate
from relaywizard.gui.widgets import StatusLine

DEVICE, SENDER = 0, 1


class SenderTable(QWidget):
    """Rows of (device, sender); ``changed`` after every edit that leaves the table valid or not."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, 2)
        self.table.setObjectName("senders")
        self.table.setAccessibleName("Sender per device")
        self.table.setHorizontalHeaderLabels(["Device (address, network or login:NAME)", "Sends as"])
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(DEVICE, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(SENDER, QHeaderView.ResizeMode.Stretch)
        self.table.setMaximumHeight(self.table.fontMetrics().height() * 6 + 12)
        self.add_button = QPushButton("Add a de&vice")
        self.add_button.setAccessibleName("Add a device with its own sender")
        self.remove_button = QPushButton("Remo&ve")
        self.remove_button.setAccessibleName("Remove the selected device's sender")
        self.default_note = QLabel()
        self.default_note.setWordWrap(True)
        self.problem = StatusLine()
        self.problem.setObjectName("senders_problem")

        buttons = QVBoxLayout()
        buttons.setSpacing(6)
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        row = QHBoxLayout()
        row.setSpacing(8)
        row.addWidget(self.table, 1)
        row.addLayout(buttons)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addLayout(row)
        layout.addWidget(self.default_note)
        layout.addWidget(self.problem)

        self.add_button.clicked.connect(self.add_row)
        self.remove_button.clicked.connect(self.remove_selected)
        self.table.itemChanged.connect(lambda _item: self._recheck())
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.set_default(None)
        self._update_buttons()

    def set_default(self, sender: str | None) -> None:
        """What the devices without a row send as (the relay's sender, else its mailbox)."""
        who = sender or "the mailbox the relay signs in as"
        self.default_note.setText(f"Other allowed devices send as {who}.")

    def add_row(self, device: str = "", sender: str = "") -> None:
        row = self.table.rowCount()
        self.table.blockSignals(True)
        self.table.insertRow(row)
        first = QTableWidgetItem(device)
        self.table.setItem(row, DEVICE, first)
        self.table.setItem(row, SENDER, QTableWidgetItem(sender))
        self.table.blockSignals(False)
        if not device:
            self.table.setCurrentCell(row, DEVICE)
            self.table.editItem(first)
        self._recheck()

    def remove_selected(self) -> None:
        rows = sorted({index.row() for index in self.table.selectedIndexes()}, reverse=True)
        for row in rows:
            self.table.removeRow(row)
        self._recheck()

    def set_senders(self, senders: dict[str, str]) -> None:
        self.table.setRowCount(0)
        for device, sender in senders.items():
            self.add_row(device, sender)
        self._recheck()

    def senders(self) -> dict[str, str]:
        """The valid rows, each device normalised (``192.168.1.0/24``, ``login:NAME``)."""
        result: dict[str, str] = {}
        for row in range(self.table.rowCount()):
            checked = self._check_row(row)
            if isinstance(checked, tuple):
                result[checked[0]] = checked[1]
        return result

    def is_valid(self) -> bool:
        """True when no row is half-filled or wrong (empty rows are ignored)."""
        return all(not isinstance(self._check_row(row), str) for row in range(self.table.rowCount()))

    def _text(self, row: int, column: int) -> str:
        item = self.table.item(row, column)
        return item.text().strip() if item is not None else ""

    def _check_row(self, row: int) -> tuple[str, str] | str | None:
        """(device, sender), the sentence of what is wrong, or None for an empty row."""
        device, sender = self._text(row, DEVICE), self._text(row, SENDER)
        if not device and not sender:
            return None
        try:
            checked_device = validate.device(device)
        except ValueError as exc:
            return f"Row {row + 1}: {exc}" if device else f"Row {row + 1}: name the device."
        try:
            checked_sender = validate.email(sender)
        except ValueError as exc:
            return f"Row {row + 1}: {exc}" if sender else f"Row {row + 1}: give the address it sends as."
        return checked_device, checked_sender

    def _recheck(self) -> None:
        problems = []
        self.table.blockSignals(True)
        for row in range(self.table.rowCount()):
            checked = self._check_row(row)
            bad = isinstance(checked, str)
            for column in (DEVICE, SENDER):
                item = self.table.item(row, column)
                if item is not None:
                    item.setToolTip(checked if isinstance(checked, str) else "")
                    font = item.font()
                    font.setItalic(bad)
                    item.setFont(font)
            if isinstance(checked, str):
                problems.append(checked)
        self.table.blockSignals(False)
        if problems:
            self.problem.set_status("fail", problems[0])
        else:
            self.problem.clear()
        self._update_buttons()
        self.changed.emit()

    def _update_buttons(self) -> None:
        self.remove_button.setEnabled(bool(self.table.selectedIndexes()))
