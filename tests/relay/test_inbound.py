"""The inbound server, for real: aiosmtpd on 127.0.0.1 in the test's loop, smtplib and raw sockets as devices.

Tests marked with the ``spool`` fixture run twice: with the in-memory ``FakeSpool`` and with the real
``Spool`` in a temporary folder.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import logging
import os
import re
import smtplib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
import trustme

from relaywizard.core.errors import ConfigError
from relaywizard.relay import inbound as inbound_module
from relaywizard.relay.inbound import read_data, start_inbound
from relaywizard.relay.model import Envelope, State
from relaywizard.relay.policy import InboundPolicy
from relaywizard.relay.spool import Spool
from tests.relay.fakes import FakeSpool, RawClient, RunningRelay, eventually, start_relay

LOCAL = (ip_network("127.0.0.1/32"),)
OUTSIDE = "127.0.0.2"  # another source address on loopback, not in LOCAL
MESSAGE = (
    b"From: Scanner <scanner@lab.test>\r\nTo: alice@lab.test\r\nSubject: Scan 42\r\n"
    b"Message-ID: <scan42@scanner.lab.test>\r\n\r\nYour scan is attached.\r\n.leading dot\r\n"
)
LOGIN, PASSWORD = "scanner-device", "s3cret-Pa55"

Starter = Callable[..., Awaitable[RunningRelay]]


@pytest.fixture(params=["fake", "real"])
def spool(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The in-memory spool, then the real one in a temporary folder."""
    if request.param == "fake":
        yield FakeSpool()
        return
    real = Spool(tmp_path / "spool")
    real.open()
    yield real
    real.close()


@pytest.fixture
async def relay_factory() -> AsyncIterator[Starter]:
    """Start relays with a policy (LOCAL allowed unless told otherwise); all are stopped afterwards."""
    running: list[RunningRelay] = []

    async def start(spool: Any = None, on_queued: Any = None, **overrides: Any) -> RunningRelay:
        values: dict[str, Any] = {"hostname": "relay.lab.test", "allow": LOCAL}
        values.update(overrides)
        relay = await start_relay(spool or FakeSpool(), InboundPolicy(**values), on_queued=on_queued)
        running.append(relay)
        return relay

    yield start
    for relay in running:
        await relay.stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("relay.lab.test", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def check_password(login: str, password: str) -> bool:
    return (login, password) == (LOGIN, PASSWORD)


def sendmail(
    port: int,
    rcpts: list[str],
    message: bytes = MESSAGE,
    *,
    source: str = "127.0.0.1",
    sender: str = "scanner@lab.test",
    tls: ssl.SSLContext | None = None,
    login: tuple[str, str] | None = None,
    mail_options: tuple[str, ...] = (),
) -> dict[str, tuple[int, bytes]]:
    """What a device using smtplib does (run it in a thread)."""
    with smtplib.SMTP(
        "127.0.0.1", port, local_hostname="scanner", source_address=(source, 0), timeout=20
    ) as c:
        if tls is not None:
            c.starttls(context=tls)
        if login is not None:
            c.login(*login)
        return c.sendmail(sender, rcpts, message, mail_options=list(mail_options))


# -- delivery -----------------------------------------------------------------------------------------------


async def test_allowed_device_is_queued_byte_for_byte(relay_factory: Starter, spool: Any) -> None:
    relay = await relay_factory(spool)
    refused = await asyncio.to_thread(sendmail, relay.port, ["alice@lab.test", "bob@lab.test"])
    assert refused == {}
    [(envelope, content)] = await relay.messages()
    assert [e.id for e in relay.queued] == [envelope.id]
    assert envelope.device == "127.0.0.1"
    assert envelope.helo == "scanner"
    assert envelope.mail_from == "scanner@lab.test"
    assert envelope.rcpt_tos == ["alice@lab.test", "bob@lab.test"]
    assert envelope.device_login is None
    assert envelope.size == len(content)
    # One Received header on top, then the message exactly as sent (dot-unstuffed by SMTP).
    header, _, rest = content.partition(b"\r\n\tby relay.lab.test (relaywizard) with ESMTP id ")
    assert header == b"Received: from scanner ([127.0.0.1])"
    trace, _, body = rest.partition(b"\r\n")  # "<id>;" then the folded date line
    assert trace == envelope.id.encode() + b";"
    date_line, _, original = body.partition(b"\r\n")
    assert date_line.startswith(b"\t")
    assert original == MESSAGE


async def test_the_reply_names_the_spool_id(relay_factory: Starter) -> None:
    relay = await relay_factory()
    client = await RawClient.connect(relay.port)
    await client.start_mail()
    assert (await client.cmd("DATA")).startswith("354 ")
    await client.send(b"Subject: x\r\n\r\nhello\r\n.\r\n")
    reply = await client.reply()
    [envelope] = relay.queued
    assert reply == f"250 2.0.0 Queued as {envelope.id}"
    assert await client.cmd("QUIT") == "221 Bye"
    await client.close()


async def test_greeting_and_ehlo_announce_size_but_no_auth_without_accounts(relay_factory: Starter) -> None:
    relay = await relay_factory()
    client = await RawClient.connect(relay.port)
    greeting = await client.reply()
    assert greeting == "220 relay.lab.test ESMTP relaywizard"  # no software version for strangers
    ehlo = await client.cmd("EHLO scanner")
    assert "250-SIZE 36700160" in ehlo.splitlines()
    assert "AUTH" not in ehlo
    assert "STARTTLS" not in ehlo
    assert (await client.cmd("AUTH PLAIN")).startswith("538 5.7.11 AUTH needs TLS")
    await client.close()


async def test_null_sender_is_accepted(relay_factory: Starter) -> None:
    relay = await relay_factory()
    await asyncio.to_thread(sendmail, relay.port, ["alice@lab.test"], sender="")
    [envelope] = relay.queued
    assert envelope.mail_from == ""


async def test_helo_client_gets_smtp_in_the_received_header(relay_factory: Starter) -> None:
    relay = await relay_factory()
    client = await RawClient.connect(relay.port)
    await client.start_mail(helo="HELO old-copier")
    assert (await client.cmd("DATA")).startswith("354 ")
    await client.send(b"Subject: x\r\n\r\nhello\r\n.\r\n")
    assert (await client.reply()).startswith("250 2.0.0 Queued as ")
    await client.close()
    [(envelope, content)] = await relay.messages()
    assert envelope.helo == "old-copier"
    assert content.startswith(
        b"Received: from old-copier ([127.0.0.1])\r\n\tby relay.lab.test (relaywizard) with SMTP "
    )


# -- who may relay ------------------------------------------------------------------------------------------


async def test_device_outside_the_allow_list_is_refused(
    relay_factory: Starter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "relaywizard.relay.inbound")
    relay = await relay_factory()
    client = await RawClient.connect(relay.port, source=OUTSIDE)
    assert (await client.reply()).startswith("220 ")
    assert (await client.cmd("EHLO intruder")).startswith("250")
    refusal = "550 5.7.1 127.0.0.2 is not allowed to relay through this relay; add it to the allowed devices"
    assert await client.cmd("MAIL FROM:<scanner@lab.test>") == refusal
    assert (await client.cmd("RCPT TO:<alice@lab.test>")).startswith("503 ")
    assert (await client.cmd("DATA")).startswith("503 ")
    assert await client.cmd("QUIT") == "221 Bye"
    await client.close()
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        await asyncio.to_thread(sendmail, relay.port, ["alice@lab.test"], source=OUTSIDE)
    assert refused.value.smtp_code == 550
    assert relay.queued == []
    assert await relay.messages() == []
    summary = "session from 127.0.0.2 ended: 0 queued, 1 refused, last: 550 5.7.1"
    assert await eventually(lambda: summary in caplog.text)  # logged when the server sees the hang-up
    assert f"refused 127.0.0.2: {refusal}" in caplog.text


@pytest.mark.parametrize(
    ("path", "reply"),
    [
        (
            "<user%other.test@relay.lab.test>",
            "550 5.7.1 <user%other.test@relay.lab.test>: this relay does not forward the percent hack",
        ),
        (
            "<@relay.lab.test:user@other.test>",
            "550 5.7.1 <@relay.lab.test:user@other.test>: this relay does not forward source routes",
        ),
        ("<@a.test,@b.test:user@other.test>", "550 5.7.1 <@a.test,@b.test:user@other.test>: this relay"),
        (
            '<"user@other.test"@relay.lab.test>',
            '550 5.7.1 <"user@other.test"@relay.lab.test>: this relay does not forward quoted local parts',
        ),
        (
            '<"user%other.test"@relay.lab.test>',
            "550 5.7.1 <user%other.test@relay.lab.test>: this relay does not forward the percent hack",
        ),
        ("<user@other.test@relay.lab.test>", "553 5.1.3 Error: malformed address"),
        ("user@other.test@relay.lab.test", "553 5.1.3 Error: malformed address"),
        (
            "<other.test!user@relay.lab.test>",
            "550 5.7.1 <other.test!user@relay.lab.test>: this relay does not forward bang paths",
        ),
        ("<user@[192.0.2.1]>", "550 5.7.1 <user@[192.0.2.1]>: this relay does not forward address literals"),
        ("<>", "553 5.1.3 An empty recipient address cannot receive mail"),
        ("<postmaster>", "553 5.1.3 <postmaster> is not a complete address"),
        ("<.user@other.test>", "553 5.1.3 <.user@other.test> is not a valid email address"),
        ("<user@>", "553 5.1.3 Error: malformed address"),
        ("", "501 Syntax: RCPT TO: <address>"),
    ],
)
async def test_open_relay_tricks_are_refused_at_rcpt(relay_factory: Starter, path: str, reply: str) -> None:
    relay = await relay_factory()
    client = await RawClient.connect(relay.port)
    await client.start_mail()  # one good recipient, so DATA would work if a trick got through
    answer = await client.cmd(f"RCPT TO:{path}")
    assert answer.startswith(reply), answer
    assert answer[0] == "5"
    assert (await client.cmd("RSET")).startswith("250")
    assert (await client.cmd("MAIL FROM:<scanner@lab.test>")).startswith("250")
    assert (await client.cmd(f"RCPT TO:{path}")).startswith(reply)
    assert (await client.cmd("DATA")).startswith("503 ")  # no recipient was taken
    await client.close()
    assert relay.queued == []


async def test_internal_only_mode_refuses_other_domains(relay_factory: Starter) -> None:
    relay = await relay_factory(allowed_recipient_domains=("lab.test",))
    refused = await asyncio.to_thread(sendmail, relay.port, ["alice@lab.test", "someone@elsewhere.test"])
    assert refused == {
        "someone@elsewhere.test": (
            550,
            b"5.7.54 <someone@elsewhere.test>: only lab.test may be mailed through this relay",
        )
    }
    [envelope] = relay.queued
    assert envelope.rcpt_tos == ["alice@lab.test"]


# -- limits -------------------------------------------------------------------------------------------------


async def test_declared_size_over_the_limit_is_refused_at_mail_from(relay_factory: Starter) -> None:
    relay = await relay_factory()
    client = await RawClient.connect(relay.port)
    assert (await client.reply()).startswith("220")
    await client.cmd("EHLO scanner")
    answer = await client.cmd("MAIL FROM:<scanner@lab.test> SIZE=36700161")
    assert (
        answer == "552 5.3.4 Message too big: this relay accepts messages of at most 35 MB (36700160 bytes)"
    )
    assert (await client.cmd("MAIL FROM:<scanner@lab.test> SIZE=36700160")).startswith("250 ")
    await client.close()


async def test_36_mb_of_data_is_refused_and_nothing_queued(relay_factory: Starter, spool: Any) -> None:
    relay = await relay_factory(spool)
    client = await RawClient.connect(relay.port)
    await client.start_mail()  # no SIZE= given: the device does not say how big it is
    assert (await client.cmd("DATA")).startswith("354 ")
    line = base64.b64encode(b"\xa5" * 57) + b"\r\n"  # 78 bytes, like a base64 attachment
    chunk = line * 13_443  # 1 MiB less 22 bytes: 36 of them are well over 35 MiB
    await client.send(b"Subject: huge\r\n\r\n")
    for _ in range(36):
        await client.send(chunk)
    await client.send(b".\r\n")
    assert await client.reply(wait=60) == (
        "552 5.3.4 Message too big: this relay accepts messages of at most 35 MB (36700160 bytes)"
    )
    assert (await client.cmd("NOOP")) == "250 OK"  # the session goes on
    await client.close()
    assert relay.queued == []
    assert await relay.messages() == []


async def test_a_message_just_under_the_limit_is_queued_whole(relay_factory: Starter, spool: Any) -> None:
    relay = await relay_factory(spool, max_message_size=30 * 1024 * 1024)
    client = await RawClient.connect(relay.port)
    await client.start_mail()
    line = base64.b64encode(bytes(range(57))) + b"\r\n"
    body = b"Subject: big scan\r\n\r\n" + line * (30 * 1024 * 1024 // len(line) - 1)
    assert (await client.cmd("DATA")).startswith("354 ")
    await client.send(body + b".\r\n")
    assert (await client.reply(wait=60)).startswith("250 2.0.0 Queued as ")
    await client.close()
    [(envelope, content)] = await relay.messages()
    header, _, rest = content.partition(b"\r\n\t")  # the Received header, folded over three lines
    assert header == b"Received: from scanner ([127.0.0.1])"
    assert rest.split(b"\r\n", 2)[2] == body
    assert envelope.size == len(content)


async def test_501_recipients_the_last_one_is_told_to_wait(relay_factory: Starter) -> None:
    relay = await relay_factory()
    recipients = [f"user{n}@lab.test" for n in range(501)]
    refused = await asyncio.to_thread(sendmail, relay.port, recipients)
    assert refused == {"user500@lab.test": (452, b"4.5.3 Too many recipients: at most 500 per message")}
    [envelope] = relay.queued
    assert envelope.rcpt_tos == recipients[:500]


async def test_line_length_follows_rfc_5322(relay_factory: Starter) -> None:
    relay = await relay_factory()
    client = await RawClient.connect(relay.port)
    await client.start_mail()
    longest = b"x" * 998
    dotted = b"." + b"y" * 997  # 998 characters that start with a dot: 999 on the wire, still fine
    assert (await client.cmd("DATA")).startswith("354 ")
    await client.send(b"Subject: lines\r\n\r\n" + longest + b"\r\n." + dotted + b"\r\n.\r\n")
    assert (await client.reply()).startswith("250 2.0.0 Queued as ")
    assert (await client.cmd("MAIL FROM:<scanner@lab.test>")).startswith("250")
    assert (await client.cmd("RCPT TO:<alice@lab.test>")).startswith("250")
    assert (await client.cmd("DATA")).startswith("354 ")
    await client.send(b"Subject: lines\r\n\r\n" + longest + b"z\r\n.\r\n")
    assert await client.reply() == (
        "500 5.5.2 Line too long: a line of a message may have at most 998 characters"
    )
    await client.close()
    [(_, content)] = await relay.messages()
    assert content.endswith(b"\r\n\r\n" + longest + b"\r\n" + dotted + b"\r\n")


async def test_too_many_sessions_get_421(relay_factory: Starter) -> None:
    relay = await relay_factory(max_connections=2)
    first, second = await RawClient.connect(relay.port), await RawClient.connect(relay.port)
    assert (await first.reply()).startswith("220 ")
    assert (await second.reply()).startswith("220 ")
    third = await RawClient.connect(relay.port)
    assert await third.reply() == "421 4.7.0 relay.lab.test Too many connections at once; try again later"
    assert await third.reader.read() == b""  # and closed
    await third.close()
    assert await first.cmd("QUIT") == "221 Bye"
    await first.close()
    for _ in range(100):  # the place is free once the server has seen the hang-up
        fourth = await RawClient.connect(relay.port)
        if (await fourth.reply()).startswith("220 "):
            break
        await fourth.close()
        await asyncio.sleep(0.02)
    for client in (second, fourth):
        assert await client.cmd("QUIT") == "221 Bye"
        await client.close()


# -- smuggling ----------------------------------------------------------------------------------------------

SMUGGLING = {
    "LF.LF": b"\n.\n",
    "CRLF.LF": b"\r\n.\n",
    "LF.CRLF": b"\n.\r\n",
    "CR.CRLF": b"\r.\r\n",
    "CRLF.CR": b"\r\n.\r",
    "CR.CR": b"\r.\r",
    "LF.CR": b"\n.\r",
}
SMUGGLED = (
    b"MAIL FROM:<ceo@lab.test>\r\nRCPT TO:<bob@lab.test>\r\nDATA\r\n"
    b"From: ceo@lab.test\r\nSubject: smuggled\r\n\r\nPay the invoice.\r\n"
)


@pytest.mark.parametrize("separator", SMUGGLING.values(), ids=SMUGGLING.keys())
async def test_smuggled_second_message_is_never_queued(
    relay_factory: Starter, spool: Any, separator: bytes
) -> None:
    relay = await relay_factory(spool)
    client = await RawClient.connect(relay.port)
    await client.start_mail()
    assert (await client.cmd("DATA")).startswith("354 ")
    # All in one write, as an attacker pipelines it: the fake end, the smuggled commands, the real end.
    await client.send(b"Subject: first\r\n\r\nHello" + separator + SMUGGLED + b".\r\n")
    answer = await client.reply()
    assert answer.startswith("550 5.6.0 Bare LF/CR not allowed"), answer
    assert await client.cmd("NOOP") == "250 OK"  # no other reply was pending: the smuggled commands never ran
    await client.close()
    assert relay.queued == []
    assert await relay.messages() == []


@pytest.mark.parametrize("separator", SMUGGLING.values(), ids=SMUGGLING.keys())
async def test_bare_line_end_dot_does_not_end_the_data(relay_factory: Starter, separator: bytes) -> None:
    relay = await relay_factory()
    client = await RawClient.connect(relay.port)
    await client.start_mail()
    assert (await client.cmd("DATA")).startswith("354 ")
    await client.send(b"Subject: first\r\n\r\nHello" + separator)
    assert await client.silent_for(0.3)  # still reading the data: that was not the end
    await client.send(b"\r\n.\r\n")
    assert (await client.reply()).startswith("550 5.6.0 ")
    await client.close()
    assert relay.queued == []


async def test_a_stuffed_dot_line_stays_inside_one_message(relay_factory: Starter, spool: Any) -> None:
    relay = await relay_factory(spool)
    client = await RawClient.connect(relay.port)
    await client.start_mail()
    assert (await client.cmd("DATA")).startswith("354 ")
    await client.send(
        b"Subject: dots\r\n\r\nbefore\r\n..\r\n" + SMUGGLED.replace(b"\r\n.", b"\r\n..") + b".\r\n"
    )
    assert (await client.reply()).startswith("250 2.0.0 Queued as ")
    assert await client.cmd("NOOP") == "250 OK"
    await client.close()
    [(envelope, content)] = await relay.messages()
    assert envelope.rcpt_tos == ["alice@lab.test"]
    assert content.endswith(b"Subject: dots\r\n\r\nbefore\r\n.\r\n" + SMUGGLED)


# -- the spool ----------------------------------------------------------------------------------------------


async def test_spool_failure_is_a_451_and_the_server_goes_on(
    relay_factory: Starter, caplog: pytest.LogCaptureFixture
) -> None:
    spool = FakeSpool(fail=OSError(errno.ENOSPC, "No space left on device"))
    relay = await relay_factory(spool)
    with pytest.raises(smtplib.SMTPDataError) as failed:
        await asyncio.to_thread(sendmail, relay.port, ["alice@lab.test"])
    assert failed.value.smtp_code == 451
    assert failed.value.smtp_error == b"4.3.0 The relay could not store the message; please try again"
    assert relay.queued == []
    assert (
        "could not store a message from 127.0.0.1: OSError: [Errno 28] No space left on device" in caplog.text
    )
    spool.fail = None
    assert await asyncio.to_thread(sendmail, relay.port, ["alice@lab.test"]) == {}
    assert len(relay.queued) == 1


async def test_real_spool_that_cannot_write_answers_451(relay_factory: Starter, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.open()
    spool.close()  # no longer owned: accept must fail, and the device must not get a 250
    relay = await relay_factory(spool)
    with pytest.raises(smtplib.SMTPDataError) as failed:
        await asyncio.to_thread(sendmail, relay.port, ["alice@lab.test"])
    assert failed.value.smtp_code == 451
    assert relay.queued == []


async def test_real_spool_with_a_full_disk_answers_451(
    relay_factory: Starter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path / "spool")
    spool.open()
    relay = await relay_factory(spool)

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    try:
        with pytest.raises(smtplib.SMTPDataError) as failed:
            await asyncio.to_thread(sendmail, relay.port, ["alice@lab.test"])
    finally:
        monkeypatch.undo()
        spool.close()
    assert failed.value.smtp_code == 451
    assert relay.queued == []
    assert spool.list([State.QUEUED]) == []


async def test_an_internal_error_is_a_451_not_a_crash(
    relay_factory: Starter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: InboundPolicy, address: str) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(InboundPolicy, "recipient_ok", broken)
    relay = await relay_factory()
    client = await RawClient.connect(relay.port)
    assert (await client.reply()).startswith("220")
    await client.cmd("EHLO scanner")
    await client.cmd("MAIL FROM:<scanner@lab.test>")
    assert (
        await client.cmd("RCPT TO:<alice@lab.test>")
        == "451 4.3.0 The relay met an internal error; please try again"
    )
    assert await client.cmd("NOOP") == "250 OK"
    await client.close()
    assert "internal error in an SMTP session: RuntimeError: a bug" in caplog.text


async def test_device_hanging_up_while_storing_loses_nothing(relay_factory: Starter) -> None:
    spool = FakeSpool(delay=0.3)
    relay = await relay_factory(spool)
    client = await RawClient.connect(relay.port)
    await client.start_mail()
    assert (await client.cmd("DATA")).startswith("354 ")
    await client.send(b"Subject: x\r\n\r\nhello\r\n.\r\n")
    assert await eventually(lambda: spool.started)
    await client.close()  # hang up before the 250
    assert await eventually(lambda: relay.queued)
    assert len(relay.queued) == 1  # stored all the same, and the forwarder told
    assert len(spool.messages) == 1


async def test_on_queued_failing_does_not_lose_the_250(
    relay_factory: Starter, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(envelope: Envelope) -> None:
        raise RuntimeError("forwarder asleep")

    relay = await relay_factory(on_queued=broken)
    assert await asyncio.to_thread(sendmail, relay.port, ["alice@lab.test"]) == {}
    assert len(relay.spool.messages) == 1
    assert "on_queued failed" in caplog.text


# -- AUTH ---------------------------------------------------------------------------------------------------


async def test_device_account_over_starttls_may_send_from_anywhere(
    relay_factory: Starter,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    relay = await relay_factory(tls_context=server_tls, authenticate=check_password)
    client = await RawClient.connect(relay.port, source=OUTSIDE)
    assert (await client.reply()).startswith("220")
    ehlo = await client.cmd("EHLO scanner")
    assert "250-STARTTLS" in ehlo.splitlines()
    assert "AUTH" not in ehlo  # not before TLS
    assert (await client.cmd("AUTH LOGIN")).startswith(
        "538 5.7.11 Encryption required: send STARTTLS before AUTH"
    )
    await client.close()
    refused = await asyncio.to_thread(
        sendmail, relay.port, ["alice@lab.test"], source=OUTSIDE, tls=client_tls, login=(LOGIN, PASSWORD)
    )
    assert refused == {}
    [(envelope, content)] = await relay.messages()
    assert envelope.device == OUTSIDE
    assert envelope.device_login == LOGIN
    assert b" with ESMTPSA id " in content.split(b"\r\n\r\n")[0]
    assert await eventually(lambda: "session from 127.0.0.2 ended: 1 queued" in caplog.text)
    assert PASSWORD not in caplog.text
    assert base64.b64encode(f"\0{LOGIN}\0{PASSWORD}".encode()).decode() not in caplog.text
    assert f"AUTH PLAIN from 127.0.0.2 as '{LOGIN}' succeeded" in caplog.text


async def test_a_tls_session_frees_its_place_when_it_ends(
    relay_factory: Starter, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    relay = await relay_factory(tls_context=server_tls, max_connections=1)
    busy: list[int] = []
    for _ in range(3):
        for _ in range(100):  # the place is free once the server has seen the TLS session end
            try:
                assert await asyncio.to_thread(sendmail, relay.port, ["alice@lab.test"], tls=client_tls) == {}
                break
            except smtplib.SMTPConnectError as refused:
                busy.append(refused.smtp_code)
                await asyncio.sleep(0.02)
    assert set(busy) <= {421}
    assert len(relay.queued) == 3
    [first, *_] = await relay.messages()
    assert b" with ESMTPS id " in first[1]


async def test_wrong_password_is_535_and_still_not_allowed(
    relay_factory: Starter,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    relay = await relay_factory(tls_context=server_tls, authenticate=check_password)
    with pytest.raises(smtplib.SMTPAuthenticationError) as failed:
        await asyncio.to_thread(
            sendmail,
            relay.port,
            ["alice@lab.test"],
            source=OUTSIDE,
            tls=client_tls,
            login=(LOGIN, "wrong-Guess-77"),
        )
    assert (failed.value.smtp_code, failed.value.smtp_error) == (
        535,
        b"5.7.8 Authentication credentials invalid",
    )
    assert relay.queued == []
    assert "wrong-Guess-77" not in caplog.text
    assert f"AUTH LOGIN from 127.0.0.2 as '{LOGIN}' failed: wrong login or password" in caplog.text


async def test_auth_without_tls_only_from_auth_networks(
    relay_factory: Starter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    relay = await relay_factory(authenticate=check_password, auth_networks=(ip_network("127.0.0.2/32"),))
    # 127.0.0.2 may authenticate in clear (and then relay), 127.0.0.1 may not (it is allowed anyway).
    client = await RawClient.connect(relay.port, source=OUTSIDE)
    assert (await client.reply()).startswith("220")
    assert "250-AUTH LOGIN PLAIN" in (await client.cmd("EHLO scanner")).splitlines()
    assert await client.cmd("AUTH LOGIN") == "334 VXNlciBOYW1lAA=="
    assert await client.cmd(base64.b64encode(LOGIN.encode()).decode()) == "334 UGFzc3dvcmQA"
    assert (
        await client.cmd(base64.b64encode(PASSWORD.encode()).decode())
        == "235 2.7.0 Authentication successful"
    )
    assert (await client.cmd("MAIL FROM:<scanner@lab.test>")).startswith("250")
    assert (await client.cmd("RCPT TO:<alice@lab.test>")).startswith("250")
    assert (await client.cmd("DATA")).startswith("354")
    await client.send(b"Subject: x\r\n\r\nhi\r\n.\r\n")
    assert (await client.reply()).startswith("250 2.0.0 Queued as ")
    await client.close()
    [(envelope, content)] = await relay.messages()
    assert envelope.device_login == LOGIN
    assert b" with ESMTPA id " in content
    inside = await RawClient.connect(relay.port)
    assert (await inside.reply()).startswith("220")
    assert "AUTH" not in await inside.cmd("EHLO scanner")
    await inside.close()
    assert PASSWORD not in caplog.text
    assert base64.b64encode(PASSWORD.encode()).decode() not in caplog.text


async def test_account_check_failing_is_a_temporary_454(
    relay_factory: Starter, caplog: pytest.LogCaptureFixture
) -> None:
    def locked(login: str, password: str) -> bool:
        raise ConfigError("The keyring is locked.")

    relay = await relay_factory(authenticate=locked, auth_networks=LOCAL)
    client = await RawClient.connect(relay.port)
    assert (await client.reply()).startswith("220")
    await client.cmd("EHLO scanner")
    token = base64.b64encode(f"\0{LOGIN}\0{PASSWORD}".encode()).decode()
    assert (
        await client.cmd(f"AUTH PLAIN {token}")
        == "454 4.7.0 Temporary authentication failure; please try again"
    )
    await client.close()
    assert "could not be checked: The keyring is locked." in caplog.text
    assert PASSWORD not in caplog.text
    assert token not in caplog.text


async def test_unknown_command_words_are_not_logged(
    relay_factory: Starter, caplog: pytest.LogCaptureFixture
) -> None:
    # A device that pipelines its AUTH LOGIN answers after a refusal sends its password as a "command".
    caplog.set_level(logging.DEBUG)  # aiosmtpd's own log ("mail.log") too
    relay = await relay_factory()
    client = await RawClient.connect(relay.port)
    assert (await client.reply()).startswith("220")
    secret = base64.b64encode(PASSWORD.encode()).decode()
    assert (await client.cmd(secret)).startswith("500 ")
    await client.close()
    assert secret.upper() not in caplog.text.upper()
    assert 'refused 127.0.0.1: 500 Error: command "..." not recognized' in caplog.text


# -- listening ----------------------------------------------------------------------------------------------


async def test_port_in_use_is_one_sentence() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as error:
            await start_inbound(
                InboundPolicy(hostname="relay", allow=LOCAL), FakeSpool(), print, "127.0.0.1", port
            )
    assert error.value.message == f"Cannot listen on 127.0.0.1:{port}: the port is in use by another program."
    assert error.value.hint


async def test_low_port_without_rights_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()

    async def refuse(*args: Any, **kwargs: Any) -> asyncio.Server:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(loop, "create_server", refuse)
    with pytest.raises(ConfigError) as error:
        await start_inbound(InboundPolicy(hostname="relay", allow=LOCAL), FakeSpool(), print, "0.0.0.0", 25)
    assert error.value.message == (
        "Cannot listen on 0.0.0.0:25: the port needs administrator rights for ports below 1024."
    )
    assert "2525" in error.value.hint


async def test_address_not_of_this_computer() -> None:
    with pytest.raises(
        ConfigError, match=re.escape("Cannot listen on 192.0.2.77:2525: 192.0.2.77 is not an address")
    ):
        await start_inbound(
            InboundPolicy(hostname="relay", allow=LOCAL), FakeSpool(), print, "192.0.2.77", 2525
        )


# -- reading DATA in pieces (read_data) ----------------------------------------------------------------------


async def read_in_pieces(
    stream: bytes, cuts: list[int], limit: int = 1001, **policy: Any
) -> tuple[Any, bytes]:
    """``read_data`` over ``stream`` arriving cut at ``cuts``; also what it left for the next command."""
    reader = asyncio.StreamReader(limit=limit)

    async def arrive() -> None:
        start = 0
        for cut in [*cuts, len(stream)]:
            reader.feed_data(stream[start:cut])
            start = cut
            await asyncio.sleep(0)
        reader.feed_eof()

    feeding = asyncio.create_task(arrive())
    data = await read_data(reader, InboundPolicy(hostname="relay.test", **policy))
    await feeding
    return data, await reader.read()


def joined(data: Any) -> bytes:
    return b"".join(bytes(part) for part in data.parts)


@pytest.mark.parametrize("cut", range(1, 40))
async def test_read_data_gives_the_same_at_any_cut(cut: int) -> None:
    content = b"Subject: dots\r\n\r\n..leading\r\n...\r\nend.\r\n\r\n"
    data, rest = await read_in_pieces(content + b".\r\nQUIT\r\n", [cut, cut + 7])
    assert data.refusal is None
    assert joined(data) == b"Subject: dots\r\n\r\n.leading\r\n..\r\nend.\r\n\r\n"
    assert data.size == len(joined(data))
    assert rest == b"QUIT\r\n"  # a pipelined command after the end is left for the session


@pytest.mark.parametrize("separator", [*SMUGGLING.values(), b"\r\n.\r\r\n", b"\n.\r\r\n"])
@pytest.mark.parametrize("cut", [1, 5, 17, 18, 19, 20, 21, 22])
async def test_read_data_never_ends_at_a_smuggled_end(separator: bytes, cut: int) -> None:
    stream = b"Subject: first\r\n\r\nHello" + separator + SMUGGLED + b".\r\nNOOP\r\n"
    data, rest = await read_in_pieces(stream, [cut])
    assert data.refusal is not None
    assert str(data.refusal).startswith("550 5.6.0 ")
    assert data.parts == []
    assert rest == b"NOOP\r\n"


@pytest.mark.parametrize("stream", [b".\r\n", b"\r\n.\r\n", b"x\r\n.\r\n"])
async def test_read_data_short_messages(stream: bytes) -> None:
    data, rest = await read_in_pieces(stream + b"RSET\r\n", [1])
    assert data.refusal is None
    assert joined(data) == stream[:-3]
    assert rest == b"RSET\r\n"


async def test_read_data_a_long_line_is_refused_and_memory_stays_bounded() -> None:
    stream = b"Subject: x\r\n\r\n" + b"y" * 5_000_000 + b"\r\n.\r\n"
    data, rest = await read_in_pieces(stream, list(range(65536, len(stream), 65536)))
    assert str(data.refusal).startswith("500 5.5.2 Line too long")
    assert data.parts == []
    assert rest == b""


async def test_read_data_over_the_size_limit_is_refused_after_the_end() -> None:
    line = b"z" * 76 + b"\r\n"
    stream = b"Subject: x\r\n\r\n" + line * 2000 + b".\r\nNOOP\r\n"
    data, rest = await read_in_pieces(stream, list(range(4096, len(stream), 4096)), max_message_size=100_000)
    assert str(data.refusal).startswith("552 5.3.4 ")
    assert rest == b"NOOP\r\n"
    data, _ = await read_in_pieces(stream, [4096], max_message_size=len(stream))
    assert data.refusal is None


async def test_read_data_the_connection_ending_first_is_none() -> None:
    data, _ = await read_in_pieces(b"Subject: x\r\n\r\nno end", [3])
    assert data is None


async def test_read_data_keeps_a_large_message_in_few_pieces() -> None:
    line = base64.b64encode(bytes(range(57))) + b"\r\n"
    body = b"Subject: big\r\n\r\n" + line * 100_000  # 7.8 MB
    data, _ = await read_in_pieces(body + b".\r\n", list(range(262144, len(body), 262144)))
    assert data.refusal is None
    assert joined(data) == body
    assert len(data.parts) < 2 * (len(body) // 262144 + 2)


@pytest.mark.parametrize("length", [2_000, 100_000])
async def test_a_too_long_command_line_is_refused_and_the_session_goes_on(
    relay_factory: Starter, length: int
) -> None:
    relay = await relay_factory()
    client = await RawClient.connect(relay.port)
    assert (await client.reply()).startswith("220")
    await client.cmd("EHLO scanner")
    answer = await client.cmd("MAIL FROM:<" + "a" * length + "@lab.test>")
    assert answer == "500 Command line too long"
    assert await client.cmd("NOOP") == "250 OK"
    await client.close()
    assert relay.queued == []


def test_the_fast_address_path_agrees_with_aiosmtpds_parser() -> None:
    import random

    from aiosmtpd.smtp import SMTP

    from relaywizard.relay.inbound import RelaySMTP

    reference, fast = SMTP.__new__(SMTP), RelaySMTP.__new__(RelaySMTP)
    plain = ["<a@b.c>", "<a@b.c> SIZE=100", " <a.b+c@d-e.f>\tBODY=8BITMIME", "<A@B.C>  ", "<x@y.z>tail"]
    odd = ["<a..b@c>", "<a@b.c>(comment) X", "<>", "<a@[1.2.3.4]>", '<"q u"@b.c>', "<@h:a@b.c>", "<a@-b.c>"]
    odd += ["<a.@b.c>", "<a@b..c>", "<ünï@b.c>", "a@b.c", "<a@b.c", "<a@b.c>>", "<a%b@c.d>", "<a@b@c.d>"]
    rng = random.Random(4)
    fuzz = [
        "".join(rng.choice('ab.@<>-_ \t()"+[]:,;%') for _ in range(rng.randint(1, 14))) for _ in range(4000)
    ]

    def part(characters: str, most: int) -> str:
        return "".join(rng.choice(characters) for _ in range(rng.randint(0, most)))

    # Near-plain paths, so both sides of the fast path's edge are tried.
    fuzz += [
        f"{part(' ', 1)}<{part('ab.-+_', 5)}{part('@', 2)}{part('ab.-', 5)}>{part(' (S=1', 4)}"
        for _ in range(4000)
    ]

    def outcome(parse: Callable[[str], object], arg: str) -> object:
        try:
            return parse(arg)
        except Exception:  # the email package's parser fails on some garbage: the relay says "malformed"
            return None, None

    for limit in (0, 3):
        reference.local_part_limit = fast.local_part_limit = limit
        for arg in plain + odd + fuzz:
            assert outcome(fast._getaddr, arg) == outcome(reference._getaddr, arg), arg
    used = [arg for arg in plain + fuzz if inbound_module._PLAIN_PATH.match(arg)]
    assert set(plain) <= set(used)
    assert len(used) > 100  # the fast path was really taken


@pytest.mark.parametrize("command", ["MAIL FROM:<", "MAIL FROM:\t<", 'MAIL FROM:-\t"_]"@'])
async def test_a_path_the_address_parser_chokes_on_is_a_malformed_address(
    relay_factory: Starter, command: str
) -> None:
    relay = await relay_factory()
    client = await RawClient.connect(relay.port)
    assert (await client.reply()).startswith("220 ")
    assert (await client.cmd("EHLO scanner")).startswith("250")
    assert (await client.cmd(command)).startswith("553 5.1.3")  # was a 451 "internal error"
    assert (await client.cmd("MAIL FROM:<scanner@lab.test>")).startswith("250 ")
    assert (await client.cmd("RCPT TO:<")).startswith("553 5.1.3")
    assert (await client.cmd("RCPT TO:<alice@lab.test>")).startswith("250 ")
    await client.close()


async def test_random_malformed_commands_get_ordinary_refusals_never_an_internal_error(
    relay_factory: Starter, caplog: pytest.LogCaptureFixture
) -> None:
    """A fuzz of command words and odd arguments (seeded): each is answered, never with the 451 for an
    internal error (aiosmtpd's address parser used to crash on some, such as 'MAIL FROM:<')."""
    import random

    relay = await relay_factory()
    rng = random.Random(7)
    verbs = [
        "EHLO ",
        "HELO ",
        "MAIL FROM:",
        "RCPT TO:",
        "MAIL FROM:<a@b.c> SIZE=",
        "RCPT TO:<alice@lab.test> ",
    ]
    verbs += [
        "MAIL FROM:<a@b.c> BODY=",
        "DATA",
        "RSET",
        "NOOP ",
        "VRFY ",
        "AUTH ",
        "AUTH PLAIN ",
        "BDAT ",
        "HELP ",
    ]
    characters = 'ab@<>.:;,()[]"\\%!= \t-_+/1'
    answers: list[str] = []
    for _ in range(150):
        client = await RawClient.connect(relay.port)
        assert (await client.reply()).startswith("220 ")
        assert (await client.cmd("EHLO fuzz")).startswith("250")
        for _ in range(rng.randint(1, 6)):
            start = rng.choice(["", "", "<", " <", "\t<", "<@"])
            line = (
                rng.choice(verbs) + start + "".join(rng.choice(characters) for _ in range(rng.randint(0, 12)))
            )
            answer = await client.cmd(line)
            answers.append(answer)
            assert not answer.startswith("451"), (line, answer)
            if answer.startswith("354"):
                assert (await client.cmd("x\r\n.")).startswith(("250", "5"))
        await client.close()
    assert len(answers) > 300
    assert not [r for r in caplog.records if "internal error" in r.getMessage()]


# -- bare LF normalized (for devices whose software ends lines with LF alone) ------------------------------

# The end of data is still only CRLF.CRLF (as with Postfix's "normalize"): the last line ends with CRLF.
LF_MESSAGE = b"Subject: lf\n\n..leading\n...\nend.\r\nmixed\r\n\nlast\r\n"
LF_STORED = b"Subject: lf\r\n\r\n.leading\r\n..\r\nend.\r\nmixed\r\n\r\nlast\r\n"


@pytest.mark.parametrize("cut", range(1, len(LF_MESSAGE) + 4))
async def test_normalized_bare_lf_gives_the_same_at_any_cut(cut: int) -> None:
    data, rest = await read_in_pieces(LF_MESSAGE + b".\r\nQUIT\r\n", [cut, cut + 5], bare_lf="normalize")
    assert data.refusal is None
    assert joined(data) == LF_STORED
    assert data.size == len(LF_STORED)
    assert rest == b"QUIT\r\n"


@pytest.mark.parametrize("separator", [*SMUGGLING.values(), b"\r\n.\r\r\n", b"\n.\r\r\n"])
@pytest.mark.parametrize("cut", [1, 5, 17, 18, 19, 20, 21, 22])
async def test_normalizing_bare_lf_never_ends_at_a_smuggled_end(separator: bytes, cut: int) -> None:
    stream = b"Subject: first\r\n\r\nHello" + separator + SMUGGLED + b".\r\nNOOP\r\n"
    data, rest = await read_in_pieces(stream, [cut], bare_lf="normalize")
    assert rest == b"NOOP\r\n"  # one message: what follows the separator is its content
    if b"\r" in separator.replace(b"\r\n", b""):
        assert str(data.refusal).startswith("550 5.6.0 ")  # a bare CR is still refused
    else:
        assert data.refusal is None
        stored = joined(data)
        assert stored.count(b"\n") == stored.count(b"\r\n")
        assert b"Pay the invoice." in stored  # kept as text of the one message, never a second one
        assert not stored.endswith(b"\r\n.\r\n")


async def test_normalizing_keeps_long_lines_of_lf_text_apart_and_limits_each() -> None:
    lines = b"".join(b"line %05d " % n + b"x" * 60 + b"\n" for n in range(20_000))  # 1.4 MB, LF only
    cuts = list(range(65536, len(lines), 65536))
    data, _ = await read_in_pieces(b"Subject: x\n\n" + lines + b"\r\n.\r\n", cuts, bare_lf="normalize")
    assert data.refusal is None
    assert joined(data) == b"Subject: x\r\n\r\n" + lines.replace(b"\n", b"\r\n") + b"\r\n"
    too_long = b"Subject: x\n\n" + b"y" * 1200 + b"\n\r\n.\r\n"
    data, _ = await read_in_pieces(too_long, [100], bare_lf="normalize")
    assert str(data.refusal).startswith("500 5.5.2 Line too long")


async def test_a_device_sending_bare_lf_is_refused_or_normalized_as_configured(
    relay_factory: Starter,
) -> None:
    for mode, expected in (("refuse", "550 5.6.0"), ("normalize", "250 ")):
        relay = await relay_factory(bare_lf=mode)
        client = await RawClient.connect(relay.port)
        await client.start_mail()
        assert (await client.cmd("DATA")).startswith("354")
        await client.send(b"Subject: scan\nFrom: scanner@lab.test\n\nPage 1\r\n")
        assert (await client.cmd(".")).startswith(expected)
        await client.close()
    [(_, content)] = await relay.messages()
    assert content.endswith(b"Subject: scan\r\nFrom: scanner@lab.test\r\n\r\nPage 1\r\n")
