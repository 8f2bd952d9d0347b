"""Sender rewrite: only the header lines that must change do, and the body never does."""

from __future__ import annotations

import email
import email.policy
from email.headerregistry import Address, AddressHeader

import pytest

from relaywizard.relay.rewrite import header_end, rewrite_sender

MAILBOX = "scanner@contoso.com"
BODY = b"\r\nLine one\r\n.leading dot\r\nFrom: not a header\r\n\xff\xfe raw bytes\r\n"


def addresses(content: bytes, name: str) -> tuple[Address, ...]:
    """The parsed addresses of header ``name``, as a mail program reads them."""
    header = email.message_from_bytes(content, policy=email.policy.default)[name]
    assert isinstance(header, AddressHeader), header
    return header.addresses


def test_the_envelope_sender_always_becomes_the_mailbox() -> None:
    content = b"From: scanner@contoso.com\r\nSubject: x\r\n" + BODY
    result = rewrite_sender(content, "device@printer.local", MAILBOX)
    assert result.mail_from == MAILBOX
    assert result.content is content  # From already is the mailbox: not even copied
    assert not result.from_rewritten
    assert rewrite_sender(content, "", MAILBOX).mail_from == MAILBOX  # a null sender too


def test_a_foreign_from_is_rewritten_and_kept_in_reply_to() -> None:
    content = b"Subject: scan\r\nFrom: Front Desk Scanner <scanner@office.local>\r\nTo: a@b\r\n" + BODY
    result = rewrite_sender(content, "scanner@office.local", MAILBOX)
    assert result.from_rewritten
    assert result.reply_to_added
    assert result.original_from == "scanner@office.local"
    assert result.content == (
        b"Subject: scan\r\n"
        b'From: "Front Desk Scanner (via relay)" <scanner@contoso.com>\r\n'
        b"Reply-To: Front Desk Scanner <scanner@office.local>\r\n"
        b"To: a@b\r\n" + BODY
    )


def test_an_existing_reply_to_is_kept() -> None:
    content = b"From: dev@office.local\r\nReply-To: helpdesk@contoso.com\r\n" + BODY
    result = rewrite_sender(content, "dev@office.local", MAILBOX)
    assert not result.reply_to_added
    assert result.content.count(b"Reply-To:") == 1
    assert b"Reply-To: helpdesk@contoso.com\r\n" in result.content
    assert b'From: "dev at office.local (via relay)" <scanner@contoso.com>\r\n' in result.content


@pytest.mark.parametrize(
    "from_value",
    [
        b"scans@contoso.com <printer@contoso.com>",  # unquoted "@" in the display name: 5.7.60
        b'"scans@contoso.com" <printer@contoso.com>',
    ],
)
def test_a_display_name_with_at_sign_is_defused(from_value: bytes) -> None:
    result = rewrite_sender(b"From: " + from_value + b"\r\n" + BODY, "printer@contoso.com", MAILBOX)
    assert addresses(result.content, "From")[0].addr_spec == MAILBOX
    assert addresses(result.content, "From")[0].display_name == "scans at contoso.com (via relay)"
    assert len(addresses(result.content, "From")) == 1
    assert addresses(result.content, "Reply-To")[0].addr_spec == "printer@contoso.com"
    assert result.original_from == "printer@contoso.com"


def test_the_mailbox_with_an_at_sign_display_name_keeps_its_address() -> None:
    content = b"From: scanner@contoso.com <scanner@contoso.com>\r\n" + BODY
    result = rewrite_sender(content, MAILBOX, MAILBOX)
    assert result.content == b'From: "scanner at contoso.com" <scanner@contoso.com>\r\n' + BODY
    assert not result.reply_to_added


def test_the_mailbox_matches_case_insensitively() -> None:
    content = b"From: Scanner <SCANNER@Contoso.com>\r\n" + BODY
    assert rewrite_sender(content, MAILBOX, MAILBOX).content is content


def test_encoded_words_are_decoded_and_written_back_encoded() -> None:
    content = b"From: =?UTF-8?B?SsO8cmdlbnMgU2Nhbm5lcg==?= <j@office.local>\r\n" + BODY
    result = rewrite_sender(content, "j@office.local", MAILBOX)
    from_line = result.content.split(b"\r\n")[0]
    assert from_line.isascii()
    assert from_line.endswith(b" <scanner@contoso.com>")
    assert addresses(result.content, "From")[0].display_name == "Jürgens Scanner (via relay)"
    assert addresses(result.content, "Reply-To")[0].display_name == "Jürgens Scanner"


def test_a_folded_from_is_replaced_whole_and_other_folded_headers_stay() -> None:
    subject = b"Subject: a very long\r\n\tsubject line\r\n"
    content = subject + b"From:\r\n Printer\r\n  <p@office.local>\r\nTo: x@y\r\n" + BODY
    result = rewrite_sender(content, "p@office.local", MAILBOX)
    assert result.content.startswith(subject)
    assert b'From: "Printer (via relay)" <scanner@contoso.com>\r\nReply-To: Printer <p@office.local>\r\n' in (
        result.content
    )
    assert b"\r\n Printer\r\n" not in result.content  # the old continuation lines went with it
    assert b"\r\n  <p@office.local>" not in result.content
    assert result.content.endswith(b"To: x@y\r\n" + BODY)


def test_the_body_is_never_touched_even_with_a_from_line_in_it() -> None:
    body = b"\r\nFrom: someone@else.example\r\n\r\nFrom: again\r\n"
    content = b"From: a@office.local\r\n" + body
    result = rewrite_sender(content, "a@office.local", MAILBOX)
    assert result.content.endswith(body)
    assert result.content.count(b"scanner@contoso.com") == 1


def test_bare_lf_messages_keep_their_line_endings() -> None:
    content = b"From: a@office.local\nSubject: x\n\nbody\n"
    result = rewrite_sender(content, "a@office.local", MAILBOX)
    assert result.content == (
        b'From: "a at office.local (via relay)" <scanner@contoso.com>\nReply-To: a@office.local\n'
        b"Subject: x\n\nbody\n"
    )


def test_a_message_without_from_gets_one() -> None:
    result = rewrite_sender(b"Subject: x\r\n\r\nbody", "dev@office.local", MAILBOX)
    assert result.content == b"From: scanner@contoso.com\r\nSubject: x\r\n\r\nbody"
    assert result.original_from is None
    assert rewrite_sender(b"\r\nbody", "d@o", MAILBOX).content == b"From: scanner@contoso.com\r\n\r\nbody"


def test_raw_8bit_and_odd_names() -> None:
    latin1 = rewrite_sender(b"From: Drucker B\xfcro <d@office.local>\r\n\r\n", "d@o", MAILBOX)
    assert addresses(latin1.content, "From")[0].display_name == "Drucker Büro (via relay)"
    comment = rewrite_sender(b"From: p@office.local (Printer Room)\r\n\r\n", "p@o", MAILBOX)
    assert addresses(comment.content, "From")[0].display_name == "Printer Room (via relay)"
    quoted = rewrite_sender(b'From: "Doe, John" <j@office.local>\r\n\r\n', "j@o", MAILBOX)
    assert b'From: "Doe, John (via relay)" <scanner@contoso.com>\r\n' in quoted.content
    assert b'Reply-To: "Doe, John" <j@office.local>\r\n' in quoted.content
    nonsense = rewrite_sender(b"From: not an address\r\n\r\n", "x@o", MAILBOX)
    assert addresses(nonsense.content, "From")[0].addr_spec == MAILBOX
    assert not nonsense.reply_to_added


def test_header_end() -> None:
    assert header_end(b"A: b\r\n\r\nbody") == 6
    assert header_end(b"A: b\n\nbody") == 5
    assert header_end(b"\r\nbody") == 0
    assert header_end(b"A: b\r\n") == 6
