"""The relay as a service: engine, status and control channel as one; and the target of its diagnostics."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaywizard.relay.config import RelayConfig
from relaywizard.relay.control_client import ControlClient
from relaywizard.relay.credentials import PasswordCredentials, TokenCredentials
from relaywizard.relay.service import RelayService, diagnostics_target, password_for
from tests.lab.lab import Lab
from tests.relay.control_lab import LOGIN, PASSWORD, lab_config, private_runtime


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with private_runtime(monkeypatch) as folder:
        yield folder


async def token() -> str:
    return "a-token"


@pytest.mark.lab
async def test_the_service_answers_on_its_control_channel_and_publishes_warnings(
    lab: Lab, tmp_path: Path, runtime: Path
) -> None:
    service = RelayService(lab_config(lab, tmp_path), PasswordCredentials(LOGIN, PASSWORD))
    await service.start()
    try:
        assert service.control is not None
        assert service.control_error is None
        async with await ControlClient.connect(service.config.spool, wait=5) as client:
            status = await client.request("status")
            assert status["state"] == "running"
            watching = client.watch()
            first = await anext(watching)
            assert first["event"] == "status"
            service.warn("The client secret of the relay's app expires in 12 days (2026-12-05).")
            event = await anext(watching)
            assert event["event"] == "expiry"
            assert "expires in 12 days" in event["text"]
            async with await ControlClient.connect(service.config.spool, wait=5) as later:
                status = await later.request("status")
            assert status["warnings"] == [event["text"]]  # kept for a tray that attaches later
    finally:
        await service.stop()
    assert service.control is None


def test_the_diagnostics_test_the_upstream_as_the_mailbox_with_its_password(tmp_path: Path) -> None:
    lab_like = lab_config_offline(tmp_path)
    target = diagnostics_target(
        lab_like, PasswordCredentials(LOGIN, PASSWORD), dns_servers=(("127.0.0.1", 53),)
    )
    assert target is not None
    assert (target.domain, target.method, target.user, target.auth) == (
        "lab.test",
        "smtp-auth",
        LOGIN,
        "password",
    )
    assert (target.smtp_host, target.smtp_port) == ("127.0.0.1", 25587)
    assert target.secret is None  # read later, off the GUI thread (password_for)
    assert target.ca_file == Path("/tmp/ca.pem")
    assert target.dns_servers == (("127.0.0.1", 53),)


def test_the_diagnostics_of_an_oauth_relay_get_their_token_from_its_credentials(tmp_path: Path) -> None:
    oauth = dataclasses.replace(lab_config_offline(tmp_path), auth="oauth-app")
    target = diagnostics_target(oauth, TokenCredentials(LOGIN, token))
    assert target is not None
    assert target.auth == "oauth-app"
    assert target.token_provider is not None


def test_a_connector_relay_is_checked_without_signing_in(tmp_path: Path) -> None:
    plain = lab_config_offline(tmp_path)
    connector = dataclasses.replace(
        plain,
        upstream=dataclasses.replace(plain.upstream, user=None),
        sender="scanner@contoso.com",
        auth="none",
    )
    target = diagnostics_target(connector, None)
    assert target is not None
    assert (target.domain, target.method, target.user) == ("contoso.com", "connector", None)


def test_without_a_mailbox_or_sender_there_is_no_domain_to_check(tmp_path: Path) -> None:
    plain = lab_config_offline(tmp_path)
    bare = dataclasses.replace(plain, upstream=dataclasses.replace(plain.upstream, user=None), sender=None)
    assert diagnostics_target(bare, None) is None


async def test_password_for_reads_a_password_but_never_a_token() -> None:
    assert await password_for(PasswordCredentials(LOGIN, PASSWORD)) == PASSWORD
    assert await password_for(TokenCredentials(LOGIN, token)) is None
    assert await password_for(None) is None


def lab_config_offline(tmp_path: Path) -> RelayConfig:
    """lab_config without a running lab: the same settings, pointing at the lab's usual ports."""

    class Offline:
        host = "127.0.0.1"
        submission_port = 25587
        ca_file = Path("/tmp/ca.pem")

    return lab_config(Offline(), tmp_path)  # type: ignore[arg-type]
