"""The advisor: every combination of answers gets a method that works, with reasons, warnings and checks."""

from __future__ import annotations

import itertools
from dataclasses import fields, replace
from datetime import date

import pytest

from relaywizard.core import m365
from relaywizard.core.advisor import (
    ADVISED_METHODS,
    Recommendation,
    basic_auth_warning,
    compare,
    describe,
    problems,
    recommend,
    risks,
)
from relaywizard.core.plan import Capabilities, UseCase

BEFORE = date(2026, 11, 20)
AFTER = date(2027, 1, 15)
TRISTATE = (True, False, None)
UNKNOWABLE = [f.name for f in fields(Capabilities) if f.name != "external_recipients"]


def every_answer() -> list[Capabilities]:
    """All 486 combinations of answers (external recipients is yes/no, the rest yes/no/unknown)."""
    combos = []
    for external in (True, False):
        for values in itertools.product(TRISTATE, repeat=len(UNKNOWABLE)):
            combos.append(
                Capabilities(external_recipients=external, **dict(zip(UNKNOWABLE, values, strict=True)))
            )
    return combos


ALL = every_answer()


def completions(caps: Capabilities) -> list[Capabilities]:
    """Every way the unknown answers could turn out."""
    unknown = [name for name in UNKNOWABLE if getattr(caps, name) is None]
    return [
        replace(caps, **dict(zip(unknown, values, strict=True)))
        for values in itertools.product((True, False), repeat=len(unknown))
    ]


def caps(**answers: bool | None) -> Capabilities:
    """Everything a modern device can do, internal recipients, no static IP; overridden by ``answers``."""
    base = {"tls12": True, "can_authenticate": True, "oauth": False, "static_ip": False, "port_587": True}
    base.update(answers)
    return Capabilities(**base)  # type: ignore[arg-type]


def test_the_combinations_are_exhaustive() -> None:
    assert len(ALL) == 2 * 3**5 == len({repr(c) for c in ALL})


# -- the rules table, row by row ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        # 1: TLS 1.2 + AUTH + 587 + OAuth → SMTP AUTH with OAuth
        ({"oauth": True}, ("smtp-auth", "oauth", False, "smtp-auth-oauth")),
        ({"oauth": True, "external_recipients": True}, ("smtp-auth", "oauth", False, "smtp-auth-oauth")),
        ({"oauth": True, "can_authenticate": False}, ("smtp-auth", "oauth", False, "smtp-auth-oauth")),
        ({"oauth": True, "can_authenticate": None}, ("smtp-auth", "oauth", False, "smtp-auth-oauth")),
        # 2: TLS 1.2 + AUTH + 587 without OAuth → SMTP AUTH with a password
        ({}, ("smtp-auth", "password", False, "smtp-auth-password")),
        ({"oauth": None}, ("smtp-auth", "password", False, "smtp-auth-password")),
        (
            {"external_recipients": True, "static_ip": True},
            ("smtp-auth", "password", False, "smtp-auth-password"),
        ),
        # 3: external recipients + static IP, no direct sign-in → connector
        (
            {"tls12": False, "external_recipients": True, "static_ip": True},
            ("connector", "none", False, "connector"),
        ),
        (
            {"can_authenticate": False, "external_recipients": True, "static_ip": True},
            ("connector", "none", False, "connector"),
        ),
        (
            {"port_587": False, "external_recipients": True, "static_ip": True},
            ("connector", "none", False, "connector"),
        ),
        (
            {"tls12": None, "external_recipients": True, "static_ip": True},
            ("connector", "none", False, "connector"),
        ),
        # 4: external recipients without a static IP → the local relay in front of SMTP AUTH
        ({"tls12": False, "external_recipients": True}, ("smtp-auth", "password", True, "relay")),
        (
            {"tls12": False, "external_recipients": True, "static_ip": None},
            ("smtp-auth", "password", True, "relay"),
        ),
        ({"port_587": False, "external_recipients": True}, ("smtp-auth", "password", True, "relay")),
        ({"can_authenticate": None, "external_recipients": True}, ("smtp-auth", "password", True, "relay")),
        # 5: internal recipients only → Direct Send
        ({"tls12": False}, ("direct-send", "none", False, "direct-send")),
        ({"tls12": False, "static_ip": True}, ("direct-send", "none", False, "direct-send")),
        ({"can_authenticate": False}, ("direct-send", "none", False, "direct-send")),
        ({"port_587": False}, ("direct-send", "none", False, "direct-send")),
        ({"port_587": None, "tls12": None}, ("direct-send", "none", False, "direct-send")),
    ],
)
def test_rules_table(answers: dict[str, bool | None], expected: tuple[str, str, bool, str]) -> None:
    advice = recommend(caps(**answers), UseCase.SCANNER, today=BEFORE)
    assert (advice.method, advice.auth, advice.local_relay, advice.rule) == expected


def test_every_rule_is_reachable() -> None:
    rules = {recommend(c, UseCase.SCANNER, today=BEFORE).rule for c in ALL}
    assert rules == {"smtp-auth-oauth", "smtp-auth-password", "connector", "relay", "direct-send"}


# -- properties over every combination ---------------------------------------------------------------------


@pytest.mark.parametrize("use_case", list(UseCase))
@pytest.mark.parametrize("answers", ALL, ids=repr)
def test_every_combination(answers: Capabilities, use_case: UseCase) -> None:
    advice = recommend(answers, use_case, today=BEFORE)
    assert advice.method in ADVISED_METHODS
    # sign-in goes with SMTP AUTH only; the relay only ever fronts SMTP AUTH here
    assert (advice.auth == "none") == (advice.method != "smtp-auth")
    assert not advice.local_relay or advice.method == "smtp-auth"
    # the safe default: it works however the unknown answers turn out
    for actual in completions(answers):
        assert problems(actual, advice.method, advice.auth, advice.local_relay) == [], actual
    # and it never relies on a yes nobody gave
    assert problems(answers, advice.method, advice.auth, advice.local_relay) == []
    # plain words, every sentence finished, nothing left unformatted
    assert advice.reasons
    for text in advice.reasons + advice.warnings + advice.checks:
        assert text[:1].isupper(), text
        assert text.rstrip(")").endswith((".", "$false")), text
        assert "None" not in text
        assert "{" not in text
    assert advice.headline == describe(advice.method, advice.auth, advice.local_relay)


@pytest.mark.parametrize("answers", ALL, ids=repr)
def test_warnings_follow_the_method(answers: Capabilities) -> None:
    advice = recommend(answers, UseCase.SCANNER, today=BEFORE)
    text = " ".join(advice.warnings)
    assert (basic_auth_warning(BEFORE) in text) == (advice.auth == "password")
    assert ("RejectDirectSend" in text) == (advice.method == "direct-send")
    if advice.method == "direct-send":
        assert m365.DIRECT_SEND_REJECTION in text
        assert "connector" in text if answers.static_ip else "local relay" in text
    if advice.method in ("connector", "direct-send"):
        assert f"port {m365.MX_PORT}" in text
        assert "SPF" in text
    if advice.method == "smtp-auth":
        assert m365.PS_ENABLE_SMTP_AUTH_MAILBOX in text
    if advice.local_relay:
        assert "stay on" in text


@pytest.mark.parametrize("answers", ALL, ids=repr)
def test_checks_name_each_unknown_that_matters(answers: Capabilities) -> None:
    advice = recommend(answers, UseCase.SCANNER, today=BEFORE)
    unknown = [name for name in UNKNOWABLE if getattr(answers, name) is None]
    if not unknown:
        assert advice.checks == []
        return
    outcomes = {recommend(c, UseCase.SCANNER).rule for c in completions(answers)}
    if outcomes == {advice.rule}:
        assert advice.checks == []  # nothing to find out: the answer would not change the advice
    else:
        assert advice.checks
    for name in unknown:
        flipped = recommend(replace(answers, **{name: True}), UseCase.SCANNER, today=BEFORE)
        if flipped.rule != advice.rule:
            assert any(check.endswith(f": {flipped.headline}.") for check in advice.checks), name


def test_checks_say_what_a_yes_would_change() -> None:
    advice = recommend(caps(oauth=None), UseCase.APPLICATION, today=BEFORE)
    assert advice.rule == "smtp-auth-password"
    assert advice.checks == [
        "Check whether the device or application offers OAuth 2.0 (often called modern authentication or "
        "Microsoft 365 sign-in). If it does: SMTP AUTH with OAuth 2.0."
    ]
    relay = recommend(caps(tls12=False, external_recipients=True, static_ip=None), UseCase.SCANNER)
    assert relay.rule == "relay"
    assert len(relay.checks) == 1
    assert relay.checks[0].startswith("Ask the internet provider")
    assert relay.checks[0].endswith("If it is: Connector relay.")


def test_everything_unknown_lists_every_check_and_the_best_case() -> None:
    unknown = Capabilities(
        tls12=None, can_authenticate=None, oauth=None, static_ip=None, port_587=None, external_recipients=True
    )
    advice = recommend(unknown, UseCase.SCANNER, today=BEFORE)
    assert (advice.method, advice.local_relay) == ("smtp-auth", True)
    assert len(advice.checks) == 6  # five unknowns, then the best case
    assert advice.checks[-1] == "If all of these are yes: SMTP AUTH with OAuth 2.0."
    assert "not known" in advice.reasons[0]


# -- reasons and warnings in detail ------------------------------------------------------------------------


def test_oauth_reasons_and_warnings() -> None:
    advice = recommend(caps(oauth=True), UseCase.SCANNER, today=BEFORE)
    assert any("recommended" in reason for reason in advice.reasons)
    assert any(m365.SMTP_AUTH.limits_detail in reason for reason in advice.reasons)
    assert any(m365.SMTP_AUTH.sender_rule in reason for reason in advice.reasons)
    assert all("Basic authentication is" not in w for w in advice.warnings)
    assert any("(even with OAuth)" in w for w in advice.warnings) == m365.OAUTH_NEEDS_SMTP_AUTH_ENABLED


def test_password_names_the_lasting_alternative() -> None:
    relay = recommend(caps(), UseCase.SCANNER, today=BEFORE)
    assert "The lasting alternative: the local relay on this computer" in relay.warnings[0]
    connector = recommend(caps(static_ip=True), UseCase.SCANNER, today=BEFORE)
    assert "The lasting alternative: a connector relay" in connector.warnings[0]


def test_basic_auth_warning_is_phrased_for_the_date() -> None:
    before = basic_auth_warning(BEFORE)
    after = basic_auth_warning(AFTER)
    month = f"{m365.BASIC_AUTH_OFF_BY_DEFAULT:%B %Y}"
    assert f"from the end of {month}" in before
    assert after.startswith(f"Since the end of {month}")
    for text in (before, after):
        assert str(m365.BASIC_AUTH_FINAL_REMOVAL_YEAR) in text
        assert "new tenants" in text
    assert basic_auth_warning(m365.BASIC_AUTH_OFF_BY_DEFAULT) == after


def test_why_not_direct_names_what_is_missing() -> None:
    advice = recommend(caps(tls12=False, port_587=None), UseCase.SCANNER, today=BEFORE)
    assert advice.reasons[0] == (
        "Signing in to smtp.office365.com directly needs TLS 1.2, a sign-in and port 587, but the device "
        "has no TLS 1.2 and whether it can use port 587 is not known."
    )
    no_sign_in = recommend(caps(can_authenticate=False), UseCase.SCANNER, today=BEFORE)
    assert no_sign_in.reasons[0].endswith("but it cannot sign in.")


def test_stopgaps_for_near_misses() -> None:
    old_tls = recommend(caps(tls12=False), UseCase.SCANNER, today=BEFORE)
    assert any(
        m365.SMTP_LEGACY_TLS_ENDPOINT.host in w and m365.PS_ALLOW_LEGACY_TLS in w for w in old_tls.warnings
    )
    port_25 = recommend(caps(port_587=False, external_recipients=True), UseCase.SCANNER, today=BEFORE)
    assert port_25.local_relay
    assert any(f"port {m365.SMTP_AUTH_ALTERNATIVE_PORT}" in w for w in port_25.warnings)
    no_auth = recommend(caps(tls12=False, can_authenticate=False), UseCase.SCANNER, today=BEFORE)
    assert not any("smtp-legacy" in w for w in no_auth.warnings)


def test_unencrypted_connector_is_warned_about() -> None:
    advice = recommend(caps(tls12=False, external_recipients=True, static_ip=True), UseCase.SCANNER)
    assert any("unencrypted" in w for w in advice.warnings)
    unknown = recommend(caps(tls12=None, external_recipients=True, static_ip=True), UseCase.SCANNER)
    assert not any("unencrypted" in w for w in unknown.warnings)


@pytest.mark.parametrize("external", [True, False])
def test_applications_hear_where_hve_fits(external: bool) -> None:
    app = recommend(caps(external_recipients=external), UseCase.APPLICATION, today=BEFORE)
    hve = [w for w in app.warnings if m365.HVE.name in w]
    assert len(hve) == 1
    assert "inside the organisation" in hve[0] or "internal" in hve[0]
    assert ("cannot help" in hve[0]) == external
    scanner = recommend(caps(external_recipients=external), UseCase.SCANNER, today=BEFORE)
    assert not any(m365.HVE.name in w for w in scanner.warnings)


def test_recommendation_is_a_plain_dataclass() -> None:
    advice = Recommendation("direct-send", "none", False, "direct-send")
    assert advice.reasons == advice.warnings == advice.checks == []
    assert advice.headline == "Direct Send"


def test_describe() -> None:
    assert describe("smtp-auth", "oauth", False) == "SMTP AUTH with OAuth 2.0"
    assert describe("smtp-auth", "password", False) == "SMTP AUTH with a password"
    assert describe("connector", "none", False) == "Connector relay"
    assert (
        describe("smtp-auth", "oauth", True)
        == "The local relay on this computer, sending by SMTP AUTH with OAuth 2.0"
    )


# -- the comparison ----------------------------------------------------------------------------------------


def test_compare_builds_from_the_facts() -> None:
    cards = compare()
    assert [card.method for card in cards] == list(ADVISED_METHODS)
    for card in cards:
        method = m365.SENDING_METHODS[card.method]
        assert card.name == method.name
        assert card.limits.lower() == method.limits_detail.lower()
        assert card.sender_rule.lower() == method.sender_rule.lower()
        assert [n.lower() for n in card.needs] == [n.lower() for n in method.needs]
        assert card.tls.lower() == method.tls_detail.lower()
        assert card.auth.lower() == method.auth.lower()
        assert str(method.port) in card.endpoint
        assert ("outside" in card.recipients) == method.external_recipients
        assert "<" not in card.endpoint  # the MX placeholder is put in words
    assert cards[0].endpoint == f"{m365.SMTP_AUTH_ENDPOINT.host}, port {m365.SMTP_AUTH_ENDPOINT.port}"
    assert compare(("connector",))[0].method == "connector"


# -- judging a choice the admin made -----------------------------------------------------------------------


def test_problems_with_an_override() -> None:
    external = caps(tls12=False, external_recipients=True)
    assert any("outside" in p for p in problems(external, "direct-send", "none", False))
    assert any("static public IP" in p for p in problems(external, "connector", "none", False))
    assert any("TLS 1.2" in p for p in problems(external, "smtp-auth", "password", False))
    assert problems(external, "smtp-auth", "password", True) == []  # the relay signs in for it
    assert any("OAuth" in p for p in problems(caps(), "smtp-auth", "oauth", False))
    assert any(
        "user name and password" in p
        for p in problems(caps(can_authenticate=None), "smtp-auth", "password", False)
    )
    assert any("port 587" in p for p in problems(caps(port_587=False), "smtp-auth", "password", False))
    assert any("needs a sign-in" in p for p in problems(caps(), "smtp-auth", "none", False))
    assert any("does not sign in" in p for p in problems(caps(), "direct-send", "password", False))
    assert problems(caps(), "smtp-auth", "password", False) == []


def test_risks_of_a_choice() -> None:
    assert basic_auth_warning(AFTER) in risks("smtp-auth", "password", False, today=AFTER)
    assert risks("smtp-auth", "oauth", False) == []
    direct = " ".join(risks("direct-send", "none", False))
    assert m365.DIRECT_SEND_REJECTION in direct
    assert "port 25" in direct
    relayed = risks("direct-send", "none", True)
    assert not any("port 25" in r for r in relayed)
    assert any("stay on" in r for r in relayed)
