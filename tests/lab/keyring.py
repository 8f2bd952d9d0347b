"""A real Secret Service for the tests: gnome-keyring in a private D-Bus session with a fresh data folder.

Nothing touches the desktop's own keyring: the bus, the keyring files and the runtime folder are the
test's own, and both daemons are stopped by PID.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.lab.process import LabError, stop_pid


class SecretServiceSession:
    """A private ``dbus-daemon`` with ``gnome-keyring-daemon --components=secrets`` on it."""

    def __init__(self, root: Path, password: str | None = "lab-keyring-password") -> None:
        """``password=None`` leaves the login keyring locked (its unlock prompt fails: no display)."""
        self.root = root
        self.password = password
        self._bus: subprocess.Popen[bytes] | None = None
        self._keyring: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}

    def start(self) -> SecretServiceSession:
        runtime = self.root / "run"
        runtime.mkdir(parents=True, exist_ok=True)
        runtime.chmod(0o700)
        (self.root / "data").mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DBUS_", "GNOME_KEYRING", "DISPLAY"))}
        env.pop("PYTHON_KEYRING_BACKEND", None)
        env.update(XDG_DATA_HOME=str(self.root / "data"), XDG_RUNTIME_DIR=str(runtime))
        log = (self.root / "dbus.log").open("ab")
        self._bus = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        assert self._bus.stdout is not None
        address = self._bus.stdout.readline().decode().strip()
        if not address:
            raise LabError("dbus-daemon printed no address")
        env["DBUS_SESSION_BUS_ADDRESS"] = address
        argv = ["gnome-keyring-daemon", "--foreground", "--components=secrets"]
        if self.password is not None:
            argv.append("--unlock")
        self._keyring = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=log, stderr=log, env=env, start_new_session=True
        )
        assert self._keyring.stdin is not None
        if self.password is not None:
            self._keyring.stdin.write(self.password.encode())
        self._keyring.stdin.close()
        self.env = env
        self._wait_for_name("org.freedesktop.secrets")
        return self

    def _wait_for_name(self, name: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = subprocess.run(
                [
                    "dbus-send",
                    "--session",
                    "--print-reply",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.NameHasOwner",
                    f"string:{name}",
                ],
                env=self.env,
                capture_output=True,
                text=True,
                check=False,
            )
            if "boolean true" in reply.stdout:
                return
            if self._keyring is not None and self._keyring.poll() is not None:
                break
            time.sleep(0.05)
        raise LabError(f"gnome-keyring-daemon did not take {name} on the private bus")

    def stop(self) -> None:
        for process in (self._keyring, self._bus):
            if process is not None:
                stop_pid(process.pid)
                process.wait()
        self._keyring = self._bus = None
