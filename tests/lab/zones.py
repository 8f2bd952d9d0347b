"""The lab's DNS data: one zone per test domain, served by unbound (tests/lab/unbound.py) on 127.0.0.1.

Every domain lives under the reserved TLD ``.test``, except the SPF stand-in. A Microsoft 365 domain is
*correct* when it has one MX under ``mail.protection.outlook.com`` (or ``mx.microsoft``), exactly one
``v=spf1`` TXT including ``spf.protection.outlook.com`` and ending ``-all``/``~all`` (at most 10
DNS-querying terms, counted recursively), DKIM CNAMEs ``selector1``/``selector2._domainkey`` into the
tenant, ``_dmarc`` ``v=DMARC1; p=reject`` (or quarantine) and ``autodiscover`` → ``autodiscover.outlook.com``.
Each broken domain breaks exactly one of these; the rest of its records are correct (tenant ``contoso``).
Every Microsoft 365 domain also has a ``MS=ms…`` verification TXT next to its SPF record.

========================  ============================  ======================================================
constant                  domain                        what it is for
========================  ============================  ======================================================
GOOD                      contoso.test                  everything correct, classic formats, DMARC p=reject
GOOD_NEW                  fabrikam.test                 everything correct, new formats: MX under
                                                        mx.microsoft, DKIM under dkim.mail.microsoft, SPF
                                                        ``~all`` through the nested include
                                                        ``_spf.fabrikam.test``, DMARC p=quarantine
SPF_MISSING               spf-missing.test              no v=spf1 TXT (only the MS= verification TXT)
SPF_DOUBLE                spf-double.test               two v=spf1 TXT records
SPF_NEUTRAL_ALL           spf-neutral.test              SPF ends ``?all``
SPF_NO_ALL                spf-noall.test                SPF without any ``all`` term
SPF_PTR                   spf-ptr.test                  SPF uses the ``ptr`` mechanism
SPF_PASS_ALL              spf-passall.test              SPF ends ``+all``
SPF_NO_MICROSOFT          spf-nomicrosoft.test          SPF without include:spf.protection.outlook.com
SPF_SYNTAX_ERROR          spf-syntax.test               SPF with an unknown mechanism (``ip:`` for ``ip4:``)
SPF_TOO_MANY_LOOKUPS      spf-toomany.test              11 DNS-querying terms, but only when counted through
                                                        its nested includes (3 at the top level)
SPF_RELAY_IP              spf-relayip.test              SPF with ``ip4:203.0.113.10`` (RELAY_IP) plus the
                                                        Microsoft include (Direct Send / connector relay)
DMARC_NONE                dmarc-none.test               DMARC ``p=none`` (monitoring only)
DMARC_MISSING             dmarc-missing.test            no ``_dmarc`` record (NXDOMAIN)
DMARC_DOUBLE              dmarc-double.test             two ``_dmarc`` TXT records (reject and quarantine)
DMARC_BAD_VERSION         dmarc-badversion.test         ``v=DMARC; p=reject`` (not ``v=DMARC1``)
DMARC_NO_POLICY           dmarc-nopolicy.test           ``v=DMARC1`` without a ``p`` tag
DMARC_BAD_POLICY          dmarc-badpolicy.test          ``v=DMARC1; p=block`` (invalid ``p``)
MX_ELSEWHERE              mx-elsewhere.test             one MX, a non-Microsoft host (mx1.mailhost.example)
MX_MIXED                  mx-mixed.test                 the Microsoft MX plus a non-Microsoft MX
MX_MISSING                mx-missing.test               no MX at all (the domain exists, has other records)
DKIM_MISSING              dkim-missing.test             neither DKIM selector CNAME (NXDOMAIN)
DKIM_SELECTOR1_ONLY       dkim-selector1only.test       only ``selector1._domainkey``
DKIM_ELSEWHERE            dkim-elsewhere.test           both selectors point at esp.example
AUTODISCOVER_MISSING      autodiscover-missing.test     no ``autodiscover`` name (NXDOMAIN)
AUTODISCOVER_ELSEWHERE    autodiscover-elsewhere.test   ``autodiscover`` → autodiscover.mailhost.example
LAB                       lab.test                      the mail lab's own domain: MX 10 mx.lab.test,
                                                        mx/smtp/ns.lab.test → 127.0.0.1, SPF with
                                                        ip4:127.0.0.2 + Microsoft include, DMARC reject
EXTERNAL                  external.test                 a second, "external" domain: A 127.0.0.1, MX 10
                                                        mx.external.test (A 127.0.0.1)
SPF_STANDIN               spf.protection.outlook.com    a STAND-IN for Microsoft's real SPF record (an auth
                                                        zone for that one name only, not for outlook.com), so
                                                        nested SPF resolves offline
TIMEOUT                   timeout.test                  queries silently dropped: the client times out
NXDOMAIN                  nxdomain.test                 NXDOMAIN (also every name below it)
SERVFAIL                  servfail.test                 SERVFAIL at once (a secondary zone whose primary never
                                                        answers)
REFUSED                   refused.test                  REFUSED
OUTSIDE                   example.com                   a real name outside the zones: REFUSED, never looked
                                                        up on the internet
========================  ============================  ======================================================

Addresses: the lab's own hosts are 127.0.0.1; hosts that only SPF terms refer to use 192.0.2.0/24
(TEST-NET-1) and are never contacted; ``.example`` names stand for other mail providers and are not served
(a query for them is REFUSED).
"""

from __future__ import annotations

import zlib
from typing import Final

# -- the domains ------------------------------------------------------------------------------------

GOOD: Final = "contoso.test"
GOOD_NEW: Final = "fabrikam.test"

SPF_MISSING: Final = "spf-missing.test"
SPF_DOUBLE: Final = "spf-double.test"
SPF_NEUTRAL_ALL: Final = "spf-neutral.test"
SPF_NO_ALL: Final = "spf-noall.test"
SPF_PTR: Final = "spf-ptr.test"
SPF_PASS_ALL: Final = "spf-passall.test"
SPF_NO_MICROSOFT: Final = "spf-nomicrosoft.test"
SPF_SYNTAX_ERROR: Final = "spf-syntax.test"
SPF_TOO_MANY_LOOKUPS: Final = "spf-toomany.test"
SPF_RELAY_IP: Final = "spf-relayip.test"

DMARC_NONE: Final = "dmarc-none.test"
DMARC_MISSING: Final = "dmarc-missing.test"
DMARC_DOUBLE: Final = "dmarc-double.test"
DMARC_BAD_VERSION: Final = "dmarc-badversion.test"
DMARC_NO_POLICY: Final = "dmarc-nopolicy.test"
DMARC_BAD_POLICY: Final = "dmarc-badpolicy.test"

MX_ELSEWHERE: Final = "mx-elsewhere.test"
MX_MIXED: Final = "mx-mixed.test"
MX_MISSING: Final = "mx-missing.test"

DKIM_MISSING: Final = "dkim-missing.test"
DKIM_SELECTOR1_ONLY: Final = "dkim-selector1only.test"
DKIM_ELSEWHERE: Final = "dkim-elsewhere.test"

AUTODISCOVER_MISSING: Final = "autodiscover-missing.test"
AUTODISCOVER_ELSEWHERE: Final = "autodiscover-elsewhere.test"

LAB: Final = "lab.test"
EXTERNAL: Final = "external.test"

#: Stand-in for Microsoft's real SPF record (the real one lists more ranges and changes over time).
SPF_STANDIN: Final = "spf.protection.outlook.com"

TIMEOUT: Final = "timeout.test"
NXDOMAIN: Final = "nxdomain.test"
SERVFAIL: Final = "servfail.test"
REFUSED: Final = "refused.test"

#: A real name outside every lab zone: must be REFUSED, never forwarded or recursed.
OUTSIDE: Final = "example.com"

# -- values the records use -------------------------------------------------------------------------

#: The office's public IP a Direct Send / connector relay domain lists in SPF (RFC 5737 documentation range).
RELAY_IP: Final = "203.0.113.10"
#: The tenant (``<tenant>.onmicrosoft.com``) of every classic-format domain.
TENANT: Final = "contoso"
#: The tenant of the new-format domain GOOD_NEW.
TENANT_NEW: Final = "fabrikam"
MICROSOFT_INCLUDE: Final = "include:spf.protection.outlook.com"
AUTODISCOVER_TARGET: Final = "autodiscover.outlook.com."
SPF_STANDIN_TEXT: Final = (
    "v=spf1 ip4:40.92.0.0/15 ip4:40.107.0.0/16 ip4:52.100.0.0/15 ip4:52.102.0.0/16 "
    "ip4:104.47.0.0/17 ip6:2a01:111:f400::/48 -all"
)
#: The name server every zone names (an A record in lab.test points it at 127.0.0.1).
NAME_SERVER: Final = "ns.lab.test."
LOOPBACK: Final = "127.0.0.1"


def dashed(domain: str) -> str:
    """``contoso.test`` → ``contoso-test``, as Microsoft spells a domain inside its host names."""
    return domain.replace(".", "-")


def m365_mx(domain: str, *, new_style: bool = False) -> str:
    """The MX host Microsoft 365 gives ``domain`` (absolute, with the trailing dot)."""
    if new_style:
        return f"{dashed(domain)}.a-v1.mx.microsoft."
    return f"{dashed(domain)}.mail.protection.outlook.com."


def dkim_target(domain: str, selector: str, *, new_style: bool = False) -> str:
    """Where ``<selector>._domainkey.<domain>`` points for a correctly set-up domain."""
    if new_style:
        return f"{selector}-{dashed(domain)}._domainkey.{TENANT_NEW}.n-v1.dkim.mail.microsoft."
    return f"{selector}-{dashed(domain)}._domainkey.{TENANT}.onmicrosoft.com."


def verification_txt(domain: str) -> str:
    """The ``MS=ms…`` domain verification TXT Microsoft 365 asks for (stable per domain)."""
    return f"MS=ms{zlib.crc32(domain.encode()) % 100_000_000:08d}"


# -- zone file text ---------------------------------------------------------------------------------


def _txt(owner: str, text: str) -> str:
    """A TXT line; text longer than 255 characters is split into several strings, as DNS requires."""
    chunks = [text[i : i + 255] for i in range(0, len(text), 255)] or [""]
    quoted = " ".join('"' + chunk.replace("\\", "\\\\").replace('"', '\\"') + '"' for chunk in chunks)
    return f"{owner} TXT {quoted}"


def _zone(name: str, lines: list[str]) -> str:
    head = [
        f"$ORIGIN {name}.",
        "$TTL 300",
        f"@ SOA {NAME_SERVER} hostmaster.lab.test. 2026112301 3600 600 86400 60",
        f"@ NS {NAME_SERVER}",
    ]
    return "\n".join([*head, *lines]) + "\n"


def _m365_zone(
    domain: str,
    *,
    new_style: bool = False,
    mx: list[str] | None = None,
    spf: list[str] | None = None,
    dkim: dict[str, str] | None = None,
    dmarc: list[str] | None = None,
    autodiscover: list[str] | None = None,
    extra: tuple[str, ...] = (),
) -> str:
    """A Microsoft 365 domain: each argument left as None gets the correct record(s); [] or {} none."""
    if mx is None:
        mx = [f"0 {m365_mx(domain, new_style=new_style)}"]
    if spf is None:
        spf = [f"v=spf1 {MICROSOFT_INCLUDE} -all"]
    if dkim is None:
        dkim = {s: dkim_target(domain, s, new_style=new_style) for s in ("selector1", "selector2")}
    if dmarc is None:
        dmarc = ["v=DMARC1; p=reject"]
    if autodiscover is None:
        autodiscover = [AUTODISCOVER_TARGET]
    lines = [f"@ MX {value}" for value in mx]
    lines.append(_txt("@", verification_txt(domain)))
    lines += [_txt("@", text) for text in spf]
    lines += [f"{selector}._domainkey CNAME {target}" for selector, target in dkim.items()]
    lines += [_txt("_dmarc", text) for text in dmarc]
    lines += [f"autodiscover CNAME {target}" for target in autodiscover]
    lines += extra
    return _zone(domain, lines)


def _toomany_zone() -> str:
    """11 DNS-querying terms in all: 3 at the top, 4 in _spf1, 2 in _spf2, 2 in _spf3 (nested in _spf1)."""
    d = SPF_TOO_MANY_LOOKUPS
    top = f"v=spf1 include:_spf1.{d} include:_spf2.{d} {MICROSOFT_INCLUDE} -all"
    extra = (
        _txt("_spf1", f"v=spf1 a:relay1.{d} a:relay2.{d} mx:mail.{d} include:_spf3.{d} -all"),
        _txt("_spf2", f"v=spf1 a:relay3.{d} exists:%{{i}}.allow.{d} -all"),
        _txt("_spf3", f"v=spf1 a:relay4.{d} a:relay5.{d} -all"),
        f"mail MX 10 relay1.{d}.",
        *(f"relay{n} A 192.0.2.{n}" for n in range(1, 6)),
    )
    return _m365_zone(d, spf=[top], extra=extra)


#: Zone name (no trailing dot) → zone file text. Every zone here is served authoritatively.
ZONES: Final[dict[str, str]] = {
    GOOD: _m365_zone(GOOD),
    GOOD_NEW: _m365_zone(
        GOOD_NEW,
        new_style=True,
        spf=[f"v=spf1 include:_spf.{GOOD_NEW} ~all"],
        dmarc=["v=DMARC1; p=quarantine"],
        extra=(_txt("_spf", f"v=spf1 {MICROSOFT_INCLUDE} ~all"),),
    ),
    SPF_MISSING: _m365_zone(SPF_MISSING, spf=[]),
    SPF_DOUBLE: _m365_zone(
        SPF_DOUBLE, spf=[f"v=spf1 {MICROSOFT_INCLUDE} -all", "v=spf1 ip4:192.0.2.25 -all"]
    ),
    SPF_NEUTRAL_ALL: _m365_zone(SPF_NEUTRAL_ALL, spf=[f"v=spf1 {MICROSOFT_INCLUDE} ?all"]),
    SPF_NO_ALL: _m365_zone(SPF_NO_ALL, spf=[f"v=spf1 {MICROSOFT_INCLUDE}"]),
    SPF_PTR: _m365_zone(SPF_PTR, spf=[f"v=spf1 ptr {MICROSOFT_INCLUDE} -all"]),
    SPF_PASS_ALL: _m365_zone(SPF_PASS_ALL, spf=[f"v=spf1 {MICROSOFT_INCLUDE} +all"]),
    SPF_NO_MICROSOFT: _m365_zone(SPF_NO_MICROSOFT, spf=["v=spf1 ip4:192.0.2.25 -all"]),
    SPF_SYNTAX_ERROR: _m365_zone(SPF_SYNTAX_ERROR, spf=[f"v=spf1 {MICROSOFT_INCLUDE} ip:192.0.2.25 -all"]),
    SPF_TOO_MANY_LOOKUPS: _toomany_zone(),
    SPF_RELAY_IP: _m365_zone(SPF_RELAY_IP, spf=[f"v=spf1 ip4:{RELAY_IP} {MICROSOFT_INCLUDE} -all"]),
    DMARC_NONE: _m365_zone(DMARC_NONE, dmarc=[f"v=DMARC1; p=none; rua=mailto:dmarc@{DMARC_NONE}"]),
    DMARC_MISSING: _m365_zone(DMARC_MISSING, dmarc=[]),
    DMARC_DOUBLE: _m365_zone(DMARC_DOUBLE, dmarc=["v=DMARC1; p=reject", "v=DMARC1; p=quarantine"]),
    DMARC_BAD_VERSION: _m365_zone(DMARC_BAD_VERSION, dmarc=["v=DMARC; p=reject"]),
    DMARC_NO_POLICY: _m365_zone(DMARC_NO_POLICY, dmarc=[f"v=DMARC1; rua=mailto:dmarc@{DMARC_NO_POLICY}"]),
    DMARC_BAD_POLICY: _m365_zone(DMARC_BAD_POLICY, dmarc=["v=DMARC1; p=block"]),
    MX_ELSEWHERE: _m365_zone(MX_ELSEWHERE, mx=["10 mx1.mailhost.example."]),
    MX_MIXED: _m365_zone(MX_MIXED, mx=[f"0 {m365_mx(MX_MIXED)}", "10 mx1.mailhost.example."]),
    MX_MISSING: _m365_zone(MX_MISSING, mx=[]),
    DKIM_MISSING: _m365_zone(DKIM_MISSING, dkim={}),
    DKIM_SELECTOR1_ONLY: _m365_zone(
        DKIM_SELECTOR1_ONLY, dkim={"selector1": dkim_target(DKIM_SELECTOR1_ONLY, "selector1")}
    ),
    DKIM_ELSEWHERE: _m365_zone(
        DKIM_ELSEWHERE,
        dkim={s: f"{s}.{dashed(DKIM_ELSEWHERE)}._domainkey.esp.example." for s in ("selector1", "selector2")},
    ),
    AUTODISCOVER_MISSING: _m365_zone(AUTODISCOVER_MISSING, autodiscover=[]),
    AUTODISCOVER_ELSEWHERE: _m365_zone(
        AUTODISCOVER_ELSEWHERE, autodiscover=["autodiscover.mailhost.example."]
    ),
    LAB: _zone(
        LAB,
        [
            f"@ MX 10 mx.{LAB}.",
            f"ns A {LOOPBACK}",
            f"mx A {LOOPBACK}",
            f"smtp A {LOOPBACK}",
            _txt("@", f"v=spf1 ip4:127.0.0.2 {MICROSOFT_INCLUDE} -all"),
            _txt("_dmarc", "v=DMARC1; p=reject"),
        ],
    ),
    EXTERNAL: _zone(
        EXTERNAL,
        [
            f"@ A {LOOPBACK}",
            f"@ MX 10 mx.{EXTERNAL}.",
            f"mx A {LOOPBACK}",
        ],
    ),
    SPF_STANDIN: _zone(SPF_STANDIN, [_txt("@", SPF_STANDIN_TEXT)]),
}

#: The Microsoft 365 style domains that are set up correctly.
CORRECT: Final = (GOOD, GOOD_NEW)

#: Broken domain → the one record kind that differs from GOOD ("mx", "spf", "dkim", "dmarc", "autodiscover").
#: (SPF_RELAY_IP is correct for Direct Send and connector relay; it is listed as the SPF case it is.)
BROKEN: Final[dict[str, str]] = {
    SPF_MISSING: "spf",
    SPF_DOUBLE: "spf",
    SPF_NEUTRAL_ALL: "spf",
    SPF_NO_ALL: "spf",
    SPF_PTR: "spf",
    SPF_PASS_ALL: "spf",
    SPF_NO_MICROSOFT: "spf",
    SPF_SYNTAX_ERROR: "spf",
    SPF_TOO_MANY_LOOKUPS: "spf",
    SPF_RELAY_IP: "spf",
    DMARC_NONE: "dmarc",
    DMARC_MISSING: "dmarc",
    DMARC_DOUBLE: "dmarc",
    DMARC_BAD_VERSION: "dmarc",
    DMARC_NO_POLICY: "dmarc",
    DMARC_BAD_POLICY: "dmarc",
    MX_ELSEWHERE: "mx",
    MX_MIXED: "mx",
    MX_MISSING: "mx",
    DKIM_MISSING: "dkim",
    DKIM_SELECTOR1_ONLY: "dkim",
    DKIM_ELSEWHERE: "dkim",
    AUTODISCOVER_MISSING: "autodiscover",
    AUTODISCOVER_ELSEWHERE: "autodiscover",
}

#: Local zones unbound answers itself, zone name → unbound ``local-zone`` type.
LOCAL_ZONES: Final[dict[str, str]] = {
    TIMEOUT: "deny",  # silently dropped
    NXDOMAIN: "always_nxdomain",
    REFUSED: "always_refuse",
}

#: Secondary zones whose primary never answers: unbound has no data and answers SERVFAIL at once.
UNAVAILABLE_ZONES: Final = (SERVFAIL,)
