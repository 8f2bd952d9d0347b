"""Talking to a running relay over its control channel (see ``relaywizard.relay.control``).

``relaywizard queue`` uses ``request`` for retry and delete while a relay holds the spool; the tray uses
``ControlClient`` to poll the status and ``watch()`` to follow the relay's events as they happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from relaywizard.core.errors import RelayWizardError
from relaywizard.relay.control import MAX_LINE, ControlUnavailable, _require_unix, find_socket


class ControlError(RelayWizardError):
    """The relay answered a control request with an error (its one sentence is the message)."""

    default_title = "Relay control"


class RelayNotRunning(ControlUnavailable):
    """No relay is listening on the control socket of that spool."""

    default_title = "Relay not running"


class ControlClient:
    """One connection to a relay's control socket; ``async with await ControlClient.connect(...)``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float) -> None:
        self._reader = reader
        self._writer = writer
        self.timeout = timeout

    @classmethod
    async def connect(
        cls, spool: Path | None = None, *, path: Path | None = None, wait: float = 10.0
    ) -> ControlClient:
        """Connect to the relay owning ``spool`` (or to the socket ``path``); RelayNotRunning if none."""
        _require_unix()
        if path is None:
            if spool is None:
                raise ValueError("give the spool or the socket path")
            path = find_socket(spool)
        try:
            async with asyncio.timeout(wait):
                reader, writer = await asyncio.open_unix_connection(os.fspath(path), limit=16 * MAX_LINE)
        except (FileNotFoundError, ConnectionRefusedError):
            raise RelayNotRunning(f"No relay is running for the spool {spool or path}.") from None
        except PermissionError:
            raise ControlUnavailable(
                f"This user may not use the control socket {path} of the running relay."
            ) from None
        except (OSError, TimeoutError) as exc:
            raise ControlUnavailable(
                f"The running relay's control socket {path} cannot be reached: "
                f"{getattr(exc, 'strerror', None) or exc or 'timed out'}."
            ) from None
        return cls(reader, writer, wait)

    async def __aenter__(self) -> ControlClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._writer.close()
        # asyncio.timeout, not wait_for under suppress(Exception): in Python 3.11 wait_for can swallow a
        # cancellation that comes as the inner wait ends, and a tray being stopped then never stopped.
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(1):
                await self._writer.wait_closed()

    async def _send(self, message: dict[str, Any]) -> None:
        self._writer.write(json.dumps(message).encode() + b"\n")
        async with asyncio.timeout(self.timeout):
            await self._writer.drain()

    async def _receive(self, wait: float | None) -> dict[str, Any] | None:
        try:
            async with asyncio.timeout(wait):
                line = await self._reader.readline()
        except (ConnectionError, ValueError) as exc:
            raise ControlUnavailable(f"The relay's control channel broke off: {exc}.") from None
        except TimeoutError:
            raise ControlUnavailable("The relay did not answer on its control channel in time.") from None
        if not line:
            return None
        try:
            reply = json.loads(line)
        except ValueError:
            raise ControlUnavailable("The relay answered something that is not JSON.") from None
        if not isinstance(reply, dict):
            raise ControlUnavailable("The relay answered something that is not a JSON object.")
        return reply

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request; its ``{"ok": true, ...}`` reply, or ControlError with the relay's sentence."""
        await self._send({"op": op, **fields})
        reply = await self._receive(self.timeout)
        if reply is None:
            raise ControlUnavailable("The relay closed its control channel without answering.")
        if not reply.get("ok"):
            raise ControlError(str(reply.get("error") or "The relay refused the request."))
        return reply

    async def watch(self) -> AsyncIterator[dict[str, Any]]:
        """The relay's status, then each event as it happens (``{"event": ..., "state": ...}``)."""
        first = await self.request("watch")
        yield {"event": "status", **first["status"]}
        while True:
            event = await self._receive(None)
            if event is None:
                return
            if event.get("ok") is False:
                raise ControlError(str(event.get("error")))
            yield event


async def request(spool: Path, op: str, *, wait: float = 30.0, **fields: Any) -> dict[str, Any]:
    """One request to the relay owning ``spool`` on a connection of its own."""
    async with await ControlClient.connect(spool, wait=wait) as client:
        return await client.request(op, **fields)


async def relay_status(spool: Path, *, wait: float = 5.0) -> dict[str, Any]:
    """The status of the relay owning ``spool``, or ``{"state": "stopped"}`` when none runs."""
    try:
        reply = await request(spool, "status", wait=wait)
    except RelayNotRunning:
        return {"state": "stopped"}
    reply.pop("ok", None)
    return reply
