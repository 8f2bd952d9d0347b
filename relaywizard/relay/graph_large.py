"""Messages too large for one ``sendMail`` request: a draft, its attachments one at a time, then ``send``.

Graph takes at most 4 MB in one request, and sendMail's MIME body is the whole message in base64, so
about 3 MB of message is the most it can carry. Scanners send 5-30 MB PDFs. For those ``GraphSession``
hands the message to ``send_large``, which builds it the way Microsoft documents for large attachments
("Attach large files to Outlook messages or events", learn.microsoft.com/graph/outlook-large-attachments):

1. ``POST /users/{upn}/messages`` with the message as JSON creates a draft (201 and its ``id``).
2. Each attachment under 3 MB: ``POST /users/{upn}/messages/{id}/attachments`` with a ``fileAttachment``
   whose ``contentBytes`` is the file in base64 (201). "This operation limits the size of the attachment
   you can add to under 3 MB" (message-post-attachments).
3. Each attachment of 3 MB or more (up to 150 MB): ``POST .../attachments/createUploadSession`` with an
   ``AttachmentItem`` (``attachmentType`` file, ``name``, ``size``, ``contentType``; ``isInline`` and
   ``contentId`` for an inline image) answers 201 with an ``uploadUrl``; then ``PUT`` to that URL the
   file's bytes in order, each with ``Content-Length``, ``Content-Range: bytes {start}-{end}/{total}`` and
   ``Content-Type: application/octet-stream``. The URL is pre-authenticated ("Do not specify an
   Authorization request header"), so the relay's token never goes there. Each range answers 200 with
   ``nextExpectedRanges``; the last answers 201. Ranges are "up to 4 MB each time"; the relay sends
   multiples of 320 KiB (the size Graph's upload sessions ask slices to be a multiple of), 3.75 MiB each.
4. ``POST .../messages/{id}/send`` (202 Accepted) sends the draft; it is then kept in Sent Items, as
   sendMail keeps the messages it sends.

Creating the draft and its attachments needs the ``Mail.ReadWrite`` permission (message-post, attachment
-createUploadSession), sending it ``Mail.Send``: an app that has only ``Mail.Send`` can send small messages
but not large ones, and those stay queued with a reply that says so (``graph_errors.judge_step``).

The draft itself (its JSON, the body, which parts are files) is built from the message by ``graph_draft``.

When anything fails after the draft exists, the draft is deleted (``DELETE /users/{upn}/messages/{id}``,
204), so a message that is retried later does not leave drafts behind.

Memory: the message is read once into one buffer (``graph_draft``), and one attachment at a time is decoded
and uploaded from slices of its decoded bytes: a 35 MB message costs about 35 MB plus its largest attachment
(about 26 MB) at once.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from relaywizard.relay.graph import GraphTransaction
from relaywizard.relay.graph_draft import Attachment, LargeMessage
from relaywizard.relay.graph_errors import Step
from relaywizard.relay.upstream_session import Buffer, content_size

#: "If the file size is under 3 MB, do a single POST ... between 3 MB and 150 MB, create an upload session."
#: Microsoft does not say which 3 MB; 3,000,000 bytes keeps a POST's base64 under 4 MB either way.
LARGE_ATTACHMENT = 3_000_000
#: Upload ranges: a multiple of 320 KiB, under the documented 4 MB per PUT.
UPLOAD_CHUNK = 12 * 320 * 1024
#: "you can attach files up to 150 MB"; Exchange Online's largest message size is 150 MB too.
MAX_MESSAGE_BYTES = 150 * 1024 * 1024
_JSON = {"Content-Type": "application/json"}
log = logging.getLogger(__name__)


class Session(Protocol):
    """What ``send_large`` needs of ``GraphSession``: its requests, with the session's error handling."""

    mailbox: str
    base_url: str
    max_request_bytes: int | None

    async def call(
        self,
        method: str,
        url: str,
        *,
        content: bytes | AsyncIterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        authorized: bool = True,
    ) -> httpx.Response:
        """One request; 401 (once), 429 and 5xx handled as for sendMail; the final answer."""
        ...

    def conclude(
        self, response: httpx.Response, recipients: Sequence[str], step: Step | None = None
    ) -> GraphTransaction:
        """What the answer means for the message (may raise ``AuthFailed`` or ``UpstreamRefused``)."""
        ...

    async def discard(self, url: str) -> None:
        """Delete a draft, best effort."""
        ...

    def discard_later(self, url: str) -> None:
        """Delete a draft in the background (the send was cancelled)."""
        ...


class _HideQueries(logging.Filter):
    """httpx logs every request's URL at INFO (``HTTP Request: PUT https://...``), and ``relay -v`` logs
    INFO: an upload URL's query is its token ("pre-authenticated ... contains the appropriate authorization
    token"), so it is cut off before the record is written anywhere."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(arg, httpx.URL) for arg in record.args):
            record.args = tuple(_without_query(arg) for arg in record.args)
        return True


def _without_query(arg: object) -> object:
    if isinstance(arg, httpx.URL) and arg.query:
        return f"{arg.scheme}://{arg.netloc.decode('ascii', 'replace')}{arg.path}?..."
    return arg


logging.getLogger("httpx").addFilter(_HideQueries())


class _Slice:
    """A request body that is a slice of an attachment's bytes, sent without copying it first.

    httpx takes ``bytes`` or iterables of them; a memoryview handed over as an async iterable goes to
    the connection as it is (h11 joins it into the frame it writes). Iterable again for a retry.
    """

    def __init__(self, view: memoryview) -> None:
        self.view = view

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.view  # type: ignore[misc]  # bytes-like: every layer below takes a buffer


# -- the requests -----------------------------------------------------------------------------------------


def too_large(size: int) -> GraphTransaction:
    return GraphTransaction(
        "data",
        552,
        f"552 5.3.4 The message is {size} bytes, more than the 150 MB Microsoft Graph takes for one message, "
        "so it cannot be sent through Graph",
    )


async def send_large(
    session: Session, content: Sequence[Buffer], recipients: Sequence[str]
) -> GraphTransaction:
    """Send a message too large for sendMail as a draft with attachments (see the module's text)."""
    size = content_size(content)
    if size > MAX_MESSAGE_BYTES:
        return too_large(size)
    message = await asyncio.to_thread(LargeMessage.read, content, recipients)
    return await _Sending(session, message, recipients).run()


@dataclass
class _Sending:
    session: Session
    message: LargeMessage
    recipients: Sequence[str]

    async def run(self) -> GraphTransaction:
        session = self.session
        mailbox = urllib.parse.quote(session.mailbox, safe="@")
        messages = f"{session.base_url}/users/{mailbox}/messages"
        created = await self._create(messages)
        if created.status_code == 400 and self.message.plain():  # Graph may not take a Message-ID...
            log.info("Graph refused the draft of a large message with its header: sending it without")
            created = await self._create(messages)
        if not created.is_success:
            return session.conclude(created, self.recipients, "draft")
        draft_id = _answer(created).get("id")
        if not isinstance(draft_id, str) or not draft_id:
            return _lost("Graph created the draft without saying its id")
        draft = f"{messages}/{urllib.parse.quote(draft_id, safe='')}"
        try:
            result, sent = await self._fill_and_send(draft)
        except asyncio.CancelledError:
            session.discard_later(draft)
            raise
        except Exception:
            await self._discard(draft)
            raise
        if not sent:  # a 2xx other than 202 may have sent it: then the draft is gone anyway
            await self._discard(draft)
        return result

    async def _fill_and_send(self, draft: str) -> tuple[GraphTransaction, bool]:
        """Add the attachments to the draft and send it: the outcome, and whether Graph took the send."""
        for attachment in self.message.attachments:
            failed = await self._attach(draft, attachment)
            if failed is not None:
                return failed, False
        sent = await self.session.call("POST", f"{draft}/send")
        return self.session.conclude(sent, self.recipients, "send"), sent.is_success

    async def _discard(self, draft: str) -> None:
        """Delete the draft; when cancelled meanwhile, in the background (it must not stay behind)."""
        try:
            await self.session.discard(draft)
        except asyncio.CancelledError:
            self.session.discard_later(draft)
            raise

    async def _create(self, messages: str) -> httpx.Response:
        request = self.message.draft_request(self.session.max_request_bytes)
        return await self.session.call("POST", messages, content=request, headers=_JSON)

    async def _attach(self, draft: str, attachment: Attachment) -> GraphTransaction | None:
        """Add one file to the draft; the reply for the message when that failed."""
        session = self.session
        data = await asyncio.to_thread(attachment.decode)
        if len(data) < LARGE_ATTACHMENT:
            request = attachment.file_attachment(data)
            del data
            added = await session.call("POST", f"{draft}/attachments", content=request, headers=_JSON)
            return None if added.is_success else session.conclude(added, self.recipients, "attach")
        opened = await session.call(
            "POST",
            f"{draft}/attachments/createUploadSession",
            content=attachment.upload_session_request(len(data)),
            headers=_JSON,
        )
        if not opened.is_success:
            return session.conclude(opened, self.recipients, "attach")
        upload = _answer(opened).get("uploadUrl")
        if not isinstance(upload, str) or urllib.parse.urlsplit(upload).scheme != "https":
            return _lost("Graph's upload session has no https upload URL")
        return await self._upload(upload, memoryview(data))

    async def _upload(self, url: str, data: memoryview) -> GraphTransaction | None:
        """PUT the bytes in order; no Authorization: the URL carries its own token."""
        total, start = len(data), 0
        while start < total:
            end = min(start + UPLOAD_CHUNK, total)
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Length": str(end - start),
                "Content-Range": f"bytes {start}-{end - 1}/{total}",
            }
            put = await self.session.call(
                "PUT", url, content=_Slice(data[start:end]), headers=headers, authorized=False
            )
            if not put.is_success:
                return self.session.conclude(put, self.recipients, "upload")
            expected = _next_expected(put)
            if expected is not None and expected != end:  # after the last range: Graph still misses bytes
                return _lost(f"Graph's upload session expected byte {expected} next, not {end}")
            start = end
        return None


def _answer(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _next_expected(response: httpx.Response) -> int | None:
    """The first byte of ``nextExpectedRanges`` (``"2097152"`` or ``"2097152-"``), if the answer has one."""
    answer = _answer(response)
    ranges = answer.get("nextExpectedRanges") or answer.get("NextExpectedRanges")
    if not isinstance(ranges, list) or not ranges:
        return None
    first = str(ranges[0]).split("-", 1)[0].strip()
    return int(first) if first.isdigit() else None


def _lost(what: str) -> GraphTransaction:
    return GraphTransaction(
        "data", 451, f"451 4.3.0 {what}; the message stays queued and the relay retries by itself"
    )
