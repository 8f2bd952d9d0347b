"""GraphSession against a fake Graph endpoint on 127.0.0.1 (real HTTPS, trustme CA), one test per answer.

The fake (tests/lab/graph.py) follows Graph's documented answers to sendMail; these tests prove what the
relay does with each: 202 delivered, 429 honoured with Retry-After, 401 refreshing the token once, the
4xx explained, 5xx and network errors retried or reported, and TLS verified against --ca-file.
"""

from __future__ import annotations

import base64
import email
import email.policy
import logging
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from relaywizard.relay.graph import (
    GraphSession,
    GraphTransaction,
    Vouch,
    graph_context,
    graph_mime,
    request_size,
)
from relaywizard.relay.graph_errors import GraphError, judge, retry_after
from relaywizard.relay.upstream_session import (
    AuthFailed,
    ForwarderConfigError,
    UpstreamRefused,
    UpstreamUnavailable,
)
from tests.lab.graph import (
    ALICE,
    BOB,
    DROP,
    MAILBOX,
    TOKEN,
    FakeGraph,
    Reply,
    Sleeps,
    Tokens,
    error,
    graph_fixture,  # noqa: F401  (the fixture ``graph``)
    session_for,
    throttled,
)
from tests.lab.graph import send_one as send_graph


def message(to: str = ALICE, extra: str = "") -> bytes:
    return (
        f"From: Scanner <{MAILBOX}>\r\nTo: {to}\r\n{extra}Subject: Scan\r\n"
        "Message-ID: <1@office.example>\r\n\r\nScanned page.\r\n.\r\nEnd.\r\n"
    ).encode()


def parse(data: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(data, _class=EmailMessage, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


async def send_one(
    session: GraphSession, content: bytes | None = None, rcpts: list[str] | None = None
) -> Any:
    return await send_graph(session, content or message(), rcpts)


# -- the message Graph gets --------------------------------------------------------------------------------


def test_to_and_cc_that_match_the_envelope_are_kept_byte_for_byte() -> None:
    original = message(extra=f"Cc: Bob <{BOB}>\r\n")
    assert graph_mime([original], [ALICE, BOB]) == original


def test_envelope_recipients_missing_from_the_header_become_bcc() -> None:
    out = parse(graph_mime([message()], [ALICE, "carol@contoso.example", "DAVE@contoso.example"]))
    assert out["To"] == ALICE
    assert [a.addr_spec for a in out["Bcc"].addresses] == ["carol@contoso.example", "DAVE@contoso.example"]
    assert out.get_content().startswith("Scanned page.")


def test_a_header_recipient_outside_the_envelope_is_taken_out() -> None:
    """Graph would deliver to everyone in To/Cc: someone the device did not send to must not get it."""
    original = message(to=f'"Alice A." <{ALICE}>, {BOB}', extra="Cc: eve@contoso.example\r\n")
    out = parse(graph_mime([original], [ALICE]))
    assert [(a.display_name, a.addr_spec) for a in out["To"].addresses] == [("Alice A.", ALICE)]
    assert "Cc" not in out
    assert "Bcc" not in out


def test_a_bcc_left_by_the_device_is_replaced_by_the_envelope() -> None:
    original = message(extra="Bcc: mallory@contoso.example\r\n")
    out = parse(graph_mime([original], [ALICE, BOB]))
    assert [a.addr_spec for a in out["Bcc"].addresses] == [BOB]


def test_bare_line_feeds_become_crlf_and_a_bcc_only_message_works() -> None:
    original = b"From: s@contoso.example\nTo: undisclosed-recipients:;\nSubject: x\n\nbody\n"
    out = graph_mime([original], [ALICE])
    assert b"\n" not in out.replace(b"\r\n", b"")
    parsed = parse(out)
    assert parsed["To"] == "undisclosed-recipients:;"
    assert [a.addr_spec for a in parsed["Bcc"].addresses] == [ALICE]


def test_a_message_without_a_body_still_ends_its_header() -> None:
    assert graph_mime([b"Subject: x"], [ALICE]) == f"Subject: x\r\nBcc: {ALICE}\r\n\r\n".encode()


# -- Graph's answers ---------------------------------------------------------------------------------------


async def test_202_delivers_with_the_documented_request(graph: FakeGraph) -> None:
    session = session_for(graph)
    result = await send_one(session, rcpts=[ALICE, BOB])
    assert result.ok
    assert result.code == 250
    assert result.accepted == [ALICE, BOB]
    assert "202" in result.reply
    [request] = graph.requests
    assert request.path == f"/v1.0/users/{MAILBOX}/sendMail"
    assert request.headers["Content-Type"] == "text/plain"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.body == base64.b64encode(request.mime or b"")  # one base64 string, no line breaks
    sent = parse(request.mime or b"")
    assert sent["Subject"] == "Scan"
    assert [a.addr_spec for a in sent["Bcc"].addresses] == [BOB]


async def test_429_waits_as_long_as_retry_after_asks_then_delivers(graph: FakeGraph) -> None:
    graph.answer(throttled("3"), throttled("2"))
    sleeps = Sleeps()
    result = await send_one(session_for(graph, sleep=sleeps))
    assert result.ok
    assert sleeps == [3.0, 2.0]
    assert [r.status for r in graph.requests] == [429, 429, 202]
    assert len(graph.sent) == 1


async def test_429_longer_than_the_session_waits_defers_with_retry_after(graph: FakeGraph) -> None:
    graph.answer(throttled("120"))
    sleeps = Sleeps()
    result = await send_one(session_for(graph, sleep=sleeps))
    assert isinstance(result, GraphTransaction)
    assert not result.ok
    assert 400 <= result.code < 500
    assert result.retry_after == 120.0
    assert result.reply.startswith("451 4.3.2 Graph is throttling the mailbox")
    assert "120 seconds" in result.reply
    assert "ApplicationThrottled" in result.reply
    assert sleeps == []
    assert graph.sent == []


async def test_throttling_without_retry_after_backs_off_then_defers(graph: FakeGraph) -> None:
    graph.answer(throttled(None), throttled(None), throttled(None))
    sleeps = Sleeps()
    result = await send_one(session_for(graph, sleep=sleeps))
    assert sleeps == [1.0, 2.0]
    assert result.code == 451
    assert result.retry_after is None
    assert len(graph.requests) == 3


async def test_401_refreshes_the_token_once_and_retries(graph: FakeGraph) -> None:
    graph.valid_tokens = {"fresh-token"}
    tokens = Tokens(TOKEN, "fresh-token")
    result = await send_one(session_for(graph, tokens))
    assert result.ok
    assert tokens.rejections == 1
    assert [r.headers["Authorization"] for r in graph.requests] == [f"Bearer {TOKEN}", "Bearer fresh-token"]


async def test_a_second_401_is_an_auth_failure(graph: FakeGraph) -> None:
    graph.valid_tokens = set()
    tokens = Tokens()
    session = session_for(graph, tokens)
    await session.ready()
    with pytest.raises(AuthFailed) as failed:
        await session.send(MAILBOX, [ALICE], [message()])
    await session.close()
    assert tokens.rejections == 1
    assert len(graph.requests) == 2
    assert "refused the relay's token" in failed.value.text
    assert "https://graph.microsoft.com/.default" in failed.value.text
    assert "InvalidAuthenticationToken" in (failed.value.reply or "")
    assert TOKEN not in str(failed.value) + repr(failed.value) + (failed.value.reply or "")


async def test_403_access_denied_explains_the_missing_permission(graph: FakeGraph) -> None:
    graph.answer(error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."))
    session = session_for(graph)
    await session.ready()
    with pytest.raises(AuthFailed) as failed:  # not the message's fault: it stays queued
        await session.send(MAILBOX, [ALICE], [message()])
    await session.close()
    text = failed.value.text
    assert "HTTP 403 Forbidden ErrorAccessDenied: Access is denied" in text
    assert "Mail.Send" in text
    assert "application access policy" in text


async def test_403_send_as_denied_is_dead_as_5_7_60(graph: FakeGraph) -> None:
    graph.answer(error(403, "ErrorSendAsDenied", "The user account which was used to submit..."))
    result = await send_one(session_for(graph))
    assert result.code == 550
    assert result.reply.startswith("550 5.7.60 Graph refused the message's From")


async def test_404_says_graph_does_not_know_the_mailbox(graph: FakeGraph) -> None:
    graph.answer(error(404, "ErrorInvalidUser", f"The requested user '{MAILBOX}' is invalid."))
    session = session_for(graph)
    await session.ready()
    with pytest.raises(UpstreamRefused) as refused:
        await session.send(MAILBOX, [ALICE], [message()])
    await session.close()
    assert f"Graph does not know the mailbox {MAILBOX}" in refused.value.text
    assert "ErrorInvalidUser" in refused.value.text


async def test_a_413_to_sendmail_sends_the_message_the_large_way(graph: FakeGraph) -> None:
    """Graph's limit turned out lower than the relay took it to be: the draft way takes any size."""
    graph.answer(error(413, "RequestEntityTooLarge", "The request is too large."))
    result = await send_one(session_for(graph))
    assert result.ok
    assert graph.routes() == [("sendMail", 413), ("draft", 201), ("send", 202)]
    assert graph.messages[0].message["subject"] == "Scan"


async def test_a_message_over_the_request_limit_is_not_sent_with_sendmail(graph: FakeGraph) -> None:
    big = message() + b"x" * 3_200_000 + b"\r\n"
    assert request_size(len(big)) > 4 * 1024 * 1024
    result = await send_one(session_for(graph), big)
    assert result.ok
    assert [route for route, _ in graph.routes()] == ["draft", "send"]  # details: test_graph_large.py
    assert graph.sent == []


async def test_400_mime_content_invalid_is_dead_and_explained(graph: FakeGraph) -> None:
    graph.answer(error(400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."))
    result = await send_one(session_for(graph))
    assert result.code == 554
    assert result.reply.startswith("554 5.6.0 Graph cannot read the message as MIME")
    assert "Invalid base64 string for MIME content" in result.reply


async def test_5xx_is_retried_with_backoff_then_delivered(graph: FakeGraph) -> None:
    graph.answer(
        error(503, "ServiceUnavailable", "Service unavailable."), error(500, "InternalServerError", "")
    )
    sleeps = Sleeps()
    result = await send_one(session_for(graph, sleep=sleeps))
    assert result.ok
    assert sleeps == [1.0, 2.0]
    assert len(graph.sent) == 1


async def test_5xx_that_persists_defers_the_message(graph: FakeGraph) -> None:
    graph.answer(*[error(503, "ServiceUnavailable", "Service unavailable.", (("Retry-After", "5"),))] * 3)
    result = await send_one(session_for(graph))
    assert result.code == 451
    assert result.retry_after == 5.0
    assert result.reply.startswith("451 4.3.0 Graph had a problem of its own (HTTP 503")


async def test_an_undocumented_2xx_is_not_taken_as_sent(graph: FakeGraph) -> None:
    graph.answer(Reply(200, b"{}"))
    result = await send_one(session_for(graph))
    assert result.code == 554
    assert "instead of 202 Accepted" in result.reply


async def test_a_dropped_connection_is_a_network_error_and_the_next_message_reconnects(
    graph: FakeGraph,
) -> None:
    graph.answer(DROP)
    session = session_for(graph)
    assert await session.ready() is True
    with pytest.raises(UpstreamUnavailable) as down:
        await session.send(MAILBOX, [ALICE], [message()])
    assert down.value.text.startswith("Cannot talk to Microsoft Graph (127.0.0.1:")
    assert not session.connected
    assert await session.ready() is False  # a failed session does not vouch for the upstream...
    assert (await session.send(MAILBOX, [ALICE], [message()])).ok
    assert await session.ready() is True  # ...until a message has gone through again
    assert await session.ready() is False
    assert session.connects == 2
    await session.close()


async def test_nothing_listening_is_a_network_error(graph: FakeGraph) -> None:
    session = session_for(graph, base_url="https://127.0.0.1:9/v1.0")
    await session.ready()
    with pytest.raises(UpstreamUnavailable) as down:
        await session.send(MAILBOX, [ALICE], [message()])
    await session.close()
    assert "Cannot talk to Microsoft Graph (127.0.0.1:9)" in down.value.text


async def test_tls_is_verified_against_the_ca_file_only_when_given(graph: FakeGraph) -> None:
    session = session_for(graph, context=graph_context(None))
    await session.ready()
    with pytest.raises(UpstreamUnavailable) as unverified:
        await session.send(MAILBOX, [ALICE], [message()])
    await session.close()
    assert "certificate of Microsoft Graph (127.0.0.1:" in unverified.value.text
    assert "could not be verified" in unverified.value.text
    assert graph.requests == []
    assert (await send_one(session_for(graph, context=graph_context(str(graph.ca_file))))).ok


def test_an_unreadable_ca_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ForwarderConfigError, match="cannot be used"):
        graph_context(str(tmp_path / "missing.pem"))


async def test_a_token_that_cannot_be_had_fails_at_ready(graph: FakeGraph) -> None:
    tokens = Tokens(fail=RuntimeError("AADSTS7000215: Invalid client secret provided"))
    session = session_for(graph, tokens)
    with pytest.raises(
        AuthFailed, match=r"no usable token for Graph as scanner@contoso\.example: AADSTS7000215"
    ):
        await session.ready()
    await session.close()
    assert graph.requests == []


async def test_the_token_appears_in_no_log_repr_or_reply(
    graph: FakeGraph, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    graph.valid_tokens = {TOKEN}
    graph.answer(throttled("120"))
    session = session_for(graph)
    texts = [repr(session)]
    await session.ready()
    for _ in range(2):
        result = await session.send(MAILBOX, [ALICE], [message()])
        texts += [result.reply, repr(result)]
    await session.close()
    assert graph.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in caplog.text + "".join(texts)


# -- small parts -------------------------------------------------------------------------------------------


def test_retry_after_takes_seconds_or_a_date_and_caps_both() -> None:
    import httpx

    def answer(value: str) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": value})

    now = time.time()
    assert retry_after(answer("7"), now) == 7.0
    assert retry_after(answer("-3"), now) == 0.0
    assert retry_after(answer("999999"), now) == 3600.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28.0 <= (retry_after(answer(date), now) or 0) <= 31.0
    assert retry_after(answer("soon"), now) is None
    assert retry_after(httpx.Response(429), now) is None


def test_an_unknown_4xx_is_dead_with_graphs_own_words() -> None:
    verdict = judge(GraphError(409, "ErrorQuotaExceeded", "The mailbox is full."), MAILBOX)
    assert verdict.outcome == "dead"
    assert verdict.code == 554
    assert (
        verdict.reply
        == "554 5.0.0 Graph refused the message (HTTP 409 Conflict ErrorQuotaExceeded: The mailbox is full)"
    )


async def test_sessions_sharing_a_vouch_report_graph_back_once_after_a_failure(graph: FakeGraph) -> None:
    """One forwarder's sessions: a second session starting after a failure must not say Graph is back."""
    graph.answer(error(503, "ServiceUnavailable", "down", (("Retry-After", "600"),)), DROP)
    vouch = Vouch()
    first, second = session_for(graph, vouch=vouch), session_for(graph, vouch=vouch)
    assert await first.ready() is True  # the very first session vouches: nothing failed yet
    assert await second.ready() is False
    assert (await first.send(MAILBOX, [ALICE], [message()])).code == 451  # a deferral is not a failure
    with pytest.raises(UpstreamUnavailable):
        await second.send(MAILBOX, [ALICE], [message()])
    assert await second.ready() is False  # reconnecting proves nothing yet
    assert (await first.send(MAILBOX, [ALICE], [message()])).ok
    assert await second.ready() is True  # a message went through: now Graph is back, said once
    assert await first.ready() is False
    await first.close()
    await second.close()
