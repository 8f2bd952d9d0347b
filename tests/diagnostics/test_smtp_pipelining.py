"""Fewer round trips, same findings: when the server offers PIPELINING (RFC 2920), MAIL FROM goes out in
one write with RCPT TO, and without ``send`` with the session's end (RSET, QUIT) too, every reply is read,
and the session is begun ahead of a run."""

from __future__ import annotations

import asyncio
import socket

import aiosmtplib
import pytest

from relaywizard.diagnostics.model import Status
from relaywizard.diagnostics.runner import DiagnosticsRun
from relaywizard.diagnostics.smtp_ahead import SessionAhead
from relaywizard.diagnostics.smtp_checks import SMTP_CHECKS
from relaywizard.diagnostics.smtp_net import ConnectFailure
from relaywizard.diagnostics.smtp_pipeline import send_pipelined
from tests.diagnostics.fake_smtp import HOST, Certificates, FakeSmtp, Script, StartPeer
from tests.diagnostics.test_smtp_checks import IDS, TO, NoDns, result, run, statuses, target_for

BY_ONE = ["reply-per-packet", "replies-in-one-packet"]

# -- the stages --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("coalesce", [False, True], ids=BY_ONE)
async def test_without_send_the_envelope_and_the_end_go_in_one_write(
    peer: StartPeer, certs: Certificates, coalesce: bool
) -> None:
    fake = await peer(coalesce_replies=coalesce)
    report = await run(target_for(fake, certs))
    assert statuses(report) == {**dict.fromkeys(IDS, "pass"), "smtp.data": "skip"}
    assert fake.writes()[-1] == ["MAIL", "RCPT", "RSET", "QUIT"]
    assert all(len(write) == 1 for write in fake.writes()[:-1])
    assert (
        result(report, "smtp.mail_from").summary == "Sender scanner@fake.test accepted: 250 2.1.0 Sender OK."
    )
    assert result(report, "smtp.rcpt_to").summary == f"Recipient {TO} accepted: 250 2.1.5 Recipient OK."
    assert (
        result(report, "smtp.data").summary
        == "Nothing sent (no --send): the session ended with RSET and QUIT."
    )


async def test_without_a_recipient_the_end_goes_with_mail_from(peer: StartPeer, certs: Certificates) -> None:
    fake = await peer()
    report = await run(target_for(fake, certs, rcpt_to=None))
    assert result(report, "smtp.mail_from").status is Status.PASS
    assert result(report, "smtp.rcpt_to").status is Status.SKIP
    assert "RSET and QUIT" in result(report, "smtp.data").summary
    assert fake.writes()[-1] == ["MAIL", "RSET", "QUIT"]


async def test_with_send_mail_and_rcpt_go_in_one_write(peer: StartPeer, certs: Certificates) -> None:
    fake = await peer()
    report = await run(target_for(fake, certs, send=True))
    assert statuses(report) == dict.fromkeys(IDS, "pass")
    assert fake.writes()[-3:] == [["MAIL", "RCPT"], ["DATA"], ["QUIT"]]
    assert len(fake.messages) == 1


async def test_a_refused_recipient_with_send_ends_with_rset_and_quit_in_one_write(
    peer: StartPeer, certs: Certificates
) -> None:
    fake = await peer(rcpt_replies={TO: "550 5.4.1 Recipient address rejected: Access denied"})
    report = await run(target_for(fake, certs, send=True))
    assert result(report, "smtp.rcpt_to").code == "5.4.1"
    assert result(report, "smtp.data").blocked_by == "smtp.rcpt_to"
    assert fake.writes()[-2:] == [["MAIL", "RCPT"], ["RSET", "QUIT"]]


async def test_without_pipelining_every_command_goes_alone(peer: StartPeer, certs: Certificates) -> None:
    fake = await peer(pipelining=False)
    report = await run(target_for(fake, certs))
    assert statuses(report) == {**dict.fromkeys(IDS, "pass"), "smtp.data": "skip"}
    assert [verb for (verb,) in fake.writes()][-4:] == ["MAIL", "RCPT", "RSET", "QUIT"]
    assert "RSET and QUIT" in result(report, "smtp.data").summary


async def test_a_refused_recipient_pipelined_is_reported_by_rcpt_to(
    peer: StartPeer, certs: Certificates
) -> None:
    fake = await peer(rcpt_replies={TO: "550 5.4.1 Recipient address rejected: Access denied"})
    report = await run(target_for(fake, certs))
    assert result(report, "smtp.mail_from").status is Status.PASS
    rcpt = result(report, "smtp.rcpt_to")
    assert rcpt.status is Status.FAIL
    assert rcpt.code == "5.4.1"
    assert result(report, "smtp.data").blocked_by == "smtp.rcpt_to"
    assert fake.writes()[-1] == ["MAIL", "RCPT", "RSET", "QUIT"]


@pytest.mark.parametrize("coalesce", [False, True], ids=BY_ONE)
@pytest.mark.parametrize("send", [False, True], ids=["without-send", "with-send"])
async def test_a_refused_sender_with_its_recipient_pipelined_keeps_the_session_in_step(
    peer: StartPeer, certs: Certificates, coalesce: bool, send: bool
) -> None:
    sender = "printer@fake.test"
    fake = await peer(
        coalesce_replies=coalesce,
        mail_replies={sender: "550 5.7.60 SMTP; Client does not have permissions to send as this sender"},
    )
    report = await run(target_for(fake, certs, mail_from=sender, send=send))
    mail_from = result(report, "smtp.mail_from")
    assert mail_from.status is Status.FAIL
    assert mail_from.code == "5.7.60"
    assert "Add-RecipientPermission" in mail_from.fix
    assert result(report, "smtp.rcpt_to").blocked_by == "smtp.mail_from"
    assert result(report, "smtp.data").blocked_by == "smtp.rcpt_to"
    # RCPT TO went out with MAIL FROM (and was answered 503); QUIT after it still got its own reply.
    expected = [["MAIL", "RCPT"], ["QUIT"]] if send else [["MAIL", "RCPT", "RSET", "QUIT"]]
    assert fake.writes()[-len(expected) :] == expected


async def test_a_recipient_reply_that_never_comes_fails_rcpt_to_not_mail_from(
    peer: StartPeer, certs: Certificates
) -> None:
    fake = await peer(hang_at="RCPT")
    report = await run(target_for(fake, certs, timeout=0.5))
    assert result(report, "smtp.mail_from").status is Status.PASS
    rcpt = result(report, "smtp.rcpt_to")
    assert rcpt.status is Status.FAIL
    assert "did not answer within 0.5 seconds" in rcpt.summary


# -- the pipeline itself -----------------------------------------------------------------------------------


async def _client(fake: FakeSmtp) -> aiosmtplib.SMTP:
    smtp = aiosmtplib.SMTP(hostname=HOST, port=fake.port, start_tls=False, timeout=1)
    await smtp.connect()
    await smtp.ehlo()
    return smtp


@pytest.mark.parametrize("coalesce", [False, True], ids=BY_ONE)
async def test_every_reply_is_read_and_the_next_command_gets_its_own(coalesce: bool) -> None:
    script = Script(
        starttls=False, coalesce_replies=coalesce, mail_replies={"refused@fake.test": "550 5.7.1 Refused"}
    )
    fake = await FakeSmtp(script).start()
    try:
        smtp = await _client(fake)
        replies = await send_pipelined(smtp, [b"MAIL FROM:<refused@fake.test>", b"RCPT TO:<a@fake.test>"], 1)
        assert await replies.reply_to(b"RCPT") == (503, "5.5.1 Error: need MAIL command")
        assert (await replies.reply_to(b"MAIL")).code == 550
        assert await smtp.execute_command(b"NOOP") == (250, "2.0.0 OK")
        replies = await send_pipelined(smtp, [b"RSET", b"QUIT"], 1)
        assert await replies.reply_to(b"RSET") == (250, "2.0.0 Resetting")
        assert (await replies.reply_to(b"QUIT")).code == 221
        assert fake.writes() == [["EHLO"], ["MAIL", "RCPT"], ["NOOP"], ["RSET", "QUIT"]]
        smtp.close()
    finally:
        await fake.close()


async def test_an_unread_reply_is_still_taken_off_the_connection() -> None:
    fake = await FakeSmtp(Script(starttls=False)).start()
    try:
        smtp = await _client(fake)
        replies = await send_pipelined(smtp, [b"MAIL FROM:<a@fake.test>", b"RCPT TO:<b@fake.test>"], 1)
        assert (await replies.reply_to(b"MAIL")).code == 250
        # Nobody reads the RCPT TO reply; the next command still gets its own.
        assert await smtp.execute_command(b"RSET") == (250, "2.0.0 Resetting")
        smtp.close()
    finally:
        await fake.close()


async def test_a_reply_that_never_comes_times_out_and_closes_the_connection() -> None:
    fake = await FakeSmtp(Script(starttls=False, hang_at="RCPT")).start()
    try:
        smtp = await _client(fake)
        replies = await send_pipelined(smtp, [b"MAIL FROM:<a@fake.test>", b"RCPT TO:<b@fake.test>"], 0.3)
        assert (await replies.reply_to(b"MAIL")).code == 250
        with pytest.raises(aiosmtplib.SMTPReadTimeoutError):
            await asyncio.wait_for(replies.reply_to(b"RCPT"), 2)
        assert not smtp.is_connected
    finally:
        await fake.close()


async def test_a_connection_lost_mid_pipeline_is_a_disconnect() -> None:
    fake = await FakeSmtp(Script(starttls=False, close_at="RCPT")).start()
    try:
        smtp = await _client(fake)
        replies = await send_pipelined(smtp, [b"MAIL FROM:<a@fake.test>", b"RCPT TO:<b@fake.test>"], 1)
        assert (await replies.reply_to(b"MAIL")).code == 250
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await replies.reply_to(b"RCPT")
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await smtp.execute_command(b"NOOP")
    finally:
        await fake.close()


async def test_control_characters_are_refused_before_anything_is_written() -> None:
    fake = await FakeSmtp(Script(starttls=False)).start()
    try:
        smtp = await _client(fake)
        with pytest.raises(ValueError, match="control character"):
            await send_pipelined(smtp, [b"MAIL FROM:<a@fake.test>", b"RCPT TO:<b@fake.test>\r\nDATA"], 1)
        assert await smtp.execute_command(b"NOOP") == (250, "2.0.0 OK")
        assert fake.writes() == [["EHLO"], ["NOOP"]]
        smtp.close()
    finally:
        await fake.close()


# -- the session begun ahead ---------------------------------------------------------------------------------


async def test_a_session_begun_ahead_is_the_one_the_stages_use(peer: StartPeer, certs: Certificates) -> None:
    fake = await peer()
    target = target_for(fake, certs)
    ahead = SessionAhead(target)
    shared = {SessionAhead.SHARED_KEY: ahead}
    report = await DiagnosticsRun(target, [cls() for cls in SMTP_CHECKS], NoDns(), shared).run()
    ahead.discard()
    assert statuses(report) == {**dict.fromkeys(IDS, "pass"), "smtp.data": "skip"}
    assert fake.sessions == 1


async def test_a_session_begun_ahead_for_another_target_is_not_used(
    peer: StartPeer, certs: Certificates
) -> None:
    used, other = await peer(), await peer()
    ahead = SessionAhead(target_for(other, certs))
    shared = {SessionAhead.SHARED_KEY: ahead}
    target = target_for(used, certs)
    report = await DiagnosticsRun(target, [cls() for cls in SMTP_CHECKS], NoDns(), shared).run()
    assert result(report, "smtp.connect").data["port"] == used.port
    assert used.sessions == 1
    await asyncio.sleep(0.05)
    ahead.discard()  # the socket nobody took is closed
    for _ in range(50):
        if other.disconnects:
            break
        await asyncio.sleep(0.02)
    assert other.disconnects == 1


async def test_a_connection_refused_ahead_fails_connect_as_usual(certs: Certificates) -> None:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    target = target_for(port, certs)
    ahead = SessionAhead(target)
    shared = {SessionAhead.SHARED_KEY: ahead}
    report = await DiagnosticsRun(target, [cls() for cls in SMTP_CHECKS], NoDns(), shared).run()
    ahead.discard()
    connect = result(report, "smtp.connect")
    assert connect.status is Status.FAIL
    assert connect.data["error"] == "refused"
    with pytest.raises(ConnectFailure):
        await ahead.connection
