"""Shared fixtures: the lab of real servers, a private Secret Service, and a clean CLI environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

# Qt must never try to open a real display in tests, and qasync must pick PySide6.
os.environ["QT_QPA_PLATFORM"] = "offscreen"
os.environ["QT_API"] = "pyside6"

import ipaddress
import socket

import pytest

from tests.lab.keyring import SecretServiceSession
from tests.lab.process import LabError

if TYPE_CHECKING:
    from tests.lab.authority import FakeAuthority
    from tests.lab.lab import Lab


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """Postfix + Dovecot + unbound on 127.0.0.1, started once per session (or reused when running)."""
    from tests.lab.lab import Lab

    try:
        running = Lab.acquire()
    except LabError as exc:
        pytest.fail(f"the test lab did not start: {exc}", pytrace=False)
    yield running
    running.release()


@pytest.fixture(scope="session")
def secret_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecretServiceSession]:
    """An unlocked gnome-keyring Secret Service on a private D-Bus session bus."""
    session = SecretServiceSession(tmp_path_factory.mktemp("keyring")).start()
    yield session
    session.stop()


@pytest.fixture
def authority(tmp_path: Path) -> Iterator[FakeAuthority]:
    """A fake OAuth authority on https://localhost (its CA in ``authority.ca_file``); tokens it issues are
    random strings. Scriptable per test: see tests/lab/authority.py."""
    from tests.lab.authority import FakeAuthority

    running = FakeAuthority(tmp_path / "authority").start()
    yield running
    running.stop()


@pytest.fixture
def lab_authority(lab: Lab, tmp_path: Path) -> Iterator[FakeAuthority]:
    """The fake authority issuing tokens the lab's Dovecot accepts over XOAUTH2 (``lab.issue_token``)."""
    from tests.lab.authority import FakeAuthority

    running = FakeAuthority(tmp_path / "authority", issue=lab.issue_token).start()
    yield running
    running.stop()


@pytest.fixture
def app_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh RELAYWIZARD_HOME for one test: settings, spool and logs start empty."""
    home = tmp_path / "home"
    monkeypatch.setenv("RELAYWIZARD_HOME", str(home))
    return home


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_sendto = socket.socket.sendto
_outside: list[str] = []


def _loopback(address: object) -> bool:
    if not isinstance(address, tuple):
        return True  # a Unix socket path
    host = str(address[0])
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a name: it would be resolved by someone else's server


def _guard(address: object) -> None:
    if not _loopback(address):
        _outside.append(repr(address))
        raise OSError(f"the test suite only talks to loopback addresses, not {address!r}")


def _connect(self: socket.socket, address: object) -> None:
    _guard(address)
    _real_connect(self, address)  # type: ignore[arg-type]


def _connect_ex(self: socket.socket, address: object) -> int:
    _guard(address)
    return _real_connect_ex(self, address)  # type: ignore[arg-type]


def _sendto(self: socket.socket, data: bytes, *args: object) -> int:
    _guard(args[-1])
    return _real_sendto(self, data, *args)  # type: ignore[call-overload, no-any-return]


@pytest.fixture(autouse=True)
def only_loopback(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Traffic from tests goes to loopback addresses only; a test that tries anything else fails."""
    monkeypatch.setattr(socket.socket, "connect", _connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _connect_ex)
    monkeypatch.setattr(socket.socket, "sendto", _sendto)
    _outside.clear()
    yield
    assert not _outside, f"the test tried to reach non-loopback addresses: {_outside}"
