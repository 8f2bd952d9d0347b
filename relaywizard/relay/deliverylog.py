"""The delivery log: one JSON line per delivery attempt, for people and for the queue view.

Append-only, one ``write`` per line on an ``O_APPEND`` descriptor (so it is flushed at once and lines
never interleave), rotated by size. No fsync: a power cut may lose the last lines, never mail. Each line
is built from named envelope and attempt fields only, never from settings or credentials, so no secret
can reach it.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Generator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relaywizard.core.errors import ConfigError
from relaywizard.relay.model import Attempt, Envelope

MAX_BYTES = 10 * 1024 * 1024
KEEP = 5


class DeliveryLogError(ConfigError):
    """The delivery log file cannot be written."""

    default_title = "Delivery log problem"


def log_record(envelope: Envelope, attempt: Attempt) -> dict[str, Any]:
    """The one line logged for an attempt: who sent what to whom, and what the upstream said."""
    at = datetime.fromtimestamp(attempt.at, UTC).isoformat(timespec="milliseconds")
    return {
        "time": at.replace("+00:00", "Z"),
        "id": envelope.id,
        "device": envelope.device,
        "device_login": envelope.device_login,
        "sender": envelope.mail_from,
        "upstream_sender": envelope.sender,
        "recipients": list(envelope.rcpt_tos),
        "failed_recipients": dict(envelope.failed_rcpts),
        "size": envelope.size,
        "result": attempt.result,
        "reply": attempt.reply,
        "code": attempt.code,
        "explanation": attempt.explanation,
    }


def _lines_backwards(path: Path, block: int = 64 * 1024) -> Generator[bytes, None, None]:
    """The lines of a file, last first, reading it from the end in blocks (a log may be 10 MB)."""
    with path.open("rb") as file:
        position = file.seek(0, os.SEEK_END)
        rest = b""
        while position > 0:
            step = min(block, position)
            position -= step
            file.seek(position)
            lines = (file.read(step) + rest).split(b"\n")
            rest = lines.pop(0)
            yield from reversed(lines)
        yield rest


class DeliveryLog:
    """``path`` is the current file; rotated ones are ``path.1`` (newest) to ``path.<keep>``."""

    def __init__(self, path: Path, *, max_bytes: int = MAX_BYTES, keep: int = KEEP) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self._fd: int | None = None
        self._size = 0
        self._lock = threading.Lock()

    def open(self) -> None:
        """Open (creating it, 0600) for appending; the relay calls this at start to fail early."""
        with self._lock:
            self._open()

    def _open(self) -> None:
        if self._fd is not None:
            return
        try:
            if not self.path.parent.is_dir():
                self.path.parent.mkdir(mode=0o700, parents=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._size = os.fstat(self._fd).st_size
        except OSError as exc:
            raise self._error(exc) from None

    def _error(self, exc: OSError) -> DeliveryLogError:
        reason = exc.strerror or str(exc)
        return DeliveryLogError(
            f"The delivery log {self.path} cannot be written: {reason[:1].lower()}{reason[1:]}.",
            hint="Fix its folder's permissions, or choose another place for it.",
        )

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def files(self) -> list[Path]:
        """The log files, newest first."""
        return [self.path, *(self.path.with_name(f"{self.path.name}.{n}") for n in range(1, self.keep + 1))]

    def write(self, envelope: Envelope, attempt: Attempt) -> None:
        """Append one attempt as one JSON line."""
        record = json.dumps(log_record(envelope, attempt), ensure_ascii=False, separators=(",", ":"))
        line = (record + "\n").encode()
        with self._lock:
            self._open()
            assert self._fd is not None
            try:
                if self._size and self._size + len(line) > self.max_bytes:
                    self._rotate()
                os.write(self._fd, line)
                self._size += len(line)
            except OSError as exc:
                raise self._error(exc) from None

    def _rotate(self) -> None:
        assert self._fd is not None
        os.close(self._fd)
        self._fd = None
        files = self.files()
        files[-1].unlink(missing_ok=True)
        for newer, older in zip(reversed(files[:-1]), reversed(files[1:]), strict=True):
            if newer.exists():
                newer.rename(older)
        self._open()

    def read(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Logged attempts, newest first (at most ``limit``); damaged lines are skipped."""
        records: list[dict[str, Any]] = []
        for path in self.files():
            try:
                with contextlib.closing(_lines_backwards(path)) as lines:
                    for line in lines:
                        if limit is not None and len(records) >= limit:
                            return records
                        try:
                            record = json.loads(line)
                        except ValueError:
                            continue  # an empty or half-written line (a crash during a write)
                        if isinstance(record, dict):
                            records.append(record)
            except FileNotFoundError:
                continue
        return records
