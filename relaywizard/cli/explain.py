"""``relaywizard explain REPLY``: what an SMTP reply means, and how to fix what caused it."""

from __future__ import annotations

import argparse
import json

from relaywizard.diagnostics.replies import Explanation, explain, not_a_reply, parse_reply


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "explain",
        help="explain an SMTP reply or status code",
        description="Explain an SMTP reply: what it means and what to change. Give a status code "
        "(5.7.139), a reply line (535 5.7.139 Authentication unsuccessful ...), or a whole multi-line "
        "reply; quotes are optional. Exit code 0 when explained, 2 when the text is not an SMTP reply.",
    )
    parser.add_argument(
        "reply", nargs="+", metavar="REPLY", help="the reply or status code (its words are joined by spaces)"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print {"code", "meaning", "fix", "known", "basic", "title"} as one JSON document',
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    text = " ".join(args.reply)
    parsed = parse_reply(text)
    if parsed is None:
        raise not_a_reply(text)
    explanation = explain(parsed)
    print(as_json(explanation) if args.json else as_text(explanation))
    return 0


def as_json(explanation: Explanation) -> str:
    """The contract's JSON document: code, meaning, fix, known first; then basic and title."""
    return json.dumps(
        {
            "code": explanation.code,
            "meaning": explanation.meaning,
            "fix": explanation.fix,
            "known": explanation.known,
            "basic": explanation.basic,
            "title": explanation.title,
        }
    )


def as_text(explanation: Explanation) -> str:
    codes = " ".join(str(part) for part in (explanation.basic, explanation.code) if part is not None)
    lines = [f"{codes}  {explanation.title}"]
    if not explanation.known:
        lines.append("(not a reply relaywizard knows; this is the general meaning of its code)")
    lines += [f"Meaning: {explanation.meaning}", f"Fix: {explanation.fix}"]
    return "\n".join(lines)
