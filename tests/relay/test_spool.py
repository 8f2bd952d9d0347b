"""The spool keeps every answered message through crashes, and hands each one to one sender at a time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from relaywizard.relay.model import Attempt, Envelope, State, new_message_id
from relaywizard.relay.spool import MessageNotFound, Spool, SpoolError
from tests.helpers import LoopWatch

REPO = Path(__file__).resolve().parents[2]
FOLDERS = ("incoming", "queued", "sending", "done", "dead")
NOTHING: dict[str, list[str]] = {folder: [] for folder in FOLDERS}


def envelope(**changes: Any) -> Envelope:
    values: dict[str, Any] = {
        "id": new_message_id(),
        "received_at": time.time(),
        "device": "192.0.2.10",
        "mail_from": "scanner@example.com",
        "rcpt_tos": ["alice@example.com", "bob@example.com"],
        "size": 0,
        "helo": "scanner",
    }
    values.update(changes)
    return Envelope(**values)


def body(tag: str, size: int = 2000) -> bytes:
    head = f"From: scanner@example.com\r\nSubject: {tag}\r\n\r\n".encode()
    return head + (b"0123456789abcdef" * (size // 16 + 1))[:size] + b"\r\n"


def files(root: Path) -> dict[str, list[str]]:
    """Every file in every folder of the spool (what a crash may have left behind)."""
    return {folder: sorted(os.listdir(root / folder)) for folder in FOLDERS}


def content_of(spool: Spool, envelope_id: str) -> bytes | None:
    """The content kept in the message's file (read by hand, so the file format is checked too)."""
    for state in State:
        path = spool.root / state / f"{envelope_id}.msg"
        if path.exists():
            head, _, content = path.read_bytes().partition(b"\n")
            length = json.loads(head)["content"]
            if length is None:
                assert content == b""
                return None
            assert len(content) == length
            return content
    return None


def assert_one_sentence(exc: BaseException, *words: str) -> None:
    text = str(exc)
    assert "\n" not in text
    assert "Errno" not in text
    assert text.endswith(".")
    for word in words:
        assert word in text, text


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    opened = Spool(tmp_path / "spool")
    opened.open()
    yield opened
    opened.close()


async def accepted(spool: Spool, count: int, **changes: Any) -> list[Envelope]:
    return [await spool.accept(envelope(**changes), body(f"m{n}")) for n in range(count)]


def reopen(spool: Spool) -> tuple[Spool, dict[str, int]]:
    """What the next start does after a crash: the dead process's lock is gone, a new one recovers."""
    spool.close()
    fresh = Spool(spool.root)
    fresh.open()
    return fresh, fresh.recover()


# -- accept ------------------------------------------------------------------------------------------


async def test_accept_stores_the_message_queued_and_private(spool: Spool) -> None:
    content = body("hello")
    sent = envelope()
    queued = await spool.accept(sent, content)

    assert queued.state is State.QUEUED
    assert queued.id == sent.id
    assert files(spool.root) == {**NOTHING, "queued": [f"{sent.id}.msg"]}
    assert content_of(spool, sent.id) == content
    assert await spool.content(sent.id) == content
    assert spool.get(sent.id) == queued
    assert spool.counts() == {**dict.fromkeys(State, 0), State.QUEUED: 1}
    assert (spool.root / "lock").read_text().strip() == str(os.getpid())
    for folder in FOLDERS:
        assert stat.S_IMODE((spool.root / folder).stat().st_mode) == 0o700
    for path in (spool.root / "queued" / f"{sent.id}.msg", spool.root / "lock"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def record_steps(monkeypatch: pytest.MonkeyPatch, crash_at: int | None = None) -> list[str]:
    """Log each write, fsync and rename (with the file it touches); raise Crash at step ``crash_at``."""
    steps: list[str] = []

    def target(arg: Any) -> str:
        path = os.readlink(f"/proc/self/fd/{arg}") if isinstance(arg, int) else os.fspath(arg)
        return "/".join(Path(path).parts[-2:]).split("-", 1)[0]

    def wrap(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def step(*args: Any) -> Any:
            if crash_at is not None and len(steps) == crash_at:
                raise Crash(name)
            steps.append(" ".join([name, *(target(a) for a in args[:2] if isinstance(a, int | str | Path))]))
            return real(*args)

        return step

    for name in ("write", "writev", "fsync", "replace", "rename"):
        monkeypatch.setattr(os, name, wrap(name, getattr(os, name)))
    return steps


class Crash(BaseException):
    """A simulated power cut: a BaseException, so no clean-up code of the spool runs."""


ACCEPT_STEPS = [
    "writev queued/1",  # the first line (the envelope) and the content, in one call
    "fsync queued/1",
    "fsync spool/queued",
]


async def test_accept_fsyncs_the_message_file_and_its_folder_before_it_returns(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = record_steps(monkeypatch)
    await spool.accept(envelope(id="1-a"), body("x"))
    assert steps == ACCEPT_STEPS


@pytest.mark.parametrize("crash_at", range(len(ACCEPT_STEPS) + 1))
async def test_a_crash_at_any_step_of_accept_leaves_nothing_or_a_whole_queued_message(
    spool: Spool, monkeypatch: pytest.MonkeyPatch, crash_at: int
) -> None:
    before = await spool.accept(envelope(), body("already queued"))
    content = body("crashing", 50_000)
    sent = envelope()
    answered = False
    steps = record_steps(monkeypatch, crash_at)
    try:
        await spool.accept(sent, content)
        answered = True
    except Crash:
        pass
    monkeypatch.undo()
    assert answered == (crash_at == len(ACCEPT_STEPS))
    assert len(steps) == crash_at

    spool, report = reopen(spool)
    try:
        assert spool.get(before.id).state is State.QUEUED
        assert content_of(spool, before.id) == body("already queued")
        # A simulated crash keeps what was written (a power cut could lose it, but then it was never
        # answered): the file survives once written whole, and a file cut short is removed.
        survived = crash_at > ACCEPT_STEPS.index("writev queued/1")
        if answered:
            assert survived
        if survived:
            assert spool.get(sent.id).state is State.QUEUED
            assert content_of(spool, sent.id) == content
        ids = {before.id, sent.id} if survived else {before.id}
        assert files(spool.root) == {**NOTHING, "queued": sorted(f"{i}.msg" for i in ids)}
        assert report["discarded"] == (0 if survived else 1)
        assert {e.id for e in await spool.claim(10, time.time())} == ids
    finally:
        spool.close()


async def test_a_failed_accept_is_one_sentence_and_leaves_nothing(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync

    def full(fd: int) -> None:
        if "queued" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(SpoolError) as caught:
        await spool.accept(envelope(), body("x"))
    assert_one_sentence(caught.value, "could not be saved", "the disk is full")
    assert files(spool.root) == NOTHING
    assert spool.counts()[State.QUEUED] == 0


async def test_an_id_that_is_already_spooled_is_refused_and_the_first_message_kept(spool: Spool) -> None:
    first = await spool.accept(envelope(), body("first"))
    with pytest.raises(SpoolError, match="already in the spool"):
        await spool.accept(envelope(id=first.id), body("second"))
    assert content_of(spool, first.id) == body("first")
    with pytest.raises(ValueError, match="not a spool id"):
        await spool.accept(envelope(id="../escape"), body("x"))
    with pytest.raises(MessageNotFound):
        spool.get("../../etc/passwd")


async def test_a_large_accept_does_not_block_the_event_loop(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync

    def slow_disk(fd: int) -> None:
        real_fsync(fd)
        time.sleep(0.15)

    content = os.urandom(20 * 1024 * 1024)
    monkeypatch.setattr(os, "fsync", slow_disk)
    async with LoopWatch(0.005) as watch:
        started = time.monotonic()
        queued = await spool.accept(envelope(size=len(content)), content)
        took = time.monotonic() - started

    assert took >= 0.3  # two fsyncs (the file, its folder) on a slow disk
    assert len(watch.ticks) >= 40
    assert watch.longest_gap() < 0.12, watch.longest_gap()
    assert content_of(spool, queued.id) == content


def test_messages_printed_by_a_relay_killed_with_sigkill_are_all_queued(tmp_path: Path) -> None:
    child = """
import asyncio, sys, time
from pathlib import Path
from relaywizard.relay.model import Envelope, new_message_id
from relaywizard.relay.spool import Spool

async def main() -> None:
    spool = Spool(Path(sys.argv[1]))
    spool.open()
    while True:
        eid = new_message_id()
        env = Envelope(id=eid, received_at=time.time(), device="192.0.2.7", mail_from="a@example.com",
                       rcpt_tos=["b@example.com"], size=0)
        await spool.accept(env, eid.encode() * 5000)
        print(eid, flush=True)

asyncio.run(main())
"""
    root = tmp_path / "spool"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", child, str(root)], stdout=subprocess.PIPE, env=env)
    printed: list[str] = []
    try:
        assert proc.stdout is not None
        while len(printed) < 60:
            line = proc.stdout.readline()
            assert line.endswith(b"\n"), "the child stopped before it was killed"
            printed.append(line.decode().strip())
    finally:
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    printed += rest.decode().split("\n")[:-1]  # a cut-off last line was no answer

    spool = Spool(root)
    spool.open()
    try:
        report = spool.recover()
        queued = {e.id: e for e in spool.list([State.QUEUED])}
        for eid in printed:
            assert queued[eid].state is State.QUEUED
        for eid in queued:
            assert content_of(spool, eid) == eid.encode() * 5000
        assert len(queued) >= len(printed) >= 60
        assert report["damaged"] == 0
        assert os.listdir(root / "incoming") == []
        assert len(os.listdir(root / "queued")) == len(queued)
    finally:
        spool.close()


# -- claim and finish --------------------------------------------------------------------------------


async def test_concurrent_claimers_never_get_the_same_message(spool: Spool) -> None:
    messages = await accepted(spool, 300)
    got: list[str] = []

    async def claimer() -> None:
        while batch := await spool.claim(7, time.time()):
            got.extend(e.id for e in batch)
            await asyncio.sleep(0)

    await asyncio.gather(*(claimer() for _ in range(40)))
    assert sorted(got) == sorted(e.id for e in messages)
    assert len(set(got)) == len(got)
    assert len(os.listdir(spool.root / "sending")) == 300
    assert spool.counts()[State.SENDING] == 300
    assert spool.next_due() is None


async def test_a_few_messages_are_claimed_on_the_loop_and_many_in_a_worker(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    await accepted(spool, 8)
    threads: list[str] = []
    real = os.rename

    def rename(*args: Any) -> None:
        threads.append(threading.current_thread().name)
        real(*args)

    monkeypatch.setattr(os, "rename", rename)
    assert len(await spool.claim(2, time.time())) == 2
    assert threads == ["MainThread", "MainThread"]
    threads.clear()
    assert len(await spool.claim(6, time.time())) == 6
    assert len(threads) == 6
    assert "MainThread" not in threads


async def test_claim_takes_due_messages_oldest_first(spool: Spool) -> None:
    now = 1_000_000.0
    late = await spool.accept(envelope(received_at=now - 50, next_attempt_at=now + 60), body("late"))
    young = await spool.accept(envelope(received_at=now - 10), body("young"))
    old = await spool.accept(envelope(received_at=now - 30, next_attempt_at=now - 5), body("old"))
    oldest = await spool.accept(envelope(received_at=now - 40, next_attempt_at=now), body("oldest"))

    assert spool.next_due() == 0.0
    first = await spool.claim(2, now)
    assert [e.id for e in first] == [oldest.id, old.id]
    assert all(e.state is State.SENDING for e in first)
    assert spool.next_due() == 0.0
    assert [e.id for e in await spool.claim(5, now)] == [young.id]
    assert spool.next_due() == now + 60
    assert await spool.claim(5, now + 59) == []
    assert [e.id for e in await spool.claim(5, now + 60)] == [late.id]
    assert spool.next_due() is None


async def test_finish_keeps_the_attempts_and_moves_the_message(spool: Spool) -> None:
    now = time.time()
    again, done, dead = await accepted(spool, 3)
    claimed = {e.id: e for e in await spool.claim(3, now)}

    retry = claimed[again.id]
    retry.attempts.append(Attempt(at=now, result="deferred", reply="451 4.7.500 Try later", code="4.7.500"))
    retry.next_attempt_at = now + 300
    await spool.finish(retry, State.QUEUED)
    assert retry.state is State.QUEUED
    assert spool.next_due() == now + 300
    assert await spool.claim(3, now + 299) == []
    [retry] = await spool.claim(3, now + 300)
    retry.attempts.append(Attempt(at=now + 300, result="delivered", reply="250 2.0.0 OK"))
    await spool.finish(retry, State.DONE)

    sent = claimed[done.id]
    sent.attempts.append(Attempt(at=now, result="delivered", reply="250 2.0.0 OK"))
    sent.sender = "relay@example.com"
    await spool.finish(sent, State.DONE)

    refused = claimed[dead.id]
    refused.attempts.append(Attempt(at=now, result="dead", reply="550 5.7.60 SendAs denied", code="5.7.60"))
    await spool.finish(refused, State.DEAD)

    stored = spool.get(again.id)
    assert stored.state is State.DONE
    assert [a.result for a in stored.attempts] == ["deferred", "delivered"]
    assert stored.attempts[0].code == "4.7.500"
    assert spool.get(done.id).sender == "relay@example.com"
    assert spool.get(dead.id).attempts == refused.attempts
    assert content_of(spool, again.id) is None
    assert content_of(spool, done.id) is None
    assert content_of(spool, dead.id) == body("m2")
    assert spool.counts() == {**dict.fromkeys(State, 0), State.DONE: 2, State.DEAD: 1}
    with pytest.raises(ValueError, match="not being sent"):
        await spool.finish(sent, State.DONE)
    with pytest.raises(ValueError, match="cannot finish"):
        await spool.finish(sent, State.SENDING)


FINISH_STEPS = {
    State.QUEUED: 6,  # write + fsync the tmp, replace, rename, fsync both folders
    State.DEAD: 6,
    State.DONE: 3,  # write the envelope into done, replace (and remove the sending one), fsync done
}


@pytest.mark.parametrize(
    ("target", "crash_at"), [(target, n) for target, steps in FINISH_STEPS.items() for n in range(steps + 1)]
)
async def test_a_crash_during_finish_never_loses_the_message(
    spool: Spool, monkeypatch: pytest.MonkeyPatch, target: State, crash_at: int
) -> None:
    await spool.accept(envelope(), body("m"))
    [sending] = await spool.claim(1, time.time())
    sending.attempts.append(Attempt(at=time.time(), result="deferred", reply="421 4.3.2 Busy"))
    steps = record_steps(monkeypatch, crash_at)
    with contextlib.suppress(Crash):
        await spool.finish(sending, target)
    monkeypatch.undo()
    assert len(steps) == crash_at

    spool, _ = reopen(spool)
    try:
        stored = spool.get(sending.id)
        finished = crash_at == FINISH_STEPS[target]
        assert stored.state in ((target,) if finished else (State.QUEUED, target))
        if stored.state is not State.DONE:
            assert content_of(spool, sending.id) == body("m")
        assert len(stored.attempts) in ((1,) if finished else (0, 1))
        assert sum(len(names) for names in files(spool.root).values()) == 1
    finally:
        spool.close()


class Gate(threading.Event):
    calls = 0


def hold(monkeypatch: pytest.MonkeyPatch, name: str) -> Gate:
    """Make os.<name> wait (in its worker thread) until the returned event is set; count the calls."""
    gate = Gate()
    real = getattr(os, name)

    def held(*args: Any) -> Any:
        gate.wait(5)
        gate.calls += 1
        return real(*args)

    monkeypatch.setattr(os, name, held)
    return gate


async def eventually(check: Callable[[], bool]) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the spool did not settle")


async def cancel_while_held(gate: threading.Event, work: Coroutine[Any, Any, Any]) -> None:
    task = asyncio.create_task(work)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()


async def test_a_cancelled_accept_still_queues_what_it_wrote(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = hold(monkeypatch, "fsync")
    await cancel_while_held(gate, spool.accept(envelope(), body("x")))
    await eventually(lambda: spool.counts()[State.QUEUED] == 1)
    monkeypatch.undo()
    [claimed] = await spool.claim(5, time.time())
    assert content_of(spool, claimed.id) == body("x")


async def test_messages_claimed_for_a_cancelled_caller_go_back_to_the_queue(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = await accepted(spool, 8)
    gate = hold(monkeypatch, "rename")
    await cancel_while_held(gate, spool.claim(6, time.time()))  # more than INLINE_CLAIM: in a worker
    await eventually(lambda: gate.calls == 12)  # six to claim, six to put back
    monkeypatch.undo()
    assert files(spool.root)["sending"] == []
    assert spool.counts()[State.QUEUED] == 8
    assert [e.id for e in await spool.claim(10, time.time())] == [e.id for e in messages]


async def test_a_cancelled_finish_still_completes(spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    await accepted(spool, 1)
    [claimed] = await spool.claim(1, time.time())
    gate = hold(monkeypatch, "fsync")
    await cancel_while_held(gate, spool.finish(claimed, State.DONE))
    await eventually(lambda: spool.counts()[State.DONE] == 1)
    monkeypatch.undo()
    assert spool.counts()[State.SENDING] == 0
    assert spool.get(claimed.id).state is State.DONE
    with pytest.raises(ValueError, match="not being sent"):
        await spool.finish(claimed, State.DONE)


# -- recovery ----------------------------------------------------------------------------------------


async def test_recover_requeues_sending_and_removes_what_no_answer_depends_on(spool: Spool) -> None:
    waiting, in_flight, delivered, gone, old = await accepted(spool, 5)
    [first, second] = await spool.claim(2, time.time())
    assert {first.id, second.id} == {waiting.id, in_flight.id}
    for _ in (delivered, gone, old):
        [claimed] = await spool.claim(1, time.time())
        await spool.finish(claimed, State.DONE)
    root = spool.root
    # What crashes leave behind: an older relay's half accept, a file cut short, temporary files ...
    (root / "incoming" / "9-half.msg").write_text("{")
    cut_short = envelope(id="9-cut")
    (root / "queued" / "9-cut.msg").write_bytes(
        json.dumps({"v": 1, "content": 5000, "envelope": cut_short.to_json()}).encode() + b"\nFrom: a"
    )
    (root / "queued" / "9-x.msg.tmp").write_text("{")
    (root / "dead" / "9-y.msg.tmp").write_text("{")
    # ... and a delivery from long ago.
    eight_days_ago = time.time() - 8 * 24 * 3600
    os.utime(root / "done" / f"{old.id}.msg", (eight_days_ago, eight_days_ago))

    spool, report = reopen(spool)
    try:
        assert report == {
            "duplicates": 0,
            "discarded": 2,
            "requeued": 2,
            "converted": 0,
            "missing_content": 0,
            "pruned": 1,
            "damaged": 0,
            "queued": 2,
        }
        assert {e.id for e in spool.list([State.QUEUED])} == {waiting.id, in_flight.id}
        assert {e.id for e in spool.list([State.DONE])} == {delivered.id, gone.id}
        assert files(root) == {
            **NOTHING,
            "queued": sorted(f"{e.id}.msg" for e in (waiting, in_flight)),
            "done": sorted(f"{e.id}.msg" for e in (delivered, gone)),
        }
        assert spool.counts() == {**dict.fromkeys(State, 0), State.QUEUED: 2, State.DONE: 2}
        assert len(await spool.claim(5, time.time())) == 2
    finally:
        spool.close()


def old_spool(root: Path, messages: dict[str, tuple[State, bytes | None]]) -> None:
    """A spool as relays before the one-file format wrote it: ``<state>/<id>.json`` + ``data/<id>.eml``."""
    for folder in (*FOLDERS, "data"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for envelope_id, (state, content) in messages.items():
        old = envelope(id=envelope_id, state=state, size=len(content or b""))
        (root / state / f"{envelope_id}.json").write_text(json.dumps(old.to_json()))
        if content is not None:
            (root / "data" / f"{envelope_id}.eml").write_bytes(content)


async def test_a_spool_of_an_older_relay_is_converted_and_nothing_in_it_lost(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    old_spool(
        root,
        {
            "1-queued": (State.QUEUED, body("queued")),
            "2-sending": (State.SENDING, body("in flight", 300_000)),
            "3-dead": (State.DEAD, body("dead")),
            "4-done": (State.DONE, None),
            "5-incoming": (State.INCOMING, b"half"),
            "6-lost": (State.QUEUED, None),
        },
    )
    (root / "data" / "7-orphan.eml").write_bytes(b"no envelope")
    spool = Spool(root)
    spool.open()
    try:
        report = spool.recover()
        assert report["converted"] == 5
        assert report["missing_content"] == 1
        assert report["requeued"] == 1
        assert not (root / "data").exists()
        assert files(root) == {
            **NOTHING,
            "queued": ["1-queued.msg", "2-sending.msg"],
            "done": ["4-done.msg"],
            "dead": ["3-dead.msg", "6-lost.msg"],
        }
        assert await spool.content("1-queued") == body("queued")
        assert await spool.content("2-sending") == body("in flight", 300_000)
        assert await spool.content("3-dead") == body("dead")
        lost = spool.get("6-lost")
        assert lost.state is State.DEAD
        assert "content of this message is missing" in lost.attempts[-1].reply
        assert spool.get("4-done").state is State.DONE
        assert {e.id for e in await spool.claim(5, time.time())} == {"1-queued", "2-sending"}
    finally:
        spool.close()


async def test_a_message_left_in_two_folders_keeps_its_furthest_state(spool: Spool) -> None:
    [message] = await accepted(spool, 1)
    [claimed] = await spool.claim(1, time.time())
    await spool.finish(claimed, State.DONE)
    # A file system without atomic renames could bring back the old name after a power cut.
    (spool.root / "queued" / f"{message.id}.msg").write_bytes(
        (spool.root / "done" / f"{message.id}.msg").read_bytes()
    )
    spool, report = reopen(spool)
    try:
        assert report["duplicates"] == 1
        assert spool.get(message.id).state is State.DONE
        assert spool.next_due() is None
    finally:
        spool.close()


async def test_a_damaged_envelope_is_set_aside(spool: Spool) -> None:
    [good] = await accepted(spool, 1)
    damaged = b'{"v": 1, "content": 7, "envelope": {"id": "9-bad"}}\ncontent'  # no sender, no recipients
    (spool.root / "queued" / "9-bad.msg").write_bytes(damaged)
    spool, report = reopen(spool)
    try:
        assert report["damaged"] == 1
        assert (spool.root / "queued" / "9-bad.msg.corrupt").exists()  # kept for whoever repairs it
        assert [e.id for e in spool.list()] == [good.id]
        assert [e.id for e in await spool.claim(5, time.time())] == [good.id]
    finally:
        spool.close()


# -- the queue view ----------------------------------------------------------------------------------


async def test_retry_makes_dead_and_queued_messages_due_now(spool: Spool) -> None:
    waiting, refused, delivered = await accepted(spool, 3, next_attempt_at=time.time() + 3600)
    claimed = {e.id: e for e in await spool.claim(3, time.time() + 3600)}
    claimed[waiting.id].next_attempt_at = time.time() + 3600
    await spool.finish(claimed[waiting.id], State.QUEUED)
    claimed[refused.id].attempts.append(
        Attempt(at=time.time(), result="dead", reply="550 5.1.1 No such user")
    )
    await spool.finish(claimed[refused.id], State.DEAD)
    await spool.finish(claimed[delivered.id], State.DONE)
    assert await spool.claim(5, time.time()) == []

    before = time.time()
    assert spool.retry(waiting.id).next_attempt_at >= before
    again = spool.retry(refused.id)
    assert again.state is State.QUEUED
    assert again.attempts[-1].reply == "550 5.1.1 No such user"
    assert spool.get(refused.id).state is State.QUEUED
    assert spool.counts()[State.DEAD] == 0
    assert {e.id for e in await spool.claim(5, time.time())} == {waiting.id, refused.id}

    with pytest.raises(SpoolError) as caught:
        spool.retry(delivered.id)
    assert_one_sentence(caught.value, "is done and cannot be retried")
    with pytest.raises(SpoolError, match="being sent right now"):
        spool.retry(waiting.id)
    with pytest.raises(MessageNotFound, match="There is no message"):
        spool.retry("1-unknown")


async def test_a_dead_message_without_content_cannot_be_retried(tmp_path: Path) -> None:
    old_spool(tmp_path / "spool", {"1-lost": (State.QUEUED, None)})
    spool = Spool(tmp_path / "spool")
    spool.open()
    spool.recover()
    message = spool.get("1-lost")
    try:
        with pytest.raises(SpoolError, match="its content is missing"):
            spool.retry(message.id)
        assert spool.get(message.id).state is State.DEAD
    finally:
        spool.close()


async def test_delete_removes_envelope_and_content(spool: Spool) -> None:
    first, second = await accepted(spool, 2)
    assert [e.id for e in await spool.claim(1, time.time())] == [first.id]
    spool.delete(second.id)
    assert content_of(spool, second.id) is None
    assert files(spool.root)["queued"] == []
    assert spool.next_due() is None
    assert spool.counts()[State.QUEUED] == 0
    with pytest.raises(SpoolError, match="being sent right now"):
        spool.delete(first.id)
    with pytest.raises(MessageNotFound):
        spool.delete(second.id)


async def test_export_eml_writes_the_bytes_as_received(spool: Spool, tmp_path: Path) -> None:
    content = b"From: a@example.com\r\nSubject: scan\r\n\r\n\r\n..\r\nbinary \x00\xff bytes\r\n"
    message = await spool.accept(envelope(), content)
    into_folder = spool.export_eml(message.id, tmp_path)
    assert into_folder == tmp_path / f"{message.id}.eml"
    assert into_folder.read_bytes() == content
    assert stat.S_IMODE(into_folder.stat().st_mode) == 0o600
    named = spool.export_eml(message.id, tmp_path / "scan.eml")
    assert named.read_bytes() == content

    with pytest.raises(SpoolError) as caught:
        spool.export_eml(message.id, tmp_path / "no" / "such" / "folder.eml")
    assert_one_sentence(caught.value, "could not be exported", "no such file or directory")
    with pytest.raises(MessageNotFound):
        spool.export_eml("1-unknown", tmp_path)
    [claimed] = await spool.claim(1, time.time())
    await spool.finish(claimed, State.DONE)
    with pytest.raises(SpoolError, match="was delivered"):
        spool.export_eml(message.id, tmp_path)


async def test_the_queue_can_be_read_while_a_relay_owns_it(spool: Spool, tmp_path: Path) -> None:
    first, second = await accepted(spool, 2)
    await spool.claim(1, time.time())
    viewer = Spool(spool.root)  # never opened: the `relaywizard queue` view of a running relay
    assert viewer.counts() == spool.counts() == {**dict.fromkeys(State, 0), State.QUEUED: 1, State.SENDING: 1}
    assert [e.id for e in viewer.list()] == [first.id, second.id]
    assert [e.state for e in viewer.list()] == [State.SENDING, State.QUEUED]
    assert viewer.get(second.id).mail_from == "scanner@example.com"
    assert viewer.export_eml(second.id, tmp_path).read_bytes() == body("m1")
    with pytest.raises(RuntimeError, match="not open"):
        viewer.retry(second.id)


# -- an unusable spool -------------------------------------------------------------------------------


def test_a_second_relay_on_the_same_spool_is_refused_in_one_sentence(spool: Spool) -> None:
    other = Spool(spool.root)
    with pytest.raises(SpoolError) as caught:
        other.open()
    assert_one_sentence(
        caught.value, str(spool.root), f"already in use by another relaywizard (pid {os.getpid()})"
    )
    spool.close()
    other.open()
    other.close()


def in_the_way(tmp_path: Path) -> Path:
    (tmp_path / "spool").write_text("a file")
    return tmp_path / "spool"


def under_a_file(tmp_path: Path) -> Path:
    (tmp_path / "file").write_text("a file")
    return tmp_path / "file" / "spool"


def folder_in_the_way(tmp_path: Path) -> Path:
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "queued").write_text("a file")
    return tmp_path / "spool"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (in_the_way, "spool is a file, not a folder"),
        (under_a_file, "part of the path"),
        (folder_in_the_way, "queued is a file, not a folder"),
    ],
)
def test_an_unusable_spool_folder_is_one_sentence(
    tmp_path: Path, make: Callable[[Path], Path], reason: str
) -> None:
    root = make(tmp_path)
    spool = Spool(root)
    with pytest.raises(SpoolError) as caught:
        spool.open()
    assert_one_sentence(caught.value, f"The spool folder {root} cannot be used", reason)
    assert caught.value.hint
    spool.close()


# -- messages arriving together ------------------------------------------------------------------------


async def test_messages_arriving_together_are_written_at_once_and_each_is_durable_before_its_answer(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = record_steps(monkeypatch)
    gate = hold(monkeypatch, "fsync")  # every fsync waits...
    answered: list[str] = []

    async def accept(tag: str) -> None:
        await spool.accept(envelope(id=f"{tag}-x"), body(tag))
        answered.append(tag)
        steps.append(f"answered {tag}")

    tasks = [asyncio.create_task(accept(str(n))) for n in range(4)]  # the default executor has >= 5 workers
    await asyncio.sleep(0.1)
    assert answered == []
    # ...and meanwhile all four were written, each in a worker of its own: none waits for another's fsync.
    written = sorted(step for step in steps if step.startswith("writev"))
    assert written == [f"writev queued/{n}" for n in range(4)]
    gate.set()
    await asyncio.gather(*tasks)
    monkeypatch.undo()

    assert sorted(answered) == ["0", "1", "2", "3"]
    for tag in answered:
        # Its file fsync'd, then the queued folder, then the answer.
        synced = steps.index(f"fsync queued/{tag}")
        assert "fsync spool/queued" in steps[synced : steps.index(f"answered {tag}")]
    assert spool.counts()[State.QUEUED] == 4
    for n in range(4):
        assert content_of(spool, f"{n}-x") == body(str(n))


async def test_a_failure_among_messages_arriving_together_fails_only_its_own(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = await spool.accept(envelope(), body("kept"))
    gate = hold(monkeypatch, "fsync")
    blocker = asyncio.create_task(spool.accept(envelope(), body("blocker")))
    await asyncio.sleep(0.05)
    group = [
        asyncio.create_task(spool.accept(envelope(), body("good 1"))),
        asyncio.create_task(spool.accept(envelope(id=kept.id), body("same id"))),
        asyncio.create_task(spool.accept(envelope(), body("good 2"))),
    ]
    await asyncio.sleep(0.05)
    gate.set()
    results = await asyncio.gather(blocker, *group, return_exceptions=True)
    monkeypatch.undo()
    assert isinstance(results[2], SpoolError)
    assert "already in the spool" in str(results[2])
    assert [isinstance(r, Envelope) for r in results] == [True, True, False, True]
    assert content_of(spool, kept.id) == body("kept")
    assert spool.counts()[State.QUEUED] == 4


async def test_delivered_messages_finish_in_groups_and_lose_their_content(spool: Spool) -> None:
    sent = await accepted(spool, 4)
    claimed = await spool.claim(4, time.time())
    for envelope_ in claimed:
        envelope_.attempts.append(Attempt(at=time.time(), result="delivered", reply="250 2.0.0 OK"))
    await asyncio.gather(*(spool.finish(e, State.DONE) for e in claimed))
    assert files(spool.root) == {**NOTHING, "done": sorted(f"{e.id}.msg" for e in sent)}
    for envelope_ in sent:
        stored = spool.get(envelope_.id)
        assert stored.state is State.DONE
        assert [a.reply for a in stored.attempts] == ["250 2.0.0 OK"]
    assert spool.counts()[State.DONE] == 4


def test_content_chunks_cut_at_line_ends_with_the_header_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relaywizard.relay.spool import ContentChunks

    monkeypatch.setattr(ContentChunks, "CHUNK", 1000)
    header = b"From: a@example.com\r\nSubject: chunks\r\n"
    content = header + b"\r\n" + b"".join(b"line %05d ....................\r\n" % n for n in range(300))
    path = tmp_path / "m.eml"
    path.write_bytes(content)
    chunks = ContentChunks.scan(path)
    assert chunks[0] == header
    assert b"".join(chunks) == content
    assert chunks.nbytes == len(content)
    assert all(chunk.endswith(b"\n") for chunk in chunks)
    assert all(len(chunk) <= 1000 for chunk in chunks)
    replaced = chunks.with_head(b"From: b@example.com\r\n")
    assert b"".join(replaced) == b"From: b@example.com\r\n" + content[len(header) :]
    assert replaced.nbytes == len(b"".join(replaced))
    path.write_bytes(content[:-10])  # the file changed under it: an error, never a silent short message
    with pytest.raises(OSError, match="changed"):
        chunks[len(chunks) - 1]

    # In a message file the content follows the envelope's line: the chunks are of the content alone.
    first_line = b'{"envelope": "..."}\n'
    path.write_bytes(first_line + content)
    chunks = ContentChunks.scan(path, len(first_line), len(content))
    assert chunks[0] == header
    assert b"".join(chunks) == content
    assert chunks.nbytes == len(content)


async def test_the_forwarder_reads_a_large_message_in_chunks_from_its_file(spool: Spool) -> None:
    content = body("large", 3 * 1024 * 1024)
    queued = await spool.accept(envelope(), content)
    [claimed] = await spool.claim(1, time.time())
    chunks = await spool.content_chunks(claimed.id)
    assert b"".join(chunks) == content
    assert chunks[0] == content[: content.index(b"\r\n\r\n") + 2]
    assert await spool.content(queued.id) == content
    await spool.finish(claimed, State.DONE)
    with pytest.raises(SpoolError, match="was delivered"):
        await spool.content_chunks(claimed.id)


# -- what a review found ------------------------------------------------------------------------------


async def test_converting_keeps_the_content_of_damaged_envelopes_and_the_furthest_copy(
    tmp_path: Path,
) -> None:
    root = tmp_path / "spool"
    old_spool(root, {"1-twice": (State.QUEUED, body("twice")), "2-ok": (State.QUEUED, body("ok"))})
    # The same message also in dead (a crash between renames), and one the old relay set aside.
    (root / "dead" / "1-twice.json").write_text((root / "queued" / "1-twice.json").read_text())
    (root / "queued" / "3-bad.json.corrupt").write_text("{")
    (root / "data" / "3-bad.eml").write_bytes(b"for a person to look at")
    for start in range(2):  # converting again (after a stop half-way) changes nothing
        spool = Spool(root)
        spool.open()
        try:
            report = spool.recover()
            assert report["converted"] == (2 if start == 0 else 0)
            assert report["missing_content"] == 0
            assert spool.get("1-twice").state is State.DEAD
            assert await spool.content("1-twice") == body("twice")
            assert await spool.content("2-ok") == body("ok")
            assert os.listdir(root / "data") == ["3-bad.eml"]
        finally:
            spool.close()


async def test_a_message_being_received_cannot_be_deleted_or_retried(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = hold(monkeypatch, "fsync")
    accepting = asyncio.create_task(spool.accept(envelope(id="1-busy"), body("busy")))
    await eventually(lambda: (spool.root / "queued" / "1-busy.msg").exists())
    with pytest.raises(SpoolError, match="being received right now"):
        spool.delete("1-busy")
    with pytest.raises(SpoolError, match="being received right now"):
        spool.retry("1-busy")
    gate.set()
    await accepting
    monkeypatch.undo()
    assert [e.id for e in await spool.claim(5, time.time())] == ["1-busy"]
    assert await spool.content("1-busy") == body("busy")


async def test_a_message_cannot_be_exported_over_the_spools_own_files(spool: Spool) -> None:
    [message] = await accepted(spool, 1)
    with pytest.raises(SpoolError) as caught:
        spool.export_eml(message.id, spool.root / "queued" / f"{message.id}.msg")
    assert_one_sentence(caught.value, "cannot be exported into the spool folder")
    with pytest.raises(SpoolError, match="cannot be exported into the spool folder"):
        spool.export_eml(message.id, spool.root)
    assert content_of(spool, message.id) == body("m0")


async def test_odd_files_in_the_spool_are_one_sentence_each(spool: Spool) -> None:
    [good] = await accepted(spool, 1)
    (spool.root / "dead" / "1-folder.msg").mkdir()
    (spool.root / "dead" / "2-deep.msg").write_bytes(b"[" * 100_000 + b"\n")
    (spool.root / "dead" / "3-true.msg").write_bytes(
        json.dumps({"v": 1, "content": True, "envelope": envelope(id="3-true").to_json()}).encode() + b"\nX"
    )
    viewer = Spool(spool.root)
    assert [e.id for e in viewer.list()] == [good.id]
    for envelope_id, words in [("1-folder", "is a folder"), ("2-deep", "damaged"), ("3-true", "damaged")]:
        with pytest.raises(SpoolError) as caught:
            viewer.get(envelope_id)
        assert_one_sentence(caught.value, words)


async def test_a_retried_dead_message_keeps_its_file_and_is_due_after_a_restart(spool: Spool) -> None:
    [message] = await accepted(spool, 1)
    [claimed] = await spool.claim(1, time.time())
    claimed.attempts.append(Attempt(at=time.time(), result="dead", reply="550 5.7.60 SendAs denied"))
    await spool.finish(claimed, State.DEAD)
    inode = (spool.root / "dead" / f"{message.id}.msg").stat().st_ino
    spool.retry(message.id)
    assert (spool.root / "queued" / f"{message.id}.msg").stat().st_ino == inode  # renamed, not copied
    spool, _ = reopen(spool)
    try:
        [again] = await spool.claim(1, time.time())
        assert again.attempts[-1].reply == "550 5.7.60 SendAs denied"
        assert content_of(spool, message.id) == body("m0")
    finally:
        spool.close()
