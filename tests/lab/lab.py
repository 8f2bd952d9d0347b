"""The whole lab: certificates, token introspection, Dovecot, Postfix and unbound, as one unit.

A pytest session fixture calls ``Lab.acquire()``: when a lab built from the same code is already running
(a developer keeps one up with ``python -m tests.lab start``), it is reused in well under a second and left
running; otherwise a fresh one is built, started, and stopped by PID when the session ends.
Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.lab import ports
from tests.lab.mail import MailLab
from tests.lab.process import pid_alive, port_open, read_pid, stop_pid, tail, wait_for_port
from tests.lab.tls import LabCertificates, make_certificates
from tests.lab.unbound import DnsLab

LAB_DIR_ENV = "RELAYWIZARD_LAB_DIR"
_HERE = Path(__file__).resolve().parent


def default_root() -> Path:
    """One lab per machine (its ports are fixed): ``$RELAYWIZARD_LAB_DIR`` or /var/tmp/relaywizard-lab."""
    return Path(os.environ.get(LAB_DIR_ENV) or "/var/tmp/relaywizard-lab")


def fingerprint() -> str:
    """A digest of the lab's own code: a running lab built from other code is rebuilt, not reused."""
    digest = hashlib.sha256()
    for source in sorted(_HERE.glob("*.py")):
        digest.update(source.name.encode() + source.read_bytes())
    return digest.hexdigest()[:16]


class Lab:
    """A running lab, and what tests need to talk to it."""

    host = ports.HOST
    connector_client = ports.CONNECTOR_CLIENT
    submission_port = ports.SUBMISSION
    mx_port = ports.MX
    connector_port = ports.CONNECTOR
    plain_port = ports.PLAIN
    dns_port = ports.DNS

    def __init__(self, root: Path) -> None:
        self.root = root
        tls = root / "tls"
        self.certs = LabCertificates(ca=tls / "ca.pem", cert=tls / "server.pem", key=tls / "server.key")
        self.mail = MailLab(root, self.certs)
        self.dns = DnsLab(root / "unbound", ports.HOST, ports.DNS)
        self.owned = False

    # -- life cycle ------------------------------------------------------------------------------

    @classmethod
    def acquire(cls, root: Path | None = None) -> Lab:
        """Reuse the lab running under ``root`` if it is healthy and current, else build and start one."""
        lab = cls(root or default_root())
        lab.root.mkdir(parents=True, exist_ok=True)
        with lab._locked():
            lab._register()
            if lab._state().get("fingerprint") == fingerprint() and lab.healthy():
                return lab
            if lab._other_users() and lab.healthy():
                return lab  # older code, but rebuilding under another test run's feet would fail its tests
            lab._stop_all()
            lab._build()
            lab._register()
            lab._start_all()
            lab.owned = True
            return lab

    def release(self) -> None:
        """Stop the lab if this process started it and no other test process uses it; else leave it."""
        with self._locked():
            (self._users / str(os.getpid())).unlink(missing_ok=True)
            if not self.owned or self._other_users():
                return
            self._stop_all()
            self._state_file.unlink(missing_ok=True)

    @property
    def _users(self) -> Path:
        return self.root / "users"

    def _register(self) -> None:
        self._users.mkdir(exist_ok=True)
        (self._users / str(os.getpid())).touch()

    def _other_users(self) -> list[int]:
        """Other live processes using this lab (several test runs at once, as when helpers work together)."""
        others = []
        for entry in self._users.glob("*") if self._users.is_dir() else []:
            pid = int(entry.name) if entry.name.isdigit() else 0
            if pid == os.getpid():
                continue
            if pid and pid_alive(pid):
                others.append(pid)
            else:
                entry.unlink(missing_ok=True)
        return others

    def stop(self) -> None:
        with self._locked():
            self._stop_all()
            self._state_file.unlink(missing_ok=True)

    def healthy(self) -> bool:
        return (
            self.mail.running()
            and self.dns.running()
            and pid_alive(self._introspection_pid())
            and all(
                port_open(ports.HOST, p)
                for p in (ports.SUBMISSION, ports.MX, ports.CONNECTOR, ports.PLAIN, ports.INTROSPECTION)
            )
        )

    def _build(self) -> None:
        keep = {"lock", "users"}
        for entry in self.root.iterdir():
            if entry.name not in keep:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        make_certificates(self.certs.ca.parent)
        self.mail.write_config()
        self.dns.write_config()

    def _start_all(self) -> None:
        self._start_introspection()
        self.mail.start()
        self.dns.start()
        self.dns.wait_ready()
        self._state_file.write_text(json.dumps({"fingerprint": fingerprint(), "started": time.time()}))

    def _stop_all(self) -> None:
        self.dns.stop()
        self.mail.stop()
        stop_pid(self._introspection_pid())

    def _start_introspection(self) -> None:
        log = (self.root / "introspection.log").open("ab")
        process = subprocess.Popen(
            [
                sys.executable,
                str(_HERE / "introspection.py"),
                str(ports.INTROSPECTION),
                str(self.mail.tokens_file),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        (self.root / "introspection.pid").write_text(str(process.pid))
        wait_for_port(ports.HOST, ports.INTROSPECTION, timeout=10, log=self.root / "introspection.log")

    def _introspection_pid(self) -> int | None:
        return read_pid(self.root / "introspection.pid")

    @property
    def _state_file(self) -> Path:
        return self.root / "state.json"

    def _state(self) -> dict[str, object]:
        try:
            state = json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.root / "lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- what tests use --------------------------------------------------------------------------

    @property
    def ca_file(self) -> Path:
        return self.certs.ca

    def issue_token(self, username: str, lifetime: float = 3600) -> str:
        """A bearer token Dovecot accepts for ``username`` over XOAUTH2 until it expires or is revoked."""
        token = "lab-" + secrets.token_urlsafe(24)
        self._edit_tokens(
            lambda tokens: tokens.__setitem__(token, {"username": username, "exp": time.time() + lifetime})
        )
        return token

    def revoke_token(self, token: str) -> None:
        self._edit_tokens(lambda tokens: tokens.pop(token, None))

    def _edit_tokens(self, change: Callable[[dict[str, object]], object]) -> None:
        path = self.mail.tokens_file
        with self._locked():
            try:
                tokens = json.loads(path.read_text())
            except (OSError, ValueError):
                tokens = {}
            change(tokens)
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(tokens))
            os.replace(temporary, path)

    def message_files(self, address: str) -> list[Path]:
        """The messages delivered to ``address`` so far (Maildir new/ and cur/)."""
        return self.mail.message_files(address)

    def wait_for_messages(self, address: str, count: int, timeout: float = 15.0) -> list[Path]:
        """Wait until ``address`` holds at least ``count`` messages; Postfix delivers after its 250."""
        deadline = time.monotonic() + timeout
        while True:
            files = self.message_files(address)
            if len(files) >= count or time.monotonic() > deadline:
                return files
            time.sleep(0.05)

    def logs(self) -> str:
        """The end of every server's log, for a failing test's report."""
        paths = [*self.mail.logs(), self.dns.root / "unbound.log", self.root / "introspection.log"]
        return "\n".join(f"== {p}\n{tail(p, 30)}" for p in paths)
