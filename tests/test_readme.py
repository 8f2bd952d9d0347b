"""The README's "Try it" block, run as it is written: a passed check and a relay delivering, against the lab.

A new user following only the README gets from a fresh machine (``./test.sh`` has installed everything)
to a passed ``check`` and a running relay; this proves the block still works.
"""

from __future__ import annotations

import email
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.lab.lab import Lab

ROOT = Path(__file__).resolve().parents[1]
SUBJECT = "Scan from the README"


def readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- tests/test_readme.py runs this block as it is -->\n```sh\n(.*?)```", text, re.S)
    assert match, "the README lost its 'Try it' block"
    return match.group(1)


def delivered(lab: Lab) -> int:
    return sum(
        email.message_from_bytes(path.read_bytes())["Subject"] == SUBJECT
        for path in lab.message_files("alice@lab.test")
    )


@pytest.mark.lab
@pytest.mark.keyring
def test_the_readmes_try_it_block_passes_the_check_and_relays_a_message(lab: Lab, tmp_path: Path) -> None:
    before = delivered(lab)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DBUS_", "XDG_RUNTIME", "GNOME_KEYRING", "RELAYWIZARD_RUNTIME"))
    }
    env |= {
        "RELAYWIZARD_HOME": str(tmp_path / "home"),
        "XDG_DATA_HOME": str(tmp_path / "data"),  # a fresh keyring, as on a new machine
        "NO_COLOR": "1",
    }
    result = subprocess.run(
        ["dbus-run-session", "--", "bash", "-euo", "pipefail", "-c", readme_block()],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "✗" not in result.stdout, output
    assert "listening on 127.0.0.1:2525" in result.stderr, output
    assert "stopped; 0 message(s) stay queued" in result.stderr, output
    assert "scanner-pass" not in output
    assert delivered(lab) == before + 1
