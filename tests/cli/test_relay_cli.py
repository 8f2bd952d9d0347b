"""``relaywizard relay`` and ``relaywizard queue`` as a service runs them: a real process, the lab upstream,
the real keyring, swaks and smtplib as office devices, SIGTERM and SIGKILL."""

from __future__ import annotations

import email
import json
import os
import signal
import smtplib
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Background, assert_one_sentence_error, local_relay_args, run_cli, send_with_bare_lf
from tests.lab.keyring import SecretServiceSession
from tests.lab.lab import Lab
from tests.lab.mail import ACCOUNTS
from tests.lab.process import free_port

pytestmark = [pytest.mark.lab, pytest.mark.keyring]

SCANNER = ACCOUNTS[0]
PROFILE = "lab-upstream"


@pytest.fixture(scope="module")
def keyring_env(
    secret_service: SecretServiceSession, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    env = dict(secret_service.env)
    stored = run_cli(
        ["secret", "set", "--profile", PROFILE],
        env=env,
        input=SCANNER.password,
        home=tmp_path_factory.mktemp("home"),
    )
    assert stored.returncode == 0, stored.stderr
    return env


def lab_relay_args(command: str, lab: Lab, port: int, spool: Path, *extra: str) -> list[str]:
    """``relay`` (or ``tray``) on 127.0.0.1:``port`` for 127.0.0.1, forwarding to the lab as the scanner."""
    upstream = ["--upstream", f"{lab.host}:{lab.submission_port}", "--ca-file", str(lab.ca_file)]
    return local_relay_args(
        command, port, spool, *upstream, "--user", SCANNER.login, "--profile", PROFILE, *extra
    )


class RelayProcess(Background):
    """``relaywizard relay`` forwarding to the lab as the scanner, on a free port of 127.0.0.1."""

    def __init__(self, lab: Lab, env: dict[str, str], home: Path, spool: Path, *extra: str) -> None:
        self.port = free_port("127.0.0.1")
        self.spool = spool
        self.home = home
        args = lab_relay_args("relay", lab, self.port, spool, *extra)
        super().__init__(args, dict(env, RELAYWIZARD_HOME=str(home)), ready="listening on", within=20)


@pytest.fixture
def relay(lab: Lab, keyring_env: dict[str, str], tmp_path: Path) -> Iterator[RelayProcess]:
    running = RelayProcess(lab, keyring_env, tmp_path / "home", tmp_path / "spool")
    yield running
    if running.process.poll() is None:
        running.stop(signal.SIGKILL)


def send(port: int, subject: str, sender: str = "printer@office.example", to: str = "alice@lab.test") -> None:
    message = (
        f"From: Front Desk Printer <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nscan attached\r\n"
    )
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.sendmail(sender, [to], message)


def delivered(lab: Lab, address: str, subjects: set[str], timeout: float = 30) -> Counter[str]:
    deadline = time.monotonic() + timeout
    while True:
        seen: Counter[str] = Counter()
        for path in lab.message_files(address):
            subject = email.message_from_bytes(path.read_bytes())["Subject"]
            if subject in subjects:
                seen[subject] += 1
        if set(seen) >= subjects or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


def test_a_device_message_is_relayed_to_microsoft_365_with_the_sender_rewritten(
    lab: Lab, relay: RelayProcess
) -> None:
    subject = f"relay {uuid.uuid4()}"
    result = subprocess.run(
        [
            "swaks",
            "--server",
            f"127.0.0.1:{relay.port}",
            "--from",
            "printer@office.example",
            "--to",
            "alice@lab.test",
            "--header",
            f"Subject: {subject}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    assert "250 2.0.0 Queued as" in result.stdout
    assert delivered(lab, "alice@lab.test", {subject})[subject] == 1
    path = next(p for p in lab.message_files("alice@lab.test") if subject in p.read_text(errors="replace"))
    message = email.message_from_bytes(path.read_bytes())
    assert SCANNER.login in message["From"]
    assert "printer@office.example" in message["Reply-To"]
    code, err = relay.stop()
    assert code == 0, err
    assert "stopped" in err


def test_secret_never_reaches_the_disk(lab: Lab, relay: RelayProcess) -> None:
    subject = f"secret {uuid.uuid4()}"
    send(relay.port, subject)
    delivered(lab, "alice@lab.test", {subject})
    relay.stop()
    for folder in (relay.home, relay.spool):
        for path in folder.rglob("*"):
            if path.is_file():
                assert SCANNER.password.encode() not in path.read_bytes(), path


def test_queue_lists_explains_exports_retries_and_deletes_dead_messages(
    lab: Lab, relay: RelayProcess, tmp_path: Path
) -> None:
    send(relay.port, "to a blocked recipient", sender=SCANNER.login, to="blocked@lab.test")
    spool = ["--spool", str(relay.spool)]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        listing = json.loads(run_cli(["queue", *spool, "list", "--json"]).stdout)["messages"]
        if listing and listing[0]["state"] == "dead":
            break
        time.sleep(0.1)
    [dead] = listing
    assert dead["code"] == "5.4.1"
    assert "recipient" in dead["explanation"].lower()
    human = run_cli(["queue", *spool]).stdout
    assert dead["id"] in human
    assert "5.4.1" in human

    exported = run_cli(["queue", *spool, "export", dead["id"], "--out", str(tmp_path)])
    assert exported.returncode == 0, exported.stderr
    assert b"to a blocked recipient" in (tmp_path / f"{dead['id']}.eml").read_bytes()

    through = run_cli(["queue", *spool, "retry", dead["id"]])  # the running relay does it for us
    assert through.returncode == 0, through.stderr
    assert "the running relay sends it now" in through.stdout
    relay.stop()
    assert run_cli(["queue", *spool, "retry", dead["id"]]).returncode == 0
    assert json.loads(run_cli(["queue", *spool, "list", "--json"]).stdout)["messages"][0]["state"] == "queued"
    assert run_cli(["queue", *spool, "delete", dead["id"]]).returncode == 0
    assert json.loads(run_cli(["queue", *spool, "list", "--json"]).stdout)["messages"] == []
    assert_one_sentence_error(run_cli(["queue", *spool, "show", "nope"]), "no message")


def test_sigkill_under_load_loses_nothing_that_got_250(
    lab: Lab, keyring_env: dict[str, str], tmp_path: Path
) -> None:
    relay = RelayProcess(lab, keyring_env, tmp_path / "home", tmp_path / "spool")
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def device(number: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as smtp:
                for i in range(200):
                    if stop.is_set():
                        return
                    subject = f"load {number}-{i} {uuid.uuid4().hex[:8]}"
                    smtp.sendmail(
                        "printer@office.example",
                        ["bob@lab.test"],
                        f"Subject: {subject}\r\nTo: bob@lab.test\r\n\r\n" + "x" * 70 + "\r\n" * 30,
                    )
                    with lock:
                        acked.append(subject)
        except (smtplib.SMTPException, OSError):
            return  # the relay was killed under this device

    try:
        devices = [threading.Thread(target=device, args=(n,)) for n in range(4)]
        for thread in devices:
            thread.start()
        deadline = time.monotonic() + 30
        while len(acked) < 150 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(acked) >= 150, "the devices could not send"
        relay.process.send_signal(signal.SIGKILL)
        relay.process.wait(10)
        stop.set()
        for thread in devices:
            thread.join(20)
    finally:
        if relay.process.poll() is None:
            relay.process.kill()
            relay.process.wait(10)
    answered = set(acked)

    restarted = RelayProcess(lab, keyring_env, tmp_path / "home", tmp_path / "spool")
    try:
        seen = delivered(lab, "bob@lab.test", answered, timeout=60)
    finally:
        assert restarted.stop()[0] == 0
    missing = answered - set(seen)
    assert not missing, f"{len(missing)} of {len(answered)} answered messages were lost"
    duplicates = sum(count - 1 for count in seen.values())
    assert duplicates <= 3, duplicates  # at most the messages in flight (3 upstream connections)


def test_unusable_settings_exit_2_with_one_sentence(
    lab: Lab, keyring_env: dict[str, str], tmp_path: Path
) -> None:
    base = ["relay", "--allow", "127.0.0.1/32", "--upstream", f"{lab.host}:{lab.submission_port}"]
    in_use = run_cli(
        [*base, "--listen", f"127.0.0.1:{lab.submission_port}", "--spool", str(tmp_path / "s1")],
        env=keyring_env,
        home=tmp_path,
    )
    assert_one_sentence_error(in_use, "in use")
    missing = run_cli(
        [
            *base,
            "--listen",
            f"127.0.0.1:{free_port('127.0.0.1')}",
            "--user",
            SCANNER.login,
            "--profile",
            "absent",
            "--spool",
            str(tmp_path / "s2"),
        ],
        env=keyring_env,
        home=tmp_path,
    )
    assert_one_sentence_error(missing, "no secret is stored for profile 'absent'")
    (tmp_path / "file").write_text("in the way")
    unusable = run_cli(
        [
            *base,
            "--listen",
            f"127.0.0.1:{free_port('127.0.0.1')}",
            "--spool",
            str(tmp_path / "file" / "spool"),
        ],
        env=keyring_env,
        home=tmp_path,
    )
    assert_one_sentence_error(unusable, "spool")
    no_keyring = run_cli(
        [
            *base,
            "--listen",
            f"127.0.0.1:{free_port('127.0.0.1')}",
            "--user",
            SCANNER.login,
            "--profile",
            PROFILE,
            "--spool",
            str(tmp_path / "s3"),
        ],
        env=dict(os.environ, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring"),
        home=tmp_path,
    )
    assert_one_sentence_error(no_keyring, "keyring")
    clear = run_cli(
        [
            *base,
            "--listen",
            f"127.0.0.1:{free_port('127.0.0.1')}",
            "--tls",
            "none",
            "--user",
            SCANNER.login,
            "--profile",
            PROFILE,
        ],
        env=keyring_env,
        home=tmp_path,
    )
    assert_one_sentence_error(clear, "unencrypted")


def test_device_accounts_authenticate_over_starttls_and_internal_only_mode(
    lab: Lab, keyring_env: dict[str, str], tmp_path: Path
) -> None:
    stored = run_cli(
        ["secret", "set", "--profile", "device-scanner1"], env=keyring_env, input="device-pw", home=tmp_path
    )
    assert stored.returncode == 0, stored.stderr
    relay = RelayProcess(
        lab,
        keyring_env,
        tmp_path / "home",
        tmp_path / "spool",
        "--device",
        "scanner1",
        "--tls-cert",
        str(lab.certs.cert),
        "--tls-key",
        str(lab.certs.key),
        "--recipient-domain",
        "lab.test",
    )
    try:

        def device(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [
                    "swaks",
                    "--server",
                    f"127.0.0.1:{relay.port}",
                    "--local-interface",
                    lab.connector_client,
                    "--from",
                    "scanner1@office.example",
                    *args,
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )

        subject = f"device account {uuid.uuid4()}"
        tls = ["--tls", "--tls-verify", "--tls-ca-path", str(lab.ca_file)]
        ok = device(
            *tls,
            "--auth",
            "LOGIN",
            "--auth-user",
            "scanner1",
            "--auth-password",
            "device-pw",
            "--to",
            "alice@lab.test",
            "--header",
            f"Subject: {subject}",
        )
        assert ok.returncode == 0, ok.stdout
        assert delivered(lab, "alice@lab.test", {subject})[subject] == 1
        wrong = device(
            *tls,
            "--auth",
            "LOGIN",
            "--auth-user",
            "scanner1",
            "--auth-password",
            "nope",
            "--to",
            "alice@lab.test",
        )
        assert wrong.returncode == 28
        assert "535" in wrong.stdout
        plain = device(
            "--auth",
            "LOGIN",
            "--auth-user",
            "scanner1",
            "--auth-password",
            "device-pw",
            "--to",
            "alice@lab.test",
        )
        assert plain.returncode == 28  # no AUTH offered without TLS outside --auth-network
        anonymous = device("--to", "alice@lab.test")
        assert anonymous.returncode in (23, 24)  # 127.0.0.2 is not in --allow
        external = device(
            *tls,
            "--auth",
            "LOGIN",
            "--auth-user",
            "scanner1",
            "--auth-password",
            "device-pw",
            "--to",
            "info@external.test",
        )
        assert external.returncode == 24
        assert "5.7.54" in external.stdout
    finally:
        assert relay.stop()[0] == 0
    for path in (tmp_path / "home").rglob("*"):
        if path.is_file():
            assert b"device-pw" not in path.read_bytes(), path


def test_a_device_account_without_a_stored_password_exits_2(
    lab: Lab, keyring_env: dict[str, str], tmp_path: Path
) -> None:
    result = run_cli(
        [
            "relay",
            "--listen",
            f"127.0.0.1:{free_port('127.0.0.1')}",
            "--device",
            "nobody-here",
            "--upstream",
            f"{lab.host}:{lab.mx_port}",
            "--spool",
            str(tmp_path / "spool"),
        ],
        env=keyring_env,
        home=tmp_path,
    )
    assert_one_sentence_error(result, "device-nobody-here")


def test_bare_lf_from_a_device_is_refused_by_default_and_delivered_when_normalized(
    lab: Lab, keyring_env: dict[str, str], tmp_path: Path
) -> None:
    strict = RelayProcess(lab, keyring_env, tmp_path / "home", tmp_path / "strict")
    try:
        answer = send_with_bare_lf(strict.port, f"strict {uuid.uuid4()}")
        assert answer.startswith("550 5.6.0 Bare LF/CR not allowed"), answer
    finally:
        strict.stop()
    normalizing = RelayProcess(
        lab, keyring_env, tmp_path / "home", tmp_path / "normalizing", "--bare-lf", "normalize"
    )
    try:
        subject = f"normalized {uuid.uuid4()}"
        assert send_with_bare_lf(normalizing.port, subject).startswith("250 2.0.0 Queued as")
        assert delivered(lab, "alice@lab.test", {subject})[subject] == 1
        path = next(
            p for p in lab.message_files("alice@lab.test") if subject in p.read_text(errors="replace")
        )
        message = email.message_from_bytes(path.read_bytes())
        assert message["Subject"] == subject
        assert message.get_payload().splitlines() == ["Page 1", "Page 2"]
    finally:
        assert normalizing.stop()[0] == 0
