"""The wizard's pages, one module each."""

from __future__ import annotations

from PySide6.QtWidgets import QWizardPage


def all_pages() -> list[tuple[int, QWizardPage]]:
    """Every page with its id, in order (the wizard decides which ones a plan goes through)."""
    from relaywizard.gui.pages.capabilities import CapabilitiesPage
    from relaywizard.gui.pages.credentials import CredentialsPage
    from relaywizard.gui.pages.relay import RelayPage
    from relaywizard.gui.pages.start import StartPage
    from relaywizard.gui.pages.summary import SummaryPage
    from relaywizard.gui.pages.tenant import TenantPage
    from relaywizard.gui.pages.tests import TestsPage
    from relaywizard.gui.wizard import PageId

    return [
        (PageId.START, StartPage()),
        (PageId.CAPABILITIES, CapabilitiesPage()),
        (PageId.TENANT, TenantPage()),
        (PageId.CREDENTIALS, CredentialsPage()),
        (PageId.TESTS, TestsPage()),
        (PageId.SUMMARY, SummaryPage()),
        (PageId.RELAY, RelayPage()),
    ]
