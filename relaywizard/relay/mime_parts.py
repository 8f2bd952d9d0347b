"""MIME taken apart as mail readers take it, without copying: the leaves of a message's MIME tree as views
of one buffer, decoded only when asked (``graph_draft`` builds a Graph draft from them).

Sloppy devices included: bare LF line ends, padded or missing closing delimiters, a part whose header
runs into its body, base64 in padded blocks or with bad padding, raw 8-bit header text (read as UTF-8),
RFC 2047 and RFC 2231 file names.
"""

from __future__ import annotations

import binascii
import email.errors
import email.header
import email.message
import email.parser
import email.policy
import email.utils
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

#: A header field's first line (``Name:``), as mail readers take it; a continuation starts with a blank.
_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
_PAD = re.compile(rb"=")
_BASE64_CHAR = re.compile(rb"[A-Za-z0-9+/]")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
#: What may follow a base64 block's padding when another block follows: more blocks, line ends.
_NOT_BLOCKS = re.compile(rb"[^A-Za-z0-9+/=\r\n]")
_BLOCK = re.compile(rb"[^=]+")
_MAX_DEPTH = 20


# -- the message, taken apart -----------------------------------------------------------------------------


if TYPE_CHECKING:
    _Compat32 = email.policy.Compat32[email.message.Message]
else:
    _Compat32 = email.policy.Compat32


class _Raw(_Compat32):
    """compat32, but a value with 8-bit bytes comes back as it is, the bytes as surrogates, instead of as a
    ``Header`` that shows U+FFFD for each of them: ``readable`` reads them as UTF-8, as Exchange does with
    the raw UTF-8 subjects and file names devices send."""

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


_RAW = _Raw()


def readable(text: str) -> str:
    """Text with the 8-bit bytes the parser kept as surrogates read as UTF-8 (U+FFFD where they are not)."""
    if text.isascii():
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that was never a byte (a codec made it): nothing to read
        raw = text.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def utf8(text: str) -> bytes:
    """``text`` in UTF-8; surrogates (8-bit header bytes) read by ``readable`` instead of failing."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return readable(text).encode("utf-8")


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
        cid = readable(str(value)).strip().strip("<>").strip() if value is not None else ""
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
        return readable(text)
    try:
        return raw.decode(charset or "utf-8", "replace")
    except (LookupError, ValueError):  # no such charset: UTF-8, as for the rest
        return raw.decode("utf-8", "replace")


def split_header(buffer: bytearray, start: int, end: int) -> tuple[email.message.Message, bytes, int]:
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


def leaves(
    buffer: bytearray,
    start: int,
    end: int,
    ancestors: tuple[tuple[int, str], ...] = (),
    counter: Iterator[int] | None = None,
) -> Iterator[Part]:
    counter = counter if counter is not None else itertools.count()
    header, _, body = split_header(buffer, start, end)
    boundary = header.get_boundary()
    if header.get_content_maintype() == "multipart" and boundary and len(ancestors) < _MAX_DEPTH:
        spans = _delimited(buffer, body, end, boundary)
        if spans:
            inside = (*ancestors, (next(counter), header.get_content_subtype()))
            for part_start, part_end in spans:
                yield from leaves(buffer, part_start, part_end, inside, counter)
            return
    yield Part(header, memoryview(buffer)[body:end], ancestors)
