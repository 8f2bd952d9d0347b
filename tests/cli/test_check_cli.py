"""``relaywizard check``: the contract's options, exit codes and JSON, against the lab."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import assert_one_sentence_error, run_cli
from tests.lab import zones
from tests.lab.lab import Lab
from tests.lab.mail import ACCOUNTS

SCANNER = ACCOUNTS[0]
CHECK_KEYS = {"id", "status", "title", "summary", "fix", "code", "duration_ms", "data"}


def dns_args(lab: Lab) -> list[str]:
    return ["--dns-server", f"{lab.host}:{lab.dns_port}", "--timeout", "2"]


def submission_args(lab: Lab) -> list[str]:
    return ["--smtp-host", lab.host, "--smtp-port", str(lab.submission_port), "--ca-file", str(lab.ca_file)]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["check", "contoso..com"], "DOMAIN"),
        (["check", "https://contoso.com"], "DOMAIN"),
        (["check", "contoso.com", "--dns-server", "not a server"], "--dns-server"),
        (["check", "contoso.com", "--smtp-port", "70000"], "--smtp-port"),
        (["check", "contoso.com", "--smtp-port", "abc"], "--smtp-port"),
        (["check", "contoso.com", "--from", "Scanner <scan@contoso.com>"], "--from"),
        (["check", "contoso.com", "--relay-ip", "203.0.113"], "--relay-ip"),
        (["check", "contoso.com", "--timeout", "0"], "--timeout"),
        (["check", "contoso.com", "--ca-file", "/nonexistent/ca.pem"], "--ca-file"),
        (["check", "contoso.com", "--user", "a@contoso.com", "--password-stdin"], "standard input"),
        (["check", "contoso.com", "--password-stdin"], "standard input"),
    ],
)
def test_bad_input_exits_2_with_one_sentence(args: list[str], fragment: str, tmp_path: Path) -> None:
    result = run_cli(args, input="", home=tmp_path)
    assert_one_sentence_error(result, fragment)


def test_a_file_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("hello")
    assert_one_sentence_error(
        run_cli(["check", "contoso.com", "--ca-file", str(bogus)], home=tmp_path), "PEM"
    )


def test_a_missing_keyring_profile_secret_is_one_sentence(tmp_path: Path) -> None:
    import os

    env = dict(os.environ, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    result = run_cli(["check", "contoso.com", "--user", "a@contoso.com", "--profile", "scanner"], env=env)
    assert_one_sentence_error(result, "keyring")


def test_help_documents_the_contract_options() -> None:
    text = run_cli(["check", "--help"]).stdout
    for option in (
        "--method",
        "--dns-server",
        "--smtp-host",
        "--smtp-port",
        "--ca-file",
        "--user",
        "--profile",
        "--password-stdin",
        "--auth",
        "--tenant",
        "--client-id",
        "--authority",
        "--from",
        "--to",
        "--send",
        "--relay-ip",
        "--only",
        "--timeout",
        "--json",
    ):
        assert option in text, option


@pytest.mark.lab
def test_json_dns_only_for_a_correct_domain_passes(lab: Lab) -> None:
    result = run_cli(["check", zones.GOOD, "--only", "dns", "--json", *dns_args(lab)])
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"domain", "method", "duration_ms", "checks"}
    assert document["domain"] == zones.GOOD
    assert document["method"] == "smtp-auth"
    assert [c["id"] for c in document["checks"]] == [
        "dns.mx",
        "dns.spf",
        "dns.dkim",
        "dns.dmarc",
        "dns.autodiscover",
    ]
    for check in document["checks"]:
        assert set(check) == CHECK_KEYS
        assert check["status"] == "pass", check


@pytest.mark.lab
def test_a_failing_check_exits_1_and_every_fail_and_warn_has_a_fix(lab: Lab) -> None:
    result = run_cli(["check", zones.SPF_DOUBLE, "--only", "dns", "--json", *dns_args(lab)])
    assert result.returncode == 1, result.stderr
    checks = json.loads(result.stdout)["checks"]
    spf = next(c for c in checks if c["id"] == "dns.spf")
    assert spf["status"] == "fail"
    for check in checks:
        if check["status"] in ("fail", "warn"):
            assert check["fix"], check


@pytest.mark.lab
def test_full_check_against_the_lab_submission_port(lab: Lab, tmp_path: Path) -> None:
    before = len(lab.message_files("alice@lab.test"))
    result = run_cli(
        [
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
            "alice@lab.test",
            "--json",
        ],
        input=SCANNER.password + "\n",
        home=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert SCANNER.password not in result.stdout + result.stderr
    statuses = {c["id"]: c["status"] for c in json.loads(result.stdout)["checks"]}
    for stage in ("connect", "banner", "ehlo", "starttls", "tls", "auth", "mail_from", "rcpt_to"):
        assert statuses[f"smtp.{stage}"] == "pass", (stage, result.stdout)
    assert statuses["smtp.data"] == "skip"
    assert len(lab.message_files("alice@lab.test")) == before  # nothing sent without --send


@pytest.mark.lab
def test_human_report_shows_marks_the_fix_and_no_colour_when_piped(lab: Lab, tmp_path: Path) -> None:
    result = run_cli(
        [
            "check",
            "lab.test",
            "--only",
            "smtp",
            *dns_args(lab),
            *submission_args(lab),
            "--user",
            SCANNER.login,
            "--password-stdin",
            "--from",
            SCANNER.login,
            "--to",
            "alice@lab.test",
        ],
        input="wrong-password",
        home=tmp_path,
    )
    assert result.returncode == 1
    out = result.stdout
    assert "✓" in out
    assert "✗" in out
    assert "535" in out
    assert "Fix:" in out
    assert "\033[" not in out
    assert "Nothing was sent" in out
    assert "wrong-password" not in out + result.stderr


# What a check run must not import before its SMTP session is begun (aiosmtplib: the session is begun
# first, the checks are imported while the greeting is on its way), nor before its run starts: the other
# commands, the reply table (only a refusal needs it), dnspython (imported in a worker thread by the first
# DNS query) and cryptography (only for a certificate the handshake refused). Each costs 5 to 40 ms.
_IMPORTS_BEFORE_THE_RUN = """
import sys
def loaded(*names):
    return sorted(m for m in sys.modules if {m.split(".")[0], m.removeprefix("relaywizard.")} & set(names))
from relaywizard.cli import main
main.build_parser("check")
import relaywizard.diagnostics.smtp_ahead
print(loaded("aiosmtplib"))
from relaywizard.diagnostics.checks import build_checks
from relaywizard.diagnostics.dns_resolver import DnsResolver
build_checks()
DnsResolver([("192.0.2.53", 53)]).describe()
commands = ("cli.explain", "cli.relay", "cli.queue", "cli.gui_commands")
print(loaded("dns", "cryptography", "diagnostics.replies", *commands))
"""


def test_a_check_run_starts_without_what_it_needs_only_later() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _IMPORTS_BEFORE_THE_RUN], capture_output=True, text=True, check=True
    )
    assert result.stdout.splitlines() == ["[]", "[]"]
