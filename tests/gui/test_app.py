"""``relaywizard wizard --exit-when-shown``: the hidden smoke test installs and bundles are checked with."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import run_cli

OFFSCREEN = {"QT_QPA_PLATFORM": "offscreen"}


def test_exits_0_with_the_first_page_title_once_shown(tmp_path: Path) -> None:
    result = run_cli(["wizard", "--exit-when-shown"], env=dict(os.environ, **OFFSCREEN), home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "shown: What are you setting up?"


def test_is_not_in_the_help() -> None:
    assert "--exit-when-shown" not in run_cli(["wizard", "--help"]).stdout


NO_ICONS = """
import sys
from pathlib import Path
from relaywizard.gui import app, icons
icons._FOLDER = Path(sys.argv[1])  # as in a bundle that lost its icons or Qt's SVG plugins
raise SystemExit(app.run_wizard(exit_when_shown=True))
"""


def test_exits_1_with_one_sentence_when_the_icons_cannot_be_drawn(tmp_path: Path) -> None:
    env = dict(os.environ, **OFFSCREEN, RELAYWIZARD_HOME=str(tmp_path), QT_LOGGING_RULES="qt.svg=false")
    result = subprocess.run(
        [sys.executable, "-c", NO_ICONS, str(tmp_path / "nothing")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["relaywizard: the wizard's icons cannot be drawn (Qt's SVG plugins are missing)."]
