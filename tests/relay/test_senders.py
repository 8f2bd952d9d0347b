"""A sender per device: the most specific rule wins, unknown devices get the default."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaywizard.core import settings
from relaywizard.core.errors import ConfigError, SettingsValidationError
from relaywizard.core.paths import AppPaths
from relaywizard.relay.config import RelayOptions, resolve
from relaywizard.relay.senders import SenderMap, SenderRule, device_key, parse_rule

RULES = SenderMap(
    [
        SenderRule("192.168.1.0/24", "office@contoso.com"),
        SenderRule("192.168.1.10", "scans-frontdesk@contoso.com"),
        SenderRule("192.168.0.0/16", "site@contoso.com"),
        SenderRule("login:warehouse", "printer-warehouse@contoso.com"),
        SenderRule("2001:db8::/64", "v6@contoso.com"),
    ],
    default="relay@contoso.com",
)


@pytest.mark.parametrize(
    ("device", "login", "sender"),
    [
        ("192.168.1.10", None, "scans-frontdesk@contoso.com"),  # the address beats its network
        ("192.168.1.11", None, "office@contoso.com"),  # the /24 beats the /16
        ("192.168.7.1", None, "site@contoso.com"),
        ("10.0.0.5", None, "relay@contoso.com"),  # no rule: the default
        ("192.168.1.10", "warehouse", "printer-warehouse@contoso.com"),  # the device account beats all
        ("192.168.1.10", "WAREHOUSE", "printer-warehouse@contoso.com"),
        ("192.168.1.10", "someone", "scans-frontdesk@contoso.com"),
        ("2001:db8::7", None, "v6@contoso.com"),
        ("not an address", None, "relay@contoso.com"),
    ],
)
def test_the_most_specific_rule_wins(device: str, login: str | None, sender: str) -> None:
    assert RULES.sender_for(device, login) == sender


def test_without_rules_every_device_gets_the_default() -> None:
    empty = SenderMap(default="relay@contoso.com")
    assert not empty
    assert empty.sender_for("192.168.1.10") == "relay@contoso.com"
    assert SenderMap().sender_for("192.168.1.10") is None


def test_senders_lists_each_address_once_the_default_first() -> None:
    twice = SenderMap(
        [SenderRule("10.0.0.1", "A@contoso.com"), SenderRule("10.0.0.2", "a@contoso.com")], "b@x.com"
    )
    assert twice.senders() == ["b@x.com", "A@contoso.com"]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("192.168.1.10", "192.168.1.10"),
        (" 192.168.1.0/24 ", "192.168.1.0/24"),
        ("login:frontdesk", "login:frontdesk"),
        ("LOGIN:frontdesk", "login:frontdesk"),
        ("2001:db8::1", "2001:db8::1"),
    ],
)
def test_devices_are_normalised(text: str, key: str) -> None:
    assert device_key(text) == key


@pytest.mark.parametrize("text", ["scanner", "192.168.1.300", "login:", "login:front desk"])
def test_a_bad_device_is_one_sentence(text: str) -> None:
    with pytest.raises(ValueError, match="is not a device") as caught:
        device_key(text)
    assert "\n" not in str(caught.value)


def test_an_address_with_a_prefix_suggests_its_network() -> None:
    with pytest.raises(ValueError, match=r"one address inside 192\.168\.1\.0/24"):
        device_key("192.168.1.5/24")


def test_a_rule_from_the_command_line() -> None:
    assert parse_rule("192.168.1.10=scans@contoso.com") == SenderRule("192.168.1.10", "scans@contoso.com")
    with pytest.raises(ValueError, match="DEVICE=ADDRESS"):
        parse_rule("192.168.1.10")
    with pytest.raises(ValueError, match="email address"):
        parse_rule("192.168.1.10=scans")


def test_the_settings_table_and_the_options_make_the_relays_rules(tmp_path: Path) -> None:
    text = """
default_profile = "office"

[profiles.office]
method = "smtp-auth"
domain = "contoso.com"
user = "relay@contoso.com"

[relay.senders]
"192.168.1.10" = "scans@contoso.com"
"login:warehouse" = "printer@contoso.com"
"""
    chosen = settings.parse(text)
    assert chosen.relay.senders == {
        "192.168.1.10": "scans@contoso.com",
        "login:warehouse": "printer@contoso.com",
    }
    path = tmp_path / "settings.toml"
    settings.save(chosen, path)
    assert settings.load(path).relay.senders == chosen.relay.senders
    options = RelayOptions(
        device_senders=("192.168.1.10=frontdesk@contoso.com", "10.0.0.0/8=branch@contoso.com")
    )
    config = resolve(chosen, options, AppPaths.under(tmp_path))
    senders = config.sender_map()
    assert senders.sender_for("192.168.1.10") == "frontdesk@contoso.com"  # the option wins over the file
    assert senders.sender_for("10.1.2.3") == "branch@contoso.com"
    assert senders.sender_for("172.16.0.1", "warehouse") == "printer@contoso.com"
    assert senders.sender_for("172.16.0.1") == "relay@contoso.com"


def test_a_bad_senders_table_names_the_entry() -> None:
    with pytest.raises(SettingsValidationError) as caught:
        settings.parse('[relay.senders]\n"192.168.1.300" = "scans@contoso.com"\n')
    assert caught.value.field == 'relay.senders."192.168.1.300"'
    with pytest.raises(SettingsValidationError, match="email address"):
        settings.parse('[relay.senders]\n"192.168.1.10" = "scans"\n')
    with pytest.raises(SettingsValidationError, match="must be a table"):
        settings.parse('[relay]\nsenders = "scans@contoso.com"\n')


def test_a_bad_device_sender_option_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--device-sender"):
        resolve(
            settings.Settings(),
            RelayOptions(device_senders=("printer=scans@contoso.com",)),
            AppPaths.under(tmp_path),
        )
