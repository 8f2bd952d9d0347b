"""``relaywizard queue retry/delete`` while a relay runs: through its control channel, from another process;
and straight on the spool once no relay runs."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaywizard.relay.control_client import ControlClient, RelayNotRunning
from tests.helpers import assert_one_sentence_error, run_cli
from tests.lab.lab import Lab
from tests.relay.control_lab import private_runtime, start_running
from tests.relay.forwarder_fakes import wait_until

pytestmark = pytest.mark.lab


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with private_runtime(monkeypatch) as folder:
        yield folder


async def queue(*args: str) -> subprocess.CompletedProcess[str]:
    # In a thread: the relay under test answers on this test's event loop.
    return await asyncio.to_thread(run_cli, ["queue", *args])


async def test_retry_and_delete_go_through_the_running_relay(lab: Lab, tmp_path: Path, runtime: Path) -> None:
    async with start_running(lab, tmp_path) as running:
        spool = ["--spool", str(running.relay.config.spool)]
        await running.send(to="blocked@lab.test")
        assert await wait_until(lambda: running.relay.counts()["dead"] == 1, 15)
        [dead] = json.loads((await queue(*spool, "list", "--json")).stdout)["messages"]

        running.relay.pause()  # so the retried message stays queued where we can see it
        retried = await queue(*spool, "retry", dead["id"])
        assert retried.returncode == 0, retried.stderr
        assert retried.stdout == f"Message {dead['id']} is queued again; the running relay sends it now.\n"
        assert running.relay.counts()["queued"] == 1  # the relay's own view changed, not just the disk

        missing = await queue(*spool, "delete", "0000000000000-00000000")
        assert_one_sentence_error(missing, "no message 0000000000000-00000000")

        deleted = await queue(*spool, "delete", dead["id"])
        assert deleted.returncode == 0, deleted.stderr
        assert "through the running relay" in deleted.stdout
        assert running.relay.counts()["queued"] == 0
        assert json.loads((await queue(*spool, "list", "--json")).stdout)["messages"] == []

        running.relay.resume()
        await running.send(to="blocked@lab.test")  # left dead for the direct path below
        assert await wait_until(lambda: running.relay.counts()["dead"] == 1, 15)

    # No relay now: the socket is gone, and the command takes the spool itself.
    with pytest.raises(RelayNotRunning, match="No relay is running"):
        await ControlClient.connect(running.relay.config.spool, wait=5)
    [dead] = json.loads((await queue(*spool, "list", "--json")).stdout)["messages"]
    direct = await queue(*spool, "retry", dead["id"])
    assert direct.returncode == 0, direct.stderr
    assert "when it next runs" in direct.stdout
