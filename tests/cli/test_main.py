"""The command itself: version, usage errors, and a wizard without a display."""

from __future__ import annotations

import os
from pathlib import Path

from relaywizard import __version__
from relaywizard.cli.gui_commands import display_available
from tests.helpers import assert_one_sentence_error, run_cli


def test_version() -> None:
    result = run_cli(["--version"])
    assert result.returncode == 0
    assert result.stdout.strip() == f"relaywizard {__version__}"


def test_unknown_command_is_a_usage_error() -> None:
    result = run_cli(["frobnicate"])
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_a_display_the_wizard_says_so_in_one_sentence(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"}}
    for args in ([], ["wizard"]):
        result = run_cli(args, env=env, home=tmp_path)
        assert_one_sentence_error(result, "no display", "relaywizard --help")


def test_display_detection() -> None:
    assert not display_available({}, "linux")
    assert display_available({"DISPLAY": ":0"}, "linux")
    assert display_available({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert display_available({"QT_QPA_PLATFORM": "offscreen"}, "linux")
    assert display_available({}, "win32")
    assert display_available({}, "darwin")
