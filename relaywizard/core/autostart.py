"""Start the tray at login: an XDG autostart entry (Linux), the HKCU Run key (Windows), a LaunchAgent (macOS).

The platform is a parameter, not only the running OS, so every variant is written and removed by the
tests on any machine: the files go under a given home (and ``XDG_CONFIG_HOME``), the registry is any
object with the few ``winreg`` functions used here.

    autostart = Autostart.for_platform()        # this machine
    autostart.enable(); autostart.is_enabled(); autostart.disable()
"""

from __future__ import annotations

import contextlib
import importlib
import os
import plistlib
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from relaywizard.core.errors import ConfigError

Platform = Literal["linux", "windows", "macos"]
ENTRY_NAME = "relaywizard"
"""The .desktop file's name and the Run value's name."""
LAUNCH_AGENT_LABEL = "io.github.relaywizard.tray"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"


class AutostartError(ConfigError):
    """Starting at login cannot be turned on or off."""

    default_title = "Start at login"


def current_platform() -> Platform:
    if sys.platform == "win32":
        return "windows"
    if sys.platform == "darwin":
        return "macos"
    return "linux"


def launch_command() -> list[str]:
    """What starts the tray: the frozen application itself, or this Python running the package."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "tray"]
    return [sys.executable, "-m", "relaywizard", "tray"]


def desktop_exec(argv: Sequence[str]) -> str:
    """An ``Exec=`` value (Desktop Entry spec: quoted arguments, ``%`` doubled, then string escapes)."""
    reserved = set(" \t\n\"'\\><~|&;$*?#()`=")
    words = []
    for arg in argv:
        word = arg.replace("%", "%%")
        if any(c in reserved for c in word) or not word:
            escaped = "".join("\\" + c if c in '"`$\\' else c for c in word)
            word = f'"{escaped}"'
        words.append(word)
    # A .desktop string value escapes backslashes once more.
    return " ".join(words).replace("\\", "\\\\")


class Registry(Protocol):
    """The part of ``winreg`` used here (a fake in the tests)."""

    HKEY_CURRENT_USER: int
    KEY_SET_VALUE: int
    KEY_QUERY_VALUE: int
    REG_SZ: int

    def CreateKeyEx(self, key: int, sub_key: str, reserved: int = 0, access: int = ...) -> Any: ...

    def OpenKey(self, key: int, sub_key: str, reserved: int = 0, access: int = ...) -> Any: ...

    def SetValueEx(self, key: Any, name: str, reserved: int, type: int, value: str) -> None: ...

    def QueryValueEx(self, key: Any, name: str) -> tuple[Any, int]: ...

    def DeleteValue(self, key: Any, name: str) -> None: ...

    def CloseKey(self, key: Any) -> None: ...


class Autostart(ABC):
    """Start at login for one platform; ``where`` says what is written, for the settings page."""

    def __init__(self, command: Sequence[str] | None = None) -> None:
        self.command = list(command or launch_command())

    @staticmethod
    def for_platform(
        platform: Platform | None = None,
        *,
        home: Path | None = None,
        environ: Mapping[str, str] | None = None,
        registry: Registry | None = None,
        command: Sequence[str] | None = None,
    ) -> Autostart:
        platform = platform or current_platform()
        home = Path(home) if home is not None else Path.home()
        environ = os.environ if environ is None else environ
        if platform == "linux":
            config = environ.get("XDG_CONFIG_HOME") or ""
            # The XDG spec: a relative XDG_CONFIG_HOME is invalid and must be ignored.
            base = Path(config) if os.path.isabs(config) else home / ".config"
            return XdgAutostart(base / "autostart" / f"{ENTRY_NAME}.desktop", command)
        if platform == "macos":
            return LaunchAgent(home / "Library" / "LaunchAgents" / f"{LAUNCH_AGENT_LABEL}.plist", command)
        if registry is None:
            registry = importlib.import_module("winreg")  # the module fits the Registry protocol
        return WindowsRunKey(registry, command)

    @property
    @abstractmethod
    def where(self) -> str:
        """What is written, for people (a file, or a registry value)."""

    @abstractmethod
    def enable(self) -> None: ...

    @abstractmethod
    def disable(self) -> None:
        """Turn it off; nothing happens when it was off."""

    @abstractmethod
    def is_enabled(self) -> bool: ...

    def set_enabled(self, enabled: bool) -> None:
        if enabled:
            self.enable()
        else:
            self.disable()


class _FileAutostart(Autostart):
    def __init__(self, path: Path, command: Sequence[str] | None) -> None:
        super().__init__(command)
        self.path = path

    @property
    def where(self) -> str:
        return str(self.path)

    @abstractmethod
    def _content(self) -> bytes: ...

    def enable(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(self._content())
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise AutostartError(
                f"Start at login could not be turned on: {self.path} cannot be written "
                f"({exc.strerror or exc})."
            ) from None

    def disable(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise AutostartError(
                f"Start at login could not be turned off: {self.path} cannot be removed "
                f"({exc.strerror or exc})."
            ) from None


class XdgAutostart(_FileAutostart):
    """``$XDG_CONFIG_HOME/autostart/relaywizard.desktop`` (freedesktop Desktop Application Autostart)."""

    def _content(self) -> bytes:
        lines = [
            "[Desktop Entry]",
            "Type=Application",
            "Name=relaywizard",
            "Comment=Relays the office devices' mail to Microsoft 365, with its status in the tray",
            f"Exec={desktop_exec(self.command)}",
            "Icon=relaywizard",
            "Terminal=false",
            "Categories=Network;Email;",
            "X-GNOME-Autostart-enabled=true",
            "",
        ]
        return "\n".join(lines).encode()

    def is_enabled(self) -> bool:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
        values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        # A user (or a desktop's settings app) may switch an entry off without removing it.
        return values.get("Hidden", "false") != "true" and values.get("X-GNOME-Autostart-enabled") != "false"


class LaunchAgent(_FileAutostart):
    """``~/Library/LaunchAgents/<label>.plist``, loaded by launchd at the next login."""

    def _content(self) -> bytes:
        agent = {
            "Label": LAUNCH_AGENT_LABEL,
            "ProgramArguments": self.command,
            "RunAtLoad": True,
            "ProcessType": "Interactive",
            "LimitLoadToSessionType": "Aqua",  # the tray needs the user's graphical session
        }
        return plistlib.dumps(agent)

    def is_enabled(self) -> bool:
        try:
            agent = plistlib.loads(self.path.read_bytes())
        except (OSError, plistlib.InvalidFileException, ValueError):
            return False
        return (
            isinstance(agent, dict) and agent.get("Label") == LAUNCH_AGENT_LABEL and not agent.get("Disabled")
        )


class WindowsRunKey(Autostart):
    r"""The ``relaywizard`` value of ``HKCU\Software\Microsoft\Windows\CurrentVersion\Run``."""

    def __init__(self, registry: Registry, command: Sequence[str] | None) -> None:
        super().__init__(command)
        self.registry = registry

    @property
    def where(self) -> str:
        return rf"HKEY_CURRENT_USER\{RUN_KEY}\{ENTRY_NAME}"

    @property
    def command_line(self) -> str:
        return subprocess.list2cmdline(self.command)

    def enable(self) -> None:
        reg = self.registry
        try:
            key = reg.CreateKeyEx(reg.HKEY_CURRENT_USER, RUN_KEY, 0, reg.KEY_SET_VALUE)
            try:
                reg.SetValueEx(key, ENTRY_NAME, 0, reg.REG_SZ, self.command_line)
            finally:
                reg.CloseKey(key)
        except OSError as exc:
            raise AutostartError(
                f"Start at login could not be turned on: the registry refused ({exc.strerror or exc})."
            ) from None

    def disable(self) -> None:
        reg = self.registry
        try:
            key = reg.OpenKey(reg.HKEY_CURRENT_USER, RUN_KEY, 0, reg.KEY_SET_VALUE)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise AutostartError(
                f"Start at login could not be turned off: the registry refused ({exc.strerror or exc})."
            ) from None
        try:
            reg.DeleteValue(key, ENTRY_NAME)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise AutostartError(
                f"Start at login could not be turned off: the registry refused ({exc.strerror or exc})."
            ) from None
        finally:
            reg.CloseKey(key)

    def is_enabled(self) -> bool:
        reg = self.registry
        try:
            key = reg.OpenKey(reg.HKEY_CURRENT_USER, RUN_KEY, 0, reg.KEY_QUERY_VALUE)
        except OSError:
            return False
        try:
            value, _kind = reg.QueryValueEx(key, ENTRY_NAME)
        except OSError:
            return False
        finally:
            reg.CloseKey(key)
        return isinstance(value, str) and bool(value.strip())
