"""``relaywizard tray`` from the command line: the window-only mode running a real relay, one instance per
user, and the one-sentence refusals (no display, no tray, a port in use)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_relay_cli import delivered, keyring_env, lab_relay_args, send
from tests.helpers import Background, assert_one_sentence_error, run_cli
from tests.lab.lab import Lab
from tests.lab.process import free_port

pytestmark = [pytest.mark.lab, pytest.mark.keyring]
__all__ = ["keyring_env"]  # the fixture, shared with the relay command's tests


def tray_args(lab: Lab, port: int, spool: Path, *extra: str) -> list[str]:
    return lab_relay_args("tray", lab, port, spool, *extra)


def start_tray(args: list[str], env: dict[str, str]) -> Background:
    """A tray process, ready when it says what it runs or follows (``relaywizard tray: ...``)."""
    return Background(args, env, ready="relaywizard tray:")


@pytest.fixture
def tray_env(keyring_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    env = dict(keyring_env, RELAYWIZARD_HOME=str(tmp_path / "home"), QT_QPA_PLATFORM="offscreen")
    env["RELAYWIZARD_RUNTIME_DIR"] = f"/tmp/rw-tray-{uuid.uuid4().hex[:8]}"
    return env


@pytest.fixture
def window_tray(lab: Lab, tray_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[Background, int]]:
    port = free_port("127.0.0.1")
    running = start_tray(tray_args(lab, port, tmp_path / "spool", "--window"), tray_env)
    yield running, port
    running.kill()


def test_the_window_mode_runs_the_relay_which_delivers_and_stops_cleanly_on_sigterm(
    lab: Lab, window_tray: tuple[Background, int]
) -> None:
    tray, port = window_tray
    assert f"relay listening on 127.0.0.1:{port}" in tray.startup[-1]
    subject = f"tray cli {uuid.uuid4()}"
    send(port, subject)
    assert delivered(lab, "alice@lab.test", {subject})[subject] == 1
    code, err = tray.stop()
    assert code == 0, err
    assert "Traceback" not in err


def test_a_second_tray_brings_the_first_forward_and_exits(
    lab: Lab, window_tray: tuple[Background, int], tray_env: dict[str, str], tmp_path: Path
) -> None:
    again = run_cli(tray_args(lab, free_port("127.0.0.1"), tmp_path / "spool2", "--window"), env=tray_env)
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    tray, _port = window_tray
    assert tray.process.poll() is None  # the first one runs on


def test_a_tray_started_while_the_relay_service_runs_attaches_to_it(
    lab: Lab, keyring_env: dict[str, str], tray_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port("127.0.0.1")
    spool = tmp_path / "spool"
    relay_args = tray_args(lab, port, spool)
    relay_args[0] = "relay"
    service = Background(relay_args, tray_env, ready="listening on")
    try:
        tray = start_tray(tray_args(lab, port, spool, "--window"), tray_env)
        assert "following the relay already running" in tray.startup[-1]
        code, err = tray.stop()
        assert code == 0, err
        assert service.process.poll() is None  # quitting the tray leaves the service running
    finally:
        service.stop()


def test_a_port_in_use_is_one_sentence(lab: Lab, tray_env: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(tray_args(lab, port, tmp_path / "spool", "--window"), env=tray_env)
    assert_one_sentence_error(result, str(port))


def test_a_desktop_without_a_tray_is_told_where_to_go_instead(
    tray_env: dict[str, str], tmp_path: Path
) -> None:
    result = run_cli(["tray", "--allow", "127.0.0.1/32", "--spool", str(tmp_path / "spool")], env=tray_env)
    assert_one_sentence_error(result, "no system tray", "--window", "relaywizard relay")


def test_without_a_display_the_tray_says_so(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.pop("QT_QPA_PLATFORM", None)
    result = run_cli(["tray"], env=env, home=tmp_path)
    assert_one_sentence_error(result, "No display")
