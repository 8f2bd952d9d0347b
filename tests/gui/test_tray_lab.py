"""The tray against a real relay: run in-process or attached to a running one, driven by the lab.

The relay forwards to the lab's Postfix (127.0.0.1); the tray follows it through the real control socket.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import qasync
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from relaywizard.core.autostart import Autostart
from relaywizard.gui.tray_app import TrayApp
from relaywizard.relay.config import RelayConfig
from relaywizard.relay.credentials import PasswordCredentials
from relaywizard.relay.model import Upstream
from relaywizard.relay.service import RelayService
from tests.gui.conftest import run, until
from tests.lab.lab import Lab
from tests.lab.process import free_port
from tests.relay.control_lab import LOGIN, PASSWORD, lab_config, private_runtime, send_scan

pytestmark = pytest.mark.lab


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch, qapp: QApplication) -> Iterator[Path]:
    """A private folder for the control socket; and the test's app back to quitting on its last window."""
    with private_runtime(monkeypatch) as folder:
        yield folder
    qapp.setQuitOnLastWindowClosed(True)


def tray_app(config: RelayConfig, tmp_path: Path, *, started: list[RelayService]) -> TrayApp:
    async def start_relay() -> RelayService:
        service = RelayService(config, PasswordCredentials(LOGIN, PASSWORD))
        await service.start()
        started.append(service)
        return service

    autostart = Autostart.for_platform("linux", home=tmp_path, environ={}, command=["relaywizard", "tray"])
    return TrayApp(config, start_relay=start_relay, available=lambda: True, autostart=autostart)


def test_the_tray_runs_the_relay_and_shows_a_delivery_against_the_lab(
    lab: Lab, qtbot: QtBot, qloop: qasync.QEventLoop, tmp_path: Path, runtime: Path
) -> None:
    config = lab_config(lab, tmp_path)
    started: list[RelayService] = []
    app = tray_app(config, tmp_path, started=started)

    async def scenario() -> None:
        try:
            await app.start()
            assert len(started) == 1
            await until(lambda: app.tray.state == "running", within=10, what="the running state")
            subject = await send_scan(started[0].relay.address, LOGIN, prefix="tray")
            await until(
                lambda: "1 delivered today" in app.tray.icon.toolTip(), within=20, what="the delivery"
            )
            assert app.tray.state == "running"
            assert app.tray.notifications == []
            app.tray.queue_action.trigger()
            await until(lambda: len(app.window.visible_ids()) == 1, within=10, what="the delivered row")
            assert app.window.model.rows[0]["state"] == "done"
            await until(
                lambda: any(subject in path.read_text(errors="replace") for path in lab.message_files(LOGIN)),
                within=15,
                what="the message in the mailbox",
            )
            app.tray.pause_action.trigger()
            await until(lambda: app.tray.state == "paused", within=10, what="paused")
            assert started[0].relay.forwarder.paused
        finally:
            await app.shutdown()

    run(qloop, scenario(), timeout=60)
    assert app.service is None  # the in-process relay was stopped with the tray


def test_an_upstream_that_is_down_turns_the_icon_to_errors_and_notifies(
    lab: Lab, qtbot: QtBot, qloop: qasync.QEventLoop, tmp_path: Path, runtime: Path
) -> None:
    closed = Upstream(
        host="127.0.0.1", port=free_port("127.0.0.1"), tls="none", helo_name="relay.test", timeout=5
    )
    config = dataclasses.replace(lab_config(lab, tmp_path), upstream=closed, auth="none")
    started: list[RelayService] = []
    app = tray_app(config, tmp_path, started=started)

    async def scenario() -> None:
        try:
            await app.start()
            await send_scan(started[0].relay.address, prefix="tray")
            await until(lambda: app.tray.state == "errors waiting", within=20, what="the errors state")
            titles = [title for title, _text in app.tray.notifications]
            assert titles == ["Microsoft 365 cannot be reached"]
            assert "1 queued" in app.tray.icon.toolTip()
        finally:
            await app.shutdown()

    run(qloop, scenario(), timeout=60)
    assert started[0].relay.counts()  # the message stays on disk, queued, for the next start


def test_the_tray_attaches_to_a_relay_that_already_runs(
    lab: Lab, qtbot: QtBot, qloop: qasync.QEventLoop, tmp_path: Path, runtime: Path
) -> None:
    config = lab_config(lab, tmp_path)
    service = RelayService(config, PasswordCredentials(LOGIN, PASSWORD))
    started: list[RelayService] = []
    app = tray_app(config, tmp_path, started=started)

    async def scenario() -> None:
        await service.start()
        warning = "The client secret of app 1111 expires in 12 days (2026-12-05): create a new one."
        service.warn(warning)  # given before the tray attached: it still hears of it
        try:
            await app.start()
            await until(lambda: app.tray.notifications, within=10, what="the warning")
            assert app.tray.notifications == [("A credential expires soon", warning)]
            assert started == []  # attached, not a second relay
            assert app.service is None
            await until(lambda: app.tray.state == "running", within=10, what="attached")
            app.tray.pause_action.trigger()
            await until(lambda: service.relay.forwarder.paused, within=10, what="the service paused")
            await until(lambda: app.tray.state == "paused", within=10, what="the icon paused")
            await app.shutdown()
            assert service.relay.forwarder.paused  # quitting the tray leaves the service running
        finally:
            await service.stop()

    run(qloop, scenario(), timeout=60)


def test_run_the_diagnostics_checks_the_relays_own_upstream(
    lab: Lab, qtbot: QtBot, qloop: qasync.QEventLoop, tmp_path: Path, runtime: Path
) -> None:
    from relaywizard.diagnostics.runner import RunState

    config = lab_config(lab, tmp_path)
    started: list[RelayService] = []
    app = tray_app(config, tmp_path, started=started)
    app.dns_servers = ((lab.host, lab.dns_port),)

    async def scenario() -> None:
        try:
            await app.start()
            app.tray.diagnostics_action.trigger()
            window = app.diagnostics
            assert window is not None
            await until(
                lambda: window.controller.state in (RunState.FINISHED, RunState.CANCELLED),
                within=30,
                what="the diagnostics run",
            )
            assert window.target is not None
            assert (window.target.smtp_host, window.target.smtp_port) == (lab.host, lab.submission_port)
            assert window.view.row_state("smtp.auth") == "pass"  # signed in with the relay's own password
            assert window.view.row_state("smtp.tls") == "pass"
            assert "signing in as scanner@lab.test" in window.intro.text()
        finally:
            await app.shutdown()

    run(qloop, scenario(), timeout=60)
