"""A diagnostics run as a live list: the controller turns a run's events into Qt signals, the view shows them.

``DiagnosticsController`` drives one ``DiagnosticsRun`` as an asyncio task on the running loop (qasync's
in the application) and has an explicit state; starting a new run cancels the old one. ``DiagnosticsView``
shows one row per check — status icon, title, time, summary — that expands into the detail (the fix, the
server's reply, what was found), with an overall progress bar, Cancel and Run again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import shiboken6
from PySide6.QtCore import QEvent, QModelIndex, QObject, QPersistentModelIndex, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QPalette, QResizeEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from relaywizard.diagnostics.model import (
    CheckFinished,
    CheckProgress,
    CheckResult,
    CheckStarted,
    Event,
    Report,
    Status,
    Target,
)
from relaywizard.diagnostics.runner import DiagnosticsRun, RunState
from relaywizard.gui import icons
from relaywizard.gui.widgets import StatusLine, tone

log = logging.getLogger(__name__)

StartRun = Callable[[Target], DiagnosticsRun]

#: What a row can show besides a result's status.
PENDING, RUNNING, CANCELLED = "pending", "running", "cancelled"


def default_checks() -> list[tuple[str, str]]:
    """Every check of a full run as (id, title), in report order: the rows before a run says its own."""
    from relaywizard.diagnostics.checks import build_checks

    return [(check.id, check.title) for check in build_checks()]


# -- the controller ----------------------------------------------------------------------------------------


class DiagnosticsController(QObject):
    """Runs one diagnostics run at a time on the running asyncio loop and reports it as Qt signals.

    States are ``RunState``'s: idle (nothing run yet, or a run could not start), running, finished (every
    check has a result) and cancelled (``cancel()``, a newer run, or an unexpected error). ``runEnded``
    comes once per started run, with its ``Report`` (``report.cancelled`` set when it did not finish).
    """

    runStarted = Signal(object)
    """The run's checks, as a list of (id, title)."""
    checkStarted = Signal(str, str)
    """(id, title)"""
    checkProgress = Signal(str, str)
    """(id, what the check is doing now)"""
    checkFinished = Signal(object)
    """The ``CheckResult``."""
    runEnded = Signal(object)
    """The ``Report``, finished or cancelled."""
    runFailed = Signal(str)
    """The run could not start or broke down (a bug): one sentence. State: idle or cancelled."""
    stateChanged = Signal(str)
    """The new ``RunState``'s value."""

    def __init__(self, start_run: StartRun, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._start_run = start_run
        self._state = RunState.IDLE
        self._task: asyncio.Task[None] | None = None
        self.run: DiagnosticsRun | None = None
        """The current (or last) run."""
        self.target: Target | None = None
        """What the current (or last) run tests; ``restart()`` tests it again."""
        self.report: Report | None = None
        """The report of the last run that ended (finished or cancelled)."""

    @property
    def state(self) -> RunState:
        return self._state

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The asyncio task driving the current run (it still closes connections after a cancel)."""
        return self._task

    def start(self, target: Target) -> DiagnosticsRun | None:
        """Start a run of ``target``, cancelling the one under way; None when the run could not start."""
        self.cancel()
        try:
            run = self._start_run(target)
        except Exception as exc:  # a bad target or a bug: say so on the page, never lose it
            log.exception("the diagnostics run could not start")
            self.run, self.target = None, target
            self._set_state(RunState.IDLE)
            self.runFailed.emit(f"The tests could not start: {exc}")
            return None
        self.run, self.target = run, target
        self._set_state(RunState.RUNNING)
        self.runStarted.emit([(check.id, check.title) for check in run.checks])
        self._task = asyncio.ensure_future(self._drive(run))
        self._task.add_done_callback(_log_failure)
        return run

    def restart(self) -> DiagnosticsRun | None:
        """Run the last target again (nothing happens before a first ``start``)."""
        return self.start(self.target) if self.target is not None else None

    def cancel(self) -> None:
        """Stop the running run now; its checks are cancelled and its connection closed in the background."""
        run = self.run
        if self._state is not RunState.RUNNING or run is None:
            return
        run.cancel()
        if self._task is not None:
            self._task.cancel()  # a run still waiting for its first event ignores run.cancel()
        run.report.cancelled = True
        self._end(run, RunState.CANCELLED)

    async def wait(self) -> Report | None:
        """Wait until the current run's task is over (cleanup included); the last report."""
        if self._task is not None:
            await asyncio.wait({self._task})
        return self.report

    async def _drive(self, run: DiagnosticsRun) -> None:
        events = run.events()
        try:
            async for event in events:
                if not self._current(run):
                    return
                self._dispatch(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self._current(run):
                log.exception("the diagnostics run broke down")
                run.report.cancelled = True
                self._end(run, RunState.CANCELLED)
                self.runFailed.emit(f"The tests stopped because of an error in relaywizard: {exc}")
            return
        finally:
            if isinstance(events, AsyncGenerator):  # a run left early still cancels and closes
                await events.aclose()
        if self._current(run):
            self._end(run, RunState.FINISHED if run.state is RunState.FINISHED else RunState.CANCELLED)

    def _current(self, run: DiagnosticsRun) -> bool:
        # The widgets may be gone (window closed) while a run's task still unwinds.
        return shiboken6.isValid(self) and run is self.run and self._state is RunState.RUNNING

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, CheckStarted):
            self.checkStarted.emit(event.id, event.title)
        elif isinstance(event, CheckProgress):
            self.checkProgress.emit(event.id, event.text)
        elif isinstance(event, CheckFinished):
            self.checkFinished.emit(event.result)

    def _end(self, run: DiagnosticsRun, state: RunState) -> None:
        self.report = run.report
        self._set_state(state)
        self.runEnded.emit(run.report)

    def _set_state(self, state: RunState) -> None:
        if state is not self._state:
            self._state = state
            self.stateChanged.emit(str(state))


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("diagnostics task failed", exc_info=task.exception())


# -- what a result's detail shows ----------------------------------------------------------------------


def duration_text(ms: int) -> str:
    """``12 ms``, ``1.3 s``."""
    return f"{ms} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return "\n".join(_plain(item) for item in value if _plain(item))
    if isinstance(value, dict):
        return "\n".join(f"{key}: {_plain(item) or '—'}" for key, item in value.items())
    return str(value)


def _valid_until(data: dict[str, Any]) -> str:
    try:
        until = datetime.fromisoformat(str(data["not_after"]))
    except (KeyError, ValueError):
        return ""
    days = data.get("days_left")
    return f"{until:%Y-%m-%d}" + (f" ({days} days left)" if isinstance(days, int) else "")


def _lookups(data: dict[str, Any]) -> str:
    count = data.get("lookups")
    if not isinstance(count, int):
        return ""
    return f"{count} of 10" + ("" if data.get("lookups_complete", True) else " (not all could be counted)")


def _endpoint(data: dict[str, Any]) -> str:
    host, port = data.get("host"), data.get("port")
    return f"{host}:{port}" if host and port else ""


def _dns_server(data: dict[str, Any]) -> str:
    error = data.get("error")
    return str(error.get("server", "")) if isinstance(error, dict) else ""


def _joined(key: str) -> Callable[[dict[str, Any]], str]:
    """A list shown on one line (mechanisms, extensions), where one per line would be a long column."""

    def text(data: dict[str, Any]) -> str:
        value = data.get(key)
        return ", ".join(str(v) for v in value) if isinstance(value, list | tuple) else _plain(value)

    return text


Fact = tuple[str, str | Callable[[dict[str, Any]], str]]

#: Per check, the data worth showing: (label, key in ``data`` or a function of it).
_FACTS: dict[str, tuple[Fact, ...]] = {
    "dns.mx": (("MX hosts", "hosts"), ("DNS server asked", _dns_server)),
    "dns.spf": (
        ("SPF record", "record"),
        ("DNS look-ups", _lookups),
        ("Relay IP", "relay_ip"),
        ("Relay IP covered", "relay_ip_covered"),
        ("Problems", "errors"),
        ("Record to publish", "suggested"),
        ("DNS server asked", _dns_server),
    ),
    "dns.dkim": (("Found", "targets"), ("Expected", "expected"), ("DNS server asked", _dns_server)),
    "dns.dmarc": (("DMARC record", "record"), ("Policy", "policy"), ("DNS server asked", _dns_server)),
    "dns.autodiscover": (("Points to", "target"), ("DNS server asked", _dns_server)),
    "smtp.connect": (
        ("Server", _endpoint),
        ("Address", "address"),
        ("Addresses tried", "addresses"),
        ("From this address", "local_address"),
    ),
    "smtp.banner": (("Greeting", "greeting"),),
    "smtp.ehlo": (("EHLO name", "name"), ("Extensions", _joined("extensions"))),
    "smtp.starttls": (("Reply", "reply"),),
    "smtp.tls": (
        ("TLS version", "version"),
        ("Cipher", "cipher"),
        ("Certificate names", _joined("names")),
        ("Issuer", "issuer"),
        ("Valid until", _valid_until),
        ("Verified", "verified"),
        ("Problem", "error"),
    ),
    "smtp.auth": (("Mechanism", "mechanism"), ("User", "user"), ("Offered", _joined("offered"))),
    "smtp.mail_from": (("Sender", "address"),),
    "smtp.rcpt_to": (("Recipient", "address"),),
    "smtp.data": (("Message-ID", "message_id"),),
}


def facts(result: CheckResult) -> list[tuple[str, str]]:
    """What a result found that a person needs to see, as (label, text): the server's reply and its
    code first, then per check (TLS version, certificate names and expiry, MX hosts, SPF record, ...)."""
    data = result.data
    found: list[tuple[str, str]] = []
    reply = data.get("reply")
    if result.status is not Status.PASS and reply:
        found.append(("Server's reply", _plain(reply)))
    reply_code = data.get("reply_code")
    if result.code or reply_code:
        found.append(("Reply code", " · ".join(str(c) for c in (reply_code, result.code) if c)))
    shown = {"reply", "reply_code"}
    for label, source in _FACTS.get(result.id, ()):
        if isinstance(source, str):
            shown.add(source)
            if label == "Reply" and result.status is not Status.PASS:
                continue  # already shown as the server's reply
            text = _plain(data.get(source))
        else:
            text = source(data)
        if text:
            found.append((label, text))
    if result.id not in _FACTS:  # a check this view does not know: its plain values
        found += [(key, _plain(value)) for key, value in data.items() if key not in shown and _plain(value)]
    return found


# -- the detail under a row ----------------------------------------------------------------------------


def _selectable(label: QLabel) -> QLabel:
    label.setWordWrap(True)
    label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setTextInteractionFlags(
        Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
    )
    return label


class CheckDetail(QWidget):
    """The expanded part of a row: the whole summary, what to do (with a copy button), and the facts."""

    def __init__(self, result: CheckResult, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result = result
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 12, 14)
        layout.setSpacing(10)
        self.summary = _selectable(QLabel(result.summary))
        self.summary.setAccessibleName(f"{result.title}: result")
        layout.addWidget(self.summary)

        self.fix_label: QLabel | None = None
        self.copy_button: QPushButton | None = None
        if result.fix:
            heading = QLabel("<b>What to do</b>")
            self.copy_button = QPushButton("Copy")
            self.copy_button.setAccessibleName(f"Copy what to do about {result.title}")
            self.copy_button.setToolTip("Copy these steps to the clipboard")
            self.copy_button.clicked.connect(self.copy_fix)
            row = QHBoxLayout()
            row.setContentsMargins(0, 0, 0, 0)
            row.addWidget(heading, 1)
            row.addWidget(self.copy_button)
            layout.addLayout(row)
            box = QFrame()
            box.setFrameShape(QFrame.Shape.StyledPanel)
            box.setBackgroundRole(QPalette.ColorRole.Base)
            box.setAutoFillBackground(True)
            inner = QVBoxLayout(box)
            inner.setContentsMargins(10, 8, 10, 8)
            self.fix_label = _selectable(QLabel(result.fix))
            self.fix_label.setAccessibleName(f"What to do about {result.title}")
            inner.addWidget(self.fix_label)
            layout.addWidget(box)

        self.facts = facts(result)
        if self.facts:
            form = QFormLayout()
            form.setContentsMargins(0, 0, 0, 0)
            form.setHorizontalSpacing(16)
            form.setVerticalSpacing(6)
            form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
            for name, text in self.facts:
                key = QLabel(f"{name}:")
                key.setForegroundRole(QPalette.ColorRole.PlaceholderText)
                value = _selectable(QLabel(text))
                value.setAccessibleName(name)
                form.addRow(key, value)
            layout.addLayout(form)
        layout.addStretch(1)

    def copy_fix(self) -> None:
        QGuiApplication.clipboard().setText(self.result.fix)
        if self.copy_button is not None:
            self.copy_button.setText("Copied")
            QTimer.singleShot(1500, self._copied)

    def _copied(self) -> None:
        if shiboken6.isValid(self) and self.copy_button is not None:
            self.copy_button.setText("Copy")


# -- the list --------------------------------------------------------------------------------------------

_TITLE, _TIME, _RESULT = 0, 1, 2
_ROW_PADDING = 10


class _RowDelegate(QStyledItemDelegate):
    """Roomier check rows; a detail row keeps the height its widget needs."""

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        size = super().sizeHint(option, index)
        if not index.parent().isValid():
            size.setHeight(size.height() + _ROW_PADDING)
        return size


class CheckTree(QTreeWidget):
    """The rows of checks; keeps each detail row as tall as its word-wrapped text needs at this width."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._fitted_width = -1

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.fit_details()

    def viewportEvent(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Resize:  # a scroll bar came or went
            QTimer.singleShot(0, self.fit_details)
        return super().viewportEvent(event)

    def detail_width(self) -> int:
        """The width a detail row's widget gets: from its indentation (two levels) to the right edge."""
        return max(200, self.viewport().width() - 2 * self.indentation())

    def fit_details(self, force: bool = False) -> None:
        if not shiboken6.isValid(self):
            return
        width = self.detail_width()
        if width == self._fitted_width and not force:
            return
        self._fitted_width = width
        for row in range(self.topLevelItemCount()):
            item = self.topLevelItem(row)
            if item is not None and item.childCount():
                self.fit_detail(item.child(0))

    def fit_detail(self, child: QTreeWidgetItem | None) -> None:
        """Give a detail row the height its widget needs at the list's width."""
        widget = self.itemWidget(child, 0) if child is not None else None
        if child is None or widget is None:
            return
        width = self.detail_width()
        height = widget.heightForWidth(width) if widget.hasHeightForWidth() else -1
        if height < 0:
            height = widget.sizeHint().height()
        # The row is at least as tall as the widget's plain size hint, which knows nothing of the
        # width: a fixed height makes the row exactly what the wrapped text needs.
        widget.setFixedHeight(height)
        child.setSizeHint(0, QSize(width, height))


class DiagnosticsView(QWidget):
    """The live list of a run: one row per check, a progress bar, Cancel and Run again.

    ``attach(controller)`` connects it; Cancel cancels the controller's run, Run again emits
    ``runAgainRequested`` (connect it to ``controller.restart`` or to whatever builds a fresh target).
    """

    runAgainRequested = Signal()

    def __init__(
        self, controller: DiagnosticsController | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.controller: DiagnosticsController | None = None
        self._items: dict[str, QTreeWidgetItem] = {}
        self._states: dict[str, str] = {}
        self._titles: dict[str, str] = {}
        self._results: dict[str, CheckResult] = {}
        self._started: dict[str, float] = {}
        self._opened_by_person = False

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(10)

        self.headline = StatusLine()
        self.headline.setObjectName("headline")
        layout.addWidget(self.headline)

        bar = QHBoxLayout()
        bar.setSpacing(10)
        self.progress = QProgressBar()
        self.progress.setObjectName("progress")
        self.progress.setAccessibleName("Checks done")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("%v of %m checks done")
        self.cancel_button = QPushButton("&Cancel tests")
        self.cancel_button.setObjectName("cancel_tests")
        self.cancel_button.setAccessibleName("Cancel the tests")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self._cancel)
        self.run_again_button = QPushButton("&Run again")
        self.run_again_button.setObjectName("run_again")
        self.run_again_button.setAccessibleName("Run the tests again")
        self.run_again_button.clicked.connect(self.runAgainRequested)
        bar.addWidget(self.progress, 1)
        bar.addWidget(self.cancel_button)
        bar.addWidget(self.run_again_button)
        layout.addLayout(bar)

        self.tree = CheckTree()
        self.tree.setObjectName("checks")
        self.tree.setAccessibleName("Checks")
        self.tree.setColumnCount(3)
        self.tree.setHeaderLabels(["Check", "Time", "Result"])
        self.tree.setItemDelegate(_RowDelegate(self.tree))
        self.tree.setUniformRowHeights(False)
        self.tree.setAllColumnsShowFocus(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideRight)
        extent = self.fontMetrics().height() + 2
        self.tree.setIconSize(QSize(extent, extent))
        header = self.tree.header()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(_TITLE, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(_TIME, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.itemExpanded.connect(self._expanded)
        layout.addWidget(self.tree, 1)

        self._ticker = QTimer(self)
        self._ticker.setInterval(200)
        self._ticker.timeout.connect(self._tick)
        self.setTabOrder(self.cancel_button, self.run_again_button)
        self.setTabOrder(self.run_again_button, self.tree)
        if controller is not None:
            self.attach(controller)

    # -- wiring ------------------------------------------------------------------------------------------

    def attach(self, controller: DiagnosticsController) -> None:
        self.controller = controller
        controller.runStarted.connect(self._run_started)
        controller.checkStarted.connect(self._check_started)
        controller.checkProgress.connect(self._check_progress)
        controller.checkFinished.connect(self._check_finished)
        controller.runEnded.connect(self._run_ended)
        controller.runFailed.connect(self._run_failed)
        controller.stateChanged.connect(lambda _state: self._update_buttons())
        self._update_buttons()

    def _cancel(self) -> None:
        if self.controller is not None:
            self.controller.cancel()

    # -- what tests and pages read -----------------------------------------------------------------------

    def check_ids(self) -> list[str]:
        return list(self._items)

    def item(self, check_id: str) -> QTreeWidgetItem:
        return self._items[check_id]

    def row_state(self, check_id: str) -> str:
        """``pending``, ``running``, ``cancelled``, or the result's status (``pass``, ``fail``, ...)."""
        return self._states[check_id]

    def summary_text(self, check_id: str) -> str:
        return self._items[check_id].text(_RESULT)

    def time_text(self, check_id: str) -> str:
        return self._items[check_id].text(_TIME)

    def detail(self, check_id: str) -> CheckDetail | None:
        item = self._items[check_id]
        child = item.child(0) if item.childCount() else None
        widget = self.tree.itemWidget(child, 0) if child is not None else None
        return widget if isinstance(widget, CheckDetail) else None

    def expand(self, check_id: str, expanded: bool = True) -> CheckDetail | None:
        """Open (or close) a row's detail, as a click on its arrow does; its detail, once it has one."""
        self._items[check_id].setExpanded(expanded)
        return self.detail(check_id)

    def results(self) -> list[CheckResult]:
        return [self._results[cid] for cid in self._items if cid in self._results]

    # -- rows --------------------------------------------------------------------------------------------

    def set_checks(self, checks: Iterable[tuple[str, str]]) -> None:
        """Show these checks, all waiting."""
        self.tree.clear()
        self._items.clear()
        self._states.clear()
        self._results.clear()
        self._started.clear()
        self._titles = dict(checks)
        self._opened_by_person = False
        for check_id, title in self._titles.items():
            item = QTreeWidgetItem([title, "", "Waiting"])
            item.setData(_TITLE, Qt.ItemDataRole.UserRole, check_id)
            item.setTextAlignment(_TIME, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.tree.addTopLevelItem(item)
            self._items[check_id] = item
            self._show_state(check_id, PENDING)
        self.progress.setRange(0, max(1, len(self._items)))
        self.progress.setValue(0)
        self.headline.clear()

    def _show_state(self, check_id: str, state: str) -> None:
        item = self._items[check_id]
        self._states[check_id] = state
        if state == PENDING:
            item.setIcon(_TITLE, icons.status_icon(None))
        elif state in (RUNNING, CANCELLED):
            item.setIcon(_TITLE, icons.icon("running" if state == RUNNING else "skip"))
        else:
            item.setIcon(_TITLE, icons.status_icon(Status(state)))
        words = {
            PENDING: "waiting",
            RUNNING: "running",
            CANCELLED: "cancelled",
            "pass": "passed",
            "warn": "warning",
            "fail": "failed",
            "skip": "skipped",
        }
        item.setData(_TITLE, Qt.ItemDataRole.AccessibleTextRole, f"{item.text(_TITLE)}: {words[state]}")
        muted = state in (PENDING, CANCELLED, RUNNING)
        palette = self.tree.palette()
        colour = (
            palette.color(QPalette.ColorRole.PlaceholderText)
            if muted
            else tone("fail", palette)
            if state == "fail"
            else palette.color(QPalette.ColorRole.Text)
        )
        item.setForeground(_RESULT, colour)

    def _ensure_row(self, check_id: str, title: str) -> QTreeWidgetItem:
        if check_id not in self._items:  # a check the run did not announce: show it anyway
            self._titles[check_id] = title
            item = QTreeWidgetItem([title, "", ""])
            item.setTextAlignment(_TIME, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.tree.addTopLevelItem(item)
            self._items[check_id] = item
            self.progress.setMaximum(len(self._items))
        return self._items[check_id]

    def _run_started(self, checks: Sequence[tuple[str, str]]) -> None:
        self.set_checks(checks)
        self._ticker.start()
        self._update_headline()

    def _check_started(self, check_id: str, title: str) -> None:
        item = self._ensure_row(check_id, title)
        self._started[check_id] = time.monotonic()
        self._show_state(check_id, RUNNING)
        item.setText(_RESULT, "Running…")
        item.setText(_TIME, duration_text(0))

    def _check_progress(self, check_id: str, text: str) -> None:
        if self._states.get(check_id) == RUNNING:
            self._items[check_id].setText(_RESULT, f"{text}…")

    def _check_finished(self, result: CheckResult) -> None:
        item = self._ensure_row(result.id, result.title)
        self._started.pop(result.id, None)
        self._results[result.id] = result
        self._show_state(result.id, str(result.status))
        item.setText(_TIME, "" if result.blocked_by else duration_text(result.duration_ms))
        item.setText(_RESULT, result.summary)
        item.setToolTip(_RESULT, result.summary)
        self._add_detail(item, result)
        self.progress.setValue(len(self._results))
        self._update_headline()

    def _add_detail(self, item: QTreeWidgetItem, result: CheckResult) -> None:
        item.takeChildren()
        child = QTreeWidgetItem()
        child.setFlags(Qt.ItemFlag.ItemIsEnabled)
        item.addChild(child)
        child.setFirstColumnSpanned(True)
        detail = CheckDetail(result)
        self.tree.setItemWidget(child, 0, detail)
        self.tree.fit_detail(child)

    def _expanded(self, item: QTreeWidgetItem) -> None:
        if item.childCount():
            self.tree.fit_detail(item.child(0))
        if self.controller is None or self.controller.state is RunState.RUNNING:
            self._opened_by_person = True

    def _show_detail(self, check_id: str) -> None:
        """Scroll so a row's detail is in view (once the list has laid it out)."""
        item = self._items.get(check_id) if shiboken6.isValid(self) else None
        if item is not None and shiboken6.isValid(item):
            self.tree.scrollToItem(item, QAbstractItemView.ScrollHint.PositionAtTop)

    def _tick(self) -> None:
        now = time.monotonic()
        for check_id, started in self._started.items():
            self._items[check_id].setText(_TIME, duration_text(round((now - started) * 1000)))

    def _run_ended(self, report: Report) -> None:
        self._ticker.stop()
        if report.cancelled:
            for check_id, state in self._states.items():
                if state in (PENDING, RUNNING):
                    self._started.pop(check_id, None)
                    self._show_state(check_id, CANCELLED)
                    self._items[check_id].setText(_RESULT, "Not run: the tests were cancelled.")
                    self._items[check_id].setText(_TIME, "")
        elif not self._opened_by_person:
            failed = [cid for cid, r in self._results.items() if r.status is Status.FAIL]
            if failed:
                self._items[failed[0]].setExpanded(True)
                QTimer.singleShot(0, lambda: self._show_detail(failed[0]))
        self._update_headline(ended=True, cancelled=report.cancelled)
        self._update_buttons()

    def _run_failed(self, message: str) -> None:
        self._ticker.stop()
        self.headline.set_status("fail", message)
        self._update_buttons()

    def _update_buttons(self) -> None:
        running = self.controller is not None and self.controller.state is RunState.RUNNING
        self.cancel_button.setEnabled(running)
        self.run_again_button.setEnabled(not running)

    # -- the headline ------------------------------------------------------------------------------------

    def _update_headline(self, ended: bool = False, cancelled: bool = False) -> None:
        self.headline.set_status(*headline(self.results(), len(self._items), ended, cancelled))


def headline(
    results: Sequence[CheckResult], total: int, ended: bool, cancelled: bool = False
) -> tuple[str, str]:
    """The status icon and text above the list, for the results so far: what to do, then the tally."""
    count = Counter(result.status for result in results)
    warnings = "warning" if count[Status.WARN] == 1 else "warnings"
    tally = ", ".join(
        f"{count[status]} {word}"
        for status, word in (
            (Status.PASS, "passed"),
            (Status.WARN, warnings),
            (Status.FAIL, "failed"),
            (Status.SKIP, "skipped"),
        )
        if count[status]
    )
    failed = [r.title for r in results if r.status is Status.FAIL]
    warned = [r.title for r in results if r.status is Status.WARN]
    if cancelled:
        return "skip", f"Cancelled after {len(results)} of {total} checks. Press Run again to start over."
    if not ended:
        so_far = f" So far: {tally}." if tally else ""
        return "running", f"Running the checks from this computer: {len(results)} of {total} done.{so_far}"
    if failed:
        if len(failed) == 1:
            lead = f"1 check failed: {failed[0]}. Open it below to see what to fix."
        else:
            lead = f"{len(failed)} checks failed: {', '.join(failed)}. Open them below to see what to fix."
        return "fail", f"{lead}\n{tally}."
    if warned:
        what = "1 warning" if len(warned) == 1 else f"{len(warned)} warnings"
        return "warn", f"No check failed; {what} to look at: {', '.join(warned)}.\n{tally}."
    return "pass", f"All checks passed.\n{tally}."
