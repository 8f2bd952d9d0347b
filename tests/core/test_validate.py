"""The input validators: what they accept, how they normalise, and the sentence they give when they refuse."""

from __future__ import annotations

import pytest

from relaywizard.core import validate
from relaywizard.core.validate import InvalidValue

# -- domain ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("contoso.com", "contoso.com"),
        ("  Contoso.COM  ", "contoso.com"),
        ("contoso.com.", "contoso.com"),
        ("mail.contoso.co.uk", "mail.contoso.co.uk"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("Bücher.example", "xn--bcher-kva.example"),
        ("bücher。example", "xn--bcher-kva.example"),
        ("a-b.contoso.com", "a-b.contoso.com"),
        ("3com.com", "3com.com"),
        (f"{'a' * 63}.com", f"{'a' * 63}.com"),
    ],
)
def test_domain_accepts_and_normalises(given: str, expected: str) -> None:
    assert validate.domain(given) == expected


@pytest.mark.parametrize(
    ("given", "fragments"),
    [
        ("contoso..com", ["'contoso..com' is not a valid domain name", "empty part"]),
        ("contoso", ["'contoso' is not a valid domain name", "at least one dot"]),
        ("-a.com", ["'-a.com'", "hyphen"]),
        ("a-.com", ["'a-.com'", "hyphen"]),
        ("a_b.com", ["'a_b.com'", "underscores"]),
        ("conto$o.com", ["'conto$o.com'", "only letters, digits, hyphens"]),
        ("contoso com", ["'contoso com'", "space"]),
        ("192.168.1.1", ["'192.168.1.1'", "IP address"]),
        ("contoso.123", ["'contoso.123'", "last part cannot be a number"]),
        (f"{'a' * 64}.com", ["63 characters"]),
        (".".join(["abcdefghi"] * 26), ["253 characters"]),
        ("", ["empty", "domain name"]),
        ("   ", ["empty"]),
    ],
)
def test_domain_refuses_with_a_sentence(given: str, fragments: list[str]) -> None:
    with pytest.raises(InvalidValue) as caught:
        validate.domain(given)
    for fragment in fragments:
        assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("given", "reason", "suggestion"),
    [
        ("http://contoso.com", "web address", "contoso.com"),
        ("https://Contoso.com/owa/", "web address", "contoso.com"),
        ("scan@contoso.com", "email address", "contoso.com"),
        ("contoso.com/path", "slash", "contoso.com"),
    ],
)
def test_domain_spots_common_mix_ups_and_suggests_the_domain(
    given: str, reason: str, suggestion: str
) -> None:
    with pytest.raises(InvalidValue) as caught:
        validate.domain(given)
    error = caught.value
    assert reason in str(error)
    assert error.suggestion == suggestion
    assert f"did you mean {suggestion!r}?" in str(error)
    assert suggestion in error.hint


def test_domain_refuses_what_is_not_text() -> None:
    with pytest.raises(InvalidValue, match="must be text"):
        validate.domain(42)  # type: ignore[arg-type]


def test_invalid_value_is_a_value_error_and_can_name_a_field() -> None:
    with pytest.raises(ValueError, match="not a valid domain name") as caught:
        validate.domain("contoso")
    assert isinstance(caught.value, InvalidValue)
    assert caught.value.requirement("profiles.a.domain").startswith(
        "profiles.a.domain must be a valid domain name, not 'contoso'"
    )


def test_long_values_are_shortened_in_messages() -> None:
    with pytest.raises(InvalidValue) as caught:
        validate.port("x" * 500)
    assert len(str(caught.value)) < 160


# -- email -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("scan@contoso.com", "scan@contoso.com"),
        (" Scan.Desk@Contoso.COM ", "Scan.Desk@contoso.com"),
        ("first.last+tag@contoso.com", "first.last+tag@contoso.com"),
        ("o'brien@contoso.com", "o'brien@contoso.com"),
        ("scan@bücher.example", "scan@xn--bcher-kva.example"),
    ],
)
def test_email_accepts_and_normalises_the_domain(given: str, expected: str) -> None:
    assert validate.email(given) == expected


@pytest.mark.parametrize(
    ("given", "fragments"),
    [
        ("scan.contoso.com", ["'scan.contoso.com' is not a valid email address", "no @"]),
        ("a@b@contoso.com", ["more than one @"]),
        ("@contoso.com", ["nothing comes before the @"]),
        ("scan@", ["the domain '' is not valid"]),
        ("scan@contoso", ["the domain 'contoso' is not valid", "at least one dot"]),
        ("scan@contoso..com", ["the domain 'contoso..com' is not valid", "empty part"]),
        ("scan desk@contoso.com", ["space"]),
        (".scan@contoso.com", ["not a usable name before the @"]),
        ("scan..desk@contoso.com", ["not a usable name before the @"]),
        ('"scan desk"@contoso.com', ["'\"scan desk\"@contoso.com'"]),
        (f"{'a' * 65}@contoso.com", ["longer than 64"]),
    ],
)
def test_email_refuses_with_a_sentence(given: str, fragments: list[str]) -> None:
    with pytest.raises(InvalidValue) as caught:
        validate.email(given)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_email_with_a_display_name_is_not_an_address() -> None:
    with pytest.raises(InvalidValue) as caught:
        validate.email("Scanner <scan@contoso.com>")
    assert "display name" in str(caught.value)
    assert caught.value.suggestion == "scan@contoso.com"


def test_email_mailto_link_suggests_the_address() -> None:
    with pytest.raises(InvalidValue) as caught:
        validate.email("mailto:scan@contoso.com")
    assert caught.value.suggestion == "scan@contoso.com"


def test_email_passes_on_the_domains_suggestion() -> None:
    with pytest.raises(InvalidValue) as caught:
        validate.email("scan@contoso.com/")
    assert caught.value.suggestion == "scan@contoso.com"


# -- port and numbers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "expected"), [(25, 25), ("587", 587), (" 2525 ", 2525), (65535, 65535)])
def test_port_accepts_numbers_and_text(given: str | int, expected: int) -> None:
    assert validate.port(given) == expected


@pytest.mark.parametrize("given", [0, 65536, -1, "abc", "", "25.5", "0x19", True, 25.0])
def test_port_refuses_with_the_range(given: object) -> None:
    with pytest.raises(InvalidValue, match="is not a port number from 1 to 65535"):
        validate.port(given)  # type: ignore[arg-type]


def test_port_message_names_the_value() -> None:
    with pytest.raises(InvalidValue) as caught:
        validate.port("abc")
    assert str(caught.value) == "'abc' is not a port number from 1 to 65535"
    assert (
        caught.value.requirement("smtp_port") == "smtp_port must be a port number from 1 to 65535, not 'abc'"
    )


def test_positive_int_bounds() -> None:
    assert validate.positive_int(0, "rate") == 0
    assert validate.positive_int("30", "rate") == 30
    assert validate.positive_int(100, "number of connections", 1, 100) == 100
    with pytest.raises(InvalidValue) as caught:
        validate.positive_int(101, "number of connections", 1, 100)
    assert str(caught.value) == (
        "101 is not a valid number of connections: it must be a whole number from 1 to 100"
    )
    with pytest.raises(InvalidValue, match="at least 0"):
        validate.positive_int(-1, "rate")
    with pytest.raises(InvalidValue, match="'fast' is not a valid rate"):
        validate.positive_int("fast", "rate")
    with pytest.raises(InvalidValue):
        validate.positive_int(True, "rate")


# -- hosts and addresses -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("smtp.office365.com", "smtp.office365.com"),
        ("SMTP.Office365.com.", "smtp.office365.com"),
        ("localhost", "localhost"),
        ("mailhost", "mailhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("2001:DB8::1", "2001:db8::1"),
        ("[::1]", "::1"),
    ],
)
def test_host_accepts_names_and_ip_literals(given: str, expected: str) -> None:
    assert validate.host(given) == expected


def test_host_refuses_a_port_and_suggests_the_name() -> None:
    with pytest.raises(InvalidValue) as caught:
        validate.host("smtp.office365.com:587")
    assert "includes a port" in str(caught.value)
    assert caught.value.suggestion == "smtp.office365.com"


@pytest.mark.parametrize("given", ["http://smtp.office365.com", "a_b", "-host", "", "1.2.3", "host name"])
def test_host_refuses(given: str) -> None:
    with pytest.raises(InvalidValue, match=r"is not a valid host name or IP address|empty"):
        validate.host(given)


@pytest.mark.parametrize(
    ("given", "default", "expected"),
    [
        ("smtp.office365.com", 587, ("smtp.office365.com", 587)),
        ("smtp.office365.com:25", 587, ("smtp.office365.com", 25)),
        ("127.0.0.1:2525", None, ("127.0.0.1", 2525)),
        ("0.0.0.0:25", None, ("0.0.0.0", 25)),
        ("[::1]:2525", None, ("::1", 2525)),
        ("[2001:db8::1]", 25, ("2001:db8::1", 25)),
        ("::1", 25, ("::1", 25)),
        ("localhost:1025", None, ("localhost", 1025)),
    ],
)
def test_host_port_forms(given: str, default: int | None, expected: tuple[str, int]) -> None:
    assert validate.host_port(given, default) == expected


@pytest.mark.parametrize(
    ("given", "default", "fragment"),
    [
        ("localhost", None, "the port is missing"),
        ("localhost:abc", None, "'abc' is not a port"),
        ("localhost:0", None, "'0' is not a port"),
        ("localhost:", None, "is not a port"),
        ("[::1:25", None, "brackets"),
        ("[::1]x", None, "brackets"),
        ("[contoso.com]:25", None, "only an IPv6 address"),
        ("a_b:25", None, "'a_b' is not a valid host"),
        ("1:2:3:zz", 25, "is not a host and port"),
    ],
)
def test_host_port_refuses(given: str, default: int | None, fragment: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        validate.host_port(given, default)
    assert fragment in str(caught.value)


def test_format_host_port_is_the_inverse() -> None:
    for text in ("127.0.0.1:2525", "[::1]:2525", "mail.contoso.com:25"):
        assert validate.format_host_port(*validate.host_port(text, None)) == text


def test_ip_address() -> None:
    assert validate.ip_address(" 203.0.113.10 ") == "203.0.113.10"
    assert validate.ip_address("2001:0DB8:0:0::1") == "2001:db8::1"
    with pytest.raises(InvalidValue, match=r"'203\.0\.113\.300' is not a valid IP address"):
        validate.ip_address("203.0.113.300")
    with pytest.raises(InvalidValue) as caught:
        validate.ip_address("203.0.113.10/32")
    assert caught.value.suggestion == "203.0.113.10"
    with pytest.raises(InvalidValue) as caught:
        validate.ip_address("203.0.113.10:25")
    assert "port" in str(caught.value)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("192.168.1.0/24", "192.168.1.0/24"),
        ("192.168.1.7", "192.168.1.7/32"),
        ("10.0.0.0/255.0.0.0", "10.0.0.0/8"),
        ("2001:DB8::/32", "2001:db8::/32"),
        ("::1", "::1/128"),
        ("0.0.0.0/0", "0.0.0.0/0"),
    ],
)
def test_cidr_normalises(given: str, expected: str) -> None:
    assert validate.cidr(given) == expected


def test_cidr_with_host_bits_names_the_network_it_probably_meant() -> None:
    with pytest.raises(InvalidValue) as caught:
        validate.cidr("192.168.1.5/24")
    message = str(caught.value)
    assert "'192.168.1.5/24' is not a valid network" in message
    assert "192.168.1.0/24" in message
    assert caught.value.suggestion == "192.168.1.0/24"


@pytest.mark.parametrize("given", ["192.168.1.0/33", "office", "", "192.168.1/24x"])
def test_cidr_refuses(given: str) -> None:
    with pytest.raises(InvalidValue, match=r"network|empty"):
        validate.cidr(given)


# -- names and choices -------------------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["scanner", "Scanner-2", "a", "9", "front.desk_printer", "a" * 64])
def test_profile_name_accepts(given: str) -> None:
    assert validate.profile_name(given) == given


@pytest.mark.parametrize(
    ("given", "suggestion"),
    [("my scanner", "my-scanner"), ("-scanner", "scanner"), ("", None), ("a" * 65, "a" * 64), ("ü", None)],
)
def test_profile_name_refuses_and_suggests(given: str, suggestion: str | None) -> None:
    with pytest.raises(InvalidValue) as caught:
        validate.profile_name(given)
    assert "is not a valid profile name" in str(caught.value)
    assert caught.value.suggestion == suggestion


def test_choice_returns_the_canonical_spelling() -> None:
    methods = ["smtp-auth", "direct-send", "connector"]
    assert validate.choice(" SMTP-Auth ", methods, "sending method") == "smtp-auth"
    with pytest.raises(InvalidValue) as caught:
        validate.choice("smtp", methods, "sending method")
    assert str(caught.value) == "'smtp' is not a valid sending method; did you mean 'smtp-auth'?"
    with pytest.raises(InvalidValue) as caught:
        validate.choice("carrier pigeon", methods, "sending method")
    assert str(caught.value) == (
        "'carrier pigeon' is not a valid sending method; choose 'smtp-auth', 'direct-send' or 'connector'"
    )
    assert caught.value.requirement("method") == (
        "method must be one of 'smtp-auth', 'direct-send' or 'connector', not 'carrier pigeon'"
    )
