"""DNS records ready to paste: corrected SPF and DMARC; the MX, DKIM and autodiscover Microsoft expects.

A fix a DNS admin has to compose from advice is a fix that gets typed wrong, so every DNS check ends in a
record written out in full. The values come from ``relaywizard.core.m365``; only the formatting is here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from relaywizard.core import m365
from relaywizard.diagnostics.model import Method
from relaywizard.diagnostics.spf import Mechanism, Modifier, SpfSyntaxError, parse_term

__all__ = [
    "DnsRecord",
    "dkim_records",
    "dmarc_fix",
    "dmarc_record",
    "dmarc_tags",
    "dmarc_value",
    "expected_autodiscover",
    "expected_mx",
    "spf_fix",
    "spf_record",
]

#: Methods whose mail leaves from the office's own IP, so SPF must list it.
RELAY_IP_METHODS: tuple[Method, ...] = ("direct-send", "connector")
TENANT_PLACEHOLDER = "<tenant>"


@dataclass(frozen=True)
class DnsRecord:
    """One record as a DNS admin enters it: the full name, the type and the value."""

    name: str
    type: str
    value: str

    def line(self) -> str:
        """``_dmarc.contoso.com TXT "v=DMARC1; p=quarantine"``: TXT values quoted, as panels show them."""
        value = f'"{self.value}"' if self.type == "TXT" else self.value
        return f"{self.name} {self.type} {value}"

    def __str__(self) -> str:
        return self.line()


def _name(domain: str) -> str:
    return domain.strip().rstrip(".").lower()


# -- SPF ---------------------------------------------------------------------------------------------------


def spf_fix(
    existing: str | Sequence[str] | None,
    relay_ip: str | None,
    method: Method,
    *,
    nested_include: bool = False,
) -> str:
    """The corrected ``v=spf1`` record: the existing terms kept, what Microsoft 365 needs added.

    Adds ``include:spf.protection.outlook.com`` unless present (or, with ``nested_include``, reached through
    another include) and, for Direct Send and connector relay, ``ip4:``/``ip6:`` of the relay IP unless an
    address term already covers it. Several records are merged into one (a redirect becomes an include,
    since only one record can redirect). ``ptr`` is dropped (RFC 7208 says not to use it; many receivers
    skip it), an invalid ``ip:`` is repaired to ``ip4:``/``ip6:`` and other invalid terms are dropped. The
    record ends in ``~all`` when that is what it had, else ``-all`` (``+all`` and ``?all`` protect nothing);
    a single record that redirects and has no ``all`` keeps its redirect instead.
    """
    records = [existing] if isinstance(existing, str) else list(existing or [])
    mechanisms: list[Mechanism] = []
    modifiers: list[Modifier] = []
    alls: list[str] = []
    redirects: list[str] = []
    seen: set[str] = set()
    for record in records:
        for word in record.split():
            if word.lower() == "v=spf1":
                continue
            term = _term(word)
            if term is None or term.text.lower() in seen:
                continue
            seen.add(term.text.lower())
            if isinstance(term, Modifier):
                if term.name == "redirect":
                    redirects.append(term.value)
                elif term.name != "exp" or not any(m.name == "exp" for m in modifiers):
                    modifiers.append(term)
            elif term.name == "all":
                alls.append(term.qualifier)
            elif term.name != "ptr":
                mechanisms.append(term)
    terms = [m.text for m in mechanisms]
    keep_redirect = len(records) == 1 and len(redirects) == 1 and not alls
    if not keep_redirect:
        terms += [f"include:{r}" for r in redirects if f"include:{r}".lower() not in seen]
        redirects = []
    relay = _relay_term(relay_ip, method, mechanisms)
    if relay:
        terms.insert(0, relay)
    targets = {_host(m.value) for m in mechanisms if m.name == "include" and m.value} | {
        _host(r) for r in redirects
    }
    if m365.SPF_INCLUDE not in targets and not nested_include:
        terms.append(f"include:{m365.SPF_INCLUDE}")
    if not keep_redirect:
        terms.append("~all" if "~" in alls and "-" not in alls else "-all")
    terms += [m.text for m in modifiers]
    terms += [f"redirect={r}" for r in redirects]
    return " ".join(["v=spf1", *terms])


def _term(word: str) -> Mechanism | Modifier | None:
    try:
        return parse_term(word)
    except SpfSyntaxError:
        pass
    # "ip:203.0.113.10" is the one invalid term whose meaning is certain.
    head, colon, value = word.partition(":")
    if colon and head.lstrip("+-~?").lower() == "ip":
        qualifier = head[: len(head) - 2]
        try:
            version = ipaddress.ip_network(value, strict=False).version
            return parse_term(f"{qualifier}ip{version}:{value}")
        except (ValueError, SpfSyntaxError):
            return None
    return None


def _host(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _relay_term(relay_ip: str | None, method: Method, mechanisms: Sequence[Mechanism]) -> str | None:
    if relay_ip is None or method not in RELAY_IP_METHODS:
        return None
    ip = ipaddress.ip_address(relay_ip)
    for mech in mechanisms:
        if mech.qualifier != "+" or mech.name != f"ip{ip.version}" or mech.value is None:
            continue
        prefix = mech.cidr4 if ip.version == 4 else mech.cidr6
        network = ipaddress.ip_network(
            mech.value + (f"/{prefix}" if prefix is not None else ""), strict=False
        )
        if ip in network:
            return None
    return f"ip{ip.version}:{ip}"


def spf_record(domain: str, value: str) -> DnsRecord:
    return DnsRecord(_name(domain), "TXT", value)


# -- DMARC -------------------------------------------------------------------------------------------------

_POLICY_STRENGTH = {"reject": 3, "quarantine": 2, "none": 1}


def dmarc_tags(text: str) -> dict[str, str]:
    """``v=DMARC1; p=none; rua=…`` as an ordered dict of lower-case tag names to values."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        if eq and name.strip():
            tags.setdefault(name.strip().lower(), value.strip())
    return tags


def dmarc_value(
    policy: str = "quarantine", rua: str | None = None, extra: dict[str, str] | None = None
) -> str:
    """The TXT value: ``v=DMARC1; p=<policy>``, then ``rua`` and any other tags kept from an old record."""
    parts = ["v=DMARC1", f"p={policy}"]
    tags = dict(extra or {})
    if rua:
        tags["rua"] = rua if rua.lower().startswith("mailto:") else f"mailto:{rua}"
    parts += [f"{name}={value}" for name, value in tags.items() if name not in ("v", "p")]
    return "; ".join(parts)


def dmarc_record(domain: str, policy: str = "quarantine", rua: str | None = None) -> str:
    """The DMARC record to publish, as a line: ``_dmarc.contoso.com TXT "v=DMARC1; p=quarantine"``."""
    return DnsRecord(f"_dmarc.{_name(domain)}", "TXT", dmarc_value(policy, rua)).line()


def dmarc_fix(domain: str, existing: Sequence[str], policy: str = "quarantine") -> str:
    """One corrected DMARC record: the strictest existing one's tags kept, ``v=DMARC1`` first, and ``p``
    set to ``policy`` unless it already is quarantine or reject."""
    candidates = [dmarc_tags(text) for text in existing]
    best = max(candidates, key=lambda t: _POLICY_STRENGTH.get(t.get("p", "").lower(), 0), default={})
    current = best.get("p", "").lower()
    chosen = current if _POLICY_STRENGTH.get(current, 0) >= _POLICY_STRENGTH["quarantine"] else policy
    value = dmarc_value(chosen, extra=best)
    return DnsRecord(f"_dmarc.{_name(domain)}", "TXT", value).line()


# -- MX, DKIM, autodiscover --------------------------------------------------------------------------------


def expected_mx(domain: str) -> DnsRecord:
    """The classic MX endpoint; domains added since mid-2026 get an mx.microsoft host instead."""
    return DnsRecord(_name(domain), "MX", f"0 {m365.mx_endpoint_for(domain)}")


def dkim_records(
    domain: str, tenant: str | None = None, *, known_target: str | None = None
) -> list[DnsRecord]:
    """The selector1/selector2 CNAMEs. With ``known_target`` (one selector's correct Microsoft target)
    the others are derived from it, which also gets the new ``dkim.mail.microsoft`` format right."""
    name = _name(domain)
    if known_target:
        suffix = known_target.strip().rstrip(".").lower().split("._domainkey.", 1)[1]
        dashed = m365.domain_with_dashes(name)
        return [
            DnsRecord(f"{s}._domainkey.{name}", "CNAME", f"{s}-{dashed}._domainkey.{suffix}")
            for s in m365.DKIM_SELECTORS
        ]
    targets = m365.dkim_expected_cnames(name, tenant or TENANT_PLACEHOLDER)
    return [DnsRecord(record_name, "CNAME", target) for record_name, target in targets.items()]


def expected_autodiscover(domain: str) -> DnsRecord:
    return DnsRecord(f"autodiscover.{_name(domain)}", "CNAME", m365.AUTODISCOVER_TARGET)
