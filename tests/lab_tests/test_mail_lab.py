"""The mail half of the lab behaves like Microsoft 365 where later tests rely on it.

swaks plays the office device (as technicians use it); smtplib speaks XOAUTH2, which swaks cannot.
"""

from __future__ import annotations

import base64
import email
import smtplib
import ssl
import subprocess
import time
import uuid

import pytest

from tests.lab.lab import Lab
from tests.lab.mail import ACCOUNTS, RECIPIENT_REPLIES, SENDER_REPLIES

pytestmark = pytest.mark.lab

SCANNER = ACCOUNTS[0]


def swaks(lab: Lab, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["swaks", "--server", f"{lab.host}:{port}", "--timeout", "10", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def submission(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return swaks(lab, lab.submission_port, "--tls", "--tls-verify", "--tls-ca-path", str(lab.ca_file), *args)


def login() -> list[str]:
    return ["--auth", "PLAIN", "--auth-user", SCANNER.login, "--auth-password", SCANNER.password]


def unique_subject() -> str:
    return f"lab test {uuid.uuid4()}"


def delivered_with_subject(
    lab: Lab, address: str, subject: str, timeout: float = 15
) -> list[email.message.Message]:
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for path in lab.message_files(address):
            message = email.message_from_bytes(path.read_bytes())
            if message["Subject"] == subject:
                found.append(message)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_authenticated_starttls_submission_is_delivered_to_the_maildir(lab: Lab) -> None:
    subject = unique_subject()
    result = submission(
        lab, *login(), "--from", SCANNER.login, "--to", "alice@lab.test", "--header", f"Subject: {subject}"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "235 2.7.0" in result.stdout
    messages = delivered_with_subject(lab, "alice@lab.test", subject)
    assert len(messages) == 1, lab.logs()
    assert "TLS" in messages[0]["Received"] or "ESMTPSA" in str(messages[0].get_all("Received"))


def test_a_send_as_alias_is_accepted(lab: Lab) -> None:
    result = submission(
        lab, *login(), "--from", "scans@lab.test", "--to", "bob@lab.test", "--quit-after", "RCPT"
    )
    assert result.returncode == 0, result.stdout


def test_wrong_password_gets_535(lab: Lab) -> None:
    result = submission(
        lab,
        "--auth",
        "PLAIN",
        "--auth-user",
        SCANNER.login,
        "--auth-password",
        "wrong",
        "--from",
        SCANNER.login,
        "--to",
        "alice@lab.test",
    )
    assert result.returncode == 28  # swaks: AUTH failed
    assert "535 5.7.8" in result.stdout


def test_unauthenticated_mail_from_gets_530_5_7_57(lab: Lab) -> None:
    result = submission(lab, "--from", SCANNER.login, "--to", "alice@lab.test")
    assert result.returncode == 23  # swaks: MAIL FROM refused
    assert "530 5.7.57" in result.stdout
    assert "Client was not authenticated to send anonymous mail during MAIL FROM" in result.stdout


def test_auth_is_not_offered_before_starttls(lab: Lab) -> None:
    result = swaks(lab, lab.submission_port, *login(), "--from", SCANNER.login, "--to", "alice@lab.test")
    assert result.returncode == 28
    assert "Host did not advertise authentication" in result.stdout + result.stderr


def test_the_sender_is_bound_to_the_login_like_send_as(lab: Lab) -> None:
    result = submission(lab, *login(), "--from", "app@lab.test", "--to", "alice@lab.test")
    assert result.returncode == 23
    assert "550 5.7.60" in result.stdout


@pytest.mark.parametrize(("sender", "reply"), sorted(SENDER_REPLIES.items()))
def test_literal_microsoft_365_replies_for_chosen_senders(lab: Lab, sender: str, reply: str) -> None:
    result = submission(lab, *login(), "--from", sender, "--to", "alice@lab.test")
    assert result.returncode == 23
    code, enhanced, *_ = reply.split()
    assert f"{code} {enhanced}" in result.stdout


@pytest.mark.parametrize(("recipient", "reply"), sorted(RECIPIENT_REPLIES.items()))
def test_literal_microsoft_365_replies_for_chosen_recipients(lab: Lab, recipient: str, reply: str) -> None:
    result = submission(lab, *login(), "--from", SCANNER.login, "--to", recipient)
    assert result.returncode == 24  # swaks: RCPT TO refused
    code, enhanced, *_ = reply.split()
    assert f"{code} {enhanced}" in result.stdout


def test_nothing_leaves_the_lab(lab: Lab) -> None:
    result = submission(lab, *login(), "--from", SCANNER.login, "--to", "someone@example.com")
    assert result.returncode == 24
    assert "550" in result.stdout or "554" in result.stdout


def test_connector_port_refuses_127_0_0_1(lab: Lab) -> None:
    result = swaks(lab, lab.connector_port, "--from", "scanner@contoso.test", "--to", "info@external.test")
    assert result.returncode == 24
    assert "550 5.7.64" in result.stdout


def test_connector_port_accepts_127_0_0_2(lab: Lab) -> None:
    subject = unique_subject()
    result = swaks(
        lab,
        lab.connector_port,
        "--local-interface",
        lab.connector_client,
        "--from",
        "scanner@contoso.test",
        "--to",
        "info@external.test",
        "--header",
        f"Subject: {subject}",
    )
    assert result.returncode == 0, result.stdout
    assert len(delivered_with_subject(lab, "info@external.test", subject)) == 1


def test_mx_port_accepts_its_own_domain_only(lab: Lab) -> None:
    ok = swaks(
        lab,
        lab.mx_port,
        "--tls",
        "--tls-ca-path",
        str(lab.ca_file),
        "--from",
        "device@contoso.test",
        "--to",
        "bob@lab.test",
        "--quit-after",
        "RCPT",
    )
    assert ok.returncode == 0, ok.stdout
    refused = swaks(lab, lab.mx_port, "--from", "device@contoso.test", "--to", "info@external.test")
    assert refused.returncode == 24
    assert "550 5.7.54" in refused.stdout


def test_plain_port_offers_no_starttls(lab: Lab) -> None:
    result = swaks(lab, lab.plain_port, "--tls", "--from", "device@contoso.test", "--to", "bob@lab.test")
    assert result.returncode == 29  # swaks: TLS not available
    ok = swaks(
        lab, lab.plain_port, "--from", "device@contoso.test", "--to", "bob@lab.test", "--quit-after", "RCPT"
    )
    assert ok.returncode == 0, ok.stdout


def xoauth2(lab: Lab, user: str, token: str) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(lab.ca_file))
    with smtplib.SMTP(lab.host, lab.submission_port, local_hostname="device.lab.test", timeout=10) as smtp:
        smtp.starttls(context=context)
        smtp.ehlo("device.lab.test")
        assert "XOAUTH2" in smtp.esmtp_features["auth"].split()
        blob = base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode()).decode()
        code, reply = smtp.docmd("AUTH", f"XOAUTH2 {blob}")
        if code == 334:  # the error challenge; the client answers with an empty line
            code, reply = smtp.docmd("")
        return code, reply


def test_xoauth2_with_a_valid_token_is_accepted(lab: Lab) -> None:
    token = lab.issue_token("oauth@lab.test")
    assert xoauth2(lab, "oauth@lab.test", token)[0] == 235


def test_xoauth2_with_a_bad_token_is_refused(lab: Lab) -> None:
    code, reply = xoauth2(lab, "oauth@lab.test", "not-a-token")
    assert code == 535, reply


def test_xoauth2_with_a_revoked_or_expired_token_is_refused(lab: Lab) -> None:
    token = lab.issue_token("oauth@lab.test")
    lab.revoke_token(token)
    assert xoauth2(lab, "oauth@lab.test", token)[0] == 535
    expired = lab.issue_token("oauth@lab.test", lifetime=-1)
    assert xoauth2(lab, "oauth@lab.test", expired)[0] == 535


def test_xoauth2_token_of_another_user_is_refused(lab: Lab) -> None:
    token = lab.issue_token("oauth@lab.test")
    assert xoauth2(lab, SCANNER.login, token)[0] == 535


def test_a_running_lab_is_reused_quickly(lab: Lab) -> None:
    started = time.monotonic()
    again = Lab.acquire(lab.root)
    assert time.monotonic() - started < 2
    assert not again.owned
    again.release()  # a reused lab is left running
    assert lab.healthy()
