"""The wizard's pages, one module each.

The wizard makes each page when it first needs it (``make_page``): opening the window builds only the
start page, so it does not wait for every page's module and what those use (diagnostics, the relay engine,
report export, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relaywizard.gui.wizard import PageId, PlanPage


def make_page(page_id: PageId) -> PlanPage:
    """A new page for step ``page_id``; its module is imported the first time."""
    from relaywizard.gui.wizard import PageId

    match page_id:
        case PageId.START:
            from relaywizard.gui.pages.start import StartPage

            return StartPage()
        case PageId.CAPABILITIES:
            from relaywizard.gui.pages.capabilities import CapabilitiesPage

            return CapabilitiesPage()
        case PageId.TENANT:
            from relaywizard.gui.pages.tenant import TenantPage

            return TenantPage()
        case PageId.CREDENTIALS:
            from relaywizard.gui.pages.credentials import CredentialsPage

            return CredentialsPage()
        case PageId.TESTS:
            from relaywizard.gui.pages.tests import TestsPage

            return TestsPage()
        case PageId.SUMMARY:
            from relaywizard.gui.pages.summary import SummaryPage

            return SummaryPage()
        case PageId.RELAY:
            from relaywizard.gui.pages.relay import RelayPage

            return RelayPage()


def all_pages() -> list[tuple[PageId, PlanPage]]:
    """Every page with its id, made now, in order (the wizard decides which ones a plan goes through)."""
    from relaywizard.gui.wizard import PageId

    order = (
        PageId.START,
        PageId.CAPABILITIES,
        PageId.TENANT,
        PageId.CREDENTIALS,
        PageId.TESTS,
        PageId.SUMMARY,
        PageId.RELAY,
    )
    return [(page_id, make_page(page_id)) for page_id in order]
