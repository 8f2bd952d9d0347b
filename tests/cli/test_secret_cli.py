"""``relaywizard secret set|delete`` against a real gnome-keyring Secret Service and the fail backend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import assert_one_sentence_error, run_cli
from tests.lab.keyring import SecretServiceSession

pytestmark = pytest.mark.keyring

READ_BACK = (
    "import sys; from relaywizard.core.secrets import SecretStore; print(SecretStore().find(sys.argv[1]))"
)


def read_back(env: dict[str, str], profile: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", READ_BACK, profile], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_set_and_delete_round_trip_through_the_secret_service(
    secret_service: SecretServiceSession, tmp_path: Path
) -> None:
    env = secret_service.env
    stored = run_cli(["secret", "set", "--profile", "scanner"], env=env, input="s3cret-Ω\n", home=tmp_path)
    assert stored.returncode == 0, stored.stderr
    assert "SecretService" in stored.stdout
    assert "s3cret" not in stored.stdout + stored.stderr
    assert read_back(env, "scanner") == "s3cret-Ω"  # the newline ending the line is not part of it

    deleted = run_cli(["secret", "delete", "--profile", "scanner"], env=env, home=tmp_path)
    assert deleted.returncode == 0, deleted.stderr
    assert read_back(env, "scanner") == "None"

    again = run_cli(["secret", "delete", "--profile", "scanner"], env=env, home=tmp_path)
    assert_one_sentence_error(again, "no secret is stored for profile 'scanner'")


def test_the_secret_is_never_written_in_plain_text(
    secret_service: SecretServiceSession, tmp_path: Path
) -> None:
    secret = "plain-text-canary-7f3a"
    result = run_cli(
        ["secret", "set", "--profile", "canary"], env=secret_service.env, input=secret, home=tmp_path
    )
    assert result.returncode == 0, result.stderr
    for folder in (tmp_path, secret_service.root):
        for path in folder.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
    run_cli(["secret", "delete", "--profile", "canary"], env=secret_service.env, home=tmp_path)


def test_overwriting_keeps_only_the_new_secret(secret_service: SecretServiceSession, tmp_path: Path) -> None:
    env = secret_service.env
    for value in ("first", "second"):
        assert (
            run_cli(["secret", "set", "--profile", "twice"], env=env, input=value, home=tmp_path).returncode
            == 0
        )
    assert read_back(env, "twice") == "second"
    run_cli(["secret", "delete", "--profile", "twice"], env=env, home=tmp_path)


def test_empty_standard_input_stores_nothing(secret_service: SecretServiceSession, tmp_path: Path) -> None:
    result = run_cli(["secret", "set", "--profile", "empty"], env=secret_service.env, input="", home=tmp_path)
    assert_one_sentence_error(result, "no secret was given on standard input")
    assert read_back(secret_service.env, "empty") == "None"


def test_an_invalid_profile_name_is_refused(secret_service: SecretServiceSession, tmp_path: Path) -> None:
    result = run_cli(
        ["secret", "set", "--profile", "bad name!"], env=secret_service.env, input="x", home=tmp_path
    )
    assert_one_sentence_error(result, "bad name!")


def test_the_fail_backend_gives_one_sentence(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    for args in (["secret", "set", "--profile", "scanner"], ["secret", "delete", "--profile", "scanner"]):
        result = run_cli(args, env=env, input="s3cret", home=tmp_path)
        assert_one_sentence_error(result, "no usable keyring")
        assert "s3cret" not in result.stderr
    assert not any(p.is_file() for p in tmp_path.rglob("*")), "nothing may fall back to a file"


def test_no_session_bus_gives_one_sentence(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBUS_")}
    env.pop("PYTHON_KEYRING_BACKEND", None)
    env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={tmp_path / 'no-bus'}"
    result = run_cli(["secret", "set", "--profile", "scanner"], env=env, input="s3cret", home=tmp_path)
    assert_one_sentence_error(result, "keyring")


def test_a_dismissed_unlock_prompt_gives_one_sentence(tmp_path: Path) -> None:
    locked = SecretServiceSession(tmp_path / "locked", password=None).start()
    try:
        result = run_cli(
            ["secret", "set", "--profile", "scanner"], env=locked.env, input="s3cret", home=tmp_path
        )
    finally:
        locked.stop()
    assert_one_sentence_error(result, "could not be unlocked")


def test_a_keyring_locked_with_another_password_gives_one_sentence(tmp_path: Path) -> None:
    first = SecretServiceSession(tmp_path / "k", password="first-password").start()
    try:
        assert (
            run_cli(["secret", "set", "--profile", "p"], env=first.env, input="v", home=tmp_path).returncode
            == 0
        )
    finally:
        first.stop()
    second = SecretServiceSession(tmp_path / "k", password="another-password").start()
    try:
        result = run_cli(["secret", "set", "--profile", "p"], env=second.env, input="v2", home=tmp_path)
    finally:
        second.stop()
    assert_one_sentence_error(result, "keyring")
    assert "locked" in result.stderr.lower() or "unlocked" in result.stderr.lower()
