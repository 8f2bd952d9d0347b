"""SPF: parsing every RFC 7208 term, naming the bad one, and walking includes one level at a time."""

from __future__ import annotations

import asyncio

import pytest

from relaywizard.diagnostics.spf import (
    Mechanism,
    Modifier,
    SpfEvaluation,
    SpfSyntaxError,
    evaluate,
    is_spf,
    parse_spf,
    spf_records,
)
from tests.diagnostics.fake_dns import MS_SPF, Answer, FakeResolver, failure

MS = "include:spf.protection.outlook.com"

# -- recognising and parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v=spf1 -all", True),
        ("v=spf1", True),
        ("V=SPF1 include:x.com -all", True),
        ("v=spf10 -all", False),
        ("v=spf1x", False),
        ("MS=ms12345678", False),
        ("v=DMARC1; p=none", False),
    ],
)
def test_is_spf(text: str, expected: bool) -> None:
    assert is_spf(text) is expected


def test_spf_records_picks_spf_among_other_txt() -> None:
    assert spf_records(["MS=ms1", "v=spf1 -all", "google-site-verification=x"]) == ["v=spf1 -all"]


def test_parse_every_mechanism_and_qualifier() -> None:
    record = parse_spf(
        "v=spf1 +a -a:mail.contoso.com/24 ~mx ?mx:contoso.com//64 ptr ptr:contoso.com "
        "ip4:203.0.113.10 ip4:198.51.100.0/24 ip6:2001:db8::/32 exists:%{i}._spf.contoso.com "
        f"{MS} -all"
    )
    names = [(m.qualifier, m.name, m.value, m.cidr4, m.cidr6) for m in record.mechanisms]
    assert names == [
        ("+", "a", None, None, None),
        ("-", "a", "mail.contoso.com", 24, None),
        ("~", "mx", None, None, None),
        ("?", "mx", "contoso.com", None, 64),
        ("+", "ptr", None, None, None),
        ("+", "ptr", "contoso.com", None, None),
        ("+", "ip4", "203.0.113.10", None, None),
        ("+", "ip4", "198.51.100.0", 24, None),
        ("+", "ip6", "2001:db8::", None, 32),
        ("+", "exists", "%{i}._spf.contoso.com", None, None),
        ("+", "include", "spf.protection.outlook.com", None, None),
        ("-", "all", None, None, None),
    ]
    assert record.all == Mechanism("-", "all", None, "-all")
    # a, a, mx, mx, ptr, ptr, exists, include
    assert record.lookups == 8


def test_parse_modifiers_redirect_exp_and_unknown() -> None:
    record = parse_spf("v=spf1 ip4:192.0.2.1 redirect=_spf.contoso.com exp=explain.%{d} x-custom=anything")
    assert record.redirect == "_spf.contoso.com"
    assert [m.name for m in record.modifiers] == ["redirect", "exp", "x-custom"]
    assert record.modifiers[2] == Modifier("x-custom", "anything", "x-custom=anything")
    assert record.all is None
    assert record.lookups == 1  # the redirect counts because there is no all


def test_redirect_does_not_count_when_all_is_present() -> None:
    assert parse_spf("v=spf1 redirect=_spf.contoso.com -all").lookups == 0


def test_mechanism_names_are_case_insensitive() -> None:
    record = parse_spf("v=spf1 INCLUDE:spf.protection.outlook.com IP4:192.0.2.1 -ALL")
    assert [m.name for m in record.mechanisms] == ["include", "ip4", "all"]


@pytest.mark.parametrize(
    ("text", "term", "reason"),
    [
        ("v=spf1 ip:192.0.2.25 -all", "ip:192.0.2.25", "unknown mechanism 'ip'; ip4: was probably meant"),
        ("v=spf1 ip:2001:db8::1 -all", "ip:2001:db8::1", "ip6: was probably meant"),
        ("v=spf1 includes:x.com -all", "includes:x.com", "unknown mechanism 'includes'"),
        ("v=spf1 redirect:x.com", "redirect:x.com", "redirect= was probably meant"),
        ("v=spf1 include: -all", "include:", "include needs a domain"),
        ("v=spf1 include:localhost -all", "include:localhost", "not a valid domain name"),
        ("v=spf1 include:x..com -all", "include:x..com", "not a valid domain name"),
        ("v=spf1 include:x.123 -all", "include:x.123", "not a valid domain name"),
        ("v=spf1 ip4:192.0.2.300 -all", "ip4:192.0.2.300", "not an IPv4 address"),
        ("v=spf1 ip4:2001:db8::1 -all", "ip4:2001:db8::1", "is an IPv6 address; use ip6:"),
        ("v=spf1 ip6:192.0.2.1 -all", "ip6:192.0.2.1", "is an IPv4 address; use ip4:"),
        ("v=spf1 ip4:192.0.2.0/33 -all", "ip4:192.0.2.0/33", "from 0 to 32"),
        ("v=spf1 ip6:2001:db8::/129 -all", "ip6:2001:db8::/129", "from 0 to 128"),
        ("v=spf1 ip4 -all", "ip4", "ip4 needs an address"),
        ("v=spf1 a:/24 -all", "a:/24", "needs a domain"),
        ("v=spf1 mx/abc -all", "mx/abc", "not a valid suffix"),
        ("v=spf1 a/33 -all", "a/33", "prefix length is too long"),
        ("v=spf1 all:x", "all:x", "all takes no value"),
        ("v=spf1 -redirect=x.com", "-redirect=x.com", "cannot have a qualifier"),
        ("v=spf1 redirect=a.com redirect=b.com", "redirect=b.com", "may appear only once"),
        ("v=spf1 exists:%{z}.x.com -all", "exists:%{z}.x.com", "malformed %-macro"),
        ("v=spf1 9bad=x", "9bad=x", "not a valid modifier name"),
        ("spf1 -all", "spf1", "starts with v=spf1"),
    ],
)
def test_syntax_errors_name_the_term(text: str, term: str, reason: str) -> None:
    with pytest.raises(SpfSyntaxError) as caught:
        parse_spf(text)
    assert caught.value.term == term
    assert reason in caught.value.reason
    assert repr(term) in str(caught.value)


# -- evaluation ------------------------------------------------------------------------------------------


def txt(records: dict[str, str | list[str]]) -> dict[tuple[str, str], Answer]:
    """TXT answers for names; Microsoft's record is always there."""
    answers: dict[tuple[str, str], Answer] = {("spf.protection.outlook.com", "TXT"): [MS_SPF]}
    for name, value in records.items():
        answers[(name, "TXT")] = [value] if isinstance(value, str) else value
    return answers


async def run(
    record: str,
    others: dict[str, str | list[str]] | None = None,
    relay_ip: str | None = None,
    extra: dict[tuple[str, str], Answer] | None = None,
    delay: float = 0.0,
) -> tuple[SpfEvaluation, FakeResolver]:
    resolver = FakeResolver({**txt(others or {}), **(extra or {})}, delay=delay)
    result = await evaluate(resolver, "contoso.com", parse_spf(record), relay_ip)
    return result, resolver


async def test_direct_microsoft_include() -> None:
    spf, resolver = await run(f"v=spf1 {MS} -all")
    assert spf.includes_microsoft
    assert spf.lookups == 1
    assert spf.all == "-all"
    assert spf.errors == ()
    assert spf.relay_ip_covered is None
    assert resolver.asked("spf.protection.outlook.com", "TXT") == 1


async def test_microsoft_include_through_nested_includes() -> None:
    spf, _ = await run(
        "v=spf1 include:_spf.contoso.com ~all",
        {
            "_spf.contoso.com": "v=spf1 include:_deep.contoso.com -all",
            "_deep.contoso.com": f"v=spf1 {MS} -all",
        },
    )
    assert spf.includes_microsoft
    assert spf.lookups == 3
    assert spf.all == "~all"  # the top record's all, not an included one's


async def test_no_microsoft_include() -> None:
    spf, _ = await run("v=spf1 ip4:192.0.2.25 -all")
    assert not spf.includes_microsoft
    assert spf.lookups == 0


async def test_lookups_counted_recursively_like_the_lab_zone() -> None:
    """3 at the top, 4 in _spf1, 2 in _spf2, 2 in _spf3 (nested in _spf1): 11, over the limit."""
    spf, _ = await run(
        f"v=spf1 include:_spf1.contoso.com include:_spf2.contoso.com {MS} -all",
        {
            "_spf1.contoso.com": "v=spf1 a:relay1.contoso.com a:relay2.contoso.com mx:mail.contoso.com "
            "include:_spf3.contoso.com -all",
            "_spf2.contoso.com": "v=spf1 a:relay3.contoso.com exists:%{i}.allow.contoso.com -all",
            "_spf3.contoso.com": "v=spf1 a:relay4.contoso.com a:relay5.contoso.com -all",
        },
    )
    assert spf.lookups == 11
    assert spf.complete
    assert spf.lookups_by_term == {
        "include:_spf1.contoso.com": 7,
        "include:_spf2.contoso.com": 3,
        MS: 1,
    }


async def test_following_stops_once_over_the_limit() -> None:
    many = " ".join(f"a:h{n}.contoso.com" for n in range(11))
    spf, resolver = await run(
        f"v=spf1 {many} include:_spf.contoso.com -all", {"_spf.contoso.com": "v=spf1 -all"}
    )
    assert spf.lookups == 12
    assert not spf.complete
    assert resolver.asked("_spf.contoso.com") == 0


async def test_redirect_is_followed_and_its_all_is_final() -> None:
    spf, _ = await run(
        "v=spf1 ip4:192.0.2.1 redirect=_spf.contoso.com", {"_spf.contoso.com": f"v=spf1 {MS} ~all"}
    )
    assert spf.includes_microsoft
    assert spf.all == "~all"
    assert spf.lookups == 2


async def test_redirect_is_ignored_when_the_record_has_all() -> None:
    spf, resolver = await run(
        "v=spf1 redirect=_spf.contoso.com ?all", {"_spf.contoso.com": f"v=spf1 {MS} -all"}
    )
    assert spf.all == "?all"
    assert resolver.asked("_spf.contoso.com") == 0


async def test_all_of_an_include_is_not_the_final_all() -> None:
    spf, _ = await run("v=spf1 include:_spf.contoso.com", {"_spf.contoso.com": f"v=spf1 {MS} -all"})
    assert spf.all is None


async def test_ptr_anywhere_in_the_tree() -> None:
    spf, _ = await run(f"v=spf1 include:_spf.contoso.com {MS} -all", {"_spf.contoso.com": "v=spf1 ptr -all"})
    assert spf.uses_ptr


async def test_loop_is_reported_and_not_followed_forever() -> None:
    spf, _ = await run(
        "v=spf1 include:_a.contoso.com -all",
        {
            "_a.contoso.com": "v=spf1 include:_b.contoso.com -all",
            "_b.contoso.com": "v=spf1 include:_a.contoso.com -all",
        },
    )
    kinds = [e.kind for e in spf.errors]
    assert kinds == ["loop"]
    assert "_a.contoso.com → _b.contoso.com → _a.contoso.com" in spf.errors[0].message


async def test_self_include_is_a_loop() -> None:
    spf, _ = await run("v=spf1 include:contoso.com -all", {"contoso.com": "v=spf1 include:contoso.com -all"})
    assert [e.kind for e in spf.errors] == ["loop"]


async def test_diamond_counts_twice_but_queries_once() -> None:
    spf, resolver = await run(
        "v=spf1 include:_a.contoso.com include:_b.contoso.com -all",
        {
            "_a.contoso.com": "v=spf1 include:_shared.contoso.com -all",
            "_b.contoso.com": "v=spf1 include:_shared.contoso.com -all",
            "_shared.contoso.com": f"v=spf1 {MS} -all",
        },
    )
    assert spf.errors == ()
    assert spf.lookups == 2 + 2 + 2
    assert resolver.asked("_shared.contoso.com") == 1
    assert resolver.asked("spf.protection.outlook.com") == 1


@pytest.mark.parametrize(
    ("answer", "kind", "text"),
    [
        (["v=spf1 ip:1.2.3.4 -all"], "syntax", "'ip:1.2.3.4'"),
        (["v=spf1 -all", "v=spf1 ~all"], "multiple", "has 2 SPF records"),
        (["MS=ms1"], "no-record", "without an SPF record"),
        (failure("nxdomain", "_spf.contoso.com", "TXT"), "no-record", "without an SPF record"),
        (failure("timeout", "_spf.contoso.com", "TXT"), "dns", "timed out"),
        (failure("servfail", "_spf.contoso.com", "TXT"), "dns", "SERVFAIL"),
    ],
)
async def test_problems_below_the_top(answer: Answer, kind: str, text: str) -> None:
    resolver = FakeResolver({**txt({}), ("_spf.contoso.com", "TXT"): answer})
    spf = await evaluate(resolver, "contoso.com", parse_spf(f"v=spf1 include:_spf.contoso.com {MS} -all"))
    assert [e.kind for e in spf.errors] == [kind]
    assert text in spf.errors[0].message
    assert spf.errors[0].term == "include:_spf.contoso.com"


async def test_macro_targets_are_counted_not_followed() -> None:
    spf, resolver = await run(f"v=spf1 include:%{{d}}._spf.example.com exists:%{{i}}.x.com {MS} -all")
    assert spf.lookups == 3
    assert spf.errors == ()
    assert len(resolver.queries) == 1


async def test_one_level_is_looked_up_at_once() -> None:
    """Three includes at the top, each with one below: two rounds of look-ups, not six."""
    others: dict[str, str | list[str]] = {}
    for n in range(3):
        others[f"_{n}.contoso.com"] = f"v=spf1 include:_{n}b.contoso.com -all"
        others[f"_{n}b.contoso.com"] = "v=spf1 ip4:192.0.2.1 -all"
    includes = " ".join(f"include:_{n}.contoso.com" for n in range(3))
    spf, resolver = await run(f"v=spf1 {includes} {MS} -all", others, delay=0.1)
    assert spf.lookups == 7
    assert resolver.max_in_flight == 4  # three includes and Microsoft's record together
    started = sorted({round(q.started, 1) for q in resolver.queries})
    assert len(resolver.queries) == 7
    assert started[-1] - started[0] < 0.25  # two rounds


# -- the relay IP ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "relay", "covered"),
    [
        ("v=spf1 ip4:203.0.113.10 -all", "203.0.113.10", True),
        ("v=spf1 ip4:203.0.113.0/24 -all", "203.0.113.10", True),
        ("v=spf1 +ip4:203.0.113.10 -all", "203.0.113.10", True),
        ("v=spf1 ip4:203.0.113.11 -all", "203.0.113.10", False),
        ("v=spf1 ip4:203.0.112.0/24 -all", "203.0.113.10", False),
        ("v=spf1 -ip4:203.0.113.10 -all", "203.0.113.10", False),
        ("v=spf1 ~ip4:203.0.113.10 -all", "203.0.113.10", False),
        ("v=spf1 ip6:2001:db8::/32 -all", "2001:db8::25", True),
        ("v=spf1 ip4:203.0.113.10 -all", "2001:db8::25", False),
        ("v=spf1 +all", "203.0.113.10", False),  # +all is a fail of its own, not coverage
    ],
)
async def test_relay_ip_in_address_terms(record: str, relay: str, covered: bool) -> None:
    spf, _ = await run(record, relay_ip=relay)
    assert spf.relay_ip_covered is covered


async def test_relay_ip_through_a_nested_include() -> None:
    spf, _ = await run(
        f"v=spf1 include:_spf.contoso.com {MS} -all",
        {"_spf.contoso.com": "v=spf1 ip4:203.0.113.0/28 -all"},
        relay_ip="203.0.113.10",
    )
    assert spf.relay_ip_covered


async def test_relay_ip_not_through_a_softfail_include() -> None:
    spf, _ = await run(
        f"v=spf1 ~include:_spf.contoso.com {MS} -all",
        {"_spf.contoso.com": "v=spf1 ip4:203.0.113.10 -all"},
        relay_ip="203.0.113.10",
    )
    assert spf.relay_ip_covered is False


async def test_relay_ip_through_a_and_mx() -> None:
    extra: dict[tuple[str, str], Answer] = {
        ("relay.contoso.com", "A"): ["203.0.113.10"],
        ("contoso.com", "MX"): ["10 mail.contoso.com."],
        ("mail.contoso.com", "A"): ["198.51.100.7"],
    }
    spf_a, _ = await run("v=spf1 a:relay.contoso.com -all", relay_ip="203.0.113.10", extra=extra)
    spf_mx, _ = await run("v=spf1 mx -all", relay_ip="198.51.100.7", extra=extra)
    spf_cidr, _ = await run("v=spf1 mx/24 -all", relay_ip="198.51.100.99", extra=extra)
    spf_no, _ = await run("v=spf1 a:relay.contoso.com mx -all", relay_ip="192.0.2.1", extra=extra)
    spf_missing, _ = await run("v=spf1 a:gone.contoso.com -all", relay_ip="192.0.2.1", extra=extra)
    assert spf_a.relay_ip_covered
    assert spf_mx.relay_ip_covered
    assert spf_cidr.relay_ip_covered
    assert spf_no.relay_ip_covered is False
    assert spf_missing.relay_ip_covered is False


async def test_a_and_mx_are_not_resolved_without_a_relay_ip() -> None:
    _, resolver = await run("v=spf1 a mx -all")
    assert resolver.queries == []


async def test_cancelling_stops_the_walk_and_its_look_ups() -> None:
    resolver = FakeResolver(txt({"_a.contoso.com": "v=spf1 -all"}), delay=5)
    task = asyncio.create_task(
        evaluate(resolver, "contoso.com", parse_spf(f"v=spf1 include:_a.contoso.com {MS} -all"))
    )
    await asyncio.sleep(0.05)
    assert resolver.in_flight == 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert resolver.in_flight == 0
