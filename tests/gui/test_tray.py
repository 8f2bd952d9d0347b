"""The tray icon, the queue window and the controller between them and a relay, with a fake relay link.

The tray's availability is injected; offscreen Qt has no tray, yet the icon, its menu and its
notifications work, and every menu action is triggered here the way a click triggers it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import qasync
from PySide6.QtWidgets import QApplication, QSystemTrayIcon
from pytestqt.qtbot import QtBot

from relaywizard.core.autostart import Autostart
from relaywizard.gui.queue_window import FILTERS, QueueWindow
from relaywizard.gui.tray import STATE_ICONS, Tray, count_text
from relaywizard.gui.tray_app import SingleInstance
from relaywizard.gui.tray_controller import TrayController
from relaywizard.gui.tray_windows import SettingsDialog
from relaywizard.relay.control_client import ControlError, RelayNotRunning
from tests.gui.conftest import run, until

ROWS: list[dict[str, Any]] = [
    {
        "id": "m-queued",
        "state": "queued",
        "received": "2026-11-23T10:00:00+00:00",
        "device": "192.0.2.10",
        "sender": "scanner@contoso.com",
        "recipients": ["alice@contoso.com"],
        "size": 2048,
        "attempts": 1,
        "last_reply": "451 4.7.500 Server busy",
        "code": "4.7.500",
        "explanation": "Microsoft 365 is throttling; the relay retries.",
    },
    {
        "id": "m-done",
        "state": "done",
        "received": "2026-11-23T09:00:00+00:00",
        "device": "192.0.2.11",
        "sender": "printer@contoso.com",
        "recipients": ["bob@contoso.com"],
        "size": 3 * 1024 * 1024,
        "attempts": 1,
        "last_reply": "250 2.0.0 OK",
        "code": "2.0.0",
        "explanation": None,
    },
    {
        "id": "m-dead",
        "state": "dead",
        "received": "2026-11-23T11:00:00+00:00",
        "device": "192.0.2.10",
        "sender": "scanner@contoso.com",
        "recipients": ["carol@fabrikam.com"],
        "size": 512,
        "attempts": 1,
        "last_reply": "550 5.7.60 SMTP; Client does not have permissions to send as this sender",
        "code": "5.7.60",
        "explanation": "The mailbox may not send as this address.",
    },
]
STATUS = {
    "event": "status",
    "state": "delivering",
    "counts": {"queued": 2, "sending": 1, "dead": 1, "done": 5},
    "delivered_today": 41,
    "failed_today": 1,
    "last_error": None,
    "upstream": {"state": "up"},
}


class FakeLink:
    """A relay that answers from a script: the watch yields ``events``, requests are recorded."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.running = True
        self.fail: dict[str, Exception] = {}
        self.rows = list(ROWS)

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        if not self.running:
            raise RelayNotRunning("No relay is running for the spool /tmp/spool.")
        self.requests.append((op, fields))
        if op in self.fail:
            raise self.fail[op]
        if op == "queue":
            return {"ok": True, "messages": self.rows}
        if op in ("pause", "resume"):
            return {"ok": True, "state": "paused" if op == "pause" else "running"}
        if op == "export":
            return {"ok": True, "path": fields["path"]}
        return {"ok": True, "id": fields.get("id")}

    async def watch(self) -> AsyncIterator[dict[str, Any]]:
        if not self.running:
            raise RelayNotRunning("No relay is running for the spool /tmp/spool.")
        yield dict(STATUS)
        while (event := await self.events.get()) is not None:
            yield event


def menu_texts(tray: Tray) -> list[str]:
    return [action.text() for action in tray.menu.actions() if not action.isSeparator()]


# -- the icon and its menu -----------------------------------------------------------------------------


def test_every_menu_action_asks_for_its_own_thing(qtbot: QtBot) -> None:
    tray = Tray(lambda: True)
    seen: list[str] = []
    tray.openQueue.connect(lambda: seen.append("queue"))
    tray.openWizard.connect(lambda: seen.append("wizard"))
    tray.runDiagnostics.connect(lambda: seen.append("diagnostics"))
    tray.openSettings.connect(lambda: seen.append("settings"))
    tray.quitRequested.connect(lambda: seen.append("quit"))
    tray.pauseRequested.connect(lambda pause: seen.append(f"pause={pause}"))
    tray.show_status(STATUS)
    for action in (
        tray.queue_action,
        tray.pause_action,
        tray.diagnostics_action,
        tray.wizard_action,
        tray.settings_action,
        tray.quit_action,
    ):
        action.trigger()
    tray.show_status({**STATUS, "state": "paused"})
    tray.pause_action.trigger()
    assert seen == ["queue", "pause=True", "diagnostics", "wizard", "settings", "quit", "pause=False"]
    tray.icon.activated.emit(QSystemTrayIcon.ActivationReason.Trigger)
    assert seen[-1] == "queue"


@pytest.mark.parametrize("state", list(STATE_ICONS))
def test_each_state_has_its_icon_and_says_it_in_the_tooltip_and_menu(qtbot: QtBot, state: str) -> None:
    tray = Tray(lambda: True)
    tray.show_status({**STATUS, "state": state})
    assert tray.state == state
    assert not tray.icon.icon().isNull()
    tooltip = tray.icon.toolTip()
    assert tray.status_action.text() in tooltip
    if state == "stopped":
        assert "not running" in tooltip
        assert not tray.pause_action.isEnabled()
    else:
        assert "3 queued · 41 delivered today · 1 failed today, 1 to look at" in tooltip
        assert tray.pause_action.isEnabled()
    assert tray.pause_action.text() == ("Resume delivery" if state == "paused" else "Pause delivery")


def test_the_icons_of_the_states_differ(qtbot: QtBot) -> None:
    tray = Tray(lambda: True)
    images = set()
    for state in STATE_ICONS:
        tray.show_status({"state": state})
        images.add(tray.icon.icon().pixmap(32, 32).toImage().bits().tobytes())
    assert len(images) == len(STATE_ICONS)


def test_an_unknown_state_shows_as_stopped(qtbot: QtBot) -> None:
    tray = Tray(lambda: True)
    tray.show_status({"state": "exploded"})
    assert tray.state == "stopped"


def test_the_errors_tooltip_names_the_last_error(qtbot: QtBot) -> None:
    tray = Tray(lambda: True)
    error = {"kind": "auth_failed", "text": "535 5.7.139 Authentication unsuccessful"}
    tray.show_status({**STATUS, "state": "errors waiting", "last_error": error})
    assert "Last error: 535 5.7.139" in tray.icon.toolTip()


@pytest.mark.parametrize(
    ("kind", "title"),
    [
        ("dead", "A message could not be delivered"),
        ("auth_failed", "Microsoft 365 refused the relay's sign-in"),
        ("upstream_down", "Microsoft 365 cannot be reached"),
        ("expiry", "A credential expires soon"),
    ],
)
def test_events_that_matter_are_notified(qtbot: QtBot, kind: str, title: str) -> None:
    tray = Tray(lambda: True)
    tray.show_event({"event": kind, "text": "what happened", "state": "errors waiting", "counts": {}})
    assert tray.notifications == [(title, "what happened")]


def test_routine_events_are_not_notified(qtbot: QtBot) -> None:
    tray = Tray(lambda: True)
    for kind in ("queued", "delivered", "deferred", "paused", "upstream_up"):
        tray.show_event({"event": kind, "text": "fine", "state": "running", "counts": {}})
    assert tray.notifications == []


def test_show_says_whether_the_desktop_has_a_tray(qtbot: QtBot) -> None:
    assert Tray(lambda: False).show() is False
    shown = Tray(lambda: True)
    assert shown.show() is True
    shown.hide()


def test_count_text_without_counts() -> None:
    assert count_text({}) == "0 queued · 0 delivered today · 0 failed today"


# -- the queue window ----------------------------------------------------------------------------------


def window(qtbot: QtBot, **kwargs: Any) -> QueueWindow:
    made = QueueWindow(**kwargs)
    qtbot.addWidget(made)
    made.set_messages(ROWS)
    return made


def test_messages_are_listed_newest_first_with_readable_cells(qtbot: QtBot) -> None:
    shown = window(qtbot)
    assert shown.visible_ids() == ["m-dead", "m-queued", "m-done"]
    model = shown.model
    cells = [model.data(model.index(2, column)) for column in range(model.columnCount())]
    assert cells[1:] == [
        "192.0.2.11",
        "printer@contoso.com",
        "bob@contoso.com",
        "3.0 MB",
        "Delivered",
        "250 2.0.0 OK",
    ]


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("All messages", ["m-dead", "m-queued", "m-done"]),
        ("Waiting (queued or sending)", ["m-queued"]),
        ("Delivered", ["m-done"]),
        ("Failed", ["m-dead"]),
    ],
)
def test_the_filter_shows_the_chosen_states(qtbot: QtBot, label: str, expected: list[str]) -> None:
    shown = window(qtbot)
    assert label in FILTERS
    shown.filter_box.setCurrentText(label)
    assert shown.visible_ids() == expected


def test_search_matches_every_word_in_any_column_and_the_explanation(qtbot: QtBot) -> None:
    shown = window(qtbot)
    qtbot.keyClicks(shown.search, "192.0.2.10 fabrikam")
    assert shown.visible_ids() == ["m-dead"]
    shown.search.setText("THROTTLING")
    assert shown.visible_ids() == ["m-queued"]
    shown.search.setText("nothing-like-this")
    assert shown.visible_ids() == []
    shown.search.clear()
    assert len(shown.visible_ids()) == 3


def test_actions_only_for_queued_and_dead_messages_and_the_detail_explains(qtbot: QtBot) -> None:
    shown = window(qtbot)
    assert not shown.retry_button.isEnabled()
    assert shown.select("m-done")
    assert not shown.retry_button.isEnabled()
    assert not shown.export_button.isEnabled()
    assert shown.select("m-dead")
    assert shown.retry_button.isEnabled()
    assert shown.delete_button.isEnabled()
    assert shown.export_button.isEnabled()
    assert "550 5.7.60" in shown.detail.text()
    assert "may not send as" in shown.detail.text()


def test_retry_delete_and_export_ask_for_the_selected_message(qtbot: QtBot, tmp_path: Path) -> None:
    answers = {"confirm": False}
    shown = window(
        qtbot,
        choose_path=lambda _parent, suggested: str(tmp_path / Path(suggested).name),
        confirm=lambda _parent, _row: answers["confirm"],
    )
    asked: list[tuple[str, ...]] = []
    shown.retryRequested.connect(lambda envelope: asked.append(("retry", envelope)))
    shown.deleteRequested.connect(lambda envelope: asked.append(("delete", envelope)))
    shown.exportRequested.connect(lambda envelope, path: asked.append(("export", envelope, path)))
    shown.select("m-queued")
    shown.retry_button.click()
    shown.delete_button.click()  # not confirmed: nothing asked
    answers["confirm"] = True
    shown.delete_button.click()
    shown.export_button.click()
    assert asked == [
        ("retry", "m-queued"),
        ("delete", "m-queued"),
        ("export", "m-queued", str(tmp_path / "m-queued.eml")),
    ]


def test_new_rows_keep_the_selection(qtbot: QtBot) -> None:
    shown = window(qtbot)
    shown.select("m-queued")
    shown.set_messages([*ROWS, {**ROWS[1], "id": "m-new", "received": "2026-11-23T12:00:00+00:00"}])
    selected = shown.selected()
    assert selected is not None
    assert selected["id"] == "m-queued"
    assert shown.visible_ids()[0] == "m-new"


# -- the controller ------------------------------------------------------------------------------------


@pytest.fixture
def wired(qtbot: QtBot, qloop: qasync.QEventLoop) -> tuple[Tray, QueueWindow, FakeLink, TrayController]:
    tray = Tray(lambda: True)
    shown = QueueWindow(confirm=lambda _parent, _row: True)
    qtbot.addWidget(shown)
    link = FakeLink()
    controller = TrayController(tray, shown, link, reconnect=0.05)
    return tray, shown, link, controller


def test_the_controller_shows_the_relays_status_and_events(
    qloop: qasync.QEventLoop, wired: tuple[Tray, QueueWindow, FakeLink, TrayController]
) -> None:
    tray, shown, link, controller = wired

    async def scenario() -> None:
        controller.start()
        await until(lambda: tray.state == "delivering", what="the first status")
        assert "41 delivered today" in tray.icon.toolTip()
        # as the relay sends them: each event with the state and the day's counts after it
        delivered = {
            "event": "delivered",
            "text": "delivered",
            "state": "running",
            "counts": {"done": 6},
            "delivered_today": 42,
            "failed_today": 1,
        }
        await link.events.put(delivered)
        await until(lambda: tray.state == "running", what="the delivered event")
        assert "42 delivered today" in tray.icon.toolTip()
        assert shown.headline.text() == "Relay running: nothing waiting"
        dead = {
            "event": "dead",
            "text": "550 5.7.60 refused",
            "state": "errors waiting",
            "counts": {"dead": 1},
            "delivered_today": 42,
            "failed_today": 2,
            "last_error": {"kind": "dead", "text": "550 5.7.60 refused"},
        }
        await link.events.put(dead)
        await until(lambda: tray.state == "errors waiting", what="the dead event")
        assert tray.notifications == [("A message could not be delivered", "550 5.7.60 refused")]
        assert "2 failed today" in tray.icon.toolTip()
        await controller.stop()

    run(qloop, scenario())


def test_a_relay_that_goes_away_shows_stopped_and_is_found_again(
    qloop: qasync.QEventLoop, wired: tuple[Tray, QueueWindow, FakeLink, TrayController]
) -> None:
    tray, _shown, link, controller = wired

    async def scenario() -> None:
        controller.start()
        await until(lambda: tray.state == "delivering", what="the first status")
        link.running = False
        await link.events.put(None)  # the relay hangs up
        await until(lambda: tray.state == "stopped", what="stopped")
        assert not controller.connected.is_set()
        link.running = True
        await until(lambda: tray.state == "delivering", what="the relay found again")
        await controller.stop()

    run(qloop, scenario())


def test_the_queue_window_opens_with_the_relays_messages_and_acts_through_it(
    qloop: qasync.QEventLoop, wired: tuple[Tray, QueueWindow, FakeLink, TrayController], tmp_path: Path
) -> None:
    tray, shown, link, controller = wired

    async def scenario() -> None:
        controller.start()
        await until(controller.connected.is_set, what="connected")
        tray.queue_action.trigger()
        await until(lambda: len(shown.visible_ids()) == 3, what="the messages")
        assert shown.isVisible()
        shown.select("m-dead")
        shown.retry_button.click()
        await until(lambda: "queued again" in shown.message.text(), what="the retry")
        shown.delete_button.click()
        await until(lambda: "was deleted" in shown.message.text(), what="the delete")
        shown.exportRequested.emit("m-dead", str(tmp_path / "m.eml"))
        await until(lambda: "saved as" in shown.message.text(), what="the export")
        tray.pause_action.trigger()
        await until(lambda: tray.state == "paused", what="paused")
        assert shown.pause_button.text() == "Resume delivery"
        shown.pause_button.click()
        await until(lambda: tray.state == "running", what="resumed")
        ops = [op for op, _fields in link.requests if op != "queue"]
        assert ops == ["retry", "delete", "export", "pause", "resume"]
        assert ("retry", {"id": "m-dead"}) in link.requests
        await controller.stop()

    run(qloop, scenario())


def test_a_refused_action_is_said_in_one_sentence(
    qloop: qasync.QEventLoop, wired: tuple[Tray, QueueWindow, FakeLink, TrayController]
) -> None:
    tray, shown, link, controller = wired
    link.fail["retry"] = ControlError("There is no queued or dead message m-gone.")

    async def scenario() -> None:
        controller.start()
        await until(controller.connected.is_set, what="connected")
        shown.retryRequested.emit("m-gone")
        await until(lambda: "m-gone" in shown.message.text(), what="the refusal")
        assert shown.message.text().count(".") == 1
        assert tray.notifications[-1][1] == shown.message.text()
        await controller.stop()

    run(qloop, scenario())


# -- one instance, settings ----------------------------------------------------------------------------


def test_a_second_instance_wakes_the_first_and_steps_back(
    qapp: QApplication, qloop: qasync.QEventLoop
) -> None:
    name = f"relaywizard-tray-test-{id(qapp)}-{asyncio.get_event_loop_policy().__class__.__name__}"
    first = SingleInstance(name)
    second = SingleInstance(name)
    woken: list[bool] = []
    first.activated.connect(lambda: woken.append(True))
    try:
        assert first.claim()
        assert not second.claim()
        run(qloop, until(lambda: woken == [True], what="the first instance woken"))
    finally:
        first.release()
    third = SingleInstance(name)
    assert third.claim()  # the name is free again once the first has gone
    third.release()


def test_the_settings_turn_start_at_login_on_and_off(qtbot: QtBot, tmp_path: Path) -> None:
    autostart = Autostart.for_platform("linux", home=tmp_path, environ={}, command=["relaywizard", "tray"])
    dialog = SettingsDialog(autostart, tmp_path / "settings.toml")
    qtbot.addWidget(dialog)
    entry = tmp_path / ".config" / "autostart" / "relaywizard.desktop"
    assert not dialog.start_at_login.isChecked()
    dialog.start_at_login.click()
    assert entry.is_file()
    assert "relaywizard tray" in entry.read_text()
    assert str(entry) in dialog.where.text()
    dialog.start_at_login.click()
    assert not entry.exists()
    assert not dialog.start_at_login.isChecked()


def test_the_settings_open_the_wizard(qtbot: QtBot, tmp_path: Path) -> None:
    autostart = Autostart.for_platform("linux", home=tmp_path, environ={}, command=["relaywizard", "tray"])
    dialog = SettingsDialog(autostart, tmp_path / "settings.toml")
    qtbot.addWidget(dialog)
    opened: list[bool] = []
    dialog.openWizard.connect(lambda: opened.append(True))
    dialog.wizard_button.click()
    assert opened == [True]


def test_warnings_given_before_the_tray_listened_are_notified_once(
    qloop: qasync.QEventLoop, wired: tuple[Tray, QueueWindow, FakeLink, TrayController]
) -> None:
    tray, _shown, link, controller = wired
    warning = "The client secret of app 1111 expires in 12 days (2026-12-05): create a new one."
    with_warning = {**STATUS, "warnings": [warning]}

    async def watch() -> AsyncIterator[dict[str, Any]]:
        yield dict(with_warning)
        while (event := await link.events.get()) is not None:
            yield event

    link.watch = watch  # type: ignore[method-assign]

    async def scenario() -> None:
        controller.start()
        await until(lambda: tray.notifications, what="the warning")
        await link.events.put(None)  # the relay hangs up; the tray reconnects and sees it again
        await until(lambda: not controller.connected.is_set(), what="disconnected")
        await until(controller.connected.is_set, what="reconnected")
        await asyncio.sleep(0.1)
        assert tray.notifications == [("A credential expires soon", warning)]  # not again for the status
        # the relay's daily reminder is a new event: that one is shown
        await link.events.put({"event": "expiry", "text": warning, "state": "running", "counts": {}})
        await until(lambda: len(tray.notifications) == 2, what="the daily reminder")
        await controller.stop()

    run(qloop, scenario())


def test_sigterm_wakes_the_sleeping_loop_and_asks_to_quit(qloop: qasync.QEventLoop) -> None:
    import os
    import signal

    from relaywizard.gui.tray_app import SignalWake

    asked: list[bool] = []
    before = signal.getsignal(signal.SIGTERM)
    wake = SignalWake(lambda: asked.append(True), qloop)
    try:

        async def scenario() -> None:
            os.kill(os.getpid(), signal.SIGTERM)
            await until(lambda: asked, within=2, what="the quit asked for")

        run(qloop, scenario())
    finally:
        wake.close()
    assert signal.getsignal(signal.SIGTERM) == before  # closing gives the handlers back
    assert asked == [True]


class CancellationEatingLink(FakeLink):
    """A watch that loses the cancellation, as Python 3.11's wait_for can inside a connection's close."""

    async def watch(self) -> AsyncIterator[dict[str, Any]]:
        yield dict(STATUS)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return


def test_stop_ends_the_watch_even_when_a_cancellation_is_lost(qtbot: QtBot, qloop: qasync.QEventLoop) -> None:
    tray = Tray(lambda: True)
    shown = QueueWindow()
    qtbot.addWidget(shown)
    controller = TrayController(tray, shown, CancellationEatingLink(), reconnect=0.2)

    async def scenario() -> None:
        controller.start()
        await until(controller.connected.is_set, what="connected")
        await asyncio.wait_for(controller.stop(), 5)  # before the fix: waited forever

    run(qloop, scenario())
