"""The forwarder against the lab's Postfix submission port (STARTTLS + AUTH, Microsoft 365's replies).

Real spool and real delivery log in a temporary folder; messages are checked in the lab's Maildirs.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.headerregistry import Address, AddressHeader
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from relaywizard.relay.credentials import Credentials, PasswordCredentials, TokenCredentials
from relaywizard.relay.deliverylog import DeliveryLog
from relaywizard.relay.forwarder import Forwarder
from relaywizard.relay.model import Envelope, State, Upstream
from relaywizard.relay.spool import Spool
from tests.lab.lab import Lab
from tests.relay.forwarder_fakes import Events, TcpProxy, make_envelope, wait_until

pytestmark = pytest.mark.lab

LOGIN = "scanner@lab.test"
PASSWORD = "scanner-pass"
ALICE = "alice@lab.test"


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    spool = Spool(tmp_path / "spool")
    spool.open()
    yield spool
    spool.close()


@dataclass
class Run:
    forwarder: Forwarder
    spool: Spool
    events: Events
    log: DeliveryLog

    async def send(
        self, *, mail_from: str = LOGIN, rcpt_tos: list[str] | None = None, from_header: str | None = None
    ) -> tuple[str, str]:
        """Queue one message with a unique subject, as the inbound side would; returns (id, subject)."""
        subject = f"forwarder lab {uuid.uuid4()}"
        content = (
            f"From: {from_header or mail_from}\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{uuid.uuid4()}@office.example>\r\n\r\nScanned page.\r\n.\r\n..\r\nEnd.\r\n"
        ).encode()
        envelope = make_envelope(rcpt_tos or [ALICE], mail_from, size=len(content))
        await self.spool.accept(envelope, content)
        self.forwarder.wake()
        return envelope.id, subject

    async def until_state(self, ids: list[str], *states: State, within: float = 15.0) -> bool:
        return await wait_until(lambda: all(self.spool.get(i).state in states for i in ids), within)

    def get(self, envelope_id: str) -> Envelope:
        return self.spool.get(envelope_id)


def lab_upstream(lab: Lab, port: int | None = None) -> Upstream:
    return Upstream(
        host=lab.host,
        port=port or lab.submission_port,
        tls="starttls",
        user=LOGIN,
        ca_file=str(lab.ca_file),
        helo_name="relay.office.example",
        timeout=10.0,
    )


@asynccontextmanager
async def running(
    lab: Lab,
    spool: Spool,
    tmp_path: Path,
    *,
    credentials: Credentials | None = None,
    port: int | None = None,
    **kwargs: Any,
) -> AsyncIterator[Run]:
    log, events = DeliveryLog(tmp_path / "delivery.jsonl"), Events()
    options: dict[str, Any] = {"rate": 0, "backoff": (0.1,), "stop_grace": 5.0}
    options.update(kwargs)
    forwarder = Forwarder(
        spool,
        lab_upstream(lab, port),
        credentials or PasswordCredentials(LOGIN, PASSWORD),
        log,
        on_event=events,
        **options,
    )
    task = asyncio.create_task(forwarder.run())
    try:
        yield Run(forwarder, spool, events, log)
    finally:
        await asyncio.wait_for(forwarder.stop(), 15)
        await asyncio.wait_for(task, 5)
        log.close()


def parse(data: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(data, _class=EmailMessage, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def addresses(message: EmailMessage, name: str) -> tuple[Address, ...]:
    header = message[name]
    assert isinstance(header, AddressHeader), header
    return header.addresses


def everything_on_disk(root: Path) -> bytes:
    """Every byte the relay wrote under ``root`` (spool and delivery log), to grep for secrets."""
    return b"".join(path.read_bytes() for path in root.rglob("*") if path.is_file())


async def delivered(lab: Lab, address: str, subject: str, within: float = 15.0) -> EmailMessage:
    """The message with ``subject`` in ``address``'s Maildir (Postfix delivers just after its 250)."""
    deadline = time.monotonic() + within
    while True:
        for path in lab.message_files(address):
            data = path.read_bytes()
            if subject.encode() in data:  # the Maildir keeps every earlier run's mail: parse only this one
                parsed = parse(data)
                if parsed["Subject"] == subject:
                    return parsed
        if time.monotonic() > deadline:
            raise AssertionError(f"{subject!r} never reached {address}:\n{lab.logs()}")
        await asyncio.sleep(0.05)


async def test_messages_land_in_the_maildir_over_few_sessions(lab: Lab, spool: Spool, tmp_path: Path) -> None:
    async with running(lab, spool, tmp_path, connections=3) as run:
        sent = [await run.send() for _ in range(6)]
        assert await run.until_state([mid for mid, _ in sent], State.DONE)
    for _, subject in sent:
        message = await delivered(lab, ALICE, subject)
        assert "Scanned page." in message.get_content()
    assert run.forwarder.sessions_opened <= 3
    assert run.events.kinds().count("delivered") == 6
    lines = run.log.read()
    assert len(lines) == 6
    assert all(line["result"] == "delivered" for line in lines)
    assert all(line["reply"].startswith("250 2.0.0") for line in lines)


async def test_a_foreign_sender_is_rewritten_so_5_7_60_is_avoided(
    lab: Lab, spool: Spool, tmp_path: Path
) -> None:
    device = "printer@office.example"
    async with running(lab, spool, tmp_path) as run:  # without a rewrite: the lab's 5.7.60
        refused, _ = await run.send(mail_from=device)
        assert await run.until_state([refused], State.DEAD)
    assert run.get(refused).attempts[-1].code == "5.7.60"

    async with running(lab, spool, tmp_path, sender=LOGIN) as run:
        mid, subject = await run.send(mail_from=device, from_header=f"scans@office.example <{device}>")
        assert await run.until_state([mid], State.DONE)
    message = await delivered(lab, ALICE, subject)
    [author] = addresses(message, "From")
    assert author.addr_spec == LOGIN
    assert author.display_name == "scans at office.example (via relay)"
    assert addresses(message, "Reply-To")[0].addr_spec == device
    assert message.get_content().endswith("Scanned page.\n.\n..\nEnd.\n")  # dot lines survive
    envelope = run.get(mid)
    assert (envelope.mail_from, envelope.sender) == (device, LOGIN)
    line = run.log.read()[0]
    assert (line["sender"], line["upstream_sender"]) == (device, LOGIN)


async def test_throttling_at_mail_from_is_deferred_and_explained(
    lab: Lab, spool: Spool, tmp_path: Path
) -> None:
    async with running(lab, spool, tmp_path, backoff=(60.0,)) as run:
        mid, _ = await run.send(mail_from="throttled@lab.test")
        assert await wait_until(lambda: bool(run.get(mid).attempts), 15)
    envelope = run.get(mid)
    assert envelope.state is State.QUEUED
    assert envelope.next_attempt_at - envelope.attempts[0].at == pytest.approx(60.0, abs=1)
    [attempt] = envelope.attempts
    assert (attempt.result, attempt.code) == ("deferred", "4.7.500")
    assert attempt.reply.startswith("451 4.7.500")
    assert "slowing down" in attempt.explanation
    assert run.events.kinds() == ["deferred"]


async def test_a_blocked_recipient_is_dead_with_an_explanation(
    lab: Lab, spool: Spool, tmp_path: Path
) -> None:
    async with running(lab, spool, tmp_path) as run:
        mid, _ = await run.send(rcpt_tos=["blocked@lab.test"])
        both, subject = await run.send(rcpt_tos=["blocked@lab.test", ALICE])
        assert await run.until_state([mid], State.DEAD)
        assert await run.until_state([both], State.DONE)
    [attempt] = run.get(mid).attempts
    assert (attempt.result, attempt.code) == ("dead", "5.4.1")
    assert attempt.reply.startswith("550 5.4.1")
    assert "no such recipient" in attempt.explanation
    partial = run.get(both)
    assert list(partial.failed_rcpts) == ["blocked@lab.test"]
    await delivered(lab, ALICE, subject)


async def test_upstream_down_then_up_delivers_everything(lab: Lab, spool: Spool, tmp_path: Path) -> None:
    proxy = await TcpProxy(lab.host, lab.submission_port).open()
    try:
        async with running(lab, spool, tmp_path, port=proxy.port, connections=2) as run:
            first, first_subject = await run.send()
            assert await run.until_state([first], State.DONE)
            await proxy.close()  # the upstream goes away, with the forwarder's session on it
            sent = [await run.send() for _ in range(3)]
            assert await wait_until(lambda: "upstream_down" in run.events.kinds(), 15)
            for _ in range(3):  # devices keep sending while it is down
                sent.append(await run.send())
                await asyncio.sleep(0.05)
            assert all(run.get(mid).state is not State.DONE for mid, _ in sent)
            await proxy.open()
            assert await run.until_state([mid for mid, _ in sent], State.DONE, within=20)
        kinds = run.events.kinds()
        assert kinds.index("upstream_down") < kinds.index("upstream_up")
        for _, subject in [(first, first_subject), *sent]:
            await delivered(lab, ALICE, subject)
        assert spool.counts()[State.DONE] == len(sent) + 1
        assert spool.counts()[State.QUEUED] == spool.counts()[State.SENDING] == 0
    finally:
        await proxy.close()


async def test_a_wrong_password_is_reported_and_mail_stays_queued(
    lab: Lab, spool: Spool, tmp_path: Path
) -> None:
    wrong = "not-the-Scanner-Pass-42"
    async with running(
        lab, spool, tmp_path, credentials=PasswordCredentials(LOGIN, wrong), backoff=(30.0,)
    ) as run:
        ids = [(await run.send())[0] for _ in range(3)]
        assert await wait_until(lambda: "auth_failed" in run.events.kinds(), 15)
        await asyncio.sleep(0.2)
    [event] = [e for e in run.events if e.kind == "auth_failed"]
    assert event.reply is not None
    assert event.reply.startswith("535")
    assert LOGIN in event.text or "login" in event.text
    assert all(spool.get(mid).state is State.QUEUED for mid in ids)
    tried = [spool.get(mid) for mid in ids if spool.get(mid).attempts]
    assert len(tried) == 1  # one probe, then the relay waits instead of trying every message
    assert tried[0].attempts[0].result == "deferred"
    on_disk = everything_on_disk(tmp_path)
    assert wrong.encode() not in on_disk
    assert PASSWORD.encode() not in on_disk


async def test_xoauth2_tokens_work_too(lab: Lab, spool: Spool, tmp_path: Path) -> None:
    token = lab.issue_token(LOGIN)

    async def token_source() -> str:
        return token

    async with running(lab, spool, tmp_path, credentials=TokenCredentials(LOGIN, token_source)) as run:
        mid, subject = await run.send()
        assert await run.until_state([mid], State.DONE)
    await delivered(lab, ALICE, subject)
    assert token.encode() not in everything_on_disk(tmp_path)
