"""Feeds the tray and the queue window from a running relay, through its control channel, and carries out
what the person asks for.

The relay may run in this process (the tray started it) or as a service: either way it is reached the same
way, through the control socket of its spool (``relay/control.py``), so the tray behaves identically in
both. While no relay answers, the icon says "stopped" and the controller keeps looking every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import QObject

from relaywizard.core.errors import RelayWizardError
from relaywizard.gui.queue_window import QueueWindow
from relaywizard.gui.tray import Tray

log = logging.getLogger(__name__)

RECONNECT_SECONDS = 3.0
REFRESH_DELAY = 0.3  # events come in bursts: one queue refresh per burst
BRIEF_KEYS = ("state", "counts", "delivered_today", "failed_today", "last_error")


class Link(Protocol):
    """How the controller reaches the relay (the control client in the program; a fake in unit tests)."""

    async def request(self, op: str, **fields: Any) -> dict[str, Any]: ...

    def watch(self) -> AsyncIterator[dict[str, Any]]: ...


class ControlLink:
    """The control channel of the relay that owns ``spool``."""

    def __init__(self, spool: Path) -> None:
        self.spool = spool

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        from relaywizard.relay.control_client import request

        return await request(self.spool, op, wait=10.0, **fields)

    async def watch(self) -> AsyncIterator[dict[str, Any]]:
        from relaywizard.relay.control_client import ControlClient

        async with await ControlClient.connect(self.spool, wait=5.0) as client:
            async for event in client.watch():
                yield event


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, RelayWizardError):
        return exc.one_line()
    return str(exc) or type(exc).__name__


class TrayController(QObject):
    """Connects a ``Tray`` and a ``QueueWindow`` to a relay ``Link``; ``start()`` on a running loop."""

    def __init__(
        self,
        tray: Tray,
        window: QueueWindow,
        link: Link,
        *,
        reconnect: float = RECONNECT_SECONDS,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.tray = tray
        self.window = window
        self.link = link
        self.reconnect = reconnect
        self.status: dict[str, Any] = {"state": "stopped"}
        self.connected = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watching: asyncio.Task[None] | None = None
        self._refresh: asyncio.TimerHandle | None = None
        self._warned: set[str] = set()
        self._stopping = False  # each warning notified once, however often the tray reconnects
        tray.pauseRequested.connect(self.set_paused)
        tray.openQueue.connect(self.open_queue)
        window.pauseRequested.connect(self.set_paused)
        window.retryRequested.connect(lambda envelope_id: self._act("retry", envelope_id))
        window.deleteRequested.connect(lambda envelope_id: self._act("delete", envelope_id))
        window.exportRequested.connect(lambda envelope_id, path: self._act("export", envelope_id, path=path))
        window.refreshRequested.connect(self.refresh_queue)

    # -- the watch loop -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._watching is None or self._watching.done():
            self._watching = asyncio.ensure_future(self._watch_forever())

    async def stop(self) -> None:
        self._stopping = True  # the watch loop ends even if a cancellation gets lost on the way
        if self._refresh is not None:
            self._refresh.cancel()
        tasks = [task for task in (self._watching, *self._tasks) if task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _watch_forever(self) -> None:
        while not self._stopping:
            try:
                async for event in self.link.watch():
                    self._on_event(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a relay that is not (or no longer) running: look again soon
                log.debug("relay link: %s", _one_line(exc))
            self._lost()
            await asyncio.sleep(self.reconnect)

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("event") == "status":  # the first line of a watch: the whole status
            self.status = dict(event)
            self.connected.set()
            self.tray.show_status(self.status)
            self.window.show_status(self.status)
            for warning in self.status.get("warnings") or []:  # given before the tray was listening
                if warning not in self._warned:
                    self._warned.add(warning)
                    self.tray.show_event({"event": "expiry", "text": warning})
            self.refresh_queue()
            return
        if event.get("event") == "expiry":
            self._warned.add(str(event.get("text")))
        # every event carries the relay's state and counts after it (RelayStatus._brief): take them
        self.status.update({key: event[key] for key in BRIEF_KEYS if key in event})
        self.tray.show_event({**self.status, **event, "state": self.status.get("state")})
        self.window.show_status(self.status)
        self._schedule_refresh()

    def _lost(self) -> None:
        if self.connected.is_set() or self.status.get("state") != "stopped":
            self.connected.clear()
            self.status = {"state": "stopped"}
            self.tray.show_status(self.status)
            self.window.show_status(self.status)

    # -- the queue window ---------------------------------------------------------------------------

    def open_queue(self) -> None:
        self.window.show()
        self.window.raise_()
        self.window.activateWindow()
        self.refresh_queue()

    def _schedule_refresh(self) -> None:
        if self._refresh is None and self.window.isVisible():
            self._refresh = asyncio.get_running_loop().call_later(REFRESH_DELAY, self._refresh_now)

    def _refresh_now(self) -> None:
        self._refresh = None
        self.refresh_queue()

    def refresh_queue(self) -> None:
        self.spawn(self._load_queue())

    async def _load_queue(self) -> None:
        if not self.connected.is_set():
            self.window.set_messages([])
            return
        try:
            reply = await self.link.request("queue", all=True)
        except RelayWizardError as exc:
            self.window.say(exc.one_line())
            return
        self.window.set_messages(list(reply.get("messages") or []))

    # -- what the person asked for ------------------------------------------------------------------

    def set_paused(self, pause: bool) -> None:
        self.spawn(self._request("pause" if pause else "resume", done=self._paused))

    def _paused(self, reply: dict[str, Any]) -> None:
        self.status["state"] = reply.get("state", self.status.get("state"))
        self.tray.show_status(self.status)
        self.window.show_status(self.status)

    def _act(self, op: str, envelope_id: str, **fields: Any) -> None:
        said = {
            "retry": "Message {id} is queued again and will be sent now.",
            "delete": "Message {id} was deleted.",
            "export": "Message {id} was saved as {path}.",
        }[op]

        def done(reply: dict[str, Any]) -> None:
            self.window.say(said.format(id=envelope_id, path=reply.get("path", "")))
            self.refresh_queue()

        self.spawn(self._request(op, id=envelope_id, done=done, **fields))

    async def _request(self, op: str, *, done: Callable[[dict[str, Any]], None], **fields: Any) -> None:
        try:
            reply = await self.link.request(op, **fields)
        except RelayWizardError as exc:
            self.window.say(exc.one_line())
            self.tray.notify("The relay did not do it", exc.one_line())
            return
        done(reply)

    def spawn(self, work: Awaitable[None]) -> None:
        """Run ``work`` on the loop; it is cancelled with the controller (``stop``)."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
