"""The report as one self-contained HTML document: every section, everything escaped, nothing fetched."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import escape
from html.parser import HTMLParser

from relaywizard.core import handover, report_html, trace
from relaywizard.core.plan import SetupPlan, Tenant
from relaywizard.diagnostics.model import CheckResult, Report, Status

D = "contoso.com"
NOW = datetime(2026, 11, 20, 14, 3)
MESSAGE_ID = trace.new_message_id("office@contoso.com", now=datetime(2026, 11, 20, 13, 59, 30, tzinfo=UTC))
BREAKS = {"td", "th", "tr", "br", "p", "li", "pre", "h1", "h2", "h3", "table"}
VOID = {"meta", "br", "hr", "img", "link", "input", "col", "wbr"}


def checks() -> list[CheckResult]:
    return [
        CheckResult("dns.mx", Status.PASS, "MX record", "MX points to Microsoft 365.", duration_ms=12),
        CheckResult(
            "dns.spf",
            Status.FAIL,
            "SPF record",
            "SPF does not include spf.protection.outlook.com.",
            fix='Change the TXT record of contoso.com to: "v=spf1 include:spf.protection.outlook.com -all"',
            duration_ms=34,
            data={"suggested": "v=spf1 include:spf.protection.outlook.com -all", "records": ["v=spf1 -all"]},
        ),
        CheckResult(
            "smtp.auth",
            Status.FAIL,
            "Authentication",
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.",
            fix="Set-CASMailbox -Identity 'scanner@contoso.com' -SmtpClientAuthenticationDisabled $false",
            code="5.7.139",
            duration_ms=250,
        ),
        CheckResult("smtp.data", Status.SKIP, "Message", "Not run.", blocked_by="smtp.auth"),
    ]


def a_plan(**changes: object) -> SetupPlan:
    report = Report(domain=D, method="smtp-auth", results=checks(), duration_ms=296)
    plan = SetupPlan(
        tenant=Tenant(domain=D, mailbox="scanner@contoso.com", sender="office@contoso.com"),
        profile="scanner",
        secret_stored=True,
        report=report,
        test_message_id=MESSAGE_ID,
    )
    for name, value in changes.items():
        setattr(plan, name, value)
    return plan


class TagBalance(HTMLParser):
    """Every element opened is closed, in order (void elements excepted)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def parse(document: str) -> TagBalance:
    parser = TagBalance()
    parser.feed(document)
    parser.close()
    return parser


def text_of(document: str) -> str:
    """The visible text, entities decoded, whitespace collapsed."""
    chunks: list[str] = []

    class Text(HTMLParser):
        skip = 0

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.skip += tag in ("style", "title")
            chunks.append(" " if tag in BREAKS else "")

        def handle_endtag(self, tag: str) -> None:
            self.skip -= tag in ("style", "title")
            chunks.append(" " if tag in BREAKS else "")

        def handle_data(self, data: str) -> None:
            if not self.skip:
                chunks.append(data)

    Text(convert_charrefs=True).feed(document)
    return re.sub(r"\s+", " ", "".join(chunks))


def test_every_section_is_there() -> None:
    document = report_html.render(a_plan(), now=NOW)
    text = text_of(document)
    for heading in ("Device settings", "Tenant changes", "Exchange Online PowerShell", "Why this method"):
        assert f">{heading}</h" in document
    assert ">DNS records</h3>" in document
    assert '<h2 class="tests">Test results</h2>' in document
    assert "Mail setup report: contoso.com" in text
    assert "Generated 2026-11-20 14:03" in text
    assert "SMTP AUTH with a password" in text
    for label, value in handover.device_settings(a_plan()):
        assert f"{label} {value}" in text
    assert "Set-CASMailbox -Identity 'scanner@contoso.com' -SmtpClientAuthenticationDisabled $false" in text
    assert "Add-RecipientPermission -Identity 'office@contoso.com'" in text
    assert 'contoso.com TXT "v=spf1 include:spf.protection.outlook.com -all"' in text
    assert f"Message-ID: {MESSAGE_ID} (sent 2026-11-20T13:59:30Z)" in text
    assert '<h2 class="checklist">Rollout checklist</h2>' in document
    # The checklist comes last.
    assert document.index("Rollout checklist</h2>") > document.index("Test results</h2>")


def test_the_trace_of_the_test_message() -> None:
    document = report_html.render(a_plan(), now=NOW)
    text = text_of(document)
    found = trace.trace_for(MESSAGE_ID)
    assert found.powershell in text
    assert f'Get-MessageTraceV2 -MessageId "{MESSAGE_ID}" -StartDate "2026-11-20T12:59:30Z"' in text
    assert found.detail_powershell in text
    assert "Exchange admin center (admin.exchange.microsoft.com) > Mail flow > Message trace" in text
    assert "search before 2027-02-18" in text
    assert f'<code class="message-id">{escape(MESSAGE_ID)}</code>' in document
    assert "Trace the test message" not in report_html.render(a_plan(test_message_id=None), now=NOW)


def test_the_checklist_shows_each_state_and_how_to_verify() -> None:
    document = report_html.render(a_plan(), now=NOW)
    text = text_of(document)
    rows = re.findall(
        r'<tr class="step" id="step-([\w.-]+)"><td class="status"><span class="(\w+)">', document
    )
    assert dict(rows) == {
        "domain": "warn",
        "dns.mx": "pass",  # passed
        "dns.spf": "fail",  # failed
        "dns.dkim": "warn",  # not run
        "dns.dmarc": "warn",
        "smtp-auth": "fail",  # 5.7.139 SmtpClientAuthentication disabled
        "send-as": "warn",
        "credentials": "pass",  # in the keyring
        "device": "warn",
        "test": "warn",  # the DATA check was skipped
    }
    assert "✓ Verified here MX record points to Microsoft 365" in text
    assert "✗ Failed SMTP AUTH enabled for scanner@contoso.com" in text
    assert "! To verify Device configured" in text
    assert (
        "Get-CASMailbox -Identity scanner@contoso.com | Format-List SmtpClientAuthenticationDisabled" in text
    )
    assert "3 verified here" not in text
    assert "2 verified here, 6 to verify, 2 failed." in text


def test_each_check_has_status_title_summary_fix_code_and_time() -> None:
    document = report_html.render(a_plan(), now=NOW)
    text = text_of(document)
    assert "✓ Passed MX record MX points to Microsoft 365. 12 ms" in text
    assert "✗ Failed SPF record SPF does not include" in text
    assert "✗ Failed Authentication 535 5.7.139" in text
    assert "Code: 5.7.139" in text
    assert "Fix: Set-CASMailbox -Identity 'scanner@contoso.com'" in text
    assert "250 ms" in text
    assert "– Skipped Message Not run." in text
    assert "2 failed, 1 passed, 1 skipped of 4 checks in 0.3 s." in text


def test_the_powershell_and_records_are_in_pre_blocks() -> None:
    document = report_html.render(a_plan(), now=NOW)
    blocks = re.findall(r"<pre>(.*?)</pre>", document, re.S)
    assert any("Set-CASMailbox" in block for block in blocks)
    assert any("v=spf1 include:spf.protection.outlook.com" in block for block in blocks)


def test_balanced_and_self_contained() -> None:
    document = report_html.render(a_plan(), now=NOW)
    assert document.startswith("<!DOCTYPE html>")
    parsed = parse(document)
    assert parsed.problems == []
    assert parsed.stack == []
    names = {tag for tag, _ in parsed.tags}
    assert not names & {"script", "link", "img", "iframe", "object", "embed"}
    for _, attrs in parsed.tags:
        assert "src" not in attrs
        assert "href" not in attrs
    assert "url(" not in document
    assert "@import" not in document
    assert '<meta charset="utf-8">' in document


def test_everything_is_escaped() -> None:
    hostile = CheckResult(
        "smtp.banner",
        Status.WARN,
        "Banner <b>bold</b>",
        'The server said <script>alert("x")</script> & more',
        fix="Run <this> & 'that'",
        code="<5.0.0>",
    )
    plan = a_plan(test_message_id="<id&1@contoso.com>")
    assert plan.report is not None
    plan.report.results.append(hostile)
    plan.tenant.sender = "o'brien@contoso.com"
    document = report_html.render(plan, now=NOW)
    assert "<script>" not in document
    assert "<b>bold</b>" not in document
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more" in document
    assert "Run &lt;this&gt; &amp; &#x27;that&#x27;" in document
    assert "&lt;5.0.0&gt;" in document
    assert "&lt;id&amp;1@contoso.com&gt;" in document
    assert "o&#x27;brien@contoso.com" in document
    assert parse(document).problems == []


def test_no_secret_and_the_keyring_named() -> None:
    document = report_html.render(a_plan(), now=NOW)
    assert "the one saved in the keyring profile “scanner”" in document
    assert "No password or token is in this report" in document


def test_untested_plan_says_so_and_lists_expected_records() -> None:
    plan = SetupPlan(method="connector", auth="none", tenant=Tenant(domain=D, public_ip="203.0.113.10"))
    text = text_of(report_html.render(plan, now=NOW))
    assert "Not tested: run the tests" in text
    assert "unless they are there already" in text
    assert "ip4:203.0.113.10" in text
    assert "Message-ID" not in text
    assert "Status Check Time" not in text


def test_relay_plan_describes_the_relay() -> None:
    plan = a_plan(auth="oauth")
    plan.relay.enabled = True
    plan.relay.listen = "192.168.1.20:2525"
    plan.relay.allow = ["192.168.1.0/24"]
    text = text_of(report_html.render(plan, now=NOW))
    assert "The local relay listens on 192.168.1.20:2525 and accepts mail from: 192.168.1.0/24." in text
    assert "Server (SMTP host) 192.168.1.20" in text


def test_clean_tests_say_nothing_to_change() -> None:
    results = [
        CheckResult(cid, Status.PASS, cid, "fine") for cid in ("dns.mx", "dns.spf", "dns.dkim", "dns.dmarc")
    ]
    plan = a_plan(report=Report(domain=D, method="smtp-auth", results=results))
    text = text_of(report_html.render(plan, now=NOW))
    assert "Nothing to change: the tests found the DNS records in order." in text
    assert "All 4 checks passed." in text
