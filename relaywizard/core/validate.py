"""Small pure functions that normalise what a person typed, or say in one sentence what is wrong with it.

Every function returns the normalised value or raises ``InvalidValue``, whose ``str()`` is one readable
sentence naming the bad value. The CLI, the wizard and the settings file all use them, so a value is
judged the same way wherever it was typed.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

__all__ = [
    "InvalidValue",
    "choice",
    "cidr",
    "domain",
    "email",
    "format_host_port",
    "host",
    "host_port",
    "ip_address",
    "port",
    "positive_int",
    "profile_name",
    "show",
]

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# RFC 5321 dot-atom: the local parts a device or a mailbox really uses; quoted local parts are refused.
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DISPLAY_NAME = re.compile(r"^(?P<name>.*?)\s*<(?P<address>[^<>]*)>\s*$")
# Dots that IDNA treats as label separators (ideographic and full-width full stops).
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})

_MAX_SHOWN = 80


class InvalidValue(ValueError):
    """A value a person gave is not acceptable; ``str()`` is one sentence that names it.

    ``expected`` is the noun phrase of what was wanted ("a port number from 1 to 65535"), ``reason``
    an optional detail ("underscores are not allowed"), and ``suggestion`` the value the person probably
    meant, when one can be guessed (a GUI can offer it as a button).
    """

    def __init__(
        self,
        value: object,
        expected: str,
        *,
        reason: str = "",
        suggestion: str | None = None,
        message: str | None = None,
    ) -> None:
        self.value = value
        self.expected = expected
        self.reason = reason
        self.suggestion = suggestion
        self.message = message or self._sentence(f"{show(value)} is not {expected}")
        super().__init__(self.message)

    @property
    def hint(self) -> str:
        """What to type instead, when it can be guessed; else empty."""
        return f"Use {self.suggestion!r} instead." if self.suggestion is not None else ""

    def requirement(self, field: str) -> str:
        """The same judgement phrased about a named field: "port must be ..., not 'abc'"."""
        return self._sentence(f"{field} must be {self.expected}, not {show(self.value)}")

    def _sentence(self, head: str) -> str:
        text = head
        if self.reason:
            text += f" ({self.reason})"
        if self.suggestion is not None:
            text += f"; did you mean {self.suggestion!r}?"
        return text


def show(value: object) -> str:
    """A value quoted for a message, shortened when it is long."""
    text = repr(value)
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 4] + "...'"
    return text


def _text(value: object, expected: str) -> str:
    if not isinstance(value, str):
        raise InvalidValue(value, expected, reason="it must be text")
    text = value.strip()
    if not text:
        raise InvalidValue(value, expected, message=f"The value is empty; {expected} is needed")
    return text


# -- names -------------------------------------------------------------------------------------------------


def domain(s: str) -> str:
    """A domain name such as ``contoso.com``: lower-cased, IDNA-encoded, without a trailing dot."""
    expected = "a valid domain name"
    text = _text(s, expected)
    _refuse_common_mix_ups(s, text, expected)
    return _hostname(s, text, expected, min_labels=2)


def host(s: str) -> str:
    """A host to connect to: a host name (``mail``, ``smtp.office365.com``), ``localhost`` or an IP."""
    expected = "a valid host name or IP address"
    text = _text(s, expected)
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if ":" in text and "://" not in text and text.count(":") == 1:
        name, _, maybe_port = text.partition(":")
        if maybe_port.isdigit():
            raise InvalidValue(
                s, expected, reason="it includes a port; give the port separately", suggestion=name
            )
    _refuse_common_mix_ups(s, text, expected)
    return _hostname(s, text, expected, min_labels=1)


def _refuse_common_mix_ups(original: str, text: str, expected: str) -> None:
    """Catch the usual things typed where a domain belongs: a web address, an email address, a path."""
    if "://" in text:
        name = urlsplit(text).hostname or ""
        raise InvalidValue(original, expected, reason="it is a web address", suggestion=name or None)
    if "@" in text:
        after = text.rpartition("@")[2].strip(" >")
        raise InvalidValue(original, expected, reason="it is an email address", suggestion=after or None)
    if "/" in text or "\\" in text:
        raise InvalidValue(
            original, expected, reason="it contains a slash", suggestion=re.split(r"[/\\]", text)[0] or None
        )
    if any(c.isspace() for c in text):
        raise InvalidValue(original, expected, reason="it contains a space")


def _hostname(original: str, text: str, expected: str, *, min_labels: int) -> str:
    name = text.translate(_DOTS)
    if name.endswith(".") and not name.endswith(".."):
        name = name[:-1]
    labels = name.split(".")
    if any(not label for label in labels):
        raise InvalidValue(original, expected, reason="it has an empty part between two dots")
    if all(label.isdigit() for label in labels):
        raise InvalidValue(original, expected, reason="it looks like an IP address")
    ascii_labels = [_ascii_label(original, label.lower(), expected) for label in labels]
    if len(ascii_labels) < min_labels:
        raise InvalidValue(original, expected, reason="it needs at least one dot, as in contoso.com")
    if ascii_labels[-1].isdigit():
        raise InvalidValue(original, expected, reason="its last part cannot be a number")
    result = ".".join(ascii_labels)
    if len(result) > 253:
        raise InvalidValue(original, expected, reason="it is longer than 253 characters")
    return result


def _ascii_label(original: str, label: str, expected: str) -> str:
    if not label.isascii():
        try:
            label = label.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidValue(
                original, expected, reason=f"{label!r} cannot be written as an international name"
            ) from None
    if len(label) > 63:
        raise InvalidValue(original, expected, reason="each part between dots is at most 63 characters")
    if _LABEL.fullmatch(label):
        return label
    if "_" in label:
        reason = "underscores are not allowed"
    elif label.startswith("-") or label.endswith("-"):
        reason = "a part cannot start or end with a hyphen"
    else:
        reason = "only letters, digits, hyphens and dots are allowed"
    raise InvalidValue(original, expected, reason=reason)


def email(s: str) -> str:
    """A plain email address ``name@contoso.com``; the domain is normalised, the local part kept as typed."""
    expected = "a valid email address"
    text = _text(s, expected)
    if text.lower().startswith("mailto:"):
        raise InvalidValue(s, expected, reason="it is a mailto link", suggestion=text[7:])
    quoted = _DISPLAY_NAME.match(text)
    if quoted:
        inner = quoted["address"].strip()
        raise InvalidValue(s, expected, reason="it includes a display name", suggestion=inner or None)
    if text.count("@") == 0:
        raise InvalidValue(s, expected, reason="it has no @")
    if text.count("@") > 1:
        raise InvalidValue(s, expected, reason="it has more than one @")
    local, _, dom = text.partition("@")
    if not local:
        raise InvalidValue(s, expected, reason="nothing comes before the @")
    if any(c.isspace() for c in text):
        raise InvalidValue(s, expected, reason="it contains a space")
    if len(local) > 64:
        raise InvalidValue(s, expected, reason="the part before the @ is longer than 64 characters")
    if not _LOCAL_PART.fullmatch(local):
        raise InvalidValue(s, expected, reason=f"{local!r} is not a usable name before the @")
    try:
        normalised = domain(dom)
    except InvalidValue as exc:
        detail = f": {exc.reason}" if exc.reason else ""
        suggestion = f"{local}@{exc.suggestion}" if exc.suggestion else None
        raise InvalidValue(
            s, expected, reason=f"the domain {show(dom)} is not valid{detail}", suggestion=suggestion
        ) from None
    return f"{local}@{normalised}"


def profile_name(s: str) -> str:
    """A profile's name: a letter or digit, then up to 63 letters, digits, dots, hyphens or underscores."""
    expected = "a valid profile name"
    if not isinstance(s, str):
        raise InvalidValue(s, expected, reason="it must be text")
    if _PROFILE_NAME.fullmatch(s):
        return s
    if not s:
        reason = "it is empty"
    elif len(s) > 64:
        reason = "it is longer than 64 characters"
    else:
        reason = "use a letter or digit first, then letters, digits, dots, hyphens or underscores"
    suggestion = re.sub(r"[^A-Za-z0-9._-]+", "-", s.strip()).strip("._-")[:64] or None
    raise InvalidValue(s, expected, reason=reason, suggestion=suggestion if suggestion != s else None)


# -- numbers -----------------------------------------------------------------------------------------------


def _whole_number(value: object, expected: str) -> int:
    if isinstance(value, bool):
        raise InvalidValue(value, expected)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    raise InvalidValue(value, expected)


def port(value: str | int) -> int:
    """A TCP port number from 1 to 65535, given as a number or as text."""
    expected = "a port number from 1 to 65535"
    number = _whole_number(value, expected)
    if not 1 <= number <= 65535:
        raise InvalidValue(value, expected)
    return number


def positive_int(value: str | int, what: str, minimum: int = 0, maximum: int | None = None) -> int:
    """A whole number within bounds; ``what`` names it in the message ("number of connections")."""
    if maximum is None:
        expected = f"a whole number of at least {minimum}"
    else:
        expected = f"a whole number from {minimum} to {maximum}"
    message = f"{show(value)} is not a valid {what}: it must be {expected}"
    try:
        number = _whole_number(value, expected)
    except InvalidValue:
        raise InvalidValue(value, expected, message=message) from None
    if number < minimum or (maximum is not None and number > maximum):
        raise InvalidValue(value, expected, message=message)
    return number


# -- addresses ---------------------------------------------------------------------------------------------


def ip_address(s: str) -> str:
    """An IPv4 or IPv6 address, in its normal written form."""
    expected = "a valid IP address"
    text = _text(s, expected)
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if "/" in text:
        address = text.partition("/")[0]
        raise InvalidValue(s, expected, reason="it is a network, not one address", suggestion=address)
    if text.count(":") == 1 and text.partition(":")[2].isdigit():
        raise InvalidValue(s, expected, reason="it includes a port", suggestion=text.partition(":")[0])
    raise InvalidValue(s, expected)


def cidr(s: str) -> str:
    """An IPv4 or IPv6 network such as ``192.168.1.0/24``; a bare address becomes a /32 or /128."""
    expected = "a valid network in CIDR form"
    text = _text(s, expected)
    try:
        return str(ipaddress.ip_network(text, strict=True))
    except ValueError:
        pass
    try:
        meant = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidValue(s, expected) from None
    raise InvalidValue(
        s,
        expected,
        reason=f"{text.partition('/')[0]} is one address inside {meant}, not the network itself",
        suggestion=str(meant),
    )


DEVICE_LOGIN_PREFIX = "login:"


def device(s: str) -> str:
    """An office device as the relay's sender map names it: ``192.168.1.10``, ``192.168.1.0/24`` or
    ``login:frontdesk`` (the device account it signs in with)."""
    expected = (
        "a device: its address (192.168.1.10), its network (192.168.1.0/24) or its account (login:NAME)"
    )
    text = _text(s, expected)
    if text.lower().startswith(DEVICE_LOGIN_PREFIX):
        login = text[len(DEVICE_LOGIN_PREFIX) :].strip()
        if not login or any(c.isspace() for c in login):
            raise InvalidValue(s, expected, reason="login: must be followed by the account's name")
        return DEVICE_LOGIN_PREFIX + login
    if "/" in text:
        return cidr(text)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise InvalidValue(s, expected) from None


def host_port(s: str, default_port: int | None) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or ``v4:port`` as (host, port); the port may be implied."""
    expected = "a host and port such as 127.0.0.1:2525"
    text = _text(s, expected)
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise InvalidValue(s, expected, reason="the brackets around the IPv6 address do not match")
        name, port_text = inside, rest[1:] if rest else None
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            raise InvalidValue(s, expected, reason="only an IPv6 address goes between brackets") from None
    elif text.count(":") > 1:
        name, port_text = text, None  # a bare IPv6 address: its colons are not a port separator
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            raise InvalidValue(s, expected) from None
    else:
        name, colon, after = text.partition(":")
        port_text = after if colon else None
    if port_text is None:
        if default_port is None:
            raise InvalidValue(s, expected, reason="the port is missing")
        number = default_port
    else:
        try:
            number = port(port_text)
        except InvalidValue:
            raise InvalidValue(s, expected, reason=f"{port_text!r} is not a port from 1 to 65535") from None
    try:
        normalised = host(name)
    except InvalidValue as exc:
        detail = f": {exc.reason}" if exc.reason else ""
        raise InvalidValue(s, expected, reason=f"{show(name)} is not a valid host{detail}") from None
    return normalised, number


def format_host_port(host_name: str, port_number: int) -> str:
    """The inverse of ``host_port``: brackets around an IPv6 address."""
    return f"[{host_name}]:{port_number}" if ":" in host_name else f"{host_name}:{port_number}"


# -- choices -----------------------------------------------------------------------------------------------


def choice(s: str, allowed: Sequence[str], what: str) -> str:
    """One of ``allowed`` (case and surrounding spaces ignored), in its canonical spelling."""
    options = _or_list(allowed)
    expected = f"one of {options}"
    if isinstance(s, str):
        wanted = s.strip().lower()
        for option in allowed:
            if option.lower() == wanted:
                return option
        close = difflib.get_close_matches(wanted, [o.lower() for o in allowed], n=1, cutoff=0.6)
        suggestion = next((o for o in allowed if close and o.lower() == close[0]), None)
    else:
        suggestion = None
    message = f"{show(s)} is not a valid {what}; choose {options}"
    if suggestion is not None:
        message = f"{show(s)} is not a valid {what}; did you mean {suggestion!r}?"
    raise InvalidValue(s, expected, suggestion=suggestion, message=message)


def _or_list(items: Sequence[str]) -> str:
    quoted = [repr(item) for item in items]
    if len(quoted) <= 1:
        return "".join(quoted)
    return f"{', '.join(quoted[:-1])} or {quoted[-1]}"
