"""Two devices through one relay to the lab, each going out as its own sender (issue #9 item 1).

127.0.0.1 and 127.0.0.2 are both allowed; the map sends the first as scanner@lab.test (the mailbox) and
the second as scans@lab.test (an alias the lab's mailbox may send as). The Maildir shows each message
with its own From and envelope sender, the device's own From kept in Reply-To, and the delivery log
names the device and the sender it went out as.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import ipaddress
import json
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from relaywizard.relay.credentials import PasswordCredentials
from relaywizard.relay.senders import SenderRule
from relaywizard.relay.service import RelayService
from tests.lab.lab import Lab
from tests.relay.control_lab import LOGIN, PASSWORD, lab_config, private_runtime
from tests.relay.forwarder_fakes import wait_until

pytestmark = pytest.mark.lab

FRONT_DESK, WAREHOUSE = "127.0.0.1", "127.0.0.2"
SENDERS = {FRONT_DESK: "scanner@lab.test", WAREHOUSE: "scans@lab.test"}


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with private_runtime(monkeypatch) as folder:
        yield folder


async def send_from(source: str, port: int, subject: str) -> None:
    message = EmailMessage()
    message["From"] = f"Device {source} <device-{source.replace('.', '-')}@office.example>"
    message["To"] = "alice@lab.test"
    message["Subject"] = subject
    message.set_content("Scanned page.")
    await aiosmtplib.send(message, hostname="127.0.0.1", port=port, source_address=(source, 0), timeout=10)


def arrived(lab: Lab, subject: str) -> email.message.EmailMessage | None:
    for path in lab.message_files("alice@lab.test"):
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if parsed["Subject"] == subject:
            return parsed  # type: ignore[return-value]
    return None


async def test_two_devices_each_go_out_as_their_own_sender(lab: Lab, tmp_path: Path, runtime: Path) -> None:
    config = dataclasses.replace(
        lab_config(lab, tmp_path),
        allow=(ipaddress.ip_network(f"{FRONT_DESK}/32"), ipaddress.ip_network(f"{WAREHOUSE}/32")),
        sender=LOGIN,
        device_senders=tuple(SenderRule(device, sender) for device, sender in SENDERS.items()),
    )
    service = RelayService(config, PasswordCredentials(LOGIN, PASSWORD))
    await service.start()
    subjects = {device: f"from {device} {uuid.uuid4().hex[:8]}" for device in SENDERS}
    try:
        port = service.relay.address[1]
        for device, subject in subjects.items():
            await send_from(device, port, subject)
        assert await wait_until(lambda: all(arrived(lab, s) for s in subjects.values()), within=20)
    finally:
        await service.stop()
    for device, subject in subjects.items():
        message = arrived(lab, subject)
        assert message is not None
        sender = SENDERS[device]
        assert message["Return-Path"] == f"<{sender}>"  # the envelope sender upstream
        assert sender in message["From"]
        assert f"device-{device.replace('.', '-')}@office.example" in message["Reply-To"]
    records = [json.loads(line) for line in config.delivery_log.read_text().splitlines()]
    delivered = {r["device"]: r for r in records if r["result"] == "delivered"}
    for device, sender in SENDERS.items():
        assert delivered[device]["upstream_sender"] == sender
        assert delivered[device]["sender"] == f"device-{device.replace('.', '-')}@office.example"
