"""SPF records (RFC 7208): parsing with the offending term named, and evaluation through nested includes.

Receivers give up with a permerror on a syntax error, a loop or more than 10 DNS-querying terms, and a
relay's mail then fails SPF however correct the rest is, so these are found before a device sends.
The tree is walked one level at a time with the look-ups of a level done at once: on a WAN the time is the
depth of the tree, not the number of records in it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from relaywizard.core import m365
from relaywizard.diagnostics.base import DnsLookupError, Resolver

__all__ = [
    "Mechanism",
    "Modifier",
    "SpfError",
    "SpfEvaluation",
    "SpfRecord",
    "SpfSyntaxError",
    "evaluate",
    "has_macro",
    "is_spf",
    "parse_spf",
    "parse_term",
    "spf_records",
]

Qualifier = Literal["+", "-", "~", "?"]
QUALIFIERS: tuple[Qualifier, ...] = ("+", "-", "~", "?")
MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")
LOOKUP_TERMS = frozenset(m365.SPF_LOOKUP_TERMS)
MAX_LOOKUPS = m365.SPF_MAX_DNS_LOOKUPS
#: RFC 7208 5.4: at most 10 MX hosts are looked at for one ``mx`` mechanism.
MAX_MX_HOSTS = 10

_MODIFIER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_MACRO = re.compile(r"%(?:\{[slodiphcrtv]\d*r?[.\-+,/_=]*\}|%|_|-)", re.IGNORECASE)
_TOPLABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_CIDR = re.compile(r"(?:/(?P<v4>\d{1,2}))?(?://(?P<v6>\d{1,3}))?$")


class SpfSyntaxError(ValueError):
    """An SPF record a receiver would reject (permerror): ``term`` is the offending part."""

    def __init__(self, term: str, reason: str) -> None:
        self.term = term
        self.reason = reason
        super().__init__(f"the term {term!r} is not valid SPF: {reason}")


@dataclass(frozen=True)
class Mechanism:
    qualifier: Qualifier
    name: str
    """``all``, ``include``, ``a``, ``mx``, ``ptr``, ``ip4``, ``ip6`` or ``exists`` (lower case)."""
    value: str | None
    """The domain-spec or the address, without any ``/len``; None where the mechanism has none."""
    text: str
    """The term as written."""
    cidr4: int | None = None
    cidr6: int | None = None

    @property
    def queries_dns(self) -> bool:
        return self.name in LOOKUP_TERMS


@dataclass(frozen=True)
class Modifier:
    name: str
    """Lower case: ``redirect``, ``exp`` or an unknown modifier (allowed, ignored)."""
    value: str
    text: str


@dataclass(frozen=True)
class SpfRecord:
    text: str
    mechanisms: tuple[Mechanism, ...]
    modifiers: tuple[Modifier, ...]

    @property
    def all(self) -> Mechanism | None:
        return next((m for m in self.mechanisms if m.name == "all"), None)

    @property
    def redirect(self) -> str | None:
        return next((m.value for m in self.modifiers if m.name == "redirect"), None)

    @property
    def lookups(self) -> int:
        """DNS-querying terms of this record alone (a redirect counts only when it applies)."""
        count = sum(1 for m in self.mechanisms if m.queries_dns)
        return count + (1 if self.redirect is not None and self.all is None else 0)


def is_spf(text: str) -> bool:
    """True for a TXT string that is an SPF record: ``v=spf1`` alone or followed by a space."""
    head = text.lstrip()[:7].lower()
    return head == "v=spf1" or head == "v=spf1 "


def spf_records(texts: list[str]) -> list[str]:
    """The SPF records among a name's TXT strings (a domain has many TXT records, e.g. ``MS=ms…``)."""
    return [text.strip() for text in texts if is_spf(text)]


def parse_spf(text: str) -> SpfRecord:
    """Parse one ``v=spf1`` record; raises ``SpfSyntaxError`` naming the first term a receiver rejects."""
    words = text.split()
    if not words or words[0].lower() != "v=spf1":
        raise SpfSyntaxError(words[0] if words else text, "an SPF record starts with v=spf1")
    mechanisms: list[Mechanism] = []
    modifiers: list[Modifier] = []
    for word in words[1:]:
        term = parse_term(word)
        if isinstance(term, Mechanism):
            mechanisms.append(term)
            continue
        if term.name in ("redirect", "exp") and any(m.name == term.name for m in modifiers):
            raise SpfSyntaxError(word, f"{term.name}= may appear only once")
        modifiers.append(term)
    return SpfRecord(text=text.strip(), mechanisms=tuple(mechanisms), modifiers=tuple(modifiers))


def parse_term(term: str) -> Mechanism | Modifier:
    """One term of a record (no spaces); raises ``SpfSyntaxError``."""
    return _parse_modifier(term) or _parse_mechanism(term)


def _parse_modifier(term: str) -> Modifier | None:
    name, eq, value = term.partition("=")
    if not eq or ":" in name or "/" in name:
        return None
    if name[:1] in QUALIFIERS:
        raise SpfSyntaxError(term, "a modifier cannot have a qualifier")
    if not _MODIFIER_NAME.fullmatch(name):
        raise SpfSyntaxError(term, f"{name!r} is not a valid modifier name")
    lower = name.lower()
    if lower in ("redirect", "exp"):
        _check_domain_spec(term, value)
    else:
        _check_macros(term, value)
    return Modifier(name=lower, value=value, text=term)


def _parse_mechanism(term: str) -> Mechanism:
    qualifier: Qualifier = "+"
    body = term
    if body[:1] in QUALIFIERS:
        qualifier = QUALIFIERS[QUALIFIERS.index(body[0])]  # keeps the Literal type
        body = body[1:]
    match = re.match(r"[A-Za-z0-9]+", body)
    name = match.group(0).lower() if match else ""
    rest = body[len(name) :]
    if name not in MECHANISMS:
        raise SpfSyntaxError(term, f"unknown mechanism {name or body!r}{_meant(name, rest)}")
    if name == "all":
        if rest:
            raise SpfSyntaxError(term, "all takes no value")
        return Mechanism(qualifier, name, None, term)
    if name in ("ip4", "ip6"):
        return _parse_ip(term, qualifier, name, rest)
    if name in ("include", "exists"):
        if not rest.startswith(":") or not rest[1:]:
            raise SpfSyntaxError(term, f"{name} needs a domain, as in {name}:example.com")
        _check_domain_spec(term, rest[1:])
        return Mechanism(qualifier, name, rest[1:], term)
    if name == "ptr":
        if rest and (not rest.startswith(":") or not rest[1:]):
            raise SpfSyntaxError(term, "ptr takes an optional :domain only")
        if rest:
            _check_domain_spec(term, rest[1:])
        return Mechanism(qualifier, name, rest[1:] or None, term)
    return _parse_a_mx(term, qualifier, name, rest)


def _meant(name: str, rest: str) -> str:
    """A hint for the usual typos: ``ip:`` for ``ip4:``, ``redirect:`` for ``redirect=``."""
    value = rest[1:].partition("/")[0] if rest.startswith(":") else ""
    if name in ("redirect", "exp") and rest.startswith(":"):
        return f"; {name}= was probably meant"
    if name == "ip" and value:
        try:
            version = ipaddress.ip_address(value).version
        except ValueError:
            return ""
        return f"; ip{version}: was probably meant"
    return ""


def _parse_ip(term: str, qualifier: Qualifier, name: str, rest: str) -> Mechanism:
    if not rest.startswith(":"):
        raise SpfSyntaxError(term, f"{name} needs an address, as in {name}:{_example(name)}")
    address, slash, length = rest[1:].partition("/")
    version = 4 if name == "ip4" else 6
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise SpfSyntaxError(term, f"{address!r} is not an IPv{version} address") from None
    if ip.version != version:
        raise SpfSyntaxError(term, f"{address} is an IPv{ip.version} address; use ip{ip.version}:")
    prefix: int | None = None
    if slash:
        limit = 32 if version == 4 else 128
        if not length.isdigit() or int(length) > limit or (len(length) > 1 and length.startswith("0")):
            raise SpfSyntaxError(term, f"the prefix length must be a number from 0 to {limit}")
        prefix = int(length)
    return Mechanism(
        qualifier,
        name,
        address,
        term,
        cidr4=prefix if version == 4 else None,
        cidr6=prefix if version == 6 else None,
    )


def _example(name: str) -> str:
    return "203.0.113.10" if name == "ip4" else "2001:db8::10"


def _parse_a_mx(term: str, qualifier: Qualifier, name: str, rest: str) -> Mechanism:
    domain: str | None = None
    if rest.startswith(":"):
        spec = rest[1:]
        cut = spec.find("/")
        domain, rest = (spec, "") if cut < 0 else (spec[:cut], spec[cut:])
        if not domain:
            raise SpfSyntaxError(term, f"{name}: needs a domain after the colon")
        _check_domain_spec(term, domain)
    cidr = _CIDR.fullmatch(rest) if rest.startswith("/") or not rest else None
    if cidr is None:
        raise SpfSyntaxError(term, f"{rest!r} is not a valid suffix; {name} takes /len or //len6")
    v4 = int(cidr["v4"]) if cidr["v4"] else None
    v6 = int(cidr["v6"]) if cidr["v6"] else None
    if (v4 is not None and v4 > 32) or (v6 is not None and v6 > 128):
        raise SpfSyntaxError(term, "the prefix length is too long")
    return Mechanism(qualifier, name, domain, term, cidr4=v4, cidr6=v6)


def _check_macros(term: str, spec: str) -> None:
    stripped = _MACRO.sub("", spec)
    if "%" in stripped:
        raise SpfSyntaxError(term, "it has a malformed %-macro")
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in stripped):
        raise SpfSyntaxError(term, "it contains characters SPF does not allow")


def _check_domain_spec(term: str, spec: str) -> None:
    """A domain-spec: macros allowed; unless it ends in a macro it must end in a real top label."""
    _check_macros(term, spec)
    if re.search(r"%\{[^}]*\}$", spec):
        return
    name = spec[:-1] if spec.endswith(".") else spec
    labels = _MACRO.sub("x", name).split(".")
    top = labels[-1]
    if len(labels) < 2 or any(not label for label in labels) or not _TOPLABEL.fullmatch(top) or top.isdigit():
        raise SpfSyntaxError(term, f"{spec!r} is not a valid domain name")


def has_macro(spec: str) -> bool:
    return "%" in spec


# -- evaluation ------------------------------------------------------------------------------------------

SpfErrorKind = Literal["no-record", "multiple", "syntax", "loop", "dns"]


@dataclass(frozen=True)
class SpfError:
    """A problem below the top record: a receiver ends evaluation with permerror/temperror there."""

    kind: SpfErrorKind
    term: str
    """The term that led to it, e.g. ``include:_spf.contoso.com``."""
    domain: str
    message: str
    dns_error: DnsLookupError | None = None


@dataclass(frozen=True)
class SpfEvaluation:
    domain: str
    record: SpfRecord
    lookups: int
    """DNS-querying terms counted through every include and redirect (RFC 7208 4.6.4)."""
    complete: bool
    """False when following stopped once the count passed the limit (``lookups`` is then a minimum)."""
    includes_microsoft: bool
    all: str | None
    """The final ``all`` term (``-all``, ``~all``, ``?all``, ``+all``), through redirects; None if none."""
    uses_ptr: bool
    relay_ip: str | None
    relay_ip_covered: bool | None
    """None when no relay IP was asked about."""
    lookups_by_term: dict[str, int] = field(default_factory=dict)
    """Top-level term → look-ups it costs including everything below it."""
    errors: tuple[SpfError, ...] = ()


@dataclass(frozen=True)
class _Node:
    domain: str
    record: SpfRecord
    path: tuple[str, ...]
    branch: str | None
    """The top-level term this node hangs under (None for the top record)."""
    passing: bool
    """Reached only through ``+`` includes: its matching terms make the top record pass."""
    main: bool
    """The top record or a redirect of it: its ``all`` is the record's final word."""


@dataclass(frozen=True)
class _Follow:
    """An include or redirect to fetch in the next round, and where its record will sit in the tree."""

    term: Mechanism | Modifier
    target: str
    path: tuple[str, ...]
    branch: str
    passing: bool
    main: bool


Progress = Callable[[str], None]


async def evaluate(
    resolver: Resolver,
    domain: str,
    record: SpfRecord,
    relay_ip: str | None = None,
    progress: Progress | None = None,
) -> SpfEvaluation:
    """Walk the record's includes and redirects, one level at a time with its look-ups done at once."""
    walk = _Walk(resolver, relay_ip, progress)
    return await walk.run(domain.rstrip(".").lower(), record)


class _Walk:
    def __init__(self, resolver: Resolver, relay_ip: str | None, progress: Progress | None) -> None:
        self.resolver = resolver
        self.relay = ipaddress.ip_address(relay_ip) if relay_ip else None
        self.progress = progress
        self.lookups = 0
        self.by_term: dict[str, int] = {}
        self.errors: list[SpfError] = []
        self.includes_microsoft = False
        self.uses_ptr = False
        self.covered = False
        self.final_all: str | None = None
        self.fetches: dict[str, asyncio.Task[list[str]]] = {}

    async def run(self, domain: str, record: SpfRecord) -> SpfEvaluation:
        level = [_Node(domain, record, (domain,), None, passing=True, main=True)]
        complete = True
        try:
            while level:
                follows, address_checks = self._scan(level)
                if not follows and not address_checks:
                    break
                if self.lookups > MAX_LOOKUPS and follows:
                    complete = False  # a receiver has given up already; so do we
                    break
                if self.progress and follows:
                    self.progress("Following " + ", ".join(f.term.text for f in follows))
                fetched, matched = await asyncio.gather(
                    asyncio.gather(*(self._fetch(f.target) for f in follows), return_exceptions=True),
                    asyncio.gather(*address_checks),
                )
                self.covered = self.covered or any(matched)
                level = [
                    n for f, r in zip(follows, fetched, strict=True) if (n := self._child(f, r)) is not None
                ]
        finally:
            for task in self.fetches.values():
                task.cancel()
        return SpfEvaluation(
            domain=domain,
            record=record,
            lookups=self.lookups,
            complete=complete,
            includes_microsoft=self.includes_microsoft,
            all=self.final_all,
            uses_ptr=self.uses_ptr,
            relay_ip=str(self.relay) if self.relay else None,
            relay_ip_covered=self.covered if self.relay else None,
            lookups_by_term=self.by_term,
            errors=tuple(self.errors),
        )

    def _scan(self, level: list[_Node]) -> tuple[list[_Follow], list[Awaitable[bool]]]:
        """Count a level's terms and collect what the next round of look-ups must fetch."""
        follows: list[_Follow] = []
        checks: list[Awaitable[bool]] = []
        for node in level:
            for mech in node.record.mechanisms:
                branch = node.branch or mech.text
                if mech.queries_dns:
                    self._count(branch)
                self.uses_ptr = self.uses_ptr or mech.name == "ptr"
                pass_term = node.passing and mech.qualifier == "+"
                if mech.name == "include" and mech.value is not None:
                    self._note_target(mech.value)
                    follow = self._follow(node, mech, mech.value, pass_term, main=False, branch=branch)
                    if follow is not None:
                        follows.append(follow)
                elif mech.name in ("ip4", "ip6") and pass_term and self.relay is not None:
                    self.covered = self.covered or _in_network(self.relay, mech)
                elif mech.name in ("a", "mx") and pass_term and self.relay is not None and not self.covered:
                    target = mech.value or node.domain
                    if not has_macro(target):
                        checks.append(self._address_match(mech, target))
            redirect = node.record.redirect
            if node.main and node.record.all is not None:
                self.final_all = node.record.all.qualifier + "all"
            if redirect is not None and node.record.all is None:
                term = next(m for m in node.record.modifiers if m.name == "redirect")
                branch = node.branch or term.text
                self._count(branch)
                self._note_target(redirect)
                follow = self._follow(node, term, redirect, node.passing, main=node.main, branch=branch)
                if follow is not None:
                    follows.append(follow)
        return follows, checks

    def _count(self, branch: str) -> None:
        self.lookups += 1
        self.by_term[branch] = self.by_term.get(branch, 0) + 1

    def _note_target(self, target: str) -> None:
        if _normal(target) == m365.SPF_INCLUDE:
            self.includes_microsoft = True

    def _follow(
        self,
        node: _Node,
        term: Mechanism | Modifier,
        target: str,
        passing: bool,
        *,
        main: bool,
        branch: str,
    ) -> _Follow | None:
        if has_macro(target):
            return None  # depends on the sender: cannot be followed ahead of time
        name = _normal(target)
        if name in node.path:
            loop = " → ".join([*node.path, name])
            self.errors.append(SpfError("loop", term.text, name, f"{term.text} loops back: {loop}"))
            return None
        return _Follow(term, name, node.path, branch, passing, main)

    def _fetch(self, name: str) -> asyncio.Task[list[str]]:
        """One query per name, however many branches include it (each still counts as a look-up)."""
        if name not in self.fetches:
            self.fetches[name] = asyncio.create_task(self.resolver.query(name, "TXT"))
        return self.fetches[name]

    def _child(self, follow: _Follow, answer: list[str] | BaseException) -> _Node | None:
        term = follow.term.text
        if isinstance(answer, DnsLookupError) and answer.kind != "nxdomain":
            self.errors.append(SpfError("dns", term, follow.target, answer.describe(), answer))
            return None
        if isinstance(answer, BaseException):
            if not isinstance(answer, DnsLookupError):
                raise answer
            answer = []
        records = spf_records(answer)
        if not records:
            self.errors.append(
                SpfError("no-record", term, follow.target, f"{term} points at a name without an SPF record")
            )
            return None
        if len(records) > 1:
            self.errors.append(
                SpfError("multiple", term, follow.target, f"{follow.target} has {len(records)} SPF records")
            )
            return None
        try:
            record = parse_spf(records[0])
        except SpfSyntaxError as exc:
            self.errors.append(SpfError("syntax", term, follow.target, f"in {follow.target}: {exc}"))
            return None
        path = (*follow.path, follow.target)
        return _Node(follow.target, record, path, follow.branch, passing=follow.passing, main=follow.main)

    async def _address_match(self, mech: Mechanism, target: str) -> bool:
        """Whether an ``a``/``mx`` term stands for the relay IP; failed look-ups simply do not match."""
        assert self.relay is not None
        rdtype = "A" if self.relay.version == 4 else "AAAA"
        try:
            hosts = [target]
            if mech.name == "mx":
                answers = await self.resolver.query(target, "MX")
                hosts = [a.split()[-1] for a in answers][:MAX_MX_HOSTS]
            found = await asyncio.gather(
                *(self.resolver.query(h, rdtype) for h in hosts), return_exceptions=True
            )
        except DnsLookupError:
            return False
        prefix = mech.cidr4 if self.relay.version == 4 else mech.cidr6
        for addresses in found:
            if isinstance(addresses, BaseException):
                if not isinstance(addresses, DnsLookupError):
                    raise addresses
                continue
            for address in addresses:
                if _contains(address, prefix, self.relay):
                    return True
        return False


def _normal(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _in_network(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, mech: Mechanism) -> bool:
    prefix = mech.cidr4 if mech.name == "ip4" else mech.cidr6
    return mech.value is not None and _contains(mech.value, prefix, ip)


def _contains(address: str, prefix: int | None, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        network = ipaddress.ip_network(f"{address}/{prefix}" if prefix is not None else address, strict=False)
    except ValueError:
        return False
    return ip.version == network.version and ip in network
