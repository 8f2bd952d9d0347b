"""The Postfix export's files: what each variant writes, what Postfix would refuse, and how they land on disk.

A real Postfix runs the export in tests/cli/test_export_cli.py; here every variant's main.cf names only
parameters this machine's Postfix knows (``postconf -d``), so a typo cannot hide in a variant the
integration test does not start.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import stat
import subprocess
from pathlib import Path

import pytest

from relaywizard.core import settings
from relaywizard.core.errors import ConfigError, UsageError
from relaywizard.core.paths import AppPaths
from relaywizard.relay import postfix_export as px
from relaywizard.relay.config import RelayOptions, resolve

PASSWORD_TARGET = px.PostfixTarget(
    method="smtp-auth",
    host="smtp.office365.com",
    port=587,
    tls="starttls",
    user="scanner@contoso.com",
    auth="password",
    sender="scanner@contoso.com",
    allow=(ipaddress.ip_network("192.168.1.0/24"), ipaddress.ip_network("2001:db8::/64")),
    max_message_size=36_700_160,
    rate=30,
    connections=3,
)
OAUTH_TARGET = dataclasses.replace(PASSWORD_TARGET, auth="oauth-app")
DIRECT_SEND_TARGET = dataclasses.replace(
    PASSWORD_TARGET,
    method="direct-send",
    host="contoso-com.mail.protection.outlook.com",
    port=25,
    user=None,
    auth="none",
    sender=None,
    rate=0,
)


def _files(target: px.PostfixTarget, **kwargs: str) -> dict[str, px.ExportFile]:
    return {f.name: f for f in px.generate(target, **kwargs)}


def _settings(text: str) -> dict[str, str]:
    """main.cf's parameters as Postfix reads them: ``name = value``, comments and blank lines skipped."""
    pairs = (line.split("=", 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return {name.strip(): value.strip() for name, value in pairs}


def test_password_sign_in_relays_with_verified_tls_and_rewrites_senders() -> None:
    files = _files(PASSWORD_TARGET)
    assert list(files) == ["main.cf.fragment", "sasl_passwd", "sender_canonical", "README.md"]
    main = _settings(files["main.cf.fragment"].text)
    assert main["relayhost"] == "[smtp.office365.com]:587"
    assert main["smtp_tls_security_level"] == "secure"
    assert main["smtp_tls_secure_cert_match"] == "nexthop"
    assert main["smtp_tls_mandatory_protocols"] == ">=TLSv1.2"
    assert main["smtp_tls_CAfile"] == px.SYSTEM_CA_FILE
    assert main["smtp_sasl_auth_enable"] == "yes"
    assert main["smtp_sasl_password_maps"] == "hash:/etc/postfix/sasl_passwd"
    assert main["smtp_sasl_security_options"] == "noanonymous"
    assert main["smtp_sasl_tls_security_options"] == "noanonymous"
    assert main["smtp_sasl_mechanism_filter"] == "plain, login"
    assert main["sender_canonical_maps"] == "regexp:/etc/postfix/sender_canonical"
    assert main["sender_canonical_classes"] == "envelope_sender, header_sender"
    assert "permit_mynetworks" in main["local_header_rewrite_clients"]
    assert main["mynetworks"] == "127.0.0.0/8, [::1]/128, 192.168.1.0/24, [2001:db8::]/64"
    assert main["message_size_limit"] == "36700160"
    assert main["smtp_destination_rate_delay"] == "2s"
    assert main["smtp_destination_concurrency_limit"] == "3"
    assert "smtp_tls_wrappermode" not in main
    assert files["sender_canonical"].text.splitlines()[-1] == "/./ scanner@contoso.com"


def test_sasl_passwd_is_0600_and_holds_the_password_only_when_given() -> None:
    template = _files(PASSWORD_TARGET)["sasl_passwd"]
    assert template.mode == 0o600
    assert template.text.splitlines()[-1] == "[smtp.office365.com]:587 scanner@contoso.com:PASSWORD"
    filled = _files(PASSWORD_TARGET, password="s3cret pass")["sasl_passwd"]
    assert filled.mode == 0o600
    assert filled.text.splitlines()[-1] == "[smtp.office365.com]:587 scanner@contoso.com:s3cret pass"
    assert "s3cret" not in "".join(f.text for f in px.generate(PASSWORD_TARGET, password="s3cret pass")[:1])
    others = [f for f in px.generate(PASSWORD_TARGET, password="s3cret pass") if f.name != "sasl_passwd"]
    assert all("s3cret" not in f.text and f.mode == 0o644 for f in others)
    assert "s3cret" not in repr(px.generate(PASSWORD_TARGET, password="s3cret pass"))


@pytest.mark.parametrize("password", [" leading", "trailing ", "two\nlines", ""])
def test_a_password_sasl_passwd_cannot_hold_is_refused(password: str) -> None:
    with pytest.raises(ConfigError, match="sasl_passwd cannot hold"):
        px.generate(PASSWORD_TARGET, password=password)


@pytest.mark.parametrize("target", [OAUTH_TARGET, DIRECT_SEND_TARGET])
def test_a_secret_is_refused_where_no_password_signs_in(target: px.PostfixTarget) -> None:
    with pytest.raises(UsageError, match="nothing to include"):
        px.generate(target, password="client-secret")


def test_oauth_needs_an_xoauth2_plugin_and_says_so() -> None:
    files = _files(OAUTH_TARGET)
    main = _settings(files["main.cf.fragment"].text)
    assert main["smtp_sasl_mechanism_filter"] == "xoauth2"
    assert files["sasl_passwd"].text.splitlines()[-1] == (
        "[smtp.office365.com]:587 scanner@contoso.com:/etc/tokens/scanner@contoso.com"
    )
    readme = files["README.md"].text
    assert "sasl-xoauth2" in readme
    assert "connector instead" in readme


def test_direct_send_signs_in_nowhere_and_rewrites_nothing() -> None:
    files = _files(DIRECT_SEND_TARGET)
    assert list(files) == ["main.cf.fragment", "README.md"]
    main = _settings(files["main.cf.fragment"].text)
    assert main["relayhost"] == "[contoso-com.mail.protection.outlook.com]:25"
    assert main["smtp_sasl_auth_enable"] == "no"
    assert main["smtp_tls_security_level"] == "secure"
    assert "sender_canonical_maps" not in main
    assert "smtp_destination_rate_delay" not in main
    assert "## Direct Send" in files["README.md"].text


def test_the_ca_file_is_copied_and_named_where_postfix_will_find_it(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    files = _files(dataclasses.replace(PASSWORD_TARGET, ca_file=ca), postfix_dir="/srv/postfix/")
    assert files["relaywizard-ca.pem"].text == ca.read_text()
    main = _settings(files["main.cf.fragment"].text)
    assert main["smtp_tls_CAfile"] == "/srv/postfix/relaywizard-ca.pem"
    assert main["smtp_sasl_password_maps"] == "hash:/srv/postfix/sasl_passwd"
    with pytest.raises(ConfigError, match="--ca-file: cannot read"):
        px.generate(dataclasses.replace(PASSWORD_TARGET, ca_file=tmp_path / "missing.pem"))


def test_implicit_tls_and_ipv6_relayhosts_use_postfix_s_spelling() -> None:
    target = dataclasses.replace(PASSWORD_TARGET, host="2001:db8::25", port=465, tls="implicit")
    main = _settings(px.main_cf_fragment(target))
    assert main["relayhost"] == "[ipv6:2001:db8::25]:465"
    assert main["smtp_tls_wrappermode"] == "yes"


@pytest.mark.parametrize(("rate", "delay"), [(30, 2), (7, 9), (60, 1), (61, 0), (0, 0)])
def test_pacing_never_exceeds_the_rate(rate: int, delay: int) -> None:
    assert px.rate_delay(rate) == delay
    if delay:
        assert 60 / delay <= rate


def test_the_readme_states_what_postfix_cannot_do() -> None:
    readme = _files(PASSWORD_TARGET)["README.md"].text
    for expected in ("postmap hash:/etc/postfix/sasl_passwd", "postfix check", "postfix reload", "swaks"):
        assert expected in readme
    assert px.apply_command() in readme
    assert "postconf -c /srv/pf -e" in _files(PASSWORD_TARGET, postfix_dir="/srv/pf")["README.md"].text
    assert "Reply-To" in readme
    assert "`secure`" in readme
    assert "inet_interfaces" in readme


def _postfix_parameters() -> set[str]:
    defaults = subprocess.run(["postconf", "-d"], capture_output=True, text=True, check=True).stdout
    return {line.split("=", 1)[0].strip() for line in defaults.splitlines()}


@pytest.mark.parametrize(
    "target",
    [
        PASSWORD_TARGET,
        OAUTH_TARGET,
        DIRECT_SEND_TARGET,
        dataclasses.replace(DIRECT_SEND_TARGET, method="connector", tls="none"),
        dataclasses.replace(PASSWORD_TARGET, tls="implicit", ca_file=Path("/x.pem")),
    ],
    ids=["password", "oauth", "direct-send", "connector-no-tls", "implicit-ca"],
)
def test_every_variant_names_only_parameters_postfix_knows(target: px.PostfixTarget) -> None:
    unknown = set(_settings(px.main_cf_fragment(target))) - _postfix_parameters()
    assert not unknown


# -- from the relay's own configuration ------------------------------------------------------------------


def test_the_relay_s_resolved_settings_become_the_target(tmp_path: Path) -> None:
    chosen = settings.Settings(
        profiles={
            "office": settings.Profile(
                name="office", domain="contoso.com", user="scanner@contoso.com", sender="scans@contoso.com"
            )
        },
        default_profile="office",
        relay=settings.RelaySettings(allow=["10.0.0.0/8"], rate=20, connections=2, max_message_size=2048),
    )
    config = resolve(chosen, RelayOptions(), AppPaths.under(tmp_path))
    target = px.PostfixTarget.from_config(config, px.method_for("smtp-auth", config))
    assert (target.host, target.port, target.tls) == ("smtp.office365.com", 587, "starttls")
    assert (target.user, target.sender, target.auth) == (
        "scanner@contoso.com",
        "scans@contoso.com",
        "password",
    )
    assert target.allow == (ipaddress.ip_network("10.0.0.0/8"),)
    assert (target.rate, target.connections, target.max_message_size) == (20, 2, 2048)


def test_without_a_profile_the_method_follows_the_upstream(tmp_path: Path) -> None:
    paths = AppPaths.under(tmp_path)
    mx = resolve(
        settings.Settings(), RelayOptions(upstream="contoso-com.mail.protection.outlook.com:25"), paths
    )
    other = resolve(settings.Settings(), RelayOptions(upstream="relay.example.net:25"), paths)
    signed = resolve(settings.Settings(), RelayOptions(user="a@contoso.com", profile="p"), paths)
    assert px.method_for(None, mx) == "direct-send"
    assert px.method_for(None, other) == "connector"
    assert px.method_for(None, signed) == "smtp-auth"
    assert px.method_for("connector", signed) == "connector"


# -- writing the folder -----------------------------------------------------------------------------------


def test_files_are_written_with_their_modes_and_kept_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "export"
    files = px.generate(PASSWORD_TARGET)
    written = px.write_export(files, out)
    assert [p.name for p in written] == [f.name for f in files]
    assert stat.S_IMODE((out / "sasl_passwd").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "README.md").stat().st_mode) == 0o644

    (out / "sasl_passwd").chmod(0o644)
    (out / "sasl_passwd").write_text("the admin's own\n")
    with pytest.raises(UsageError, match=r"already holds main\.cf\.fragment, sasl_passwd"):
        px.write_export(files, out)
    assert (out / "sasl_passwd").read_text() == "the admin's own\n"

    px.write_export(files, out, force=True)
    assert stat.S_IMODE((out / "sasl_passwd").stat().st_mode) == 0o600
    assert "PASSWORD" in (out / "sasl_passwd").read_text()
    assert sorted(p.name for p in out.iterdir()) == sorted(f.name for f in files)  # no temporary left


def test_a_folder_that_cannot_be_made_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        px.write_export(px.generate(PASSWORD_TARGET), tmp_path / "a" / "b")
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        px.write_export(px.generate(PASSWORD_TARGET), tmp_path / "file")
