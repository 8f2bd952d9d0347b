"""The staged SMTP checks against the lab's real Postfix and Dovecot: what a technician would see."""

from __future__ import annotations

import asyncio
import email
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from relaywizard.diagnostics.model import Report, Status, Target
from relaywizard.diagnostics.runner import DiagnosticsRun
from relaywizard.diagnostics.smtp_checks import SMTP_CHECKS
from tests.diagnostics.fake_smtp import silent_listener
from tests.lab.lab import Lab
from tests.lab.mail import ACCOUNTS

pytestmark = pytest.mark.lab

SCANNER = ACCOUNTS[0]
OAUTH = ACCOUNTS[2]
IDS = [cls.id for cls in SMTP_CHECKS]
#: A mailbox no other test writes to, so counting its messages means something.
QUIET_RECIPIENT = "partner@external.test"


def submission(lab: Lab, **overrides: Any) -> Target:
    values: dict[str, Any] = {
        "domain": "lab.test",
        "method": "smtp-auth",
        "smtp_host": lab.host,
        "smtp_port": lab.submission_port,
        "ca_file": lab.ca_file,
        "user": SCANNER.login,
        "secret": SCANNER.password,
        "mail_from": SCANNER.login,
        "rcpt_to": "alice@lab.test",
        "timeout": 5.0,
    }
    values.update(overrides)
    return Target(**values)


async def run(target: Target) -> Report:
    return await DiagnosticsRun(target, [cls() for cls in SMTP_CHECKS], resolver=object()).run()  # type: ignore[arg-type]


def statuses(report: Report) -> dict[str, str]:
    return {r.id: str(r.status) for r in report.results}


def result(report: Report, check_id: str) -> Any:
    found = report.result(check_id)
    assert found is not None, check_id
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_message_id(files: list[Path], message_id: str) -> list[Path]:
    return [p for p in files if email.message_from_bytes(p.read_bytes())["Message-ID"] == message_id]


async def test_full_pass_with_plain_auth(lab: Lab) -> None:
    report = await run(submission(lab))
    assert statuses(report) == {**dict.fromkeys(IDS, "pass"), "smtp.data": "skip"}, lab.logs()
    assert result(report, "smtp.auth").data["mechanism"] == "PLAIN"
    assert result(report, "smtp.banner").summary.startswith("220 smtp.lab.test")
    tls = result(report, "smtp.tls").data
    assert tls["version"] in ("TLSv1.2", "TLSv1.3")
    assert "127.0.0.1" in tls["names"]
    assert "relaywizard lab CA" in tls["issuer"]
    assert SCANNER.password not in json.dumps(report.to_json())


async def test_full_pass_with_xoauth2(lab: Lab) -> None:
    token = lab.issue_token(OAUTH.login)

    async def provider() -> str:
        return token

    target = submission(
        lab,
        user=OAUTH.login,
        secret=None,
        auth="oauth-delegated",
        token_provider=provider,
        mail_from=OAUTH.login,
    )
    report = await run(target)
    assert statuses(report) == {**dict.fromkeys(IDS, "pass"), "smtp.data": "skip"}, lab.logs()
    assert result(report, "smtp.auth").data["mechanism"] == "XOAUTH2"
    assert token not in json.dumps(report.to_json())


async def test_a_wrong_password_fails_auth_with_535_explained(lab: Lab) -> None:
    report = await run(submission(lab, secret="wrong-password"))
    auth = result(report, "smtp.auth")
    assert auth.status is Status.FAIL
    assert auth.data["reply_code"] == 535
    assert auth.code is not None
    assert auth.code.startswith("5.7.")
    assert "535" in auth.summary
    assert "password" in auth.fix.lower()
    assert result(report, "smtp.mail_from").blocked_by == "smtp.auth"
    assert "wrong-password" not in json.dumps(report.to_json())


async def test_a_bad_token_fails_auth_after_the_challenge(lab: Lab) -> None:
    async def provider() -> str:
        return "not-a-valid-token"

    report = await run(
        submission(lab, user=OAUTH.login, secret=None, auth="oauth-app", token_provider=provider)
    )
    auth = result(report, "smtp.auth")
    assert auth.status is Status.FAIL
    assert auth.data["reply_code"] == 535
    assert "401" in auth.data["challenge"]


async def test_the_plain_port_fails_starttls_for_smtp_auth(lab: Lab) -> None:
    report = await run(submission(lab, smtp_port=lab.plain_port))
    assert result(report, "smtp.starttls").status is Status.FAIL
    assert "does not offer STARTTLS" in result(report, "smtp.starttls").summary
    assert result(report, "smtp.auth").status is Status.SKIP
    assert result(report, "smtp.auth").blocked_by is not None


async def test_the_plain_port_warns_starttls_for_direct_send(lab: Lab) -> None:
    target = submission(
        lab,
        method="direct-send",
        smtp_port=lab.plain_port,
        user=None,
        secret=None,
        mail_from="device@contoso.test",
        rcpt_to="bob@lab.test",
    )
    report = await run(target)
    assert result(report, "smtp.starttls").status is Status.WARN
    assert result(report, "smtp.tls").status is Status.SKIP
    assert result(report, "smtp.rcpt_to").status is Status.PASS
    assert not report.failed


async def test_an_untrusted_certificate_fails_tls_and_skips_auth(lab: Lab) -> None:
    report = await run(submission(lab, ca_file=None))
    tls = result(report, "smtp.tls")
    assert tls.status is Status.FAIL
    assert "not trusted" in tls.summary
    assert "relaywizard lab CA" in tls.data["issuer"]  # seen by the probe without verification
    assert tls.fix
    auth = result(report, "smtp.auth")
    assert auth.status is Status.SKIP
    assert auth.blocked_by == "smtp.tls"


async def test_a_closed_port_fails_connect_as_refused(lab: Lab) -> None:
    report = await run(submission(lab, smtp_port=free_port(), timeout=1.0))
    connect = result(report, "smtp.connect")
    assert connect.status is Status.FAIL
    assert "refused" in connect.summary
    assert all(r.status is Status.SKIP for r in report.results if r.id != "smtp.connect")


async def test_a_greeting_that_never_comes_fails_banner_within_the_bound(lab: Lab) -> None:
    server, port = await silent_listener()
    try:
        started = time.monotonic()
        report = await run(submission(lab, smtp_port=port, timeout=1.0))
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert result(report, "smtp.connect").status is Status.PASS
    banner = result(report, "smtp.banner")
    assert banner.status is Status.FAIL
    assert "No greeting within 1 s" in banner.summary
    assert elapsed < 1.0 + 1 + 0.5  # the banner's limit: one step plus a second


async def test_a_send_as_denied_sender_fails_mail_from_with_5_7_60(lab: Lab) -> None:
    report = await run(submission(lab, mail_from="sendas-denied@lab.test"))
    mail_from = result(report, "smtp.mail_from")
    assert mail_from.status is Status.FAIL
    assert mail_from.code == "5.7.60"
    assert "Add-RecipientPermission -Identity 'sendas-denied@lab.test'" in mail_from.fix
    assert result(report, "smtp.rcpt_to").blocked_by == "smtp.mail_from"


async def test_a_blocked_recipient_fails_rcpt_to_with_5_4_1(lab: Lab) -> None:
    report = await run(submission(lab, rcpt_to="blocked@lab.test"))
    rcpt = result(report, "smtp.rcpt_to")
    assert rcpt.status is Status.FAIL
    assert rcpt.code == "5.4.1"
    assert "550 5.4.1" in rcpt.summary


def connector(lab: Lab, **overrides: Any) -> Target:
    return submission(
        lab,
        method="connector",
        smtp_port=lab.connector_port,
        user=None,
        secret=None,
        mail_from="scanner@contoso.test",
        rcpt_to="info@external.test",
        relay_ip="203.0.113.10",
        **overrides,
    )


async def test_the_connector_refuses_127_0_0_1_with_5_7_64(lab: Lab) -> None:
    report = await run(connector(lab))
    rcpt = result(report, "smtp.rcpt_to")
    assert rcpt.status is Status.FAIL
    assert rcpt.code == "5.7.64"
    assert "New-InboundConnector" in rcpt.fix
    assert "-SenderIPAddresses 203.0.113.10" in rcpt.fix


async def test_the_connector_accepts_source_127_0_0_2(lab: Lab) -> None:
    report = await run(connector(lab, source_address=lab.connector_client))
    assert result(report, "smtp.connect").data["local_address"] == lab.connector_client
    assert result(report, "smtp.auth").status is Status.SKIP
    assert statuses(report) == {
        **dict.fromkeys(IDS, "pass"),
        "smtp.auth": "skip",
        "smtp.data": "skip",
    }, lab.logs()


async def test_send_delivers_exactly_one_message_and_no_send_delivers_none(lab: Lab) -> None:
    before = set(lab.message_files(QUIET_RECIPIENT))
    dry = await run(submission(lab, rcpt_to=QUIET_RECIPIENT))
    assert result(dry, "smtp.rcpt_to").status is Status.PASS
    assert result(dry, "smtp.data").status is Status.SKIP
    assert "message_id" not in result(dry, "smtp.data").data

    sent = await run(submission(lab, rcpt_to=QUIET_RECIPIENT, send=True))
    data = result(sent, "smtp.data")
    assert data.status is Status.PASS, (data, lab.logs())
    message_id = data.data["message_id"]
    files = await asyncio.to_thread(lab.wait_for_messages, QUIET_RECIPIENT, len(before) + 1)
    await asyncio.sleep(0.5)  # anything else on its way would land now
    new = set(lab.message_files(QUIET_RECIPIENT)) - before
    assert len(with_message_id(files, message_id)) == 1, lab.logs()
    assert len(new) == 1  # the dry run delivered nothing
    assert with_message_id(sorted(new), message_id)
