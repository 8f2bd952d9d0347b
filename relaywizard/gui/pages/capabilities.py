"""Device and method: a few questions about the device, then the advised way to send, live as they change.

The advice comes from ``core.advisor`` (pure logic); this page asks, shows the answer with its reasons
and warnings, lays the methods side by side, and lets the admin choose differently.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QEvent, QRectF, Qt
from PySide6.QtGui import QPainter, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QRadioButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from relaywizard.core import advisor
from relaywizard.core.advisor import MethodCard, Recommendation
from relaywizard.core.plan import AuthChoice, Capabilities
from relaywizard.diagnostics.model import Method
from relaywizard.gui.widgets import StatusLine, icon_label, set_icon
from relaywizard.gui.wizard import PlanPage, heading

Answer = bool | None


@dataclass(frozen=True)
class Question:
    field: str
    """The ``Capabilities`` attribute it answers."""
    text: str
    why: str
    """One line on why it matters."""
    answers: tuple[tuple[str, Answer], ...]


_YES_NO_UNSURE: tuple[tuple[str, Answer], ...] = (("Yes", True), ("No", False), ("Don't know", None))

QUESTIONS = (
    Question(
        "tls12",
        "Can it use TLS 1.2?",
        "Microsoft 365 takes a sign-in only over TLS 1.2 or newer; older devices stop at TLS 1.0.",
        _YES_NO_UNSURE,
    ),
    Question(
        "can_authenticate",
        "Can it sign in with a user name and password?",
        "Look for “SMTP authentication” in its mail settings: signing in is what lets it send anywhere.",
        _YES_NO_UNSURE,
    ),
    Question(
        "oauth",
        "Can it sign in with OAuth 2.0 (modern authentication)?",
        "Microsoft is switching passwords for SMTP off; OAuth keeps working.",
        _YES_NO_UNSURE,
    ),
    Question(
        "external_recipients",
        "Must it mail people outside your organisation?",
        "Sending without a sign-in (Direct Send) reaches only your own mailboxes.",
        (("Yes", True), ("No", False)),
    ),
    Question(
        "static_ip",
        "Does the office have a static public IP address?",
        "A connector recognises the office by it; your internet provider knows.",
        _YES_NO_UNSURE,
    ),
    Question(
        "port_587",
        "Can it use port 587, or only port 25?",
        "Port 587 is where devices sign in; many providers block port 25 going out.",
        (("Port 587", True), ("Only 25", False), ("Don't know", None)),
    ),
)

_AUTH_CHOICES: tuple[tuple[str, AuthChoice], ...] = (
    ("OAuth 2.0", "oauth"),
    ("A password (Basic authentication)", "password"),
    ("None", "none"),
)

_ROWS: tuple[tuple[str, str], ...] = (
    ("Recipients", "recipients"),
    ("Sender", "sender_rule"),
    ("Limits", "limits"),
    ("Needs", "needs"),
    ("Security", "tls"),
    ("Sign-in", "auth"),
    ("Server", "endpoint"),
)


class _Items(QWidget):
    """A column of icon + sentence lines, replaced as a whole."""

    def __init__(self, name: str, title: str = "") -> None:
        super().__init__()
        self.setObjectName(name)
        self.setAccessibleName(title or name)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(6)
        if title:
            self._layout.addWidget(QLabel(f"<i>{title}</i>"))
        self.lines: list[StatusLine] = []

    def set_items(self, items: list[tuple[str, str]]) -> None:
        for line in self.lines:
            line.hide()
            line.deleteLater()
        self.lines = []
        for status, text in items:
            line = StatusLine()
            line.set_status(status, text)
            self._layout.addWidget(line)
            self.lines.append(line)
        self.setVisible(bool(items))

    def texts(self) -> list[str]:
        return [line.text() for line in self.lines]


def _wrapping_label(text: str = "", name: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)
    if name:
        label.setObjectName(name)
    return label


class _Column(QFrame):
    """The rounded box behind one method's column; the marked one stands out in the palette's colours."""

    def __init__(self) -> None:
        super().__init__()
        self.marked = False

    def set_marked(self, marked: bool) -> None:
        self.marked = marked
        self.update()

    def paintEvent(self, _event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        width = 2 if self.marked else 1
        role = QPalette.ColorRole.Highlight if self.marked else QPalette.ColorRole.Mid
        painter.setPen(QPen(palette.color(role), width))
        if self.marked:
            painter.setBrush(palette.color(QPalette.ColorRole.Base))
        inset = width / 2
        painter.drawRoundedRect(QRectF(self.rect()).adjusted(inset, inset, -inset, -inset), 6, 6)


class _Hint(QLabel):
    """A secondary line in the palette's placeholder colour, following palette changes (dark mode)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self._recolour()

    def _recolour(self) -> None:
        palette = self.palette()
        palette.setColor(QPalette.ColorRole.WindowText, palette.color(QPalette.ColorRole.PlaceholderText))
        self.setPalette(palette)

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and not self._recolouring:
            self._recolouring = True
            try:
                self._recolour()
            finally:
                self._recolouring = False

    _recolouring = False


class CapabilitiesPage(PlanPage):
    help_text = (
        "Answer what you know about the device or application; <i>Don't know</i> is a fine answer. "
        "relaywizard then recommends how it should send through Microsoft 365:<ul>"
        "<li><b>SMTP AUTH</b>: the device signs in to smtp.office365.com with a mailbox (OAuth 2.0, or a "
        "password while Microsoft still allows it). Reaches everyone.</li>"
        "<li><b>Connector relay</b>: Microsoft recognises the office by its static public IP address; "
        "the device needs no sign-in. Reaches everyone.</li>"
        "<li><b>Direct Send</b>: no sign-in, straight to your domain's mail server; reaches only your "
        "own mailboxes.</li>"
        "<li><b>The local relay</b>: relaywizard runs on this computer, takes the device's mail on the "
        "office network and signs in to Microsoft 365 for it — for devices too old to do it "
        "themselves.</li></ul>"
        "Where you answered <i>Don't know</i>, the advice picks what works either way and says what to "
        "check. To set up something else, tick <b>Choose the method myself</b>."
    )

    def __init__(self) -> None:
        super().__init__()
        self.setTitle("What can the device do?")
        self.setSubTitle("A few questions decide how it should send mail through Microsoft 365.")
        self.recommendation: Recommendation | None = None
        self.groups: dict[str, QButtonGroup] = {}
        self.buttons: dict[str, dict[Answer, QRadioButton]] = {}
        self.columns: dict[Method, _Column] = {}
        self.tags: dict[Method, tuple[QLabel, QLabel]] = {}

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(8)
        self.scroller = QScrollArea()
        self.scroller.setObjectName("capabilities_scroll")
        self.scroller.setWidgetResizable(True)
        self.scroller.setFrameShape(QFrame.Shape.NoFrame)
        self.scroller.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        outer.addWidget(self.scroller, 1)
        content = QWidget()
        content.setObjectName("capabilities_content")
        self.scroller.setWidget(content)
        layout = QVBoxLayout(content)
        layout.setContentsMargins(0, 0, 12, 8)
        layout.setSpacing(10)

        layout.addWidget(heading("About the device"))
        layout.addLayout(self._questions())

        layout.addSpacing(6)
        layout.addWidget(heading("Recommended"))
        self.headline = QLabel()
        self.headline.setObjectName("headline")
        self.headline.setWordWrap(True)
        self.headline.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.headline)
        self.reasons = _Items("reasons", "Why")
        self.warnings = _Items("warnings", "Watch out for")
        self.checks = _Items("checks", "Worth finding out")
        for items in (self.reasons, self.warnings, self.checks):
            layout.addWidget(items)

        layout.addSpacing(6)
        layout.addWidget(heading("The methods side by side"))
        layout.addLayout(self._comparison())

        layout.addSpacing(6)
        layout.addWidget(heading("Choose differently"))
        layout.addWidget(self._override())
        layout.addStretch(1)

        # Pinned below the scrolling part: the answer stays in view while the questions change.
        self.banner = QFrame()
        self.banner.setObjectName("banner")
        self.banner.setFrameShape(QFrame.Shape.StyledPanel)
        banner_row = QHBoxLayout(self.banner)
        banner_row.setContentsMargins(10, 6, 10, 6)
        banner_row.setSpacing(8)
        self.banner_icon = icon_label()
        self.banner_text = QLabel()
        self.banner_text.setObjectName("banner_text")
        self.banner_text.setWordWrap(True)
        self.banner_text.setTextFormat(Qt.TextFormat.RichText)
        banner_row.addWidget(self.banner_icon, 0, Qt.AlignmentFlag.AlignTop)
        banner_row.addWidget(self.banner_text, 1)
        outer.addWidget(self.banner)

    # -- building --------------------------------------------------------------------------------------

    def _questions(self) -> QGridLayout:
        grid = QGridLayout()
        grid.setHorizontalSpacing(16)
        grid.setVerticalSpacing(10)
        grid.setColumnStretch(0, 1)
        for row, question in enumerate(QUESTIONS):
            text = QVBoxLayout()
            text.setSpacing(2)
            label = _wrapping_label(question.text, f"question_{question.field}")
            text.addWidget(label)
            text.addWidget(_Hint(question.why))
            grid.addLayout(text, row, 0)
            # Each question's buttons share a parent: arrow keys move within it, Tab to the next question.
            box = QWidget()
            box.setObjectName(f"answers_{question.field}")
            box.setAccessibleName(question.text)
            answers = QHBoxLayout(box)
            answers.setContentsMargins(0, 0, 0, 0)
            answers.setSpacing(14)
            group = QButtonGroup(self)
            self.groups[question.field] = group
            self.buttons[question.field] = {}
            for caption, value in question.answers:
                button = QRadioButton(caption)
                button.setObjectName(f"{question.field}_{_answer_name(value)}")
                button.setAccessibleName(f"{question.text} {caption}")
                group.addButton(button)
                answers.addWidget(button)
                self.buttons[question.field][value] = button
                button.toggled.connect(self._answer_toggled)
            answers.addStretch(1)
            grid.addWidget(box, row, 1, Qt.AlignmentFlag.AlignTop)
        return grid

    def _comparison(self) -> QGridLayout:
        grid = QGridLayout()
        grid.setHorizontalSpacing(6)
        grid.setVerticalSpacing(0)
        cards = advisor.compare()
        last_row = len(_ROWS) + 1
        for column, card in enumerate(cards, start=1):
            grid.setColumnStretch(column, 1)
            # The frame sits behind the column's labels (added first, so drawn first).
            frame = _Column()
            frame.setObjectName(f"column_{card.method}")
            self.columns[card.method] = frame
            grid.addWidget(frame, 0, column, last_row + 1, 1)
            name = QLabel(f"<b>{card.name}</b>")
            name.setObjectName(f"name_{card.method}")
            name.setWordWrap(True)
            name.setContentsMargins(10, 8, 10, 2)
            name.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
            grid.addWidget(name, 0, column)
            tag_box = QWidget()
            tag_row = QHBoxLayout(tag_box)
            tag_row.setContentsMargins(10, 0, 10, 4)
            tag_row.setSpacing(6)
            tag_icon = icon_label()
            tag_text = _wrapping_label(name=f"tag_{card.method}")
            tag_text.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
            tag_row.addWidget(tag_icon, 0, Qt.AlignmentFlag.AlignTop)
            tag_row.addWidget(tag_text, 1)
            grid.addWidget(tag_box, 1, column, Qt.AlignmentFlag.AlignTop)
            self.tags[card.method] = (tag_icon, tag_text)
            for row, (_title, attribute) in enumerate(_ROWS, start=2):
                cell = _wrapping_label(_cell_text(card, attribute), f"{card.method}_{attribute}")
                bottom = 10 if row == last_row else 4
                cell.setContentsMargins(10, 4, 10, bottom)
                cell.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
                grid.addWidget(cell, row, column)
        for row, (title, _attribute) in enumerate(_ROWS, start=2):
            label = QLabel(f"<b>{title}</b>")
            label.setContentsMargins(0, 4, 4, 4)
            label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
            grid.addWidget(label, row, 0)
        return grid

    def _override(self) -> QWidget:
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        self.override = QCheckBox("Choose the method myself")
        self.override.setObjectName("override")
        self.override.setAccessibleName("Choose the method myself")
        self.override.toggled.connect(self._override_toggled)
        layout.addWidget(self.override)
        form = QFormLayout()
        form.setContentsMargins(24, 0, 0, 0)
        form.setHorizontalSpacing(12)
        form.setVerticalSpacing(8)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
        self.method_combo = QComboBox()
        self.method_combo.setObjectName("method")
        self.method_combo.setAccessibleName("Sending method")
        for card in advisor.compare():
            self.method_combo.addItem(card.name, card.method)
        self.auth_combo = QComboBox()
        self.auth_combo.setObjectName("auth")
        self.auth_combo.setAccessibleName("Sign-in")
        self.relay_box = QCheckBox("Send through the local relay on this computer")
        self.relay_box.setObjectName("relay")
        self.relay_box.setAccessibleName("Send through the local relay on this computer")
        for combo in (self.method_combo, self.auth_combo):  # one width for both, whatever they hold
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(max(len(text) for text, _auth in _AUTH_CHOICES) + 2)
        form.addRow("Method:", self.method_combo)
        form.addRow("Sign-in:", self.auth_combo)
        form.addRow("", self.relay_box)
        layout.addLayout(form)
        self.choice_notes = _Items("choice_notes")
        layout.addWidget(self.choice_notes)
        self.method_combo.currentIndexChanged.connect(self._method_changed)
        self.auth_combo.currentIndexChanged.connect(lambda _index: self._refresh())
        self.relay_box.toggled.connect(lambda _on: self._refresh())
        self._fill_auth("smtp-auth", "password")
        self._set_override_enabled(False)
        return box

    # -- reading and writing the plan ------------------------------------------------------------------

    def initializePage(self) -> None:
        caps = self.plan.capabilities
        self._updating = True
        try:
            for question in QUESTIONS:
                value: Answer = getattr(caps, question.field)
                buttons = self.buttons[question.field]
                (buttons.get(value) or buttons[None if None in buttons else False]).setChecked(True)
            self.override.setChecked(self.plan.method_overridden)
            if self.plan.method_overridden:
                self._show_choice(self.plan.method, self.plan.auth, self.plan.relay.enabled)
        finally:
            self._updating = False
        self._refresh()

    def validatePage(self) -> bool:
        advice = advisor.recommend(self.capabilities(), self.plan.use_case)
        method, auth, relay = self.choice()
        self.plan.capabilities = self.capabilities()
        self.plan.method_overridden = self.override.isChecked()
        self.plan.method = method
        self.plan.auth = auth
        self.plan.relay.enabled = relay if self.override.isChecked() else advice.local_relay
        return True

    def capabilities(self) -> Capabilities:
        """The answers as they stand."""

        def answer(field: str) -> Answer:
            for value, button in self.buttons[field].items():
                if button.isChecked():
                    return value
            return None

        return Capabilities(
            tls12=answer("tls12"),
            can_authenticate=answer("can_authenticate"),
            oauth=answer("oauth"),
            external_recipients=bool(answer("external_recipients")),
            static_ip=answer("static_ip"),
            port_587=answer("port_587"),
        )

    def choice(self) -> tuple[Method, AuthChoice, bool]:
        """The method, sign-in and relay the page would write: the admin's, or else the advice."""
        if self.override.isChecked():
            return self.method_combo.currentData(), self.auth_combo.currentData(), self.relay_box.isChecked()
        advice = self.recommendation or advisor.recommend(self.capabilities(), self.plan.use_case)
        return advice.method, advice.auth, advice.local_relay

    # -- live updates ----------------------------------------------------------------------------------

    _updating = False

    def _answer_toggled(self, checked: bool) -> None:
        if checked and not self._updating:
            self._refresh()

    def _override_toggled(self, on: bool) -> None:
        self._set_override_enabled(on)
        if not self._updating:
            self._refresh()

    def _set_override_enabled(self, on: bool) -> None:
        for widget in (self.method_combo, self.auth_combo, self.relay_box):
            widget.setEnabled(on)

    def _method_changed(self, _index: int) -> None:
        method: Method = self.method_combo.currentData()
        self._fill_auth(method, self.auth_combo.currentData())
        self._refresh()

    def _fill_auth(self, method: Method, keep: AuthChoice | None) -> None:
        """SMTP AUTH signs in with OAuth or a password; the others never sign in."""
        allowed = [
            (text, auth) for text, auth in _AUTH_CHOICES if (auth == "none") != (method == "smtp-auth")
        ]
        self.auth_combo.blockSignals(True)
        self.auth_combo.clear()
        for text, auth in allowed:
            self.auth_combo.addItem(text, auth)
        index = self.auth_combo.findData(keep)
        self.auth_combo.setCurrentIndex(max(index, 0))
        self.auth_combo.blockSignals(False)

    def _show_choice(self, method: Method, auth: AuthChoice, relay: bool) -> None:
        """Put a choice into the override controls without a refresh per control."""
        widgets = (self.method_combo, self.relay_box)
        for widget in widgets:
            widget.blockSignals(True)
        self.method_combo.setCurrentIndex(max(self.method_combo.findData(method), 0))
        self.relay_box.setChecked(relay)
        for widget in widgets:
            widget.blockSignals(False)
        self._fill_auth(method, auth)

    def _refresh(self) -> None:
        if self._updating:
            return
        caps = self.capabilities()
        advice = advisor.recommend(caps, self.plan.use_case)
        self.recommendation = advice
        self.headline.setText(f"<b>{advice.headline}</b>")
        self.reasons.set_items([("pass", text) for text in advice.reasons])
        self.warnings.set_items([("warn", text) for text in advice.warnings])
        self.checks.set_items([("pending", text) for text in advice.checks])
        if not self.override.isChecked():
            self._show_choice(advice.method, advice.auth, advice.local_relay)
        method, auth, relay = self.choice()
        overridden = self.override.isChecked() and (method, auth, relay) != (
            advice.method,
            advice.auth,
            advice.local_relay,
        )
        notes: list[tuple[str, str]] = []
        if self.override.isChecked():
            notes += [("fail", text) for text in advisor.problems(caps, method, auth, relay)]
            notes += [("warn", text) for text in advisor.risks(method, auth, relay)]
            if not notes:
                notes.append(("pass", "Nothing known stands in the way of this choice."))
        self.choice_notes.set_items(notes)
        self._mark_columns(advice, method if self.override.isChecked() else None)
        if overridden:
            set_icon(self.banner_icon, "warn" if advisor.problems(caps, method, auth, relay) else "current")
            self.banner_text.setText(
                f"<b>Your choice:</b> {advisor.describe(method, auth, relay)}"
                f"<br>Recommended: {advice.headline}"
            )
        else:
            set_icon(self.banner_icon, "pass")
            self.banner_text.setText(f"<b>Recommended:</b> {advice.headline}")
        self.banner.setAccessibleName(self.banner_text.text())
        self.completeChanged.emit()

    def _mark_columns(self, advice: Recommendation, chosen: Method | None) -> None:
        relay = ", through the local relay" if advice.local_relay else ""
        for method, frame in self.columns.items():
            icon, text = self.tags[method]
            if method == advice.method:
                set_icon(icon, "pass")
                text.setText(f"Recommended{relay}")
            elif method == chosen:
                set_icon(icon, "current")
                text.setText("Your choice")
            else:
                set_icon(icon, None)
                text.setText("")
            frame.set_marked(method == (chosen or advice.method))


def _answer_name(value: Answer) -> str:
    return {True: "yes", False: "no", None: "unknown"}[value]


def _cell_text(card: MethodCard, attribute: str) -> str:
    value = getattr(card, attribute)
    if isinstance(value, tuple):
        return "\n".join(f"• {item}" for item in value)
    return str(value)
