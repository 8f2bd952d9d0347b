"""Start at login, written and removed for each platform into a temporary home (and a fake registry)."""

from __future__ import annotations

import configparser
import plistlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from relaywizard.core import autostart
from relaywizard.core.autostart import (
    RUN_KEY,
    Autostart,
    AutostartError,
    Platform,
    desktop_exec,
    launch_command,
)

COMMAND = ["/opt/relay wizard/bin/python3", "-m", "relaywizard", "tray"]


class FakeRegistry:
    """``winreg`` in memory: keys are paths under HKCU, values (data, type) by name."""

    HKEY_CURRENT_USER = 0x80000001
    KEY_SET_VALUE = 0x0002
    KEY_QUERY_VALUE = 0x0001
    REG_SZ = 1

    def __init__(self) -> None:
        self.keys: dict[str, dict[str, tuple[Any, int]]] = {}
        self.open_handles = 0
        self.refuse: OSError | None = None

    def _check(self, key: int) -> None:
        assert key == self.HKEY_CURRENT_USER, "only HKCU: no administrator rights needed"
        if self.refuse is not None:
            raise self.refuse

    def CreateKeyEx(self, key: int, sub_key: str, reserved: int = 0, access: int = 0) -> str:
        self._check(key)
        assert access & self.KEY_SET_VALUE
        self.keys.setdefault(sub_key, {})
        self.open_handles += 1
        return sub_key

    def OpenKey(self, key: int, sub_key: str, reserved: int = 0, access: int = 0) -> str:
        self._check(key)
        if sub_key not in self.keys:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        self.open_handles += 1
        return sub_key

    def SetValueEx(self, key: str, name: str, reserved: int, type: int, value: str) -> None:
        self.keys[key][name] = (value, type)

    def QueryValueEx(self, key: str, name: str) -> tuple[Any, int]:
        try:
            return self.keys[key][name]
        except KeyError:
            raise FileNotFoundError(2, "The system cannot find the file specified") from None

    def DeleteValue(self, key: str, name: str) -> None:
        if name not in self.keys[key]:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        del self.keys[key][name]

    def CloseKey(self, key: str) -> None:
        self.open_handles -= 1


def make(platform: Platform, home: Path, registry: FakeRegistry | None = None) -> Autostart:
    return Autostart.for_platform(
        platform, home=home, environ={}, registry=registry or FakeRegistry(), command=COMMAND
    )


@pytest.mark.parametrize("platform", ["linux", "macos", "windows"])
def test_enable_then_disable_on_each_platform(platform: Platform, tmp_path: Path) -> None:
    registry = FakeRegistry()
    entry = make(platform, tmp_path, registry)
    assert not entry.is_enabled()
    entry.disable()  # turning off what is off is fine
    entry.enable()
    assert entry.is_enabled()
    entry.enable()  # and turning on twice writes one entry
    assert entry.is_enabled()
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    expected = {
        "linux": [".config/autostart/relaywizard.desktop"],
        "macos": ["Library/LaunchAgents/io.github.relaywizard.tray.plist"],
        "windows": [],
    }[platform]
    assert written == expected
    if platform == "windows":
        assert registry.keys[RUN_KEY] == {
            "relaywizard": ('"/opt/relay wizard/bin/python3" -m relaywizard tray', 1)
        }
        assert entry.where == rf"HKEY_CURRENT_USER\{RUN_KEY}\relaywizard"
    else:
        assert entry.where == str(tmp_path / expected[0])
    entry.set_enabled(False)
    assert not entry.is_enabled()
    assert not any(p.is_file() for p in tmp_path.rglob("*"))
    assert registry.keys.get(RUN_KEY, {}) == {}
    assert registry.open_handles == 0


def test_the_desktop_entry_runs_the_tray_and_honours_xdg_config_home(tmp_path: Path) -> None:
    config = tmp_path / "xdg-config"
    entry = Autostart.for_platform("linux", home=tmp_path / "home", environ={"XDG_CONFIG_HOME": str(config)})
    entry.enable()
    path = config / "autostart" / "relaywizard.desktop"
    assert entry.where == str(path)
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read(path)
    desktop = parser["Desktop Entry"]
    assert desktop["Type"] == "Application"
    assert desktop["Terminal"] == "false"
    assert desktop["Exec"] == desktop_exec(launch_command())
    assert launch_command() == [sys.executable, "-m", "relaywizard", "tray"]

    relative = Autostart.for_platform("linux", home=tmp_path / "home", environ={"XDG_CONFIG_HOME": "rel"})
    assert relative.where == str(tmp_path / "home" / ".config" / "autostart" / "relaywizard.desktop")


def test_a_desktop_entry_switched_off_by_the_desktop_counts_as_off(tmp_path: Path) -> None:
    entry = make("linux", tmp_path)
    entry.enable()
    path = Path(entry.where)
    path.write_text(path.read_text() + "Hidden=true\n")
    assert not entry.is_enabled()
    entry.enable()
    assert entry.is_enabled()


def split_exec(value: str) -> list[str]:
    """Read an Exec= value back as a desktop environment does (Desktop Entry spec, "The Exec key")."""
    text = value.replace("\\\\", "\\")  # the string-value escape comes off first
    words: list[str] = []
    word, quoted, i, started = "", False, 0, False
    while i < len(text):
        char = text[i]
        if quoted and char == "\\" and text[i + 1] in '"`$\\':
            word, i = word + text[i + 1], i + 2
            continue
        if char == '"':
            quoted, started = not quoted, True
        elif char == " " and not quoted:
            if started or word:
                words.append(word)
            word, started = "", False
        else:
            word += char
        i += 1
    if started or word:
        words.append(word)
    return [w.replace("%%", "%") for w in words]


def test_exec_quoting_survives_spaces_quotes_dollars_and_percent() -> None:
    argv = ["/opt/relay wizard/py", "--label", 'say "hi" $HOME 100% `x` back\\slash', "tray"]
    value = desktop_exec(argv)
    assert split_exec(value) == argv
    assert desktop_exec(["relaywizard", "tray"]) == "relaywizard tray"


def test_the_launch_agent_runs_the_tray_at_login(tmp_path: Path) -> None:
    entry = make("macos", tmp_path)
    entry.enable()
    agent = plistlib.loads(Path(entry.where).read_bytes())
    assert agent["Label"] == "io.github.relaywizard.tray"
    assert agent["ProgramArguments"] == COMMAND
    assert agent["RunAtLoad"] is True
    assert agent["LimitLoadToSessionType"] == "Aqua"
    Path(entry.where).write_bytes(plistlib.dumps({**agent, "Disabled": True}))
    assert not entry.is_enabled()
    Path(entry.where).write_text("not a plist")
    assert not entry.is_enabled()


def test_the_windows_value_is_one_command_line_windows_can_split() -> None:
    entry = autostart.WindowsRunKey(
        FakeRegistry(), ["C:\\Program Files\\relaywizard\\relaywizard.exe", "tray"]
    )
    assert entry.command_line == '"C:\\Program Files\\relaywizard\\relaywizard.exe" tray'
    assert entry.command_line == subprocess.list2cmdline(entry.command)


def test_failures_are_one_sentence(tmp_path: Path) -> None:
    registry = FakeRegistry()
    registry.refuse = PermissionError(13, "Access is denied")
    with pytest.raises(AutostartError, match=r"^Start at login could not be turned on: the registry refused"):
        make("windows", tmp_path, registry).enable()
    assert not make("windows", tmp_path, registry).is_enabled()

    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the folder should be")
    entry = Autostart.for_platform("linux", home=tmp_path, environ={"XDG_CONFIG_HOME": str(blocked)})
    with pytest.raises(AutostartError) as caught:
        entry.enable()
    assert caught.value.message.startswith("Start at login could not be turned on:")
    assert caught.value.message.count(". ") == 0
    assert not entry.is_enabled()


def test_the_platform_defaults_to_this_machine(tmp_path: Path) -> None:
    entry = Autostart.for_platform(home=tmp_path, environ={})
    assert isinstance(entry, autostart.XdgAutostart)  # the suite runs on Linux
    assert autostart.current_platform() == "linux"
