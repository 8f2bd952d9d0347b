"""The settings file: profiles for sending through Microsoft 365 and the relay's own settings, as TOML.

The file never holds a secret: any key that looks like one is refused on load and on save, and the
person is sent to the OS keyring (``relaywizard secret set --profile NAME``). Values are checked with
``relaywizard.core.validate`` when the file is loaded and again before it is saved, and every problem
names the file and the setting by its dotted path. Unknown keys are errors, so a typo cannot silently
fall back to a default.

The file is versioned: ``MIGRATIONS`` turns a document of one version into the next, and ``load``
applies them in order; a file newer than this program is refused untouched. ``save`` replaces the file
atomically (temporary file, fsync, rename, fsync of the folder) with mode 0600.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import difflib
import json
import os
import re
import tempfile
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import tomli_w

from relaywizard.core import validate
from relaywizard.core.errors import SettingsFileError, SettingsValidationError
from relaywizard.core.validate import InvalidValue, show

__all__ = [
    "AUTH_KINDS",
    "CURRENT_VERSION",
    "DEFAULT_CONNECTIONS",
    "DEFAULT_LISTEN",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_RATE",
    "METHODS",
    "MIGRATIONS",
    "TLS_MODES",
    "Profile",
    "RelaySettings",
    "Settings",
    "dumps",
    "implied_auth",
    "load",
    "looks_like_secret",
    "migrate",
    "parse",
    "save",
    "to_document",
]

CURRENT_VERSION = 1

METHODS = ("smtp-auth", "direct-send", "connector")
AUTH_KINDS = ("password", "oauth-app", "oauth-delegated", "none")
TLS_MODES = ("starttls", "implicit", "none")
BARE_LF_MODES = ("refuse", "normalize")
# Direct Send and a connector relay do not sign in, so only they may go without AUTH or without TLS.
UNAUTHENTICATED_METHODS = ("direct-send", "connector")
OAUTH_KINDS = ("oauth-app", "oauth-delegated")
# Tenant aliases that only make sense when a person signs in; client credentials need a real tenant.
MULTI_TENANT_ALIASES = ("common", "organizations", "consumers")

DEFAULT_LISTEN_PORT = 2525
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_LISTEN_PORT}"
DEFAULT_RATE = 30  # Microsoft's SMTP AUTH limit: 30 messages a minute per mailbox
DEFAULT_CONNECTIONS = 3  # Microsoft's limit of concurrent SMTP AUTH connections per mailbox
DEFAULT_MAX_MESSAGE_SIZE = 36_700_160  # 35 MiB, Exchange Online's default send size
MAX_RATE = 10_000
MAX_CONNECTIONS = 100
MIN_MESSAGE_SIZE = 1024
MAX_MESSAGE_SIZE = 157_286_400  # 150 MiB, the most Exchange Online accepts

_HEADER = (
    "# relaywizard settings.\n"
    "# Secrets are never kept here: store them in the OS keyring with\n"
    "#   relaywizard secret set --profile NAME\n\n"
)

T = TypeVar("T")


def implied_auth(method: str) -> str:
    """How a profile of this method signs in when the file does not say: a password for SMTP AUTH."""
    if isinstance(method, str) and method.strip().lower() in UNAUTHENTICATED_METHODS:
        return "none"
    return "password"


@dataclass(slots=True, kw_only=True)
class Profile:
    """One way of sending through Microsoft 365: a method, a domain, and how to sign in."""

    name: str
    method: str = "smtp-auth"
    domain: str  # kw_only allows a required field after defaulted ones
    user: str | None = None  # the mailbox to authenticate as
    sender: str | None = None  # rewrite the envelope sender (and a foreign From) to this mailbox
    auth: str = ""  # "" means implied by the method, filled in at construction
    tenant: str | None = None
    client_id: str | None = None
    authority: str | None = None
    smtp_host: str | None = None  # None: implied by the method (smtp.office365.com, or the MX)
    smtp_port: int | None = None  # None: implied by the method (587 or 25)
    tls: str = "starttls"
    ca_file: str | None = None
    relay_ip: str | None = None  # the office's public IP, checked against SPF
    app_valid_until: str | None = None  # oauth-app: the day its client secret expires (YYYY-MM-DD)

    def __post_init__(self) -> None:
        if not self.auth:
            self.auth = implied_auth(self.method)


@dataclass(slots=True, kw_only=True)
class RelaySettings:
    """The local relay: where devices connect, who may send, and how fast mail goes upstream."""

    profile: str | None = None  # the upstream profile's name; None: Settings.default_profile
    listen: str = DEFAULT_LISTEN
    allow: list[str] = field(default_factory=list)  # networks that may send without AUTH
    spool: str | None = None  # None: the platform's data folder
    rate: int = DEFAULT_RATE  # messages a minute per mailbox, 0 = no pacing
    connections: int = DEFAULT_CONNECTIONS
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    devices: list[str] = field(default_factory=list)  # device logins; passwords in the keyring
    auth_networks: list[str] = field(default_factory=list)  # where AUTH without TLS is allowed
    recipient_domains: list[str] = field(default_factory=list)  # internal-only mode when not empty
    tls_cert: str | None = None  # PEM certificate chain for STARTTLS offered to devices
    tls_key: str | None = None
    senders: dict[str, str] = field(default_factory=dict)  # device (address, network, login:NAME) -> sender
    bare_lf: str = "refuse"  # a message with LF-only line ends: "refuse" (550 5.6.0) or "normalize" to CRLF


@dataclass(slots=True, kw_only=True)
class Settings:
    """Everything in the settings file."""

    version: int = CURRENT_VERSION
    profiles: dict[str, Profile] = field(default_factory=dict)
    relay: RelaySettings = field(default_factory=RelaySettings)
    default_profile: str | None = None

    def profile(self, name: str) -> Profile:
        """The profile called ``name``; a ``SettingsValidationError`` naming the known ones if none is."""
        try:
            return self.profiles[name]
        except KeyError:
            raise _no_such_profile(self, name) from None

    def set_profile(self, profile: Profile) -> None:
        """Add ``profile``, or replace the one of the same name."""
        self.profiles[profile.name] = profile

    def remove_profile(self, name: str) -> None:
        """Remove a profile, and every reference to it (the default, the relay's upstream)."""
        if name not in self.profiles:
            raise _no_such_profile(self, name)
        del self.profiles[name]
        if self.default_profile == name:
            self.default_profile = None
        if self.relay.profile == name:
            self.relay.profile = None

    def relay_profile(self) -> Profile | None:
        """The profile the relay forwards through: ``relay.profile``, else the default, else None."""
        name = self.relay.profile or self.default_profile
        return self.profile(name) if name else None

    def validated(self, source: str = "settings") -> Settings:
        """A checked, normalised copy; ``SettingsValidationError`` naming ``source`` and the field if not."""
        return _Checker(source).settings(self)


def _no_such_profile(settings: Settings, name: str) -> SettingsValidationError:
    if settings.profiles:
        known = ", ".join(repr(known) for known in settings.profiles)
        message = f"There is no profile named {name!r}; the profiles are {known}"
        hint = "Check the spelling of the profile's name."
    else:
        message = f"There is no profile named {name!r}; no profiles are set up yet"
        hint = "Run the setup wizard (relaywizard) to create one."
    return SettingsValidationError(_path("profiles", name), message, hint=hint)


# -- checking values ---------------------------------------------------------------------------------------


def _key(name: str) -> str:
    """A key as TOML would write it in a dotted path: bare when it can be, else quoted."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def _path(*parts: str) -> str:
    return ".".join(_key(part) for part in parts)


def _path_text(value: object) -> str:
    """A file or folder path as written in the settings file (``~`` is left for the user of the value)."""
    expected = "a file or folder path"
    if not isinstance(value, str):
        raise InvalidValue(value, expected, reason="it must be text in quotes")
    text = value.strip()
    if "\x00" in text:
        raise InvalidValue(value, expected, reason="it contains a NUL character")
    return text


def _iso_date(value: object) -> str:
    """A day as YYYY-MM-DD (TOML's own dates are accepted too)."""
    expected = "a date such as 2027-06-30"
    if isinstance(value, dt.date):
        return value.isoformat()[:10]
    if not isinstance(value, str):
        raise InvalidValue(value, expected, reason="it must be text in quotes or a TOML date")
    try:
        return dt.date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise InvalidValue(value, expected, reason="it is not a calendar date (YYYY-MM-DD)") from None


def _identifier(value: object) -> str:
    """A tenant or client id: a GUID or a name such as contoso.onmicrosoft.com, in URL-safe characters."""
    expected = "a tenant or application id (a GUID or a name such as contoso.onmicrosoft.com)"
    if not isinstance(value, str):
        raise InvalidValue(value, expected, reason="it must be text in quotes")
    text = value.strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,253}", text):
        raise InvalidValue(value, expected, reason="only letters, digits, dots, hyphens and underscores")
    return text


def _authority(value: object) -> str:
    """An OAuth authority: an https URL with a host and a path, without a query."""
    expected = "an https URL such as https://login.microsoftonline.com/contoso.onmicrosoft.com"
    if not isinstance(value, str):
        raise InvalidValue(value, expected, reason="it must be text in quotes")
    text = value.strip().rstrip("/")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise InvalidValue(value, expected) from None
    if parts.scheme.lower() != "https":
        raise InvalidValue(value, expected, reason="it must start with https://")
    if not parts.hostname or parts.query or parts.fragment or parts.username:
        raise InvalidValue(value, expected)
    return text


def _is_blank(value: Any) -> bool:
    """Unset: TOML has no null, and a cleared text box gives ''."""
    return value is None or (isinstance(value, str) and not value.strip())


class _Checker:
    """Checks and normalises a ``Settings``; every error names ``source`` and the field's path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str, hint: str = "") -> NoReturn:
        raise SettingsValidationError(path, f"{self.source}: {message}", hint=hint)

    def value(self, path: str, check: Callable[[Any], T], value: Any) -> T:
        try:
            return check(value)
        except InvalidValue as exc:
            raise SettingsValidationError(
                path, f"{self.source}: {exc.requirement(path)}", hint=exc.hint
            ) from None

    def optional(self, path: str, check: Callable[[Any], T], value: Any) -> T | None:
        if _is_blank(value):
            return None
        return self.value(path, check, value)

    def settings(self, settings: Settings) -> Settings:
        profiles: dict[str, Profile] = {}
        for key, profile in settings.profiles.items():
            checked = self.profile(key, profile)
            profiles[checked.name] = checked
        names = list(profiles)
        default = self.optional("default_profile", validate.profile_name, settings.default_profile)
        if default is not None and default not in profiles:
            self.fail(
                "default_profile",
                f"default_profile names the profile {default!r}, which does not exist ({_known(names)})",
                hint=f"Add a [profiles.{_key(default)}] table, or change default_profile.",
            )
        return Settings(
            version=CURRENT_VERSION,
            profiles=profiles,
            relay=self.relay(settings.relay, names),
            default_profile=default,
        )

    def profile(self, key: str, p: Profile) -> Profile:
        base = _path("profiles", key)
        if not isinstance(p, Profile):
            self.fail(base, f"{base} must be a profile, not {show(p)}")
        name = self.value(base, validate.profile_name, key)

        def at(field_name: str) -> str:
            return f"{base}.{field_name}"

        if p.name != key:
            self.fail(base, f"{base} holds a profile named {p.name!r}; the key and the name must match")
        method = self.value(at("method"), lambda v: validate.choice(v, METHODS, "sending method"), p.method)
        if _is_blank(p.domain):
            self.fail(
                at("domain"),
                f"{at('domain')} is missing; every profile needs the mail domain it sends for",
                hint='Add a line such as domain = "contoso.com".',
            )
        auth = self.value(at("auth"), lambda v: validate.choice(v, AUTH_KINDS, "sign-in method"), p.auth)
        tls = self.value(at("tls"), lambda v: validate.choice(v, TLS_MODES, "TLS mode"), p.tls)
        checked = Profile(
            name=name,
            method=method,
            domain=self.value(at("domain"), validate.domain, p.domain),
            user=self.optional(at("user"), validate.email, p.user),
            sender=self.optional(at("sender"), validate.email, p.sender),
            auth=auth,
            tenant=self.optional(at("tenant"), _identifier, p.tenant),
            client_id=self.optional(at("client_id"), _identifier, p.client_id),
            authority=self.optional(at("authority"), _authority, p.authority),
            smtp_host=self.optional(at("smtp_host"), validate.host, p.smtp_host),
            smtp_port=self.optional(at("smtp_port"), validate.port, p.smtp_port),
            tls=tls,
            ca_file=self.optional(at("ca_file"), _path_text, p.ca_file),
            relay_ip=self.optional(at("relay_ip"), validate.ip_address, p.relay_ip),
            app_valid_until=self.optional(at("app_valid_until"), _iso_date, p.app_valid_until),
        )
        self.profile_rules(base, checked)
        return checked

    def profile_rules(self, base: str, p: Profile) -> None:
        """The rules between fields of one profile."""
        signs_in = p.method not in UNAUTHENTICATED_METHODS
        if signs_in and p.auth == "none":
            self.fail(
                f"{base}.auth",
                f"{base}.auth = 'none' only works with direct-send or connector; "
                f"{p.method} must sign in with 'password', 'oauth-app' or 'oauth-delegated'",
            )
        if not signs_in and p.auth != "none":
            self.fail(
                f"{base}.auth",
                f"{base}.auth must be 'none' for {p.method}, which does not sign in, not {p.auth!r}",
                hint='Remove the auth line, or use method = "smtp-auth" to sign in to a mailbox.',
            )
        if signs_in and p.tls == "none":
            self.fail(
                f"{base}.tls",
                f"{base}.tls = 'none' only works with direct-send or connector; "
                f"Microsoft 365 refuses to sign in without TLS",
                hint='Use tls = "starttls".',
            )
        if signs_in and p.user is None:
            self.fail(
                f"{base}.user",
                f"{base}.user is missing; {p.method} signs in as a mailbox",
                hint='Add a line such as user = "scanner@contoso.com".',
            )
        if p.auth in OAUTH_KINDS:
            if p.client_id is None:
                self.fail(
                    f"{base}.client_id",
                    f"{base}.client_id is missing; {p.auth} needs the application (client) id from Entra",
                )
            if p.tenant is None and p.authority is None:
                self.fail(
                    f"{base}.tenant",
                    f"{base}.tenant is missing; {p.auth} needs the Entra tenant (or an authority URL)",
                )
            if p.auth == "oauth-app" and p.authority is None and p.tenant in MULTI_TENANT_ALIASES:
                self.fail(
                    f"{base}.tenant",
                    f"{base}.tenant must be a real tenant for oauth-app, not {p.tenant!r}",
                    hint="Use the tenant id (a GUID) or a domain such as contoso.onmicrosoft.com.",
                )

    def unique_list(
        self, name: str, values: Any, check: Callable[[str], str], what: str, example: str
    ) -> list[str]:
        """A list setting, each item checked and normalised, duplicates dropped."""
        if not isinstance(values, list | tuple):
            self.fail(name, f"{name} must be a list of {what} such as {example}, not {show(values)}")
        result: list[str] = []
        for index, item in enumerate(values):
            normalised = self.value(f"{name}[{index}]", check, item)
            if normalised not in result:
                result.append(normalised)
        return result

    def sender_map(self, name: str, values: Any) -> dict[str, str]:
        """``[relay.senders]``: each device (address, network or login:NAME) and the address it sends as."""
        if not isinstance(values, Mapping):
            self.fail(name, f'{name} must be a table such as {{ "192.168.1.10" = "scans@contoso.com" }}')
        result: dict[str, str] = {}
        for key, sender in values.items():
            path = f'{name}."{key}"'
            result[self.value(path, validate.device, key)] = self.value(path, validate.email, sender)
        return result

    def relay(self, relay: RelaySettings, profiles: list[str]) -> RelaySettings:
        profile = self.optional("relay.profile", validate.profile_name, relay.profile)
        if profile is not None and profile not in profiles:
            self.fail(
                "relay.profile",
                f"relay.profile names the profile {profile!r}, which does not exist ({_known(profiles)})",
                hint=f"Add a [profiles.{_key(profile)}] table, or change relay.profile.",
            )
        listen = self.optional(
            "relay.listen", lambda v: validate.host_port(v, DEFAULT_LISTEN_PORT), relay.listen
        )
        allow = self.unique_list("relay.allow", relay.allow, validate.cidr, "networks", '["192.168.1.0/24"]')
        tls_cert = self.optional("relay.tls_cert", _path_text, relay.tls_cert)
        tls_key = self.optional("relay.tls_key", _path_text, relay.tls_key)
        if (tls_cert is None) != (tls_key is None):
            self.fail(
                "relay.tls_cert",
                "relay.tls_cert and relay.tls_key go together: give both, or neither",
            )
        return RelaySettings(
            devices=self.unique_list(
                "relay.devices", relay.devices, validate.profile_name, "device logins", '["scanner1"]'
            ),
            auth_networks=self.unique_list(
                "relay.auth_networks", relay.auth_networks, validate.cidr, "networks", '["192.168.1.0/24"]'
            ),
            recipient_domains=self.unique_list(
                "relay.recipient_domains",
                relay.recipient_domains,
                validate.domain,
                "domains",
                '["contoso.com"]',
            ),
            tls_cert=tls_cert,
            tls_key=tls_key,
            senders=self.sender_map("relay.senders", relay.senders),
            profile=profile,
            listen=validate.format_host_port(*listen) if listen else DEFAULT_LISTEN,
            allow=allow,
            spool=self.optional("relay.spool", _path_text, relay.spool),
            rate=self.value(
                "relay.rate", lambda v: validate.positive_int(v, "rate", 0, MAX_RATE), relay.rate
            ),
            connections=self.value(
                "relay.connections",
                lambda v: validate.positive_int(v, "number of connections", 1, MAX_CONNECTIONS),
                relay.connections,
            ),
            max_message_size=self.value(
                "relay.max_message_size",
                lambda v: validate.positive_int(v, "message size", MIN_MESSAGE_SIZE, MAX_MESSAGE_SIZE),
                relay.max_message_size,
            ),
            bare_lf=self.value(
                "relay.bare_lf",
                lambda v: validate.choice(v, BARE_LF_MODES, "bare LF handling"),
                relay.bare_lf,
            ),
        )


def _known(names: list[str]) -> str:
    if not names:
        return "no profiles are set up"
    return "the profiles are " + ", ".join(repr(name) for name in names)


# -- secrets -----------------------------------------------------------------------------------------------

_SECRET_PARTS = ("password", "passwd", "passphrase", "secret", "token", "apikey", "privatekey", "credential")
_SECRET_NAMES = ("pass", "pwd", "pw", "key", "pin", "bearer", "cookie")


def looks_like_secret(key: str) -> bool:
    """Whether a key's name suggests it holds a secret (``password``, ``client_secret``, ``api-key`` ...)."""
    squashed = re.sub(r"[^a-z0-9]", "", key.lower())
    return squashed in _SECRET_NAMES or any(part in squashed for part in _SECRET_PARTS)


def _secret_paths(node: Any, parts: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            here = (*parts, str(key))
            # A profile may be called "token"; it is a table of settings, not a value.
            is_profile_table = parts == ("profiles",) and isinstance(value, Mapping)
            if looks_like_secret(str(key)) and not is_profile_table:
                yield here
            else:
                yield from _secret_paths(value, here)
    elif isinstance(node, list | tuple):
        for item in node:
            yield from _secret_paths(item, parts)


def _refuse_secrets(document: Mapping[str, Any], source: str) -> None:
    parts = next(_secret_paths(document), None)
    if parts is not None:
        path = _path(*parts)
        profile = parts[1] if len(parts) > 2 and parts[0] == "profiles" else "NAME"
        raise SettingsValidationError(
            path,
            f"{source}: {path} looks like a secret, and secrets never go in the settings file; "
            f"store it in the OS keyring with `relaywizard secret set --profile {profile}` instead",
            hint="Remove that line from the file.",
            title="Secret in the settings file",
        )


# -- versions ----------------------------------------------------------------------------------------------


def _v0_to_v1(document: dict[str, Any]) -> dict[str, Any]:
    """Files written before versioning had the version-1 layout; they only gain ``version = 1``."""
    return {"version": 1, **{key: value for key, value in document.items() if key != "version"}}


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _v0_to_v1}


def _version_of(document: Mapping[str, Any], source: str) -> int:
    version = document.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise SettingsValidationError(
            "version",
            f"{source}: version must be a whole number such as {CURRENT_VERSION}, not {show(version)}",
        )
    if version > CURRENT_VERSION:
        raise SettingsFileError(
            f"{source} was written by a newer relaywizard (settings version {version}; this one "
            f"understands up to {CURRENT_VERSION}), so it was not used and nothing was changed",
            hint="Update relaywizard on this computer, or use a separate settings file.",
            title="Settings from a newer version",
        )
    return version


def migrate(document: dict[str, Any], source: str = "settings") -> dict[str, Any]:
    """The document brought to ``CURRENT_VERSION`` by ``MIGRATIONS``, applied in order (the input is kept)."""
    version = _version_of(document, source)
    result = copy.deepcopy(document)
    while version < CURRENT_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise SettingsFileError(
                f"{source}: this relaywizard cannot upgrade settings of version {version}",
                hint="Run the setup wizard again to write a new settings file.",
            )
        result = step(result)
        if result.get("version") != version + 1:
            raise RuntimeError(f"settings migration from version {version} did not set version {version + 1}")
        version += 1
    return result


# -- documents ---------------------------------------------------------------------------------------------

_TOP_KEYS = ("version", "default_profile", "profiles", "relay")
_PROFILE_KEYS = tuple(f.name for f in dataclasses.fields(Profile) if f.name != "name")
_RELAY_KEYS = tuple(f.name for f in dataclasses.fields(RelaySettings))


def _unknown_keys(document: Mapping[str, Any]) -> Iterator[tuple[tuple[str, ...], tuple[str, ...]]]:
    """(path of an unknown key, the keys allowed where it is)."""
    for key in document:
        if key not in _TOP_KEYS:
            yield (key,), _TOP_KEYS
    profiles = document.get("profiles")
    if isinstance(profiles, Mapping):
        for name, table in profiles.items():
            if isinstance(table, Mapping):
                for key in table:
                    if key not in _PROFILE_KEYS:
                        yield ("profiles", name, key), _PROFILE_KEYS
    relay = document.get("relay")
    if isinstance(relay, Mapping):
        for key in relay:
            if key not in _RELAY_KEYS:
                yield ("relay", key), _RELAY_KEYS


def _refuse_unknown_keys(document: Mapping[str, Any], source: str) -> None:
    unknown = list(_unknown_keys(document))
    if not unknown:
        return
    paths = [_path(*parts) for parts, _ in unknown]
    first_parts, allowed = unknown[0]
    if len(paths) == 1:
        message = f"{source}: unknown setting {paths[0]}"
    else:
        message = f"{source}: unknown settings {', '.join(paths[:-1])} and {paths[-1]}"
    close = difflib.get_close_matches(first_parts[-1], allowed, n=1)
    if close:
        hint = f"Did you mean {close[0]}? Settings that relaywizard does not know are not ignored."
    else:
        hint = f"The settings allowed there are: {', '.join(allowed)}."
    raise SettingsValidationError(paths[0], message, hint=hint, title="Unknown setting")


def _table(value: Any, path: str, example: str, source: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SettingsValidationError(
            path, f"{source}: {path} must be a table such as {example}, not {show(value)}"
        )
    return value


def _from_document(document: Mapping[str, Any], source: str) -> Settings:
    profiles: dict[str, Profile] = {}
    for key, table in _table(document.get("profiles"), "profiles", "[profiles.scanner]", source).items():
        path = _path("profiles", key)
        values = dict(_table(table, path, f"[{path}]", source))
        profiles[key] = Profile(name=key, domain=values.pop("domain", ""), **values)
    relay_table = _table(document.get("relay"), "relay", "[relay]", source)
    settings = Settings(
        profiles=profiles,
        relay=RelaySettings(**relay_table),
        default_profile=document.get("default_profile"),
    )
    return settings.validated(source)


def to_document(settings: Settings) -> dict[str, Any]:
    """The TOML document of ``settings``: unset values left out, each profile under its name."""
    document: dict[str, Any] = {"version": CURRENT_VERSION}
    if settings.default_profile:
        document["default_profile"] = settings.default_profile
    document["profiles"] = {
        key: _table_of(profile, skip="name") for key, profile in settings.profiles.items()
    }
    document["relay"] = _table_of(settings.relay)
    return document


def _table_of(item: Any, skip: str = "") -> dict[str, Any]:
    """A dataclass's fields as a TOML table: unset ones left out, tuples as lists."""
    table: dict[str, Any] = {}
    for f in dataclasses.fields(item):
        value = getattr(item, f.name)
        if f.name != skip and value is not None:
            table[f.name] = list(value) if isinstance(value, tuple) else value
    return table


def parse(text: str, source: str = "settings") -> Settings:
    """Settings from TOML text; errors name ``source`` (usually the file's path)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_error(exc, source) from None
    _version_of(document, source)
    _refuse_secrets(document, source)
    document = migrate(document, source)
    _refuse_unknown_keys(document, source)
    return _from_document(document, source)


def _toml_error(exc: tomllib.TOMLDecodeError, source: str) -> SettingsFileError:
    text = str(exc)
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)\s*$", text)
    if found:
        reason = text[: found.start()]
        where = f"at line {found[1]}, column {found[2]}"
    else:
        reason = re.sub(r"\s*\(at end of document\)\s*$", "", text)
        where = "at the end of the file"
    return SettingsFileError(
        f"{source} is not valid TOML {where}: {reason[:1].lower()}{reason[1:]}",
        hint="Fix that line in a text editor (text values need quotes), "
        "or move the file aside and run the setup wizard again.",
    )


def dumps(settings: Settings) -> str:
    """The text ``save`` would write (validated, so it may raise ``SettingsValidationError``)."""
    _refuse_secrets(to_document(settings), "settings")
    return _HEADER + tomli_w.dumps(to_document(settings.validated()))


# -- files -------------------------------------------------------------------------------------------------


def load(path: Path) -> Settings:
    """The settings in ``path``; the defaults when there is no such file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Settings()
    except IsADirectoryError:
        raise _is_a_folder(path) from None
    except PermissionError:
        if path.is_dir():  # Windows reports a folder as a permission error
            raise _is_a_folder(path) from None
        raise SettingsFileError(
            f"Cannot read {path}: permission denied",
            hint="Check the file's owner and permissions, or run relaywizard as the user who set it up.",
        ) from None
    except OSError as exc:
        raise SettingsFileError(
            f"Cannot read {path}: {exc.strerror or exc}", hint="Check that the file and its folder exist."
        ) from None
    try:
        text = data.decode("utf-8-sig")  # Notepad may add a byte-order mark
    except UnicodeDecodeError as exc:
        raise SettingsFileError(
            f"{path} is not UTF-8 text (a bad byte at position {exc.start})",
            hint="Save the file as UTF-8 in a text editor.",
        ) from None
    return parse(text, str(path))


def _is_a_folder(path: Path) -> SettingsFileError:
    return SettingsFileError(
        f"{path} is a folder, but the settings file should be there",
        hint="Remove or rename that folder, or choose another settings file.",
    )


def save(settings: Settings, path: Path) -> None:
    """Check ``settings`` and replace ``path`` with them atomically, readable only by this user."""
    path = Path(path)
    source = str(path)
    _refuse_secrets(to_document(settings), source)
    text = _HEADER + tomli_w.dumps(to_document(settings.validated(source)))
    if path.is_symlink():
        path = Path(os.path.realpath(path))  # replace the file the link points to, keep the link
    if path.is_dir():
        raise _is_a_folder(path)
    _write_atomically(path, text.encode("utf-8"))


def _write_atomically(path: Path, data: bytes) -> None:
    folder = path.parent
    try:
        _make_private_folder(folder)
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as file:
            if hasattr(os, "fchmod"):
                os.fchmod(file.fileno(), 0o600)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        if isinstance(exc, OSError):
            raise _cannot_write(path, exc) from None
        raise
    _sync_folder(folder)


def _make_private_folder(folder: Path) -> None:
    if folder.is_dir():
        return
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        folder.chmod(0o700)  # mkdir's mode is reduced by the umask


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable; not possible (nor needed) on Windows."""
    if os.name == "nt":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _cannot_write(path: Path, exc: OSError) -> SettingsFileError:
    reason = exc.strerror or str(exc)
    return SettingsFileError(
        f"Cannot save the settings to {path}: {reason}; the previous file was left as it was",
        hint="Check that the folder exists, is writable by this user and the disk is not full.",
    )
