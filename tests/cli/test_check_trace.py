"""``check --send``: the test message's Message-ID, delivered as shown, with its trace and the checklist."""

from __future__ import annotations

import email
import email.policy
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from relaywizard.cli import report as human
from relaywizard.core import trace
from relaywizard.diagnostics.model import CheckResult, Report, Status, Target
from tests.cli.test_check_cli import dns_args, submission_args
from tests.helpers import run_cli
from tests.lab.lab import Lab
from tests.lab.mail import ACCOUNTS

SCANNER = ACCOUNTS[0]  # scanner@lab.test, scanner-pass
RECIPIENT = "alice@lab.test"


def send_args(lab: Lab, *extra: str) -> list[str]:
    return [
        "check",
        "lab.test",
        *dns_args(lab),
        *submission_args(lab),
        "--user",
        SCANNER.login,
        "--password-stdin",
        "--from",
        SCANNER.login,
        "--to",
        RECIPIENT,
        "--send",
        *extra,
    ]


def delivered_ids(lab: Lab, address: str, count: int) -> list[str]:
    found = []
    for path in lab.wait_for_messages(address, count):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        found.append(str(message["Message-ID"]).strip())
    return found


@pytest.mark.lab
def test_the_human_report_shows_the_delivered_messages_id_its_trace_and_the_checklist(
    lab: Lab, tmp_path: Path
) -> None:
    before = len(lab.message_files(RECIPIENT))
    started = datetime.now(UTC)
    result = run_cli(send_args(lab), input=SCANNER.password + "\n", home=tmp_path)
    out = result.stdout
    assert "smtp.data" not in result.stderr
    shown = re.search(
        r"^  Message-ID: (<relaywizard-test\.[0-9a-f-]{36}@lab\.test>) \(sent (\S+)\)$", out, re.M
    )
    assert shown, out
    message_id = shown.group(1)
    # The message in the Maildir carries exactly the ID the report shows.
    assert message_id in delivered_ids(lab, RECIPIENT, before + 1)
    found = trace.trace_for(message_id)
    assert started - timedelta(seconds=1) <= found.sent <= datetime.now(UTC)
    assert f"    {found.powershell}" in out.splitlines()
    assert f"    {found.detail_powershell}" in out.splitlines()
    assert "Mail flow > Message trace" in out
    # The checklist: what this run proved, failed or could not see.
    checklist = out[out.index("Rollout checklist (SMTP AUTH with a password)") :]
    assert "  ✓ SMTP AUTH enabled for scanner@lab.test" in checklist
    assert "  ✓ Test message delivered" in checklist
    assert "  ✓ Domain lab.test verified in Microsoft 365" in checklist
    assert "  ! Device configured" in checklist
    assert f"How to verify: {found.powershell}" in checklist
    assert SCANNER.password not in out + result.stderr


@pytest.mark.lab
def test_the_json_report_holds_the_id_send_time_and_trace_command(lab: Lab, tmp_path: Path) -> None:
    before = len(lab.message_files(RECIPIENT))
    result = run_cli(send_args(lab, "--json"), input=SCANNER.password + "\n", home=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["id"]: c for c in json.loads(result.stdout)["checks"]}
    data = checks["smtp.data"]
    assert data["status"] == "pass", data
    message_id = data["data"]["message_id"]
    assert message_id in delivered_ids(lab, RECIPIENT, before + 1)
    assert data["data"]["sent"] == trace.iso_utc(trace.trace_for(message_id).sent)
    assert data["data"]["trace"] == trace.trace_for(message_id).powershell
    assert data["data"]["trace"].startswith(f'Get-MessageTraceV2 -MessageId "{message_id}" -StartDate "')


def test_without_send_there_is_no_trace_and_the_test_step_says_so() -> None:
    target = Target(domain="contoso.com", user="scanner@contoso.com", mail_from="scanner@contoso.com")
    rcpt = CheckResult(
        "smtp.rcpt_to", Status.PASS, "Recipient", "Accepted.", data={"address": "a@contoso.com"}
    )
    out = human.render(Report("contoso.com", "smtp-auth", [rcpt]), target)
    assert "Trace the test message" not in out
    assert "  ! Test message delivered\n      To verify: No test message was sent." in out


def test_the_profile_the_secret_came_from_counts_as_stored() -> None:
    target = Target(domain="contoso.com", user="scanner@contoso.com", secret="x")
    auth = CheckResult("smtp.auth", Status.PASS, "Sign-in", "Signed in.")
    out = human.render(Report("contoso.com", "smtp-auth", [auth]), target, profile="front-desk")
    assert "  ✓ Credentials stored (password)" in out
    assert "Saved in the keyring profile “front-desk” and signed in." in out
    assert "\033[" not in out
    coloured = human.render(Report("contoso.com", "smtp-auth", [auth]), target, colour=True)
    assert "  \033[32m✓\033[0m SMTP AUTH enabled for scanner@contoso.com" in coloured
