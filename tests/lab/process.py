"""Starting and stopping the lab's daemons: by PID, never by name, so nothing else is touched."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from tests.lab import ports


class LabError(RuntimeError):
    """A lab server would not start; the message carries the end of its log."""


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def stop_pid(pid: int | None, timeout: float = 15.0) -> None:
    """SIGTERM, wait, then SIGKILL: the process is gone when this returns."""
    if not pid_alive(pid):
        return
    assert pid is not None
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            _signal(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
        time.sleep(0.05)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        subprocess.run(["sudo", "-n", "kill", f"-{int(sig)}", str(pid)], check=False)


def run_as_root(argv: Sequence[str], *, log: Path) -> None:
    """Run a command as root (directly when we are root, else through password-less sudo).

    Output goes to ``log``, not to a pipe: daemons such as Dovecot keep the caller's stdout and stderr
    open, and a pipe would never reach end-of-file.
    """
    command = list(argv) if os.geteuid() == 0 else ["sudo", "-n", *argv]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        result = subprocess.run(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=60, check=False
        )
    if result.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({result.returncode}):\n{tail(log, 15)}")


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} unreadable)"


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, *, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(host, port):
        if time.monotonic() > deadline:
            detail = f"\n{log}:\n{tail(log)}" if log else ""
            raise LabError(f"nothing listens on {host}:{port} after {timeout:.0f} s{detail}")
        time.sleep(0.05)


def free_port(host: str) -> int:
    """A port free for both UDP and TCP on ``host``, other than the shared lab's fixed DNS port.

    The shared lab (tests/conftest.py, or one a developer keeps running) holds ports.DNS for a whole
    session, so this fixture's own unbound must not take it.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = int(udp.getsockname()[1])
            if port == ports.DNS:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
            return port
    raise RuntimeError(f"no free port on {host}")
