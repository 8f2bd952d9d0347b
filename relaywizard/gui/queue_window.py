"""The queue and delivery log: every message the relay holds or delivered lately, and what became of it.

One row per message (``relay/control.py`` ``message_row``: time, device, sender, recipients, size, state,
last reply and its explanation), filtered by state and searched as one types. Queued and dead messages can
be retried, deleted or exported as ``.eml``; the window asks, the controller does it through the relay.
The header repeats the tray's state and counts, so the window also works on its own (no tray).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from relaywizard.gui import icons
from relaywizard.gui.tray import STATE_ICONS, STATE_TEXT, count_text

COLUMNS = ("Time", "Device", "Sender", "Recipients", "Size", "State", "Last reply")
STATE_LABELS = {
    "queued": "Queued",
    "sending": "Sending",
    "done": "Delivered",
    "dead": "Failed",
    "incoming": "Arriving",
}
#: The filter's choices: label → the spool states shown (None: all).
FILTERS: dict[str, tuple[str, ...] | None] = {
    "All messages": None,
    "Waiting (queued or sending)": ("queued", "sending"),
    "Delivered": ("done",),
    "Failed": ("dead",),
}
ACTIONABLE = ("queued", "dead")
Index = QModelIndex | QPersistentModelIndex


def size_text(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / 1024 / 1024:.1f} MB"


def time_text(iso: str) -> str:
    """Local time of a message's arrival: ``14:03`` today, else ``2026-11-21 14:03``."""
    try:
        when = dt.datetime.fromisoformat(iso).astimezone()
    except ValueError:
        return iso
    if when.date() == dt.datetime.now().astimezone().date():
        return when.strftime("%H:%M:%S")
    return when.strftime("%Y-%m-%d %H:%M")


def cell_text(row: dict[str, Any], column: int) -> str:
    match COLUMNS[column]:
        case "Time":
            return time_text(str(row.get("received", "")))
        case "Device":
            return str(row.get("device") or "")
        case "Sender":
            return str(row.get("sender") or "<>")
        case "Recipients":
            return ", ".join(row.get("recipients") or [])
        case "Size":
            return size_text(int(row.get("size") or 0))
        case "State":
            state = str(row.get("state", ""))
            return STATE_LABELS.get(state, state)
        case _:
            return str(row.get("last_reply") or "")


class QueueModel(QAbstractTableModel):
    """The messages, newest first."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[dict[str, Any]] = []

    def set_rows(self, rows: list[dict[str, Any]]) -> None:
        self.beginResetModel()
        self.rows = sorted(rows, key=lambda row: str(row.get("received", "")), reverse=True)
        self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return cell_text(row, index.column())
        if role == Qt.ItemDataRole.ToolTipRole:
            if COLUMNS[index.column()] == "Last reply" and row.get("explanation"):
                return f"{row.get('last_reply')}\n\n{row['explanation']}"
            return cell_text(row, index.column())
        if role == Qt.ItemDataRole.DecorationRole and COLUMNS[index.column()] == "State":
            state = row.get("state")
            name = {"done": "pass", "dead": "fail", "sending": "running", "queued": "pending"}.get(str(state))
            return icons.icon(name) if name else None
        if role == Qt.ItemDataRole.UserRole:
            return row
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None


class QueueFilter(QSortFilterProxyModel):
    """Rows of the chosen states whose text contains every word searched for (case-insensitive)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.states: tuple[str, ...] | None = None
        self.words: list[str] = []

    def set_states(self, states: tuple[str, ...] | None) -> None:
        self.beginFilterChange()
        self.states = states
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def set_search(self, text: str) -> None:
        self.beginFilterChange()
        self.words = text.lower().split()
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:
        model = self.sourceModel()
        assert isinstance(model, QueueModel)
        row = model.rows[source_row]
        if self.states is not None and str(row.get("state")) not in self.states:
            return False
        if not self.words:
            return True
        haystack = " ".join(
            [cell_text(row, column) for column in range(len(COLUMNS))]
            + [str(row.get("id", "")), str(row.get("explanation") or "")]
        ).lower()
        return all(word in haystack for word in self.words)


def choose_eml_path(parent: QWidget, suggested: str) -> str | None:
    path, _ = QFileDialog.getSaveFileName(parent, "Export the message", suggested, "E-mail message (*.eml)")
    return path or None


def confirm_delete(parent: QWidget, row: dict[str, Any]) -> bool:
    answer = QMessageBox.question(
        parent,
        "Delete the message?",
        f"Delete the message from {row.get('sender') or 'the device'} to "
        f"{', '.join(row.get('recipients') or [])}? It will not be delivered.",
    )
    return answer == QMessageBox.StandardButton.Yes


class QueueWindow(QWidget):
    """The table, its filter and search, the selected message's reply and explanation, and the actions."""

    retryRequested = Signal(str)
    deleteRequested = Signal(str)
    exportRequested = Signal(str, str)
    pauseRequested = Signal(bool)
    refreshRequested = Signal()
    closed = Signal()

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        choose_path: Callable[[QWidget, str], str | None] = choose_eml_path,
        confirm: Callable[[QWidget, dict[str, Any]], bool] = confirm_delete,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("relaywizard — queue and delivery log")
        self.setWindowIcon(icons.icon("relaywizard"))
        self._choose_path = choose_path
        self._confirm = confirm
        self.state = "stopped"
        self.resize(1000, 560)

        self.state_icon = QLabel()
        self.headline = QLabel()
        self.headline.setObjectName("headline")
        font = self.headline.font()
        font.setBold(True)
        self.headline.setFont(font)
        self.counts = QLabel()
        self.pause_button = QPushButton("Pause delivery")
        self.pause_button.setAccessibleName("Pause or resume delivery")
        self.pause_button.clicked.connect(lambda: self.pauseRequested.emit(self.state != "paused"))
        header = QHBoxLayout()
        header.addWidget(self.state_icon)
        text = QVBoxLayout()
        text.addWidget(self.headline)
        text.addWidget(self.counts)
        header.addLayout(text, 1)
        header.addWidget(self.pause_button)

        self.filter_box = QComboBox()
        self.filter_box.addItems(list(FILTERS))
        self.filter_box.setAccessibleName("Show messages")
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search device, sender, recipient, reply…")
        self.search.setAccessibleName("Search messages")
        self.search.setClearButtonEnabled(True)
        tools = QHBoxLayout()
        show_label = QLabel("&Show:")
        show_label.setBuddy(self.filter_box)
        tools.addWidget(show_label)
        tools.addWidget(self.filter_box)
        tools.addWidget(self.search, 1)

        self.model = QueueModel(self)
        self.proxy = QueueFilter(self)
        self.proxy.setSourceModel(self.model)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setAccessibleName("Messages")
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        self.table.setAlternatingRowColors(True)
        head = self.table.horizontalHeader()
        head.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        head.setMaximumSectionSize(self.fontMetrics().horizontalAdvance("m") * 28)  # long lists elide
        head.setStretchLastSection(True)

        self.detail = QLabel("Select a message to see its last reply and what it means.")
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.detail.setMinimumHeight(64)
        self.detail.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)

        self.retry_button = QPushButton("&Retry now")
        self.delete_button = QPushButton("&Delete…")
        self.export_button = QPushButton("&Export as .eml…")
        self.refresh_button = QPushButton("Re&fresh")
        self.retry_button.clicked.connect(self._retry)
        self.delete_button.clicked.connect(self._delete)
        self.export_button.clicked.connect(self._export)
        self.refresh_button.clicked.connect(self.refreshRequested.emit)
        buttons = QHBoxLayout()
        for button in (self.retry_button, self.delete_button, self.export_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.refresh_button)

        self.message = QLabel()  # the result of the last action, or why it failed
        self.message.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 16, 16, 16)
        layout.setSpacing(10)
        layout.addLayout(header)
        layout.addLayout(tools)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.detail)
        layout.addLayout(buttons)
        layout.addWidget(self.message)

        self.filter_box.currentTextChanged.connect(lambda label: self.proxy.set_states(FILTERS[label]))
        self.search.textChanged.connect(self.proxy.set_search)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._selected_changed())
        self.proxy.modelReset.connect(self._selected_changed)
        self.proxy.layoutChanged.connect(self._selected_changed)
        self.show_status({"state": "stopped"})
        self._selected_changed()

    def closeEvent(self, event: QCloseEvent) -> None:
        super().closeEvent(event)
        self.closed.emit()

    # -- what the controller tells it ---------------------------------------------------------------

    def show_status(self, status: dict[str, Any]) -> None:
        state = str(status.get("state") or "stopped")
        self.state = state if state in STATE_ICONS else "stopped"
        self.state_icon.setPixmap(icons.icon(STATE_ICONS[self.state]).pixmap(32, 32))
        self.headline.setText(STATE_TEXT[self.state])
        running = self.state != "stopped"
        self.counts.setText(count_text(status) if running else "Nothing to show until a relay runs.")
        self.pause_button.setEnabled(running)
        self.pause_button.setText("Resume delivery" if self.state == "paused" else "Pause delivery")

    def set_messages(self, rows: list[dict[str, Any]]) -> None:
        """Replace the rows, keeping the selected message selected."""
        chosen = self.selected()
        self.model.set_rows(rows)
        if chosen is not None:
            self.select(str(chosen.get("id")))

    def say(self, text: str) -> None:
        self.message.setText(text)

    # -- selection ----------------------------------------------------------------------------------

    def selected(self) -> dict[str, Any] | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        row = self.proxy.data(rows[0], Qt.ItemDataRole.UserRole)
        return row if isinstance(row, dict) else None

    def select(self, envelope_id: str) -> bool:
        for proxy_row in range(self.proxy.rowCount()):
            index = self.proxy.index(proxy_row, 0)
            row = self.proxy.data(index, Qt.ItemDataRole.UserRole)
            if isinstance(row, dict) and row.get("id") == envelope_id:
                self.table.selectRow(proxy_row)
                return True
        return False

    def visible_ids(self) -> list[str]:
        return [
            str(self.proxy.data(self.proxy.index(row, 0), Qt.ItemDataRole.UserRole)["id"])
            for row in range(self.proxy.rowCount())
        ]

    def _selected_changed(self) -> None:
        row = self.selected()
        actionable = row is not None and row.get("state") in ACTIONABLE
        for button in (self.retry_button, self.delete_button, self.export_button):
            button.setEnabled(actionable)
        if row is None:
            self.detail.setText("Select a message to see its last reply and what it means.")
            return
        state = STATE_LABELS.get(str(row.get("state")), "")
        attempts = row.get("attempts", 0)
        lines = [f"Message {row.get('id')} from {row.get('device')}: {state}, {attempts} attempt(s)."]
        if row.get("last_reply"):
            lines.append(f"Last reply: {row['last_reply']}")
        if row.get("explanation"):
            lines.append(str(row["explanation"]))
        self.detail.setText("\n".join(lines))

    # -- actions ------------------------------------------------------------------------------------

    def _retry(self) -> None:
        row = self.selected()
        if row is not None:
            self.retryRequested.emit(str(row["id"]))

    def _delete(self) -> None:
        row = self.selected()
        if row is not None and self._confirm(self, row):
            self.deleteRequested.emit(str(row["id"]))

    def _export(self) -> None:
        row = self.selected()
        if row is None:
            return
        path = self._choose_path(self, str(Path.home() / f"{row['id']}.eml"))
        if path:
            self.exportRequested.emit(str(row["id"]), str(Path(path).expanduser().absolute()))
