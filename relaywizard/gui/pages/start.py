"""Start: what is being set up — or straight to the tests, for a technician validating settings."""

from __future__ import annotations

from PySide6.QtWidgets import QButtonGroup, QLabel, QRadioButton, QVBoxLayout

from relaywizard.core.plan import UseCase
from relaywizard.gui.wizard import PlanPage


class StartPage(PlanPage):
    help_text = (
        "Choose what will send mail. relaywizard then asks what it can do, recommends how it should send "
        "through Microsoft 365, tests that from this network, and ends with the exact settings to type into "
        "it.<br><br><b>Validate existing settings</b> skips the questions: give the domain and mailbox and "
        "run the tests, as a technician does on site."
    )

    def __init__(self) -> None:
        super().__init__()
        self.setTitle("What are you setting up?")
        self.setSubTitle("relaywizard gets it sending mail through Microsoft 365, and proves that it works.")
        layout = QVBoxLayout(self)
        layout.setSpacing(10)
        self.choices = QButtonGroup(self)
        self.buttons: dict[UseCase, QRadioButton] = {}
        hints = {
            UseCase.SCANNER: "Scan to email, fax to email, print alerts.",
            UseCase.APPLICATION: "A line-of-business app, a website form, a backup or a script.",
            UseCase.MONITORING: "A UPS, an alarm panel, a NAS, a sensor.",
            UseCase.VALIDATE: "Check DNS and an SMTP endpoint from this network, then hand over a report.",
        }
        for use_case in UseCase:
            button = QRadioButton(use_case.label)
            button.setObjectName(f"use_case_{use_case.value}")
            button.setAccessibleName(use_case.label)
            self.choices.addButton(button)
            self.buttons[use_case] = button
            hint = QLabel(hints[use_case])
            hint.setIndent(26)
            hint.setWordWrap(True)
            hint.setEnabled(False)
            layout.addWidget(button)
            layout.addWidget(hint)
        layout.addStretch(1)

    def initializePage(self) -> None:
        self.buttons[self.plan.use_case].setChecked(True)

    def validatePage(self) -> bool:
        for use_case, button in self.buttons.items():
            if button.isChecked():
                self.plan.use_case = use_case
        return True
