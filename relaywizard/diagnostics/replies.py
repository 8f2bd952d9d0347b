"""SMTP replies explained: what a reply means, and what to change so the next attempt works.

``parse_reply`` reads a reply as a person pastes it ("5.7.139", "535 5.7.139 ...", a multi-line reply,
a log line quoting one); ``explain`` looks it up in ``REPLIES``, a table of the replies an office admin
meets with Microsoft 365 (and with a Postfix or generic server), and falls back on the standard meaning of
the code (RFC 3463 enhanced codes, RFC 5321 basic codes) when the table has no entry for it.

Microsoft's wording varies between servers and over time, so entries match texts loosely: a short,
case-insensitive pattern, never a whole sentence.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from relaywizard.core.errors import UsageError
from relaywizard.diagnostics.reply_table import REPLIES, KnownReply
from relaywizard.diagnostics.rfc3463 import BASIC_CLASSES, CLASSES, DETAILS, SUBJECTS

__all__ = [
    "REPLIES",
    "Explanation",
    "KnownReply",
    "ParsedReply",
    "explain",
    "find_entry",
    "not_a_reply",
    "parse_reply",
]

# -- parsing -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedReply:
    """An SMTP reply: basic code (``535``), enhanced code (``"5.7.139"``), and the rest of the text."""

    basic: int | None
    enhanced: str | None
    text: str


# RFC 5321 basic code: 2-5, then 0-5, then a digit; RFC 3463 enhanced code: class.subject.detail.
_BASIC = r"[2-5][0-5][0-9]"
_ENHANCED = r"[245]\.[0-9]{1,3}\.[0-9]{1,3}"
_LINE = re.compile(rf"(?P<basic>{_BASIC})(?:(?P<sep>[ -])(?P<rest>.*))?", re.DOTALL)
_ENHANCED_AT_START = re.compile(rf"(?P<enhanced>{_ENHANCED})(?![0-9]|\.[0-9])\s*(?P<rest>.*)", re.DOTALL)
# A reply quoted inside other text: "host x said: 550 5.7.1 ...", "Remote Server returned '550 5.7.60 ...'".
_QUOTED = re.compile(rf"(?<![0-9.])(?P<basic>{_BASIC})[ -](?P<enhanced>{_ENHANCED})(?![0-9]|\.[0-9])")


def _canonical(enhanced: str) -> str:
    return ".".join(str(int(part)) for part in enhanced.split("."))


def parse_reply(text: str) -> ParsedReply | None:
    """Read an SMTP reply or status code; None when ``text`` is neither."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    if _LINE.fullmatch(lines[0]):
        return _parse_lines(lines)
    alone = _ENHANCED_AT_START.fullmatch(" ".join(lines))
    if alone is not None:
        return ParsedReply(None, _canonical(alone["enhanced"]), alone["rest"].strip())
    quoted = _QUOTED.search(" ".join(lines))
    if quoted is not None:
        rest = quoted.string[quoted.end() :].strip().rstrip("')\"").strip()
        return ParsedReply(int(quoted["basic"]), _canonical(quoted["enhanced"]), rest)
    return None


def _parse_lines(lines: list[str]) -> ParsedReply:
    """A (multi-line) reply: "535-5.7.139 first line" ... "535 5.7.139 last line"."""
    basic: int | None = None
    enhanced: str | None = None
    texts: list[str] = []
    for line in lines:
        match = _LINE.fullmatch(line)
        if match is None:  # a line pasted without its code: keep its words
            texts.append(line)
            continue
        basic = basic if basic is not None else int(match["basic"])
        rest = (match["rest"] or "").strip()
        code = _ENHANCED_AT_START.fullmatch(rest)
        if code is not None:
            enhanced = enhanced or _canonical(code["enhanced"])
            rest = code["rest"].strip()
        if rest:
            texts.append(rest)
    return ParsedReply(basic, enhanced, " ".join(texts))


# -- the table ---------------------------------------------------------------------------------------------


# -- matching ----------------------------------------------------------------------------------------------


@functools.cache
def _code_parts(code: str) -> tuple[tuple[int, int] | None, ...]:
    """ "5.7.606-649" → ((5, 5), (7, 7), (606, 649)); "*" → None (any value)."""
    parts: list[tuple[int, int] | None] = []
    for part in code.split("."):
        if part == "*":
            parts.append(None)
        else:
            low, _, high = part.partition("-")
            parts.append((int(low), int(high or low)))
    return tuple(parts)


def _code_score(code: str, enhanced: str) -> int | None:
    """How specifically ``code`` matches ``enhanced``: 2 per exact part, 1 per range, 0 per "*"."""
    score = 0
    for spec, value in zip(_code_parts(code), (int(p) for p in enhanced.split(".")), strict=True):
        if spec is None:
            continue
        low, high = spec
        if not low <= value <= high:
            return None
        score += 2 if low == high else 1
    return score


def _rank(entry: KnownReply, reply: ParsedReply) -> tuple[int, int, int] | None:
    """None when ``entry`` does not apply to ``reply``; else a score, higher is more specific."""
    if entry.code is None:
        if reply.enhanced is not None or reply.basic != entry.basic:
            return None
        code_score = 0
    else:
        if reply.enhanced is None:
            return None
        matched = _code_score(entry.code, reply.enhanced)
        if matched is None:
            return None
        code_score = matched
    basic_score = 0
    if entry.basic is not None and entry.code is not None:
        if reply.basic is None:
            basic_score = -1  # cannot tell: prefer an entry that does not ask
        elif reply.basic != entry.basic:
            return None
        else:
            basic_score = 1
    text_score = 0
    if entry.text is not None:
        if re.search(entry.text, reply.text, re.IGNORECASE) is None:
            return None
        text_score = 1
    return (code_score, text_score, basic_score)


def find_entry(reply: ParsedReply) -> KnownReply | None:
    """The most specific table entry for ``reply`` (a text-matched variant beats the bare code)."""
    best: KnownReply | None = None
    best_rank: tuple[int, int, int] | None = None
    for entry in REPLIES:
        rank = _rank(entry, reply)
        if rank is not None and (best_rank is None or rank > best_rank):
            best, best_rank = entry, rank
    return best


# -- explaining --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Explanation:
    """What a reply means and what to do about it; ``known`` is False when only its class was understood."""

    code: str | None
    basic: int | None
    meaning: str
    fix: str
    title: str
    known: bool
    entry: KnownReply | None = None


def explain(reply: str | ParsedReply) -> Explanation:
    """Explain an SMTP reply or status code; ``UsageError`` when the text is neither."""
    parsed = parse_reply(reply) if isinstance(reply, str) else reply
    if parsed is None:
        raise not_a_reply(str(reply))
    entry = find_entry(parsed)
    if entry is not None:
        meaning = entry.meaning
        if entry.code is not None and parsed.enhanced is not None and "*" in entry.code:
            detail = _detail(parsed.enhanced)
            meaning = f"{detail} ({parsed.enhanced}). {meaning}" if detail else meaning
        return Explanation(parsed.enhanced, parsed.basic, meaning, entry.fix, entry.title, True, entry)
    if parsed.enhanced is not None:
        return _explain_enhanced(parsed.enhanced, parsed.basic)
    if parsed.basic is not None:
        return _explain_basic(parsed.basic)
    raise not_a_reply(parsed.text)


def not_a_reply(text: str) -> UsageError:
    """The error for an argument that is neither an SMTP reply nor a status code."""
    shown = " ".join(text.split())
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return UsageError(
        f"'{shown}' is not an SMTP reply or status code",
        hint="Give a status code such as 5.7.139, or a reply such as "
        "'535 5.7.139 Authentication unsuccessful'.",
    )


def _detail(enhanced: str) -> str | None:
    _, subject, detail = (int(part) for part in enhanced.split("."))
    return DETAILS.get((subject, detail))


def _explain_enhanced(enhanced: str, basic: int | None) -> Explanation:
    """RFC 3463: the class, the subject, and the detail when it is a registered one."""
    klass, subject, number = (int(part) for part in enhanced.split("."))
    about, subject_fix = SUBJECTS.get(subject, ("an unknown subject", "Read the rest of the server's text."))
    class_meaning = CLASSES.get(klass, "An unknown class of status")
    detail = _detail(enhanced)
    if detail:
        title = detail
        what = f"{detail} (a status about {about})"
    else:
        title = f"{class_meaning.partition(':')[0]}: {about}"
        what = (
            f"A status about {about}; detail {number} is not a standard one, so the server's text says more"
        )
    if klass == 2:
        fix = "Nothing to fix."
    elif klass == 4:
        fix = f"Retry later (a relay retries by itself). If it persists: {subject_fix}"
    else:
        fix = subject_fix
    return Explanation(enhanced, basic, f"{what}. {class_meaning}.", fix, title, detail is not None)


def _explain_basic(basic: int) -> Explanation:
    """A basic code the table does not know: RFC 5321's meaning of its first digit."""
    first = basic // 100
    digit = BASIC_CLASSES.get(first, "nothing standard")
    meaning = f"Reply {basic} is not one relaywizard knows; its first digit means {digit}."
    fix = "Nothing to fix." if first in (2, 3) else "Read the rest of the server's text for the reason."
    return Explanation(None, basic, meaning, fix, f"SMTP reply {basic}", False)
