"""A real Relay against the lab with its control channel open, for the control channel's tests and the
queue command's (which drives it from another process)."""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from relaywizard.relay import control
from relaywizard.relay.config import RelayConfig
from relaywizard.relay.control import ControlServer, RelayStatus
from relaywizard.relay.control_client import ControlClient
from relaywizard.relay.credentials import PasswordCredentials
from relaywizard.relay.engine import Relay
from relaywizard.relay.forwarder_types import ForwarderEvent
from relaywizard.relay.model import Upstream
from relaywizard.relay.service import RelayService
from tests.lab.lab import Lab

LOGIN = "scanner@lab.test"
PASSWORD = "scanner-pass"


@contextlib.contextmanager
def private_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short private runtime folder (socket paths are limited to ~104 bytes; tmp_path can be longer)."""
    folder = Path(tempfile.mkdtemp(prefix="rw-ctl-", dir="/tmp"))
    monkeypatch.setenv(control.RUNTIME_ENV, str(folder / "run"))
    try:
        yield folder / "run"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def lab_config(lab: Lab, root: Path) -> RelayConfig:
    return RelayConfig(
        listen_host="127.0.0.1",
        listen_port=0,
        allow=(ipaddress.ip_network("127.0.0.1/32"),),
        spool=root / "spool",
        delivery_log=root / "log" / "deliveries.jsonl",
        upstream=Upstream(
            host=lab.host,
            port=lab.submission_port,
            tls="starttls",
            user=LOGIN,
            ca_file=str(lab.ca_file),
            helo_name="relay.test",
        ),
        auth="password",
        profile=None,
        sender=None,
        rate=0,
        connections=1,
        max_message_size=10 * 1024 * 1024,
        hostname="relay.test",
    )


@dataclass
class Running:
    relay: Relay
    status: RelayStatus
    server: ControlServer
    events: list[ForwarderEvent]

    @property
    def path(self) -> Path:
        return self.server.path

    async def client(self) -> ControlClient:
        return await ControlClient.connect(path=self.path, wait=5)

    async def send(self, to: str = "alice@lab.test") -> str:
        return await send_scan(self.relay.address, to)


async def send_scan(address: tuple[str, int], to: str = "alice@lab.test", prefix: str = "control") -> str:
    """A device's scan, from the scanner's address, to the relay at ``address``; returns its subject."""
    subject = f"{prefix} {uuid.uuid4()}"
    message = EmailMessage()
    message["From"] = LOGIN
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Scanned page.")
    host, port = address
    await aiosmtplib.send(message, hostname=host, port=port, timeout=10)
    return subject


@contextlib.asynccontextmanager
async def start_running(lab: Lab, root: Path) -> AsyncIterator[Running]:
    """A relay forwarding to the lab's submission port, with its control socket named after its spool:
    the relay service as ``relaywizard relay`` and the tray start it."""
    events: list[ForwarderEvent] = []
    service = RelayService(
        lab_config(lab, root), PasswordCredentials(LOGIN, PASSWORD), on_event=events.append
    )
    await service.start()
    try:
        assert service.control is not None, service.control_error
        yield Running(service.relay, service.status, service.control, events)
    finally:
        await service.stop()
