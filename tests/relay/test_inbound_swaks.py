"""The inbound server with swaks as the office device: what a technician would try at a real site.

swaks is a required test tool (the project's test command installs it); these tests fail, never skip,
when it is missing.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
from collections.abc import AsyncIterator
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
import trustme

from relaywizard.relay.policy import InboundPolicy
from relaywizard.relay.spool import Spool
from tests.relay.fakes import FakeSpool, RunningRelay, start_relay

LOGIN, PASSWORD = "copier-2f", "Copier-Pa55-word"


async def swaks(port: int, *args: str) -> tuple[int, str]:
    """Run swaks against the relay (bounded), returning its exit code and its whole transcript."""
    binary = shutil.which("swaks")
    assert binary is not None, "swaks is not installed (the test command installs it)"
    process = await asyncio.create_subprocess_exec(
        binary,
        "--server",
        f"127.0.0.1:{port}",
        "--helo",
        "copier.office.test",
        "--from",
        "copier@lab.test",
        "--timeout",
        "20",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, output.decode("utf-8", "replace")


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[RunningRelay]:
    """The relay on the real spool: 127.0.0.1 allowed, device accounts over STARTTLS."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("relay.lab.test", "127.0.0.1").configure_cert(context)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    spool = Spool(tmp_path / "spool")
    spool.open()
    policy = InboundPolicy(
        hostname="relay.lab.test",
        allow=(ip_network("127.0.0.1/32"),),
        authenticate=lambda login, password: (login, password) == (LOGIN, PASSWORD),
        tls_context=context,
    )
    running = await start_relay(spool, policy)
    yield running
    await running.stop()
    spool.close()


async def test_allowed_device_delivers(relay: RunningRelay) -> None:
    code, transcript = await swaks(
        relay.port, "--to", "alice@lab.test,bob@lab.test", "--header", "Subject: Scan from the copier"
    )
    assert code == 0, transcript
    assert "<-  250 2.0.0 Queued as " in transcript
    [(envelope, content)] = await relay.messages()
    assert [e.id for e in relay.queued] == [envelope.id]
    assert envelope.device == "127.0.0.1"
    assert envelope.helo == "copier.office.test"
    assert envelope.mail_from == "copier@lab.test"
    assert envelope.rcpt_tos == ["alice@lab.test", "bob@lab.test"]
    assert content.startswith(b"Received: from copier.office.test ([127.0.0.1])\r\n\tby relay.lab.test ")
    assert b"\r\nSubject: Scan from the copier\r\n" in content
    assert f"Queued as {envelope.id}" in transcript


async def test_device_outside_the_allow_list_is_refused(relay: RunningRelay) -> None:
    code, transcript = await swaks(relay.port, "--local-interface", "127.0.0.2", "--to", "alice@lab.test")
    assert code != 0
    assert (
        "<** 550 5.7.1 127.0.0.2 is not allowed to relay through this relay; add it to the allowed devices"
        in transcript
    )
    assert await relay.messages() == []


async def test_device_account_over_starttls_delivers_from_outside(
    relay: RunningRelay, tmp_path: Path
) -> None:
    code, transcript = await swaks(
        relay.port,
        "--local-interface",
        "127.0.0.2",
        "--to",
        "alice@lab.test",
        "--tls",
        "--tls-verify",
        "--tls-ca-path",
        str(tmp_path / "ca.pem"),
        "--auth",
        "LOGIN",
        "--auth-user",
        LOGIN,
        "--auth-password",
        PASSWORD,
    )
    assert code == 0, transcript
    assert "235 2.7.0 Authentication successful" in transcript
    [(envelope, content)] = await relay.messages()
    assert envelope.device == "127.0.0.2"
    assert envelope.device_login == LOGIN
    assert b" with ESMTPSA id " in content


async def test_auth_without_starttls_is_refused(relay: RunningRelay) -> None:
    code, transcript = await swaks(
        relay.port,
        "--local-interface",
        "127.0.0.2",
        "--to",
        "alice@lab.test",
        "--auth",
        "PLAIN",
        "--auth-user",
        LOGIN,
        "--auth-password",
        PASSWORD,
    )
    assert code != 0
    assert "*** Host did not advertise authentication" in transcript  # AUTH is offered only after STARTTLS
    assert "<-  250-STARTTLS" in transcript
    assert await relay.messages() == []


@pytest.mark.parametrize(
    ("recipient", "reply"),
    [
        ("user%elsewhere.test@relay.lab.test", "550 5.7.1 <user%elsewhere.test@relay.lab.test>: this relay"),
        (
            "@relay.lab.test:user@elsewhere.test",
            "550 5.7.1 <@relay.lab.test:user@elsewhere.test>: this relay",
        ),
        (
            '"user@elsewhere.test"@relay.lab.test',
            '550 5.7.1 <"user@elsewhere.test"@relay.lab.test>: this relay',
        ),
        ("user@elsewhere.test@relay.lab.test", "553 5.1.3 Error: malformed address"),
    ],
)
async def test_open_relay_tricks_from_swaks(relay: RunningRelay, recipient: str, reply: str) -> None:
    code, transcript = await swaks(relay.port, "--to", recipient)
    assert code != 0
    assert f"<** {reply}" in transcript, transcript
    assert await relay.messages() == []


async def test_swaks_lines_arrive_as_crlf_lines_with_the_fake_spool_too() -> None:
    spool: Any = FakeSpool()
    running = await start_relay(
        spool, InboundPolicy(hostname="relay.lab.test", allow=(ip_network("127.0.0.1/32"),))
    )
    try:
        code, transcript = await swaks(running.port, "--to", "alice@lab.test", "--body", "line one\nline two")
        assert code == 0, transcript
        [content] = spool.contents
        assert b"\r\n\r\nline one\r\nline two\r\n" in content
    finally:
        await running.stop()
