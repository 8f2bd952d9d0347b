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

What the draft carries: the subject; the body from the text/html part (or else the text/plain part);
To, Cc and Bcc chosen from the SMTP envelope exactly as ``graph_mime`` chooses them; From and Reply-To;
``internetMessageId`` from Message-ID ("Updatable only if isDraft is true"); the message's ``X-`` headers
as ``internetMessageHeaders`` (Graph takes only names starting with ``x-``). Graph has no way to set other
header fields (Date, References, ...), so those are not kept. Inline images referenced as ``cid:`` by the
HTML body stay inline (``isInline``, ``contentId``); everything else is attached as a file.

When anything fails after the draft exists, the draft is deleted (``DELETE /users/{upn}/messages/{id}``,
204), so a message that is retried later does not leave drafts behind.

Memory: the message is read once into one buffer (a spool's ``ContentChunks`` a chunk at a time), MIME
parts are found in it without copying, and one attachment at a time is decoded and uploaded from slices of
its decoded bytes: a 35 MB message costs about 35 MB plus its largest attachment (about 26 MB) at once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.errors
import email.header
import email.message
import email.parser
import email.policy
import email.utils
import itertools
import json
import logging
import mimetypes
import re
import urllib.parse
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from relaywizard.relay.graph import (
    GraphTransaction,
    addresses,
    blind_copies,
    header_fields,
    in_envelope,
)
from relaywizard.relay.graph_errors import Step
from relaywizard.relay.upstream_session import Buffer, content_size

#: "If the file size is under 3 MB, do a single POST ... between 3 MB and 150 MB, create an upload session."
#: Microsoft does not say which 3 MB; 3,000,000 bytes keeps a POST's base64 under 4 MB either way.
LARGE_ATTACHMENT = 3_000_000
#: Upload ranges: a multiple of 320 KiB, under the documented 4 MB per PUT.
UPLOAD_CHUNK = 12 * 320 * 1024
#: "you can attach files up to 150 MB"; Exchange Online's largest message size is 150 MB too.
MAX_MESSAGE_BYTES = 150 * 1024 * 1024
#: The X- headers copied into ``internetMessageHeaders``, at most this many bytes in all.
MAX_X_HEADER_BYTES = 16 * 1024
#: Prefixes Exchange reserves for itself ([MS-OXCMAIL]: writers SHOULD NOT create them).
_RESERVED = ("x-ms-exchange-", "x-microsoft-exchange-")
_JSON = {"Content-Type": "application/json"}
_MESSAGE_ID = re.compile(r"<[^<>\s@]+@[^<>\s@]+>")
#: A header field's first line (``Name:``), as mail readers take it; a continuation starts with a blank.
_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
_PAD = re.compile(rb"=")
_BASE64_CHAR = re.compile(rb"[A-Za-z0-9+/]")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
#: What may follow a base64 block's padding when another block follows: more blocks, line ends.
_NOT_BLOCKS = re.compile(rb"[^A-Za-z0-9+/=\r\n]")
_BLOCK = re.compile(rb"[^=]+")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_MAX_DEPTH = 20
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


# -- the message, taken apart -----------------------------------------------------------------------------


if TYPE_CHECKING:
    _Compat32 = email.policy.Compat32[email.message.Message]
else:
    _Compat32 = email.policy.Compat32


class _Raw(_Compat32):
    """compat32, but a value with 8-bit bytes comes back as it is, the bytes as surrogates, instead of as a
    ``Header`` that shows U+FFFD for each of them: ``_readable`` reads them as UTF-8, as Exchange does with
    the raw UTF-8 subjects and file names devices send."""

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


_RAW = _Raw()


def _readable(text: str) -> str:
    """Text with the 8-bit bytes the parser kept as surrogates read as UTF-8 (U+FFFD where they are not)."""
    if text.isascii():
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that was never a byte (a codec made it): nothing to read
        raw = text.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def _utf8(text: str) -> bytes:
    """``text`` in UTF-8; surrogates (8-bit header bytes) read by ``_readable`` instead of failing."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _readable(text).encode("utf-8")


@dataclass(eq=False)
class Part:
    """A leaf of the MIME tree: its header fields and a view of its (still encoded) body."""

    header: email.message.Message
    body: memoryview
    ancestors: tuple[tuple[int, str], ...] = ()
    """The multiparts it is in, outermost first: (a number for each multipart, its subtype)."""

    @property
    def content_type(self) -> str:
        return self.header.get_content_type()

    @property
    def is_attachment(self) -> bool:
        return self.header.get_content_disposition() == "attachment" or self.filename is not None

    @property
    def filename(self) -> str | None:
        """``filename`` of Content-Disposition, else ``name`` of Content-Type, RFC 2231 decoded.

        Not ``get_filename``: for raw 8-bit bytes in an RFC 2231 value it answers ``\\udcc3`` escapes,
        or fails.
        """
        for param, where in (("filename", "content-disposition"), ("name", "content-type")):
            value = self.header.get_param(param, None, where)
            if isinstance(value, tuple):
                return _rfc2231(*value).strip()
            if value is not None:
                return email.utils.unquote(value).strip()
        return None

    @property
    def content_id(self) -> str | None:
        value = self.header.get("Content-ID")
        cid = _readable(str(value)).strip().strip("<>").strip() if value is not None else ""
        return cid or None

    def decode(self) -> bytes:
        """The body without its transfer encoding."""
        return bytes(self._decoded())

    def _decoded(self) -> bytes | memoryview:
        """The body without its transfer encoding; a view of the message when it has none (no copy)."""
        encoding = str(self.header.get("Content-Transfer-Encoding", "")).strip().lower()
        if encoding == "base64":
            return _base64(self.body)
        if encoding == "quoted-printable":
            return binascii.a2b_qp(self.body)  # takes the view as it is: no copy of the encoded body
        return self.body

    def text(self) -> str:
        charset = self.header.get_content_charset() or "utf-8"
        if charset in ("us-ascii", "ascii"):
            charset = "utf-8"  # a superset: 8-bit text that claims ASCII still reads
        try:
            return str(self._decoded(), charset, "replace")
        except (LookupError, ValueError):  # no such codec, or a name no codec can have ("a\0b")
            return str(self._decoded(), "utf-8", "replace")


def _base64(data: memoryview) -> bytes:
    """Base64 decoded as mail readers decode it: line ends and other characters outside the alphabet are
    skipped, bad padding is forgiven, and data encoded in blocks, each padded (``QUI=`` then ``Q0Q=``), is
    read to its end: ``binascii`` would stop at the first padding, and the attachment would arrive cut short.
    """
    pad = _PAD.search(data)
    after = pad.end() if pad is not None else len(data)
    if _BASE64_CHAR.search(data, after) and not _NOT_BLOCKS.search(data, after):  # no footer after it
        decoded = bytearray()
        for block in _BLOCK.finditer(data):
            decoded += _padded(_NOT_BASE64.sub(b"", block.group()))
        return bytes(decoded)
    try:
        return binascii.a2b_base64(data)  # skips line ends and other characters outside the alphabet
    except binascii.Error:  # bad padding: decode what is there, as mail readers do
        return _padded(_NOT_BASE64.sub(b"", data))


def _padded(cleaned: bytes) -> bytes:
    """Base64 without padding or anything outside the alphabet, decoded."""
    if len(cleaned) % 4 == 1:
        cleaned = cleaned[:-1]  # a lone character carries no whole byte
    return binascii.a2b_base64(cleaned + b"=" * (-len(cleaned) % 4))


def _rfc2231(charset: str | None, language: str | None, text: str) -> str:
    """An RFC 2231 value as ``email`` leaves it: its bytes as Latin-1 text (8-bit ones as surrogates)."""
    try:
        raw = text.encode("latin-1", "surrogateescape")
    except UnicodeEncodeError:
        return _readable(text)
    try:
        return raw.decode(charset or "utf-8", "replace")
    except (LookupError, ValueError):  # no such charset: UTF-8, as for the rest
        return raw.decode("utf-8", "replace")


def _split(buffer: bytearray, start: int, end: int) -> tuple[email.message.Message, bytes, int]:
    """The header of the entity at ``start`` (parsed, and its fields' bytes) and where its body starts.

    The header ends at the first empty line. A line that is neither a field nor a field's continuation is
    left out when a field follows it; else the body starts there, as mail readers read a part whose header
    runs straight into its body (without the empty line, its body would be lost).
    """
    fields: list[bytes] = []
    position = body = start
    while position < end:
        line_end = _line_end(buffer, position, end)
        if buffer[position] == 0x0A or buffer.startswith(b"\r\n", position):
            body = line_end
            break
        if (
            _FIELD.match(buffer, position, line_end)
            or (fields and buffer[position] in b" \t")
            or (position == start and buffer.startswith(b"From ", position))  # an mbox separator
        ):
            fields.append(bytes(buffer[position:line_end]))
        elif not (line_end < end and _FIELD.match(buffer, line_end, _line_end(buffer, line_end, end))):
            body = position
            break
        position = body = line_end
    raw = b"".join(fields)
    return email.parser.BytesHeaderParser(policy=_RAW).parsebytes(raw), raw, body


def _line_end(buffer: bytearray, start: int, end: int) -> int:
    """Where the line at ``start`` ends, its LF included."""
    newline = buffer.find(b"\n", start, end)
    return end if newline < 0 else newline + 1


def _delimited(buffer: bytearray, start: int, end: int, boundary: str) -> list[tuple[int, int]]:
    """The spans of a multipart's parts: between ``--boundary`` lines, without the line end before each.

    A delimiter is a line of ``--boundary`` (``--boundary--`` for the last), maybe with spaces after it
    (RFC 2046); ``bytes.find`` looks for it (a regular expression is several times slower on 35 MB).
    """
    marker = b"--" + boundary.encode("utf-8", "surrogateescape")
    spans: list[tuple[int, int]] = []
    part_start: int | None = None
    position = start
    while (found := buffer.find(marker, position, end)) >= 0:
        position = found + len(marker)
        if found > start and buffer[found - 1] != 0x0A:
            continue  # not at the start of a line
        newline = buffer.find(b"\n", position, min(end, position + 1000))
        line_end = end if newline < 0 and end - position < 1000 else newline
        if line_end < 0:
            continue  # a long line: content that merely starts like a delimiter
        rest = bytes(buffer[position:line_end]).rstrip(b"\r")
        closing = rest.startswith(b"--")
        if rest[2 if closing else 0 :].strip(b" \t"):
            continue  # "--boundaryX": another boundary, or content
        if part_start is not None:
            stop = max(found - 1, part_start)  # the LF (and CR) before the delimiter are its own
            if stop > part_start and buffer[stop - 1] == 0x0D:
                stop -= 1
            spans.append((part_start, stop))
        if closing:
            return spans
        part_start = min(line_end + 1, end)
    if part_start is not None and part_start < end:  # no closing delimiter: the last part runs to the end
        spans.append((part_start, end))
    return spans


def _leaves(
    buffer: bytearray,
    start: int,
    end: int,
    ancestors: tuple[tuple[int, str], ...] = (),
    counter: Iterator[int] | None = None,
) -> Iterator[Part]:
    counter = counter if counter is not None else itertools.count()
    header, _, body = _split(buffer, start, end)
    boundary = header.get_boundary()
    if header.get_content_maintype() == "multipart" and boundary and len(ancestors) < _MAX_DEPTH:
        spans = _delimited(buffer, body, end, boundary)
        if spans:
            inside = (*ancestors, (next(counter), header.get_content_subtype()))
            for part_start, part_end in spans:
                yield from _leaves(buffer, part_start, part_end, inside, counter)
            return
    yield Part(header, memoryview(buffer)[body:end], ancestors)


# -- the draft --------------------------------------------------------------------------------------------


@dataclass
class Attachment:
    """One file for the draft: what Graph needs to know of it, and where its bytes are."""

    name: str
    content_type: str
    part: Part | None = None
    data: bytes | None = None
    content_id: str | None = None
    inline: bool = False

    def decode(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.part is not None
        return self.part.decode()

    def item(self, size: int) -> dict[str, Any]:
        """The ``AttachmentItem`` of ``createUploadSession`` (attachmentItem resource)."""
        item: dict[str, Any] = {
            "attachmentType": "file",
            "name": self.name,
            "size": size,
            "contentType": self.content_type,
            "isInline": self.inline,
        }
        if self.inline and self.content_id:
            item["contentId"] = self.content_id
        return item

    def file_attachment(self, data: bytes) -> bytes:
        """The ``fileAttachment`` JSON of a POST to ``attachments``, built around the base64 once."""
        meta: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": self.name,
            "contentType": self.content_type,
            "isInline": self.inline,
        }
        if self.inline and self.content_id:
            meta["contentId"] = self.content_id
        head = _utf8(json.dumps(meta, ensure_ascii=False, separators=(",", ":"))[:-1])
        return head + b',"contentBytes":"' + base64.b64encode(data) + b'"}'  # base64 needs no escaping


@dataclass
class LargeMessage:
    """A message as a Graph draft: its JSON properties and its attachments (see the module's text)."""

    buffer: bytearray
    """The whole message; the attachments' parts are views of it."""
    draft: dict[str, Any]
    attachments: list[Attachment] = field(default_factory=list)

    @classmethod
    def read(cls, content: Sequence[Buffer], recipients: Sequence[str]) -> LargeMessage:
        """Read ``content`` into one buffer (one spool chunk at a time) and take it apart."""
        buffer = bytearray(content_size(content))
        position = 0
        for part in content:
            buffer[position : position + len(part)] = part
            position += len(part)
        if position != len(buffer):
            raise OSError("the message changed size while it was being read")
        return cls.parse(buffer, recipients)

    @classmethod
    def parse(cls, buffer: bytearray, recipients: Sequence[str]) -> LargeMessage:
        top, raw_header, _ = _split(buffer, 0, len(buffer))
        leaves = list(_leaves(buffer, 0, len(buffer)))
        body, attachments = _arrange(leaves)
        draft = _properties(top, raw_header, recipients)
        if body is None:
            draft["body"] = {"contentType": "text", "content": ""}
        else:
            kind = "html" if body.content_type == "text/html" else "text"
            draft["body"] = {"contentType": kind, "content": body.text()}
        return cls(buffer, draft, attachments)

    def plain(self) -> bool:
        """Leave out what only keeps the header faithful (the Message-ID, X- headers); False when there
        was nothing to leave out. For a draft Graph refused: delivering it matters more."""
        extras = [self.draft.pop(key, None) for key in ("internetMessageId", "internetMessageHeaders")]
        return any(extra is not None for extra in extras)

    def draft_request(self, limit: int | None) -> bytes:
        """The JSON that creates the draft. A body too large for one request goes as an attachment."""
        body = self.draft["body"]
        if limit is None or len(body["content"]) <= limit:  # else its JSON is larger still: not built
            encoded = _json(self.draft)
            if limit is None or len(encoded) <= limit:
                return encoded
        html = body["contentType"] == "html"
        self.attachments.insert(
            0,
            Attachment(
                "message.html" if html else "message.txt",
                "text/html" if html else "text/plain",
                data=body["content"].encode("utf-8"),
            ),
        )
        self.draft["body"] = {"contentType": "text", "content": ""}
        return _json(self.draft)


def _json(value: object) -> bytes:
    return _utf8(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _arrange(leaves: list[Part]) -> tuple[Part | None, list[Attachment]]:
    """The body (the first text/html part, else the first text/plain one) and the files to attach.

    The texts in the other branches of the body's multipart/alternative are other forms of the body and
    left out; a text in the body's own branch is not (Apple Mail's HTML goes on after an attachment in a
    multipart/mixed: ``alternative[plain, mixed[html, pdf, html]]``), so it is attached.
    """
    texts = [p for p in leaves if p.content_type in ("text/html", "text/plain") and not p.is_attachment]
    body = next((p for p in texts if p.content_type == "text/html"), texts[0] if texts else None)
    html = body.text() if body is not None and body.content_type == "text/html" else ""
    alternative = next((a for a in reversed(body.ancestors) if a[1] == "alternative"), None) if body else None
    branch = _branch(body, alternative) if body is not None and alternative is not None else None
    attachments: list[Attachment] = []
    for number, part in enumerate(leaves, 1):
        alternative_text = (
            alternative is not None
            and alternative in part.ancestors
            and any(part is text for text in texts)
            and (branch is None or _branch(part, alternative) != branch)
        )
        if part is body or alternative_text:
            continue  # the body, or another form of it (multipart/alternative)
        cid = part.content_id
        inline = bool(
            cid
            and html
            and part.header.get_content_disposition() != "attachment"
            and f"cid:{cid}".lower() in html.lower()
        )
        attachments.append(Attachment(_file_name(part, number), part.content_type, part, None, cid, inline))
    return body, attachments


def _branch(part: Part, alternative: tuple[int, str]) -> tuple[int, str] | None:
    """The multipart right inside ``alternative`` that ``part`` is in; None when it is a child itself."""
    inside = part.ancestors[part.ancestors.index(alternative) + 1 :]
    return inside[0] if inside else None


def _file_name(part: Part, number: int) -> str:
    name = part.filename
    if name:
        return _text(name)
    if part.content_type == "message/rfc822":
        return "message.eml"
    extension = mimetypes.guess_extension(part.content_type) or ".bin"
    return f"attachment{number}{extension}"


def _text(value: object) -> str:
    """A header value as text: unfolded, 8-bit bytes read as UTF-8, RFC 2047 words decoded."""
    raw = _FOLD.sub("", _readable(str(value))).strip()  # raw 8-bit bytes or text already decoded: UTF-8
    try:
        return str(email.header.make_header(email.header.decode_header(raw)))
    except (LookupError, ValueError, UnicodeError, email.errors.HeaderParseError):
        return raw


def _recipient(name: str, address: str) -> dict[str, Any]:
    shown = _text(name) if name else ""
    return {"emailAddress": {"name": shown, "address": address} if shown else {"address": address}}


def _properties(
    header: email.message.Message, raw_header: bytes, recipients: Sequence[str]
) -> dict[str, Any]:
    """The draft's JSON properties from the header, with To, Cc and Bcc chosen as ``graph_mime`` does."""
    wanted = {address.lower() for address in recipients}
    chosen: dict[str, list[tuple[str, str]]] = {"to": [], "cc": [], "from": [], "reply-to": []}
    x_headers: list[dict[str, str]] = []
    room = MAX_X_HEADER_BYTES
    for raw in header_fields(raw_header):
        name, _, value = raw.partition(b":")
        key = name.strip().lower().decode("ascii", "replace")
        if key in chosen:
            found = addresses(raw)
            chosen[key].extend(in_envelope(found, wanted) if key in ("to", "cc") else found)
        elif key.startswith("x-") and not key.startswith(_RESERVED) and raw.isascii():
            text = _FOLD.sub("", value.decode("ascii")).strip()  # as sent: encoded words stay encoded
            room -= len(key) + len(text)
            if room >= 0:
                x_headers.append({"name": name.strip().decode("ascii"), "value": text})
    named = {address.lower() for _, address in chosen["to"] + chosen["cc"]}
    draft: dict[str, Any] = {
        "subject": _text(header["Subject"]) if header["Subject"] is not None else "",
        "toRecipients": [_recipient(*pair) for pair in chosen["to"]],
        "ccRecipients": [_recipient(*pair) for pair in chosen["cc"]],
        "bccRecipients": [_recipient(*pair) for pair in blind_copies(recipients, named)],
    }
    if chosen["from"]:
        draft["from"] = _recipient(*chosen["from"][0])
    if chosen["reply-to"]:
        draft["replyTo"] = [_recipient(*pair) for pair in chosen["reply-to"]]
    message_id = _MESSAGE_ID.search(str(header.get("Message-ID", "")))
    if message_id:
        draft["internetMessageId"] = message_id.group(0)
    importance = str(header.get("Importance", "")).strip().lower()
    if importance in ("low", "normal", "high"):
        draft["importance"] = importance
    if x_headers:
        draft["internetMessageHeaders"] = x_headers
    return draft


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
            content=_json({"AttachmentItem": attachment.item(len(data))}),
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
