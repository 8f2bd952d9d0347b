"""The inbound policy's decisions as pure functions: who may relay, which addresses, sizes, line endings."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from relaywizard.core.errors import ConfigError
from relaywizard.relay.policy import (
    DEFAULT_MAX_MESSAGE_SIZE,
    InboundPolicy,
    Reply,
    bare_line_ending_refusal,
    parse_ip,
    source_route_refusal,
)


def policy(**overrides: object) -> InboundPolicy:
    values: dict[str, object] = {
        "hostname": "relay.example.test",
        "allow": (ip_network("192.168.1.0/24"), ip_network("2001:db8::/64")),
    }
    values.update(overrides)
    return InboundPolicy(**values)  # type: ignore[arg-type]


def test_defaults_follow_microsoft_and_the_rfcs() -> None:
    p = policy()
    assert p.max_message_size == DEFAULT_MAX_MESSAGE_SIZE == 35 * 1024 * 1024
    assert p.max_recipients == 500
    assert p.max_line_length == 998
    assert p.max_connections == 50
    assert p.tls_context is None
    assert not p.auth_offered


@pytest.mark.parametrize(
    ("ip", "allowed"),
    [
        ("192.168.1.20", True),
        ("192.168.2.20", False),
        ("::ffff:192.168.1.20", True),  # a dual-stack listener sees IPv4 devices like this
        ("2001:db8::5", True),
        ("2001:db8:1::5", False),
        ("fe80::1%eth0", False),
        ("not an address", False),
    ],
)
def test_client_allowed(ip: str, allowed: bool) -> None:
    assert policy().client_allowed(ip) is allowed


def test_nothing_is_allowed_by_default() -> None:
    assert not InboundPolicy(hostname="relay").client_allowed("127.0.0.1")


def test_relay_refusal_names_the_device_and_the_fix() -> None:
    reply = policy().relay_refusal("10.0.0.5", authenticated=False)
    assert reply == Reply(550, "5.7.1", reply.text if reply else "")
    assert str(reply) == (
        "550 5.7.1 10.0.0.5 is not allowed to relay through this relay; add it to the allowed devices"
    )
    assert policy().relay_refusal("10.0.0.5", authenticated=True) is None
    assert policy().relay_refusal("192.168.1.9", authenticated=False) is None


def test_auth_without_tls_only_in_auth_networks() -> None:
    p = policy(auth_networks=(ip_network("10.1.0.0/16"),))
    assert p.auth_without_tls_allowed("10.1.2.3")
    assert not p.auth_without_tls_allowed("192.168.1.20")  # allowed to relay is not the same thing


def test_parse_ip() -> None:
    assert str(parse_ip("::ffff:10.0.0.1")) == "10.0.0.1"
    assert str(parse_ip("fe80::1%eth0")) == "fe80::1"
    assert parse_ip("scanner") is None


@pytest.mark.parametrize(
    "address",
    [
        "alice@example.com",
        "<alice@example.com>",
        "a.b+c@mail.example.com",
        '"a b"@example.com',
        "x@example.com.",
    ],
)
def test_ordinary_recipients_pass(address: str) -> None:
    assert policy().recipient_ok(address) is None


@pytest.mark.parametrize(
    ("address", "code", "words"),
    [
        ("user%other.test@relay.example.test", 550, "percent hack"),
        ("@host.test:user@other.test", 550, "source routes"),
        ("<@a.test,@b.test:user@other.test>", 550, "source routes"),
        ('"user@other.test"@relay.example.test', 550, "quoted local parts"),
        ('"user%other.test"@relay.example.test', 550, "quoted local parts"),
        ("user@other.test@relay.example.test", 550, "more than one @"),
        ("other.test!user@relay.example.test", 550, "bang paths"),
        ("user@[192.0.2.1]", 550, "address literals"),
        ("", 553, "empty"),
        ("<>", 553, "empty"),
        ("user", 553, "not a complete address"),
        ("@", 550, "source routes"),
        ("user@", 553, "not a complete address"),
        (".user@example.com", 553, "not a valid"),
        ("us..er@example.com", 553, "not a valid"),
        ("user@-example.com", 553, "not a valid"),
        ("user@exa_mple.com", 553, "not a valid"),
        ("user@example..com", 553, "not a valid"),
    ],
)
def test_relay_tricks_and_malformed_recipients_are_refused(address: str, code: int, words: str) -> None:
    reply = policy().recipient_ok(address)
    assert reply is not None
    assert reply.code == code
    assert reply.status == ("5.7.1" if code == 550 else "5.1.3")
    assert words in reply.text


def test_internal_only_mode() -> None:
    p = policy(allowed_recipient_domains=("example.com", "Example.ORG"))
    assert p.recipient_ok("alice@EXAMPLE.com") is None
    assert p.recipient_ok("bob@example.org.") is None
    reply = p.recipient_ok("mallory@elsewhere.test")
    assert reply is not None
    assert str(reply) == (
        "550 5.7.54 <mallory@elsewhere.test>: only example.com, Example.ORG may be mailed through this relay"
    )
    assert p.recipient_ok("eve@sub.example.com") is not None  # exact domains, no subdomains


def test_source_route_on_the_raw_path() -> None:
    reply = source_route_refusal("<@host.test:user@other.test> NOTIFY=NEVER")
    assert reply is not None
    assert (
        str(reply) == "550 5.7.1 <@host.test:user@other.test>: this relay does not forward source routes "
        "(@host:user@domain)"
    )
    assert source_route_refusal("< @host.test:u@o.test>") is not None
    assert source_route_refusal("<user@other.test>") is None
    assert source_route_refusal("user@other.test") is None


def test_sizes_and_recipient_counts() -> None:
    p = policy(max_message_size=10_000_000, max_recipients=3)
    assert p.size_refusal(10_000_000) is None
    reply = p.size_refusal(10_000_001)
    assert reply is not None
    assert (
        str(reply)
        == "552 5.3.4 Message too big: this relay accepts messages of at most 9.5 MB (10000000 bytes)"
    )
    assert str(policy().size_reply()).startswith("552 5.3.4 Message too big: ")
    assert "35 MB (36700160 bytes)" in str(policy().size_reply())
    assert p.recipients_refusal(2) is None
    assert str(p.recipients_refusal(3)) == "452 4.5.3 Too many recipients: at most 3 per message"


@pytest.mark.parametrize(
    "data",
    [
        b"Subject: a\r\n\r\nline\n.\nMAIL FROM:<x@y>\r\n",
        b"Subject: a\r\n\r\nline\r\n.\nMAIL FROM:<x@y>\r\n",
        b"Subject: a\r\n\r\nline\n.\r\nMAIL FROM:<x@y>\r\n",
        b"Subject: a\r\n\r\nline\r.\r\nMAIL FROM:<x@y>\r\n",
        b"Subject: a\r\n\r\nline\r\n.\rMAIL FROM:<x@y>\r\n",
        b"only LF\n",
        b"only CR\r",
        b"\n",
        b"\r",
        b"\r\r\n",
    ],
)
def test_bare_line_endings_are_refused(data: bytes) -> None:
    reply = bare_line_ending_refusal(data)
    assert reply is not None
    assert (reply.code, reply.status) == (550, "5.6.0")
    assert "Bare LF/CR not allowed" in reply.text


@pytest.mark.parametrize("data", [b"", b"a\r\n", b"a\r\n.\r\nb\r\n", b"\r\n\r\n", b"no line end"])
def test_crlf_only_data_passes(data: bytes) -> None:
    assert bare_line_ending_refusal(data) is None


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"max_message_size": 0}, "max message size must be at least"),
        ({"max_recipients": 0}, "max recipients must be at least 1"),
        ({"max_connections": 0}, "max connections must be at least 1"),
        ({"max_line_length": 10}, "max line length must be at least 78"),
        ({"idle_timeout": 0.0}, "idle timeout"),
        ({"allowed_recipient_domains": ()}, "at least one recipient domain"),
    ],
)
def test_unusable_limits_are_one_sentence(overrides: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        policy(**overrides)


def test_line_too_long_reply_names_the_limit() -> None:
    assert str(policy(max_line_length=2000).line_too_long_reply()) == (
        "500 5.5.2 Line too long: a line of a message may have at most 2000 characters"
    )


@pytest.mark.parametrize(
    ("data", "too_long"),
    [
        (b"", False),
        (b"x" * 998 + b"\r\n", False),
        (b"x" * 999 + b"\r\n", True),
        (b"a\r\n" + b"x" * 998 + b"\r\nb\r\n", False),
        (b"a\r\n" + b"x" * 999 + b"\r\nb\r\n", True),
        (b"a\r\n" + b"x" * 999, True),  # the last line, without its CRLF
        ((b"y" * 76 + b"\r\n") * 1000, False),
    ],
)
def test_long_lines_follow_rfc_5322(data: bytes, too_long: bool) -> None:
    reply = policy().long_line_refusal(data)
    assert (reply is not None) is too_long
    if reply is not None:
        assert (reply.code, reply.status) == (500, "5.5.2")


def test_long_line_limit_is_configurable() -> None:
    assert policy(max_line_length=2000).long_line_refusal(b"x" * 2000 + b"\r\n") is None
    assert policy(max_line_length=2000).long_line_refusal(b"x" * 2001 + b"\r\n") is not None
