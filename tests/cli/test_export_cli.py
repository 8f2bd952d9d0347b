"""``relaywizard export postfix`` as an admin uses it: the real command, and the export run by a REAL private
Postfix that relays through the lab's submission port with the password from the real keyring."""

from __future__ import annotations

import email
import email.policy
import smtplib
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaywizard.core import settings
from tests.helpers import assert_one_sentence_error, run_cli
from tests.lab.keyring import SecretServiceSession
from tests.lab.lab import Lab
from tests.lab.mail import ACCOUNTS
from tests.lab.postfix_instance import PostfixInstance

SCANNER = ACCOUNTS[0]
PROFILE = "export-lab"


def _settings_file(
    folder: Path, *, ca_file: Path | None, method: str = "smtp-auth", smtp_host: str | None = None
) -> Path:
    """A settings file as the wizard writes it: the lab's submission port as the upstream profile."""
    profile = (
        settings.Profile(
            name=PROFILE,
            method="smtp-auth",
            domain="lab.test",
            user=SCANNER.login,
            # localhost, not 127.0.0.1: Postfix verifies the certificate's DNS name (level secure).
            smtp_host="localhost",
            smtp_port=25587,
            ca_file=str(ca_file) if ca_file else None,
        )
        if method == "smtp-auth"
        else settings.Profile(name=PROFILE, method=method, domain="contoso.com", smtp_host=smtp_host)
    )
    chosen = settings.Settings(
        profiles={PROFILE: profile},
        default_profile=PROFILE,
        relay=settings.RelaySettings(profile=PROFILE, allow=["127.0.0.0/8", "192.168.10.0/24"]),
    )
    path = folder / "settings.toml"
    settings.save(chosen, path)
    return path


# -- bad input: one sentence, exit 2 ----------------------------------------------------------------------


def test_without_a_profile_it_says_what_to_do(app_home: Path, tmp_path: Path) -> None:
    result = run_cli(["export", "postfix", "--out", str(tmp_path / "out")], home=app_home)
    assert_one_sentence_error(result, "no settings profile to export", "--upstream")
    assert not (tmp_path / "out").exists()


def test_an_out_folder_whose_parent_is_missing_is_refused(app_home: Path, tmp_path: Path) -> None:
    config = _settings_file(tmp_path, ca_file=None)
    out = tmp_path / "missing" / "out"
    result = run_cli(["export", "postfix", "--config", str(config), "--out", str(out)], home=app_home)
    assert_one_sentence_error(result, "--out", str(out.parent), "does not exist")


def test_a_missing_config_file_is_refused(app_home: Path, tmp_path: Path) -> None:
    result = run_cli(
        ["export", "postfix", "--config", str(tmp_path / "nope.toml"), "--out", str(tmp_path)], home=app_home
    )
    assert_one_sentence_error(result, "--config", "no settings file")


def test_existing_files_are_kept_unless_forced(app_home: Path, tmp_path: Path) -> None:
    config = _settings_file(tmp_path, ca_file=None)
    out = tmp_path / "out"
    first = run_cli(["export", "postfix", "--config", str(config), "--out", str(out)], home=app_home)
    assert first.returncode == 0, first.stderr
    (out / "main.cf.fragment").write_text("edited by the admin\n")

    again = run_cli(["export", "postfix", "--config", str(config), "--out", str(out)], home=app_home)
    assert_one_sentence_error(again, "already holds", "main.cf.fragment", "--force")
    assert (out / "main.cf.fragment").read_text() == "edited by the admin\n"

    forced = run_cli(
        ["export", "postfix", "--config", str(config), "--out", str(out), "--force"], home=app_home
    )
    assert forced.returncode == 0, forced.stderr
    assert "relayhost = [localhost]:25587" in (out / "main.cf.fragment").read_text()


def test_without_include_secret_the_password_is_a_placeholder(app_home: Path, tmp_path: Path) -> None:
    config = _settings_file(tmp_path, ca_file=None)
    out = tmp_path / "out"
    result = run_cli(["export", "postfix", "--config", str(config), "--out", str(out)], home=app_home)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "main.cf.fragment",
        "sasl_passwd",
        "sender_canonical",
    ]
    passwd = out / "sasl_passwd"
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o600
    assert passwd.read_text().splitlines()[-1] == f"[localhost]:25587 {SCANNER.login}:PASSWORD"
    fragment = (out / "main.cf.fragment").read_text()
    assert "mynetworks = 127.0.0.0/8, [::1]/128, 192.168.10.0/24\n" in fragment
    assert "smtp_sasl_password_maps = hash:/etc/postfix/sasl_passwd\n" in fragment


def test_direct_send_goes_to_the_mx_host_and_has_no_secret_to_include(app_home: Path, tmp_path: Path) -> None:
    config = _settings_file(tmp_path, ca_file=None, method="direct-send")
    out = tmp_path / "out"
    result = run_cli(["export", "postfix", "--config", str(config), "--out", str(out)], home=app_home)
    assert result.returncode == 0, result.stderr
    fragment = (out / "main.cf.fragment").read_text()
    assert "relayhost = [contoso-com.mail.protection.outlook.com]:25\n" in fragment
    assert "smtp_sasl_auth_enable = no\n" in fragment
    assert not (out / "sasl_passwd").exists()
    assert "## Direct Send" in (out / "README.md").read_text()

    refused = run_cli(
        ["export", "postfix", "--config", str(config), "--out", str(tmp_path / "o2"), "--include-secret"],
        home=app_home,
    )
    assert_one_sentence_error(refused, "--include-secret has nothing to include")


def test_a_connector_s_own_host_is_used_on_port_25(app_home: Path, tmp_path: Path) -> None:
    config = _settings_file(tmp_path, ca_file=None, method="connector", smtp_host="relay.contoso.com")
    out = tmp_path / "out"
    result = run_cli(["export", "postfix", "--config", str(config), "--out", str(out)], home=app_home)
    assert result.returncode == 0, result.stderr
    assert "relayhost = [relay.contoso.com]:25\n" in (out / "main.cf.fragment").read_text()
    assert "## Connector" in (out / "README.md").read_text()


@pytest.mark.keyring
def test_include_secret_without_a_stored_secret_is_refused(
    app_home: Path, tmp_path: Path, secret_service: SecretServiceSession
) -> None:
    config = _settings_file(tmp_path, ca_file=None)
    out = tmp_path / "out"
    result = run_cli(
        [
            "export",
            "postfix",
            "--config",
            str(config),
            "--out",
            str(out),
            "--include-secret",
            "--profile",
            "export-nobody",
        ],
        env=secret_service.env,
        home=app_home,
    )
    assert_one_sentence_error(result, "no secret is stored", "export-nobody")
    assert not (out / "sasl_passwd").exists()


# -- a real Postfix relays with the export ----------------------------------------------------------------


@pytest.fixture
def postfix() -> Iterator[PostfixInstance]:
    instance = PostfixInstance()
    yield instance
    instance.stop()


@pytest.mark.lab
@pytest.mark.keyring
def test_a_real_postfix_relays_through_the_lab_with_the_export(
    lab: Lab,
    secret_service: SecretServiceSession,
    postfix: PostfixInstance,
    app_home: Path,
    tmp_path: Path,
) -> None:
    stored = run_cli(
        ["secret", "set", "--profile", PROFILE], env=secret_service.env, input=SCANNER.password, home=app_home
    )
    assert stored.returncode == 0, stored.stderr
    config = _settings_file(tmp_path, ca_file=lab.ca_file)
    # The admin's /etc/postfix is the instance's config folder: the export goes straight into it.
    conf = postfix.conf_dir
    exported = run_cli(
        [
            "export",
            "postfix",
            "--config",
            str(config),
            "--out",
            str(conf),
            "--postfix-dir",
            str(conf),
            "--include-secret",
        ],
        env=secret_service.env,
        home=app_home,
    )
    assert exported.returncode == 0, exported.stderr
    assert SCANNER.password not in exported.stdout + exported.stderr
    passwd = conf / "sasl_passwd"
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o600
    assert passwd.read_text().splitlines()[-1] == f"[localhost]:25587 {SCANNER.login}:{SCANNER.password}"

    # Installed as the README tells the admin: its own command line sets each line of the fragment in
    # main.cf, replacing what the distribution's main.cf says for the same settings.
    postfix.write_config()
    readme = (conf / "README.md").read_text()
    apply = next(line for line in readme.splitlines() if line.startswith("grep ") and "postconf" in line)
    subprocess.run(["bash", "-euo", "pipefail", "-c", apply], cwd=conf, check=True)
    assert postfix.postconf("-n", "relayhost") == "relayhost = [localhost]:25587\n"
    assert postfix.postconf("-n", "smtp_tls_security_level") == "smtp_tls_security_level = secure\n"
    assert (conf / "main.cf").read_text().count("\nrelayhost =") == 1
    postfix.postmap("sasl_passwd")
    checked = postfix.check()
    assert checked.returncode == 0, checked.stderr
    assert not checked.stdout + checked.stderr  # postfix check is silent when all is sound
    postfix.start()

    before = len(lab.message_files("alice@lab.test"))
    subject = f"export {uuid.uuid4().hex}"
    message = (
        "From: Office Printer <printer@office.test>\r\n"
        "To: alice@lab.test\r\n"
        f"Subject: {subject}\r\n\r\nScanned page.\r\n"
    )
    # From 127.0.0.2, a device in mynetworks but not this machine: Postfix rewrites the headers of such a
    # client's mail only because the export names mynetworks in local_header_rewrite_clients.
    with smtplib.SMTP(
        "127.0.0.1", postfix.port, timeout=10, source_address=(lab.connector_client, 0)
    ) as device:
        device.sendmail("printer@office.test", ["alice@lab.test"], message)

    files = lab.wait_for_messages("alice@lab.test", before + 1, timeout=15)
    delivered = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in files]
    ours = [m for m in delivered if m["Subject"] == subject]
    assert ours, f"the message did not arrive through Postfix:\n{postfix.log()}\n{lab.logs()}"
    arrived = ours[0]
    # The lab's submission port refuses any sender but the login (5.7.60): arriving proves the envelope
    # was rewritten; the headers show it, and that the From was rewritten too.
    assert arrived["Return-Path"] == f"<{SCANNER.login}>"
    assert arrived["From"].addresses[0].addr_spec == SCANNER.login
    assert arrived["From"].addresses[0].display_name == "Office Printer"
    log = postfix.log()
    assert "Verified TLS connection established to localhost" in log, log
    assert "TLSv1.3" in log or "TLSv1.2" in log
