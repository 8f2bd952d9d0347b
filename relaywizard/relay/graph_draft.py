"""A message as a Microsoft Graph draft: the MIME taken apart, the draft's JSON and its attachments.

``graph_large`` sends a message too large for sendMail as a draft with attachments; this module builds
them from the message (``LargeMessage``): the draft's JSON properties and body, and one ``Attachment`` for
each file, whose bytes are decoded only when it is sent.

What the draft carries: the subject; the body from the text/html part (or else the text/plain part);
To, Cc and Bcc chosen from the SMTP envelope exactly as ``graph_mime`` chooses them; From and Reply-To;
``internetMessageId`` from Message-ID ("Updatable only if isDraft is true"); the message's ``X-`` headers
as ``internetMessageHeaders`` (Graph takes only names starting with ``x-``). Graph has no way to set other
header fields (Date, References, ...), so those are not kept. Inline images referenced as ``cid:`` by the
HTML body stay inline (``isInline``, ``contentId``); everything else is attached as a file. A body too
large for the draft's request goes as a file too (``message.html`` or ``message.txt``).

MIME is read as mail readers read it, sloppy devices included: bare LF line ends, padded or missing
closing delimiters, a part whose header runs into its body, base64 in padded blocks or with bad padding,
raw 8-bit header text (read as UTF-8), RFC 2047 and RFC 2231 file names.

Memory: the message is read once into one buffer (a spool's ``ContentChunks`` a chunk at a time), and
MIME parts are found in it without copying: each ``Part`` is a view of the buffer, decoded when asked.
"""

from __future__ import annotations

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
import mimetypes
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from relaywizard.relay.graph import addresses, blind_copies, header_fields, in_envelope
from relaywizard.relay.upstream_session import Buffer, content_size

#: The X- headers copied into ``internetMessageHeaders``, at most this many bytes in all.
MAX_X_HEADER_BYTES = 16 * 1024
#: Prefixes Exchange reserves for itself ([MS-OXCMAIL]: writers SHOULD NOT create them).
_RESERVED = ("x-ms-exchange-", "x-microsoft-exchange-")
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

    def upload_session_request(self, size: int) -> bytes:
        """The JSON of ``createUploadSession`` for this file of ``size`` bytes."""
        return _json({"AttachmentItem": self.item(size)})

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
