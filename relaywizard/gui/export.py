"""The setup report saved as an HTML file or printed to a PDF, with or without a file dialog.

Both come from ``core.report_html``: the HTML file as is, the PDF through Qt's rich-text engine
(``QTextDocument`` on a ``QPdfWriter``), so no browser engine is needed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PySide6.QtCore import QMarginsF
from PySide6.QtGui import QFont, QFontDatabase, QPageLayout, QPageSize, QPdfWriter, QTextDocument
from PySide6.QtWidgets import QFileDialog, QWidget

from relaywizard.core.plan import SetupPlan
from relaywizard.core.report_html import render

__all__ = ["HTML_FILTER", "PDF_FILTER", "ExportError", "choose_path", "export", "export_html", "export_pdf"]

HTML_FILTER = "Web page (*.html)"
PDF_FILTER = "PDF document (*.pdf)"
_PDF_DPI = 300


class ExportError(Exception):
    """The report could not be written; ``str()`` is one sentence for the page."""


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).rstrip(".").lower()


def _shareable(temp: str) -> None:
    """mkstemp makes the file private; a report is a normal document (0666 less the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(temp, 0o666 & ~mask)


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` through a temporary file, so a failure leaves no half report."""
    folder = path.parent
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ExportError(f"Cannot save the report in {folder}: {_reason(exc)}.") from None
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        _shareable(temp)
        os.replace(temp, path)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise ExportError(f"Cannot save the report as {path}: {_reason(exc)}.") from None


def export_html(plan: SetupPlan, path: Path | str) -> Path:
    """Write the report as one self-contained HTML file; returns the path written."""
    target = Path(path)
    _write(target, render(plan).encode("utf-8"))
    return target


def document(plan: SetupPlan) -> QTextDocument:
    """The report as a ``QTextDocument`` laid out for A4 (what the PDF prints)."""
    doc = QTextDocument()
    font = QFontDatabase.systemFont(QFontDatabase.SystemFont.GeneralFont)
    font.setPointSizeF(10)
    doc.setDefaultFont(QFont(font))
    doc.setDocumentMargin(0)
    doc.setHtml(render(plan))
    return doc


def export_pdf(plan: SetupPlan, path: Path | str) -> Path:
    """Print the report to an A4 PDF; returns the path written."""
    target = Path(path)
    folder = target.parent
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
        os.close(fd)
    except OSError as exc:
        raise ExportError(f"Cannot save the report in {folder}: {_reason(exc)}.") from None
    try:
        writer = QPdfWriter(temp)
        writer.setResolution(_PDF_DPI)
        writer.setTitle(f"Mail setup report: {plan.tenant.domain or 'relaywizard'}")
        writer.setCreator("relaywizard")
        writer.setPageLayout(
            QPageLayout(
                QPageSize(QPageSize.PageSizeId.A4),
                QPageLayout.Orientation.Portrait,
                QMarginsF(16, 16, 16, 16),
                QPageLayout.Unit.Millimeter,
            )
        )
        # No page size on the document: print_ then lays it out on the writer itself, within its margins.
        document(plan).print_(writer)
        del writer  # the PDF is finished when the writer goes away
        if Path(temp).stat().st_size == 0:
            raise ExportError(f"Cannot save the report as {target}: the PDF came out empty.")
        _shareable(temp)
        os.replace(temp, target)
    except OSError as exc:
        raise ExportError(f"Cannot save the report as {target}: {_reason(exc)}.") from None
    finally:
        Path(temp).unlink(missing_ok=True)
    return target


def export(plan: SetupPlan, path: Path | str) -> Path:
    """HTML or PDF by the file's extension (``.pdf`` prints, anything else is HTML)."""
    return export_pdf(plan, path) if str(path).lower().endswith(".pdf") else export_html(plan, path)


def choose_path(parent: QWidget | None, suggested: Path) -> Path | None:
    """Ask where to save the report (HTML or PDF); None when the admin cancels."""
    name, chosen_filter = QFileDialog.getSaveFileName(
        parent,
        "Export the report",
        str(suggested),
        f"{HTML_FILTER};;{PDF_FILTER}",
        HTML_FILTER if suggested.suffix.lower() != ".pdf" else PDF_FILTER,
    )
    if not name:
        return None
    path = Path(name)
    if path.suffix.lower() not in (".html", ".htm", ".pdf"):
        path = path.with_suffix(".pdf" if chosen_filter == PDF_FILTER else ".html")
    return path
