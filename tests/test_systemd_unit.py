"""packaging/'s systemd units: systemd-analyze verify finds nothing to say, and the keys the relay relies on
(clean stop within the timeout, restart on failure, hardening that still lets it write its spool) are set."""

from __future__ import annotations

import os
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from relaywizard.core.paths import AppPaths
from relaywizard.relay.engine import SESSION_GRACE
from relaywizard.relay.forwarder import STOP_GRACE
from tests.helpers import BIN

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_UNIT = ROOT / "packaging" / "relaywizard-relay.service"
USER_UNIT = ROOT / "packaging" / "user" / "relaywizard-relay.service"


def parse(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file, each key with all its values (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        sections[section][key.strip()].append(value.strip())
    return sections


def verify(unit: Path, tmp_path: Path, *, user: bool) -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify, with ExecStart pointed at this checkout's relaywizard (it must exist)."""
    text = unit.read_text()
    old = "%h/.local/bin/relaywizard" if user else "/usr/local/bin/relaywizard"
    assert f"ExecStart={old} relay --config " in text
    copy = tmp_path / unit.name
    copy.write_text(text.replace(f"ExecStart={old}", f"ExecStart={BIN / 'relaywizard'}"))
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), SYSTEMD_LOG_COLOR="0")
    command = ["systemd-analyze", *(["--user"] if user else []), "verify", str(copy)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)


@pytest.mark.parametrize(("unit", "user"), [(SYSTEM_UNIT, False), (USER_UNIT, True)], ids=["system", "user"])
def test_systemd_analyze_verify_is_silent(unit: Path, user: bool, tmp_path: Path) -> None:
    result = verify(unit, tmp_path, user=user)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # unknown keys and bad values are only warnings


def test_verify_does_catch_a_mistake(tmp_path: Path) -> None:
    broken = tmp_path / "broken" / SYSTEM_UNIT.name
    broken.parent.mkdir()
    broken.write_text(SYSTEM_UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystm=strict"))
    assert "Unknown key" in verify(broken, tmp_path, user=False).stderr


@pytest.mark.parametrize("unit", [SYSTEM_UNIT, USER_UNIT], ids=["system", "user"])
def test_stop_restart_and_hardening(unit: Path) -> None:
    service = parse(unit)["Service"]
    assert service["ExecStart"][0].split()[1:3] == ["relay", "--config"]
    assert service["Restart"] == ["on-failure"]
    assert service["RestartPreventExitStatus"] == ["2"]  # unusable settings: a restart loop helps nobody
    assert service["KillSignal"] == ["SIGTERM"]
    # SIGKILL only after the relay's own grace periods (sessions, then deliveries) have run out.
    assert int(service["TimeoutStopSec"][0]) > SESSION_GRACE + STOP_GRACE
    assert service["NoNewPrivileges"] == ["yes"]
    assert service["ProtectSystem"] == ["strict"]
    assert service["PrivateTmp"] == ["yes"]
    assert service["ReadWritePaths"]
    assert service["UMask"] == ["0077"]


def _writable(service: dict[str, list[str]], path: Path, expand: dict[str, str]) -> bool:
    allowed = []
    for value in service["ReadWritePaths"]:
        for entry in value.split():
            entry = entry.removeprefix("-")
            for spec, real in expand.items():
                entry = entry.replace(spec, real)
            allowed.append(Path(entry))
    return any(path == root or root in path.parents for root in allowed)


def test_the_system_unit_lets_the_relay_write_its_spool_log_and_socket_only() -> None:
    service = parse(SYSTEM_UNIT)["Service"]
    env = dict(item.split("=", 1) for item in service["Environment"])
    paths = AppPaths.under(Path(env["RELAYWIZARD_HOME"]))
    for needed in (paths.spool, paths.delivery_log.parent, paths.settings_file):
        assert _writable(service, needed, {}), needed
    assert service["ExecStart"][0].endswith(f"--config {paths.settings_file}")
    assert env["RELAYWIZARD_RUNTIME_DIR"] == "/run/" + service["RuntimeDirectory"][0]
    assert service["RuntimeDirectoryMode"] == ["0700"]
    assert service["User"] == ["relaywizard"]
    assert service["CapabilityBoundingSet"] == [""]
    assert parse(SYSTEM_UNIT)["Install"]["WantedBy"] == ["multi-user.target"]


def test_the_user_unit_lets_the_relay_write_where_the_wizard_put_things(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    for name in ("RELAYWIZARD_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    paths = AppPaths.default()  # what the wizard and the tray use for this user
    service = parse(USER_UNIT)["Service"]
    expand = {"%h": str(home), "%E": str(home / ".config"), "%t": "/run/user/1000"}
    for needed in (paths.spool, paths.delivery_log.parent, paths.settings_file):
        assert _writable(service, needed, expand), needed
    assert _writable(service, Path("/run/user/1000/relaywizard/relay-0123.sock"), expand)
    assert service["ExecStart"][0].endswith("--config %E/relaywizard/settings.toml")
    assert paths.settings_file == home / ".config" / "relaywizard" / "settings.toml"
    assert "User" not in service  # a user manager runs it as that user
    assert parse(USER_UNIT)["Install"]["WantedBy"] == ["default.target"]
