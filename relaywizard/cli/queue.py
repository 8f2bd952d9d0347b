"""``relaywizard queue``: the relay's queued and dead messages, with their reasons; retry, delete, export."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relaywizard.core.errors import ConfigError, UsageError
from relaywizard.core.paths import AppPaths

if TYPE_CHECKING:
    from relaywizard.relay.model import Envelope
    from relaywizard.relay.spool import Spool


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "queue",
        help="list the relay's queued and dead messages; retry, delete or export one",
        description="Show the messages in the relay's spool that are not delivered yet (queued, being sent, "
        "or dead with the reason), and retry, delete or export one as .eml. While a relay runs on the spool, "
        "retry and delete go through its control channel (same user or root only); otherwise they change "
        "the spool directly.",
    )
    parser.add_argument("--spool", metavar="DIR", help="the on-disk queue (default: the relay's)")
    parser.add_argument("--config", metavar="FILE", help="settings file naming the spool")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("list", help="list messages (the default)")
    listing.add_argument("--all", action="store_true", help="include delivered messages")
    listing.add_argument("--json", action="store_true", help="one JSON document")
    for name, text in (
        ("show", "everything about one message"),
        ("retry", "send a queued or dead message again now"),
        ("delete", "delete a message from the spool"),
    ):
        one = actions.add_parser(name, help=text)
        one.add_argument("id", metavar="ID")
        one.set_defaults(handler=run)
    export = actions.add_parser("export", help="write a message's content to an .eml file")
    export.add_argument("id", metavar="ID")
    export.add_argument(
        "--out", required=True, metavar="PATH", help="a file, or a folder to write <ID>.eml into"
    )
    for sub_parser in (listing, export):
        sub_parser.set_defaults(handler=run)
    parser.set_defaults(handler=run, action=None, all=False, json=False)


def _spool(args: argparse.Namespace) -> Spool:
    from relaywizard.core import settings
    from relaywizard.relay.spool import Spool

    if args.spool:
        root = Path(args.spool).expanduser()
    else:
        paths = AppPaths.default()
        config = Path(args.config).expanduser() if args.config else paths.settings_file
        configured = settings.load(config).relay.spool
        root = Path(configured).expanduser() if configured else paths.spool
    if not root.is_dir():
        raise ConfigError(f"There is no relay spool at {root}.", hint="Give the relay's --spool DIR.")
    return Spool(root)


def _row(envelope: Envelope) -> dict[str, Any]:
    from relaywizard.relay.control import message_row

    return message_row(envelope)


def _through_relay(spool: Spool, action: str, envelope_id: str) -> bool:
    """Ask the relay running on ``spool`` to retry or delete; False when no relay can be reached."""
    import asyncio

    from relaywizard.relay.control import ControlUnavailable
    from relaywizard.relay.control_client import request

    try:
        asyncio.run(request(spool.root, action, id=envelope_id))
    except ControlUnavailable:
        return False  # no relay (or not ours to control): the spool's lock decides what happens next
    return True


def run(args: argparse.Namespace) -> int:
    from relaywizard.relay.model import State
    from relaywizard.relay.spool import MessageNotFound, SpoolError

    spool = _spool(args)
    action = args.action or "list"
    try:
        if action == "list":
            states = None if args.all else [State.QUEUED, State.SENDING, State.DEAD]
            rows = [_row(e) for e in spool.list(states)]
            if args.json:
                print(json.dumps({"spool": str(spool.root), "messages": rows}, indent=2))
            else:
                _print_table(rows)
            return 0
        if action == "show":
            print(json.dumps(spool.get(args.id).to_json(), indent=2))
            return 0
        if action == "export":
            written = spool.export_eml(args.id, Path(args.out).expanduser())
            print(f"Wrote {written}.")
            return 0
        if _through_relay(spool, action, args.id):
            if action == "retry":
                print(f"Message {args.id} is queued again; the running relay sends it now.")
            else:
                print(f"Deleted message {args.id} (through the running relay).")
            return 0
        spool.open()  # retry and delete change the spool: only while no relay holds it
        try:
            if action == "retry":
                spool.retry(args.id)
                print(f"Message {args.id} is queued again; the relay sends it when it next runs.")
            else:
                spool.delete(args.id)
                print(f"Deleted message {args.id}.")
        finally:
            spool.close()
        return 0
    except MessageNotFound:
        raise UsageError(f"There is no message {args.id} in the spool {spool.root}.") from None
    except SpoolError:
        raise
    except OSError as exc:
        raise ConfigError(f"The spool {spool.root} could not be read: {exc.strerror or exc}.") from None


def _print_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("No messages waiting: the queue is empty.")
        return
    for row in rows:
        recipients = ", ".join(row["recipients"])
        print(
            f"{row['id']}  {row['state']:<7}  {row['received']}  {row['device']}  {row['sender']}"
            f" -> {recipients}  ({row['size']} bytes, {row['attempts']} attempt(s))"
        )
        if row["last_reply"]:
            print(f"    last reply: {row['last_reply']}")
        if row["explanation"]:
            print(f"    {row['explanation']}")
