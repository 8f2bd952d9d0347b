"""Scripted diagnostics checks for the runner's and the diagnostics view's tests: no network, a result
chosen by the test, progress, a delay or a gate to hold it, and a log of starts and ends."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from relaywizard.diagnostics.base import Check, Context
from relaywizard.diagnostics.model import CheckResult, Status


class NoDns:
    async def query(self, name: str, rdtype: str) -> list[str]:
        raise AssertionError("no DNS in these tests")

    def describe(self) -> str:
        return "nothing"


class Scripted(Check):
    """A check that reports progress, waits for its gate (or a delay) and returns a scripted result."""

    title = "Scripted"
    log: ClassVar[list[str]] = []

    def __init__(
        self,
        check_id: str,
        group: str = "smtp",
        status: Status = Status.PASS,
        *,
        title: str | None = None,
        summary: str | None = None,
        fix: str | None = None,
        code: str | None = None,
        data: dict[str, Any] | None = None,
        delay: float = 0.0,
        gate: asyncio.Event | None = None,
        progress: str | None = None,
        requires: tuple[str, ...] = (),
    ) -> None:
        self.id = check_id  # type: ignore[misc]
        self.group = group  # type: ignore[misc,assignment]
        self.title = title or f"Check {check_id}"  # type: ignore[misc]
        self.requires = requires  # type: ignore[misc]
        self.status = status
        self.summary = summary or f"{check_id}: {status}"
        self.fix = fix if fix is not None else ("Do this." if status in (Status.FAIL, Status.WARN) else "")
        self.code = code
        self.data = data or {}
        self.delay = delay
        self.gate = gate
        self.progress_text = progress
        self.cancelled = False

    async def run(self, ctx: Context) -> CheckResult:
        Scripted.log.append(f"start {self.id}")
        if self.progress_text:
            ctx.progress(self.progress_text)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        Scripted.log.append(f"end {self.id}")
        if self.status is Status.SKIP:
            return self.skipped(self.summary)
        return self.result(self.status, self.summary, fix=self.fix, code=self.code, data=self.data)
