"""The runner: concurrency of DNS checks, order of SMTP checks, skips, time limits, cancellation."""

from __future__ import annotations

import asyncio
import time

import pytest

from relaywizard.diagnostics.base import Check, Context
from relaywizard.diagnostics.model import (
    CheckFinished,
    CheckProgress,
    CheckResult,
    CheckStarted,
    Event,
    Status,
    Target,
)
from relaywizard.diagnostics.runner import DiagnosticsRun, RunState
from tests.diagnostics.scripted import NoDns, Scripted


def scripted(
    check_id: str,
    group: str,
    status: Status = Status.PASS,
    delay: float = 0.0,
    requires: tuple[str, ...] = (),
) -> Scripted:
    """A check that reports "working on <id>", sleeps ``delay`` and returns ``status``."""
    return Scripted(
        check_id,
        group,
        status,
        summary="not applicable" if status is Status.SKIP else f"{check_id} {status}",
        fix="do this" if status != Status.PASS else "",
        delay=delay,
        progress=f"working on {check_id}",
        requires=requires,
    )


def make_run(*checks: Check, timeout: float = 1.0) -> DiagnosticsRun:
    Scripted.log.clear()
    return DiagnosticsRun(Target(domain="contoso.com", timeout=timeout), list(checks), NoDns())


async def collect(run: DiagnosticsRun) -> list[Event]:
    return [event async for event in run.events()]


async def test_dns_checks_run_concurrently() -> None:
    run = make_run(*(scripted(f"dns.{i}", "dns", delay=0.2) for i in range(5)))
    started = time.monotonic()
    report = await run.run()
    assert time.monotonic() - started < 0.6
    assert [r.status for r in report.results] == [Status.PASS] * 5
    assert run.state is RunState.FINISHED


async def test_smtp_checks_run_in_order_one_at_a_time() -> None:
    run = make_run(
        scripted("smtp.a", "smtp", delay=0.05), scripted("smtp.b", "smtp"), scripted("smtp.c", "smtp")
    )
    await run.run()
    assert Scripted.log == [
        "start smtp.a",
        "end smtp.a",
        "start smtp.b",
        "end smtp.b",
        "start smtp.c",
        "end smtp.c",
    ]


async def test_events_start_progress_finish_for_each_check_and_progress_is_attributed() -> None:
    run = make_run(scripted("dns.x", "dns", delay=0.05), scripted("dns.y", "dns", delay=0.01))
    events = await collect(run)
    for check_id in ("dns.x", "dns.y"):
        mine = [
            e
            for e in events
            if getattr(e, "id", None) == check_id
            or (isinstance(e, CheckFinished) and e.result.id == check_id)
        ]
        assert isinstance(mine[0], CheckStarted)
        assert isinstance(mine[1], CheckProgress)
        assert mine[1].text == f"working on {check_id}"
        assert isinstance(mine[-1], CheckFinished)
    finished = [e.result for e in events if isinstance(e, CheckFinished)]
    assert all(r.duration_ms >= 0 for r in finished)
    assert next(r for r in finished if r.id == "dns.x").duration_ms >= 40


async def test_a_failed_requirement_skips_dependants_transitively_with_the_reason() -> None:
    run = make_run(
        scripted("smtp.connect", "smtp", Status.FAIL),
        scripted("smtp.banner", "smtp", requires=("smtp.connect",)),
        scripted("smtp.ehlo", "smtp", requires=("smtp.banner",)),
    )
    report = await run.run()
    banner, ehlo = report.result("smtp.banner"), report.result("smtp.ehlo")
    assert banner is not None
    assert ehlo is not None
    assert banner.status is Status.SKIP
    assert banner.blocked_by == "smtp.connect"
    assert banner.summary == "Not run: Check smtp.connect failed."
    assert ehlo.status is Status.SKIP
    assert ehlo.summary == "Not run: Check smtp.banner could not run."
    assert Scripted.log == ["start smtp.connect", "end smtp.connect"]
    assert report.failed


async def test_a_not_applicable_skip_and_a_warning_do_not_block() -> None:
    run = make_run(
        scripted("smtp.auth", "smtp", Status.SKIP),
        scripted("smtp.tls", "smtp", Status.WARN),
        scripted("smtp.mail_from", "smtp", requires=("smtp.auth", "smtp.tls")),
    )
    report = await run.run()
    result = report.result("smtp.mail_from")
    assert result is not None
    assert result.status is Status.PASS
    assert not report.failed


async def test_requirements_outside_the_run_are_ignored() -> None:
    report = await make_run(scripted("smtp.banner", "smtp", requires=("smtp.connect",))).run()
    assert report.results[0].status is Status.PASS


async def test_a_check_over_its_time_limit_fails_and_the_run_goes_on() -> None:
    slow = scripted("dns.slow", "dns", delay=5)
    slow.steps = 1  # type: ignore[misc]
    run = make_run(slow, scripted("dns.quick", "dns"), timeout=0.2)
    started = time.monotonic()
    report = await run.run()
    assert time.monotonic() - started < 2.5
    result = report.result("dns.slow")
    assert result is not None
    assert result.status is Status.FAIL
    assert "within 1.2 seconds" in result.summary
    assert result.fix


async def test_a_crashing_check_becomes_a_failed_result_not_a_traceback() -> None:
    class Broken(Scripted):
        async def run(self, ctx: Context) -> CheckResult:
            raise KeyError("oops")

    report = await make_run(Broken("dns.broken", "dns")).run()
    assert report.results[0].status is Status.FAIL
    assert "KeyError" in report.results[0].summary


async def test_cancel_stops_the_work_closes_and_keeps_the_results_so_far() -> None:
    closed: list[str] = []
    run = make_run(
        scripted("smtp.a", "smtp"), scripted("smtp.b", "smtp", delay=10), scripted("smtp.c", "smtp")
    )

    async def close() -> None:
        closed.append("closed")

    run._context.on_close(close)
    seen: list[Event] = []
    started = time.monotonic()
    async for event in run.events():
        seen.append(event)
        if isinstance(event, CheckStarted) and event.id == "smtp.b":
            run.cancel()
    assert time.monotonic() - started < 1
    assert run.state is RunState.CANCELLED
    assert run.report.cancelled
    assert [r.id for r in run.report.results] == ["smtp.a"]
    assert "end smtp.b" not in Scripted.log
    assert "start smtp.c" not in Scripted.log
    assert closed == ["closed"]


async def test_cancelling_the_consumer_task_cancels_the_checks() -> None:
    run = make_run(scripted("dns.long", "dns", delay=10))
    task = asyncio.create_task(run.run())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert run.state is RunState.CANCELLED
    assert "end dns.long" not in Scripted.log


async def test_a_run_starts_only_once() -> None:
    run = make_run(scripted("dns.a", "dns"))
    await run.run()
    with pytest.raises(RuntimeError):
        await run.run()


async def test_report_json_follows_the_contract() -> None:
    report = await make_run(scripted("smtp.rcpt_to", "smtp", Status.FAIL), scripted("dns.mx", "dns")).run()
    document = report.to_json()
    assert set(document) == {"domain", "method", "duration_ms", "checks"}
    assert [c["id"] for c in document["checks"]] == ["dns.mx", "smtp.rcpt_to"]
    assert set(document["checks"][0]) == {
        "id",
        "status",
        "title",
        "summary",
        "fix",
        "code",
        "duration_ms",
        "data",
    }
    assert document["checks"][1]["status"] == "fail"
    assert document["checks"][1]["fix"] == "do this"


def test_a_failure_without_a_fix_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a fix"):
        CheckResult(id="dns.mx", status=Status.FAIL, title="MX", summary="no MX")
