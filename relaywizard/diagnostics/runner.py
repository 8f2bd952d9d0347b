"""Running checks: DNS look-ups all at once, SMTP stages in order on one connection.

A ``DiagnosticsRun`` has an explicit state, yields ``Event``s as checks start, progress and finish,
applies a time limit to every check, skips a check whose requirement failed (naming it), and can be
cancelled at any moment: cancelling stops the work inside the checks (``CancelledError``) and closes the
connection, and the run ends in state ``cancelled`` with the results it had.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from enum import StrEnum
from typing import Any

from relaywizard.diagnostics.base import Check, Context, Resolver, current_check
from relaywizard.diagnostics.model import (
    CheckFinished,
    CheckProgress,
    CheckResult,
    CheckStarted,
    Event,
    Report,
    Status,
    Target,
)


class RunState(StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"


_CANCELLED = object()


def unmet(result: CheckResult) -> bool:
    """A requirement is unmet when it failed, or was itself skipped because something failed."""
    return result.status is Status.FAIL or (result.status is Status.SKIP and result.blocked_by is not None)


class DiagnosticsRun:
    """One run of a set of checks against one target."""

    def __init__(
        self,
        target: Target,
        checks: Sequence[Check],
        resolver: Resolver,
        shared: Mapping[str, Any] | None = None,
    ) -> None:
        """``shared`` seeds the state the checks share (``Context.shared``): a connection opened ahead."""
        self.target = target
        self.checks = list(checks)
        self.state = RunState.IDLE
        self.report = Report(domain=target.domain, method=target.method)
        self._queue: asyncio.Queue[Event | object] = asyncio.Queue()
        self._context = Context(target, resolver, self._on_progress)
        self._context.shared.update(shared or {})
        self._done: dict[str, asyncio.Future[CheckResult]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def cancel(self) -> None:
        """Stop the run; ``events()`` ends after the checks have been cancelled and cleaned up."""
        if self.state is RunState.RUNNING:
            for task in self._tasks:
                task.cancel()
            self._queue.put_nowait(_CANCELLED)

    async def events(self) -> AsyncIterator[Event]:
        if self.state is not RunState.IDLE:
            raise RuntimeError("a diagnostics run can only be started once")
        self.state = RunState.RUNNING
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        self._done = {check.id: loop.create_future() for check in self.checks}
        dns = [c for c in self.checks if c.group == "dns"]
        smtp = [c for c in self.checks if c.group == "smtp"]
        # The SMTP stages first: their round trips one after another are the run's longest chain.
        self._tasks = [asyncio.create_task(self._run_in_order(smtp))] if smtp else []
        self._tasks += [asyncio.create_task(self._run_one(check)) for check in dns]
        remaining = len(self.checks)
        try:
            while remaining:
                event = await self._queue.get()
                if event is _CANCELLED:
                    self.state = RunState.CANCELLED
                    self.report.cancelled = True
                    return
                assert isinstance(event, CheckStarted | CheckProgress | CheckFinished)
                if isinstance(event, CheckFinished):
                    remaining -= 1
                    self.report.results.append(event.result)
                yield event
            self.state = RunState.FINISHED
        except (asyncio.CancelledError, GeneratorExit):
            self.state = RunState.CANCELLED
            self.report.cancelled = True
            raise
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._context.close()
            self.report.duration_ms = round((time.monotonic() - started) * 1000)

    async def run(self) -> Report:
        """Run to the end and return the report."""
        async for _ in self.events():
            pass
        return self.report

    def _on_progress(self, check_id: str, text: str) -> None:
        self._queue.put_nowait(CheckProgress(check_id, text))

    async def _run_in_order(self, checks: Sequence[Check]) -> None:
        for check in checks:
            await self._run_one(check)

    async def _run_one(self, check: Check) -> None:
        blocker = await self._blocker(check)
        if blocker is not None:
            req = self._context.results[blocker]
            verb = "failed" if req.status is Status.FAIL else "could not run"
            result = dataclasses.replace(check.skipped(f"Not run: {req.title} {verb}."), blocked_by=blocker)
        else:
            self._queue.put_nowait(CheckStarted(check.id, check.title))
            result = await self._timed(check)
        self._context.results[check.id] = result
        self._done[check.id].set_result(result)
        self._queue.put_nowait(CheckFinished(result))

    async def _blocker(self, check: Check) -> str | None:
        for requirement in check.requires:
            future = self._done.get(requirement)
            if future is None:  # not part of this run (e.g. --only smtp)
                continue
            if unmet(await future):
                return requirement
        return None

    async def _timed(self, check: Check) -> CheckResult:
        limit = check.steps * self.target.timeout + 1
        started = time.monotonic()
        current_check.set(check.id)
        try:
            result = await asyncio.wait_for(check.run(self._context), limit)
        except TimeoutError:
            result = check.result(
                Status.FAIL,
                f"Did not finish within {limit:g} seconds.",
                fix="Check the network path from this machine (firewall, proxy, VPN) and try again; "
                "raise --timeout on a slow link.",
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not end the run or show a traceback
            detail = str(exc)
            if self.target.secret:
                detail = detail.replace(self.target.secret, "********")
            result = check.result(
                Status.FAIL,
                f"The check itself failed: {type(exc).__name__}: {detail}",
                fix="This is a bug in relaywizard; please report it with this message.",
            )
        return dataclasses.replace(result, duration_ms=round((time.monotonic() - started) * 1000))
