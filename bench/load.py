"""The load for bench/relay.py: SMTP clients, the messages they send, a null sink, a Maildir watch.

- ``build_message``: a message of an exact size, lines of at most 78 characters, CRLF, a unique Subject.
- ``run_load``: ``clients`` threads with smtplib, one SMTP session each reused for all its messages;
  all sessions are open (EHLO done) before the clock starts at the first MAIL.
- ``MaildirWatch``: counts the messages of one run that arrived in a Maildir (new/ and cur/), each file
  read once (its head only), so mail other programs deliver to the same mailbox is not counted; then
  removes them, so the shared mailbox does not grow by thousands of files per run.
- ``python bench/load.py sink PORT``: an SMTP server that accepts and forgets everything, as fast as
  asyncio allows, to show how many messages a second the load generator itself can produce.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import smtplib
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

LINE = 76  # characters of text per body line; with CRLF 78 bytes
MAX_LINE = 78
HEAD_BYTES = 16384  # how much of a delivered file is read to find its Subject


def subject_prefix(tag: str, label: str) -> str:
    return f"relaywizard-bench {tag} {label} "


def build_message(size: int, sender: str, recipient: str, subject: str) -> bytes:
    """A text message of exactly ``size`` bytes (unless the headers alone are longer), CRLF, lines ≤ 78."""
    head = (
        f"From: {sender}\r\nTo: {recipient}\r\nSubject: {subject}\r\nDate: {formatdate(localtime=True)}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@bench.lab.test>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    ).encode("ascii")
    remaining = max(size - len(head), 2)
    text = (b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" * 2)[:MAX_LINE]
    full, rest = divmod(remaining, LINE + 2)
    lines = [text[:LINE] + b"\r\n"] * full
    if rest >= 3 or not lines:  # one more, shorter line
        lines.append(text[: max(rest - 2, 0)] + b"\r\n")
    elif rest:  # 1 or 2 bytes left: the last line gets them (77 or 78 characters)
        lines[-1] = text[: LINE + rest] + b"\r\n"
    return head + b"".join(lines)


@dataclass
class LoadResult:
    """What one load run measured; times are ``time.perf_counter()`` values."""

    messages: int
    accepted: int = 0
    started: float = 0.0
    """When the clients were released to send their first MAIL."""
    last_reply: float = 0.0
    """When the last 250 (end of DATA) came back."""
    errors: list[str] = field(default_factory=list)
    cpu_seconds: float = 0.0
    """CPU time of this whole process (clients and anything else it ran) during the run."""

    @property
    def seconds(self) -> float:
        return self.last_reply - self.started

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds > 0 else 0.0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_load(
    host: str,
    port: int,
    messages: Sequence[bytes],
    *,
    clients: int,
    sender: str,
    recipient: str,
    timeout: float = 60.0,
) -> LoadResult:
    """Send ``messages`` over ``clients`` SMTP sessions at once (message i by client i % clients)."""
    result = LoadResult(messages=len(messages))
    barrier = threading.Barrier(clients + 1, timeout=timeout)
    lock = threading.Lock()
    last: list[float] = []

    def client(index: int) -> None:
        mine = messages[index::clients]
        smtp: smtplib.SMTP | None = None
        done = 0
        try:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
            smtp.ehlo("bench-client.lab.test")
        except (OSError, smtplib.SMTPException) as exc:
            with lock:
                result.errors.append(f"client {index}: connect: {exc}")
            barrier.abort()
            return
        try:
            barrier.wait()
            for message in mine:
                smtp.sendmail(sender, [recipient], message)
                done += 1
            with lock:
                last.append(time.perf_counter())
        except threading.BrokenBarrierError:
            pass
        except (OSError, smtplib.SMTPException) as exc:
            with lock:
                result.errors.append(f"client {index}: after {done} message(s): {exc}")
        finally:
            with lock:
                result.accepted += done
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    cpu = _cpu()
    try:
        result.started = time.perf_counter()
        barrier.wait()
    except threading.BrokenBarrierError:
        result.errors.append("not every client could connect")
    deadline = time.monotonic() + timeout + 5 * len(messages) / max(clients, 1)
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0.1))
    if any(thread.is_alive() for thread in threads):
        result.errors.append("a client was still sending at the deadline")
    result.cpu_seconds = _cpu() - cpu
    result.last_reply = max(last, default=time.perf_counter())
    return result


class MaildirWatch:
    """Counts distinct messages with one Subject prefix that arrived in a Maildir after it was created."""

    def __init__(self, maildir: Path, prefix: str) -> None:
        self.maildir = maildir
        self.needle = b"\nSubject: " + prefix.encode("ascii")
        self.seen: set[str] = set(self._names())
        self.subjects: set[bytes] = set()
        self.files: list[Path] = []
        self.duplicates = 0
        self.foreign = 0

    def _names(self) -> list[str]:
        names: list[str] = []
        for sub in ("new", "cur"):
            with contextlib.suppress(FileNotFoundError):
                names.extend(f"{sub}/{name}" for name in os.listdir(self.maildir / sub))
        return names

    def poll(self) -> int:
        """Look at files not seen yet; returns how many distinct messages of this run are there."""
        for name in self._names():
            key = name.split("/", 1)[1].split(":", 1)[0]
            if key in self.seen:
                continue
            try:
                with (self.maildir / name).open("rb") as handle:
                    head = handle.read(HEAD_BYTES)
            except FileNotFoundError:  # moved from new/ to cur/ meanwhile: seen next time
                continue
            self.seen.add(key)
            found = head.find(self.needle)
            if found < 0:
                self.foreign += 1
                continue
            self.files.append(self.maildir / name)
            start = found + len(self.needle)
            subject = head[start : head.find(b"\r\n", start) if b"\r\n" in head[start:] else None]
            if subject in self.subjects:
                self.duplicates += 1
            self.subjects.add(subject)
        return len(self.subjects)

    def remove(self) -> None:
        """Delete the files of this run (a Maildir of tens of thousands of files slows every listing)."""
        for path in self.files:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self.files.clear()

    def wait(self, count: int, timeout: float, interval: float = 0.05) -> float | None:
        """``time.perf_counter()`` when ``count`` messages were there, or None after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            if self.poll() >= count:
                return time.perf_counter()
            if time.monotonic() > deadline:
                return None
            time.sleep(interval)


# -- the null sink ---------------------------------------------------------------------------------------


class _Sink(asyncio.Protocol):
    """Just enough SMTP for smtplib: every command is OK, DATA is read up to CRLF.CRLF and dropped."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.in_data = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while True:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    self.buffer = self.buffer[-4:]
                    return
                self.buffer = self.buffer[end + 5 :]
                self.in_data = False
                self.transport.write(b"250 2.0.0 dropped\r\n")
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return
            line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.transport.write(b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                self.in_data = True
                self.buffer = b"\r\n" + self.buffer  # so a message ending right away is found too
                self.transport.write(b"354 go on\r\n")
            elif verb == b"QUIT":
                self.transport.write(b"221 bye\r\n")
                self.transport.close()
                return
            else:
                self.transport.write(b"250 OK\r\n")


async def _serve_sink(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Sink, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "sink":
        raise SystemExit("usage: python bench/load.py sink PORT")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_sink(int(sys.argv[2])))
