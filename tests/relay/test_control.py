"""The relay's control channel: a real Relay against the lab, a real Unix socket, real clients.

Who may connect is tested twice: with the peer-uid function injected (any uid), and with a real process
running as ``nobody`` (we are root here, as the lab needs; elsewhere through password-less sudo).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import socket
import stat
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from relaywizard.relay import control
from relaywizard.relay.control import (
    MAX_LINE,
    ControlServer,
    ControlUnavailable,
    RelayStatus,
    allowed_uid,
    peer_uid,
    private_dir,
)
from relaywizard.relay.control_client import ControlClient, ControlError, RelayNotRunning, relay_status
from relaywizard.relay.engine import Relay
from relaywizard.relay.forwarder_types import ForwarderEvent
from relaywizard.relay.model import Upstream
from tests.lab.lab import Lab
from tests.relay.control_lab import Running, lab_config, private_runtime, start_running
from tests.relay.forwarder_fakes import wait_until

pytestmark = pytest.mark.lab


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with private_runtime(monkeypatch) as folder:
        yield folder


@pytest.fixture
async def running(lab: Lab, tmp_path: Path, runtime: Path) -> AsyncIterator[Running]:
    async with start_running(lab, tmp_path) as started:
        yield started


async def raw(path: Path, data: bytes, *, read_all: bool = True) -> list[dict[str, Any]]:
    """Send bytes as they are and read the replies until the server closes (or 5 s pass)."""
    reader, writer = await asyncio.open_unix_connection(os.fspath(path), limit=2**20)
    try:
        writer.write(data)
        await writer.drain()
        if not read_all:
            return [json.loads(await asyncio.wait_for(reader.readline(), 5))]
        replies = []
        async with asyncio.timeout(5):
            while line := await reader.readline():
                replies.append(json.loads(line))
        return replies
    finally:
        writer.close()


# -- the engine through the channel ---------------------------------------------------------------------


async def test_status_pause_resume_and_delivery_events_of_a_real_relay(running: Running, lab: Lab) -> None:
    async with await running.client() as client:
        status = await client.request("status")
        assert status["state"] == "running"
        assert status["upstream"] == {"state": "unknown", "host": lab.host, "port": lab.submission_port}
        assert status["delivered_today"] == status["failed_today"] == 0
        assert status["last_error"] is None
        assert status["counts"]["queued"] == 0
        assert status["spool"] == str(running.relay.config.spool)

        assert (await client.request("pause"))["state"] == "paused"
        await running.send()
        paused = await client.request("status")
        assert paused["state"] == "paused"
        assert paused["counts"]["queued"] == 1
        [row] = (await client.request("queue"))["messages"]
        assert row["state"] == "queued"
        assert row["recipients"] == ["alice@lab.test"]
        await asyncio.sleep(0.3)
        assert running.relay.counts()["queued"] == 1, "a paused relay sent a message"

        assert (await client.request("resume"))["state"] in ("delivering", "running")
        assert await wait_until(lambda: running.status.delivered_today == 1, 15)
        after = await client.request("status")
        assert after["state"] == "running"
        assert after["delivered_today"] == 1
        assert after["upstream"]["state"] == "up"
        assert (await client.request("queue"))["messages"] == []
        assert [m["state"] for m in (await client.request("queue", all=True))["messages"]] == ["done"]


async def test_watch_streams_queued_delivered_and_dead_events_with_the_state(running: Running) -> None:
    async with await running.client() as client:
        stream = client.watch()
        first = await anext(stream)
        assert first["event"] == "status"
        assert first["state"] == "running"
        await running.send()
        queued = await asyncio.wait_for(anext(stream), 10)
        assert queued["event"] == "queued"
        assert queued["counts"]["queued"] == 1
        delivered = await asyncio.wait_for(anext(stream), 15)
        assert delivered["event"] == "delivered"
        assert delivered["id"] == queued["id"]
        assert delivered["state"] == "running"

        await running.send(to="blocked@lab.test")
        assert (await asyncio.wait_for(anext(stream), 10))["event"] == "queued"
        dead = await asyncio.wait_for(anext(stream), 15)
        assert dead["event"] == "dead"
        assert dead["code"] == "5.4.1"
        assert dead["state"] == "errors waiting"
        await stream.aclose()

    async with await running.client() as client:
        status = await client.request("status")
        assert status["state"] == "errors waiting"
        assert status["failed_today"] == 1
        assert status["last_error"]["kind"] == "dead"
        assert status["last_error"]["code"] == "5.4.1"


async def test_queue_actions_retry_export_and_delete_a_dead_message(running: Running, tmp_path: Path) -> None:
    await running.send(to="blocked@lab.test")
    assert await wait_until(lambda: running.relay.counts()["dead"] == 1, 15)
    async with await running.client() as client:
        [dead] = (await client.request("queue"))["messages"]
        assert dead["state"] == "dead"
        assert "recipient" in dead["explanation"].lower()

        exported = await client.request("export", id=dead["id"], path=str(tmp_path))
        assert Path(exported["path"]) == tmp_path / f"{dead['id']}.eml"
        assert b"Scanned page." in await asyncio.to_thread(Path(exported["path"]).read_bytes)

        await client.request("pause")  # so the retried message stays queued where we can see it
        retried = await client.request("retry", id=dead["id"])
        assert retried == {"ok": True, "id": dead["id"], "state": "queued"}
        assert running.relay.counts()["queued"] == 1

        await client.request("delete", id=dead["id"])
        assert (await client.request("queue"))["messages"] == []
        with pytest.raises(ControlError, match="no message"):
            await client.request("delete", id=dead["id"])
        with pytest.raises(ControlError, match="needs the message id"):
            await client.request("retry")
        with pytest.raises(ControlError, match="absolute path"):
            await client.request("export", id=dead["id"], path="relative.eml")
        assert (await client.request("status"))["ok"] is True  # errors never cost the connection


async def test_upstream_down_puts_the_relay_in_errors_waiting(
    lab: Lab, tmp_path: Path, runtime: Path
) -> None:
    status = RelayStatus()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]  # bound, never listening: connections are refused
    upstream = Upstream(host="127.0.0.1", port=port, tls="none", helo_name="relay.test")
    config = dataclasses.replace(lab_config(lab, tmp_path), upstream=upstream)
    relay = Relay(config, None, on_event=status.listener(), on_queued=status.on_queued)
    await relay.start()
    server = ControlServer(relay, status, control.socket_path(config.spool))
    await server.start()
    try:
        await Running(relay, status, server, []).send()
        async with await ControlClient.connect(config.spool, wait=5) as client:
            assert await wait_until(lambda: status.upstream == "down", 15)
            reply = await client.request("status")
        assert reply["state"] == "errors waiting"
        assert reply["upstream"]["state"] == "down"
        assert reply["last_error"]["kind"] == "upstream_down"
    finally:
        await server.close()
        await relay.stop()
        closed.close()


# -- what a client may send ---------------------------------------------------------------------------


async def test_malformed_requests_get_one_sentence_errors_and_the_server_lives_on(running: Running) -> None:
    running.server.idle_timeout = 0.5  # so the connection ends once the requests are answered
    replies = await raw(
        running.path,
        b"this is not json\n"
        b"[1, 2]\n"
        b'{"op": "reboot"}\n'
        b'{"no": "op"}\n'
        b"\n" + b"[" * 50_000 + b"\n" + b'{"op": "status"}\n',
    )
    assert [r["ok"] for r in replies[:5]] == [False] * 5
    errors = [r["error"] for r in replies[:5]]
    assert errors[0] == "The request is not valid JSON."
    assert errors[1] == "The request must be one JSON object."
    assert errors[2].startswith('Unknown operation "reboot"; use one of status, pause')
    assert errors[3].startswith("Unknown operation null")
    assert errors[4] == "The request is not valid JSON."  # nested too deep for the parser
    for error in errors:
        assert error.endswith("."), error
        assert ". " not in error, error  # one sentence
    assert replies[5]["ok"] is True
    assert replies[5]["state"] == "running"
    assert len(replies) == 7  # and the last: closed for saying nothing more
    assert "nothing was asked" in replies[6]["error"].lower()


async def test_an_oversize_line_is_refused_and_the_connection_closed(running: Running) -> None:
    line = json.dumps({"op": "status", "pad": "x" * MAX_LINE}).encode() + b"\n"
    replies = await raw(running.path, line + b'{"op": "status"}\n')
    assert replies == [{"ok": False, "error": "A request line is longer than 64 KB."}]
    async with await running.client() as client:  # the next client is served as usual
        assert (await client.request("status"))["ok"] is True


async def test_a_silent_client_is_timed_out(running: Running) -> None:
    running.server.idle_timeout = 0.5
    started = time.monotonic()
    replies = await raw(running.path, b"")
    assert time.monotonic() - started < 4
    assert replies == [{"ok": False, "error": "Nothing was asked in time, so the connection is closed."}]


# -- who may connect ------------------------------------------------------------------------------------


def test_only_the_same_user_or_root_is_allowed() -> None:
    assert allowed_uid(os.geteuid())
    assert allowed_uid(0)
    assert not allowed_uid(os.geteuid() + 4242)
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        assert peer_uid(left) == os.geteuid()


async def test_another_uid_is_refused_by_the_peer_check(running: Running) -> None:
    asked: list[int] = []

    def someone_else(sock: Any) -> int:
        asked.append(peer_uid(sock))  # the real check ran on the real socket
        return 4242

    running.server.peer_uid = someone_else
    replies = await raw(running.path, b'{"op": "pause"}\n')
    assert replies == [{"ok": False, "error": "Only the user running the relay, or root, may control it."}]
    assert asked == [os.geteuid()]
    assert not running.relay.forwarder.paused


def _as_nobody(script: str) -> subprocess.CompletedProcess[str]:
    command = ["python3", "-I", "-c", script]
    if os.geteuid() != 0:
        command = ["sudo", "-n", "-u", "nobody", *command]
    as_root = {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}
    return subprocess.run(command, capture_output=True, text=True, timeout=20, cwd="/", **as_root)


NOBODY_CLIENT = """
import socket
s = socket.socket(socket.AF_UNIX)
try:
    s.connect({path!r})
except OSError as exc:
    print("connect failed:", exc.errno)
    raise SystemExit(0)
s.sendall(b'{{"op": "pause"}}\\n')
print(s.makefile().readline().strip())
"""


async def test_a_real_process_of_another_user_is_refused(running: Running) -> None:
    script = NOBODY_CLIENT.format(path=str(running.path))
    # The private folder keeps it out before the socket is even reached...
    result = await asyncio.to_thread(_as_nobody, script)
    assert result.stdout.strip() == "connect failed: 13", result.stdout + result.stderr
    # ...and were the folder and socket opened up by mistake, the kernel's peer uid still refuses it.
    for folder in (running.path.parent.parent, running.path.parent):  # mkdtemp's folder is 0700 too
        os.chmod(folder, 0o711)
    os.chmod(running.path, 0o666)
    result = await asyncio.to_thread(_as_nobody, script)
    reply = json.loads(result.stdout)
    assert reply == {"ok": False, "error": "Only the user running the relay, or root, may control it."}
    assert not running.relay.forwarder.paused


# -- the socket and its folder --------------------------------------------------------------------------


async def test_socket_is_private_and_removed_on_close(running: Running) -> None:
    assert stat.S_IMODE(os.stat(running.path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(running.path).st_mode) == 0o600
    assert os.stat(running.path).st_uid == os.geteuid()
    assert (await relay_status(running.relay.config.spool))["state"] == "running"
    await running.server.close()
    assert not running.path.exists()
    assert await relay_status(running.relay.config.spool) == {"state": "stopped"}
    with pytest.raises(RelayNotRunning, match="No relay is running"):
        await ControlClient.connect(running.relay.config.spool, wait=5)


async def test_a_client_in_another_environment_finds_the_relay_through_its_spool(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = running.relay.config.spool
    pointer = spool / control.POINTER
    assert pointer.read_text() == f"{running.path}\n"
    assert stat.S_IMODE(pointer.stat().st_mode) == 0o600
    monkeypatch.setenv(control.RUNTIME_ENV, "/nonexistent/elsewhere")  # a service's, or sudo's, view
    assert control.socket_path(spool) != running.path
    async with await ControlClient.connect(spool, wait=5) as client:
        assert (await client.request("status"))["spool"] == str(spool)
    await running.server.close()
    assert not pointer.exists()
    with pytest.raises(RelayNotRunning):
        await ControlClient.connect(spool, wait=5)


async def test_a_stale_socket_is_replaced_and_a_live_one_is_not(running: Running, runtime: Path) -> None:
    second = ControlServer(running.relay, running.status, running.path)
    with pytest.raises(ControlUnavailable, match="Another relay is already answering"):
        await second.start()
    assert running.path.exists()  # the live relay keeps its socket

    stale = runtime / "relay-stale.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(os.fspath(stale))
    dead.close()  # the file stays, nobody listens: what a killed relay leaves
    replacement = ControlServer(running.relay, running.status, stale)
    await replacement.start()
    try:
        async with await ControlClient.connect(path=stale, wait=5) as client:
            assert (await client.request("status"))["ok"] is True
    finally:
        await replacement.close()


def test_private_dir_tightens_its_own_folder_and_refuses_a_shared_parent(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o755)
    mine.chmod(0o755)
    assert private_dir(mine) == mine
    assert stat.S_IMODE(mine.stat().st_mode) == 0o700

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # world-writable without the sticky bit: anyone could swap our folder
    with pytest.raises(ControlUnavailable, match="can be changed by other users"):
        private_dir(shared / "run")
    shared.chmod(0o1777)  # like /tmp: fine
    assert private_dir(shared / "run") == shared / "run"

    other = tmp_path / "other"
    other.mkdir()
    os.chown(other, os.geteuid() + 1, os.getegid())  # root here, as the lab needs
    with pytest.raises(ControlUnavailable, match="not a folder of this user"):
        private_dir(other)


def test_status_counts_today_from_the_delivery_log_and_rolls_over_at_midnight() -> None:
    now = [time.time()]
    status = RelayStatus(clock=lambda: now[0])
    today = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now[0]))
    status.seed(
        [
            {"time": today + ".000Z", "result": "delivered"},
            {"time": today + ".000Z", "result": "dead"},
            {"time": today + ".000Z", "result": "deferred"},
            {"time": "not a time"},
            {"time": "2001-01-01T00:00:00.000Z", "result": "delivered"},
            {"time": today + ".000Z", "result": "delivered"},  # after an older one: not counted
        ]
    )
    assert (status.delivered_today, status.failed_today) == (1, 1)
    status.on_event(ForwarderEvent("delivered", "Message x delivered.", now[0], "x"))
    assert status.delivered_today == 2
    now[0] += 86400
    assert status.snapshot()["delivered_today"] == 0
    assert status.snapshot()["state"] == "stopped"


def test_a_watcher_that_falls_behind_is_dropped_not_fed_forever() -> None:
    status = RelayStatus()
    queue = status.subscribe()
    for n in range(control.WATCH_BACKLOG + 5):
        status.publish({"event": "queued", "id": str(n)})
    assert queue.qsize() == control.WATCH_BACKLOG + 1
    assert list(queue._queue)[-1] is None  # type: ignore[attr-defined]  # the "fell behind" mark
    status.publish({"event": "queued", "id": "later"})
    assert queue.qsize() == control.WATCH_BACKLOG + 1  # no longer subscribed


def test_the_macos_peer_credentials_are_read_from_xucred(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeSocket:
        def getsockopt(self, level: int, optname: int, buflen: int) -> bytes:
            assert (level, optname) == (0, 1)  # SOL_LOCAL, LOCAL_PEERCRED
            return struct.pack("IIh16I", 0, 501, 1, *([20] * 16))[:buflen]

    monkeypatch.setattr(control.sys, "platform", "darwin")
    assert peer_uid(FakeSocket()) == 501
    monkeypatch.setattr(control.sys, "platform", "sunos5")
    with pytest.raises(ControlUnavailable, match="cannot tell who connects"):
        peer_uid(FakeSocket())


async def test_windows_gets_one_sentence_instead_of_a_channel(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control.sys, "platform", "win32")
    server = ControlServer(running.relay, running.status, running.path.with_name("win.sock"))
    with pytest.raises(ControlUnavailable) as caught:
        await server.start()
    assert caught.value.message == (
        "The relay's control channel is not available on Windows yet, so the tray cannot attach to a "
        "running relay service there."
    )
    with pytest.raises(ControlUnavailable, match="not available on Windows"):
        await ControlClient.connect(running.relay.config.spool, wait=5)


async def test_closing_with_a_watcher_connected_hangs_up_without_an_error_logged(
    lab: Lab, tmp_path: Path, runtime: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    async with start_running(lab, tmp_path) as run:
        client = await run.client()
        stream = client.watch()
        assert (await anext(stream))["event"] == "status"
        await run.server.close()
        with contextlib.suppress(ControlError, ConnectionError, StopAsyncIteration):
            await asyncio.wait_for(anext(stream), 5)
        await client.close()
    await asyncio.sleep(0.05)  # the stream protocol's done-callback runs on the loop after the task ends
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []
