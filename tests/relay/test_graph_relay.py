"""The Graph upstream inside the relay: the real forwarder and the real engine, a fake Graph on 127.0.0.1.

The forwarder takes GraphSessions from its session factory (the engine picks Graph when the settings give a
Graph URL); a 429's Retry-After holds the message and every session for at least that long, and nothing is
lost. The settings and command-line tests check ``--graph`` itself.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import smtplib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from relaywizard.core.errors import ConfigError
from relaywizard.core.paths import AppPaths
from relaywizard.core.settings import Settings
from relaywizard.relay.config import DEFAULT_GRAPH_URL, RelayConfig, RelayOptions, resolve
from relaywizard.relay.credentials import PasswordCredentials, TokenCredentials
from relaywizard.relay.deliverylog import DeliveryLog
from relaywizard.relay.engine import Relay
from relaywizard.relay.forwarder import Forwarder
from relaywizard.relay.graph import graph_factory
from relaywizard.relay.model import State, Upstream
from relaywizard.relay.spool import Spool
from relaywizard.relay.upstream_session import ForwarderConfigError
from tests.cli import test_relay_oauth as oauth_cli
from tests.helpers import assert_one_sentence_error, run_cli
from tests.lab.authority import FakeAuthority
from tests.lab.graph import (
    ALICE,
    BOB,
    MAILBOX,
    TOKEN,
    FakeGraph,
    Tokens,
    error,
    graph_fixture,  # noqa: F401  (the fixture ``graph``)
    throttled,
)
from tests.lab.process import free_port
from tests.relay.forwarder_fakes import Events, make_envelope, wait_until

keyring_env = oauth_cli.keyring_env  # the fixture: the app's client secret in a private keyring


def content(subject: str) -> bytes:
    return (
        f"From: {MAILBOX}\r\nTo: {ALICE}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@office.example>\r\n"
        "\r\nScanned page.\r\n"
    ).encode()


def upstream(graph: FakeGraph) -> Upstream:
    return Upstream(host="127.0.0.1", port=443, user=MAILBOX, ca_file=str(graph.ca_file), timeout=10.0)


@dataclass
class Run:
    forwarder: Forwarder
    spool: Spool
    events: Events

    async def queue(self, subject: str, rcpts: list[str] | None = None) -> str:
        data = content(subject)
        envelope = make_envelope(rcpts or [ALICE], MAILBOX, size=len(data))
        await self.spool.accept(envelope, data)
        self.forwarder.wake()
        return envelope.id

    async def until(self, envelope_id: str, *states: State, within: float = 15.0) -> bool:
        return await wait_until(lambda: self.spool.get(envelope_id).state in states, within)


@asynccontextmanager
async def forwarding(
    graph: FakeGraph,
    tmp_path: Path,
    tokens: Tokens,
    graph_options: dict[str, Any] | None = None,
    **kwargs: Any,
) -> AsyncIterator[Run]:
    spool = Spool(tmp_path / "spool")
    spool.open()
    log, events = DeliveryLog(tmp_path / "delivery.jsonl"), Events()
    credentials = TokenCredentials(MAILBOX, tokens, on_rejected=tokens.rejected)
    session = graph_factory(
        upstream(graph), credentials, graph.base_url, trust_env=False, **(graph_options or {})
    )

    options: dict[str, Any] = {"rate": 0, "backoff": (0.2,), "stop_grace": 5.0, "connections": 2}
    options.update(kwargs)
    forwarder = Forwarder(
        spool,
        upstream(graph),
        credentials,
        log,
        on_event=events,
        session_factory=session,
        upstream_name="Microsoft Graph (fake)",
        **options,
    )
    task = asyncio.create_task(forwarder.run())
    try:
        yield Run(forwarder, spool, events)
    finally:
        await asyncio.wait_for(forwarder.stop(), 15)
        await asyncio.wait_for(task, 5)
        log.close()
        spool.close()


def everything_on_disk(root: Path) -> bytes:
    """Every byte the relay wrote under ``root`` (spool and delivery log), to grep for the token."""
    return b"".join(path.read_bytes() for path in root.rglob("*") if path.is_file())


# -- the forwarder -------------------------------------------------------------------------------------


async def test_a_long_429_defers_the_message_and_nothing_is_lost(graph: FakeGraph, tmp_path: Path) -> None:
    # Retry-After 2 s, longer than the session waits itself here (0.5 s): the forwarder defers the message
    # and holds every session for at least 2 s, far longer than its own backoff (0.2 s).
    graph.answer(throttled("2"), throttled("2"))
    async with forwarding(graph, tmp_path, Tokens(), graph_options={"inline_wait": 0.5}) as run:
        ids = [await run.queue(f"throttled {n}") for n in range(3)]
        for envelope_id in ids:
            assert await run.until(envelope_id, State.DONE), run.events
        for envelope_id in ids:
            attempts = run.spool.get(envelope_id).attempts
            deferred = [a.at for a in attempts if a.result == "deferred"]
            if deferred:
                delivered = next(a.at for a in attempts if a.result == "delivered")
                assert delivered - deferred[0] >= 1.9  # Retry-After honoured, not the 0.2 s backoff
        throttled_attempts = [
            attempt
            for envelope_id in ids
            for attempt in run.spool.get(envelope_id).attempts
            if attempt.result == "deferred"
        ]
    assert len(throttled_attempts) == 2
    assert all("Graph is throttling the mailbox" in a.reply for a in throttled_attempts)
    subjects = sorted(message.split(b"Subject: ")[1].split(b"\r\n")[0] for message in graph.sent)
    assert subjects == [b"throttled 0", b"throttled 1", b"throttled 2"]  # each exactly once
    assert "deferred" in run.events.kinds()


async def test_401_then_202_delivers_with_a_fresh_token(graph: FakeGraph, tmp_path: Path) -> None:
    graph.valid_tokens = {"fresh"}
    tokens = Tokens("stale", "fresh")
    async with forwarding(graph, tmp_path, tokens) as run:
        envelope_id = await run.queue("refresh")
        assert await run.until(envelope_id, State.DONE)
    assert tokens.rejections == 1
    assert len(graph.sent) == 1


async def test_missing_mail_send_permission_keeps_mail_queued_and_says_why(
    graph: FakeGraph, tmp_path: Path
) -> None:
    graph.answer(*[error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")] * 2)
    async with forwarding(graph, tmp_path, Tokens(), backoff=(0.2,)) as run:
        envelope_id = await run.queue("permission")
        assert await wait_until(lambda: "auth_failed" in run.events.kinds(), 10)
        assert run.spool.get(envelope_id).state in (State.QUEUED, State.SENDING)
        assert await run.until(envelope_id, State.DONE)  # the admin granted it: the next probe delivers
        next_id = await run.queue("after the fix")
        assert await run.until(next_id, State.DONE)
        kinds = run.events.kinds()
    [failed] = [event for event in run.events if event.kind == "auth_failed"]
    assert "Mail.Send" in failed.text
    # Graph is reported back by the first message that goes through (HTTP has no login to prove it)
    assert kinds[:2] == ["auth_failed", "deferred"]
    assert set(kinds) == {"auth_failed", "deferred", "upstream_up", "delivered"}
    assert (kinds.count("auth_failed"), kinds.count("upstream_up"), kinds.count("delivered")) == (1, 1, 2)
    assert kinds.index("upstream_up") < kinds.index("delivered")


async def test_a_dead_message_is_explained_in_the_delivery_log(graph: FakeGraph, tmp_path: Path) -> None:
    graph.answer(error(400, "ErrorMimeContentInvalid", "The MIME content is invalid."))
    async with forwarding(graph, tmp_path, Tokens()) as run:
        envelope_id = await run.queue("bad mime")
        assert await run.until(envelope_id, State.DEAD)
    attempt = run.spool.get(envelope_id).attempts[-1]
    assert attempt.reply.startswith("554 5.6.0 Graph cannot read the message as MIME")
    assert attempt.code == "5.6.0"
    assert attempt.explanation  # the reply explainer's words for 5.6.0
    lines = [json.loads(line) for line in (tmp_path / "delivery.jsonl").read_text().splitlines()]
    assert lines[-1]["reply"] == attempt.reply
    assert TOKEN.encode() not in await asyncio.to_thread(everything_on_disk, tmp_path)


async def test_the_factory_refuses_a_password(graph: FakeGraph) -> None:
    with pytest.raises(ForwarderConfigError, match="only OAuth tokens"):
        graph_factory(upstream(graph), PasswordCredentials(MAILBOX, "pw"), graph.base_url)


# -- the whole engine ----------------------------------------------------------------------------------


def relay_config(graph: FakeGraph, tmp_path: Path) -> RelayConfig:
    return RelayConfig(
        listen_host="127.0.0.1",
        listen_port=0,
        allow=(ipaddress.ip_network("127.0.0.0/8"),),
        spool=tmp_path / "spool",
        delivery_log=tmp_path / "delivery.jsonl",
        upstream=upstream(graph),
        auth="oauth-app",
        profile="graph-app",
        sender=MAILBOX,
        rate=0,
        connections=2,
        max_message_size=10 * 1024 * 1024,
        hostname="relay.office.example",
        graph_url=graph.base_url,
    )


async def test_the_relay_takes_smtp_from_a_device_and_delivers_through_graph(
    graph: FakeGraph, tmp_path: Path
) -> None:
    graph.answer(throttled("1"))  # short enough for the session to wait it out itself
    tokens = Tokens()
    relay = Relay(
        relay_config(graph, tmp_path), TokenCredentials(MAILBOX, tokens, on_rejected=tokens.rejected)
    )
    await relay.start()
    try:
        host, port = relay.address
        started = time.monotonic()
        await aiosmtplib.send(
            content("from the scanner"), sender="copier@office.example", recipients=[ALICE, BOB],
            hostname=host, port=port, start_tls=False, timeout=10,
        )  # fmt: skip
        sent = await asyncio.to_thread(graph.wait_for_sent, 1)
        waited = time.monotonic() - started
        assert await wait_until(lambda: relay.counts().get(State.DONE, 0) == 1, 5)
    finally:
        await relay.stop()
    assert waited >= 1.0  # Retry-After: 1 was honoured
    assert [r.status for r in graph.requests] == [429, 202]
    message = sent[0]
    assert f"To: {ALICE}\r\n".encode() in message
    assert f"Bcc: {BOB}\r\n".encode() in message  # in the envelope, not in the header: a blind copy
    assert b"Subject: from the scanner\r\n" in message


@pytest.mark.keyring
def test_relay_graph_delivers_a_large_scan_from_smtp_as_a_draft(
    authority: FakeAuthority, keyring_env: dict[str, str], graph: FakeGraph, tmp_path: Path
) -> None:
    """``relaywizard relay --graph``, a scanner's 6 MB PDF by SMTP: delivered byte for byte, the large way."""
    pdf = b"%PDF-1.4\n" + random.Random(7).randbytes(6 * 1024 * 1024)
    scan = EmailMessage()
    scan["From"], scan["To"], scan["Subject"] = "scanner@office.example", ALICE, "Scan 6 MB"
    scan.set_content("Scanned 40 pages.")
    scan.add_attachment(pdf, maintype="application", subtype="pdf", filename="scan.pdf")
    port = free_port("127.0.0.1")
    args = oauth_cli.graph_relay_args(authority, graph, port, tmp_path / "spool", "-v")
    relay = oauth_cli.Relay(args, keyring_env, tmp_path / "home")
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.sendmail("copier@office.example", [ALICE, BOB], scan.as_bytes(policy=SMTP))
        [sent] = graph.wait_for_messages(1, within=20)
    finally:
        log = relay.log()
    assert [route for route, _ in graph.routes()] == ["draft", "uploadSession", "upload", "upload", "send"]
    assert sent.upn == oauth_cli.APP
    assert sent.message["subject"] == "Scan 6 MB"
    assert sent.message["body"]["content"].strip() == "Scanned 40 pages."
    assert sent.message["toRecipients"] == [{"emailAddress": {"address": ALICE}}]
    assert sent.message["bccRecipients"] == [{"emailAddress": {"address": BOB}}]  # envelope only: blind
    [attached] = sent.attachments
    assert (attached.name, attached.content_type, attached.data == pdf) == (
        "scan.pdf",
        "application/pdf",
        True,
    )
    assert graph.drafts == {}
    upload = next(r.path for r in graph.requests if r.route == "upload")
    assert "HTTP Request: PUT" in log  # -v logs each request, but not the upload URL's own token
    assert upload.split("authtoken=")[1] not in log
    assert authority.issued[0] not in log


# -- settings and command line -------------------------------------------------------------------------


def resolved(tmp_path: Path, **options: Any) -> RelayConfig:
    values: dict[str, Any] = {"user": MAILBOX, "profile": "graph-app", "graph_url": ""}
    values.update(options)
    return resolve(Settings(), RelayOptions(**values), AppPaths.under(tmp_path))


def test_graph_alone_means_microsofts_graph_with_app_only_auth(tmp_path: Path) -> None:
    config = resolved(tmp_path)
    assert config.graph_url == DEFAULT_GRAPH_URL
    assert config.auth == "oauth-app"
    assert (
        resolved(tmp_path, graph_url="https://localhost:8443/v1.0/").graph_url
        == "https://localhost:8443/v1.0"
    )
    assert resolved(tmp_path, graph_url=None).graph_url is None


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (
            {"graph_url": "http://graph.example/v1.0"},
            "--graph: 'http://graph.example/v1.0' is not an https:// URL",
        ),
        ({"graph_url": "https://graph.example/v1.0?x=1"}, "has a query or fragment"),
        ({"auth": "password"}, "Microsoft Graph takes only OAuth tokens, not password authentication"),
        ({"upstream": "smtp.office365.com:587"}, "--graph replaces --upstream and --tls"),
        ({"user": None, "profile": None}, "needs the mailbox to sign in as: give --user"),
    ],
)
def test_unusable_graph_settings_are_one_sentence(
    tmp_path: Path, options: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ConfigError) as failed:
        resolved(tmp_path, **options)
    assert fragment in failed.value.message


def test_the_command_line_documents_graph_and_checks_its_settings(app_home: Path) -> None:
    help_text = run_cli(["relay", "--help"], home=app_home).stdout
    assert "--graph [URL]" in help_text
    assert "Mail.Send" in help_text
    result = run_cli(
        ["relay", "--graph", "--user", MAILBOX, "--profile", "graph-app", "--allow", "127.0.0.1/32"],
        home=app_home,
    )
    assert_one_sentence_error(result, "--auth oauth-app needs --client-id")
    wrong = run_cli(["relay", "--graph", "http://127.0.0.1:1/v1.0", "--user", MAILBOX], home=app_home)
    assert_one_sentence_error(wrong, "--graph:", "is not an https:// URL")
