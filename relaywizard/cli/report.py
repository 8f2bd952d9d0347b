"""The human report of a diagnostics run: ✓ / ! / ✗ per check, summaries and fixes; colour on a terminal.

After the checks: how to trace the test message in Microsoft 365 (with ``--send``), and the rollout
checklist of the method, each step's state taken from this run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from relaywizard.core.plan import AuthChoice, SetupPlan, Tenant, UseCase
from relaywizard.diagnostics.model import CheckResult, Report, Status, Target

if TYPE_CHECKING:
    from relaywizard.core.checklist import Checklist

_MARK = {Status.PASS: "✓", Status.WARN: "!", Status.FAIL: "✗", Status.SKIP: "-"}
_COLOUR = {Status.PASS: "32", Status.WARN: "33", Status.FAIL: "31", Status.SKIP: "2"}
_GROUPS = (("dns.", "DNS"), ("smtp.", "SMTP"))
_STATE_COLOUR = {"verified": "32", "to-verify": "33", "failed": "31"}


def use_colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def plan_of_check(report: Report, target: Target, profile: str | None = None) -> SetupPlan:
    """What a check run amounts to as a setup plan (a technician validating settings), for the checklist
    and the trace: the method, the mailbox and sender, the keyring profile the secret came from."""
    data = report.result("smtp.data")
    message_id = data.data.get("message_id") if data is not None and data.status is Status.PASS else None
    auth: AuthChoice
    if target.method != "smtp-auth":
        auth = "none"
    else:
        auth = "oauth" if target.auth.startswith("oauth") else "password"
    return SetupPlan(
        use_case=UseCase.VALIDATE,
        method=target.method,
        auth=auth,
        tenant=Tenant(
            domain=target.domain,
            mailbox=target.user or "",
            sender=target.mail_from or "",
            public_ip=target.relay_ip or "",
        ),
        profile=profile or "",
        secret_stored=bool(profile),
        report=report,
        test_message_id=str(message_id) if message_id else None,
    )


def render(report: Report, target: Target, *, colour: bool = False, profile: str | None = None) -> str:
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
    # Imported here: the report is printed after the run, and a check should start without these.
    from relaywizard.core import handover

    data = handover.build(plan_of_check(report, target, profile))
    if data.trace is not None:
        lines += ["", paint("Trace the test message", "1"), *(f"  {line}" for line in data.trace.lines())]
    if data.checklist is not None:
        lines += ["", *_render_checklist(data.checklist, paint)]
    return "\n".join(lines)


def _render_checklist(items: Checklist, paint: Callable[[str, str], str]) -> list[str]:
    heading, *rest = items.lines()
    marks = {f"  {step.mark} {step.title}": step for step in items.steps}
    out = [paint(heading, "1")]
    for line in rest:
        step = marks.get(line)
        out.append(f"  {paint(step.mark, _STATE_COLOUR[step.state])} {step.title}" if step else line)
    return out


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
