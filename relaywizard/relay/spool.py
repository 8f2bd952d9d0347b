"""The durable spool: a message answered 250 is on disk, and no crash loses it.

Layout under the root (folders 0700, files 0600)::

    lock                  flock'd by the one relay that owns the spool; holds its pid
    queued/  sending/  done/  dead/   <id>.msg
    incoming/             not written any more (older relays used it); emptied on recovery

One file per message, in the folder of its state: a first line of JSON (``{"v": 1, "content": N,
"envelope": {...}}``; JSON has no raw line ends) and then the N bytes of the message as received. A
delivered message keeps its envelope only (``"content": null``). A state change is one ``rename``.

Accepting writes the file straight into ``queued``, fsyncs it and then the ``queued`` folder, and only
then is the device answered: one file and one folder fsync a message (the folder's costs nothing more
on a journalling file system, as the file's fsync committed its name). A crash while the file is
written leaves it shorter than its first line says: never answered, it is removed on recovery. Every
later change of a message with content (a deferral or a death recording its attempt, a retry) writes
a new file as ``<id>.msg.tmp`` + fsync and renames it over the old one, so no reader sees half of it;
recovery removes ``.tmp`` files. Claiming (QUEUED -> SENDING) is not fsync'd, as SENDING is recovered
as QUEUED anyway. A delivered message's envelope moves to ``done`` with its last attempt, fsync'd per
group but not per file (a power cut may at worst send it again); the envelope goes after
``keep_done`` (7 days). A spool written by an older relay (``data/<id>.eml`` beside ``<state>/<id>.json``)
is converted on recovery.

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
_MAX_HEAD = 8 * 1024 * 1024
"""A message file's first line is at most this long (500 recipients and many attempts fit easily)."""
SUFFIX = ".msg"

INLINE_READ = 256 * 1024
"""Content up to this size is read on the event loop (see ``Spool.content``)."""
INLINE_CLAIM = 4
"""Up to this many messages are claimed (renamed into ``sending``) on the event loop, more in a worker."""
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
    def scan(cls, path: Path, start: int = 0, length: int | None = None) -> ContentChunks:
        """Find the chunk boundaries of the ``length`` bytes (all to the end by default) from ``start``,
        reading the file once, a chunk at a time."""
        bounds = [start]
        end = None if length is None else start + length
        with path.open("rb") as file:
            file.seek(start)
            while block := file.read(cls.CHUNK if end is None else min(cls.CHUNK, end - bounds[-1])):
                cut = len(block)
                if len(bounds) == 1 and 0 < (head_end := header_end(block)) < len(block):
                    cut = head_end
                elif len(block) == cls.CHUNK and (newline := block.rfind(b"\n")) >= 0:
                    cut = newline + 1
                bounds.append(bounds[-1] + cut)
                file.seek(bounds[-1])
        if len(bounds) == 1:
            bounds.append(start)
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
            _write_all(fd, data)
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


def _head(envelope: Envelope, length: int | None) -> bytes:
    """A message file's first line: the envelope, and how many bytes of content follow (None: none kept)."""
    record = {"v": 1, "content": length, "envelope": _as_json(envelope)}
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


class TornFile(SpoolError):
    """A message file shorter than its first line says: a crash cut its writing short (never answered)."""


@dataclass
class _Record:
    """A message file's first line read: the envelope, and where its content is."""

    envelope: Envelope
    offset: int
    """Where the content starts (the length of the first line)."""
    length: int | None
    """How many bytes of content follow; None when none is kept (delivered, or lost)."""


def _read_record(fd: int, path: Path, state: State) -> _Record:
    """Read a message file's first line; its state is the folder it is in."""
    first = os.pread(fd, 64 * 1024, 0)
    end = first.find(b"\n")
    while end < 0 and len(first) < _MAX_HEAD and (more := os.pread(fd, 1 << 20, len(first))):
        searched = len(first)
        first += more
        end = first.find(b"\n", searched)
    size = os.fstat(fd).st_size
    if end < 0:
        if size < _MAX_HEAD:
            raise TornFile(f"The spool file {path} was cut short.")
        raise SpoolError(f"The spool file {path} is damaged and cannot be read.")
    try:
        record = json.loads(first[:end])
        length = record["content"]
        valid_length = length is None or (type(length) is int and length >= 0)  # not True, not 1.0
        if record.get("v") != 1 or not valid_length:
            raise ValueError("not a message file")
        envelope = Envelope.from_json(record["envelope"])
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise SpoolError(f"The spool file {path} is damaged and cannot be read.") from exc
    envelope.state = state
    expected = end + 1 + (length or 0)
    if size < expected:
        raise TornFile(f"The spool file {path} was cut short.")
    if size > expected:
        raise SpoolError(f"The spool file {path} is damaged and cannot be read.")
    return _Record(envelope, end + 1, length)


def _read(path: Path, state: State) -> _Record:
    """``_read_record`` of the file at ``path``. FileNotFoundError passes through."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _read_record(fd, path, state)
    finally:
        os.close(fd)


def _load(path: Path, state: State) -> Envelope:
    """Read a message file's envelope. FileNotFoundError passes through."""
    return _read(path, state).envelope


def _copy_range(source: int, target: int, offset: int, length: int) -> None:
    """Copy ``length`` bytes at ``offset`` of ``source`` to the end of ``target`` (in the kernel where
    it can: a large message is not read into memory to be written again)."""
    position = offset
    end = offset + length
    if hasattr(os, "copy_file_range"):
        try:
            while position < end and (copied := os.copy_file_range(source, target, end - position, position)):
                position += copied
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
    while position < end:
        block = os.pread(source, min(1 << 20, end - position), position)
        if not block:
            break
        _write_all(target, block)
        position += len(block)
    if position < end:
        raise OSError(errno.EIO, "the message file ended before its content did")


def _write_message(tmp: Path, envelope: Envelope, source: int, offset: int, length: int | None) -> None:
    """Write ``tmp`` as a message file, fsync'd: ``envelope``'s line, then ``length`` bytes of content
    copied from ``source`` at ``offset`` (none when ``length`` is None)."""
    with _open_new(tmp) as out:
        _write_all(out, _head(envelope, length))
        if length:
            _copy_range(source, out, offset, length)
        os.fsync(out)


def _rewrite(path: Path, tmp: Path, envelope: Envelope) -> None:
    """Write ``tmp``: the message file at ``path`` with ``envelope`` as its first line, fsync'd."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        record = _read_record(fd, path, envelope.state)
        _write_message(tmp, envelope, fd, record.offset, record.length)
    except SpoolError as exc:  # the file was damaged under us: an OSError to the caller, as for the disk
        raise OSError(errno.EIO, str(exc).rstrip(".")) from None
    finally:
        os.close(fd)


def _read_range(fd: int, offset: int, length: int) -> bytes:
    """``length`` bytes at ``offset``, in one read (no second copy of a large message to join)."""
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise OSError(errno.EIO, "the message file ended before its content did")
    return data


def _content_lost(now: float) -> Attempt:
    return Attempt(
        at=now,
        result="dead",
        reply="The content of this message is missing from the spool folder.",
        explanation="It cannot be delivered: the spool folder was damaged or changed by hand. "
        "Ask the sender to send it again.",
    )


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

    ``prepare`` writes (and fsyncs) new files; ``commit`` renames, once all jobs are prepared; the
    folders in ``after`` are fsync'd once all jobs are committed. A job that
    fails is ``undo``ne and ``explain`` turns its OSError into the one sentence its caller gets; the
    other jobs of the group go on.
    """

    prepare: Callable[[], None]
    commit: Callable[[], None]
    undo: Callable[[], None]
    explain: Callable[[OSError], Exception]
    after: tuple[str, ...] = ()
    apart: bool = True
    """Prepare in a worker of its own before joining a group (when ``prepare`` fsyncs: fsyncs that come
    together are merged by the file system); otherwise the group's worker prepares it."""
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
        self._accepting: set[str] = set()  # being written by accept(): not to be retried or deleted yet
        self._finishing: set[str] = set()
        self._background: set[asyncio.Future[Any]] = set()
        self._counts: dict[State, int] = dict.fromkeys(State, 0)
        self._tidied = {"discarded": 0, "pruned": 0, "damaged": 0}  # by open(), reported by recover()
        self._waiting_jobs: list[tuple[_Job, asyncio.Future[None]]] = []
        self._committing: asyncio.Task[None] | None = None

    # -- paths ------------------------------------------------------------------------------------------

    def _path(self, state: State, envelope_id: str) -> Path:
        return self.root / state.value / f"{envelope_id}{SUFFIX}"

    def _check_id(self, envelope_id: str) -> None:
        # Ids become file names: nothing like "../x" may reach the file system.
        if not _ID.fullmatch(envelope_id):
            raise MessageNotFound(f"There is no message {envelope_id!r} in the spool {self.root}.")

    def _ids(self, folder: str, suffix: str = SUFFIX) -> set[str]:
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
            for folder in State:
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
            path = self._path(State.QUEUED, envelope_id)
            try:
                self._schedule.add(_load(path, State.QUEUED))
            except TornFile:
                # Cut short by a crash while it was written: the device was never answered.
                log.warning("spool: %s was not written to the end before a crash; removed", path)
                os.unlink(path)
                self._tidied["discarded"] += 1
            except SpoolError:
                # Kept for a person to look at, out of the way of the relay.
                log.warning("spool: %s is damaged; renamed to .corrupt", path)
                os.rename(path, path.with_name(path.name + ".corrupt"))
                self._tidied["damaged"] += 1
        self._counts = {state: len(self._ids(state)) for state in State}

    def recover(self) -> dict[str, int]:
        """Repair the spool after a crash; returns how many messages each repair touched.

        SENDING goes back to QUEUED (it may be sent twice, never lost); INCOMING and files cut short
        were never answered and are removed; a spool of an older relay is converted.
        Call it once after ``open()``, before anything is accepted or claimed.
        """
        self._require_open()
        try:
            return self._recover()
        except OSError as exc:
            raise self._unusable(exc) from None

    def _recover(self) -> dict[str, int]:
        report = dict.fromkeys(("duplicates", "discarded", "requeued", "converted", "missing_content"), 0)
        for folder in State:
            for name in os.listdir(self.root / folder):
                if name.endswith(".tmp"):
                    os.unlink(self.root / folder / name)
        if (self.root / "data").is_dir():
            report["converted"], report["missing_content"] = self._convert_old_spool()
        ids = {state: self._ids(state) for state in State}
        seen: set[str] = set()
        for state in _PRECEDENCE:
            for envelope_id in ids[state] & seen:
                os.unlink(self._path(state, envelope_id))
                report["duplicates"] += 1
            ids[state] -= seen
            seen |= ids[state]
        for envelope_id in ids[State.INCOMING]:
            os.unlink(self._path(State.INCOMING, envelope_id))
            report["discarded"] += 1
        for envelope_id in ids[State.SENDING]:
            os.rename(self._path(State.SENDING, envelope_id), self._path(State.QUEUED, envelope_id))
            report["requeued"] += 1
        for folder in State:
            self._sync_dir(folder)
        self._tidied["pruned"] += self.prune_done()
        self._load_queue()  # removes the files cut short, sets the damaged ones aside
        for key, value in self._tidied.items():
            report[key] = report.get(key, 0) + value
        self._tidied = dict.fromkeys(self._tidied, 0)
        report["queued"] = self._counts[State.QUEUED]
        self._sending.clear()
        return report

    def _convert_old_spool(self) -> tuple[int, int]:
        """Turn an older relay's spool (``<state>/<id>.json`` + ``data/<id>.eml``) into message files.

        Returns how many messages were converted, and how many of them had lost their content (those
        become DEAD, with the reason). Safe to stop at any point and run again: an envelope is removed
        only once its message file exists, and content only at the end, when no envelope needs it;
        content of a damaged envelope (``.json.corrupt``) stays in ``data`` for a person.
        """
        data = self.root / "data"
        converted = missing = 0
        kept = set().union(*(self._ids(state, ".json.corrupt") for state in State))
        chosen: dict[str, State] = {}  # one envelope per message: the copy that got furthest
        for state in _PRECEDENCE:
            for envelope_id in sorted(self._ids(state, ".json")):
                if envelope_id in chosen:
                    os.unlink(self.root / state.value / f"{envelope_id}.json")
                else:
                    chosen[envelope_id] = state
        for envelope_id, state in chosen.items():
            old = self.root / state.value / f"{envelope_id}.json"
            if state is State.INCOMING or self._state_of(envelope_id) is not None:
                os.unlink(old)  # never answered, or converted already by a run that stopped half-way
                continue
            try:
                envelope = Envelope.from_json(json.loads(old.read_bytes()))
            except (ValueError, TypeError, KeyError, RecursionError):
                log.warning("spool: %s is damaged; renamed to .corrupt", old)
                os.rename(old, old.with_name(old.name + ".corrupt"))
                kept.add(envelope_id)
                self._tidied["damaged"] += 1
                continue
            content, target = data / f"{envelope_id}.eml", state
            length: int | None = None
            if state is not State.DONE:
                if content.exists():
                    length = content.stat().st_size
                else:
                    target = State.DEAD
                    envelope.attempts.append(_content_lost(time.time()))
                    missing += 1
            envelope.state = target
            tmp = self._path(target, envelope_id).with_name(f"{envelope_id}{SUFFIX}.tmp")
            with open(content if length is not None else os.devnull, "rb") as source:  # None: none read
                _write_message(tmp, envelope, source.fileno(), 0, length)
            os.replace(tmp, self._path(target, envelope_id))
            self._sync_dir(target)
            os.unlink(old)
            converted += 1
        for name in os.listdir(data):
            if name.removesuffix(".eml") not in kept:
                os.unlink(data / name)
        with contextlib.suppress(OSError):  # not empty: content of a damaged envelope, kept for a person
            data.rmdir()
        log.info("spool: converted %d message(s) from an older relay's spool", converted)
        return converted, missing

    def prune_done(self, now: float | None = None) -> int:
        """Forget delivered messages older than ``keep_done``; returns how many were removed."""
        cutoff = (time.time() if now is None else now) - self.keep_done
        pruned = 0
        with os.scandir(self.root / State.DONE) as entries:
            for entry in entries:
                if entry.name.endswith(SUFFIX) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
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
        pieces = [content] if isinstance(content, bytes | memoryview) else list(content)
        head = _head(queued, sum(len(piece) for piece in pieces))
        if len(head) >= _MAX_HEAD:
            raise SpoolError("The message's envelope is too large to be saved (too many recipients).")
        self._accepting.add(queued.id)
        try:
            await asyncio.to_thread(self._write_queued, queued.id, [head, *pieces])
        finally:
            self._accepting.discard(queued.id)
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

    def _write_queued(self, envelope_id: str, pieces: list[Buffer]) -> None:
        """Write a new message file straight into ``queued``, fsync it, then fsync ``queued`` (a worker's
        part of ``accept``). On an error nothing is left behind; a crash leaves a file cut short."""
        path = self._path(State.QUEUED, envelope_id)

        def failed(exc: OSError) -> SpoolError:
            if isinstance(exc, FileExistsError):
                return SpoolError(f"A message with the id {envelope_id} is already in the spool.")
            return SpoolError(
                f"The message could not be saved in the spool folder {self.root}: {_reason(exc)}."
            )

        try:
            _write_file(path, pieces, exclusive=True)  # an error removes it; a crash leaves it cut short
        except OSError as exc:
            raise failed(exc) from None
        try:
            self._sync_dir(State.QUEUED)
        except OSError as exc:
            _unlink(path)
            raise failed(exc) from None

    async def _group_commit(self, job: _Job) -> None:
        """Run a finished message's ``job``: its file first (in a worker of its own when it fsyncs), then
        its renames with the others ready.

        Files that are fsync'd are written in parallel with the others' (the file system merges fsyncs
        that come together into one journal commit; one after the other, each would wait for its own).
        The renames and the folder fsyncs are then done for all the messages ready at that moment in one
        worker: when the spool is idle that is one message, so nothing waits for a group, and under
        load one fsync per folder serves many messages.
        """
        if job.apart and job.prepare is not _nothing:
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
        for job in jobs:
            if job.error is None:
                try:
                    job.commit()
                except OSError as exc:
                    job.fail(exc)
        self._sync_for(jobs, "after")

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
        ids = [e.id for e in picked]
        # A few renames (no fsync) are quicker on the loop than a worker thread's round trip, which
        # each of the forwarder's sessions would otherwise wait for between two messages.
        failed = (
            self._claim_files(ids)
            if len(ids) <= INLINE_CLAIM
            else await asyncio.to_thread(self._claim_files, ids)
        )
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
                os.rename(self._path(State.SENDING, envelope.id), self._path(State.QUEUED, envelope.id))
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
                os.rename(self._path(State.QUEUED, envelope_id), self._path(State.SENDING, envelope_id))
            except OSError as exc:
                failed[envelope_id] = exc
        return failed

    def next_due(self) -> float | None:
        """When the earliest QUEUED message is due (None when nothing is queued)."""
        return self._schedule.next_due()

    def _open_content(self, envelope_id: str) -> tuple[int, _Record, Path]:
        """An open descriptor of the message's file (the caller closes it), its first line, its path.

        Looked for where the message most likely is (being sent, then queued, then dead): a message
        may move between two folders while we look, so twice.
        """
        self._check_id(envelope_id)
        first = State.SENDING if envelope_id in self._sending else State.QUEUED
        for _ in range(2):
            for state in (first, *(s for s in _PRECEDENCE if s is not first)):
                path = self._path(state, envelope_id)
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                try:
                    record = _read_record(fd, path, state)
                except BaseException:
                    os.close(fd)
                    raise
                if record.length is None:
                    os.close(fd)
                    raise self._no_content(envelope_id, state)
                return fd, record, path
        raise MessageNotFound(f"There is no message {envelope_id} in the spool {self.root}.")

    def _content_error(self, envelope_id: str, exc: OSError) -> SpoolError:
        return SpoolError(f"The content of message {envelope_id} cannot be read: {_reason(exc)}.")

    async def content_chunks(self, envelope_id: str) -> ContentChunks:
        """The message as received, read a chunk at a time (for large messages; see ``ContentChunks``)."""
        try:
            fd, record, path = self._open_content(envelope_id)
            os.close(fd)
            return await asyncio.to_thread(ContentChunks.scan, path, record.offset, record.length)
        except OSError as exc:
            raise self._content_error(envelope_id, exc) from None

    async def content(self, envelope_id: str) -> bytes:
        """The message as received.

        A small message (most are 10-100 KB, and were just written, so in the page cache) is read on
        the loop: a worker thread's hop costs more than the read. A large one is read in a worker.
        """
        try:
            fd, record, _ = self._open_content(envelope_id)
        except OSError as exc:
            raise self._content_error(envelope_id, exc) from None
        try:
            length = record.length or 0
            if length <= INLINE_READ:
                return os.pread(fd, length, record.offset)
            return await asyncio.to_thread(_read_range, fd, record.offset, length)
        except OSError as exc:
            raise self._content_error(envelope_id, exc) from None
        finally:
            os.close(fd)

    def _no_content(self, envelope_id: str, state: State) -> SpoolError:
        if state is State.DONE:
            return SpoolError(f"Message {envelope_id} was delivered, and its content is no longer kept.")
        return SpoolError(f"The content of message {envelope_id} is missing from the spool.")

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
        """SENDING to QUEUED or DEAD: as ``_move``, durable. SENDING to DONE: the envelope alone (with
        its last attempt) written into ``done`` without an fsync of its own, the SENDING file (with the
        content) removed, and ``done`` fsync'd once for the group. A power cut can at worst bring a
        delivered message back as queued (sent twice, never lost) or leave its DONE envelope
        unreadable, which only the history view would notice."""
        sending = self._path(State.SENDING, envelope.id)
        target = self._path(envelope.state, envelope.id)

        def explain(exc: OSError) -> Exception:
            return SpoolError(
                f"Message {envelope.id} could not be saved in the spool folder {self.root}: {_reason(exc)}."
            )

        if envelope.state is State.DONE:
            tmp = target.with_name(target.name + ".tmp")
            head = _head(envelope, None)

            def prepare() -> None:
                with _open_new(tmp) as fd:
                    _write_all(fd, head)

            def commit() -> None:
                os.replace(tmp, target)
                os.unlink(sending)

            return _Job(prepare, commit, lambda: _unlink(tmp), explain, after=(State.DONE,), apart=False)

        tmp = sending.with_name(sending.name + ".tmp")

        def commit_move() -> None:
            os.replace(tmp, sending)
            os.rename(sending, target)

        return _Job(
            lambda: _rewrite(sending, tmp, envelope),
            commit_move,
            lambda: _unlink(tmp),
            explain,
            after=(envelope.state, State.SENDING),  # the new name first: never in neither folder
        )

    # -- the queue view ---------------------------------------------------------------------------------

    def _state_of(self, envelope_id: str) -> State | None:
        for _ in range(2):  # a message may move between two folders while we look
            for state in _PRECEDENCE:
                if self._path(state, envelope_id).exists():
                    return state
        return None

    def get(self, envelope_id: str) -> Envelope:
        """One message's envelope, whatever its state."""
        self._check_id(envelope_id)
        for _ in range(2):
            for state in _PRECEDENCE:
                try:
                    return _load(self._path(state, envelope_id), state)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise SpoolError(
                        f"Message {envelope_id} cannot be read from the spool {self.root}: {_reason(exc)}."
                    ) from None
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
                try:
                    found[envelope_id] = _load(self._path(state, envelope_id), state)
                except (FileNotFoundError, IsADirectoryError, SpoolError):
                    continue  # gone meanwhile, not a message, or damaged: the rest is still shown
                except OSError as exc:
                    raise self._unusable(exc) from None
        return sorted(found.values(), key=lambda e: (e.received_at, e.id))

    def counts(self) -> dict[State, int]:
        """How many messages are in each state."""
        if self._lock_fd is not None:
            return dict(self._counts)
        counts = dict.fromkeys(State, 0)
        for state in State:
            try:
                counts[state] = len(self._ids(state))
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise self._unusable(exc) from None
        return counts

    def retry(self, envelope_id: str) -> Envelope:
        """Make a DEAD or QUEUED message due now; returns its envelope.

        A DEAD message's file is renamed into ``queued`` as it is, attempts and all: no copy of its
        content on the loop. The new due time is kept in memory only: after a restart a retried dead
        message is due at once anyway (its last due time has passed), and a queued one waits for its
        backoff again.
        """
        self._require_open()
        self._check_id(envelope_id)
        self._refuse_busy(envelope_id)
        source = State.QUEUED
        queued = self._schedule.discard(envelope_id)
        if queued is None:
            state = self._state_of(envelope_id)
            if state is None:
                raise MessageNotFound(f"There is no message {envelope_id} in the spool {self.root}.")
            if state is not State.DEAD:
                raise SpoolError(f"Message {envelope_id} is {state} and cannot be retried.")
            dead, source = self._path(State.DEAD, envelope_id), State.DEAD
            try:
                record = _read(dead, State.QUEUED)
            except OSError as exc:
                raise SpoolError(f"Message {envelope_id} cannot be retried: {_reason(exc)}.") from None
            if record.length is None:
                raise SpoolError(f"Message {envelope_id} cannot be retried: its content is missing.")
            try:
                os.rename(dead, self._path(State.QUEUED, envelope_id))
                self._sync_dir(State.QUEUED)  # the new name first: never in neither folder
                self._sync_dir(State.DEAD)
            except OSError as exc:
                where = f"in the spool folder {self.root}"
                raise SpoolError(
                    f"Message {envelope_id} could not be moved {where}: {_reason(exc)}."
                ) from None
            queued = record.envelope
        queued.next_attempt_at = time.time()
        self._schedule.add(queued)
        self._counts[source] -= 1
        self._counts[State.QUEUED] += 1
        return _copy(queued)

    def _refuse_busy(self, envelope_id: str) -> None:
        if envelope_id in self._accepting:
            raise SpoolError(f"Message {envelope_id} is being received right now.")
        if envelope_id in self._sending:
            raise SpoolError(f"Message {envelope_id} is being sent right now.")

    def delete(self, envelope_id: str) -> None:
        """Remove a message (not one being received or sent) with its content."""
        self._require_open()
        self._check_id(envelope_id)
        state = self._state_of(envelope_id)
        if state is None:
            raise MessageNotFound(f"There is no message {envelope_id} in the spool {self.root}.")
        self._refuse_busy(envelope_id)
        if state in (State.INCOMING, State.SENDING):
            doing = "received" if state is State.INCOMING else "sent"
            raise SpoolError(f"Message {envelope_id} is being {doing} right now.")
        try:
            os.unlink(self._path(state, envelope_id))
            self._sync_dir(state)
        except OSError as exc:
            raise SpoolError(f"Message {envelope_id} could not be deleted: {_reason(exc)}.") from None
        self._schedule.discard(envelope_id)
        self._counts[state] -= 1

    def export_eml(self, envelope_id: str, dest: Path) -> Path:
        """Copy the message as received to ``dest`` (a file, or a folder to put ``<id>.eml`` in)."""
        dest = Path(dest)
        try:
            if dest.is_dir():
                dest = dest / f"{envelope_id}.eml"
            inside = dest.resolve().is_relative_to(self.root.resolve())
        except OSError as exc:
            raise SpoolError(
                f"Message {envelope_id} could not be exported to {dest}: {_reason(exc)}."
            ) from None
        if inside:  # writing over a message file would destroy the message
            raise SpoolError(
                f"Message {envelope_id} cannot be exported into the spool folder {self.root}; "
                "choose another place."
            )
        try:
            source, record, _ = self._open_content(envelope_id)
        except OSError as exc:
            raise self._content_error(envelope_id, exc) from None
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
            with os.fdopen(os.open(dest, flags, 0o600), "wb") as out:
                _copy_range(source, out.fileno(), record.offset, record.length or 0)
        except OSError as exc:
            raise SpoolError(
                f"Message {envelope_id} could not be exported to {dest}: {_reason(exc)}."
            ) from None
        finally:
            os.close(source)
        return dest
