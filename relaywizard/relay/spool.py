"""The durable spool: a message answered 250 is on disk, and no crash loses it.

Layout under the root (folders 0700, files 0600)::

    lock                  flock'd by the one relay that owns the spool; holds its pid
    data/<id>.eml         the content as received: written once, fsync'd, never rewritten
    incoming/<id>.json    not written any more (older relays used it); discarded on recovery
    queued/  sending/  done/  dead/   <id>.json

A message's state is the folder its envelope is in, and a state change is one ``rename``. Envelopes
are written as ``<id>.json.tmp`` + fsync + rename, so no reader sees half of one; recovery removes
``.tmp`` files. Accepting fsyncs the content and the envelope, then the ``data`` folder, *before* the
envelope is renamed into ``queued``, then fsyncs ``queued``: whenever a queued envelope exists, its
content does too, and the device is answered only after that last fsync. Writes run in a worker
thread as a group commit: messages arriving while a group is written go together in the next one,
with one fsync per folder for the whole group. Claiming (QUEUED -> SENDING) is not fsync'd, as
SENDING is recovered as QUEUED anyway. A delivered message's envelope moves to ``done`` with its
last attempt, fsync'd per group but not per file (a power cut may at worst send it again), and its
content is removed; the envelope goes after ``keep_done`` (7 days).

One process owns a spool (the flock); it keeps the QUEUED envelopes in memory to pick due messages
without reading the disk. Reading methods (``list``, ``get``, ``counts``, ``export_eml``...) also work
without ``open()``, so ``relaywizard queue`` can look at the spool of a running relay. All methods
are meant to be called from the event loop's thread; the slow I/O of the hot path runs in workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import errno
import fcntl
import heapq
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload

from relaywizard.core.errors import ConfigError
from relaywizard.relay.model import Attempt, Envelope, State
from relaywizard.relay.rewrite import header_end

log = logging.getLogger(__name__)
T = TypeVar("T")
Buffer = bytes | memoryview
_IOV_MAX = 1024

INLINE_READ = 256 * 1024
"""Content up to this size is read on the event loop (see ``Spool.content``)."""
DONE_KEEP_SECONDS = 7 * 24 * 3600
"""How long a delivered message's envelope stays visible in the queue view."""

# Which copy wins when a crash left a message in two folders (possible only on a file system whose
# renames are not atomic): the one that got furthest.
_PRECEDENCE = (State.DONE, State.DEAD, State.SENDING, State.QUEUED, State.INCOMING)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,79}")
_REASONS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EEXIST: "{f} is a file, not a folder",
    errno.ENOTDIR: "part of the path {f} is a file, not a folder",
    errno.EISDIR: "{f} is a folder, not a file",
}


class ContentChunks(Sequence[bytes]):
    """A large message's content as chunks read from its file when asked for, never all at once.

    Chunks end at a line end (after an LF), about ``CHUNK`` bytes each; the first one is the header
    block exactly (when it ends within the first chunk), so a sender rewrite can replace it alone
    (``with_head``). Each access reads its chunk again: a forwarder passing over the message three
    times (size, 8-bit and line-end checks, sending) holds one chunk at a time, not the message.
    """

    CHUNK = 1 << 20

    def __init__(self, path: Path, bounds: list[int], head: bytes | None = None) -> None:
        self.path = path
        self.bounds = bounds
        self.head = head
        self.nbytes = bounds[-1] - bounds[0] + (0 if head is None else len(head) - (bounds[1] - bounds[0]))

    @classmethod
    def scan(cls, path: Path) -> ContentChunks:
        """Find the chunk boundaries (reading the file once, a chunk at a time)."""
        bounds = [0]
        with path.open("rb") as file:
            while block := file.read(cls.CHUNK):
                cut = len(block)
                if len(bounds) == 1 and 0 < (end := header_end(block)) < len(block):
                    cut = end
                elif len(block) == cls.CHUNK and (newline := block.rfind(b"\n")) >= 0:
                    cut = newline + 1
                bounds.append(bounds[-1] + cut)
                file.seek(bounds[-1])
        if len(bounds) == 1:
            bounds.append(0)
        return cls(path, bounds)

    def with_head(self, head: bytes) -> ContentChunks:
        """The same content with its first chunk (the header block) replaced by ``head``."""
        return ContentChunks(self.path, self.bounds, head)

    def __len__(self) -> int:
        return len(self.bounds) - 1

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        if index == 0 and self.head is not None:
            return self.head
        start, end = self.bounds[index], self.bounds[index + 1]
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.pread(fd, end - start, start)
        finally:
            os.close(fd)
        if len(data) != end - start:
            raise OSError(f"the content file {self.path} changed while it was being sent")
        return data


class SpoolError(ConfigError):
    """The spool folder cannot be used, or a message in it cannot be saved or changed."""

    default_title = "Spool problem"


class MessageNotFound(SpoolError):
    """No message with that id is in the spool."""

    default_title = "No such message"


def _reason(exc: OSError) -> str:
    """An OSError in words, without Python's ``[Errno 13]`` noise."""
    template = _REASONS.get(exc.errno or 0)
    if template is not None:
        return template.format(f=exc.filename or "the path")
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


@contextlib.contextmanager
def _open_new(path: Path) -> Iterator[int]:
    """A new file (0600) to write, closed after; removed again if writing it failed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        yield fd
    except BaseException:
        os.close(fd)
        _unlink(path)
        raise
    os.close(fd)


def _write_all(fd: int, data: Buffer) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_file(path: Path, data: Buffer | Sequence[Buffer], *, exclusive: bool = False) -> None:
    """Write ``data`` (bytes, or pieces written as one) to a new file (0600) and fsync it.

    On an error, remove what was written. Pieces go out with ``writev``: a message received in pieces
    is never joined in memory just to be written.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        if isinstance(data, bytes | memoryview):
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        else:
            _write_pieces(fd, data)
        os.fsync(fd)
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)


def _write_pieces(fd: int, pieces: Sequence[Buffer]) -> None:
    views = [memoryview(piece) for piece in pieces if len(piece)]
    while views:
        written = os.writev(fd, views[:_IOV_MAX])
        while written and written >= len(views[0]):  # drop what went out whole, trim a piece cut short
            written -= len(views.pop(0))
        if written:
            views[0] = views[0][written:]


def _as_json(envelope: Envelope) -> dict[str, Any]:
    """``envelope.to_json()`` without ``dataclasses.asdict``, which deep-copies field by field: it took
    a third of a millisecond per message, several times per message, on the relay's event loop."""
    data = dict(vars(envelope))
    data["state"] = str(envelope.state)
    data["rcpt_tos"] = list(envelope.rcpt_tos)
    data["attempts"] = [dict(vars(attempt)) for attempt in envelope.attempts]
    data["failed_rcpts"] = dict(envelope.failed_rcpts)
    return data


def _encode(envelope: Envelope) -> bytes:
    return json.dumps(_as_json(envelope), ensure_ascii=False, separators=(",", ":")).encode()


def _load(path: Path, state: State) -> Envelope:
    """Read an envelope; its state is the folder it is in. FileNotFoundError passes through."""
    raw = path.read_bytes()
    try:
        envelope = Envelope.from_json(json.loads(raw))
    except (ValueError, TypeError, KeyError) as exc:
        raise SpoolError(f"The spool file {path} is damaged and cannot be read.") from exc
    envelope.state = state
    return envelope


def _copy(envelope: Envelope) -> Envelope:
    """A deep copy, so the spool's own envelopes never alias a caller's."""
    copied = copy.copy(envelope)
    copied.rcpt_tos = list(envelope.rcpt_tos)
    copied.attempts = [copy.copy(attempt) for attempt in envelope.attempts]
    copied.failed_rcpts = dict(envelope.failed_rcpts)
    return copied


class _Schedule:
    """The QUEUED envelopes in memory: which are due, oldest first, and when the next one is due.

    Three heaps with lazy deletion (an entry counts only while its message is still queued under the same
    sequence number), so claiming and asking for the next due time cost O(log n) even with a backlog.
    """

    def __init__(self) -> None:
        self.queued: dict[str, tuple[Envelope, int]] = {}
        self._seq = 0
        self._waiting: list[tuple[float, int, str]] = []  # (next_attempt_at, seq, id), not yet due
        self._due: list[tuple[float, str, int]] = []  # (received_at, id, seq): due, oldest first
        self._due_at: list[tuple[float, int, str]] = []  # (next_attempt_at, seq, id) of the due ones

    def add(self, envelope: Envelope) -> None:
        self._seq += 1
        self.queued[envelope.id] = (envelope, self._seq)
        heapq.heappush(self._waiting, (envelope.next_attempt_at, self._seq, envelope.id))
        if len(self._waiting) + len(self._due) + len(self._due_at) > 4 * len(self.queued) + 1024:
            # Stale entries pile up when many messages are retried or deleted: start over.
            self._waiting = [(e.next_attempt_at, seq, i) for i, (e, seq) in self.queued.items()]
            heapq.heapify(self._waiting)
            self._due, self._due_at = [], []

    def discard(self, envelope_id: str) -> Envelope | None:
        entry = self.queued.pop(envelope_id, None)
        return None if entry is None else entry[0]

    def _live(self, envelope_id: str, seq: int) -> bool:
        entry = self.queued.get(envelope_id)
        return entry is not None and entry[1] == seq

    def take(self, limit: int, now: float) -> list[Envelope]:
        while self._waiting and self._waiting[0][0] <= now:
            at, seq, envelope_id = heapq.heappop(self._waiting)
            if self._live(envelope_id, seq):
                heapq.heappush(self._due, (self.queued[envelope_id][0].received_at, envelope_id, seq))
                heapq.heappush(self._due_at, (at, seq, envelope_id))
        taken: list[Envelope] = []
        not_yet: list[tuple[float, str, int]] = []  # only when a caller's clock went back
        while self._due and len(taken) < limit:
            entry = heapq.heappop(self._due)
            if self._live(entry[1], entry[2]):
                envelope = self.queued[entry[1]][0]
                if envelope.next_attempt_at > now:
                    not_yet.append(entry)
                else:
                    del self.queued[entry[1]]
                    taken.append(envelope)
        for entry in not_yet:
            heapq.heappush(self._due, entry)
        return taken

    def next_due(self) -> float | None:
        for heap in (self._due_at, self._waiting):
            while heap and not self._live(heap[0][2], heap[0][1]):
                heapq.heappop(heap)
        return min((heap[0][0] for heap in (self._due_at, self._waiting) if heap), default=None)


@dataclass
class _Job:
    """One message's share of a group commit (see ``Spool._commit_group``); runs in a worker thread.

    ``prepare`` writes (and fsyncs) new files; the folders in ``before`` are fsync'd once all jobs are
    prepared and before any ``commit``, which renames; the folders in ``after`` are fsync'd once all
    jobs are committed; then ``cleanup`` removes what is no longer needed (errors ignored). A job that
    fails is ``undo``ne and ``explain`` turns its OSError into the one sentence its caller gets; the
    other jobs of the group go on.
    """

    prepare: Callable[[], None]
    commit: Callable[[], None]
    undo: Callable[[], None]
    explain: Callable[[OSError], Exception]
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    cleanup: Callable[[], None] | None = None
    error: Exception | None = None

    def fail(self, exc: OSError) -> None:
        self.error = self.explain(exc)
        self.undo()


def _nothing() -> None:
    """A job's ``prepare`` once it has run."""


def _prepare(job: _Job) -> None:
    try:
        job.prepare()
    except OSError as exc:
        job.fail(exc)


def _folders(jobs: Iterable[_Job], which: str) -> list[str]:
    """The folders the jobs need fsync'd, once each, in the order they were first named."""
    return list(dict.fromkeys(folder for job in jobs for folder in getattr(job, which)))


class Spool:
    """Messages on disk, each in one state folder; see the module docstring for the layout."""

    def __init__(self, root: Path, *, keep_done: float = DONE_KEEP_SECONDS) -> None:
        self.root = Path(root)
        self.keep_done = keep_done
        self._lock_fd: int | None = None
        self._schedule = _Schedule()
        self._sending: dict[str, Envelope] = {}
        self._finishing: set[str] = set()
        self._background: set[asyncio.Future[Any]] = set()
        self._counts: dict[State, int] = dict.fromkeys(State, 0)
        self._tidied = {"pruned": 0, "damaged": 0}  # by open(), reported by recover()
        self._waiting_jobs: list[tuple[_Job, asyncio.Future[None]]] = []
        self._committing: asyncio.Task[None] | None = None

    # -- paths ------------------------------------------------------------------------------------------

    def _json(self, state: State, envelope_id: str) -> Path:
        return self.root / state.value / f"{envelope_id}.json"

    def _data(self, envelope_id: str) -> Path:
        return self.root / "data" / f"{envelope_id}.eml"

    def content_path(self, envelope_id: str) -> Path:
        """Where the message's content is (for streaming a large message instead of reading it)."""
        self._check_id(envelope_id)
        return self._data(envelope_id)

    def _check_id(self, envelope_id: str) -> None:
        # Ids become file names: nothing like "../x" may reach the file system.
        if not _ID.fullmatch(envelope_id):
            raise MessageNotFound(f"There is no message {envelope_id!r} in the spool {self.root}.")

    def _ids(self, folder: str, suffix: str = ".json") -> set[str]:
        return {n.removesuffix(suffix) for n in os.listdir(self.root / folder) if n.endswith(suffix)}

    def _sync_dir(self, folder: str) -> None:
        """Make the names in ``folder`` durable (new files, renames into and out of it)."""
        # Opened each time: a descriptor kept open could be closed by close() under a worker thread.
        fd = os.open(self.root / folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- owning the spool -------------------------------------------------------------------------------

    def open(self) -> None:
        """Take the spool (create its folders, lock it), check it works, and load the queue."""
        if self._lock_fd is not None:
            return
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._lock_fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise self._unusable(exc) from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            pid = os.pread(self._lock_fd, 32, 0).decode(errors="replace").strip() or "unknown"
            self.close()
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise self._unusable(exc) from None
            raise SpoolError(
                f"The spool folder {self.root} is already in use by another relaywizard (pid {pid}).",
                hint="Stop the other relay, or give this one another folder with --spool.",
            ) from None
        try:
            os.ftruncate(self._lock_fd, 0)
            os.pwrite(self._lock_fd, f"{os.getpid()}\n".encode(), 0)
            for folder in (*State, "data"):
                path = self.root / folder
                path.mkdir(mode=0o700, exist_ok=True)
                path.chmod(0o700)
                probe = path / f".probe-{os.getpid()}.tmp"  # proves we can write and fsync here
                _write_file(probe, b"probe")
                probe.unlink()
                self._sync_dir(folder)
            self._tidied["pruned"] += self.prune_done()
            self._load_queue()
        except OSError as exc:
            self.close()
            raise self._unusable(exc) from None

    def _unusable(self, exc: OSError) -> SpoolError:
        return SpoolError(
            f"The spool folder {self.root} cannot be used: {_reason(exc)}.",
            hint="Fix it, or choose another folder with --spool.",
        )

    def close(self) -> None:
        """Release the lock (another relay may then open the spool); stop accepting and sending first."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def _require_open(self) -> None:
        if self._lock_fd is None:
            raise RuntimeError(f"the spool {self.root} is not open")

    def _load_queue(self) -> None:
        """Rebuild the in-memory view (queue and counts) from the folders."""
        self._schedule = _Schedule()
        for envelope_id in self._ids(State.QUEUED):
            path = self._json(State.QUEUED, envelope_id)
            try:
                self._schedule.add(_load(path, State.QUEUED))
            except SpoolError:
                # Kept for a person to look at, out of the way of the relay.
                log.warning("spool: %s is damaged; renamed to .corrupt", path)
                os.rename(path, path.with_name(path.name + ".corrupt"))
                self._tidied["damaged"] += 1
        self._counts = {state: len(self._ids(state)) for state in State}

    def recover(self) -> dict[str, int]:
        """Repair the spool after a crash; returns how many messages each repair touched.

        SENDING goes back to QUEUED (it may be sent twice, never lost); INCOMING was never answered and
        is removed, as is content no envelope needs; an envelope whose content is gone becomes DEAD.
        Call it once after ``open()``, before anything is accepted or claimed.
        """
        self._require_open()
        try:
            return self._recover()
        except OSError as exc:
            raise self._unusable(exc) from None

    def _recover(self) -> dict[str, int]:
        report = dict.fromkeys(("duplicates", "discarded", "requeued", "orphans", "missing_content"), 0)
        for folder in (*State, "data"):
            for name in os.listdir(self.root / folder):
                if name.endswith(".tmp"):
                    os.unlink(self.root / folder / name)
        ids = {state: self._ids(state) for state in State}
        seen: set[str] = set()
        for state in _PRECEDENCE:
            for envelope_id in ids[state] & seen:
                os.unlink(self._json(state, envelope_id))
                report["duplicates"] += 1
            ids[state] -= seen
            seen |= ids[state]
        for envelope_id in ids[State.INCOMING]:
            os.unlink(self._json(State.INCOMING, envelope_id))
            report["discarded"] += 1
        for envelope_id in ids[State.SENDING]:
            os.rename(self._json(State.SENDING, envelope_id), self._json(State.QUEUED, envelope_id))
            ids[State.QUEUED].add(envelope_id)
            report["requeued"] += 1
        content = {n[:-4] for n in os.listdir(self.root / "data") if n.endswith(".eml")}
        damaged = set().union(*(self._ids(state, ".json.corrupt") for state in State))
        for envelope_id in content - ids[State.QUEUED] - ids[State.DEAD] - damaged:
            os.unlink(self._data(envelope_id))
            report["orphans"] += 1
        for envelope_id in ids[State.QUEUED] - content:
            self._bury_without_content(envelope_id)
            report["missing_content"] += 1
        for folder in (*State, "data"):
            self._sync_dir(folder)
        self._tidied["pruned"] += self.prune_done()
        self._load_queue()
        report |= self._tidied
        self._tidied = dict.fromkeys(self._tidied, 0)
        report["queued"] = self._counts[State.QUEUED]
        self._sending.clear()
        return report

    def _bury_without_content(self, envelope_id: str) -> None:
        path = self._json(State.QUEUED, envelope_id)
        try:
            envelope = _load(path, State.DEAD)
        except SpoolError:
            return  # _load_queue quarantines it
        envelope.attempts.append(
            Attempt(
                at=time.time(),
                result="dead",
                reply=f"The content of this message ({self._data(envelope_id).name}) is missing "
                "from the spool folder.",
                explanation="It cannot be delivered: the spool folder was damaged or changed by hand. "
                "Ask the sender to send it again.",
            )
        )
        self._move(envelope, State.QUEUED, State.DEAD)

    def prune_done(self, now: float | None = None) -> int:
        """Forget delivered messages older than ``keep_done``; returns how many were removed."""
        cutoff = (time.time() if now is None else now) - self.keep_done
        pruned = 0
        with os.scandir(self.root / State.DONE) as entries:
            for entry in entries:
                if entry.name.endswith(".json") and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self._data(entry.name[:-5]))
                    pruned += 1
        self._counts[State.DONE] -= min(pruned, self._counts[State.DONE])
        return pruned

    # -- the hot path -----------------------------------------------------------------------------------

    async def accept(self, envelope: Envelope, content: bytes | Sequence[Buffer]) -> Envelope:
        """Store a message durably in QUEUED; only then may the device be answered 250.

        ``content`` is the message, whole or in pieces (written one after the other, never joined).
        """
        self._require_open()
        if not _ID.fullmatch(envelope.id):
            raise ValueError(f"not a spool id: {envelope.id!r}")
        queued = _copy(envelope)
        queued.state = State.QUEUED
        return await self._to_the_end(self._accept(queued, content))

    async def _accept(self, queued: Envelope, content: bytes | Sequence[Buffer]) -> Envelope:
        await self._group_commit(self._accept_job(queued, content))
        self._schedule.add(queued)
        self._counts[State.QUEUED] += 1
        return _copy(queued)

    async def _to_the_end(self, work: Coroutine[Any, Any, T], late: Callable[[T], None] | None = None) -> T:
        """Run ``work`` to its end even if the caller is cancelled, so disk and memory always agree.

        A worker thread cannot be stopped half-way anyway; ``late`` gets the result nobody awaited.
        """
        task = asyncio.ensure_future(work)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            self._background.add(task)
            task.add_done_callback(lambda done: self._ended_late(done, late))
            raise

    def _ended_late(self, task: asyncio.Future[T], late: Callable[[T], None] | None) -> None:
        self._background.discard(task)
        if task.cancelled():
            return
        if (exc := task.exception()) is not None:
            log.error("spool: %s", exc)
        elif late is not None:
            late(task.result())

    def _accept_job(self, envelope: Envelope, content: bytes | Sequence[Buffer]) -> _Job:
        """Content and envelope written and fsync'd; the ``data`` folder fsync'd (the content's name is
        durable) before the envelope is renamed into ``queued``; ``queued`` fsync'd before the 250."""
        data = self._data(envelope.id)
        queued = self._json(State.QUEUED, envelope.id)
        tmp = queued.with_name(queued.name + ".tmp")
        encoded = _encode(envelope)
        written: list[Path] = []  # what to remove if this fails: never another message's files

        def prepare() -> None:
            _write_file(data, content, exclusive=True)
            written.append(data)
            _write_file(tmp, encoded)
            written.append(tmp)

        def commit() -> None:
            os.rename(tmp, queued)
            written[-1] = queued

        def undo() -> None:
            for path in written:
                with contextlib.suppress(OSError):
                    os.unlink(path)

        def explain(exc: OSError) -> Exception:
            if isinstance(exc, FileExistsError) and not written:
                return SpoolError(f"A message with the id {envelope.id} is already in the spool.")
            return SpoolError(
                f"The message could not be saved in the spool folder {self.root}: {_reason(exc)}."
            )

        return _Job(prepare, commit, undo, explain, before=("data",), after=(State.QUEUED,))

    async def _group_commit(self, job: _Job) -> None:
        """Run ``job``: its files at once in a worker of its own, then its renames with the others ready.

        Each message's files are written and fsync'd in parallel with the others' (the file system
        merges fsyncs that come together into one journal commit; one after the other, each would
        wait for its own). The renames and the folder fsyncs are then done for all the messages ready
        at that moment in one worker: when the spool is idle that is one message, so nothing waits
        for a group, and under load two folder fsyncs serve many messages.
        """
        if job.prepare is not _nothing:
            await asyncio.to_thread(_prepare, job)
            job.prepare = _nothing
            if job.error is not None:
                raise job.error
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting_jobs.append((job, future))
        if self._committing is None:
            self._committing = asyncio.ensure_future(self._commit_groups())
        await future

    async def _commit_groups(self) -> None:
        try:
            while self._waiting_jobs:
                group, self._waiting_jobs = self._waiting_jobs, []
                try:
                    await asyncio.to_thread(self._commit_group, [job for job, _ in group])
                except asyncio.CancelledError:  # the loop is closing: the worker finishes on its own
                    for _, future in group:
                        future.cancel()
                    raise
                except BaseException as exc:  # a crash in the worker (tests simulate power cuts so)
                    for _, future in group:
                        future.set_exception(exc)
                    continue
                for job, future in group:
                    if job.error is not None:
                        future.set_exception(job.error)
                    else:
                        future.set_result(None)
        finally:
            self._committing = None

    def _commit_group(self, jobs: list[_Job]) -> None:
        for job in jobs:
            _prepare(job)  # those prepared already have ``_nothing`` left to do
        self._sync_for(jobs, "before")
        for job in jobs:
            if job.error is None:
                try:
                    job.commit()
                except OSError as exc:
                    job.fail(exc)
        self._sync_for(jobs, "after")
        for job in jobs:
            if job.error is None and job.cleanup is not None:
                with contextlib.suppress(OSError):
                    job.cleanup()

    def _sync_for(self, jobs: list[_Job], phase: str) -> None:
        """fsync each folder the jobs still going name in ``phase``, once; its failure fails them."""
        live = [job for job in jobs if job.error is None]
        for folder in _folders(live, phase):
            try:
                self._sync_dir(folder)
            except OSError as exc:
                for job in live:
                    if job.error is None and folder in getattr(job, phase):
                        job.fail(exc)

    async def claim(self, limit: int, now: float) -> list[Envelope]:
        """Move up to ``limit`` due QUEUED messages (oldest first) to SENDING and return them.

        The choice is made synchronously on the loop, so two callers never get the same message.
        """
        self._require_open()
        picked = self._schedule.take(limit, now)
        if not picked:
            return []
        for envelope in picked:
            envelope.state = State.SENDING
            self._sending[envelope.id] = envelope
        return await self._to_the_end(self._claim(picked), late=self._unclaim)

    async def _claim(self, picked: list[Envelope]) -> list[Envelope]:
        failed = await asyncio.to_thread(self._claim_files, [e.id for e in picked])
        for envelope in picked:
            if envelope.id in failed:
                del self._sending[envelope.id]
                if not isinstance(failed[envelope.id], FileNotFoundError):
                    envelope.state = State.QUEUED
                    self._schedule.add(envelope)
        claimed = [e for e in picked if e.id not in failed]
        self._counts[State.QUEUED] -= len(claimed)
        self._counts[State.SENDING] += len(claimed)
        if failed and not claimed:
            exc = next(iter(failed.values()))
            raise SpoolError(f"A message could not be taken from the spool {self.root}: {_reason(exc)}.")
        return claimed

    def _unclaim(self, claimed: list[Envelope]) -> None:
        """Claimed by a caller that was cancelled meanwhile: nobody will send these, so queue them again."""
        for envelope in claimed:
            try:  # on the loop, but only after a cancellation, and renames without fsync are quick
                os.rename(self._json(State.SENDING, envelope.id), self._json(State.QUEUED, envelope.id))
            except OSError as exc:
                log.error("spool: message %s stays in sending until the next start: %s", envelope.id, exc)
                continue
            del self._sending[envelope.id]
            envelope.state = State.QUEUED
            self._schedule.add(envelope)
            self._counts[State.SENDING] -= 1
            self._counts[State.QUEUED] += 1

    def _claim_files(self, envelope_ids: list[str]) -> dict[str, OSError]:
        # No fsync: SENDING is recovered as QUEUED, so it does not matter whether this rename survives.
        failed: dict[str, OSError] = {}
        for envelope_id in envelope_ids:
            try:
                os.rename(self._json(State.QUEUED, envelope_id), self._json(State.SENDING, envelope_id))
            except OSError as exc:
                failed[envelope_id] = exc
        return failed

    def next_due(self) -> float | None:
        """When the earliest QUEUED message is due (None when nothing is queued)."""
        return self._schedule.next_due()

    async def content_chunks(self, envelope_id: str) -> ContentChunks:
        """The message as received, read a chunk at a time (for large messages; see ``ContentChunks``)."""
        path = self.content_path(envelope_id)
        try:
            return await asyncio.to_thread(ContentChunks.scan, path)
        except OSError as exc:
            raise self._no_content(envelope_id, exc) from None

    async def content(self, envelope_id: str) -> bytes:
        """The message as received.

        A small message (most are 10-100 KB, and were just written, so in the page cache) is read on
        the loop: a worker thread's hop costs more than the read. A large one is read in a worker.
        """
        path = self.content_path(envelope_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                size = os.fstat(fd).st_size
                if size <= INLINE_READ:
                    return os.read(fd, size + 1)
            finally:
                os.close(fd)
            return await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise self._no_content(envelope_id, exc) from None

    def _no_content(self, envelope_id: str, exc: OSError) -> SpoolError:
        state = self._state_of(envelope_id)
        if state is None:
            return MessageNotFound(f"There is no message {envelope_id} in the spool {self.root}.")
        if state is State.DONE:
            return SpoolError(f"Message {envelope_id} was delivered, and its content is no longer kept.")
        return SpoolError(f"The content of message {envelope_id} cannot be read: {_reason(exc)}.")

    async def finish(self, envelope: Envelope, state: State) -> None:
        """Save a sent message's envelope (with its new attempt) and move it to QUEUED, DONE or DEAD."""
        self._require_open()
        if state not in (State.QUEUED, State.DONE, State.DEAD):
            raise ValueError(f"a message cannot finish in {state}")
        if envelope.id not in self._sending or envelope.id in self._finishing:
            raise ValueError(f"message {envelope.id} is not being sent")
        saved = _copy(envelope)
        saved.state = state
        self._finishing.add(envelope.id)
        try:
            await self._to_the_end(self._finish(saved))
        finally:
            envelope.state = saved.state

    async def _finish(self, saved: Envelope) -> None:
        try:
            await self._group_commit(self._finish_job(saved))
        except SpoolError:
            # It stays in SENDING, on disk and here: the next start puts it back in the queue.
            saved.state = State.SENDING
            raise
        finally:
            self._finishing.discard(saved.id)
        del self._sending[saved.id]
        self._counts[State.SENDING] -= 1
        self._counts[saved.state] += 1
        if saved.state is State.QUEUED:
            self._schedule.add(saved)

    def _finish_job(self, envelope: Envelope) -> _Job:
        """SENDING to QUEUED or DEAD: as ``_move``, durable. SENDING to DONE: the envelope (with its
        last attempt) written into ``done`` without an fsync of its own, the SENDING one removed, and
        ``done`` fsync'd once for the group; the content goes after that. A power cut can at worst
        bring a delivered message back as queued (sent twice, never lost) or leave its DONE envelope
        unreadable, which only the history view would notice."""
        sending = self._json(State.SENDING, envelope.id)
        target = self._json(envelope.state, envelope.id)
        encoded = _encode(envelope)

        def explain(exc: OSError) -> Exception:
            return SpoolError(
                f"Message {envelope.id} could not be saved in the spool folder {self.root}: {_reason(exc)}."
            )

        if envelope.state is State.DONE:
            tmp = target.with_name(target.name + ".tmp")

            def prepare() -> None:
                with _open_new(tmp) as fd:
                    _write_all(fd, encoded)

            def commit() -> None:
                os.replace(tmp, target)
                os.unlink(sending)

            def cleanup() -> None:
                os.unlink(self._data(envelope.id))  # a crash before this: recover() removes it

            return _Job(prepare, commit, lambda: _unlink(tmp), explain, after=(State.DONE,), cleanup=cleanup)

        tmp = sending.with_name(sending.name + ".tmp")

        def prepare_move() -> None:
            _write_file(tmp, encoded)

        def commit_move() -> None:
            os.replace(tmp, sending)
            os.rename(sending, target)

        return _Job(
            prepare_move, commit_move, lambda: _unlink(tmp), explain, after=(State.SENDING, envelope.state)
        )

    def _move(self, envelope: Envelope, source: State, target: State) -> None:
        """Rewrite the envelope in place (tmp + fsync + rename), then rename it into ``target``."""
        path = self._json(source, envelope.id)
        tmp = path.with_name(path.name + ".tmp")
        try:
            _write_file(tmp, _encode(envelope))
            os.replace(tmp, path)
            if target is not source:
                os.rename(path, self._json(target, envelope.id))
                self._sync_dir(source)
            self._sync_dir(target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise SpoolError(
                f"Message {envelope.id} could not be saved in the spool folder {self.root}: {_reason(exc)}."
            ) from None
        if target is State.DONE:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._data(envelope.id))  # a crash before this: recover() removes it

    # -- the queue view ---------------------------------------------------------------------------------

    def _state_of(self, envelope_id: str) -> State | None:
        for _ in range(2):  # a message may move between two folders while we look
            for state in _PRECEDENCE:
                if self._json(state, envelope_id).exists():
                    return state
        return None

    def get(self, envelope_id: str) -> Envelope:
        """One message's envelope, whatever its state."""
        self._check_id(envelope_id)
        for _ in range(2):
            for state in _PRECEDENCE:
                with contextlib.suppress(FileNotFoundError):
                    return _load(self._json(state, envelope_id), state)
        raise MessageNotFound(f"There is no message {envelope_id} in the spool {self.root}.")

    def list(self, states: Iterable[State] | None = None) -> list[Envelope]:
        """Envelopes in these states (all by default), oldest first; unreadable ones are skipped."""
        found: dict[str, Envelope] = {}
        for state in State if states is None else states:
            try:
                ids = self._ids(state)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise self._unusable(exc) from None
            for envelope_id in ids:
                with contextlib.suppress(FileNotFoundError, SpoolError):
                    found[envelope_id] = _load(self._json(state, envelope_id), state)
        return sorted(found.values(), key=lambda e: (e.received_at, e.id))

    def counts(self) -> dict[State, int]:
        """How many messages are in each state."""
        if self._lock_fd is not None:
            return dict(self._counts)
        counts = dict.fromkeys(State, 0)
        for state in State:
            with contextlib.suppress(FileNotFoundError):
                counts[state] = len(self._ids(state))
        return counts

    def retry(self, envelope_id: str) -> Envelope:
        """Make a DEAD or QUEUED message due now; returns its envelope."""
        self._require_open()
        self._check_id(envelope_id)
        if envelope_id in self._sending:
            raise SpoolError(f"Message {envelope_id} is being sent right now.")
        source = State.QUEUED
        queued = self._schedule.discard(envelope_id)
        if queued is None:
            state = self._state_of(envelope_id)
            if state is None:
                raise MessageNotFound(f"There is no message {envelope_id} in the spool {self.root}.")
            if state is not State.DEAD:
                raise SpoolError(f"Message {envelope_id} is {state} and cannot be retried.")
            source, queued = state, _load(self._json(state, envelope_id), State.QUEUED)
        try:
            if not self.content_path(envelope_id).exists():
                raise SpoolError(f"Message {envelope_id} cannot be retried: its content is missing.")
            queued.next_attempt_at = time.time()
            self._move(queued, source, State.QUEUED)
        except SpoolError:
            if source is State.QUEUED:
                self._schedule.add(queued)
            raise
        self._schedule.add(queued)
        self._counts[source] -= 1
        self._counts[State.QUEUED] += 1
        return _copy(queued)

    def delete(self, envelope_id: str) -> None:
        """Remove a message (not one being received or sent) with its content."""
        self._require_open()
        self._check_id(envelope_id)
        state = self._state_of(envelope_id)
        if state is None:
            raise MessageNotFound(f"There is no message {envelope_id} in the spool {self.root}.")
        if state in (State.INCOMING, State.SENDING) or envelope_id in self._sending:
            doing = "received" if state is State.INCOMING else "sent"
            raise SpoolError(f"Message {envelope_id} is being {doing} right now.")
        try:
            os.unlink(self._json(state, envelope_id))  # first: content left alone is an orphan, removed later
            self._sync_dir(state)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.content_path(envelope_id))
        except OSError as exc:
            raise SpoolError(f"Message {envelope_id} could not be deleted: {_reason(exc)}.") from None
        self._schedule.discard(envelope_id)
        self._counts[state] -= 1

    def export_eml(self, envelope_id: str, dest: Path) -> Path:
        """Copy the message as received to ``dest`` (a file, or a folder to put ``<id>.eml`` in)."""
        source = self.content_path(envelope_id)
        dest = Path(dest)
        if dest.is_dir():
            dest = dest / f"{envelope_id}.eml"
        try:
            reader = source.open("rb")
        except OSError as exc:
            raise self._no_content(envelope_id, exc) from None
        try:
            with reader, os.fdopen(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
                shutil.copyfileobj(reader, out, 1024 * 1024)
        except OSError as exc:
            raise SpoolError(
                f"Message {envelope_id} could not be exported to {dest}: {_reason(exc)}."
            ) from None
        return dest
