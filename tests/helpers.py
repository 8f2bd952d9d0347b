"""Small helpers shared by tests: running the real command line as a user would."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

BIN = Path(sys.executable).parent


def run_cli(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    home: Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``relaywizard`` console script in a subprocess and capture its output."""
    full_env = dict(os.environ if env is None else env)
    if home is not None:
        full_env["RELAYWIZARD_HOME"] = str(home)
    return subprocess.run(
        [str(BIN / "relaywizard"), *args],
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


def assert_one_sentence_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit 2, one line on stderr naming the problem, and no traceback anywhere."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), lines[0]


class Background:
    """A long-running command (``relay``, ``tray``) started in the background, ready once a line of its
    standard error contains ``ready``; ``startup`` keeps the lines it printed until then."""

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str],
        *,
        ready: str,
        within: float = 30,
        program: Path | None = None,
    ) -> None:
        import time

        self.process = subprocess.Popen(
            [str(program or BIN / "relaywizard"), *args],
            env=dict(env, PYTHONFAULTHANDLER="1"),  # a hang at stop shows every thread's stack (below)
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.startup: list[str] = []
        assert self.process.stderr is not None
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            self.startup.append(line)
            if ready in line:
                return
            if not line and self.process.poll() is not None:
                break
        self.process.kill()
        self.process.communicate()
        raise AssertionError(f"{args[0]} did not start: {''.join(self.startup)}")

    def stop(self, signal_number: int = 15) -> tuple[int, str]:
        """Send ``signal_number`` (SIGTERM), wait; the exit code and what it wrote to standard error after
        the lines it printed while starting (those are in ``startup``)."""
        self.process.send_signal(signal_number)
        try:
            _, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.send_signal(6)  # SIGABRT: the fault handler prints where every thread is
            _, err = self.process.communicate(timeout=10)
            raise AssertionError(f"{self.process.args[1]} did not stop within 30 s:\n{err}") from None
        return self.process.returncode, err

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


class LoopWatch:
    """Ticks on the running asyncio loop every ``interval`` seconds while it is open, to show that the
    loop (and, under qasync, the window) was never blocked for long: ``async with LoopWatch() as watch``,
    then ``watch.longest_gap()``."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.ticks: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopWatch:
        self._task = asyncio.ensure_future(self._tick())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _tick(self) -> None:
        while True:
            self.ticks.append(time.monotonic())
            await asyncio.sleep(self.interval)

    def since(self, start: float) -> list[float]:
        return [tick for tick in self.ticks if tick >= start]

    def longest_gap(self, since: float = 0.0) -> float:
        """The longest time between two ticks (after ``since``, a ``time.monotonic()`` value)."""
        return max((b - a for a, b in itertools.pairwise(self.since(since))), default=0.0)


def send_with_bare_lf(port: int, subject: str) -> str:
    """What some device firmware sends: header and body lines ending with LF alone (smtplib would mend
    them, so by hand), the data ended correctly with CRLF.CRLF. Returns the reply to the end of data."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        replies = connection.makefile("rb")

        def command(line: bytes) -> str:
            connection.sendall(line)
            while (reply := replies.readline().decode())[3:4] == "-":
                pass
            return reply.strip()

        assert replies.readline().startswith(b"220")
        for line in (
            b"EHLO mfp\r\n",
            b"MAIL FROM:<printer@office.example>\r\n",
            b"RCPT TO:<alice@lab.test>\r\n",
        ):
            assert command(line)[0] == "2"
        assert command(b"DATA\r\n").startswith("354")
        body = f"From: printer@office.example\nTo: alice@lab.test\nSubject: {subject}\n\nPage 1\nPage 2\r\n"
        answer = command(body.encode() + b".\r\n")
        command(b"QUIT\r\n")
        return answer


def local_relay_args(command: str, port: int, spool: Path, *rest: str) -> list[str]:
    """``relay`` (or ``tray``) on 127.0.0.1:``port`` for 127.0.0.1 alone, with pacing off, on ``spool``;
    ``rest`` says where it forwards, and as whom."""
    allow = ["--listen", f"127.0.0.1:{port}", "--allow", "127.0.0.1/32"]
    return [command, *allow, "--spool", str(spool), "--rate", "0", *rest]
