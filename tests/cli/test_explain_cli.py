"""``relaywizard explain``: human and JSON output, exit codes, and a real run of the installed command."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Sequence

import pytest

from relaywizard.cli import explain as explain_cli
from relaywizard.cli import main as cli_main
from tests.helpers import assert_one_sentence_error, run_cli

Main = Callable[[Sequence[str]], int]


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def explain_is_wired() -> bool:
    return "explain" in _subcommands(cli_main.build_parser()).choices


@pytest.fixture
def main(monkeypatch: pytest.MonkeyPatch) -> Main:
    """``relaywizard.cli.main.main``, with ``explain`` registered here if main.py does not register it yet."""
    if not explain_is_wired():
        build = cli_main.build_parser

        def build_with_explain() -> argparse.ArgumentParser:
            parser = build()
            explain_cli.register(_subcommands(parser))
            return parser

        monkeypatch.setattr(cli_main, "build_parser", build_with_explain)
    return cli_main.main


def test_human_output(main: Main, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "explain",
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "535 5.7.139  SMTP AUTH is off for the organisation"
    assert lines[1].startswith("Meaning: Authenticated SMTP is switched off")
    assert lines[2].startswith("Fix: ")
    assert "Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false" in lines[2]


def test_unquoted_words_are_joined(main: Main, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "535", "5.7.139", "...", "disabled", "for", "the", "Mailbox"]) == 0
    assert "SMTP AUTH is off for this mailbox" in capsys.readouterr().out


def test_a_bare_code(main: Main, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "5.7.57"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("5.7.57  Not signed in")
    assert "Meaning: " in out
    assert "Fix: " in out


def test_json_output(main: Main, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--json", "535 5.7.139 Authentication unsuccessful"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert list(document)[:4] == ["code", "meaning", "fix", "known"]
    assert document["code"] == "5.7.139"
    assert document["known"] is True
    assert "Set-CASMailbox" in document["fix"]
    assert document["basic"] == 535


def test_json_for_a_basic_code_and_for_an_unknown_detail(
    main: Main, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explain", "550", "Mailbox", "unavailable", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["code"], document["basic"], document["known"]) == (None, 550, True)
    assert main(["explain", "--json", "5.7.999"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["code"], document["known"]) == ("5.7.999", False)
    assert "security or policy" in document["meaning"]
    assert document["fix"]


def test_an_unknown_code_says_it_is_the_general_meaning(
    main: Main, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explain", "4.1.77"]) == 0
    out = capsys.readouterr().out
    assert "general meaning" in out
    assert "Temporary failure" in out


@pytest.mark.parametrize("argument", ["hello", "999 9.9.9", "5.7"])
def test_not_a_reply_is_a_usage_error(main: Main, capsys: pytest.CaptureFixture[str], argument: str) -> None:
    assert main(["explain", argument]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert f"'{argument}' is not an SMTP reply or status code" in lines[0]


def test_no_argument_is_a_usage_error(main: Main, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["explain"])
    assert exited.value.code == 2
    assert "REPLY" in capsys.readouterr().err


def test_help_documents_the_command(main: Main, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["explain", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "REPLY" in out
    assert "--json" in out


# The installed entry point, or while main.py does not register ``explain`` yet, the same main() with
# ``explain`` registered by this script.
_LOCALLY_WIRED = """
import argparse, sys
from relaywizard.cli import explain, main
build = main.build_parser
def build_with_explain():
    parser = build()
    explain.register(next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)))
    return parser
main.build_parser = build_with_explain
sys.exit(main.main(sys.argv[1:]))
"""


def run_explain(*args: str) -> subprocess.CompletedProcess[str]:
    if explain_is_wired():
        return run_cli(["explain", *args])
    return subprocess.run(
        [sys.executable, "-c", _LOCALLY_WIRED, "explain", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_real_run() -> None:
    result = run_explain("--json", "530", "5.7.57", "Client", "was", "not", "authenticated")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["code"], document["known"]) == ("5.7.57", True)
    assert result.stderr == ""

    refused = run_explain("hello")
    assert_one_sentence_error(refused, "'hello' is not an SMTP reply or status code")
