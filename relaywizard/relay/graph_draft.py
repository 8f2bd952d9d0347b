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

The MIME is read by ``mime_parts`` as mail readers read it, sloppy devices included.

Memory: the message is read once into one buffer (a spool's ``ContentChunks`` a chunk at a time), and
MIME parts are found in it without copying: each ``Part`` is a view of the buffer, decoded when asked.
"""

from __future__ import annotations

import base64
import email.errors
import email.header
import email.message
import email.parser
import email.policy
import email.utils
import json
import mimetypes
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from relaywizard.relay.graph import addresses, blind_copies, header_fields, in_envelope
from relaywizard.relay.mime_parts import Part, leaves, readable, split_header, utf8
from relaywizard.relay.upstream_session import Buffer, content_size

#: The X- headers copied into ``internetMessageHeaders``, at most this many bytes in all.
MAX_X_HEADER_BYTES = 16 * 1024
#: Prefixes Exchange reserves for itself ([MS-OXCMAIL]: writers SHOULD NOT create them).
_RESERVED = ("x-ms-exchange-", "x-microsoft-exchange-")
_MESSAGE_ID = re.compile(r"<[^<>\s@]+@[^<>\s@]+>")
_FOLD = re.compile(r"\r?\n(?=[ \t])")

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
        head = utf8(json.dumps(meta, ensure_ascii=False, separators=(",", ":"))[:-1])
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
        top, raw_header, _ = split_header(buffer, 0, len(buffer))
        parts = list(leaves(buffer, 0, len(buffer)))
        body, attachments = _arrange(parts)
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
    return utf8(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _arrange(parts: list[Part]) -> tuple[Part | None, list[Attachment]]:
    """The body (the first text/html part, else the first text/plain one) and the files to attach.

    The texts in the other branches of the body's multipart/alternative are other forms of the body and
    left out; a text in the body's own branch is not (Apple Mail's HTML goes on after an attachment in a
    multipart/mixed: ``alternative[plain, mixed[html, pdf, html]]``), so it is attached.
    """
    texts = [p for p in parts if p.content_type in ("text/html", "text/plain") and not p.is_attachment]
    body = next((p for p in texts if p.content_type == "text/html"), texts[0] if texts else None)
    html = body.text() if body is not None and body.content_type == "text/html" else ""
    alternative = next((a for a in reversed(body.ancestors) if a[1] == "alternative"), None) if body else None
    branch = _branch(body, alternative) if body is not None and alternative is not None else None
    attachments: list[Attachment] = []
    for number, part in enumerate(parts, 1):
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
    raw = _FOLD.sub("", readable(str(value))).strip()  # raw 8-bit bytes or text already decoded: UTF-8
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
