"""The setup wizard: a side panel of steps, one page per step, all reading and writing one SetupPlan."""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

# Only what the first window needs is imported here: each Qt name costs on first use (``Qt`` itself, the
# namespace of every enum, ~20 ms), and the pages come from relaywizard.gui.pages when first shown.
from PySide6.QtCore import QSettings, QSize
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QLabel, QListWidget, QListWidgetItem, QWizard, QWizardPage

from relaywizard.core.plan import SetupPlan, UseCase
from relaywizard.gui import icons
from relaywizard.gui.services import Services

if TYPE_CHECKING:
    from PySide6.QtGui import QCloseEvent


class PageId(IntEnum):
    START = 0
    CAPABILITIES = 1
    TENANT = 2
    CREDENTIALS = 3
    TESTS = 4
    RELAY = 5
    SUMMARY = 6


STEP_TITLES = {
    PageId.START: "Start",
    PageId.CAPABILITIES: "Device and method",
    PageId.TENANT: "Microsoft 365",
    PageId.CREDENTIALS: "Credentials",
    PageId.TESTS: "Tests",
    PageId.SUMMARY: "Summary",
    PageId.RELAY: "Local relay",
}


class PlanPage(QWizardPage):
    """A wizard page that reads and writes the wizard's ``SetupPlan``; ``help_text`` answers Help."""

    help_text = ""

    @property
    def setup(self) -> SetupWizard:
        wizard = self.wizard()
        assert isinstance(wizard, SetupWizard)
        return wizard

    @property
    def plan(self) -> SetupPlan:
        return self.setup.plan

    @property
    def services(self) -> Services:
        return self.setup.services


class SetupWizard(QWizard):
    def __init__(self, plan: SetupPlan | None = None, services: Services | None = None) -> None:
        super().__init__()
        self.plan = plan or SetupPlan()
        self.services = services or Services()
        self.setWindowTitle("relaywizard — set up mail through Microsoft 365")
        self.setWindowIcon(QIcon(str(icons.path("relaywizard"))))
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.setOption(QWizard.WizardOption.HaveHelpButton, True)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.helpRequested.connect(self._show_help)
        self._steps = QListWidget()
        self._steps.setObjectName("steps")
        self._steps.setAccessibleName("Steps of the setup")
        self._steps.setProperty("focusPolicy", "NoFocus")  # Qt.FocusPolicy.NoFocus, without loading ``Qt``
        self._steps.setSelectionMode(QListWidget.SelectionMode.NoSelection)
        self._steps.setFrameShape(QListWidget.Shape.NoFrame)
        self._steps.setMinimumWidth(170)
        self.setSideWidget(self._steps)
        self._add_page(PageId.START)  # the others are made when first needed: see `page` below
        self.setStartId(PageId.START)
        self.currentIdChanged.connect(self._update_steps)
        self._restore_size()
        self._update_steps(PageId.START)

    # -- pages, made on first use ----------------------------------------------------------------

    def _add_page(self, page_id: int) -> None:
        """Make and register the page of step ``page_id`` unless it exists (or is no step)."""
        if page_id not in STEP_TITLES or super().page(page_id) is not None:
            return
        from relaywizard.gui.pages import make_page

        self.setPage(page_id, make_page(PageId(page_id)))

    def page(self, page_id: int, /) -> QWizardPage:
        """The page of step ``page_id``, made now if it was not yet (for callers in Python)."""
        self._add_page(page_id)
        return super().page(page_id)

    def setStartId(self, page_id: int, /) -> None:
        self._add_page(page_id)
        super().setStartId(page_id)

    def validateCurrentPage(self) -> bool:
        """Next (and Finish) ask this first: the page Next leads to is made here, before Qt looks it up."""
        if not super().validateCurrentPage():
            return False
        following = self.nextId()
        if following != -1:
            self._add_page(following)
        return True

    # -- navigation ------------------------------------------------------------------------------

    def path(self) -> list[PageId]:
        """The steps this plan goes through, for the side panel."""
        steps = [PageId.START]
        if self.plan.use_case is not UseCase.VALIDATE:
            steps.append(PageId.CAPABILITIES)
        steps += [PageId.TENANT, PageId.CREDENTIALS, PageId.TESTS]
        if self.plan.relay.enabled:
            # Before the summary, so the summary and the saved profile carry the relay's address.
            steps.append(PageId.RELAY)
        steps.append(PageId.SUMMARY)
        return steps

    def nextId(self) -> int:
        current = PageId(self.currentId())
        steps = self.path()
        if current not in steps:
            return -1
        index = steps.index(current)
        return int(steps[index + 1]) if index + 1 < len(steps) else -1

    def _update_steps(self, current: int) -> None:
        self._steps.clear()
        for step in self.path():
            item = QListWidgetItem(STEP_TITLES[step])
            if step == current:
                font = item.font()
                font.setBold(True)
                item.setFont(font)
                item.setIcon(QIcon(str(icons.path("current"))))
            elif step in self.visitedIds():
                item.setIcon(QIcon(str(icons.path("done"))))
            else:
                item.setIcon(QIcon(str(icons.path("todo"))))
            self._steps.addItem(item)

    def _show_help(self) -> None:
        from PySide6.QtCore import Qt
        from PySide6.QtWidgets import QMessageBox

        page = self.currentPage()
        text = page.help_text if isinstance(page, PlanPage) and page.help_text else "No help for this page."
        box = QMessageBox(QMessageBox.Icon.Information, f"Help — {page.title()}", text, parent=self)
        box.setTextFormat(Qt.TextFormat.RichText)
        box.exec()

    # -- window size, remembered -----------------------------------------------------------------

    def _size_store(self) -> QSettings:
        path = self.services.paths.config / "window.ini"
        return QSettings(str(path), QSettings.Format.IniFormat)

    def _restore_size(self) -> None:
        size = self._size_store().value("wizard/size")
        self.resize(size if isinstance(size, QSize) else QSize(900, 640))

    def closeEvent(self, event: QCloseEvent) -> None:
        self.remember_size()
        super().closeEvent(event)

    def done(self, result: int) -> None:
        self.remember_size()
        super().done(result)

    def remember_size(self) -> None:
        store = self._size_store()
        store.setValue("wizard/size", self.size())
        store.sync()


def heading(text: str) -> QLabel:
    """A section heading inside a page."""
    from PySide6.QtCore import Qt

    label = QLabel(f"<b>{text}</b>")
    label.setTextFormat(Qt.TextFormat.RichText)
    return label
