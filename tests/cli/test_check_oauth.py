"""``relaywizard check --auth oauth-app|oauth-delegated``: MSAL against the fake authority, XOAUTH2 against
the lab's Dovecot (token introspection), the real keyring for a delegated sign-in."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import assert_one_sentence_error, run_cli
from tests.lab.authority import DEFAULT_SECRET, FakeAuthority
from tests.lab.keyring import SecretServiceSession
from tests.lab.lab import Lab

APP = "app@lab.test"
PERSON = "oauth@lab.test"


def oauth_args(lab: Lab, authority: FakeAuthority, kind: str, user: str, *extra: str) -> list[str]:
    return [
        "check",
        "lab.test",
        "--only",
        "smtp",
        "--smtp-host",
        lab.host,
        "--smtp-port",
        str(lab.submission_port),
        "--ca-file",
        str(authority.trust_with(lab.ca_file)),  # one --ca-file for the server and the authority
        "--user",
        user,
        "--auth",
        kind,
        *authority.cli_args(),
        "--from",
        user,
        "--to",
        "alice@lab.test",
        "--json",
        *extra,
    ]


def app_check(
    lab: Lab, authority: FakeAuthority, *extra: str, home: Path
) -> subprocess.CompletedProcess[str]:
    args = oauth_args(lab, authority, "oauth-app", APP, "--password-stdin", *extra)
    return run_cli(args, input=DEFAULT_SECRET + "\n", home=home)


def checks(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    return {c["id"]: c for c in json.loads(result.stdout)["checks"]}


@pytest.mark.lab
def test_an_app_only_token_signs_in_and_delivers(
    lab: Lab, lab_authority: FakeAuthority, tmp_path: Path
) -> None:
    before = len(lab.message_files("alice@lab.test"))
    result = app_check(lab, lab_authority, "--send", home=tmp_path / "home")
    assert result.returncode == 0, result.stdout + result.stderr
    found = checks(result)
    assert found["smtp.auth"]["status"] == "pass"
    assert found["smtp.auth"]["data"]["mechanism"] == "XOAUTH2"  # type: ignore[index]
    assert found["smtp.data"]["status"] == "pass"
    assert len(lab.wait_for_messages("alice@lab.test", before + 1)) == before + 1
    assert lab_authority.grants() == ["client_credentials"]
    token = lab_authority.issued[0]
    for text in (result.stdout, result.stderr):
        assert token not in text
        assert DEFAULT_SECRET not in text
    for path in (tmp_path / "home").rglob("*"):  # nothing of it on disk either
        if path.is_file():
            assert token.encode() not in path.read_bytes()
            assert DEFAULT_SECRET.encode() not in path.read_bytes()


@pytest.mark.lab
def test_another_users_token_gets_535_explained(
    lab: Lab, lab_authority: FakeAuthority, tmp_path: Path
) -> None:
    lab_authority.token_user = "scanner@lab.test"
    result = app_check(lab, lab_authority, home=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    auth = checks(result)["smtp.auth"]
    assert auth["status"] == "fail"
    assert "535" in str(auth["summary"])
    assert auth["code"] == "5.7.8"
    assert f"The token was refused for {APP}: it may be for another mailbox" in str(auth["fix"])
    assert "New-ServicePrincipal" in str(auth["fix"])
    assert checks(result)["smtp.mail_from"]["status"] == "skip"


@pytest.fixture
def expired_authority(lab: Lab, tmp_path: Path) -> Iterator[FakeAuthority]:
    """Says its tokens last an hour, but the server already holds them expired (a skewed clock)."""
    running = FakeAuthority(tmp_path / "expired", issue=lambda user, _: lab.issue_token(user, -60)).start()
    yield running
    running.stop()


@pytest.mark.lab
def test_an_expired_token_gets_535_explained(
    lab: Lab, expired_authority: FakeAuthority, tmp_path: Path
) -> None:
    result = app_check(lab, expired_authority, home=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    auth = checks(result)["smtp.auth"]
    assert auth["status"] == "fail"
    assert "535" in str(auth["summary"])
    assert "expired" in str(auth["fix"])
    assert '"status":"401"' in str(auth["data"]["challenge"]).replace(" ", "")  # type: ignore[index]


@pytest.mark.lab
def test_a_wrong_client_secret_fails_the_sign_in_with_its_cause(
    lab: Lab, lab_authority: FakeAuthority, tmp_path: Path
) -> None:
    args = oauth_args(lab, lab_authority, "oauth-app", APP, "--password-stdin")
    result = run_cli(args, input="a-secret-id-not-the-value\n", home=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    auth = checks(result)["smtp.auth"]
    assert auth["status"] == "fail"
    assert "AADSTS7000215" in str(auth["summary"])
    assert "Value (not its Secret ID)" in str(auth["summary"])
    assert "a-secret-id-not-the-value" not in result.stdout + result.stderr


@pytest.mark.lab
@pytest.mark.keyring
def test_a_delegated_check_signs_in_once_then_uses_the_keyring(
    lab: Lab, lab_authority: FakeAuthority, secret_service: SecretServiceSession, tmp_path: Path
) -> None:
    env = dict(secret_service.env)
    home = tmp_path / "home"
    args = oauth_args(lab, lab_authority, "oauth-delegated", PERSON, "--profile", "check-person", "--send")
    first = run_cli(args, env=env, home=home)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "enter the code" in first.stderr
    json.loads(first.stdout)  # the device code went to stderr: stdout is still one JSON document
    assert checks(first)["smtp.data"]["status"] == "pass"

    second = run_cli(args, env=env, home=home)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "enter the code" not in second.stderr
    assert lab_authority.grants() == ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"]
    for token in lab_authority.issued:
        assert token not in first.stdout + first.stderr + second.stdout + second.stderr


@pytest.mark.lab
@pytest.mark.keyring
def test_signin_saves_the_sign_in_and_a_refused_refresh_is_explained(
    lab: Lab, lab_authority: FakeAuthority, secret_service: SecretServiceSession, tmp_path: Path
) -> None:
    env = dict(secret_service.env)
    authority = lab_authority
    signed = run_cli(
        [
            "signin",
            "--user",
            PERSON,
            *authority.cli_args(),
            "--ca-file",
            str(authority.ca_file),
            "--profile",
            "signin-test",
        ],
        env=env,
        home=tmp_path,
    )
    assert signed.returncode == 0, signed.stderr
    assert "enter the code" in signed.stderr
    assert f"Signed in as {PERSON}" in signed.stdout

    authority.refuse(70043, grant="refresh_token")
    result = run_cli(
        oauth_args(lab, authority, "oauth-delegated", PERSON, "--profile", "signin-test"),
        env=env,
        home=tmp_path,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "enter the code" not in result.stderr  # a saved sign-in exists: check does not ask again
    auth = checks(result)["smtp.auth"]
    assert auth["status"] == "fail"
    assert "Conditional Access sign-in frequency policy (AADSTS70043)" in str(auth["summary"])
    assert "relaywizard signin" in str(auth["summary"])
    assert authority.grants()[-1] == "refresh_token"


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--auth", "oauth-app", "--user", APP, "--client-id", "c", "--password-stdin"], "--tenant"),
        (["--auth", "oauth-app", "--user", APP, "--tenant", "t", "--password-stdin"], "--client-id"),
        (["--auth", "oauth-delegated", "--tenant", "t", "--client-id", "c"], "--user"),
        (["--auth", "oauth-app", "--user", APP, "--tenant", "t", "--client-id", "c"], "client secret"),
        (
            [
                "--auth",
                "oauth-app",
                "--user",
                APP,
                "--tenant",
                "common",
                "--client-id",
                "c",
                "--password-stdin",
            ],
            "real tenant",
        ),
        (
            [
                "--auth",
                "oauth-delegated",
                "--user",
                APP,
                "--tenant",
                "t",
                "--client-id",
                "c",
                "--authority",
                "http://login.example/t",
            ],
            "--authority",
        ),
        (
            [
                "--auth",
                "oauth-delegated",
                "--user",
                APP,
                "--tenant",
                "t",
                "--client-id",
                "c",
                "--password-stdin",
            ],
            "--password-stdin",
        ),
    ],
)
def test_bad_oauth_options_are_one_sentence(extra: list[str], fragment: str, tmp_path: Path) -> None:
    result = run_cli(["check", "contoso.com", *extra], input="s3cret\n", home=tmp_path)
    assert_one_sentence_error(result, fragment)


def test_help_documents_the_oauth_options() -> None:
    text = " ".join(run_cli(["check", "--help"]).stdout.split())
    for option in ("--auth", "oauth-app", "oauth-delegated", "--tenant", "--client-id", "--authority"):
        assert option in text
    assert "--ca-file is trusted for it too" in text
    signin = run_cli(["signin", "--help"]).stdout
    assert "device code" in signin
