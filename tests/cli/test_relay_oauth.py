"""``relaywizard relay --auth oauth-app|oauth-delegated``: a real relay process forwarding to the lab with
XOAUTH2 tokens from the fake authority; the client secret and the tokens stay in the keyring and memory."""

from __future__ import annotations

import smtplib
import uuid
from pathlib import Path

import pytest

from tests.helpers import Background, assert_one_sentence_error, local_relay_args, run_cli
from tests.lab.authority import DEFAULT_SECRET, FakeAuthority
from tests.lab.graph import FakeGraph
from tests.lab.keyring import SecretServiceSession
from tests.lab.lab import Lab
from tests.lab.process import free_port

pytestmark = [pytest.mark.lab, pytest.mark.keyring]

APP = "app@lab.test"
PROFILE = "oauth-app-upstream"


@pytest.fixture(scope="module")
def keyring_env(
    secret_service: SecretServiceSession, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    env = dict(secret_service.env)
    stored = run_cli(
        ["secret", "set", "--profile", PROFILE],
        env=env,
        input=DEFAULT_SECRET,
        home=tmp_path_factory.mktemp("home"),
    )
    assert stored.returncode == 0, stored.stderr
    return env


def relay_args(lab: Lab, authority: FakeAuthority, port: int, spool: Path, *extra: str) -> list[str]:
    upstream = [
        "--upstream",
        f"{lab.host}:{lab.submission_port}",
        "--ca-file",
        str(authority.trust_with(lab.ca_file)),
    ]
    return local_relay_args("relay", port, spool, *upstream, *authority.cli_args(), *extra)


def graph_relay_args(
    authority: FakeAuthority, graph: FakeGraph, port: int, spool: Path, *extra: str
) -> list[str]:
    """The relay delivering through the fake Graph with an app-only token for APP (the keyring's PROFILE)."""
    upstream = ["--graph", graph.base_url, "--ca-file", str(authority.trust_with(graph.ca_file))]
    account = ["--auth", "oauth-app", *authority.cli_args(), "--user", APP, "--profile", PROFILE]
    return local_relay_args("relay", port, spool, *upstream, *account, *extra)


class Relay(Background):
    """A relay process with the keyring's environment and its own RELAYWIZARD_HOME."""

    def __init__(self, args: list[str], env: dict[str, str], home: Path) -> None:
        super().__init__(args, dict(env, RELAYWIZARD_HOME=str(home)), ready="listening on", within=20)

    def log(self) -> str:
        """Stop it (SIGTERM) and return all it wrote to standard error."""
        return "".join(self.startup) + self.stop()[1]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_the_relay_forwards_with_an_app_only_token_and_keeps_it_off_disk(
    lab: Lab, lab_authority: FakeAuthority, keyring_env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    port = free_port("127.0.0.1")
    spool = tmp_path / "spool"
    args = relay_args(
        lab,
        lab_authority,
        port,
        spool,
        "--auth",
        "oauth-app",
        "--user",
        APP,
        "--profile",
        PROFILE,
        "--secret-expires",
        "2020-01-01",
    )
    relay = Relay(args, keyring_env, home)
    try:
        subject = f"oauth relay {uuid.uuid4()}"
        before = len(lab.message_files("alice@lab.test"))
        message = f"From: printer@office.example\r\nTo: alice@lab.test\r\nSubject: {subject}\r\n\r\nscan\r\n"
        for _ in range(3):
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                smtp.sendmail("printer@office.example", ["alice@lab.test"], message)
        assert len(lab.wait_for_messages("alice@lab.test", before + 3)) >= before + 3
    finally:
        log = relay.log()
    assert "The client secret of app" in log
    assert "has expired" in log
    assert lab_authority.grants() == ["client_credentials"]  # one token shared by every connection
    token = lab_authority.issued[0]
    assert token not in log
    assert DEFAULT_SECRET not in log
    files = [p for folder in (home, spool) for p in folder.rglob("*") if p.is_file()]
    assert files  # the spool and the delivery log were written
    for path in files:
        data = path.read_bytes()
        assert token.encode() not in data, path
        assert DEFAULT_SECRET.encode() not in data, path


def test_a_wrong_client_secret_stops_the_relay_with_one_sentence(
    lab: Lab, authority: FakeAuthority, keyring_env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    authority.client_secret = "another-secret"
    args = relay_args(
        lab,
        authority,
        free_port("127.0.0.1"),
        tmp_path / "spool",
        "--auth",
        "oauth-app",
        "--user",
        APP,
        "--profile",
        PROFILE,
    )
    result = run_cli(args, env=keyring_env, home=home)
    assert_one_sentence_error(result, "AADSTS7000215", "client secret")


def test_a_delegated_relay_without_a_sign_in_says_to_sign_in(
    lab: Lab, authority: FakeAuthority, keyring_env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    args = relay_args(
        lab,
        authority,
        free_port("127.0.0.1"),
        tmp_path / "spool",
        "--auth",
        "oauth-delegated",
        "--user",
        "oauth@lab.test",
        "--profile",
        "nobody-signed-in",
    )
    result = run_cli(args, env=keyring_env, home=home)
    assert_one_sentence_error(result, "Nobody has signed in for oauth@lab.test", "relaywizard signin")


def test_a_delegated_relay_forwards_after_signin(
    lab: Lab, lab_authority: FakeAuthority, keyring_env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    user = "oauth@lab.test"
    signed = run_cli(
        [
            "signin",
            "--user",
            user,
            *lab_authority.cli_args(),
            "--ca-file",
            str(lab_authority.ca_file),
            "--profile",
            "relay-person",
        ],
        env=keyring_env,
        home=home,
    )
    assert signed.returncode == 0, signed.stderr
    port = free_port("127.0.0.1")
    relay = Relay(
        relay_args(
            lab,
            lab_authority,
            port,
            tmp_path / "spool",
            "--auth",
            "oauth-delegated",
            "--user",
            user,
            "--profile",
            "relay-person",
        ),
        keyring_env,
        home,
    )
    try:
        before = len(lab.message_files("alice@lab.test"))
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.sendmail("printer@office.example", ["alice@lab.test"], "Subject: delegated\r\n\r\nhi\r\n")
        assert len(lab.wait_for_messages("alice@lab.test", before + 1)) == before + 1
    finally:
        relay.log()
    assert lab_authority.grants() == ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"]


def test_a_bad_secret_expiry_date_is_one_sentence(home: Path) -> None:
    result = run_cli(["relay", "--secret-expires", "next June"], home=home)
    assert_one_sentence_error(result, "--secret-expires")


def test_the_relay_delivers_through_graph_with_an_app_token_for_graph(
    authority: FakeAuthority, keyring_env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    from tests.lab.graph import fake_graph, throttled

    with fake_graph(tmp_path / "graph") as graph:
        graph.answer(throttled("1"))  # honoured, and the message still goes: nothing is lost on a 429
        port = free_port("127.0.0.1")
        args = graph_relay_args(authority, graph, port, tmp_path / "spool")
        relay = Relay(args, keyring_env, home)
        try:
            assert f"forwarding to Microsoft Graph at {graph.base_url}" in "".join(relay.startup)
            message = (
                "From: printer@office.example\r\nTo: alice@lab.test\r\nSubject: via graph\r\n\r\nscan\r\n"
            )
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                smtp.sendmail("printer@office.example", ["alice@lab.test"], message)
            sent = graph.wait_for_sent(1, within=20)
        finally:
            log = relay.log()
    assert b"Subject: via graph" in sent[0]
    assert [r.status for r in graph.requests] == [429, 202]
    token_requests = [seen for seen in authority.requests if seen.path.endswith("/token")]
    assert token_requests
    assert all(seen.form.get("scope") == "https://graph.microsoft.com/.default" for seen in token_requests)
    assert authority.issued[0] not in log
    assert DEFAULT_SECRET not in log
