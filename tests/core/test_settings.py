"""The settings file: round trips, defaults, every rule and its sentence, secrets, versions, atomic saves."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from relaywizard.core import settings as settings_module
from relaywizard.core.errors import SettingsFileError, SettingsValidationError
from relaywizard.core.paths import AppPaths
from relaywizard.core.settings import (
    CURRENT_VERSION,
    DEFAULT_MAX_MESSAGE_SIZE,
    Profile,
    RelaySettings,
    Settings,
    dumps,
    load,
    looks_like_secret,
    parse,
    save,
    to_document,
)

POSIX = os.name == "posix"

SCANNER = """
[profiles.scanner]
method = "smtp-auth"
domain = "contoso.com"
user = "scanner@contoso.com"
"""


def scanner(**changes: Any) -> Profile:
    values: dict[str, Any] = {"name": "scanner", "domain": "contoso.com", "user": "scanner@contoso.com"}
    values.update(changes)
    return Profile(**values)


def full_settings() -> Settings:
    settings = Settings(default_profile="scanner")
    settings.set_profile(
        scanner(
            sender="noreply@contoso.com",
            auth="oauth-app",
            tenant="00000000-0000-0000-0000-000000000001",
            client_id="11111111-2222-3333-4444-555555555555",
            authority="https://login.microsoftonline.com/contoso.onmicrosoft.com",
            smtp_host="smtp.office365.com",
            smtp_port=587,
            tls="starttls",
            ca_file="/etc/ssl/corp.pem",
        )
    )
    settings.set_profile(
        Profile(
            name="front.desk", method="direct-send", domain="contoso.com", relay_ip="203.0.113.10", tls="none"
        )
    )
    settings.relay = RelaySettings(
        profile="scanner",
        listen="0.0.0.0:2525",
        allow=["192.168.1.0/24", "10.0.0.7/32"],
        spool="/var/spool/relaywizard",
        rate=0,
        connections=2,
        max_message_size=10 * 1024 * 1024,
    )
    return settings


def validation_error(text: str) -> SettingsValidationError:
    with pytest.raises(SettingsValidationError) as caught:
        parse(text, "settings.toml")
    return caught.value


# -- defaults and round trips ------------------------------------------------------------------------------


def test_missing_file_gives_the_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path / "nowhere" / "settings.toml")
    assert settings == Settings()
    assert settings.version == CURRENT_VERSION
    assert settings.profiles == {}
    assert settings.default_profile is None
    assert settings.relay.profile is None
    assert settings.relay.listen == "127.0.0.1:2525"
    assert settings.relay.allow == []
    assert settings.relay.spool is None
    assert settings.relay.rate == 30
    assert settings.relay.connections == 3
    assert settings.relay.max_message_size == DEFAULT_MAX_MESSAGE_SIZE == 36700160


def test_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text("")
    assert load(path) == Settings()


def test_round_trip_keeps_everything(tmp_path: Path) -> None:
    path = AppPaths.under(tmp_path).settings_file
    original = full_settings()
    save(original, path)
    assert load(path) == original


def test_default_settings_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    save(Settings(), path)
    assert load(path) == Settings()


def test_written_file_is_readable_toml_with_the_version_first(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    save(full_settings(), path)
    text = path.read_text()
    assert "secret set --profile" in text  # the header comment points to the keyring
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[0] == f"version = {CURRENT_VERSION}"
    assert "[profiles.scanner]" in text
    assert '[profiles."front.desk"]' in text
    assert "name =" not in text  # the table's key is the name
    assert "relay_ip" in text
    assert "user" in text.split('[profiles."front.desk"]')[0]


def test_unset_values_are_left_out() -> None:
    document = to_document(Settings(profiles={"scanner": scanner()}))
    assert document["profiles"]["scanner"] == {
        "domain": "contoso.com",
        "method": "smtp-auth",
        "user": "scanner@contoso.com",
        "auth": "password",
        "tls": "starttls",
    }
    assert "default_profile" not in document
    assert "profile" not in document["relay"]


def test_values_are_normalised_on_load() -> None:
    settings = parse(
        """
        [profiles.scanner]
        method = "SMTP-Auth"
        domain = "Contoso.COM."
        user = "Scanner@Contoso.com"
        smtp_host = "SMTP.Office365.com"
        smtp_port = "587"
        sender = ""

        [relay]
        listen = "0.0.0.0"
        allow = ["192.168.1.7", "192.168.1.7/32", "2001:DB8::/32"]
        """
    )
    profile = settings.profile("scanner")
    assert profile.method == "smtp-auth"
    assert profile.domain == "contoso.com"
    assert profile.user == "Scanner@contoso.com"
    assert profile.smtp_host == "smtp.office365.com"
    assert profile.smtp_port == 587
    assert profile.sender is None
    assert settings.relay.listen == "0.0.0.0:2525"
    assert settings.relay.allow == ["192.168.1.7/32", "2001:db8::/32"]


def test_auth_is_implied_by_the_method() -> None:
    assert scanner().auth == "password"
    assert Profile(name="d", method="direct-send", domain="contoso.com").auth == "none"
    assert Profile(name="c", method="Connector", domain="contoso.com").auth == "none"
    settings = parse('[profiles.d]\nmethod = "connector"\ndomain = "contoso.com"\n')
    assert settings.profile("d").auth == "none"


def test_ipv6_listen_address_is_written_with_brackets(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    save(Settings(relay=RelaySettings(listen="[::1]:2525")), path)
    assert load(path).relay.listen == "[::1]:2525"
    assert parse('[relay]\nlisten = "::"\n').relay.listen == "[::]:2525"


def test_a_bom_from_notepad_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_bytes(b"\xef\xbb\xbf" + SCANNER.encode())
    assert load(path).profile("scanner").domain == "contoso.com"


# -- helpers -----------------------------------------------------------------------------------------------


def test_profile_lookup_names_the_known_profiles() -> None:
    settings = full_settings()
    assert settings.profile("scanner").user == "scanner@contoso.com"
    with pytest.raises(SettingsValidationError) as caught:
        settings.profile("printer")
    assert "no profile named 'printer'" in caught.value.message
    assert "'scanner', 'front.desk'" in caught.value.message
    assert caught.value.field == "profiles.printer"
    with pytest.raises(SettingsValidationError, match="no profiles are set up yet"):
        Settings().profile("printer")


def test_set_and_remove_profile() -> None:
    settings = full_settings()
    settings.set_profile(scanner(domain="fabrikam.com"))
    assert settings.profile("scanner").domain == "fabrikam.com"
    settings.remove_profile("scanner")
    assert "scanner" not in settings.profiles
    assert settings.default_profile is None
    assert settings.relay.profile is None
    settings.validated()  # still consistent
    with pytest.raises(SettingsValidationError):
        settings.remove_profile("scanner")


def test_relay_profile_prefers_the_relays_own_then_the_default() -> None:
    settings = full_settings()
    assert settings.relay_profile() is settings.profile("scanner")
    settings.relay.profile = None
    settings.default_profile = "front.desk"
    assert settings.relay_profile() is settings.profile("front.desk")
    settings.default_profile = None
    assert settings.relay_profile() is None


def test_validated_returns_a_normalised_copy() -> None:
    settings = Settings(profiles={"scanner": scanner(domain="CONTOSO.com")})
    checked = settings.validated()
    assert checked.profile("scanner").domain == "contoso.com"
    assert settings.profile("scanner").domain == "CONTOSO.com"


# -- validation: one value ---------------------------------------------------------------------------------


def test_a_bad_port_names_the_field_the_file_and_the_value() -> None:
    error = validation_error(SCANNER + 'smtp_port = "abc"\n')
    assert error.field == "profiles.scanner.smtp_port"
    assert error.message == (
        "settings.toml: profiles.scanner.smtp_port must be a port number from 1 to 65535, not 'abc'"
    )


@pytest.mark.parametrize(
    ("line", "field", "fragments"),
    [
        ('domain = "contoso..com"', "domain", ["must be a valid domain name, not 'contoso..com'"]),
        ('domain = "http://contoso.com"', "domain", ["web address", "did you mean 'contoso.com'?"]),
        ("domain = 5", "domain", ["must be a valid domain name, not 5"]),
        ('method = "smtp"', "method", ["must be one of 'smtp-auth', 'direct-send' or 'connector'"]),
        ('user = "Scanner <scan@contoso.com>"', "user", ["display name", "'scan@contoso.com'"]),
        ('sender = "nobody"', "sender", ["must be a valid email address, not 'nobody'"]),
        ('auth = "basic"', "auth", ["must be one of 'password'"]),
        ('tls = "ssl"', "tls", ["must be one of 'starttls', 'implicit' or 'none', not 'ssl'"]),
        ('smtp_host = "smtp.office365.com:587"', "smtp_host", ["includes a port"]),
        ("smtp_port = 70000", "smtp_port", ["from 1 to 65535, not 70000"]),
        ("smtp_port = true", "smtp_port", ["not True"]),
        ('relay_ip = "203.0.113.300"', "relay_ip", ["must be a valid IP address"]),
        ("ca_file = 7", "ca_file", ["must be a file or folder path, not 7"]),
        ('tenant = "contoso tenant"', "tenant", ["must be a tenant or application id"]),
        ('authority = "http://login.example"', "authority", ["https://"]),
        ('app_valid_until = "2027-02-30"', "app_valid_until", ["must be a date such as 2027-06-30"]),
        ("app_valid_until = 2027", "app_valid_until", ["TOML date"]),
    ],
)
def test_each_profile_value_is_checked(line: str, field: str, fragments: list[str]) -> None:
    values = {"method": '"smtp-auth"', "domain": '"contoso.com"', "user": '"scanner@contoso.com"'}
    key, _, value = line.partition(" = ")
    values[key] = value
    text = "[profiles.scanner]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
    error = validation_error(text)
    assert error.field == f"profiles.scanner.{field}"
    assert error.message.startswith(f"settings.toml: profiles.scanner.{field} ")
    for fragment in fragments:
        assert fragment in error.message


def test_a_suggestion_becomes_the_hint() -> None:
    error = validation_error(SCANNER.replace('"scanner@contoso.com"', '"Scanner <scanner@contoso.com>"'))
    assert error.hint == "Use 'scanner@contoso.com' instead."


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        ('[relay]\nlisten = "localhost:99999"', "relay.listen", "must be a host and port"),
        ('[relay]\nallow = "192.168.1.0/24"', "relay.allow", "must be a list of networks"),
        ('[relay]\nallow = ["192.168.1.0/24", "192.168.1.5/24"]', "relay.allow[1]", "'192.168.1.0/24'"),
        ("[relay]\nrate = -1", "relay.rate", "must be a whole number from 0 to 10000, not -1"),
        ("[relay]\nrate = 10001", "relay.rate", "from 0 to 10000"),
        ("[relay]\nconnections = 0", "relay.connections", "from 1 to 100, not 0"),
        ("[relay]\nconnections = 101", "relay.connections", "from 1 to 100, not 101"),
        ("[relay]\nconnections = 2.5", "relay.connections", "not 2.5"),
        ("[relay]\nmax_message_size = 10", "relay.max_message_size", "from 1024 to 157286400"),
        ('[relay]\nbare_lf = "accept"', "relay.bare_lf", "'refuse' or 'normalize'"),
        ("[relay]\nspool = []", "relay.spool", "must be a file or folder path"),
        ('[relay]\nprofile = "bad name"', "relay.profile", "must be a valid profile name"),
        ('default_profile = "bad name"', "default_profile", "must be a valid profile name"),
        ('[profiles."bad name"]\ndomain = "contoso.com"', 'profiles."bad name"', "valid profile name"),
        ('profiles = "scanner"', "profiles", "must be a table"),
        ("[profiles]\nscanner = 1", "profiles.scanner", "must be a table such as [profiles.scanner]"),
        ("relay = 1", "relay", "must be a table such as [relay]"),
        ('version = "one"', "version", "version must be a whole number"),
        ("version = -1", "version", "version must be a whole number"),
    ],
)
def test_relay_and_top_level_values_are_checked(text: str, field: str, fragment: str) -> None:
    error = validation_error(text)
    assert error.field == field
    assert error.message.startswith("settings.toml: ")
    assert fragment in error.message


def test_a_profile_without_a_domain() -> None:
    error = validation_error('[profiles.scanner]\nuser = "scanner@contoso.com"\n')
    assert error.field == "profiles.scanner.domain"
    assert "profiles.scanner.domain is missing" in error.message
    assert 'domain = "contoso.com"' in error.hint


# -- validation: between values ----------------------------------------------------------------------------


def test_relay_profile_must_exist() -> None:
    error = validation_error(SCANNER + '[relay]\nprofile = "printer"\n')
    assert error.field == "relay.profile"
    assert "relay.profile names the profile 'printer', which does not exist" in error.message
    assert "'scanner'" in error.message


def test_default_profile_must_exist() -> None:
    error = validation_error('default_profile = "printer"\n')
    assert error.field == "default_profile"
    assert "no profiles are set up" in error.message


@pytest.mark.parametrize(
    ("lines", "field", "fragment"),
    [
        ('auth = "none"', "auth", "auth = 'none' only works with direct-send or connector"),
        ('tls = "none"', "tls", "tls = 'none' only works with direct-send or connector"),
        ('auth = "oauth-app"\ntenant = "contoso.onmicrosoft.com"', "client_id", "client_id is missing"),
        ('auth = "oauth-delegated"\nclient_id = "app"', "tenant", "tenant is missing"),
        ('auth = "oauth-app"\nclient_id = "app"\ntenant = "common"', "tenant", "must be a real tenant"),
    ],
)
def test_smtp_auth_rules(lines: str, field: str, fragment: str) -> None:
    error = validation_error(SCANNER + lines + "\n")
    assert error.field == f"profiles.scanner.{field}"
    assert fragment in error.message


def test_smtp_auth_needs_a_user() -> None:
    error = validation_error('[profiles.scanner]\ndomain = "contoso.com"\n')
    assert error.field == "profiles.scanner.user"
    assert "signs in as a mailbox" in error.message


@pytest.mark.parametrize("method", ["direct-send", "connector"])
def test_direct_send_and_connector_do_not_sign_in(method: str) -> None:
    base = f'[profiles.p]\nmethod = "{method}"\ndomain = "contoso.com"\n'
    settings = parse(base + 'tls = "none"\nauth = "none"\n')
    assert settings.profile("p").tls == "none"
    error = validation_error(base + 'auth = "password"\n')
    assert error.field == "profiles.p.auth"
    assert f"must be 'none' for {method}" in error.message


def test_oauth_with_an_authority_needs_no_tenant() -> None:
    text = SCANNER + 'auth = "oauth-delegated"\nclient_id = "app"\nauthority = "https://localhost:8443/T/"\n'
    profile = parse(text).profile("scanner")
    assert profile.authority == "https://localhost:8443/T"
    assert profile.tenant is None


def test_key_and_name_must_match_when_saving(tmp_path: Path) -> None:
    settings = Settings(profiles={"scanner": scanner(name="printer")})
    with pytest.raises(SettingsValidationError, match="the key and the name must match"):
        save(settings, tmp_path / "settings.toml")


# -- unknown keys ------------------------------------------------------------------------------------------


def test_an_unknown_key_is_named_with_a_suggestion() -> None:
    error = validation_error(SCANNER + "smtp_prot = 587\n")
    assert error.field == "profiles.scanner.smtp_prot"
    assert error.message == "settings.toml: unknown setting profiles.scanner.smtp_prot"
    assert "Did you mean smtp_port?" in error.hint


def test_every_unknown_key_is_named() -> None:
    error = validation_error('colour = "blue"\n[relay]\nlisen = "0.0.0.0:25"\nrate = 5\n[extra]\na = 1\n')
    assert error.message == "settings.toml: unknown settings colour, extra and relay.lisen"
    assert error.field == "colour"


def test_a_profile_table_with_a_name_key_is_unknown() -> None:
    error = validation_error(SCANNER + 'name = "scanner"\n')
    assert error.field == "profiles.scanner.name"


# -- secrets -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["password", "passwd", "Password", "client_secret", "client-secret", "token", "access_token", "api_key",
     "apiKey", "secret", "refresh_token", "pass", "pwd", "private_key"],
)  # fmt: skip
def test_secret_looking_keys(key: str) -> None:
    assert looks_like_secret(key)


@pytest.mark.parametrize(
    "key", ["user", "auth", "tenant", "client_id", "authority", "ca_file", "relay_ip", "spool", "keyring"]
)
def test_ordinary_keys_are_not_secrets(key: str) -> None:
    assert not looks_like_secret(key)


@pytest.mark.parametrize(
    ("text", "field", "profile"),
    [
        (SCANNER + 'password = "hunter2"\n', "profiles.scanner.password", "scanner"),
        (SCANNER + 'client_secret = "abc~def"\n', "profiles.scanner.client_secret", "scanner"),
        ('token = "eyJ0"\n', "token", "NAME"),
        ('[relay]\napi_key = "k"\n', "relay.api_key", "NAME"),
        ('[relay.auth]\npasswd = "k"\n', "relay.auth.passwd", "NAME"),
        ('[[extra]]\nsecret = "k"\n', "extra.secret", "NAME"),
    ],
)
def test_secrets_are_refused_on_load(tmp_path: Path, text: str, field: str, profile: str) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(text)
    with pytest.raises(SettingsValidationError) as caught:
        load(path)
    error = caught.value
    assert error.field == field
    assert "looks like a secret" in error.message
    assert f"relaywizard secret set --profile {profile}" in error.message
    for value in ("hunter2", "abc~def", "eyJ0"):
        assert value not in error.one_line()  # never echo the secret


def test_a_profile_may_be_called_token() -> None:
    settings = parse('[profiles.token]\nmethod = "direct-send"\ndomain = "contoso.com"\n')
    assert "token" in settings.profiles


def test_secrets_are_refused_on_save(tmp_path: Path) -> None:
    @dataclass(slots=True, kw_only=True)
    class LeakyProfile(Profile):
        password: str = "hunter2"

    path = tmp_path / "settings.toml"
    settings = Settings(
        profiles={"scanner": LeakyProfile(name="scanner", domain="contoso.com", user="a@b.com")}
    )
    with pytest.raises(SettingsValidationError) as caught:
        save(settings, path)
    assert caught.value.field == "profiles.scanner.password"
    assert "relaywizard secret set --profile scanner" in caught.value.message
    assert not path.exists()
    with pytest.raises(SettingsValidationError):
        dumps(settings)


def test_profiles_cannot_grow_a_secret_attribute() -> None:
    profile = scanner()
    with pytest.raises(AttributeError):
        profile.password = "hunter2"  # type: ignore[attr-defined]


# -- versions ----------------------------------------------------------------------------------------------


def test_a_file_without_a_version_is_migrated_from_version_0(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(SCANNER)
    settings = load(path)
    assert settings.version == 1
    assert settings.profile("scanner").domain == "contoso.com"
    assert path.read_text() == SCANNER  # loading never rewrites the file


def test_the_migration_chain_runs_in_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[int] = []

    def v0_to_v1(document: dict[str, Any]) -> dict[str, Any]:
        calls.append(0)
        return {**document, "version": 1}

    def v1_to_v2(document: dict[str, Any]) -> dict[str, Any]:
        # Pretend version 1 called the listen address "bind"; version 2 calls it "listen".
        calls.append(1)
        relay = dict(document.get("relay", {}))
        if "bind" in relay:
            relay["listen"] = relay.pop("bind")
        return {**document, "relay": relay, "version": 2}

    monkeypatch.setattr(settings_module, "CURRENT_VERSION", 2)
    monkeypatch.setattr(settings_module, "MIGRATIONS", {0: v0_to_v1, 1: v1_to_v2})

    path = tmp_path / "settings.toml"
    path.write_text('[relay]\nbind = "0.0.0.0:2526"\n')
    settings = load(path)
    assert calls == [0, 1]
    assert settings.version == 2
    assert settings.relay.listen == "0.0.0.0:2526"

    calls.clear()
    path.write_text('version = 1\n[relay]\nbind = "0.0.0.0:2527"\n')
    assert load(path).relay.listen == "0.0.0.0:2527"
    assert calls == [1]

    save(settings, path)
    assert path.read_text().count("version = 2") == 1
    calls.clear()
    assert load(path) == settings
    assert calls == []


def test_a_migration_that_forgets_the_version_is_a_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module, "MIGRATIONS", {0: lambda document: document})
    with pytest.raises(RuntimeError, match="did not set version 1"):
        parse("")


def test_a_missing_migration_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module, "CURRENT_VERSION", 3)
    with pytest.raises(SettingsFileError, match="cannot upgrade settings of version 1"):
        parse("version = 1\n")


def test_the_real_migration_only_adds_the_version() -> None:
    document = {"relay": {"rate": 5}}
    migrated = settings_module.migrate(document)
    assert migrated == {"version": 1, "relay": {"rate": 5}}
    assert document == {"relay": {"rate": 5}}  # the input is untouched


def test_a_newer_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    text = f"version = {CURRENT_VERSION + 1}\n[future]\nthing = 1\n"
    path.write_text(text)
    with pytest.raises(SettingsFileError) as caught:
        load(path)
    message = caught.value.message
    assert "newer relaywizard" in message
    assert f"settings version {CURRENT_VERSION + 1}" in message
    assert "nothing was changed" in message
    assert str(path) in message
    assert path.read_text() == text


# -- files -------------------------------------------------------------------------------------------------


def test_bad_toml_reports_the_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text("version = 1\n\n[relay]\nlisten = 127.0.0.1:2525\n")
    with pytest.raises(SettingsFileError) as caught:
        load(path)
    error = caught.value
    assert "is not valid TOML at line 4, column" in error.message
    assert str(path) in error.message
    assert error.hint


def test_bad_toml_at_the_end_of_the_file() -> None:
    with pytest.raises(SettingsFileError, match="not valid TOML"):
        parse('[relay]\nlisten = "open')


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_bytes(b'[relay]\nspool = "C:\\\\Sp\xf6ol"\n')
    with pytest.raises(SettingsFileError, match="not UTF-8"):
        load(path)


def test_a_folder_where_the_file_should_be(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.mkdir()
    with pytest.raises(SettingsFileError, match="is a folder") as caught:
        load(path)
    assert caught.value.hint
    with pytest.raises(SettingsFileError, match="is a folder"):
        save(Settings(), path)


@pytest.mark.parametrize(
    ("error", "fragment"),
    [(PermissionError(13, "Permission denied"), "permission denied"), (OSError(5, "I/O error"), "I/O error")],
)
def test_read_errors_become_one_sentence(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: OSError, fragment: str
) -> None:
    def refuse(self: Path) -> bytes:
        raise error

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(SettingsFileError) as caught:
        load(tmp_path / "settings.toml")
    assert caught.value.message.startswith("Cannot read ")
    assert fragment in caught.value.message
    assert caught.value.hint


@pytest.mark.skipif(not POSIX, reason="POSIX permissions")
def test_saved_file_is_private_and_so_is_a_new_folder(tmp_path: Path) -> None:
    folder = tmp_path / "home" / "config"
    path = folder / "settings.toml"
    save(full_settings(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


@pytest.mark.skipif(not POSIX, reason="POSIX permissions")
def test_saving_over_a_loose_file_makes_it_private(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(SCANNER)
    path.chmod(0o644)
    save(load(path), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_save_replaces_via_a_synced_temporary_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        assert Path(src).parent == tmp_path
        assert Path(src).name.endswith(".tmp")
        assert Path(dst) == path
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    save(full_settings(), path)
    expected = ["fsync-file", "replace", "fsync-dir"] if POSIX else ["fsync-file", "replace"]
    assert events == expected
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("failing", ["replace", "fsync", "write"])
def test_a_failed_save_leaves_the_old_file_and_no_temporary_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, failing: str
) -> None:
    path = tmp_path / "settings.toml"
    save(full_settings(), path)
    before = path.read_bytes()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    real_fdopen = os.fdopen

    class FullDisk:
        """A temporary file whose disk fills up half-way through the write."""

        def __init__(self, fd: int, mode: str) -> None:
            self.file = real_fdopen(fd, mode)

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self.file.close()

        def fileno(self) -> int:
            return self.file.fileno()

        def write(self, data: bytes) -> int:
            self.file.write(data[:10])
            self.file.flush()
            broken()
            return 0

    if failing == "write":
        monkeypatch.setattr(os, "fdopen", FullDisk)
    else:
        monkeypatch.setattr(os, failing, broken)
    changed = full_settings()
    changed.relay.rate = 5
    with pytest.raises(SettingsFileError) as caught:
        save(changed, path)
    monkeypatch.undo()
    assert "No space left on device" in caught.value.message
    assert "previous file was left as it was" in caught.value.message
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def test_an_interrupted_save_removes_its_temporary_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "settings.toml"

    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save(Settings(), path)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "config"
    blocker.write_text("a file, not a folder")
    with pytest.raises(SettingsFileError, match="Cannot save the settings"):
        save(Settings(), blocker / "settings.toml")


def test_an_invalid_settings_object_is_not_saved(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    settings = Settings(profiles={"scanner": scanner(smtp_port=0)})
    with pytest.raises(SettingsValidationError) as caught:
        save(settings, path)
    assert caught.value.field == "profiles.scanner.smtp_port"
    assert caught.value.message.startswith(f"{path}: profiles.scanner.smtp_port must be a port number")
    assert not path.exists()


@pytest.mark.skipif(not POSIX, reason="symbolic links")
def test_saving_through_a_symbolic_link_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real.toml"
    link = tmp_path / "settings.toml"
    save(Settings(), real)
    link.symlink_to(real)
    save(full_settings(), link)
    assert link.is_symlink()
    assert load(real) == full_settings()


def test_save_accepts_a_string_path(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    save(Settings(), str(path))  # type: ignore[arg-type]
    assert load(str(path)) == Settings()  # type: ignore[arg-type]


def test_relay_device_accounts_auth_networks_recipient_domains_and_tls_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(
        "version = 1\n[relay]\n"
        'devices = ["scanner1", "scanner1", "copier"]\n'
        'auth_networks = ["192.168.1.7"]\n'
        'recipient_domains = ["Contoso.COM"]\n'
        'tls_cert = "/etc/relay/cert.pem"\ntls_key = "/etc/relay/key.pem"\n'
    )
    relay = load(path).relay
    assert relay.bare_lf == "refuse"  # the default: such line ends are how SMTP smuggling works
    assert relay.devices == ["scanner1", "copier"]
    assert relay.auth_networks == ["192.168.1.7/32"]
    assert relay.recipient_domains == ["contoso.com"]
    save(load(path), path)
    assert load(path).relay.tls_key == "/etc/relay/key.pem"
    path.write_text(path.read_text().replace('bare_lf = "refuse"', 'bare_lf = "Normalize"'))
    assert load(path).relay.bare_lf == "normalize"


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ('devices = "scanner1"', "relay.devices", "must be a list of device logins"),
        ('devices = ["front desk"]', "relay.devices[0]", "front desk"),
        ('auth_networks = ["192.168.1.5/24"]', "relay.auth_networks[0]", "192.168.1.0/24"),
        ('recipient_domains = ["contoso"]', "relay.recipient_domains[0]", "contoso"),
        ('tls_cert = "/etc/relay/cert.pem"', "relay.tls_cert", "go together"),
    ],
)
def test_relay_device_settings_are_checked(tmp_path: Path, body: str, field: str, fragment: str) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(f"version = 1\n[relay]\n{body}\n")
    with pytest.raises(SettingsValidationError) as caught:
        load(path)
    assert caught.value.field == field
    assert fragment in caught.value.message


def test_the_apps_secret_expiry_is_a_day_as_text_or_a_toml_date(tmp_path: Path) -> None:
    base = '[profiles.scanner]\nmethod = "smtp-auth"\ndomain = "contoso.com"\nuser = "scanner@contoso.com"\n'
    quoted = settings_module.parse(base + 'app_valid_until = "2027-06-30"\n')
    native = settings_module.parse(base + "app_valid_until = 2027-06-30\n")
    assert quoted.profiles["scanner"].app_valid_until == "2027-06-30"
    assert native.profiles["scanner"].app_valid_until == "2027-06-30"
    path = tmp_path / "settings.toml"
    settings_module.save(quoted, path)
    assert settings_module.load(path).profiles["scanner"].app_valid_until == "2027-06-30"
