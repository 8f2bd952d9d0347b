"""The forwarder against a scripted aiosmtpd upstream, with the in-memory spool and with the real one."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from relaywizard.relay.credentials import PasswordCredentials, TokenCredentials
from relaywizard.relay.forwarder import Forwarder, ForwarderConfigError
from relaywizard.relay.forwarder_types import backoff_delay, default_backoff, describe_delay
from relaywizard.relay.model import Envelope, State, Upstream
from relaywizard.relay.upstream_session import data_chunks
from tests.relay.forwarder_fakes import (
    Events,
    FakeDeliveryLog,
    FakeSpool,
    FakeUpstream,
    TcpProxy,
    make_envelope,
    message,
    wait_until,
)

PASSWORD = "s3cret-Upstream-Pa55"
MAILBOX = "scanner@example.test"


@pytest.fixture(params=["fake", "real"])
async def spool(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """Every scenario runs against the in-memory fake and against the real on-disk spool."""
    if request.param == "fake":
        yield FakeSpool()
        return
    from relaywizard.relay.spool import Spool

    real = Spool(tmp_path / "spool")
    real.open()
    yield real
    real.close()


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    server = await FakeUpstream(password=PASSWORD).start()
    yield server
    await server.stop()


@dataclass
class Run:
    forwarder: Forwarder
    spool: Any
    log: FakeDeliveryLog
    events: Events

    async def add(self, count: int = 1, *, wake: bool = True, **kwargs: Any) -> list[str]:
        """Queue messages and, like the inbound server, wake the forwarder after each."""
        content = kwargs.pop("content", None)
        ids = []
        for n in range(count):
            envelope = make_envelope(**kwargs)
            await self.spool.accept(envelope, content or message(f"message {n}"))
            ids.append(envelope.id)
            if wake:
                self.forwarder.wake()
        return ids

    def get(self, envelope_id: str) -> Envelope:
        got: Envelope = self.spool.get(envelope_id)
        return got

    async def until_state(self, ids: list[str], *states: State, within: float = 5.0) -> bool:
        return await wait_until(lambda: all(self.get(i).state in states for i in ids), within)


def upstream_for(server: FakeUpstream, **changes: Any) -> Upstream:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port,
        "tls": "none",
        "user": MAILBOX,
        "timeout": 5.0,
        "helo_name": "relay.test",
    }
    values.update(changes)
    return Upstream(**values)


@asynccontextmanager
async def running(
    spool: Any, upstream: Upstream, *, password: str | None = PASSWORD, **kwargs: Any
) -> AsyncIterator[Run]:
    log, events = FakeDeliveryLog(), Events()
    options: dict[str, Any] = {"rate": 0, "backoff": (0.1,), "stop_grace": 2.0}
    options.update(kwargs)
    credentials = PasswordCredentials(MAILBOX, password) if password is not None else None
    forwarder = Forwarder(spool, upstream, credentials, log, on_event=events, **options)
    task = asyncio.create_task(forwarder.run())
    try:
        yield Run(forwarder, spool, log, events)
    finally:
        await asyncio.wait_for(forwarder.stop(), 10)
        await asyncio.wait_for(task, 5)


async def test_many_messages_share_at_most_connections_sessions(spool: Any, upstream: FakeUpstream) -> None:
    async with running(spool, upstream_for(upstream), connections=3) as run:
        ids = await run.add(12)
        assert await run.until_state(ids, State.DONE)
    assert len(upstream.received) == 12
    assert 1 <= upstream.connections <= 3
    assert upstream.max_open <= 3
    assert upstream.auths == upstream.connections  # AUTH once per session, not per message
    assert upstream.quits == upstream.connections  # stop() ends every session with QUIT
    assert run.events.kinds().count("delivered") == 12
    assert [a.result for _, a in run.log.records] == ["delivered"] * 12
    envelope = run.get(ids[0])
    assert envelope.sender == envelope.mail_from  # no rewrite configured
    assert envelope.attempts[-1].reply.startswith("250 2.0.0")


async def test_4xx_is_retried_then_delivered(spool: Any, upstream: FakeUpstream) -> None:
    upstream.script("mail", "451 4.7.500 Server busy. Please try again later.")
    async with running(spool, upstream_for(upstream)) as run:
        [mid] = await run.add()
        assert await run.until_state([mid], State.DONE)
    attempts = run.get(mid).attempts
    assert [a.result for a in attempts] == ["deferred", "delivered"]
    assert attempts[0].code == "4.7.500"
    assert "451 4.7.500" in attempts[0].reply
    assert "slowing down" in attempts[0].explanation  # from the reply explainer
    assert run.events.kinds() == ["deferred", "delivered"]
    assert attempts[1].at - attempts[0].at >= 0.09  # the backoff was waited


async def test_5xx_is_dead_at_once_with_the_reason_explained(spool: Any, upstream: FakeUpstream) -> None:
    upstream.script("mail", "550 5.7.60 SMTP; Client does not have permissions to send as this sender")
    async with running(spool, upstream_for(upstream)) as run:
        [mid] = await run.add()
        assert await run.until_state([mid], State.DEAD)
    [attempt] = run.get(mid).attempts
    assert attempt.result == "dead"
    assert attempt.code == "5.7.60"
    assert "Send As" in attempt.explanation
    assert run.events[-1].kind == "dead"
    assert run.events[-1].code == "5.7.60"
    assert upstream.received == []


async def test_5xx_at_data_is_dead(spool: Any, upstream: FakeUpstream) -> None:
    upstream.script("data", "552 5.3.4 Message too big for system")
    async with running(spool, upstream_for(upstream)) as run:
        [mid] = await run.add()
        assert await run.until_state([mid], State.DEAD)
    assert run.get(mid).attempts[-1].code == "5.3.4"


async def test_some_recipients_refused_the_rest_delivered(spool: Any, upstream: FakeUpstream) -> None:
    upstream.always["rcpt:blocked@example.test"] = "550 5.4.1 Recipient address rejected: Access denied"
    async with running(spool, upstream_for(upstream)) as run:
        [mid] = await run.add(rcpt_tos=["alice@example.test", "blocked@example.test"])
        assert await run.until_state([mid], State.DONE)
    envelope = run.get(mid)
    assert list(envelope.failed_rcpts) == ["blocked@example.test"]
    assert "5.4.1" in envelope.failed_rcpts["blocked@example.test"]
    assert upstream.received[0].rcpt_tos == ["alice@example.test"]
    attempt = envelope.attempts[-1]
    assert attempt.result == "delivered"
    assert "blocked@example.test" in attempt.explanation
    assert "no such recipient" in attempt.explanation


async def test_all_recipients_refused_is_dead(spool: Any, upstream: FakeUpstream) -> None:
    upstream.always["rcpt:blocked@example.test"] = "550 5.4.1 Recipient address rejected: Access denied"
    async with running(spool, upstream_for(upstream)) as run:
        [mid] = await run.add(rcpt_tos=["blocked@example.test"])
        assert await run.until_state([mid], State.DEAD)
    assert run.get(mid).attempts[-1].code == "5.4.1"
    assert upstream.received == []


async def test_a_4xx_recipient_defers_the_message_without_data(spool: Any, upstream: FakeUpstream) -> None:
    upstream.script("rcpt:bob@example.test", "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded")
    async with running(spool, upstream_for(upstream)) as run:
        [mid] = await run.add(rcpt_tos=["alice@example.test", "bob@example.test"])
        assert await run.until_state([mid], State.DONE)
    assert [a.result for a in run.get(mid).attempts] == ["deferred", "delivered"]
    assert len(upstream.received) == 1  # no partial DATA before the retry: nobody gets it twice
    assert upstream.received[0].rcpt_tos == ["alice@example.test", "bob@example.test"]


async def test_a_dropped_connection_is_retried_on_a_new_session(spool: Any, upstream: FakeUpstream) -> None:
    upstream.script("drop-data", "drop")
    async with running(spool, upstream_for(upstream), connections=1) as run:
        [mid] = await run.add()
        assert await run.until_state([mid], State.DONE)
    attempts = run.get(mid).attempts
    assert [a.result for a in attempts] == ["deferred", "delivered"]
    assert attempts[0].code is None
    assert "could not talk to the upstream" in attempts[0].explanation
    assert upstream.connections == 2
    assert "upstream_down" in run.events.kinds()
    assert "upstream_up" in run.events.kinds()


async def test_upstream_down_then_up_loses_nothing(spool: Any, upstream: FakeUpstream) -> None:
    proxy = await TcpProxy("127.0.0.1", upstream.port).open()
    await proxy.close()  # down from the start
    try:
        async with running(spool, upstream_for(upstream, port=proxy.port), connections=2) as run:
            ids = await run.add(5)
            for _ in range(3):
                await asyncio.sleep(0.05)
                ids += await run.add(1)  # devices keep sending while the upstream is down
            assert await wait_until(lambda: "upstream_down" in run.events.kinds())
            assert all(run.get(i).state is not State.DONE for i in ids)
            await proxy.open()
            assert await run.until_state(ids, State.DONE, within=10)
        assert run.events.kinds().count("upstream_down") == 1
        assert "upstream_up" in run.events.kinds()
        assert len(upstream.received) == len(ids)
    finally:
        await proxy.close()


async def test_wrong_password_is_a_relay_error_and_mail_stays_queued(
    spool: Any, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng-Secret-Value"
    async with running(spool, upstream_for(upstream), password=wrong, backoff=(0.2,)) as run:
        ids = await run.add(3)
        assert await wait_until(lambda: "auth_failed" in run.events.kinds())
        await asyncio.sleep(0.3)
    assert run.events.kinds().count("auth_failed") == 1
    event = run.events[run.events.kinds().index("auth_failed")]
    assert event.code == "5.7.8"
    assert "refused the login" in event.text
    for mid in ids:
        envelope = run.get(mid)
        assert envelope.state is State.QUEUED
        assert all(a.result == "deferred" for a in envelope.attempts)
    # Claiming pauses after a failed login: not one AUTH per queued message.
    assert upstream.failed_auths <= 3
    shown = repr(run.events) + repr(run.log.records) + caplog.text + repr(run.forwarder.credentials)
    assert wrong not in shown
    assert PASSWORD not in shown


async def test_pacing_spaces_messages_and_can_be_off(spool: Any, upstream: FakeUpstream) -> None:
    async with running(spool, upstream_for(upstream), rate=300) as run:  # one message per 0.2 s
        ids = await run.add(4)
        assert await run.until_state(ids, State.DONE)
    paced = sorted(r.at for r in upstream.received)
    assert paced[-1] - paced[0] >= 0.57
    upstream.received.clear()
    async with running(spool, upstream_for(upstream), rate=0) as run:
        ids = await run.add(4)
        assert await run.until_state(ids, State.DONE)
    free = sorted(r.at for r in upstream.received)
    assert free[-1] - free[0] < 0.3


async def test_stop_lets_in_flight_mail_finish(spool: Any, upstream: FakeUpstream) -> None:
    upstream.data_delay = 0.3
    async with running(spool, upstream_for(upstream), stop_grace=3.0) as run:
        [mid] = await run.add()
        assert await wait_until(lambda: run.get(mid).state is State.SENDING)
        await asyncio.sleep(0.05)
    assert run.get(mid).state is State.DONE


async def test_stop_cancels_after_the_grace_period_and_loses_nothing(
    spool: Any, upstream: FakeUpstream
) -> None:
    upstream.data_delay = 5.0
    started = time.monotonic()
    async with running(spool, upstream_for(upstream), connections=1, stop_grace=0.2) as run:
        first, second = await run.add(2)
        assert await wait_until(lambda: run.get(first).state is State.SENDING)
        await asyncio.sleep(0.1)
    assert time.monotonic() - started < 3
    assert run.get(first).state is State.SENDING  # recovery requeues it at the next start
    assert run.get(second).state is State.QUEUED  # never claimed: one connection, busy
    assert run.get(second).attempts == []


async def test_pause_and_resume(spool: Any, upstream: FakeUpstream) -> None:
    async with running(spool, upstream_for(upstream)) as run:
        run.forwarder.pause()
        [mid] = await run.add()
        await asyncio.sleep(0.2)
        assert run.get(mid).state is State.QUEUED
        run.forwarder.resume()
        assert await run.until_state([mid], State.DONE)


async def test_wake_starts_delivery_at_once_and_a_timer_waits_for_next_due(
    spool: Any, upstream: FakeUpstream
) -> None:
    async with running(spool, upstream_for(upstream)) as run:
        await asyncio.sleep(0.05)  # the dispatcher now sleeps: nothing is queued, nothing is due
        [mid] = await run.add(wake=False)
        await asyncio.sleep(0.3)
        assert run.get(mid).state is State.QUEUED  # no polling...
        started = time.monotonic()
        run.forwarder.wake()  # ...the inbound side's wake() starts delivery at once
        assert await run.until_state([mid], State.DONE, within=1)
        assert time.monotonic() - started < 0.5
        [later] = await run.add(next_attempt_at=time.time() + 0.3)
        await asyncio.sleep(0.1)
        assert run.get(later).state is State.QUEUED
        assert await run.until_state([later], State.DONE, within=2)


async def test_too_old_messages_die_instead_of_retrying(spool: Any, upstream: FakeUpstream) -> None:
    upstream.always["mail"] = "451 4.7.500 Server busy. Please try again later."
    async with running(spool, upstream_for(upstream), max_age=0.3) as run:
        [mid] = await run.add()
        assert await run.until_state([mid], State.DEAD, within=3)
    attempts = run.get(mid).attempts
    assert attempts[-1].result == "dead"
    assert "gave up" in attempts[-1].explanation
    assert all(a.result == "deferred" for a in attempts[:-1])
    assert attempts[-1].at - run.get(mid).received_at < 1.5  # the last try is at the deadline


async def test_sender_rewrite_changes_envelope_and_from(spool: Any, upstream: FakeUpstream) -> None:
    content = message(sender="scans@contoso.example <printer@office.example>")
    async with running(spool, upstream_for(upstream), sender=MAILBOX) as run:
        [mid] = await run.add(content=content, mail_from="printer@office.example")
        assert await run.until_state([mid], State.DONE)
    [received] = upstream.received
    assert received.mail_from == MAILBOX
    assert b'From: "scans at contoso.example (via relay)" <scanner@example.test>\r\n' in received.content
    assert b"Reply-To:" in received.content
    assert received.content.endswith(b"Hello.\r\n.dot line\r\n")
    envelope = run.get(mid)
    assert envelope.sender == MAILBOX
    assert envelope.mail_from == "printer@office.example"


async def test_idle_sessions_are_closed(spool: Any, upstream: FakeUpstream) -> None:
    async with running(spool, upstream_for(upstream), idle_timeout=0.2) as run:
        [mid] = await run.add()
        assert await run.until_state([mid], State.DONE)
        assert await wait_until(lambda: upstream.quits == 1 and upstream.open_now == 0, within=2)
        [again] = await run.add()
        assert await run.until_state([again], State.DONE)
    assert upstream.connections == 2


async def test_rset_only_after_a_transaction_that_did_not_end_in_250(
    spool: Any, upstream: FakeUpstream
) -> None:
    upstream.script("data", "550 5.7.1 Not this one")
    async with running(spool, upstream_for(upstream), connections=1) as run:
        [refused] = await run.add()
        assert await run.until_state([refused], State.DEAD)
        ids = await run.add(3)
        assert await run.until_state(ids, State.DONE)
    assert upstream.connections == 1
    assert upstream.rsets == 1  # before the first message after the refusal; none between delivered ones
    assert len(upstream.received) == 3


# -- TLS --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
async def test_tls_verifies_against_the_ca_file(tmp_path: Path, ca: trustme.CA, mode: str) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = await FakeUpstream(
        password=PASSWORD, tls_context=server_context(ca), implicit_tls=mode == "implicit"
    ).start()
    try:
        spool = FakeSpool()
        async with running(spool, upstream_for(server, tls=mode, ca_file=str(ca_file))) as run:
            [mid] = await run.add()
            assert await run.until_state([mid], State.DONE)
        assert server.auths == 1
    finally:
        await server.stop()


async def test_an_untrusted_certificate_is_an_upstream_error(ca: trustme.CA) -> None:
    server = await FakeUpstream(password=PASSWORD, tls_context=server_context(ca)).start()
    try:
        async with running(FakeSpool(), upstream_for(server, tls="starttls")) as run:
            [mid] = await run.add()
            assert await wait_until(lambda: "upstream_down" in run.events.kinds())
            assert await run.until_state([mid], State.QUEUED)
        event = run.events[run.events.kinds().index("upstream_down")]
        assert "certificate" in event.text
        assert server.auths == 0
    finally:
        await server.stop()


def test_an_unreadable_ca_file_is_one_sentence(tmp_path: Path) -> None:
    upstream = Upstream("127.0.0.1", 25, ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(ForwarderConfigError, match=r"^The CA file .*missing\.pem cannot be used: .*\.$"):
        Forwarder(FakeSpool(), upstream, None, FakeDeliveryLog())


def test_bad_settings_are_one_sentence() -> None:
    upstream = Upstream("127.0.0.1", 25)
    with pytest.raises(ForwarderConfigError, match="connections"):
        Forwarder(FakeSpool(), upstream, None, FakeDeliveryLog(), connections=0)
    with pytest.raises(ForwarderConfigError, match="rate"):
        Forwarder(FakeSpool(), upstream, None, FakeDeliveryLog(), rate=-1)


# -- small parts ------------------------------------------------------------------------------------------


def test_backoff_steps_and_default() -> None:
    assert [backoff_delay((1.0, 5.0), n) for n in (1, 2, 3)] == [1.0, 5.0, 5.0]
    assert backoff_delay(lambda n: n * 2.0, 3) == 6.0
    assert 54 <= default_backoff(1) <= 66
    assert 108 <= default_backoff(2) <= 132
    assert 3240 <= default_backoff(20) <= 3960


def test_describe_delay() -> None:
    assert describe_delay(0.1) == "0.1 seconds"
    assert describe_delay(1) == "1 second"
    assert describe_delay(120) == "2 minutes"
    assert describe_delay(2 * 86400) == "2 days"


async def test_credentials_never_show_their_secret() -> None:
    password = PasswordCredentials("u@example.test", PASSWORD)
    assert PASSWORD not in repr(password)
    assert await password.secret() == PASSWORD
    assert password.mechanisms == ("PLAIN", "LOGIN")

    async def token() -> str:
        return "tok-123"

    dropped: list[bool] = []
    oauth = TokenCredentials("u@example.test", token, on_rejected=lambda: dropped.append(True))
    assert oauth.mechanisms == ("XOAUTH2",)
    assert await oauth.secret() == "tok-123"
    assert "tok-123" not in repr(oauth)
    oauth.rejected()
    assert dropped == [True]


async def test_auth_mechanism_not_offered_is_an_auth_failure(spool: Any, upstream: FakeUpstream) -> None:
    async def token() -> str:
        return "tok"

    log, events = FakeDeliveryLog(), Events()
    credentials = TokenCredentials(MAILBOX, token)  # XOAUTH2: aiosmtpd does not offer it
    forwarder = Forwarder(
        spool, upstream_for(upstream), credentials, log, on_event=events, rate=0, backoff=(0.1,)
    )
    task = asyncio.create_task(forwarder.run())
    try:
        envelope = make_envelope()
        await spool.accept(envelope, message())
        forwarder.wake()
        assert await wait_until(lambda: "auth_failed" in events.kinds())
        assert "XOAUTH2" in events[0].text
    finally:
        await forwarder.stop()
        await task


def test_data_chunks_stuff_dots_and_fix_line_ends_across_chunk_boundaries() -> None:
    content = b"A: b\r\n\r\n" + b".x\r\n" * 10 + b"bare\nlf\rcr\r\n.\r\nlast"
    chunks = list(data_chunks([content[:8], memoryview(content)[8:]], size=5))
    assert all(len(c) < 40 for c in chunks)
    joined = b"".join(chunks)
    assert joined == (b"A: b\r\n\r\n" + b"..x\r\n" * 10 + b"bare\r\nlf\r\ncr\r\n..\r\nlast\r\n")
    assert b"".join(data_chunks([b""])) == b"\r\n"
    assert b"".join(data_chunks([b"x\r\n"])) == b"x\r\n"


@pytest.mark.parametrize("read", ["whole", "in chunks"])
async def test_a_large_message_arrives_byte_for_byte(spool: Any, upstream: FakeUpstream, read: str) -> None:
    line = b"." + b"x" * 75 + b"\r\n"  # every line starts with a dot: all of them are stuffed on the wire
    content = message() + line * 40_000  # about 3 MB: several DATA chunks
    size = len(content) if read == "in chunks" else 0  # over STREAM_ABOVE: read a chunk at a time
    async with running(spool, upstream_for(upstream)) as run:
        [mid] = await run.add(content=content, size=size)
        assert await run.until_state([mid], State.DONE)
    assert upstream.received[0].content == content
    assert f"SIZE={len(content)}" in upstream.received[0].mail_options


async def test_a_large_message_read_in_chunks_gets_the_sender_rewrite(
    spool: Any, upstream: FakeUpstream
) -> None:
    content = message(sender="printer@office.example") + (b"y" * 76 + b"\r\n") * 40_000
    async with running(spool, upstream_for(upstream), sender=MAILBOX) as run:
        [mid] = await run.add(content=content, size=len(content), mail_from="printer@office.example")
        assert await run.until_state([mid], State.DONE)
    [received] = upstream.received
    assert received.mail_from == MAILBOX
    head, _, body = received.content.partition(b"\r\n\r\n")
    assert b'From: "printer at office.example (via relay)" <scanner@example.test>' in head
    assert b"Reply-To: printer@office.example" in head
    assert body == content.partition(b"\r\n\r\n")[2]


class SlowFinishSpool(FakeSpool):
    """A spool whose every save takes a while, as an fsync on a busy disk does."""

    async def finish(self, envelope: Envelope, state: State) -> None:
        await asyncio.sleep(0.3)
        await super().finish(envelope, state)


async def test_the_session_goes_on_while_the_spool_saves_and_stop_waits_for_the_saves(
    upstream: FakeUpstream,
) -> None:
    spool = SlowFinishSpool()
    async with running(spool, upstream_for(upstream), connections=1) as run:
        ids = await run.add(3)
        assert await wait_until(lambda: len(upstream.received) == 3, within=2)
        sent = [r.at for r in upstream.received]
        assert sent[-1] - sent[0] < 0.3  # not one save (0.3 s) between two messages
    # running() has stopped the forwarder: every save had finished by then.
    assert [spool.get(i).state for i in ids] == [State.DONE] * 3
