"""The delivery log: one JSON line per attempt, newest first when read, rotated by size, never a secret."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import pytest

from relaywizard.relay.deliverylog import DeliveryLog, DeliveryLogError, log_record
from relaywizard.relay.model import Attempt, Envelope

FIELDS = {
    "time",
    "id",
    "device",
    "device_login",
    "sender",
    "upstream_sender",
    "recipients",
    "failed_recipients",
    "size",
    "result",
    "reply",
    "code",
    "explanation",
}


def envelope(n: int = 0) -> Envelope:
    return Envelope(
        id=f"1700000000000-{n:08x}",
        received_at=1_700_000_000.0,
        device="192.0.2.10",
        mail_from="scanner@example.com",
        rcpt_tos=["alice@example.com", "bob@example.com"],
        size=12345,
        device_login="scanner-3rd-floor",
        sender="relay@example.com",
        failed_rcpts={"bob@example.com": "550 5.1.1 No such user"},
    )


def attempt(n: int = 0) -> Attempt:
    return Attempt(
        at=1_700_000_000.25 + n,
        result="deferred",
        reply="451 4.7.500 Server busy.\nTry again later",
        code="4.7.500",
        explanation="Microsoft 365 is throttling this mailbox; the relay retries.",
    )


def test_each_attempt_is_one_json_line_with_the_envelope_and_the_reply(tmp_path: Path) -> None:
    log = DeliveryLog(tmp_path / "logs" / "delivery.log")
    log.write(envelope(), attempt())
    log.close()

    [line] = (tmp_path / "logs" / "delivery.log").read_text().splitlines()
    record = json.loads(line)
    assert set(record) == FIELDS
    assert record == {
        "time": "2023-11-14T22:13:20.250Z",
        "id": "1700000000000-00000000",
        "device": "192.0.2.10",
        "device_login": "scanner-3rd-floor",
        "sender": "scanner@example.com",
        "upstream_sender": "relay@example.com",
        "recipients": ["alice@example.com", "bob@example.com"],
        "failed_recipients": {"bob@example.com": "550 5.1.1 No such user"},
        "size": 12345,
        "result": "deferred",
        "reply": "451 4.7.500 Server busy.\nTry again later",
        "code": "4.7.500",
        "explanation": "Microsoft 365 is throttling this mailbox; the relay retries.",
    }
    assert stat.S_IMODE((tmp_path / "logs" / "delivery.log").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "logs").stat().st_mode) == 0o700


def test_only_named_fields_are_logged_so_nothing_else_can_leak(tmp_path: Path) -> None:
    message = envelope()
    message.helo = "scanner.local"
    message.attempts = [attempt()]
    assert set(log_record(message, attempt())) == FIELDS  # not helo, attempts, or anything added later


def test_read_returns_newest_first_and_honours_the_limit(tmp_path: Path) -> None:
    log = DeliveryLog(tmp_path / "delivery.log")
    assert log.read() == []
    for n in range(20):
        log.write(envelope(n), attempt(n))
    assert [r["id"][-2:] for r in log.read(3)] == ["13", "12", "11"]  # hex ids: 0x13 = 19
    assert len(log.read()) == 20
    assert log.read(0) == []


def test_a_line_is_readable_at_once_without_close(tmp_path: Path) -> None:
    log = DeliveryLog(tmp_path / "delivery.log")
    log.write(envelope(), attempt())
    assert len((tmp_path / "delivery.log").read_text().splitlines()) == 1
    assert DeliveryLog(tmp_path / "delivery.log").read()[0]["id"] == envelope().id
    log.close()


def test_it_rotates_by_size_and_keeps_the_newest_files(tmp_path: Path) -> None:
    line = len(json.dumps(log_record(envelope(), attempt()), ensure_ascii=False, separators=(",", ":"))) + 1
    log = DeliveryLog(tmp_path / "delivery.log", max_bytes=line * 3, keep=2)
    for n in range(20):
        log.write(envelope(n), attempt(n))
    log.close()

    assert sorted(p.name for p in tmp_path.iterdir()) == ["delivery.log", "delivery.log.1", "delivery.log.2"]
    for path in tmp_path.iterdir():
        assert path.stat().st_size <= line * 3
    newest = log.read()
    assert len(newest) == 8  # 2 in the current file, 3 in each rotated one
    assert [r["time"] for r in newest] == sorted((r["time"] for r in newest), reverse=True)
    assert newest[0]["id"] == envelope(19).id


def test_reading_backwards_crosses_block_boundaries_and_skips_a_torn_line(tmp_path: Path) -> None:
    log = DeliveryLog(tmp_path / "delivery.log")
    for n in range(3000):  # ~1.5 MB: many 64 KB blocks
        log.write(envelope(n), attempt(n))
    log.close()
    with (tmp_path / "delivery.log").open("ab") as file:
        file.write(b'{"id": "torn by a cra')
    records = log.read()
    assert [r["id"] for r in records] == [envelope(n).id for n in reversed(range(3000))]


def test_writes_from_many_threads_never_interleave(tmp_path: Path) -> None:
    log = DeliveryLog(tmp_path / "delivery.log", max_bytes=50_000)

    def writer(base: int) -> None:
        for n in range(50):
            log.write(envelope(base + n), attempt())

    threads = [threading.Thread(target=writer, args=(1000 * t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    lines = [line for p in log.files() if p.exists() for line in p.read_text().splitlines()]
    assert len({json.loads(line)["id"] for line in lines}) == len(lines) == 400


def test_an_unwritable_log_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("in the way")
    log = DeliveryLog(tmp_path / "file" / "delivery.log")
    with pytest.raises(DeliveryLogError) as caught:
        log.open()
    text = str(caught.value)
    assert text.startswith(f"The delivery log {tmp_path / 'file' / 'delivery.log'} cannot be written: ")
    assert text.endswith(".")
    assert "Errno" not in text
    with pytest.raises(DeliveryLogError):
        log.write(envelope(), attempt())
