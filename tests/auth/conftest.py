"""Fixtures of the auth tests: the fake authority (temporary home until it moves to tests/lab)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.auth.fake_authority import FakeAuthority


@pytest.fixture
def authority(tmp_path: Path) -> Iterator[FakeAuthority]:
    running = FakeAuthority(tmp_path / "authority").start()
    yield running
    running.stop()
