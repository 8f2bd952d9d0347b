"""The human report of a diagnostics run: ✓ / ! / ✗ per check, summaries and fixes; colour on a terminal."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TextIO

from relaywizard.diagnostics.model import CheckResult, Report, Status, Target

_MARK = {Status.PASS: "✓", Status.WARN: "!", Status.FAIL: "✗", Status.SKIP: "-"}
_COLOUR = {Status.PASS: "32", Status.WARN: "33", Status.FAIL: "31", Status.SKIP: "2"}
_GROUPS = (("dns.", "DNS"), ("smtp.", "SMTP"))


def use_colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def render(report: Report, target: Target, *, colour: bool = False) -> str:
    def paint(text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if colour else text

    lines = [f"relaywizard check {report.domain} (method {report.method})"]
    results = report.ordered()
    for prefix, heading in _GROUPS:
        group = [r for r in results if r.id.startswith(prefix)]
        if not group:
            continue
        lines += ["", paint(heading, "1")]
        title_width = max(len(r.title) for r in group)
        for result in group:
            lines += _render_one(result, title_width, paint)
    counts = {status: sum(r.status is status for r in results) for status in Status}
    verdict = "FAILED" if report.failed else "OK"
    lines += [
        "",
        paint(verdict, _COLOUR[Status.FAIL if report.failed else Status.PASS])
        + f": {counts[Status.FAIL]} failed, {counts[Status.WARN]} warnings, {counts[Status.PASS]} passed, "
        f"{counts[Status.SKIP]} skipped in {report.duration_ms} ms",
    ]
    if report.cancelled:
        lines.append("The run was cancelled before every check had finished.")
    if not target.send and any(r.id == "smtp.rcpt_to" for r in results):
        lines.append("Nothing was sent: the session ended after RCPT TO (use --send to send a test message).")
    return "\n".join(lines)


def _render_one(result: CheckResult, title_width: int, paint: Callable[[str, str], str]) -> list[str]:
    mark = paint(_MARK[result.status], _COLOUR[result.status])
    timing = f"{result.duration_ms} ms" if result.status is not Status.SKIP else ""
    head = f"  {mark} {result.title.ljust(title_width)}  {result.summary}"
    lines = [f"{head}  {paint(timing, '2')}" if timing else head]
    if result.code and result.code not in result.summary:
        lines.append(f"      Code: {result.code}")
    if result.fix and result.status in (Status.FAIL, Status.WARN):
        # Not wrapped: a fix often holds a record or a PowerShell line that must stay copy-pasteable;
        # its own line breaks are kept, indented under the first.
        first, *rest = result.fix.splitlines()
        lines.append(f"      Fix: {first}")
        lines += [f"           {line}" for line in rest]
    return lines
