"""Records ready to paste: the corrected SPF and DMARC, and the records Microsoft 365 expects."""

from __future__ import annotations

import pytest

from relaywizard.core import m365
from relaywizard.diagnostics.model import Method
from relaywizard.diagnostics.records import (
    DnsRecord,
    dkim_records,
    dmarc_fix,
    dmarc_record,
    dmarc_tags,
    dmarc_value,
    expected_autodiscover,
    expected_mx,
    spf_fix,
    spf_record,
)
from relaywizard.diagnostics.spf import parse_spf

MS = "include:spf.protection.outlook.com"
IP = "203.0.113.10"

# -- SPF ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("existing", "relay", "method", "expected"),
    [
        (None, None, "smtp-auth", f"v=spf1 {MS} -all"),
        (None, IP, "smtp-auth", f"v=spf1 {MS} -all"),  # SMTP AUTH mail never leaves from the office's IP
        (None, IP, "direct-send", f"v=spf1 ip4:{IP} {MS} -all"),
        (None, IP, "connector", f"v=spf1 ip4:{IP} {MS} -all"),
        (None, "2001:db8::25", "connector", f"v=spf1 ip6:2001:db8::25 {MS} -all"),
        ("v=spf1 ip4:192.0.2.25 -all", None, "smtp-auth", f"v=spf1 ip4:192.0.2.25 {MS} -all"),
        ("v=spf1 ip4:192.0.2.25 ~all", IP, "direct-send", f"v=spf1 ip4:{IP} ip4:192.0.2.25 {MS} ~all"),
        (f"v=spf1 {MS} +all", None, "smtp-auth", f"v=spf1 {MS} -all"),
        (f"v=spf1 {MS} ?all", None, "smtp-auth", f"v=spf1 {MS} -all"),
        (f"v=spf1 {MS}", None, "smtp-auth", f"v=spf1 {MS} -all"),
        (f"v=spf1 ptr {MS} -all", None, "smtp-auth", f"v=spf1 {MS} -all"),
        (f"v=spf1 ip4:203.0.113.0/24 {MS} -all", IP, "direct-send", f"v=spf1 ip4:203.0.113.0/24 {MS} -all"),
        (f"v=spf1 -ip4:{IP} {MS} -all", IP, "direct-send", f"v=spf1 ip4:{IP} -ip4:{IP} {MS} -all"),
        (f"v=spf1 {MS} ip:192.0.2.25 -all", None, "smtp-auth", f"v=spf1 {MS} ip4:192.0.2.25 -all"),
        (f"v=spf1 {MS} bogus:x -all", None, "smtp-auth", f"v=spf1 {MS} -all"),
        (
            "V=SPF1 INCLUDE:SPF.PROTECTION.OUTLOOK.COM -ALL",
            None,
            "smtp-auth",
            "v=spf1 INCLUDE:SPF.PROTECTION.OUTLOOK.COM -all",
        ),
        (
            "v=spf1 a mx include:_spf.example.net exp=why.contoso.com -all",
            IP,
            "connector",
            f"v=spf1 ip4:{IP} a mx include:_spf.example.net {MS} -all exp=why.contoso.com",
        ),
        # a lone redirect keeps working: appending an all would silently disable it
        ("v=spf1 redirect=_spf.contoso.com", None, "smtp-auth", f"v=spf1 {MS} redirect=_spf.contoso.com"),
    ],
)
def test_spf_fix(existing: str | None, relay: str | None, method: Method, expected: str) -> None:
    fixed = spf_fix(existing, relay, method)
    assert fixed == expected
    parse_spf(fixed)  # always valid


def test_spf_fix_normalises_all_case_only_when_rewriting() -> None:
    # The all term is always rewritten; the rest is kept as written.
    assert spf_fix("v=spf1 include:spf.protection.outlook.com ~ALL", None, "smtp-auth").endswith(" ~all")


def test_spf_fix_merges_two_records_into_one() -> None:
    fixed = spf_fix([f"v=spf1 {MS} -all", "v=spf1 ip4:192.0.2.25 ~all"], IP, "direct-send")
    assert fixed == f"v=spf1 ip4:{IP} {MS} ip4:192.0.2.25 -all"


def test_spf_fix_merge_keeps_softfail_only_when_every_record_had_it() -> None:
    assert spf_fix(["v=spf1 a ~all", "v=spf1 mx ~all"], None, "smtp-auth").endswith(" ~all")
    assert spf_fix(["v=spf1 a ~all", "v=spf1 mx ?all"], None, "smtp-auth").endswith(" ~all")


def test_spf_fix_merge_turns_redirects_into_includes_and_drops_duplicates() -> None:
    fixed = spf_fix([f"v=spf1 {MS} redirect=_spf.contoso.com", f"v=spf1 {MS} a -all"], None, "smtp-auth")
    assert fixed == f"v=spf1 {MS} a include:_spf.contoso.com -all"


def test_spf_fix_with_the_include_reached_through_another_include() -> None:
    fixed = spf_fix("v=spf1 include:_spf.contoso.com ?all", None, "smtp-auth", nested_include=True)
    assert fixed == "v=spf1 include:_spf.contoso.com -all"


def test_spf_record_line() -> None:
    record = spf_record("Contoso.com.", f"v=spf1 {MS} -all")
    assert record.line() == f'contoso.com TXT "v=spf1 {MS} -all"'


# -- DMARC -------------------------------------------------------------------------------------------------


def test_dmarc_record_line() -> None:
    assert dmarc_record("Contoso.com") == '_dmarc.contoso.com TXT "v=DMARC1; p=quarantine"'
    assert dmarc_record("contoso.com", "reject", "dmarc@contoso.com") == (
        '_dmarc.contoso.com TXT "v=DMARC1; p=reject; rua=mailto:dmarc@contoso.com"'
    )
    assert dmarc_value(rua="mailto:x@contoso.com") == "v=DMARC1; p=quarantine; rua=mailto:x@contoso.com"


def test_dmarc_tags() -> None:
    assert dmarc_tags("v=DMARC1; P=none ;rua=mailto:a@b.c;; junk") == {
        "v": "DMARC1",
        "p": "none",
        "rua": "mailto:a@b.c",
    }


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        ([], "v=DMARC1; p=quarantine"),
        (["v=DMARC1; p=none; rua=mailto:d@contoso.com"], "v=DMARC1; p=quarantine; rua=mailto:d@contoso.com"),
        (["v=DMARC; p=reject"], "v=DMARC1; p=reject"),
        (["v=DMARC1; rua=mailto:d@contoso.com"], "v=DMARC1; p=quarantine; rua=mailto:d@contoso.com"),
        (["v=DMARC1; p=block; pct=100"], "v=DMARC1; p=quarantine; pct=100"),
        (["v=DMARC1; p=quarantine", "v=DMARC1; p=reject; sp=reject"], "v=DMARC1; p=reject; sp=reject"),
        (["p=reject; v=DMARC1"], "v=DMARC1; p=reject"),
    ],
)
def test_dmarc_fix(existing: list[str], expected: str) -> None:
    assert dmarc_fix("contoso.com", existing) == f'_dmarc.contoso.com TXT "{expected}"'


# -- what Microsoft 365 expects ----------------------------------------------------------------------------


def test_expected_mx() -> None:
    assert expected_mx("Contoso.com").line() == "contoso.com MX 0 contoso-com.mail.protection.outlook.com"
    assert m365.is_microsoft_mx(expected_mx("contoso.com").value.split()[1])


def test_dkim_records_with_a_placeholder_tenant() -> None:
    assert [r.line() for r in dkim_records("contoso.com")] == [
        "selector1._domainkey.contoso.com CNAME selector1-contoso-com._domainkey.<tenant>.onmicrosoft.com",
        "selector2._domainkey.contoso.com CNAME selector2-contoso-com._domainkey.<tenant>.onmicrosoft.com",
    ]


def test_dkim_records_with_a_tenant() -> None:
    records = dkim_records("contoso.com", "contoso.onmicrosoft.com")
    assert records[0].value == "selector1-contoso-com._domainkey.contoso.onmicrosoft.com"
    assert all(
        m365.is_microsoft_dkim_target(r.value, "contoso.com", f"selector{n}")
        for n, r in enumerate(records, 1)
    )


def test_dkim_records_derived_from_the_selector_that_is_right() -> None:
    known = "selector1-fabrikam-com._domainkey.fabrikam.n-v1.dkim.mail.microsoft."
    records = dkim_records("fabrikam.com", known_target=known)
    assert records[1] == DnsRecord(
        "selector2._domainkey.fabrikam.com",
        "CNAME",
        "selector2-fabrikam-com._domainkey.fabrikam.n-v1.dkim.mail.microsoft",
    )


def test_expected_autodiscover() -> None:
    assert (
        expected_autodiscover("contoso.com").line()
        == "autodiscover.contoso.com CNAME autodiscover.outlook.com"
    )
    assert str(expected_autodiscover("contoso.com")) == expected_autodiscover("contoso.com").line()
