"""Summary: what to type into the device, what to change in the tenant, the report, and a saved profile.

Everything shown comes from ``core.handover`` (the same as the exported report), so the page only lays
it out, copies it and saves it. The password is named by its keyring profile, never shown.
"""

from __future__ import annotations

from datetime import date
from html import escape
from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QFontDatabase, QGuiApplication, QTextDocument, QTextOption
from PySide6.QtWidgets import (
    QFormLayout,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from relaywizard.core import checklist, handover, m365, trace, validate
from relaywizard.core.errors import RelayWizardError
from relaywizard.diagnostics.model import Status
from relaywizard.gui import export, icons
from relaywizard.gui.wizard import PlanPage, heading

_ICON = QSize(18, 18)
_STATE_STATUS = {
    checklist.State.VERIFIED: Status.PASS,
    checklist.State.TO_VERIFY: Status.WARN,
    checklist.State.FAILED: Status.FAIL,
}
_MAX_BOX_LINES = 30  # the page scrolls; a box scrolls of its own only beyond this


def _wrapping_label(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)
    return label


class _CodeBox(QPlainTextEdit):
    """Read-only monospace text to paste elsewhere, as tall as its wrapped lines (up to a limit).

    The height follows the width through Qt's height-for-width, like a word-wrapped label, so the page's
    layout and scroll area size it in one pass.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.setReadOnly(True)
        self.setObjectName(name)
        self.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        # Long PowerShell property lists have no spaces: break them anywhere rather than scroll sideways.
        self.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.setTabChangesFocus(True)
        self.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        policy = QSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)

    def show_text(self, text: str) -> None:
        self.setPlainText(text)
        self.updateGeometry()

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        doc = QTextDocument()
        doc.setDefaultFont(self.font())
        doc.setDocumentMargin(self.document().documentMargin())
        option = QTextOption()
        option.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        doc.setDefaultTextOption(option)
        doc.setPlainText(self.toPlainText())
        frame = 2 * self.frameWidth()
        # Room for a scroll bar, so the text never wraps narrower than measured.
        doc.setTextWidth(max(width - frame - self.verticalScrollBar().sizeHint().width(), 50))
        line = self.fontMetrics().lineSpacing()
        most = _MAX_BOX_LINES * line + 2 * int(doc.documentMargin())
        return min(int(doc.size().height()) + line // 2, most) + frame

    def sizeHint(self) -> QSize:
        hint = super().sizeHint()
        return QSize(hint.width(), self.heightForWidth(hint.width()))

    def minimumSizeHint(self) -> QSize:
        return QSize(super().minimumSizeHint().width(), self.fontMetrics().lineSpacing() * 3)


class SummaryPage(PlanPage):
    help_text = (
        "<b>Device settings</b> are exactly what to type into the device's email (SMTP) settings; each "
        "<i>Copy</i> button puts one value on the clipboard. The password is never shown: it is the one "
        "saved in the keyring.<br><br><b>Changes in Microsoft 365</b> are the PowerShell to run in Exchange "
        "Online PowerShell (its first commands only show the current settings) and the DNS records to "
        "publish at the domain's DNS host; after the tests these are only the records that need changing."
        "<br><br><b>Trace the test message</b> gives the Exchange Online PowerShell (and the admin center "
        "page) that finds the test message in Microsoft 365 by its Message-ID."
        "<br><br><b>Rollout checklist</b> lists every step of the rollout with how to verify it: ✓ a test "
        "here proved it, ✗ a test showed it is not in place, ! relaywizard cannot see it from here (check "
        "it yourself)."
        "<br><br><b>Export report…</b> saves all of it, with the test results, as a web page (.html) or a "
        "PDF to hand over.<br><br><b>Save as profile</b> writes these settings (never the password) to "
        "relaywizard's settings file, so <tt>relaywizard check --profile NAME</tt> and "
        "<tt>relaywizard relay</tt> use them."
    )

    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Summary")
        self.setSubTitle(
            "Type these settings into the device, make the changes in Microsoft 365, and keep the report."
        )
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setObjectName("summary_scroll")
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        outer.addWidget(scroll)
        content = QWidget()
        scroll.setWidget(content)
        layout = QVBoxLayout(content)
        layout.setContentsMargins(0, 0, 8, 8)
        layout.setSpacing(10)

        # The test outcome, first: it says whether the rest is proven.
        outcome_row = QHBoxLayout()
        outcome_row.setSpacing(8)
        self.outcome_icon = QLabel()
        self.outcome_icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.outcome_text = _wrapping_label()
        self.outcome_text.setObjectName("outcome")
        self.outcome_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outcome_row.addWidget(self.outcome_icon)
        outcome_row.addWidget(self.outcome_text, 1)
        layout.addLayout(outcome_row)

        layout.addWidget(heading("Type these into the device"))
        self.method_label = _wrapping_label()
        self.method_label.setObjectName("method")
        layout.addWidget(self.method_label)
        card = QFrame()
        card.setObjectName("device_settings")
        card.setFrameShape(QFrame.Shape.StyledPanel)
        self.settings_form = QFormLayout(card)
        self.settings_form.setContentsMargins(12, 10, 12, 10)
        self.settings_form.setHorizontalSpacing(16)
        self.settings_form.setVerticalSpacing(6)
        self.settings_form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.settings_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        layout.addWidget(card)
        self.values: dict[str, QLabel] = {}
        self.copy_buttons: dict[str, QToolButton] = {}

        layout.addSpacing(6)
        layout.addWidget(heading("Changes in Microsoft 365"))
        self.powershell_box = _CodeBox("powershell")
        self.powershell_box.setAccessibleName("Exchange Online PowerShell to run")
        self.copy_powershell = self._copy_button("Copy", "Copy the PowerShell", self.powershell_box)
        layout.addLayout(self._box_header("Exchange Online PowerShell", self.copy_powershell))
        layout.addWidget(self.powershell_box)
        self.dns_intro = _wrapping_label()
        self.dns_box = _CodeBox("dns_records")
        self.dns_box.setAccessibleName("DNS records to publish")
        self.copy_dns = self._copy_button("Copy", "Copy the DNS records", self.dns_box)
        layout.addLayout(self._box_header("DNS records", self.copy_dns))
        layout.addWidget(self.dns_intro)
        layout.addWidget(self.dns_box)

        # Where the test message can be found in Microsoft 365: only when one was sent.
        self.trace_section = QWidget()
        self.trace_section.setObjectName("trace")
        trace_layout = QVBoxLayout(self.trace_section)
        trace_layout.setContentsMargins(0, 6, 0, 0)
        trace_layout.setSpacing(10)
        self.trace_box = _CodeBox("trace_powershell")
        self.trace_box.setAccessibleName("Exchange Online PowerShell to trace the test message")
        self.copy_trace = self._copy_button("Copy", "Copy the trace command", self.trace_box)
        trace_layout.addLayout(self._box_header("<b>Trace the test message</b>", self.copy_trace))
        self.trace_text = _wrapping_label()
        self.trace_text.setObjectName("trace_text")
        self.trace_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        trace_layout.addWidget(self.trace_text)
        trace_layout.addWidget(self.trace_box)
        self.trace_where = _wrapping_label()
        self.trace_where.setObjectName("trace_where")
        self.trace_where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        trace_layout.addWidget(self.trace_where)
        layout.addWidget(self.trace_section)

        layout.addSpacing(6)
        layout.addWidget(heading("Rollout checklist"))
        self.checklist_summary = _wrapping_label()
        self.checklist_summary.setObjectName("checklist_summary")
        layout.addWidget(self.checklist_summary)
        self.checklist_frame = QFrame()
        self.checklist_frame.setObjectName("checklist")
        self.checklist_frame.setFrameShape(QFrame.Shape.StyledPanel)
        self.checklist_grid = QGridLayout(self.checklist_frame)
        self.checklist_grid.setContentsMargins(12, 10, 12, 10)
        self.checklist_grid.setHorizontalSpacing(10)
        self.checklist_grid.setVerticalSpacing(10)
        self.checklist_grid.setColumnStretch(1, 1)
        layout.addWidget(self.checklist_frame)
        self.steps: dict[str, QLabel] = {}
        """Each checklist step's text, by step id (its state is in the accessible name)."""

        layout.addSpacing(6)
        layout.addWidget(heading("Report and profile"))
        keep = QHBoxLayout()
        keep.setSpacing(8)
        name_label = QLabel("Profile &name:")
        self.profile_name = QLineEdit()
        self.profile_name.setObjectName("profile_name")
        self.profile_name.setAccessibleName("Profile name")
        self.profile_name.setMaxLength(64)
        name_label.setBuddy(self.profile_name)
        self.save_button = QPushButton("&Save as profile")
        self.save_button.setObjectName("save_profile")
        self.save_button.setAccessibleName("Save as profile")
        self.export_button = QPushButton("&Export report…")
        self.export_button.setObjectName("export_report")
        self.export_button.setAccessibleName("Export report as HTML or PDF")
        keep.addWidget(name_label)
        keep.addWidget(self.profile_name, 1)
        keep.addWidget(self.save_button)
        keep.addSpacing(12)
        keep.addWidget(self.export_button)
        layout.addLayout(keep)
        self.name_note = _wrapping_label()
        self.name_note.setObjectName("name_note")
        self.name_note.setEnabled(False)
        layout.addWidget(self.name_note)

        status_row = QHBoxLayout()
        status_row.setSpacing(8)
        self.status_icon = QLabel()
        self.status_icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.status = _wrapping_label()
        self.status.setObjectName("status")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        status_row.addWidget(self.status_icon)
        status_row.addWidget(self.status, 1)
        layout.addLayout(status_row)
        layout.addStretch(1)

        self.profile_name.textChanged.connect(self._check_name)
        self.save_button.clicked.connect(self.save_profile)
        self.export_button.clicked.connect(self.export_report)

    # -- building ----------------------------------------------------------------------------------------

    def _copy_button(self, text: str, accessible: str, source: QPlainTextEdit | QLabel) -> QToolButton:
        button = QToolButton()
        button.setText(text)
        button.setToolTip(accessible)
        button.setAccessibleName(accessible)
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        what = accessible.removeprefix("Copy ")
        if isinstance(source, QPlainTextEdit):
            button.clicked.connect(lambda: self.copy(source.toPlainText(), what))
        else:
            button.clicked.connect(lambda: self.copy(source.text(), what))
        return button

    def _fill_trace(self, found: trace.Trace | None) -> None:
        self.trace_section.setVisible(found is not None)
        if found is None:
            self.trace_box.show_text("")
            return
        self.trace_text.setText(
            f"The test message's Message-ID is {found.message_id} (sent {trace.iso_utc(found.sent)}). "
            "In Exchange Online PowerShell, the first command finds it, the second lists its events:"
        )
        self.trace_box.show_text(f"{found.powershell}\n\n{found.detail_powershell}")
        self.trace_where.setText(
            f"Or in the {found.admin_center} Microsoft keeps trace data for {trace.TRACE_RETENTION_DAYS} "
            f"days: search before {found.search_until:%Y-%m-%d}."
        )

    def _fill_checklist(self, items: checklist.Checklist | None) -> None:
        while self.checklist_grid.count():
            item = self.checklist_grid.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        self.steps.clear()
        self.checklist_frame.setVisible(items is not None)
        if items is None:
            self.checklist_summary.setText("")
            return
        self.checklist_summary.setText(
            f"{items.summary()} ✓ verified here: a check backs it; ! to verify: relaywizard cannot see it "
            "from here, or its check did not run; ✗ failed: a check shows it is not in place."
        )
        for row, step in enumerate(items.steps):
            symbol, word = checklist.STATE_TEXT[step.state]
            mark = QLabel()
            mark.setPixmap(
                icons.status_icon(_STATE_STATUS[step.state]).pixmap(_ICON, self.devicePixelRatioF())
            )
            mark.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignHCenter)
            mark.setToolTip(word)
            text = QLabel(
                f"<b>{escape(step.title)}</b><br>{escape(word)}: {escape(step.evidence)}<br>"
                f"<span>How to verify: {escape(step.verify)}</span>"
            )
            text.setObjectName(f"step_{step.id}")
            text.setTextFormat(Qt.TextFormat.RichText)
            text.setWordWrap(True)
            text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            text.setAccessibleName(f"{symbol} {word}: {step.title}")
            self.checklist_grid.addWidget(mark, row, 0)
            self.checklist_grid.addWidget(text, row, 1)
            self.steps[step.id] = text

    def _box_header(self, title: str, button: QToolButton) -> QHBoxLayout:
        row = QHBoxLayout()
        row.addWidget(QLabel(title))
        row.addStretch(1)
        row.addWidget(button)
        return row

    def _fill_settings(self, rows: list[tuple[str, str]]) -> None:
        while self.settings_form.rowCount():
            self.settings_form.removeRow(0)
        self.values.clear()
        self.copy_buttons.clear()
        for label, value in rows:
            shown = _wrapping_label(value)
            shown.setObjectName(f"value_{_key(label)}")
            shown.setAccessibleName(label)
            shown.setTextInteractionFlags(
                Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
            )
            shown.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            # As tall as a Copy button, so every row lines up with its label whether it has one or not.
            shown.setMinimumHeight(QToolButton().sizeHint().height())
            shown.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
            field = QHBoxLayout()
            field.setSpacing(8)
            field.addWidget(shown, 1)
            self.values[label] = shown
            if label != "Password":  # the password row only says where it is: nothing worth copying
                button = self._copy_button("Copy", f"Copy {label.split(' (')[0].lower()}", shown)
                button.setObjectName(f"copy_{_key(label)}")
                field.addWidget(button, 0, Qt.AlignmentFlag.AlignTop)
                self.copy_buttons[label] = button
            name = QLabel(f"{label}:")
            name.setBuddy(shown)
            self.settings_form.addRow(name, field)

    def initializePage(self) -> None:
        data = handover.build(self.plan)
        self._show_status(self.outcome_icon, self.outcome_text, data.outcome.status, data.outcome.text)
        self.method_label.setText(f"Method: {data.method}.")
        self._fill_settings(list(data.settings))
        changes = data.changes
        self.powershell_box.show_text(changes.powershell)
        if changes.dns:
            self.dns_intro.setText(
                "The tests found these records missing or wrong; publish them at the domain's DNS host."
                if changes.tested
                else "Publish these at the domain's DNS host unless they are there already "
                "(the DNS tests did not check all of them)."
            )
        else:
            self.dns_intro.setText(
                "Nothing to change: the tests found the DNS records in order."
                if changes.tested
                else "No domain was given, so there are no DNS records to show."
            )
        self.dns_box.setVisible(bool(changes.dns))
        self.copy_dns.setEnabled(bool(changes.dns))
        self.dns_box.show_text(changes.dns_text() if changes.dns else "")
        self._fill_trace(data.trace)
        self._fill_checklist(data.checklist)
        # The relay and the CLI find the password by the profile's name: when it is in the keyring under
        # the plan's profile, the settings must use that same name.
        locked = self.plan.secret_stored and bool(self.plan.profile)
        self.profile_name.setText(handover.suggested_profile_name(self.plan))
        self.profile_name.setReadOnly(locked)
        self.name_note.setText(
            f"The password is in the keyring under “{self.plan.profile}”, so the profile has that name."
            if locked
            else ""
        )
        self.name_note.setVisible(locked)
        self._show_status(self.status_icon, self.status, None, "")

    # -- actions -----------------------------------------------------------------------------------------

    def copy(self, text: str, what: str) -> None:
        QGuiApplication.clipboard().setText(text)
        self._show_status(self.status_icon, self.status, Status.PASS, f"Copied {what} to the clipboard.")

    def _check_name(self, text: str) -> None:
        try:
            validate.profile_name(text.strip())
        except ValueError as exc:
            self.save_button.setEnabled(False)
            self._show_status(self.status_icon, self.status, Status.FAIL, str(exc))
            return
        self.save_button.setEnabled(True)
        if self.status.text() and not self.status.text().startswith(("Saved", "Report saved", "Copied")):
            self._show_status(self.status_icon, self.status, None, "")

    def save_profile(self) -> bool:
        """Write the plan as a profile into the settings file; the outcome is one sentence on the page."""
        path = self.services.paths.settings_file
        name = self.profile_name.text().strip()
        try:
            handover.save_profile(self.plan, path, name)
        except RelayWizardError as exc:
            self._show_status(self.status_icon, self.status, Status.FAIL, _sentence(exc.message))
            return False
        except ValueError as exc:
            self._show_status(self.status_icon, self.status, Status.FAIL, _sentence(str(exc)))
            return False
        self.plan.profile = name
        uses = "relaywizard relay and " if self.plan.relay.enabled else ""
        self._show_status(
            self.status_icon,
            self.status,
            Status.PASS,
            f"Saved as profile “{name}” in {path}; {uses}relaywizard check --profile {name} can use it.",
        )
        return True

    def suggested_report_path(self) -> Path:
        domain = m365.domain_with_dashes(self.plan.tenant.domain) or "setup"
        folder = Path.home() / "Documents"
        folder = folder if folder.is_dir() else Path.home()
        return folder / f"relaywizard-{domain}-{date.today():%Y-%m-%d}.html"

    def choose_report_path(self) -> Path | None:
        """Ask where to save (tests replace this to skip the dialog)."""
        return export.choose_path(self, self.suggested_report_path())

    def export_report(self) -> Path | None:
        path = self.choose_report_path()
        if path is None:
            return None
        return self.export_to(path)

    def export_to(self, path: Path) -> Path | None:
        try:
            written = export.export(self.plan, path)
        except export.ExportError as exc:
            self._show_status(self.status_icon, self.status, Status.FAIL, str(exc))
            return None
        self._show_status(self.status_icon, self.status, Status.PASS, f"Report saved to {written}.")
        return written

    def _show_status(self, icon_label: QLabel, text_label: QLabel, status: Status | None, text: str) -> None:
        text_label.setText(text)
        if text:
            shown = icons.status_icon(status) if status is not None else icons.icon("pending")
            icon_label.setPixmap(shown.pixmap(_ICON, self.devicePixelRatioF()))
        else:
            icon_label.clear()
        icon_label.setVisible(bool(text))
        text_label.setVisible(bool(text))


def _key(label: str) -> str:
    return label.split(" (")[0].lower().replace(" ", "_")


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")
