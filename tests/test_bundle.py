"""The frozen Linux application (packaging/relaywizard.spec), built once and run as a user would run it.

The bundle is built by packaging/build.sh into a cache keyed by a hash of everything that goes into it
(the package, the resources, the packaging files, the interpreter and the installed distributions), so a
second run in the same checkout reuses it; the build is locked, so concurrent test runs build it once.
The frozen program runs with an environment that has no virtual environment in it, from an empty folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import sysconfig
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from relaywizard import __version__
from tests.cli.test_check_cli import submission_args
from tests.cli.test_relay_cli import delivered, send
from tests.helpers import assert_one_sentence_error, local_relay_args
from tests.lab import zones
from tests.lab.keyring import SecretServiceSession
from tests.lab.lab import Lab
from tests.lab.mail import ACCOUNTS
from tests.lab.process import free_port

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("RELAYWIZARD_BUNDLE_CACHE", ROOT / "build" / "bundle-cache"))
#: What goes into the bundle: a change to any of these builds a new one.
INPUTS = (
    "relaywizard/**/*.py",
    "relaywizard/py.typed",
    "resources/**/*",
    "packaging/relaywizard.spec",
    "packaging/hooks/*.py",
    "packaging/make_icons.py",
    "packaging/build.sh",
    "packaging/relaywizard.desktop",
    "packaging/io.github.relaywizard.metainfo.xml",
    "pyproject.toml",
)
#: The size the bundle must stay under (it is ~170 MiB: Qt ~80, Python ~35, cryptography 14 for msal).
#: A jump past this means something large got pulled in (GTK through a Qt plugin, QtQuick, a test tool).
SIZE_LIMIT_MIB = 220
SCANNER = ACCOUNTS[0]

# The first test to ask for the bundle builds it (about 30-60 s on 2 CPUs, more under load).
pytestmark = pytest.mark.timeout(600)


def inputs_key() -> str:
    digest = hashlib.sha256()
    files = sorted({path for pattern in INPUTS for path in ROOT.glob(pattern) if path.is_file()})
    for path in files:
        if "__pycache__" in path.parts:
            continue
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    # the interpreter and every installed distribution (name and version: PyInstaller, PySide6, ...)
    digest.update(sys.version.encode())
    site = Path(sysconfig.get_paths()["purelib"])
    digest.update("\n".join(sorted(p.name for p in site.glob("*.dist-info"))).encode())
    return digest.hexdigest()[:16]


@contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build(target: Path) -> None:
    """Build into ``target`` (bundle in ``target/relaywizard``, the rendered icons in ``target/icons``)."""
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    env = dict(
        os.environ,
        RELAYWIZARD_PYTHON=sys.executable,
        DIST=str(partial / "dist"),
        WORK=str(partial / "work"),
    )
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(ROOT / "packaging" / "build.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    seconds = time.monotonic() - started
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        pytest.fail(f"packaging/build.sh failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    (partial / "dist" / "relaywizard").rename(partial / "relaywizard")
    (partial / "work" / "relaywizard" / "icons").rename(partial / "icons")
    shutil.rmtree(partial / "dist")
    shutil.rmtree(partial / "work")
    (partial / "build.json").write_text(json.dumps({"seconds": round(seconds, 1)}))
    partial.rename(target)


@pytest.fixture(scope="session")
def built() -> Path:
    """The folder holding the bundle (``relaywizard/``), its icons (``icons/``) and ``build.json``."""
    target = CACHE / inputs_key()
    with locked(CACHE / ".lock"):
        if not (target / "relaywizard" / "relaywizard").is_file():
            build(target)
            # keep this build and the one before it (another checkout state may come back to it)
            others = sorted(
                (p for p in CACHE.iterdir() if p.is_dir() and p != target),
                key=lambda p: p.stat().st_mtime,
            )
            for old in others[:-1]:
                shutil.rmtree(old, ignore_errors=True)
    return target


@pytest.fixture(scope="session")
def bundle(built: Path) -> Path:
    return built / "relaywizard"


def frozen_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a user's shell: no virtual environment, no Python path, a UTF-8 locale."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "VIRTUAL_ENV", "PYTEST", "QT_"))
        and key not in ("PATH", "LD_LIBRARY_PATH")
    }
    env.update(PATH="/usr/local/bin:/usr/bin:/bin", LANG="C.UTF-8")
    env.update(extra or {})
    return env


def run_frozen(
    bundle: Path,
    args: Sequence[str],
    cwd: Path,
    *,
    env: Mapping[str, str] | None = None,
    input: str = "",
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    full_env = frozen_env(env)
    full_env.setdefault("RELAYWIZARD_HOME", str(cwd / "home"))
    return subprocess.run(
        [str(bundle / "relaywizard"), *args],
        cwd=cwd,
        env=full_env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_version(bundle: Path, tmp_path: Path) -> None:
    result = run_frozen(bundle, ["--version"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"relaywizard {__version__}"


def test_a_usage_error_is_one_sentence(bundle: Path, tmp_path: Path) -> None:
    assert_one_sentence_error(run_frozen(bundle, ["check", "contoso..com"], tmp_path), "DOMAIN")


@pytest.mark.lab
def test_dns_check_against_the_lab(bundle: Path, lab: Lab, tmp_path: Path) -> None:
    dns = ["--dns-server", f"{lab.host}:{lab.dns_port}", "--timeout", "2"]
    result = run_frozen(bundle, ["check", zones.GOOD, "--only", "dns", "--json", *dns], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert [c["id"] for c in document["checks"]] == [
        "dns.mx",
        "dns.spf",
        "dns.dkim",
        "dns.dmarc",
        "dns.autodiscover",
    ]
    assert {c["status"] for c in document["checks"]} == {"pass"}, result.stdout


@pytest.mark.lab
def test_a_full_check_sends_through_the_lab_over_tls(bundle: Path, lab: Lab, tmp_path: Path) -> None:
    # the bundle's own ssl module and OpenSSL: STARTTLS with certificate verification, then AUTH and DATA
    before = len(lab.message_files("alice@lab.test"))
    args = [
        "check",
        "lab.test",
        "--only",
        "smtp",
        *submission_args(lab),
        "--user",
        SCANNER.login,
        "--password-stdin",
        "--from",
        SCANNER.login,
        "--to",
        "alice@lab.test",
        "--send",
        "--json",
    ]
    result = run_frozen(bundle, args, tmp_path, input=SCANNER.password + "\n")
    assert result.returncode == 0, result.stdout + result.stderr
    statuses = {c["id"]: c["status"] for c in json.loads(result.stdout)["checks"]}
    for stage in ("starttls", "tls", "auth", "data"):
        assert statuses[f"smtp.{stage}"] == "pass", (stage, result.stdout)
    assert len(lab.wait_for_messages("alice@lab.test", before + 1)) == before + 1


def test_the_wizard_shows_its_first_page_offscreen(bundle: Path, tmp_path: Path) -> None:
    # --exit-when-shown exits 1 when the window never appears or its SVG icon cannot be drawn
    result = run_frozen(
        bundle, ["wizard", "--exit-when-shown"], tmp_path, env={"QT_QPA_PLATFORM": "offscreen"}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "shown: What are you setting up?"
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def x_display() -> Iterator[str]:
    """A private X server (Xvfb), as a desktop session's: its display name."""
    read, write = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-nolisten", "tcp", "-screen", "0", "1280x800x24"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as pipe:
        number = pipe.readline().strip()  # written once the server accepts clients; "" if it died
    if not number:
        server.wait(10)
        pytest.fail(f"Xvfb did not start (exit code {server.returncode})", pytrace=False)
    yield f":{number}"
    server.terminate()
    server.wait(10)


def test_the_wizard_shows_on_an_x_server(bundle: Path, x_display: str, tmp_path: Path) -> None:
    # the xcb platform plugin and the X libraries it needs, from the bundle, on a real X server
    env = {"DISPLAY": x_display, "QT_QPA_PLATFORM": "xcb"}
    result = run_frozen(bundle, ["wizard", "--exit-when-shown"], tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "shown: What are you setting up?"


def test_the_wizard_without_a_display_is_one_sentence(bundle: Path, tmp_path: Path) -> None:
    env = frozen_env()
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        env.pop(name, None)
    result = subprocess.run(
        [str(bundle / "relaywizard"), "wizard"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_one_sentence_error(result, "display")


def test_tray_help(bundle: Path, tmp_path: Path) -> None:
    result = run_frozen(bundle, ["tray", "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--window" in result.stdout


@pytest.mark.keyring
def test_secrets_go_to_the_secret_service(
    bundle: Path, secret_service: SecretServiceSession, tmp_path: Path
) -> None:
    # keyring finds its backends through entry points: without them the bundle would refuse (fail backend)
    env = {k: v for k, v in secret_service.env.items() if k.startswith(("DBUS_", "XDG_"))}
    stored = run_frozen(bundle, ["secret", "set", "--profile", "frozen"], tmp_path, env=env, input="fr0zen\n")
    assert stored.returncode == 0, stored.stderr
    assert "SecretService" in stored.stdout
    read = subprocess.run(
        [
            sys.executable,
            "-c",
            "from relaywizard.core.secrets import SecretStore; print(SecretStore().find('frozen'))",
        ],
        env=secret_service.env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert read.stdout.strip() == "fr0zen"
    deleted = run_frozen(bundle, ["secret", "delete", "--profile", "frozen"], tmp_path, env=env)
    assert deleted.returncode == 0, deleted.stderr


@pytest.mark.lab
@pytest.mark.keyring
def test_the_relay_forwards_a_device_message_and_stops_cleanly(
    bundle: Path, lab: Lab, secret_service: SecretServiceSession, tmp_path: Path
) -> None:
    # aiosmtpd inbound, the spool, the upstream session over STARTTLS with the secret from the keyring
    env = {k: v for k, v in secret_service.env.items() if k.startswith(("DBUS_", "XDG_"))}
    stored = run_frozen(
        bundle, ["secret", "set", "--profile", "frozen-relay"], tmp_path, env=env, input=SCANNER.password
    )
    assert stored.returncode == 0, stored.stderr
    port = free_port("127.0.0.1")
    upstream = ["--upstream", f"{lab.host}:{lab.submission_port}", "--ca-file", str(lab.ca_file)]
    account = ["--user", SCANNER.login, "--profile", "frozen-relay"]
    args = local_relay_args("relay", port, tmp_path / "spool", *upstream, *account)
    full_env = frozen_env({**env, "RELAYWIZARD_HOME": str(tmp_path / "home")})
    relay = subprocess.Popen(
        [str(bundle / "relaywizard"), *args],
        cwd=tmp_path,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert relay.stderr is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = relay.stderr.readline()
            if "listening on" in line or (not line and relay.poll() is not None):
                break
        assert relay.poll() is None, relay.stderr.read()
        subject = f"frozen relay {uuid.uuid4()}"
        send(port, subject)
        assert delivered(lab, "alice@lab.test", {subject}) == {subject: 1}
        relay.send_signal(signal.SIGTERM)
        _, err = relay.communicate(timeout=30)
        assert relay.returncode == 0, err
        assert "Traceback" not in err
    finally:
        if relay.poll() is None:
            relay.kill()
            relay.communicate()
        run_frozen(bundle, ["secret", "delete", "--profile", "frozen-relay"], tmp_path, env=env)


def test_size_and_contents(built: Path, bundle: Path) -> None:
    size = sum(path.stat().st_size for path in bundle.rglob("*") if path.is_file() and not path.is_symlink())
    mib = size / 2**20
    seconds = json.loads((built / "build.json").read_text())["seconds"]
    print(f"bundle: {mib:.0f} MiB, built in {seconds} s")
    assert mib < SIZE_LIMIT_MIB, f"the bundle is {mib:.0f} MiB"
    internal = bundle / "_internal"
    plugins = internal / "PySide6" / "Qt" / "plugins"
    for plugin in (
        "platforms/libqxcb.so",
        "platforms/libqwayland.so",
        "platforms/libqoffscreen.so",
        "iconengines/libqsvgicon.so",
        "imageformats/libqsvg.so",
        "platformthemes/libqxdgdesktopportal.so",
        "xcbglintegrations/libqxcb-glx-integration.so",
    ):
        assert (plugins / plugin).is_file(), plugin
    names = {path.name for path in internal.rglob("*")}
    for unwanted in ("libgtk-3.so.0", "libqgtk3.so", "libqeglfs.so", "libQt6Quick.so.6", "libQt6Qml.so.6"):
        assert unwanted not in names, unwanted
    for module in ("tkinter", "pytest", "_pytest", "mypy", "tests"):
        assert not (internal / module).exists(), module
    assert (internal / "relaywizard" / "resources" / "icons" / "relaywizard.svg").is_file()
    assert any(internal.glob("keyring-*.dist-info/entry_points.txt"))  # how keyring finds its backends


def test_every_module_loaded_by_name_is_frozen(bundle: Path) -> None:
    from PyInstaller.archive.readers import CArchiveReader

    frozen = set(CArchiveReader(str(bundle / "relaywizard")).open_embedded_archive("PYZ.pyz").toc)
    package = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "relaywizard").rglob("*.py")
    }
    assert package - frozen == set()
    for module in (
        "keyring.backends.SecretService",  # keyring's entry points
        "keyring.backends.kwallet",
        "jeepney.io.blocking",
        "secretstorage",
        "dns.rdtypes.ANY.TXT",  # dnspython's record types, loaded by name
        "dns.rdtypes.IN.A",
        "msal",
        "aiosmtpd.smtp",
        "aiosmtplib",
        "httpx",
        "qasync",
        "platformdirs",
        "tomli_w",
    ):
        assert module in frozen, module
    for module in ("tkinter", "unittest", "pytest", "pytestqt", "mypy", "PySide6.QtQml"):
        assert module not in frozen, module


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_icons_in_every_size(built: Path, bundle: Path) -> None:
    hicolor = bundle / "_internal" / "share" / "icons" / "hicolor"
    for size in (16, 24, 32, 48, 64, 128, 256, 512):
        assert png_size(hicolor / f"{size}x{size}" / "apps" / "relaywizard.png") == (size, size)
    assert (hicolor / "scalable" / "apps" / "relaywizard.svg").is_file()

    ico = (built / "icons" / "relaywizard.ico").read_bytes()
    reserved, kind, count = struct.unpack("<HHH", ico[:6])
    assert (reserved, kind) == (0, 1)
    sizes = []
    for index in range(count):
        width, _h, _c, _r, _planes, _bits, length, offset = struct.unpack(
            "<BBBBHHII", ico[6 + 16 * index : 22 + 16 * index]
        )
        assert ico[offset : offset + 8] == b"\x89PNG\r\n\x1a\n"
        assert offset + length <= len(ico)
        sizes.append(width or 256)
    assert sizes == [16, 24, 32, 48, 64, 128, 256]

    icns = (built / "icons" / "relaywizard.icns").read_bytes()
    assert icns[:4] == b"icns"
    assert struct.unpack(">I", icns[4:8])[0] == len(icns)
    kinds, at = [], 8
    while at < len(icns):
        kinds.append(icns[at : at + 4])
        at += struct.unpack(">I", icns[at + 4 : at + 8])[0]
    assert at == len(icns)
    assert {b"icp4", b"ic07", b"ic08", b"ic09", b"ic10"} <= set(kinds)


def test_menu_entry_and_appstream_metadata_validate(bundle: Path) -> None:
    share = bundle / "_internal" / "share"
    desktop = share / "applications" / "relaywizard.desktop"
    metainfo = share / "metainfo" / "io.github.relaywizard.metainfo.xml"
    checked = subprocess.run(
        ["desktop-file-validate", str(desktop)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert not checked.stdout.strip(), checked.stdout  # not even a hint
    checked = subprocess.run(
        ["appstreamcli", "validate", "--no-net", str(metainfo)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "E:" not in checked.stdout, checked.stdout
    assert "W:" not in checked.stdout, checked.stdout
    text = desktop.read_text()
    assert "Exec=relaywizard\n" in text
    assert "Icon=relaywizard\n" in text
    assert '<launchable type="desktop-id">relaywizard.desktop</launchable>' in metainfo.read_text()
