"""Messages too large for sendMail, sent through Graph as a draft with attachments (graph_large, graph_draft).

Against the fake Graph (tests/lab/graph.py), which checks requests as Graph does (4 MB per request,
attachments under 3 MB by POST and larger ones by upload session, upload ranges in order and in 320 KiB
multiples, no Authorization on the upload URL) and keeps what was sent, so the delivered bytes can be
compared with the scanner's.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import random
import tracemalloc
from collections.abc import AsyncIterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from relaywizard.relay.graph import GraphTransaction, graph_mime, request_size
from relaywizard.relay.graph_draft import LargeMessage
from relaywizard.relay.graph_errors import MAX_REQUEST_BYTES, Step
from relaywizard.relay.graph_large import LARGE_ATTACHMENT, UPLOAD_CHUNK, send_large
from relaywizard.relay.spool import ContentChunks
from relaywizard.relay.upstream_session import AuthFailed, UpstreamUnavailable
from tests.lab.graph import (
    ALICE,
    BOB,
    DROP,
    MAILBOX,
    TOKEN,
    Attached,
    FakeGraph,
    Reply,
    Sleeps,
    Tokens,
    error,
    graph_fixture,  # noqa: F401  (the fixture ``graph``)
    send_one,
    session_for,
    throttled,
)

CAROL = "carol@contoso.example"
KIB = 1024
MB = 1024 * 1024


# -- building messages as devices send them ---------------------------------------------------------------


def pdf(size: int, seed: int = 1) -> bytes:
    """``size`` bytes that look like a PDF and do not compress: what a scanner attaches."""
    return (b"%PDF-1.4\n" + random.Random(seed).randbytes(size))[:size]


def b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def leaf(content_type: str, body: bytes, *fields: str, encoding: str = "base64") -> bytes:
    header = "".join(f"{field}\r\n" for field in (f"Content-Type: {content_type}", *fields))
    header += f"Content-Transfer-Encoding: {encoding}\r\n"
    return header.encode() + b"\r\n" + (b64(body) if encoding == "base64" else body)


def file(name: str, content_type: str, data: bytes, *fields: str) -> bytes:
    return leaf(
        f'{content_type}; name="{name}"', data, f'Content-Disposition: attachment; filename="{name}"', *fields
    )


def text(body: str, subtype: str = "plain") -> bytes:
    return leaf(f"text/{subtype}; charset=utf-8", body.encode(), encoding="8bit")


def multipart(subtype: str, *parts: bytes) -> bytes:
    delimiter = f"--=_{subtype}_{len(parts)}".encode()
    lines = [f'Content-Type: multipart/{subtype}; boundary="{delimiter[2:].decode()}"'.encode(), b""]
    lines.append(b"This is a multi-part message in MIME format.")
    for part in parts:
        lines += [delimiter, part]
    return b"\r\n".join([*lines, delimiter + b"--", b""])


def scan(entity: bytes) -> bytes:
    """A message as the scanner sends it: its header, then ``entity`` (a part with its own header)."""
    return (
        f"From: Scanner <{MAILBOX}>\r\nTo: {ALICE}\r\nSubject: Scan from MFP-3F\r\n"
        "Message-ID: <scan-1@mfp.office.example>\r\nMIME-Version: 1.0\r\n"
    ).encode() + entity


def pdf_scan(size: int, body: str = "Scanned 12 pages.") -> tuple[bytes, bytes]:
    data = pdf(size)
    return scan(multipart("mixed", text(body), file("scan.pdf", "application/pdf", data))), data


async def deliver(graph: FakeGraph, message: bytes, rcpts: list[str] | None = None, **kwargs: Any) -> Any:
    return await send_one(session_for(graph, **kwargs), message, rcpts)


def uploads(graph: FakeGraph) -> list[dict[str, str]]:
    return [r.headers for r in graph.requests if r.route == "upload"]


# -- delivered ----------------------------------------------------------------------------------------------


async def test_a_10_mb_scan_is_delivered_with_the_exact_attachment_bytes(graph: FakeGraph) -> None:
    message, data = pdf_scan(10 * MB)
    result = await deliver(graph, message, [ALICE])
    assert result.ok
    assert result.code == 250
    assert result.accepted == [ALICE]
    assert [route for route, _ in graph.routes()] == ["draft", "uploadSession", *["upload"] * 3, "send"]
    assert graph.sent == []  # not a byte of it went to sendMail
    [sent] = graph.messages
    assert sent.upn == MAILBOX
    draft = sent.message
    assert draft["subject"] == "Scan from MFP-3F"
    assert draft["body"] == {"contentType": "text", "content": "Scanned 12 pages."}
    assert draft["toRecipients"] == [{"emailAddress": {"address": ALICE}}]
    assert draft["from"] == {"emailAddress": {"name": "Scanner", "address": MAILBOX}}
    assert draft["internetMessageId"] == "<scan-1@mfp.office.example>"
    [attached] = sent.attachments
    assert attached == Attached("scan.pdf", "application/pdf", data, False, None, uploaded=True)
    assert graph.drafts == {}
    # the documented upload: no Authorization, ranges in order, 320 KiB multiples but the last
    ranges = [h["Content-Range"] for h in uploads(graph)]
    assert ranges == [
        f"bytes 0-{UPLOAD_CHUNK - 1}/{10 * MB}",
        f"bytes {UPLOAD_CHUNK}-{2 * UPLOAD_CHUNK - 1}/{10 * MB}",
        f"bytes {2 * UPLOAD_CHUNK}-{10 * MB - 1}/{10 * MB}",
    ]
    assert UPLOAD_CHUNK % (320 * KIB) == 0
    assert UPLOAD_CHUNK < 4 * MB
    assert all("Authorization" not in headers for headers in uploads(graph))
    assert {headers["Content-Type"] for headers in uploads(graph)} == {"application/octet-stream"}
    graph_requests = [r for r in graph.requests if r.route != "upload"]
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in graph_requests)
    assert all(len(r.body) <= MAX_REQUEST_BYTES for r in graph_requests)


async def test_small_and_large_attachments_and_inline_images_arrive_as_sent(graph: FakeGraph) -> None:
    logo, photo = pdf(20 * KIB, seed=2), pdf(3 * MB + 5, seed=3)  # inline images: a small one, a large one
    report, notes, drawing = (
        pdf(4 * MB + 1, seed=4),
        b"meeting notes\r\n" * 500,
        pdf(LARGE_ATTACHMENT - 1, seed=5),
    )
    html = '<p>Hello</p><img src="cid:logo@mfp"><img src="CID:photo@mfp">'
    message = scan(
        multipart(
            "mixed",
            multipart(
                "alternative",
                text("Hello"),
                multipart(
                    "related",
                    text(html, "html"),
                    leaf("image/png", logo, "Content-ID: <logo@mfp>", "Content-Disposition: inline"),
                    leaf("image/jpeg", photo, "Content-ID: <photo@mfp>"),
                ),
            ),
            file("report.pdf", "application/pdf", report),
            file("notes.txt", "text/plain", notes),
            file("drawing.pdf", "application/pdf", drawing),
            leaf("image/gif", b"GIF89a", "Content-ID: <unused@mfp>"),  # not in the HTML: a plain attachment
        )
    )
    result = await deliver(graph, message)
    assert result.ok
    [sent] = graph.messages
    assert sent.message["body"] == {
        "contentType": "html",
        "content": html,
    }  # the text/plain alternative: gone
    assert [(a.name, a.content_type, a.is_inline, a.content_id, a.uploaded) for a in sent.attachments] == [
        ("attachment3.png", "image/png", True, "logo@mfp", False),
        ("attachment4.jpg", "image/jpeg", True, "photo@mfp", True),
        ("report.pdf", "application/pdf", False, None, True),
        ("notes.txt", "text/plain", False, None, False),
        ("drawing.pdf", "application/pdf", False, None, False),
        ("attachment8.gif", "image/gif", False, None, False),
    ]
    assert [a.data for a in sent.attachments] == [logo, photo, report, notes, drawing, b"GIF89a"]
    assert graph.drafts == {}


@pytest.mark.parametrize(
    ("size", "routes"),
    [
        (3 * MB, ["sendMail"]),  # 3 MiB of message: exactly 4 MiB once in base64, still sendMail
        (3 * MB + 1, ["draft", "send"]),  # one byte more: the draft way
    ],
)
async def test_the_4_mb_request_limit_decides_between_sendmail_and_a_draft(
    graph: FakeGraph, size: int, routes: list[str]
) -> None:
    head = scan(text("Scanned page."))
    message = head + b"x" * (size - len(head) - 2) + b"\r\n"
    assert len(message) == size
    assert len(graph_mime([message], [ALICE])) == size
    assert (request_size(size) > MAX_REQUEST_BYTES) == (routes != ["sendMail"])
    assert (await deliver(graph, message)).ok
    assert [route for route, _ in graph.routes()] == routes


async def test_attachments_under_3_mb_are_posted_and_from_3_mb_uploaded(graph: FakeGraph) -> None:
    under, at = pdf(LARGE_ATTACHMENT - 1, seed=6), pdf(LARGE_ATTACHMENT, seed=7)
    files = [file("a.pdf", "application/pdf", under), file("b.pdf", "application/pdf", at)]
    assert (await deliver(graph, scan(multipart("mixed", text("two"), *files)))).ok
    assert graph.routes() == [  # 3,000,000 bytes are one upload range: the only PUT is the last (201)
        ("draft", 201), ("attachment", 201), ("uploadSession", 201), ("upload", 201), ("send", 202),
    ]  # fmt: skip
    posted = next(r for r in graph.requests if r.route == "attachment")
    assert len(posted.body) < MAX_REQUEST_BYTES  # the base64 of 2,999,999 bytes and its JSON fit in 4 MB
    assert [(a.data, a.uploaded) for a in graph.messages[0].attachments] == [(under, False), (at, True)]


async def test_recipients_are_the_envelopes_as_graph_mime_chooses_them(graph: FakeGraph) -> None:
    message, _ = pdf_scan(4 * MB)
    header = f'To: "Alice A." <{ALICE}>, eve@contoso.example\r\nCc: {BOB}\r\nBcc: mallory@contoso.example\r\n'
    message = message.replace(f"To: {ALICE}\r\n".encode(), header.encode())
    rcpts = [ALICE, BOB, CAROL, "DAVE@contoso.example", "carol@CONTOSO.example"]
    assert (await deliver(graph, message, rcpts)).ok
    draft = graph.messages[0].message
    assert draft["toRecipients"] == [{"emailAddress": {"name": "Alice A.", "address": ALICE}}]
    assert draft["ccRecipients"] == [{"emailAddress": {"address": BOB}}]
    assert draft["bccRecipients"] == [
        {"emailAddress": {"address": CAROL}},
        {"emailAddress": {"address": "DAVE@contoso.example"}},
    ]
    # exactly what sendMail's MIME would have said
    mime = graph_mime([message], rcpts).split(b"\r\n\r\n", 1)[0].decode()
    assert 'To: "Alice A." <alice@contoso.example>\r\n' in mime
    assert f"Cc: {BOB}\r\n" in mime
    assert f"Bcc: {CAROL},\r\n DAVE@contoso.example" in mime


def with_header(message: bytes, fields: bytes) -> bytes:
    return message.replace(b"MIME-Version: 1.0\r\n", b"MIME-Version: 1.0\r\n" + fields)


async def test_the_header_keeps_what_graph_allows(graph: FakeGraph) -> None:
    message, _ = pdf_scan(4 * MB, body="Grüße vom Scanner")
    message = with_header(
        message,
        b"Reply-To: Printer Room <printer@office.example>\r\nImportance: High\r\nX-Scanner-Job: 4711\r\n"
        b"X-Folded: one\r\n two\r\nX-Encoded: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nX-Raw: Gr\xc3\xbc\xc3\x9fe\r\n"
        b"X-MS-Exchange-Organization-SCL: -1\r\nReferences: <a@b>\r\n",
    )
    message = message.replace(
        b"Subject: Scan from MFP-3F", b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus Raum 3"
    )
    message = message.replace(f"To: {ALICE}".encode(), f"To: J\u00fcrgen <{ALICE}>".encode())  # raw UTF-8
    assert (await deliver(graph, message)).ok
    draft = graph.messages[0].message
    assert draft["subject"] == "Grüße aus Raum 3"
    assert draft["body"]["content"] == "Grüße vom Scanner"
    assert draft["toRecipients"] == [{"emailAddress": {"name": "Jürgen", "address": ALICE}}]
    assert draft["replyTo"] == [
        {"emailAddress": {"name": "Printer Room", "address": "printer@office.example"}}
    ]
    assert draft["importance"] == "high"
    assert draft["internetMessageId"] == "<scan-1@mfp.office.example>"
    assert draft["internetMessageHeaders"] == [
        {"name": "X-Scanner-Job", "value": "4711"},
        {"name": "X-Folded", "value": "one two"},
        {"name": "X-Encoded", "value": "=?utf-8?q?Gr=C3=BC=C3=9Fe?="},
    ]  # 8-bit values, Exchange's own X-MS-Exchange- fields and References (not an X- field) are left out


async def test_a_draft_refused_for_its_header_goes_without_it(graph: FakeGraph) -> None:
    graph.answer_on(
        "draft", error(400, "ErrorInvalidInternetMessageId", "The Internet message ID is invalid.")
    )
    message, data = pdf_scan(4 * MB)
    assert (await deliver(graph, with_header(message, b"X-Scanner-Job: 4711\r\n"))).ok
    first, second = [json.loads(r.body) for r in graph.requests if r.route == "draft"]
    assert first["internetMessageId"] == "<scan-1@mfp.office.example>"
    assert first["internetMessageHeaders"] == [{"name": "X-Scanner-Job", "value": "4711"}]
    assert "internetMessageId" not in second
    assert "internetMessageHeaders" not in second
    assert graph.messages[0].attachments[0].data == data


# -- Graph's answers on the way -----------------------------------------------------------------------------


async def test_429_on_an_upload_and_on_send_is_waited_out(graph: FakeGraph) -> None:
    graph.answer_on("upload", throttled("3"))
    graph.answer_on("send", throttled("2"))
    sleeps = Sleeps()
    message, data = pdf_scan(5 * MB)
    result = await deliver(graph, message, sleep=sleeps)
    assert result.ok
    assert sleeps == [3.0, 2.0]
    assert graph.routes() == [
        ("draft", 201), ("uploadSession", 201), ("upload", 429), ("upload", 200), ("upload", 201),
        ("send", 429), ("send", 202),
    ]  # fmt: skip
    assert graph.messages[0].attachments[0].data == data


async def test_a_long_429_on_an_upload_defers_and_leaves_no_draft(graph: FakeGraph) -> None:
    graph.answer_on("upload", throttled("120"))
    sleeps = Sleeps()
    message, _ = pdf_scan(5 * MB)
    result = await deliver(graph, message, sleep=sleeps)
    assert isinstance(result, GraphTransaction)
    assert result.code == 451
    assert result.retry_after == 120.0
    assert result.reply.startswith("451 4.3.2 Graph is throttling the mailbox")
    assert sleeps == []
    assert [route for route, _ in graph.routes()][-2:] == ["upload", "delete"]
    assert graph.drafts == {}
    assert graph.messages == []


async def test_a_long_429_on_send_defers_and_leaves_no_draft(graph: FakeGraph) -> None:
    graph.answer_on("send", throttled("30"))
    result = await deliver(graph, pdf_scan(4 * MB)[0])
    assert result.code == 451
    assert result.retry_after == 30.0
    assert graph.routes()[-2:] == [("send", 429), ("delete", 204)]
    assert graph.drafts == {}


async def test_a_401_midway_refreshes_the_token_once_and_goes_on(graph: FakeGraph) -> None:
    graph.answer_on("uploadSession", error(401, "InvalidAuthenticationToken", "Lifetime validation failed."))
    tokens = Tokens(TOKEN, "fresh-token")
    message, data = pdf_scan(4 * MB)
    result = await deliver(graph, message, tokens=tokens)
    assert result.ok
    assert tokens.rejections == 1
    seen = [(r.route, r.headers.get("Authorization")) for r in graph.requests]
    assert seen == [
        ("draft", f"Bearer {TOKEN}"),
        ("uploadSession", f"Bearer {TOKEN}"),
        ("uploadSession", "Bearer fresh-token"),
        ("upload", None),
        ("upload", None),
        ("send", "Bearer fresh-token"),
    ]
    assert graph.messages[0].attachments[0].data == data


async def test_a_second_401_is_an_auth_failure_and_the_draft_is_deleted(graph: FakeGraph) -> None:
    unauthorized = error(401, "InvalidAuthenticationToken", "Access token validation failure.")
    graph.answer_on("attachment", unauthorized, unauthorized)
    session = session_for(graph)
    await session.ready()
    two = [file(f"{n}.pdf", "application/pdf", pdf(2 * MB, seed=n)) for n in (1, 2)]  # posted, not uploaded
    message = scan(multipart("mixed", text("x"), *two))
    with pytest.raises(AuthFailed) as failed:
        await session.send(MAILBOX, [ALICE], [message])
    await session.close()
    assert "refused the relay's token" in failed.value.text
    assert TOKEN not in str(failed.value) + (failed.value.reply or "")
    assert graph.routes()[-1] == ("delete", 204)
    assert graph.drafts == {}


async def test_a_dropped_connection_mid_upload_leaves_no_draft(graph: FakeGraph) -> None:
    graph.answer_on("upload", DROP)
    session = session_for(graph)
    await session.ready()
    with pytest.raises(UpstreamUnavailable) as down:
        await session.send(MAILBOX, [ALICE], [pdf_scan(5 * MB)[0]])
    await session.close()
    assert down.value.text.startswith("Cannot talk to Microsoft Graph (127.0.0.1:")
    assert graph.routes()[-1] == ("delete", 204)  # through a client of its own: the session's was dropped
    assert graph.drafts == {}


async def test_a_range_graph_will_not_take_defers_the_message_and_leaves_no_draft(graph: FakeGraph) -> None:
    # A range resent after a 5xx that Graph had in fact stored may be answered 416: try again later, whole.
    graph.answer_on("upload", error(416, "InvalidRange", "The uploaded fragment overlaps a previous one."))
    result = await deliver(graph, pdf_scan(5 * MB)[0])
    assert result.code == 451
    assert result.reply.startswith("451 4.4.7 Graph's upload session did not take a range")
    assert graph.drafts == {}


async def test_over_the_mailboxs_size_limit_is_dead_and_leaves_no_draft(graph: FakeGraph) -> None:
    graph.answer_on(
        "uploadSession",
        error(400, "ErrorMessageSizeExceeded", "The message exceeds the maximum supported size."),
    )
    result = await deliver(graph, pdf_scan(4 * MB)[0])
    assert result.code == 552
    assert result.reply.startswith(f"552 5.3.4 The message is larger than {MAILBOX} may send (HTTP 400")
    assert "35 MB" in result.reply
    assert graph.drafts == {}


async def test_without_mail_readwrite_the_message_stays_queued_and_says_why(graph: FakeGraph) -> None:
    graph.answer_on(
        "draft", error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
    )
    session = session_for(graph)
    assert await session.ready() is True
    result = await session.send(MAILBOX, [ALICE], [pdf_scan(4 * MB)[0]])  # no AuthFailed: small ones still go
    assert result.code == 451
    assert "Mail.ReadWrite" in result.reply
    assert (await session.send(MAILBOX, [ALICE], [scan(text("small"))])).ok
    await session.close()
    assert graph.drafts == {}


async def test_an_expired_upload_url_defers_the_message(graph: FakeGraph) -> None:
    graph.answer_on("upload", error(401, "InvalidAuthenticationToken", "The token has expired."))
    tokens = Tokens()
    result = await deliver(graph, pdf_scan(4 * MB)[0], tokens=tokens)
    assert result.code == 451
    assert result.reply.startswith("451 4.4.7 Graph's upload session for an attachment ended")
    assert tokens.rejections == 0  # the relay's token has nothing to do with the upload URL's
    assert graph.drafts == {}


async def test_a_message_over_150_mb_is_refused_in_one_sentence(graph: FakeGraph) -> None:
    block = memoryview(bytes(MB))
    content = [memoryview(scan(text("huge")))] + [block] * 150  # 150 MiB and a little, one buffer reused
    session = session_for(graph)
    await session.ready()
    result = await session.send(MAILBOX, [ALICE], content)
    await session.close()
    size = sum(len(part) for part in content)
    assert result.code == 552
    assert result.reply == (
        f"552 5.3.4 The message is {size} bytes, more than the 150 MB Microsoft Graph takes for one message, "
        "so it cannot be sent through Graph"
    )
    assert graph.requests == []


async def test_a_cancelled_send_deletes_its_draft(graph: FakeGraph) -> None:
    stuck = asyncio.Event()

    async def sleep(seconds: float) -> None:
        stuck.set()
        await asyncio.Event().wait()  # a Retry-After the forwarder's stop interrupts

    graph.answer_on("upload", throttled("5"))
    session = session_for(graph, sleep=sleep)
    await session.ready()
    task = asyncio.create_task(session.send(MAILBOX, [ALICE], [pdf_scan(4 * MB)[0]]))
    await stuck.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    session.abort()
    await session.close()  # waits for the draft's deletion
    assert graph.routes()[-1] == ("delete", 204)
    assert graph.drafts == {}


async def test_no_token_or_upload_url_in_a_reply_or_the_log(
    graph: FakeGraph, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    graph.answer_on("upload", error(500, "InternalServerError", "boom", (("Retry-After", "99"),)))
    graph.answer_on("delete", error(503, "ServiceUnavailable", "down"))
    result = await deliver(graph, pdf_scan(4 * MB)[0])
    assert result.code == 451
    upload_url = next(r.path for r in graph.requests if r.route == "upload")
    authtoken = upload_url.split("authtoken=")[1]
    assert "stays in the Drafts folder of scanner@contoso.example" in caplog.text  # the delete failed
    for secret in (TOKEN, authtoken):
        assert secret not in caplog.text + result.reply + repr(result)


# -- memory -------------------------------------------------------------------------------------------------


class Recorder:
    """A ``graph_large.Session`` that answers as Graph would, without a network, keeping nothing."""

    mailbox = MAILBOX
    base_url = "https://graph.example/v1.0"
    max_request_bytes = MAX_REQUEST_BYTES

    def __init__(self) -> None:
        self.uploaded = 0

    async def call(
        self,
        method: str,
        url: str,
        *,
        content: bytes | AsyncIterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        authorized: bool = True,
    ) -> httpx.Response:
        if method == "PUT":
            assert isinstance(content, AsyncIterable)  # a slice of the attachment, not a copy
            async for piece in content:
                self.uploaded += len(piece)
            return httpx.Response(200, json={})
        if url.endswith("/send"):
            return httpx.Response(202)
        if url.endswith("/createUploadSession"):
            return httpx.Response(201, json={"uploadUrl": "https://outlook.example/upload?authtoken=x"})
        return httpx.Response(201, json={"id": "draft"})

    def conclude(
        self, response: httpx.Response, recipients: Sequence[str], step: Step | None = None
    ) -> GraphTransaction:
        return GraphTransaction("data", 250 if response.status_code == 202 else 554, str(step))

    async def discard(self, url: str) -> None:
        raise AssertionError("nothing failed")

    def discard_later(self, url: str) -> None:
        raise AssertionError("nothing failed")


async def test_a_35_mb_scan_from_the_spool_costs_under_three_times_its_size(tmp_path: Path) -> None:
    message, data = pdf_scan(25 * MB)  # 25 MB of PDF: a 35 MB message once in base64
    path = tmp_path / "message"
    path.write_bytes(message)
    del message
    chunks = ContentChunks.scan(path)
    size = chunks.nbytes
    assert size > 34 * MB
    recorder = Recorder()
    tracemalloc.start()
    try:
        result = await send_large(recorder, chunks, [ALICE])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.code == 250
    assert recorder.uploaded == len(data)
    assert peak < 2.5 * size  # the message once, its attachment decoded once, one upload range at a time


def test_a_sloppy_multipart_still_yields_its_parts() -> None:
    """Bare LF line ends, a padded delimiter, a line that only starts like one, no closing delimiter."""
    message = (
        b"From: s@contoso.example\nTo: a@contoso.example\nSubject: x\n"
        b'Content-Type: multipart/mixed; boundary="b"\n\npreamble\n--b  \n'
        b"Content-Type: text/plain\n\nbody text\n--bb is not a delimiter\n--b\n"
        b"Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n" + base64.encodebytes(b"%PDF")
    )
    parsed = LargeMessage.parse(bytearray(message), ["a@contoso.example"])
    assert parsed.draft["body"] == {"contentType": "text", "content": "body text\n--bb is not a delimiter"}
    [attachment] = parsed.attachments
    assert (attachment.name, attachment.content_type) == ("attachment2.pdf", "application/pdf")
    assert attachment.decode() == b"%PDF"


# -- found in review: messages devices really send, and what must never happen ------------------------------


def parsed(message: bytes) -> LargeMessage:
    return LargeMessage.parse(bytearray(message), [ALICE])


def test_raw_8_bit_header_text_reads_as_utf_8() -> None:
    """Devices send subjects and file names in raw UTF-8 (Exchange reads them so); an 8-bit byte that is
    not UTF-8, an RFC 2231 value with raw bytes or a charset no codec has may not stop the message."""
    message = scan(
        multipart(
            "mixed",
            leaf("text/plain; charset=a\0b", b"text under a charset no codec has", encoding="8bit"),
            file("Gr\u00fc\u00dfe.pdf", "application/pdf", b"%PDF-1"),
            leaf(
                "application/pdf", b"%PDF-2", "Content-Disposition: attachment; filename*=utf-8''\u00e4.pdf"
            ),
        )
    ).replace(b"Subject: Scan from MFP-3F", "Subject: Scan f\u00fcr J\u00fcrgen".encode())
    message = with_header(message, b"Reply-To: Empfang <empfang-\xfc@office.example>\r\n")  # Latin-1
    draft = parsed(message)
    assert draft.draft["subject"] == "Scan f\u00fcr J\u00fcrgen"
    assert draft.draft["body"]["content"] == "text under a charset no codec has"
    assert [(a.name, a.decode()) for a in draft.attachments] == [
        ("Gr\u00fc\u00dfe.pdf", b"%PDF-1"),
        ("\u00e4.pdf", b"%PDF-2"),
    ]
    created = json.loads(draft.draft_request(MAX_REQUEST_BYTES))
    assert created["replyTo"] == [
        {"emailAddress": {"name": "Empfang", "address": "empfang-\ufffd@office.example"}}
    ]
    assert json.loads(draft.attachments[0].file_attachment(b"%PDF-1"))["name"] == "Gr\u00fc\u00dfe.pdf"


def test_a_part_whose_header_runs_into_its_body_keeps_its_body() -> None:
    """No empty line after a part's header (the body starts at the first line that is not a field), and a
    stray line inside the message's header (left out: the fields after it still count)."""
    data = pdf(5000)
    part = b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n" + b64(data)
    message = scan(multipart("mixed", text("Scanned."), part)).replace(
        b"MIME-Version: 1.0\r\n", b"MIME-Version: 1.0\r\nthis line is no field\r\n"
    )
    draft = parsed(message)
    assert draft.draft["subject"] == "Scan from MFP-3F"
    assert draft.draft["body"] == {"contentType": "text", "content": "Scanned."}
    [attachment] = draft.attachments
    assert (attachment.content_type, attachment.decode()) == ("application/pdf", data)


def test_base64_in_padded_blocks_is_decoded_to_the_end() -> None:
    """Some encoders pad each block they encode; a footer after the padding is still left out."""
    data = pdf(10_000)
    blocks = b"".join(b64(data[i : i + 1000]) for i in range(0, len(data), 1000))  # 1000: padded each
    assert blocks.count(b"==") == 10
    footer = b"--\r\nSent by MFP-3F, Room 3.\r\n"
    message = scan(
        multipart(
            "mixed",
            text("Scanned."),
            leaf("application/pdf", blocks, encoding="8bit").replace(b": 8bit", b": base64"),
            leaf("application/pdf", b64(b"%PDF") + footer, encoding="8bit").replace(b": 8bit", b": base64"),
        )
    )
    assert [a.decode() for a in parsed(message).attachments] == [data, b"%PDF"]


def test_html_that_goes_on_after_an_attachment_is_kept() -> None:
    """Apple Mail: ``alternative[plain, mixed[html, pdf, html]]``; the second HTML is not another form of
    the body, so it is attached rather than dropped."""
    message = scan(
        multipart(
            "alternative",
            text("Before. [report.pdf] After."),
            multipart(
                "mixed",
                text("<p>Before.</p>", "html"),
                file("report.pdf", "application/pdf", b"%PDF"),
                text("<p>After.</p>", "html"),
            ),
        )
    )
    draft = parsed(message)
    assert draft.draft["body"] == {"contentType": "html", "content": "<p>Before.</p>"}
    assert [(a.name, a.decode()) for a in draft.attachments] == [
        ("report.pdf", b"%PDF"),
        ("attachment4.html", b"<p>After.</p>"),
    ]


async def test_an_upload_graph_still_misses_bytes_of_is_not_sent(graph: FakeGraph) -> None:
    """The last range's answer still asks for bytes: sending would send the draft without the file."""
    missing = json.dumps({"nextExpectedRanges": ["0"]}).encode()
    graph.answer_on("upload", Reply(200, missing, (("Content-Type", "application/json"),)))
    message, _ = pdf_scan(LARGE_ATTACHMENT)  # one range: the first is the last
    result = await deliver(graph, message)
    assert result.code == 451
    assert result.reply.startswith("451 4.3.0 Graph's upload session expected byte 0 next, not 3000000")
    assert graph.messages == []
    assert graph.drafts == {}


class Stalled(Recorder):
    """Deleting the draft hangs (a slow network) until the forwarder's stop cancels the send."""

    def __init__(self, failure: str) -> None:
        super().__init__()
        self.failure = failure
        self.discarding = asyncio.Event()
        self.later: list[str] = []

    async def call(
        self,
        method: str,
        url: str,
        *,
        content: bytes | AsyncIterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        authorized: bool = True,
    ) -> httpx.Response:
        if method == "PUT" and self.failure == "error":
            raise UpstreamUnavailable("Cannot talk to Microsoft Graph: the connection was reset.")
        if url.endswith("/send") and self.failure == "answer":
            return httpx.Response(429, headers={"Retry-After": "60"})
        return await super().call(method, url, content=content, headers=headers, authorized=authorized)

    def conclude(
        self, response: httpx.Response, recipients: Sequence[str], step: Step | None = None
    ) -> GraphTransaction:
        return (
            GraphTransaction("data", 451, "451 4.3.2 throttled")
            if response.status_code == 429
            else (super().conclude(response, recipients, step))
        )

    async def discard(self, url: str) -> None:
        self.discarding.set()
        await asyncio.Event().wait()

    def discard_later(self, url: str) -> None:
        self.later.append(url)


@pytest.mark.parametrize("failure", ["answer", "error"])
async def test_cancelled_while_deleting_its_draft_it_is_deleted_in_the_background(failure: str) -> None:
    """After a failed send (a deferring answer, or an error) the draft is being deleted when the forwarder
    stops: the deletion goes on in the background, for ``close()`` to wait for."""
    session = Stalled(failure)
    task = asyncio.create_task(send_large(session, [pdf_scan(4 * MB)[0]], [ALICE]))
    await session.discarding.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert session.later == [f"{session.base_url}/users/{MAILBOX}/messages/draft"]


def peak_of_taking_apart(message: bytes) -> tuple[LargeMessage, list[bytes], float]:
    """The draft, its files decoded, and the memory that took at its peak besides the message itself."""
    buffer = bytearray(message)
    tracemalloc.start()
    try:
        draft = LargeMessage.parse(buffer, [ALICE])
        draft.draft_request(MAX_REQUEST_BYTES)
        files = [attachment.decode() for attachment in draft.attachments]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return draft, files, peak / len(buffer)


def test_a_large_quoted_printable_file_is_decoded_without_a_copy_first() -> None:
    data = random.Random(7).randbytes(4 * MB)
    quoted = leaf("application/pdf", binascii.b2a_qp(data, istext=False), encoding="quoted-printable")
    _, files, peak = peak_of_taking_apart(scan(multipart("mixed", text("x"), quoted)))
    assert files == [data]
    assert peak < 1.8  # a2b_qp's own buffer (the encoded size), then the file; was 2.5: a copy first


def test_a_body_too_large_for_the_draft_goes_as_a_file_without_its_json_built() -> None:
    body = "Zeile f\u00fcr Zeile, ein Protokoll.\r\n" * (300 * KIB)  # 11 MB of log in the body
    draft, files, peak = peak_of_taking_apart(scan(text(body)))
    assert [a.name for a in draft.attachments] == ["message.txt"]
    assert files == [body.encode()]
    assert draft.draft["body"] == {"contentType": "text", "content": ""}
    assert peak < 3.2  # the text, and its UTF-8 (each 2x while Python makes it); was 4: its JSON too
