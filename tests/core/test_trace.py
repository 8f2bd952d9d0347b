"""Traceable test messages: the Message-ID, the time inside it, and the trace instructions."""

from __future__ import annotations

import email
import email.policy
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from relaywizard.core import trace

SENT = datetime(2026, 11, 23, 22, 6, 47, 123000, tzinfo=UTC)
ID_SHAPE = re.compile(r"^<relaywizard-test\.([0-9a-f-]{36})@([a-z0-9.-]+)>$")


def test_the_message_id_has_the_agreed_shape_and_the_senders_domain() -> None:
    message_id = trace.new_message_id("Scanner@Contoso.COM", now=SENT)
    found = ID_SHAPE.match(message_id)
    assert found, message_id
    assert found.group(2) == "contoso.com"
    value = uuid.UUID(found.group(1))
    assert value.version == 7
    assert value.variant == uuid.RFC_4122


def test_every_message_id_is_unique_even_in_the_same_millisecond() -> None:
    ids = {trace.new_message_id("a@contoso.com", now=SENT) for _ in range(2000)}
    assert len(ids) == 2000


@pytest.mark.parametrize("sender", ["", "no-at-sign", "a@", "a@not a domain", "a@[203.0.113.5]"])
def test_a_sender_without_a_usable_domain_gets_a_reserved_one(sender: str) -> None:
    assert trace.new_message_id(sender, now=SENT).endswith("@relaywizard.invalid>")


def test_the_send_time_comes_back_out_of_the_id() -> None:
    message_id = trace.new_message_id("a@contoso.com", now=SENT)
    assert trace.sent_at(message_id) == SENT
    # Any time zone in, the same instant out.
    local = SENT.astimezone(timezone(timedelta(hours=-5)))
    assert trace.sent_at(trace.new_message_id("a@contoso.com", now=local)) == SENT


@pytest.mark.parametrize(
    "foreign",
    [
        "<abc@relaywizard>",
        "<relaywizard-test.not-a-uuid@contoso.com>",
        f"<relaywizard-test.{uuid.uuid4()}@contoso.com>",  # a version-4 uuid holds no time
        "relaywizard-test.01a20aab-b47f-7b31-a46b-09f3b2dedc87@lab.test",  # no angle brackets
    ],
)
def test_other_ids_have_no_time(foreign: str) -> None:
    assert trace.sent_at(foreign) is None


def test_the_trace_command_is_exact() -> None:
    message_id = trace.new_message_id("a@contoso.com", now=SENT)
    found = trace.trace_for(message_id)
    assert found.sent == SENT
    assert found.powershell == (
        f'Get-MessageTraceV2 -MessageId "{message_id}" '
        '-StartDate "2026-11-23T21:06:47Z" -EndDate "2026-11-23T23:06:47Z"'
    )
    assert found.detail_powershell == found.powershell + " | Get-MessageTraceDetailV2"
    # Within what one query may cover.
    assert found.end - found.start <= timedelta(days=trace.TRACE_QUERY_DAYS)


def test_the_window_surrounds_the_given_send_time() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    found = trace.trace_for("<abc@relaywizard>", sent=at)
    assert found.start < at < found.end
    assert '-StartDate "2026-01-02T02:04:05Z" -EndDate "2026-01-02T04:04:05Z"' in found.powershell


def test_a_foreign_id_without_a_time_is_traced_around_now() -> None:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert trace.trace_for("<abc@contoso.com>", now=now).sent == now


def test_a_naive_time_is_taken_as_utc() -> None:
    found = trace.trace_for("<abc@contoso.com>", sent=datetime(2026, 5, 1, 12, 0))
    assert found.sent == datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_an_id_powershell_would_expand_is_single_quoted() -> None:
    found = trace.trace_for("<a$b'c@contoso.com>", sent=SENT)
    assert "-MessageId '<a$b''c@contoso.com>' " in found.powershell


def test_the_instructions_name_the_admin_center_and_the_limits() -> None:
    found = trace.trace_for(trace.new_message_id("a@contoso.com", now=SENT))
    text = found.text()
    assert found.message_id in text
    assert found.powershell in text
    assert "Exchange admin center" in text
    assert "Mail flow > Message trace" in text
    assert "90 days" in text
    assert "2027-02-21" in text  # 90 days after the send
    assert found.admin_center.endswith("(UTC).")
    as_json = found.to_json()
    assert as_json["powershell"] == found.powershell
    assert as_json["sent"] == "2026-11-23T22:06:47Z"


def test_the_test_message_carries_the_id_in_its_header_and_body() -> None:
    message, message_id = trace.test_message("scanner@contoso.com", "alice@contoso.com", now=SENT)
    assert message["Message-ID"] == message_id
    assert message["From"] == "scanner@contoso.com"
    assert message["To"] == "alice@contoso.com"
    assert trace.sent_at(message_id) == SENT
    wire = message.as_bytes(policy=email.policy.SMTP)
    parsed = email.message_from_bytes(wire, policy=email.policy.default)
    assert str(parsed["Message-ID"]).strip() == message_id  # folded: the line would pass 78
    body = parsed.get_content()
    assert message_id in body
    assert b"Content-Transfer-Encoding: 7bit" in wire
    assert all(len(line) <= 78 for line in wire.split(b"\r\n"))


def test_the_callers_subject_and_body() -> None:
    message, _ = trace.test_message(
        "a@contoso.com", "b@contoso.com", subject="through the relay", body="Sent by the relay."
    )
    assert message["Subject"] == "through the relay"
    assert message.get_content().startswith("Sent by the relay.\n")
