"""The setup report as one self-contained HTML document: inline CSS, no scripts, no external resources.

The same document is saved as an HTML file and printed to PDF by Qt's rich-text engine (the GUI's
export), so it keeps to what both render: tables with attributes as well as CSS, ``<pre>`` for anything
that must stay copyable, and the status as a symbol and a word so it reads in black and white too.
Every value is escaped: domains, addresses and check texts come from the admin and from DNS.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from html import escape

from relaywizard import __version__
from relaywizard.core.checklist import STATE_TEXT as CHECKLIST_STATE_TEXT
from relaywizard.core.checklist import Checklist, State
from relaywizard.core.handover import Handover, build
from relaywizard.core.plan import SetupPlan
from relaywizard.core.trace import TRACE_RETENTION_DAYS, Trace, iso_utc
from relaywizard.diagnostics.model import CheckResult, Status

__all__ = ["STATUS_TEXT", "render"]

#: How each status is written in the report: a symbol and a word (print-safe without colour).
STATUS_TEXT = {
    Status.PASS: ("✓", "Passed"),
    Status.WARN: ("!", "Warning"),
    Status.FAIL: ("✗", "Failed"),
    Status.SKIP: ("–", "Skipped"),
}

_STATE_CLASS = {State.VERIFIED: "pass", State.TO_VERIFY: "warn", State.FAILED: "fail"}

# Qt's engine indents tables by body margins (and reads @media screen), so the body's space is padding.
_CSS = """
body { font-family: "Segoe UI", "Helvetica Neue", "DejaVu Sans", Arial, sans-serif; font-size: 10pt;
       color: #1b1b1b; background: #ffffff; margin: 0; padding: 24px; max-width: 60em; line-height: 1.35; }
h1 { font-size: 18pt; margin: 0 0 4px 0; }
h2 { font-size: 13pt; margin: 22px 0 8px 0; padding-bottom: 2px; border-bottom: 1px solid #8c8c8c; }
h3 { font-size: 11pt; margin: 14px 0 6px 0; }
p { margin: 4px 0 8px 0; }
ul { margin-top: 4px; }
.meta { color: #555555; }
table { border-collapse: collapse; margin: 4px 0 8px 0; }
th, td { text-align: left; vertical-align: top; padding: 5px 8px; border: 1px solid #b8b8b8; }
th { background-color: #efefef; font-weight: bold; }
td.label { background-color: #f6f6f6; font-weight: bold; white-space: nowrap; }
td.value { font-family: "Consolas", "DejaVu Sans Mono", "Menlo", monospace; }
td.time, td.status { white-space: nowrap; }
td.time { text-align: right; }
td.verify { font-size: 8.5pt; }
pre { font-family: "Consolas", "DejaVu Sans Mono", "Menlo", monospace; font-size: 8.5pt;
      white-space: pre-wrap; margin: 4px 0 0 0; }
table.code td { padding: 8px; }
h2.tests, h2.checklist { page-break-before: always; }
/* Browsers shade the code boxes; Qt's engine skips @supports, and would shade past a page break. */
@supports (display: block) { table.code td { background-color: #f4f4f4; } }
table.code pre { margin: 0; }
.pass { color: #1a7f37; font-weight: bold; }
.warn { color: #8a5a00; font-weight: bold; }
.fail { color: #c21c27; font-weight: bold; }
.skip { color: #6b6b6b; font-weight: bold; }
.small { font-size: 8.5pt; color: #555555; }
@page { size: A4; margin: 16mm; }
@media print {
  body { margin: 0; max-width: none; }
  h2, h3 { page-break-after: avoid; }
  tr, pre { page-break-inside: avoid; }
}
"""


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _table(rows: Iterable[str], css_class: str = "") -> str:
    cls = f' class="{css_class}"' if css_class else ""
    # The attributes are for Qt's rich-text engine (the PDF), which reads them rather than the CSS.
    return (
        f'<table{cls} width="100%" cellspacing="0" cellpadding="5" border="1">' + "".join(rows) + "</table>"
    )


def _code(text: str) -> str:
    """A block to copy (PowerShell, DNS records) in a one-cell table: one box in Qt's engine too, which
    would draw each line of a bare ``<pre>`` as a box of its own."""
    return _table([f"<tr><td><pre>{_e(text)}</pre></td></tr>"], "code")


def _status(status: Status | None) -> str:
    if status is None:
        return '<span class="skip">–&nbsp;Not tested</span>'
    symbol, word = STATUS_TEXT[status]
    return f'<span class="{status.value}">{symbol}&nbsp;{word}</span>'


def _method(plan: SetupPlan, data: Handover) -> str:
    """Why this method, and what to keep in mind: after the settings and changes, which come first."""
    parts = ["<h2>Why this method</h2>", f"<p><b>{_e(data.method)}</b></p>"]
    parts.append("<ul>" + "".join(f"<li>{_e(reason)}</li>" for reason in data.reasons) + "</ul>")
    if data.warnings:
        parts.append("<h3>Keep in mind</h3>")
        parts.append("<ul>" + "".join(f"<li>{_e(warning)}</li>" for warning in data.warnings) + "</ul>")
    return "".join(parts)


def _relay(plan: SetupPlan) -> str:
    if not plan.relay.enabled:
        return ""
    allowed = ", ".join(plan.relay.allow) or "devices that sign in only"
    listen = plan.relay.listen or "the address chosen on the Local relay step"
    return f"<p>The local relay listens on <b>{_e(listen)}</b> and accepts mail from: {_e(allowed)}.</p>"


def _settings(data: Handover, note: str) -> str:
    rows = []
    for label, value in data.settings:
        # Values to type go in a typewriter face; the password row is a sentence saying where it is.
        cls = "" if label == "Password" else ' class="value"'
        rows.append(f'<tr><td class="label" width="30%">{_e(label)}</td><td{cls}>{_e(value)}</td></tr>')
    return (
        "<h2>Device settings</h2>"
        "<p>Type exactly these into the device's email (SMTP) settings.</p>"
        + _table(rows, "settings")
        + f'<p class="small">{_e(note)}</p>'
    )


def _changes(data: Handover) -> str:
    changes = data.changes
    parts = [
        "<h2>Tenant changes</h2>",
        "<h3>Exchange Online PowerShell</h3>",
        "<p>Run in Exchange Online PowerShell as an admin. The first commands only show the current "
        "settings; the comments say when to run the rest.</p>",
        _code(changes.powershell),
        "<h3>DNS records</h3>",
    ]
    if changes.dns:
        intro = (
            "The tests found these records missing or wrong; publish them at the domain's DNS host."
            if changes.tested
            else "Publish these at the domain's DNS host unless they are there already "
            "(the DNS tests did not run for all of them)."
        )
        parts += [f"<p>{_e(intro)}</p>", _code(changes.dns_text())]
    elif changes.tested:
        parts.append("<p>Nothing to change: the tests found the DNS records in order.</p>")
    else:
        parts.append("<p>No domain was given, so there are no DNS records to show.</p>")
    return "".join(parts)


def _check_row(result: CheckResult) -> str:
    cell = [f"<b>{_e(result.title)}</b><br>{_e(result.summary)}"]
    if result.code:
        cell.append(f'<br><span class="small">Code: {_e(result.code)}</span>')
    if result.fix and result.status in (Status.FAIL, Status.WARN):
        cell.append(f"<br><b>Fix:</b><pre>{_e(result.fix)}</pre>")
    time = f"{result.duration_ms}&nbsp;ms" if result.status is not Status.SKIP else ""
    return (
        f'<tr><td class="status">{_status(result.status)}</td><td>{"".join(cell)}</td>'
        f'<td class="time">{time}</td></tr>'
    )


def _tests(plan: SetupPlan, data: Handover) -> str:
    parts = [
        '<h2 class="tests">Test results</h2>',
        f"<p>{_status(data.outcome.status)} {_e(data.outcome.text)}</p>",
    ]
    if data.checks:
        header = "<thead><tr><th>Status</th><th>Check</th><th>Time</th></tr></thead>"
        parts.append(_table([header, *(_check_row(r) for r in data.checks)], "checks"))
    if data.trace is not None:
        parts.append(_trace(data.trace))
    return "".join(parts)


def _trace(found: Trace) -> str:
    """The test message's ID and how to find it in Microsoft 365's message trace."""
    return "".join(
        [
            "<h3>Trace the test message</h3>",
            f'<p>Message-ID: <code class="message-id">{_e(found.message_id)}</code> '
            f"(sent {_e(iso_utc(found.sent))})</p>",
            "<p>In Exchange Online PowerShell, the message, then every event on its way:</p>",
            _code(f"{found.powershell}\n\n{found.detail_powershell}"),
            f"<p>Or in the {_e(found.admin_center)}</p>",
            f'<p class="small">Microsoft keeps trace data for {TRACE_RETENTION_DAYS} days: search before '
            f"{found.search_until:%Y-%m-%d}. A message can take a few minutes to appear in the trace.</p>",
        ]
    )


def _checklist(items: Checklist | None) -> str:
    """The rollout checklist, last: each step, its state from the tests, and how to verify it."""
    if items is None:
        return ""
    # Widths as attributes too: Qt's engine (the PDF) would otherwise give the state half the page.
    header = (
        '<thead><tr><th width="16%">State</th><th width="46%">Step</th>'
        '<th width="38%">How to verify</th></tr></thead>'
    )
    rows = [header]
    for step in items.steps:
        symbol, word = CHECKLIST_STATE_TEXT[step.state]
        css = _STATE_CLASS[step.state]
        rows.append(
            f'<tr class="step" id="step-{_e(step.id)}"><td class="status">'
            f'<span class="{css}">{symbol}&nbsp;{_e(word)}</span></td>'
            f"<td><b>{_e(step.title)}</b><br>{_e(step.evidence)}</td>"
            f'<td class="verify">{_e(step.verify)}</td></tr>'
        )
    return "".join(
        [
            '<h2 class="checklist">Rollout checklist</h2>',
            f"<p>{_e(items.summary())} ✓ verified here: a check relaywizard ran backs it; ! to verify: "
            "relaywizard cannot see it from here, or its check did not run; ✗ failed: a check shows it is "
            "not in place.</p>",
            _table(rows, "checklist"),
        ]
    )


def render(plan: SetupPlan, now: datetime | None = None) -> str:
    """The whole report for ``plan``, generated at ``now`` (default: the local time)."""
    data = build(plan)
    when = (now or datetime.now().astimezone()).strftime("%Y-%m-%d %H:%M")
    domain = data.domain or "(no domain)"
    title = f"Mail setup report: {domain}"
    secret_note = (
        f"No password or token is in this report; the password is in the keyring profile “{plan.profile}”."
        if plan.secret_stored and plan.profile
        else "No password or token is in this report."
    )
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">Generated {_e(when)} by relaywizard {_e(__version__)} · '
        f"Domain <b>{_e(domain)}</b> · {_e(plan.use_case.label)}</p>",
        f"<p>Sending method: <b>{_e(data.method)}</b></p>",
        _relay(plan),
        _settings(data, secret_note),
        _changes(data),
        _method(plan, data),
        _tests(plan, data),
        _checklist(data.checklist),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
