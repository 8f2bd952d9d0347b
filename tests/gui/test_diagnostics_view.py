"""The live list of checks: a controller turning a run's events into signals, and the view showing them.

The runs here are real ``DiagnosticsRun``s over scripted checks whose pace the test sets (a gate each), so
events arrive over time as they do from the network. Everything runs on a qasync loop, as in the
application: ``qloop`` makes one, ``run(qloop, scenario())`` drives a test's coroutine on it with a time
limit, and waits poll with ``await until(...)`` — ``qtbot.waitUntil`` would not run the asyncio side.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import qasync
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from relaywizard.diagnostics.base import Check
from relaywizard.diagnostics.model import CHECK_IDS, CheckResult, Status, Target
from relaywizard.diagnostics.runner import DiagnosticsRun, RunState
from relaywizard.gui.diagnostics_view import (
    DiagnosticsController,
    DiagnosticsView,
    default_checks,
    duration_text,
    facts,
    headline,
)
from tests.diagnostics.scripted import NoDns, Scripted
from tests.gui.conftest import run, until
from tests.helpers import LoopWatch

# qloop, run and until come from tests/gui/conftest.py: asyncio under Qt, as in the app.


# -- scripted runs -----------------------------------------------------------------------------------------


class FakeRuns:
    """A ``Services.start_run``: each call makes a real ``DiagnosticsRun`` over fresh scripted checks."""

    def __init__(self, make_checks: Callable[[], Sequence[Check]]) -> None:
        self.make_checks = make_checks
        self.targets: list[Target] = []
        self.runs: list[DiagnosticsRun] = []
        self.checks: list[list[Check]] = []

    def __call__(self, target: Target) -> DiagnosticsRun:
        checks = list(self.make_checks())
        self.targets.append(target)
        self.checks.append(checks)
        self.runs.append(DiagnosticsRun(target, checks, NoDns()))
        return self.runs[-1]


TARGET = Target(domain="contoso.com", timeout=5)


def make_view(qtbot: QtBot, runs: FakeRuns) -> tuple[DiagnosticsController, DiagnosticsView]:
    controller = DiagnosticsController(runs)
    view = DiagnosticsView(controller)
    view.runAgainRequested.connect(controller.restart)
    qtbot.addWidget(view)
    view.resize(820, 560)
    view.show()
    return controller, view


def click(qtbot: QtBot, widget: Any) -> None:
    qtbot.mouseClick(widget, Qt.MouseButton.LeftButton)


# -- tests -------------------------------------------------------------------------------------------------


def test_rows_update_live_and_the_progress_bar_counts(qtbot: QtBot, qloop: qasync.QEventLoop) -> None:
    gates: dict[str, asyncio.Event] = {}

    def checks() -> list[Check]:
        gates.update({name: asyncio.Event() for name in ("dns.mx", "smtp.connect")})
        return [
            Scripted("dns.mx", "dns", title="MX record", gate=gates["dns.mx"]),
            Scripted("smtp.connect", title="Connection", gate=gates["smtp.connect"], progress="Connecting"),
            Scripted("smtp.banner", title="Greeting", requires=("smtp.connect",)),
        ]

    controller, view = make_view(qtbot, FakeRuns(checks))

    async def scenario() -> None:
        controller.start(TARGET)
        assert controller.state is RunState.RUNNING
        assert view.check_ids() == ["dns.mx", "smtp.connect", "smtp.banner"]
        assert view.item("smtp.banner").text(0) == "Greeting"
        assert (view.progress.value(), view.progress.maximum()) == (0, 3)
        assert not view.run_again_button.isEnabled()
        assert view.cancel_button.isEnabled()
        await until(lambda: view.row_state("smtp.connect") == "running")
        await until(lambda: view.summary_text("smtp.connect") == "Connecting…")
        assert view.row_state("smtp.banner") == "pending"
        assert view.headline.status == "running"

        gates["dns.mx"].set()
        await until(lambda: view.row_state("dns.mx") == "pass")
        assert view.summary_text("dns.mx") == "dns.mx: pass"
        assert view.time_text("dns.mx").endswith("ms")
        assert view.progress.value() == 1
        assert view.progress.text() == "1 of 3 checks done"
        assert view.row_state("smtp.connect") == "running"
        assert "1 of 3 done" in view.headline.text()

        await asyncio.sleep(0.3)  # the running row's clock ticks while it waits
        assert view.time_text("smtp.connect") != "0 ms"

        gates["smtp.connect"].set()
        await until(lambda: controller.state is RunState.FINISHED)
        assert [view.row_state(cid) for cid in view.check_ids()] == ["pass"] * 3
        assert view.progress.value() == 3
        assert view.headline.status == "pass"
        assert view.headline.text() == "All checks passed.\n3 passed."
        assert view.run_again_button.isEnabled()
        assert not view.cancel_button.isEnabled()

    run(qloop, scenario())


def test_a_failure_skips_what_depends_on_it_and_the_headline_counts_failures(
    qtbot: QtBot, qloop: qasync.QEventLoop
) -> None:
    def checks() -> list[Check]:
        return [
            Scripted("dns.spf", "dns", Status.WARN, title="SPF record"),
            Scripted("smtp.connect", status=Status.FAIL, title="Connection", delay=0.05),
            Scripted("smtp.banner", title="Greeting", requires=("smtp.connect",)),
            Scripted("smtp.auth", status=Status.FAIL, title="Sign-in"),
        ]

    controller, view = make_view(qtbot, FakeRuns(checks))
    ended: list[Any] = []
    controller.runEnded.connect(ended.append)

    async def scenario() -> None:
        controller.start(TARGET)
        await until(lambda: controller.state is RunState.FINISHED)
        assert view.row_state("smtp.banner") == "skip"
        assert view.summary_text("smtp.banner") == "Not run: Connection failed."
        assert view.time_text("smtp.banner") == ""
        assert view.headline.status == "fail"
        assert view.headline.text() == (
            "2 checks failed: Connection, Sign-in. Open them below to see what to fix.\n"
            "1 warning, 2 failed, 1 skipped."
        )
        assert len(ended) == 1
        assert ended[0] is controller.report
        assert not ended[0].cancelled
        # Nobody opened a row while it ran: the first failure opens itself to show what to fix.
        assert view.item("smtp.connect").isExpanded()
        assert not view.item("smtp.auth").isExpanded()

    run(qloop, scenario())


def test_expanding_a_row_shows_the_fix_with_its_line_breaks_the_reply_code_and_a_copy_button(
    qtbot: QtBot, qloop: qasync.QEventLoop
) -> None:
    fix = "Check the user name (the mailbox's full address).\nRe-enter the password."
    data = {"reply": "535 5.7.139 Authentication unsuccessful", "reply_code": 535, "mechanism": "LOGIN"}

    def checks() -> list[Check]:
        return [
            Scripted("smtp.connect", title="Connection", data={"host": "smtp.example", "port": 587}),
            Scripted(
                "smtp.auth",
                status=Status.FAIL,
                title="Sign-in (AUTH)",
                summary="The server refused the sign-in: 535 5.7.139 Authentication unsuccessful.",
                fix=fix,
                code="5.7.139",
                data=data,
            ),
        ]

    controller, view = make_view(qtbot, FakeRuns(checks))

    async def scenario() -> None:
        controller.start(TARGET)
        await until(lambda: controller.state is RunState.FINISHED)
        view.expand("smtp.auth", False)
        # The keyboard opens a row: select it, then the right arrow.
        view.tree.setFocus()
        view.tree.setCurrentItem(view.item("smtp.auth"))
        qtbot.keyClick(view.tree, Qt.Key.Key_Right)
        assert view.item("smtp.auth").isExpanded()
        detail = view.detail("smtp.auth")
        assert detail is not None
        await until(lambda: detail.isVisible())
        assert detail.fix_label is not None
        assert detail.fix_label.text() == fix  # plain text: the line break stays a line break
        assert detail.fix_label.textFormat() is Qt.TextFormat.PlainText
        assert detail.fix_label.textInteractionFlags() & Qt.TextInteractionFlag.TextSelectableByMouse
        assert ("Reply code", "535 · 5.7.139") in detail.facts
        assert ("Server's reply", "535 5.7.139 Authentication unsuccessful") in detail.facts
        assert ("Mechanism", "LOGIN") in detail.facts
        # The row is as tall as its word-wrapped text: nothing is cut off.
        await until(lambda: detail.height() >= detail.heightForWidth(detail.width()) - 1, what="no clipping")

        assert detail.copy_button is not None
        click(qtbot, detail.copy_button)
        assert QApplication.clipboard().text() == fix
        assert detail.copy_button.text() == "Copied"

        qtbot.keyClick(view.tree, Qt.Key.Key_Left)
        assert not view.item("smtp.auth").isExpanded()
        connect = view.expand("smtp.connect")
        assert connect is not None
        assert connect.fix_label is None  # a pass has nothing to do
        assert ("Server", "smtp.example:587") in connect.facts

    run(qloop, scenario())


def test_cancel_stops_the_run_and_marks_the_rows_that_did_not_run(
    qtbot: QtBot, qloop: qasync.QEventLoop
) -> None:
    gates: dict[str, asyncio.Event] = {}
    runs = FakeRuns(
        lambda: [
            Scripted("dns.mx", "dns", title="MX record"),
            Scripted("smtp.connect", title="Connection", gate=gates.setdefault("slow", asyncio.Event())),
            Scripted("smtp.banner", title="Greeting"),
        ]
    )
    controller, view = make_view(qtbot, runs)
    states: list[str] = []
    controller.stateChanged.connect(states.append)

    async def scenario() -> None:
        controller.start(TARGET)
        await until(
            lambda: view.row_state("dns.mx") == "pass" and view.row_state("smtp.connect") == "running"
        )
        click(qtbot, view.cancel_button)
        assert controller.state is RunState.CANCELLED  # at once, not after the cleanup
        assert states == ["running", "cancelled"]
        assert view.row_state("dns.mx") == "pass"
        assert view.row_state("smtp.connect") == "cancelled"
        assert view.row_state("smtp.banner") == "cancelled"
        assert view.summary_text("smtp.banner") == "Not run: the tests were cancelled."
        assert view.headline.status == "skip"
        assert view.headline.text().startswith("Cancelled after 1 of 3 checks.")
        assert view.progress.value() == 1
        assert view.run_again_button.isEnabled()
        assert not view.cancel_button.isEnabled()
        assert controller.report is not None
        assert controller.report.cancelled
        await controller.wait()
        slow = runs.checks[0][1]
        assert isinstance(slow, Scripted)
        assert slow.cancelled  # the work inside the check got CancelledError
        assert runs.runs[0].state is RunState.CANCELLED
        assert "start smtp.banner" not in Scripted.log[-2:]
        gates["slow"].set()
        await asyncio.sleep(0.05)
        assert view.row_state("smtp.connect") == "cancelled"  # nothing comes back to life

    Scripted.log.clear()
    run(qloop, scenario())


def test_run_again_starts_over_with_fresh_rows(qtbot: QtBot, qloop: qasync.QEventLoop) -> None:
    outcome = iter([Status.FAIL, Status.PASS])
    runs = FakeRuns(lambda: [Scripted("smtp.auth", status=next(outcome), title="Sign-in", delay=0.05)])
    controller, view = make_view(qtbot, runs)

    async def scenario() -> None:
        controller.start(TARGET)
        await until(lambda: controller.state is RunState.FINISHED)
        assert view.row_state("smtp.auth") == "fail"
        first = controller.report
        click(qtbot, view.run_again_button)
        assert controller.state is RunState.RUNNING
        assert view.row_state("smtp.auth") == "pending"
        assert view.progress.value() == 0
        assert view.detail("smtp.auth") is None
        await until(lambda: controller.state is RunState.FINISHED)
        assert view.row_state("smtp.auth") == "pass"
        assert runs.targets == [TARGET, TARGET]
        assert controller.report is not first
        assert view.headline.status == "pass"

    run(qloop, scenario())


def test_starting_a_new_run_cancels_the_old_one(qtbot: QtBot, qloop: qasync.QEventLoop) -> None:
    gate = asyncio.Event()
    runs = FakeRuns(lambda: [Scripted("smtp.connect", gate=gate), Scripted("smtp.banner")])
    controller, view = make_view(qtbot, runs)
    ended: list[Any] = []
    controller.runEnded.connect(ended.append)

    async def scenario() -> None:
        controller.start(TARGET)
        await until(lambda: view.row_state("smtp.connect") == "running")
        controller.start(Target(domain="fabrikam.com"))
        assert len(ended) == 1
        assert ended[0].cancelled
        assert ended[0].domain == "contoso.com"
        assert controller.state is RunState.RUNNING
        await until(lambda: runs.runs[0].state is RunState.CANCELLED)
        old = runs.checks[0][0]
        assert isinstance(old, Scripted)
        assert old.cancelled
        gate.set()
        await until(lambda: controller.state is RunState.FINISHED)
        assert len(ended) == 2
        assert ended[1].domain == "fabrikam.com"
        assert view.progress.value() == 2

    run(qloop, scenario())


def test_a_run_that_cannot_start_says_why(qtbot: QtBot, qloop: qasync.QEventLoop) -> None:
    def broken(target: Target) -> DiagnosticsRun:
        raise ValueError("no domain to test")

    controller = DiagnosticsController(broken)
    view = DiagnosticsView(controller)
    qtbot.addWidget(view)
    failures: list[str] = []
    controller.runFailed.connect(failures.append)

    async def scenario() -> None:
        assert controller.start(TARGET) is None
        assert controller.state is RunState.IDLE
        assert failures == ["The tests could not start: no domain to test"]
        assert view.headline.status == "fail"
        assert view.run_again_button.isEnabled()

    run(qloop, scenario())


def test_the_event_loop_keeps_running_while_checks_are_in_flight(
    qtbot: QtBot, qloop: qasync.QEventLoop
) -> None:
    """While slow checks wait on the network, asyncio tasks tick, Qt timers fire and clicks are handled."""
    runs = FakeRuns(
        lambda: [
            *(Scripted(f"dns.{i}", "dns", title=f"DNS {i}", delay=1.2) for i in range(3)),
            Scripted("smtp.connect", title="Connection", delay=0.1),
            Scripted("smtp.banner", title="Greeting", delay=1.2),
        ]
    )
    controller, view = make_view(qtbot, runs)
    timer_fired: list[float] = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: timer_fired.append(time.monotonic()))

    async def scenario() -> None:
        async with LoopWatch() as watch:
            timer.start()
            started = time.monotonic()
            controller.start(TARGET)
            await until(lambda: view.row_state("smtp.connect") == "pass")
            # A person can open a finished row while the others still run.
            assert controller.state is RunState.RUNNING
            detail = view.expand("smtp.connect")
            assert detail is not None
            await until(lambda: detail.isVisible())
            await until(lambda: controller.state is RunState.FINISHED, within=5)
            elapsed = time.monotonic() - started
            timer.stop()
        assert elapsed >= 1.2
        in_flight = [t for t in watch.since(started) if t <= started + elapsed]
        fired = [t for t in timer_fired if started <= t <= started + elapsed]
        assert len(in_flight) >= elapsed / 0.02 / 3, len(in_flight)
        assert len(fired) >= elapsed / 0.02 / 3, len(fired)
        gap = watch.longest_gap(since=started)
        assert gap < 0.25, f"the loop stalled for {gap:.3f} s"

    run(qloop, scenario())


def test_facts_pick_what_matters_from_a_results_data() -> None:
    tls = CheckResult(
        id="smtp.tls",
        status=Status.PASS,
        title="TLS and certificate",
        summary="ok",
        data={
            "verified": True,
            "version": "TLSv1.3",
            "cipher": "TLS_AES_256_GCM_SHA384",
            "names": ["smtp.office365.com", "*.office365.com"],
            "issuer": "DigiCert",
            "not_after": "2027-03-01T12:00:00+00:00",
            "days_left": 300,
        },
    )
    assert facts(tls) == [
        ("TLS version", "TLSv1.3"),
        ("Cipher", "TLS_AES_256_GCM_SHA384"),
        ("Certificate names", "smtp.office365.com, *.office365.com"),
        ("Issuer", "DigiCert"),
        ("Valid until", "2027-03-01 (300 days left)"),
        ("Verified", "yes"),
    ]
    spf = CheckResult(
        id="dns.spf",
        status=Status.FAIL,
        title="SPF record",
        summary="no include",
        fix="Publish it.",
        data={
            "record": "v=spf1 -all",
            "lookups": 0,
            "suggested": "v=spf1 include:spf.protection.outlook.com -all",
        },
    )
    assert facts(spf) == [
        ("SPF record", "v=spf1 -all"),
        ("DNS look-ups", "0 of 10"),
        ("Record to publish", "v=spf1 include:spf.protection.outlook.com -all"),
    ]
    mx = CheckResult(id="dns.mx", status=Status.PASS, title="MX", summary="ok", data={"hosts": ["a.", "b."]})
    assert facts(mx) == [("MX hosts", "a.\nb.")]
    unknown = CheckResult(
        id="x.y", status=Status.PASS, title="X", summary="ok", data={"seen": 3, "none": None}
    )
    assert facts(unknown) == [("seen", "3")]


def test_headline_and_durations_read_well() -> None:
    def result(status: Status, title: str) -> CheckResult:
        return CheckResult(
            id=title, status=status, title=title, summary="", fix="Fix." if status != "pass" else ""
        )

    assert duration_text(12) == "12 ms"
    assert duration_text(1340) == "1.3 s"
    one_fail = [result(Status.PASS, "A"), result(Status.FAIL, "B")]
    assert headline(one_fail, 2, ended=True) == (
        "fail",
        "1 check failed: B. Open it below to see what to fix.\n1 passed, 1 failed.",
    )
    warned = [result(Status.WARN, "SPF"), result(Status.SKIP, "AUTH")]
    assert headline(warned, 2, ended=True) == (
        "warn",
        "No check failed; 1 warning to look at: SPF.\n1 warning, 1 skipped.",
    )
    assert headline([], 14, ended=False)[0] == "running"


def test_the_default_rows_are_every_check_in_report_order() -> None:
    rows = default_checks()
    assert [cid for cid, _ in rows] == list(CHECK_IDS)
    assert all(title for _, title in rows)
