"""Sender rewrite: make a device's message look like it comes from the mailbox the relay signs in as.

Microsoft 365 refuses a message whose sender is not the signed-in mailbox (``550 5.7.60``): devices send
as ``scanner@contoso.local`` or ``noreply@printer``, and some put an address into the display name
(``From: scans@contoso.com <printer@contoso.com>``), which Exchange reads as a second, foreign sender.
``rewrite_sender`` fixes both, changing as little as possible:

- The envelope sender (MAIL FROM) becomes the mailbox, always (a null sender ``<>`` too).
- A ``From:`` whose address is not the mailbox becomes ``"<name> (via relay)" <mailbox>``, where
  ``<name>`` is the original display name (encoded-words decoded), or the original address when there
  was none; any "@" in it becomes " at ", so no reader mistakes it for an address. Non-ASCII names are
  written back as an RFC 2047 encoded-word. The original From goes into a new ``Reply-To:`` (placed right
  after From) unless the message already has a Reply-To, so replies still reach the person or device.
- A ``From:`` that is the mailbox keeps its address; only a display name containing "@" is rewritten
  (the same " at " spelling), nothing else.
- A message without a ``From:`` gets ``From: <mailbox>`` at the top of its header (RFC 5322 requires one).

Only the header block is edited, line by line: folded lines and every other header stay byte for byte as
they were, and the body bytes are never touched (no re-serialising with the email package, which would
re-fold headers and re-encode bodies).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.utils import formataddr, getaddresses

VIA_RELAY = " (via relay)"
_MAX_NAME = 200  # a display name longer than this is cut: the header line must stay well under 998 bytes
_LINE = re.compile(rb"[^\n]*\n|[^\n]+")
_FIELD_NAME = re.compile(rb"([!-9;-~]+)[ \t]*:")  # RFC 5322 field name, obsolete space before ":" allowed
_UNFOLD = re.compile(r"\r?\n(?=[ \t])")
_ANGLE_ADDR = re.compile(r"^(?P<name>.*?)\s*<(?P<addr>[^<>]*)>\s*$", re.DOTALL)


@dataclass(frozen=True)
class SenderRewrite:
    """The result: the envelope sender to use, the new header block, and what was changed.

    ``parts`` gives the message as the new header plus a view of the original body, so a 35 MB scan
    is not copied just to change one header line; ``content`` joins them for callers that want bytes.
    """

    original: bytes
    header: bytes
    """The header block to send (``original[:body_start]`` when nothing changed)."""
    body_start: int
    mail_from: str
    original_from: str | None
    """The From address the device wrote (None when there was no From)."""
    from_rewritten: bool
    """True when the header block changed (From rewritten, Reply-To or a missing From added)."""
    reply_to_added: bool

    @property
    def parts(self) -> tuple[bytes | memoryview, ...]:
        if not self.from_rewritten:
            return (self.original,)
        return (self.header, memoryview(self.original)[self.body_start :])

    @property
    def content(self) -> bytes:
        if not self.from_rewritten:
            return self.original
        return self.header + self.original[self.body_start :]


def rewrite_sender(content: bytes, mail_from: str, mailbox: str) -> SenderRewrite:
    """Rewrite ``content`` and the envelope sender ``mail_from`` so the sender is ``mailbox``."""
    end = header_end(content)
    lines = [m.group() for m in _LINE.finditer(content[:end])]
    fields = _group_fields(lines)
    has_reply_to = any(_field_name(field) == "reply-to" for field in fields)
    eol = _line_ending(lines)

    out: list[bytes] = []
    original: str | None = None
    changed = reply_to_added = found_from = False
    for field in fields:
        if _field_name(field) != "from":
            out.extend(field)
            continue
        name, address = _parse_mailbox(_field_value(field))
        if not found_from:
            original = address or None
        found_from = True
        new_field, reply_to = _rewrite_from(name, address, mailbox)
        if new_field is None:
            out.extend(field)
            continue
        changed = True
        field_eol = b"\r\n" if field[-1].endswith(b"\r\n") else b"\n" if field[-1].endswith(b"\n") else eol
        out.append(b"From: " + new_field + field_eol)
        if reply_to is not None and not has_reply_to and not reply_to_added:
            out.append(b"Reply-To: " + reply_to + field_eol)
            reply_to_added = True
    if not found_from:
        changed = True
        out.insert(0, b"From: " + formataddr(("", mailbox)).encode("ascii") + eol)
        if end == len(content) and lines and not lines[-1].endswith(b"\n"):
            out[-1] += eol  # a header block without a final line ending cannot be followed by nothing

    header = b"".join(out) if changed else content[:end]
    return SenderRewrite(content, header, end, mailbox, original, changed, reply_to_added)


def header_end(content: bytes) -> int:
    """Where the header block ends: the index of the empty line before the body (or the content's end)."""
    if content.startswith((b"\r\n", b"\n")):
        return 0
    ends = [i + 1 for i in (content.find(b"\n\r\n"), content.find(b"\n\n")) if i != -1]
    return min(ends) if ends else len(content)


def _group_fields(lines: list[bytes]) -> list[list[bytes]]:
    """Lines → header fields, each its first line plus any folded continuation lines."""
    fields: list[list[bytes]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    return fields


def _field_name(field: list[bytes]) -> str | None:
    match = _FIELD_NAME.match(field[0])
    return match.group(1).decode("ascii").lower() if match else None


def _field_value(field: list[bytes]) -> str:
    """The unfolded value of a field, as text (UTF-8, or Latin-1 for old devices' raw 8-bit bytes)."""
    raw = b"".join(field)
    raw = raw[raw.index(b":") + 1 :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return _UNFOLD.sub("", text).strip()


def _line_ending(lines: list[bytes]) -> bytes:
    for line in lines:
        if line.endswith(b"\n"):
            return b"\r\n" if line.endswith(b"\r\n") else b"\n"
    return b"\r\n"


def _parse_mailbox(value: str) -> tuple[str, str]:
    """(display name, address) of a From value, tolerating an unquoted "@" in the display name.

    The email package splits ``scans@x.com <printer@x.com>`` into two addresses; a device means one
    mailbox, so a value ending in ``<address>`` is taken as "everything before it is the name".
    """
    match = _ANGLE_ADDR.match(value)
    if match is not None and not re.search(r"[<>]", _unquoted(match["name"])):
        return _decode_name(match["name"]), match["addr"].strip()
    found = getaddresses([value])
    if not found:
        return "", ""
    name, address = found[0]
    return _decode_name(name), address


def _unquoted(text: str) -> str:
    """``text`` without its quoted strings, to look for structure outside them."""
    return re.sub(r'"(?:[^"\\]|\\.)*"', "", text)


def _decode_name(name: str) -> str:
    """A display name as a person reads it: quotes removed, encoded-words decoded."""
    name = name.strip()
    if len(name) >= 2 and name.startswith('"') and name.endswith('"'):
        name = re.sub(r"\\(.)", r"\1", name[1:-1])
    if "=?" in name:
        with contextlib.suppress(ValueError, LookupError):  # a malformed encoded-word: keep the text
            name = str(make_header(decode_header(name)))
    return " ".join(name.split())


def _safe_name(name: str) -> str:
    """No "@" (read as an address by Exchange), no control characters, a sane length."""
    name = name.replace("@", " at ")
    name = "".join(ch for ch in name if ch.isprintable())
    return " ".join(name.split())[:_MAX_NAME]


def _format(name: str, address: str) -> bytes:
    """``name <address>`` properly quoted; a non-ASCII name as an RFC 2047 encoded-word."""
    return formataddr((name, address), charset="utf-8").encode("ascii")


def _rewrite_from(name: str, address: str, mailbox: str) -> tuple[bytes | None, bytes | None]:
    """The new From value (None: keep the field as it was) and the Reply-To value to add (or None)."""
    if address and address.lower() == mailbox.lower():
        if "@" not in name:
            return None, None
        return _format(_safe_name(name), mailbox), None
    shown = _safe_name(name or address or "unknown sender") + VIA_RELAY
    reply_to: bytes | None = None
    if address and "@" in address:
        try:
            reply_to = _format(name[:_MAX_NAME], address)
        except UnicodeEncodeError:  # an internationalised address: it cannot go in an ASCII header
            reply_to = None
    return _format(shown, mailbox), reply_to
