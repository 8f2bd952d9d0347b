"""The reply explainer: parsing what people paste, the table, picking the right row, the RFC fallbacks."""

from __future__ import annotations

import re

import pytest

from relaywizard.core.errors import UsageError
from relaywizard.diagnostics.replies import (
    REPLIES,
    KnownReply,
    ParsedReply,
    explain,
    find_entry,
    parse_reply,
)

# -- parsing -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "basic", "enhanced", "rest"),
    [
        ("5.7.139", None, "5.7.139", ""),
        ("  4.7.0\n", None, "4.7.0", ""),
        ("5.7.139 Authentication unsuccessful", None, "5.7.139", "Authentication unsuccessful"),
        ("535 5.7.139 Authentication unsuccessful", 535, "5.7.139", "Authentication unsuccessful"),
        ("535-5.7.139 Authentication unsuccessful", 535, "5.7.139", "Authentication unsuccessful"),
        ("550 Mailbox unavailable", 550, None, "Mailbox unavailable"),
        ("550", 550, None, ""),
        ("550-", 550, None, ""),
        ("250 OK", 250, None, "OK"),
        ("5.07.001", None, "5.7.1", ""),
        ("2.1.5", None, "2.1.5", ""),
        ("5.7.999", None, "5.7.999", ""),
        ("432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded", 432, "4.3.2", None),
        # a reply quoted in an NDR or a log line
        (
            "Remote Server returned '550 5.7.60 SMTP; Client does not have permissions to send as "
            "this sender'",
            550,
            "5.7.60",
            "SMTP; Client does not have permissions to send as this sender",
        ),
        (
            "status=bounced (host 127.0.0.1[127.0.0.1] said: 554 5.7.1 <a@example.net>: Relay access denied)",
            554,
            "5.7.1",
            "<a@example.net>: Relay access denied",
        ),
    ],
)
def test_parse_reply(text: str, basic: int | None, enhanced: str | None, rest: str | None) -> None:
    parsed = parse_reply(text)
    assert parsed is not None
    assert (parsed.basic, parsed.enhanced) == (basic, enhanced)
    if rest is not None:
        assert parsed.text == rest


def test_parse_multi_line_reply_with_continuations() -> None:
    text = (
        "535-5.7.139 Authentication unsuccessful, SmtpClientAuthentication\r\n"
        "535-5.7.139 is disabled for the Mailbox.\r\n"
        "535 5.7.139 Visit https://aka.ms/smtp_auth_disabled for more information.\r\n"
    )
    parsed = parse_reply(text)
    assert parsed == ParsedReply(
        535,
        "5.7.139",
        "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. "
        "Visit https://aka.ms/smtp_auth_disabled for more information.",
    )
    assert explain(text).title == "SMTP AUTH is off for this mailbox"


def test_parse_multi_line_reply_whose_enhanced_code_is_only_on_some_lines() -> None:
    parsed = parse_reply("250-smtp.example.com Hello\n250-PIPELINING\n250 2.0.0 OK")
    assert parsed is not None
    assert (parsed.basic, parsed.enhanced) == (250, "2.0.0")
    assert parsed.text == "smtp.example.com Hello PIPELINING OK"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "\n\n",
        "hello",
        "Authentication unsuccessful",
        "999 9.9.9",
        "999",
        "650 not a reply",
        "160 too low",
        "5.7",
        "5.7.",
        "5.7.1000",
        "5.7.139.2",
        "1.2.3",
        "6.0.0",
        "3.1.1",
        "5.1000.1",
        "55",
        "5500 x",
        "version 5.2.1 released",
        "!@#$%^&*()",
    ],
)
def test_parse_refuses_what_is_not_a_reply(text: str) -> None:
    assert parse_reply(text) is None


def test_explain_refuses_what_is_not_a_reply() -> None:
    with pytest.raises(UsageError, match=r"'hello' is not an SMTP reply or status code") as caught:
        explain("hello")
    assert "5.7.139" in caught.value.hint


def test_a_long_argument_is_shortened_in_the_error() -> None:
    with pytest.raises(UsageError) as caught:
        explain("x" * 500 + "\nmore")
    assert len(caught.value.message) < 120


# -- the table ---------------------------------------------------------------------------------------------


def test_the_table_is_big_enough_and_complete() -> None:
    assert len(REPLIES) >= 40
    for entry in REPLIES:
        for field in (entry.title, entry.meaning, entry.fix, entry.example, entry.source):
            assert field.strip(), entry
        assert entry.code is not None or entry.basic is not None, entry
        if entry.text is not None:
            re.compile(entry.text)


@pytest.mark.parametrize("entry", REPLIES, ids=lambda e: f"{e.basic or ''} {e.code or ''} {e.title}")
def test_every_entry_is_reachable_by_its_example(entry: KnownReply) -> None:
    parsed = parse_reply(entry.example)
    assert parsed is not None, entry.example
    assert find_entry(parsed) is entry
    explanation = explain(entry.example)
    assert explanation.known
    assert explanation.title == entry.title
    assert explanation.fix == entry.fix


def test_no_two_entries_are_the_same_row() -> None:
    keys = [(e.code, e.text, e.basic) for e in REPLIES]
    assert len(keys) == len(set(keys))


# Every reply row of m365-facts.md's "Reply codes" table, as Microsoft writes it.
FACTS_ROWS = [
    ("530 5.7.57 Client was not authenticated to send anonymous mail during MAIL FROM", "anonymous"),
    ("535 5.7.3 Authentication unsuccessful", "Authentication unsuccessful"),
    ("451 5.7.3 STARTTLS is required to send mail", "STARTTLS"),
    ("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant", "organ"),
    (
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox",
        "mailbox",
    ),
    ("535 5.7.139 Authentication unsuccessful, user is locked by your security defaults policy", "defaults"),
    ("535 5.7.139 Authentication unsuccessful, basic authentication is disabled", "Basic"),
    ("550 5.7.30 Basic authentication is not supported for Client Submission", "Basic"),
    ("421 4.7.66 TLS 1.0 and 1.1 are not supported", "TLS 1.0"),
    ("550 5.7.60 SMTP; Client does not have permissions to send as this sender", "send as"),
    ("550 5.7.64 TenantAttribution; Relay Access Denied", "connector"),
    ("550 5.7.51 TenantInboundAttribution", "connector"),
    ("550 5.7.68 TenantInboundAttribution; Direct Send not allowed", "Direct Send"),
    ("550 5.7.54 Unable to relay recipient in non-accepted domain", "Direct Send"),
    ("550 5.7.606 Access denied, banned sending IP [203.0.113.10]", "banned"),
    ("550 5.7.649 Access denied, banned sending IP [203.0.113.10]", "banned"),
    ("451 4.7.500 Access denied, please try again later", "throttled"),
    ("451 4.7.699 Access denied, please try again later", "throttled"),
    ("432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded", "connections"),
    ("554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException", "limit"),
    ("550 5.2.251 continuous errors", "repeated errors"),
    ("550 5.2.255 continuous errors", "repeated errors"),
    ("550 5.7.705 Access denied, tenant has exceeded threshold", "blocked"),
    ("550 5.7.708 Access denied, traffic not accepted from this IP", "reputation"),
    ("550 5.7.750 Client blocked from sending from unregistered domains", "not registered"),
    ("550 5.1.8 Access denied, bad outbound sender", "restricted"),
    ("550 5.7.1 Unable to relay", "Relay not allowed"),
    ("550 5.4.1 Recipient address rejected: Access denied", "Recipient"),
    ("552 5.2.3 RESOLVER.RST.SendSizeLimit.Sender; message too large", "too large"),
    ("552 5.3.4 Message size exceeds fixed limit", "too large"),
    ("550 5.7.23 The message was rejected because of Sender Policy Framework violation", "SPF"),
    ("550 5.7.509 Access denied, sending domain does not pass DMARC verification", "DMARC"),
    ("550 5.7.233 tenant external recipient rate limit", "rate limit"),
]


@pytest.mark.parametrize(("reply", "title_word"), FACTS_ROWS)
def test_every_row_of_the_facts_table_is_known(reply: str, title_word: str) -> None:
    explanation = explain(reply)
    assert explanation.known
    assert explanation.entry is not None
    assert explanation.entry.source != "RFC 5321"
    assert title_word.lower() in explanation.title.lower()


# -- picking the most specific row -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "title", "fix_fragment"),
    [
        ("5.7.139", "SMTP AUTH is switched off", "Set-CASMailbox"),
        ("535 5.7.139 Authentication unsuccessful", "SMTP AUTH is switched off", "Set-CASMailbox"),
        (
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.",
            "SMTP AUTH is off for the organisation",
            "-SmtpClientAuthenticationDisabled $false",
        ),
        (
            "535 5.7.139 authentication unsuccessful, smtpclientauthentication is disabled for the mailbox",
            "SMTP AUTH is off for this mailbox",
            "Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false",
        ),
        (
            "535 5.7.139 Authentication unsuccessful, user is locked by your organization's security "
            "defaults policy. Contact your administrator.",
            "Blocked by security defaults",
            "Conditional Access",
        ),
        (
            "535 5.7.139 Authentication unsuccessful, basic authentication is disabled.",
            "Basic authentication blocked by a policy",
            "AllowBasicAuthSmtp",
        ),
        (
            "535 5.7.139 Authentication unsuccessful, Basic Authentication is DISABLED",
            "Basic authentication blocked by a policy",
            "OAuth",
        ),
        ("535 5.7.3 Authentication unsuccessful", "Authentication unsuccessful", "New-ServicePrincipal"),
        ("5.7.3", "Authentication unsuccessful", "SMTP.Send"),
        ("451 5.7.3 STARTTLS is required to send mail", "STARTTLS required", "465"),
        ("550 5.7.1 Unable to relay", "Relay not allowed", "connector"),
        ("5.7.1", "Delivery not authorised", "Send As"),
        (
            "553 5.7.1 <scanner@contoso.com>: Sender address rejected: not owned by user",
            "not owned",
            "--sender",
        ),
        ("454 4.7.0 Temporary authentication failure", "Temporary authentication failure", "Retry"),
        ("4.7.0", "Temporarily refused", "Retry"),
        ("421 4.7.0 Too many errors", "Temporarily refused", "Retry"),
        ("5.2.0", "Other or undefined mailbox status", "mailbox"),
        ("4.3.2", "System not accepting network messages", "Retry"),
    ],
)
def test_the_most_specific_row_wins(reply: str, title: str, fix_fragment: str) -> None:
    explanation = explain(reply)
    assert title.lower() in explanation.title.lower()
    assert fix_fragment in explanation.fix


@pytest.mark.parametrize(
    ("code", "in_range"),
    [
        ("5.7.605", False),
        ("5.7.606", True),
        ("5.7.627", True),
        ("5.7.649", True),
        ("5.7.650", False),
        ("4.7.499", False),
        ("4.7.500", True),
        ("4.7.599", True),
        ("4.7.699", True),
        ("4.7.700", False),
        ("5.2.250", False),
        ("5.2.251", True),
        ("5.2.253", True),
        ("5.2.255", True),
        ("5.2.256", False),
    ],
)
def test_ranges(code: str, in_range: bool) -> None:
    explanation = explain(code)
    entry = explanation.entry
    assert (entry is not None and entry.code is not None and "-" in entry.code) is in_range
    if not in_range:
        assert not explanation.known  # none of these details is registered


def test_the_range_entry_is_the_same_for_all_its_codes() -> None:
    assert explain("5.7.606").entry is explain("550 5.7.640 Access denied, banned sending IP").entry


def test_a_wildcard_row_also_names_the_standard_detail() -> None:
    explanation = explain("421 4.4.2 Connection dropped due to SocketError")
    assert explanation.title == "Network problem (temporary)"
    assert explanation.meaning.startswith("Bad connection (4.4.2).")
    assert explain("4.4.99").meaning.startswith("The message could not be passed on")


def test_basic_codes_without_enhanced_codes() -> None:
    explanation = explain("550 Mailbox unavailable")
    assert (explanation.code, explanation.basic, explanation.known) == (None, 550, True)
    assert explanation.title == "Rejected: mailbox unavailable"
    assert explain("421").title == "Service not available"
    assert explain("535 Authentication failed").title == "Authentication failed"
    # basic-only rows never take over a reply that has an enhanced code
    assert explain("550 5.1.1 User unknown").title == "Recipient does not exist"


def test_an_unknown_basic_code_is_explained_by_its_first_digit() -> None:
    explanation = explain("432 something")
    assert (explanation.code, explanation.basic, explanation.known) == (None, 432, False)
    assert "temporary" in explanation.meaning


# -- RFC 3463 fallback -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "title", "class_word"),
    [
        ("5.2.2", "Mailbox full", "Permanent"),
        ("4.2.2", "Mailbox full", "Temporary"),
        ("5.1.3", "Bad destination mailbox address syntax", "Permanent"),
        ("5.6.1", "Media not supported", "Permanent"),
        ("5.7.13", "User account disabled", "Permanent"),
        ("5.7.10", "Encryption needed", "Permanent"),
        ("5.7.12", "A password transition is needed", "Permanent"),
        ("2.1.5", "Destination address valid", "Success"),
        ("4.3.1", "Mail system full", "Temporary"),
    ],
)
def test_rfc3463_details(code: str, title: str, class_word: str) -> None:
    explanation = explain(code)
    assert explanation.entry is None
    assert explanation.known
    assert (explanation.code, explanation.title) == (code, title)
    assert class_word in explanation.meaning
    assert explanation.fix


@pytest.mark.parametrize(
    ("code", "subject_words", "class_word"),
    [
        ("5.7.999", "security or policy", "Permanent"),
        ("4.1.77", "addressing", "Temporary"),
        ("5.6.123", "content", "Permanent"),
        ("5.9.9", "unknown subject", "Permanent"),
    ],
)
def test_rfc3463_class_and_subject_only(code: str, subject_words: str, class_word: str) -> None:
    explanation = explain(code)
    assert explanation.entry is None
    assert not explanation.known
    assert subject_words in explanation.meaning
    assert class_word in explanation.meaning
    assert class_word in explanation.title
    assert explanation.fix
    if class_word == "Temporary":
        assert "Retry later" in explanation.fix


def test_explain_takes_a_parsed_reply_too() -> None:
    parsed = ParsedReply(535, "5.7.139", "SmtpClientAuthentication is disabled for the Tenant")
    assert explain(parsed) == explain("535 5.7.139 SmtpClientAuthentication is disabled for the Tenant")
    assert explain(ParsedReply(None, "5.7.57", "")).title.startswith("Not signed in")
