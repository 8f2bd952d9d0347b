"""The relay's local control channel: status, pause/resume, queue actions and live events for the tray.

A running relay (``relaywizard relay``, or the tray's own) listens on a Unix socket that only the same
user, or root, may use. Two locks guard it: the socket lives in a private folder (0700, owned by the
user) with mode 0600, and every connection's peer is asked for its uid by the kernel (``SO_PEERCRED``
on Linux, ``LOCAL_PEERCRED`` on macOS) and refused, with one JSON error line, unless it is the relay's
own uid or 0. The socket is named after the spool it serves, and the relay also writes its path into
the spool (``control-socket``, a 0600 file in the spool's 0700 folder), so whoever knows the spool
(``relaywizard queue --spool``, the tray from the settings) finds the relay that owns it, even from an
environment with another runtime folder (a service, ``sudo``, a different ``XDG_RUNTIME_DIR``).

Protocol: one JSON object per line, answered by one JSON object per line::

    {"op": "status"}                       -> {"ok": true, "state": "running", "counts": {...}, ...}
    {"op": "pause"} / {"op": "resume"}     -> {"ok": true, "state": "paused"}
    {"op": "queue", "all": false}          -> {"ok": true, "messages": [...]}
    {"op": "retry" | "delete", "id": ID}   -> {"ok": true, "id": ID}
    {"op": "export", "id": ID, "path": P}  -> {"ok": true, "path": "/abs/ID.eml"}
    {"op": "watch"}                        -> {"ok": true, "watching": true, "status": {...}}, then one
                                              {"event": KIND, "text": ..., "state": ..., "counts": ...}
                                              line per event until the client hangs up
    anything wrong                         -> {"ok": false, "error": "One sentence."}

A line longer than 64 KB is answered with an error and the connection closed; a client that sends
nothing for ``idle_timeout`` seconds is told so and closed. Nothing a client sends can stop the relay.

Windows has no ``AF_UNIX`` peer credentials; there the channel would be a named pipe
(``\\\\.\\pipe\\relaywizard-<spool hash>``) created with a DACL granting access to the current user's SID
and to Administrators only (``CreateNamedPipe`` with a ``SECURITY_ATTRIBUTES`` built from an SDDL such
as ``D:P(A;;GA;;;<user SID>)(A;;GA;;;BA)``), and ``PIPE_REJECT_REMOTE_CLIENTS``. It is not built yet:
starting or reaching the channel there raises one readable ``ControlUnavailable`` sentence.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import socket
import stat
import struct
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from relaywizard.core.errors import ConfigError, RelayWizardError
from relaywizard.relay.model import Envelope, State

if TYPE_CHECKING:
    from relaywizard.relay.deliverylog import DeliveryLog
    from relaywizard.relay.engine import Relay
    from relaywizard.relay.forwarder_types import ForwarderEvent

log = logging.getLogger(__name__)

POINTER = "control-socket"
"""The file in the spool folder naming the control socket of the relay that owns the spool."""
RUNTIME_ENV = "RELAYWIZARD_RUNTIME_DIR"
"""Overrides where control sockets live (the systemd unit points it at its RuntimeDirectory)."""
MAX_LINE = 64 * 1024
IDLE_TIMEOUT = 30.0
WATCH_BACKLOG = 1000
"""Events a watcher may fall behind by before it is disconnected (a stuck tray must not eat memory)."""
OPS = ("status", "pause", "resume", "queue", "retry", "delete", "export", "watch")
_SUN_PATH_MAX = 104  # macOS; Linux allows 108


class ControlUnavailable(ConfigError):
    """The control channel cannot be set up or reached on this machine."""

    default_title = "Relay control unavailable"


# -- where the socket is ------------------------------------------------------------------------------


def runtime_dir() -> Path:
    """The folder of control sockets: ``$RELAYWIZARD_RUNTIME_DIR``, else the user's runtime folder."""
    override = os.environ.get(RUNTIME_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    with warnings.catch_warnings():
        # Without XDG_RUNTIME_DIR platformdirs warns and falls back to /tmp/runtime-<uid>, which
        # private_dir() then checks; the warning itself would break the CLI's one-line errors.
        warnings.simplefilter("ignore")
        return Path(platformdirs.user_runtime_dir("relaywizard", appauthor=False))


def socket_path(spool: Path, folder: Path | None = None) -> Path:
    """The control socket of the relay owning ``spool`` (short: socket paths are limited to ~104 bytes)."""
    key = hashlib.sha256(str(Path(spool).expanduser().resolve()).encode()).hexdigest()[:16]
    return (folder or runtime_dir()) / f"relay-{key}.sock"


def find_socket(spool: Path) -> Path:
    """Where the relay owning ``spool`` listens: the path it wrote into the spool, else the default."""
    try:
        named = (Path(spool).expanduser() / POINTER).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return socket_path(spool)
    return Path(named) if named and os.path.isabs(named) else socket_path(spool)


def _require_unix() -> None:
    if sys.platform == "win32":
        raise ControlUnavailable(
            "The relay's control channel is not available on Windows yet, so the tray cannot attach to "
            "a running relay service there."
        )


def private_dir(folder: Path) -> Path:
    """Create ``folder`` (0700) if needed and make sure only this user can reach what is inside."""
    _require_unix()
    uid = os.geteuid()
    try:
        if not folder.parent.exists():
            folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.mkdir(mode=0o700, exist_ok=True)
        parent, own = os.stat(folder.parent), os.lstat(folder)
        if not stat.S_ISDIR(own.st_mode) or own.st_uid != uid:
            raise ControlUnavailable(
                f"The control folder {folder} is not a folder of this user, so the relay will not put its "
                "control socket there."
            )
        if stat.S_IMODE(own.st_mode) & 0o077:
            os.chmod(folder, 0o700)
    except OSError as exc:
        raise ControlUnavailable(
            f"The control folder {folder} cannot be used: {exc.strerror or exc}."
        ) from None
    # Someone else able to rename entries in the parent could swap our folder for theirs.
    shared = stat.S_IMODE(parent.st_mode) & 0o022 and not parent.st_mode & stat.S_ISVTX
    if parent.st_uid not in (uid, 0) or shared:
        raise ControlUnavailable(
            f"The folder {folder.parent} can be changed by other users, so the relay will not put its "
            "control socket there.",
            hint=f"Set {RUNTIME_ENV} to a private folder.",
        )
    return folder


# -- who is calling -----------------------------------------------------------------------------------


class _SocketLike(Protocol):
    def getsockopt(self, level: int, optname: int, buflen: int, /) -> bytes: ...


def peer_uid(sock: _SocketLike) -> int:
    """The uid of the process at the other end of a connected Unix socket, as the kernel reports it."""
    if sys.platform.startswith("linux"):
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", raw)
        return int(uid)
    if sys.platform == "darwin" or "bsd" in sys.platform:
        # struct xucred { u_int cr_version; uid_t cr_uid; short cr_ngroups; gid_t cr_groups[16]; }
        sol_local, local_peercred = 0, 0x001
        raw = sock.getsockopt(sol_local, local_peercred, struct.calcsize("IIh16I"))
        _version, uid = struct.unpack_from("II", raw)
        return int(uid)
    raise ControlUnavailable(f"The relay cannot tell who connects to it on {sys.platform}.")


def allowed_uid(uid: int) -> bool:
    """Only the relay's own user and root may control it."""
    return uid in (os.geteuid(), 0)


# -- what the tray shows ------------------------------------------------------------------------------


def message_row(envelope: Envelope) -> dict[str, Any]:
    """One message as the queue view (``relaywizard queue --json``, the tray's window) shows it."""
    last = envelope.last_attempt
    return {
        "id": envelope.id,
        "state": str(envelope.state),
        "received": dt.datetime.fromtimestamp(envelope.received_at, dt.UTC).isoformat(timespec="seconds"),
        "device": envelope.device,
        "sender": envelope.mail_from,
        "recipients": envelope.rcpt_tos,
        "size": envelope.size,
        "attempts": len(envelope.attempts),
        "last_reply": last.reply if last else None,
        "code": last.code if last else None,
        "explanation": last.explanation if last else None,
    }


def overall_state(*, paused: bool, upstream: str, counts: dict[str, int]) -> str:
    """running, paused, delivering or errors waiting (a relay that answers is never "stopped")."""
    if paused:
        return "paused"
    if upstream in ("down", "auth_failed") or counts.get(State.DEAD, 0) > 0:
        return "errors waiting"
    if counts.get(State.SENDING, 0) > 0 or counts.get(State.QUEUED, 0) > 0:
        return "delivering"
    return "running"


class RelayStatus:
    """Counts of the day, the upstream's health and the last error, kept from the relay's events.

    Give ``on_event`` and ``on_queued`` to ``Relay``; the control server (and a tray running the relay
    in-process) read ``snapshot()`` and ``subscribe()`` to the events.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.upstream = "unknown"
        self.last_error: dict[str, Any] | None = None
        self._day = self._today()
        self.delivered_today = 0
        self.failed_today = 0
        self._watchers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self.relay: Relay | None = None
        self.warnings: list[str] = []
        """What is about to stop the relay working (a credential's expiry), newest last; kept for the
        status, so a tray that attaches later still hears of it."""

    def _today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.clock()).date()

    def _roll(self) -> None:
        today = self._today()
        if today != self._day:
            self._day, self.delivered_today, self.failed_today = today, 0, 0

    def listener(
        self, also: Callable[[ForwarderEvent], None] | None = None
    ) -> Callable[[ForwarderEvent], None]:
        """An ``on_event`` for ``Relay`` that records the event here, then passes it to ``also``."""

        def on_event(event: ForwarderEvent) -> None:
            self.on_event(event)
            if also is not None:
                also(event)

        return on_event

    async def load_today(self, delivery_log: DeliveryLog, limit: int = 20_000) -> None:
        """Count today's deliveries and failures from the delivery log, before the relay starts."""
        self.seed(await asyncio.to_thread(delivery_log.read, limit))

    def seed(self, records: list[dict[str, Any]]) -> None:
        """Count today's deliveries and failures from delivery-log records (newest first), at start."""
        midnight = dt.datetime.combine(self._day, dt.time()).astimezone()
        for record in records:
            try:
                at = dt.datetime.fromisoformat(str(record["time"]).replace("Z", "+00:00"))
            except (KeyError, ValueError):
                continue
            if at < midnight:
                break
            if record.get("result") == "delivered":
                self.delivered_today += 1
            elif record.get("result") == "dead":
                self.failed_today += 1

    def on_event(self, event: ForwarderEvent) -> None:
        self._roll()
        if event.kind == "delivered":
            self.delivered_today += 1
            self.upstream = "up"
        elif event.kind == "dead":
            self.failed_today += 1
        elif event.kind in ("auth_failed", "upstream_down"):
            self.upstream = "auth_failed" if event.kind == "auth_failed" else "down"
        elif event.kind == "upstream_up":
            self.upstream = "up"
        if event.kind in ("dead", "auth_failed", "upstream_down"):
            self.last_error = {"kind": event.kind, "text": event.text, "at": event.at, "code": event.code}
        self.publish(
            {
                "event": event.kind,
                "text": event.text,
                "at": event.at,
                "id": event.envelope_id,
                "reply": event.reply,
                "code": event.code,
            }
        )

    def on_queued(self, envelope: Envelope) -> None:
        text = f"Message {envelope.id} from {envelope.device} queued for {', '.join(envelope.rcpt_tos)}."
        self.publish({"event": "queued", "text": text, "at": self.clock(), "id": envelope.id})

    def publish(self, event: dict[str, Any]) -> None:
        """Send an event, with the state and the counts after it (``_brief``), to every watcher."""
        if not self._watchers:
            return
        event = {**event, **self._brief()}
        for queue in list(self._watchers):
            if queue.qsize() >= WATCH_BACKLOG:
                self._watchers.discard(queue)
                queue.put_nowait(None)  # the watcher is told it fell behind, and closed
            else:
                queue.put_nowait(event)

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._watchers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._watchers.discard(queue)

    def _brief(self) -> dict[str, Any]:
        relay = self.relay
        if relay is None:
            return {"state": "stopped", "counts": {}}
        counts = {str(state): n for state, n in relay.counts().items()}
        paused = relay.forwarder.paused
        return {
            "state": overall_state(paused=paused, upstream=self.upstream, counts=counts),
            "counts": counts,
            "delivered_today": self.delivered_today,
            "failed_today": self.failed_today,
            "last_error": self.last_error,
        }

    def snapshot(self) -> dict[str, Any]:
        """Everything the tray's icon, tooltip and menu need, as plain JSON."""
        self._roll()
        brief = self._brief()
        relay = self.relay
        upstream: dict[str, Any] = {"state": self.upstream}
        if relay is not None:
            config = relay.config
            host, port = relay.address
            upstream |= {"host": config.upstream.host, "port": config.upstream.port}
            brief |= {"listen": f"{host}:{port}", "spool": str(config.spool), "pid": os.getpid()}
        return {
            "delivered_today": self.delivered_today,
            "failed_today": self.failed_today,
            "last_error": self.last_error,
            **brief,
            "warnings": list(self.warnings),
            "upstream": upstream,
        }


# -- the server ---------------------------------------------------------------------------------------


class _Refused(Exception):
    """A request that gets an error reply; the connection stays open."""


class ControlServer:
    """Serves one relay's control socket: ``await start()``, ``await close()``."""

    def __init__(
        self,
        relay: Relay,
        status: RelayStatus,
        path: Path,
        *,
        peer_uid: Callable[[Any], int] = peer_uid,
        allowed: Callable[[int], bool] = allowed_uid,
        idle_timeout: float = IDLE_TIMEOUT,
        pointer: Path | None = None,
    ) -> None:
        self.relay = relay
        self.pointer = pointer
        """A file to write the socket's path into (the spool's ``control-socket``), removed on close."""
        self.status = status
        self.path = Path(path)
        self.peer_uid = peer_uid
        self.allowed = allowed
        self.idle_timeout = idle_timeout
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._closing = False
        self._bound: tuple[int, int] | None = None

    async def start(self) -> None:
        _require_unix()
        private_dir(self.path.parent)
        if len(os.fsencode(self.path)) >= _SUN_PATH_MAX:
            raise ControlUnavailable(
                f"The control socket path {self.path} is too long for a Unix socket.",
                hint=f"Set {RUNTIME_ENV} to a shorter folder.",
            )
        await self._clear_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(os.fspath(self.path))
            # The folder is private already; the mode is the second lock, should the folder be opened.
            os.chmod(self.path, 0o600)
            sock.listen(16)
            sock.setblocking(False)
            self._server = await asyncio.start_unix_server(self._connected, sock=sock, limit=MAX_LINE + 2)
        except OSError as exc:
            sock.close()
            raise ControlUnavailable(
                f"The control socket {self.path} cannot be created: {exc.strerror or exc}."
            ) from None
        info = os.stat(self.path)
        self._bound = (info.st_dev, info.st_ino)
        if self.pointer is not None:
            self._write_pointer(self.pointer)
        self.status.relay = self.relay

    def _write_pointer(self, pointer: Path) -> None:
        tmp = pointer.with_name(f".{pointer.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(f"{self.path}\n")
            os.replace(tmp, pointer)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.warning(
                "control channel: cannot write %s (clients look in the default place): %s", pointer, exc
            )

    async def _clear_stale(self) -> None:
        """Remove a socket left by a relay that died; refuse when a live relay answers on it."""
        if not self.path.exists() and not self.path.is_symlink():
            return
        if not stat.S_ISSOCK(os.lstat(self.path).st_mode):
            raise ControlUnavailable(f"{self.path} is in the way of the relay's control socket.")
        try:
            async with asyncio.timeout(2):
                _, writer = await asyncio.open_unix_connection(os.fspath(self.path))
        except (OSError, TimeoutError):
            self.path.unlink(missing_ok=True)
            return
        writer.close()
        raise ControlUnavailable(f"Another relay is already answering on the control socket {self.path}.")

    async def close(self) -> None:
        """Stop listening, hang up on every client, remove the socket."""
        self._closing = True
        self.status.relay = None
        if self._server is not None:
            self._server.close()
        for task in list(self._clients):
            task.cancel()
        for task in list(self._clients):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        self._remove_socket()

    def _remove_socket(self) -> None:
        if self.pointer is not None and self._bound is not None:
            with contextlib.suppress(OSError):
                if self.pointer.read_text(encoding="utf-8").strip() == str(self.path):
                    self.pointer.unlink()
        with contextlib.suppress(OSError):
            info = os.stat(self.path)
            if self._bound == (info.st_dev, info.st_ino):  # never remove a successor's socket
                self.path.unlink()
        self._bound = None

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, TimeoutError):
            pass  # the client went away, or stopped reading its replies
        except asyncio.CancelledError:
            # close() hangs up: end normally, as Python 3.11's StreamReaderProtocol logs a traceback for
            # a handler task that ends cancelled (task.exception() raises); any other cancel goes on.
            if not self._closing:
                raise
        except Exception:
            log.exception("control channel: a connection failed")
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            uid = self.peer_uid(writer.get_extra_info("socket"))
        except (OSError, RelayWizardError) as exc:
            log.warning("control channel: cannot tell who connected: %s", exc)
            uid = -1
        if not self.allowed(uid):
            log.warning("control channel: refused a connection from uid %d", uid)
            await _send(writer, _error("Only the user running the relay, or root, may control it."))
            await _linger(reader, writer)
            return
        while True:
            try:
                async with asyncio.timeout(self.idle_timeout):
                    line = await reader.readline()
            except TimeoutError:
                await _send(writer, _error("Nothing was asked in time, so the connection is closed."))
                return
            except ValueError:  # longer than the limit: the rest of the stream cannot be trusted
                await _send(writer, _error(f"A request line is longer than {MAX_LINE // 1024} KB."))
                await _linger(reader, writer)
                return
            if not line:
                return
            if not line.strip():
                continue
            try:
                request = _parse(line)
                if request["op"] == "watch":
                    await self._watch(reader, writer)
                    return
                reply = await self._answer(request)
            except _Refused as exc:
                reply = _error(str(exc))
            except RelayWizardError as exc:
                reply = _error(exc.one_line())
            except Exception:
                log.exception("control channel: a request failed")
                reply = _error("The relay could not do that because of an internal error; see its log.")
            await _send(writer, reply)

    async def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        relay = self.relay
        if op == "status":
            return {"ok": True, **self.status.snapshot()}
        if op in ("pause", "resume"):
            if op == "pause":
                relay.pause()
            else:
                relay.resume()
            self.status.publish({"event": "paused" if op == "pause" else "resumed", "at": time.time()})
            return {"ok": True, "state": self.status.snapshot()["state"]}
        if op == "queue":
            states = None if request.get("all") else [State.QUEUED, State.SENDING, State.DEAD]
            envelopes = await asyncio.to_thread(relay.spool.list, states)  # reads only, may be many files
            return {"ok": True, "messages": [message_row(e) for e in envelopes]}
        envelope_id = request.get("id")
        if not isinstance(envelope_id, str) or not envelope_id:
            raise _Refused(f"The {op} request needs the message id as a string.")
        if op == "retry":
            relay.spool.retry(envelope_id)
            relay.forwarder.wake()
            return {"ok": True, "id": envelope_id, "state": str(State.QUEUED)}
        if op == "delete":
            relay.spool.delete(envelope_id)
            return {"ok": True, "id": envelope_id}
        target = request.get("path")
        if not isinstance(target, str) or not os.path.isabs(target):
            raise _Refused("The export request needs an absolute path to write the .eml file to.")
        written = await asyncio.to_thread(relay.spool.export_eml, envelope_id, Path(target))
        return {"ok": True, "id": envelope_id, "path": str(written)}

    async def _watch(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue = self.status.subscribe()
        try:
            await _send(writer, {"ok": True, "watching": True, "status": self.status.snapshot()})
            hangup = asyncio.ensure_future(_until_eof(reader))  # what a watcher sends is ignored
            try:
                while True:
                    getting = asyncio.ensure_future(queue.get())
                    try:
                        done, _ = await asyncio.wait({getting, hangup}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        if not getting.done():  # hung up, or the channel closing: no task left pending
                            getting.cancel()
                    if getting not in done:
                        return
                    event = getting.result()
                    if event is None:
                        await _send(writer, _error("The watcher fell too far behind the relay's events."))
                        return
                    await _send(writer, event)
            finally:
                hangup.cancel()
        finally:
            self.status.unsubscribe(queue)


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seconds: float = 1.0) -> None:
    """Before hanging up on a client whose request was not read: say we are done writing and read what it
    still sends (briefly), so closing with unread data does not reset the connection and lose our reply."""
    with contextlib.suppress(OSError, RuntimeError):
        if writer.can_write_eof():
            writer.write_eof()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(seconds):
            await _until_eof(reader)


async def _until_eof(reader: asyncio.StreamReader) -> None:
    while await reader.read(4096):
        pass


def _error(text: str) -> dict[str, Any]:
    return {"ok": False, "error": text}


def _parse(line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: 64 KB of "[" nests too deep for the parser
        raise _Refused("The request is not valid JSON.") from None
    if not isinstance(request, dict):
        raise _Refused("The request must be one JSON object.")
    op = request.get("op")
    if op not in OPS:
        raise _Refused(f"Unknown operation {json.dumps(op)}; use one of {', '.join(OPS)}.")
    return request


async def _send(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    writer.write(json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
    async with asyncio.timeout(10):  # a client that never reads is dropped, not waited on
        await writer.drain()


async def start_control(relay: Relay, status: RelayStatus, path: Path | None = None) -> ControlServer:
    """Open the control channel of a started relay, at the socket named after its spool."""
    spool = relay.config.spool
    server = ControlServer(relay, status, path or socket_path(spool), pointer=spool / POINTER)
    await server.start()
    return server
