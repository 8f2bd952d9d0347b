"""The tray's screenshots for the README: the icon in each state in a real tray, its open menu, and the
queue window with delivered, dead and queued messages from a real relay run against the lab.

Run under Xvfb with the ``trayer`` tray host (Debian packages trayer, imagemagick, x11-utils)::

    xvfb-run -a -s "-screen 0 1280x900x24" .venv/bin/python scripts/tray_screenshots.py --out docs/screenshots
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STATES = ("running", "delivering", "paused", "errors waiting", "stopped")
PANEL_HEIGHT = 40


def root_shot(path: Path, crop: str | None = None) -> None:
    subprocess.run(["import", "-window", "root", str(path)], check=True)
    if crop:
        subprocess.run(["convert", str(path), "-crop", crop, "+repage", str(path)], check=True)


def start_trayer() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "trayer",
            "--edge",
            "top",
            "--align",
            "right",
            "--widthtype",
            "request",
            "--height",
            str(PANEL_HEIGHT),
            "--SetDockType",
            "true",
            "--transparent",
            "false",
            "--tint",
            "0xe8e8e8",
            "--iconspacing",
            "6",
            "--padding",
            "6",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def send(host: str, port: int, to: str, subject: str) -> None:
    import aiosmtplib

    message = EmailMessage()
    message["From"] = "Front Desk Scanner <scanner@office.example>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Scanned page attached.")
    await aiosmtplib.send(message, hostname=host, port=port, timeout=10)


async def until(condition: object, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("a screenshot's condition did not hold in time")
        await asyncio.sleep(0.05)


async def shoot(out: Path, work: Path) -> None:
    import dataclasses

    from PySide6.QtCore import QPoint
    from PySide6.QtWidgets import QApplication, QSystemTrayIcon

    from relaywizard.gui.tray_app import TrayApp
    from relaywizard.relay.credentials import PasswordCredentials
    from relaywizard.relay.service import RelayService
    from tests.lab.lab import Lab
    from tests.lab.mail import ACCOUNTS
    from tests.relay.control_lab import lab_config

    scanner = ACCOUNTS[0]
    lab = Lab.acquire()
    os.environ["RELAYWIZARD_RUNTIME_DIR"] = str(work / "run")
    config = dataclasses.replace(lab_config(lab, work), sender=scanner.login, hostname="scanner-relay")

    async def start_relay() -> RelayService:
        service = RelayService(config, PasswordCredentials(scanner.login, scanner.password))
        await service.start()
        return service

    trayer = start_trayer()
    app = TrayApp(config, start_relay=start_relay)
    try:
        await until(QSystemTrayIcon.isSystemTrayAvailable, 10)
        await app.start()
        assert app.service is not None
        host, port = app.service.relay.address
        for number in (1, 2, 3):
            await send(host, port, scanner.login, f"Scan {number} from the front desk")
        await send(host, port, "blocked@lab.test", "Scan for a blocked recipient")
        await until(lambda: int(app.controller.status.get("delivered_today", 0)) >= 3)
        await until(lambda: app.tray.state == "errors waiting")
        app.tray.pause_action.trigger()
        await until(lambda: app.tray.state == "paused")
        await send(host, port, scanner.login, f"Scan waiting while paused {uuid.uuid4().hex[:6]}")
        app.controller.open_queue()
        window = app.window
        window.resize(1180, 520)
        window.move(40, 80)
        await until(lambda: len(window.visible_ids()) == 5)
        dead = next(row["id"] for row in window.model.rows if row["state"] == "dead")
        window.select(dead)
        await asyncio.sleep(0.8)
        QApplication.processEvents()
        window.grab().save(str(out / "11-queue-window.png"))
        print("  11-queue-window.png")
        window.hide()

        # notifications shown so far (Qt's own balloons on this desktop) would cover the panel
        for widget in QApplication.topLevelWidgets():
            if widget.metaObject().className() == "QBalloonTip":
                widget.close()

        # the icon in each state, in the tray, side by side
        strips = []
        for state in STATES:
            app.tray.show_status({**app.controller.status, "state": state})
            await asyncio.sleep(0.6)
            strip = work / f"state-{state.replace(' ', '-')}.png"
            width = QApplication.primaryScreen().geometry().width()
            await asyncio.to_thread(
                root_shot, strip, f"{PANEL_HEIGHT}x{PANEL_HEIGHT}+{width - PANEL_HEIGHT}+0"
            )
            await asyncio.to_thread(
                subprocess.run,
                [
                    "convert",
                    str(strip),
                    "-scale",
                    "300%",
                    "-background",
                    "white",
                    "-gravity",
                    "center",
                    "-extent",
                    "190x120",
                    "-gravity",
                    "south",
                    "-splice",
                    "0x36",
                    "-pointsize",
                    "22",
                    "-annotate",
                    "+0+6",
                    state,
                    str(strip),
                ],
                check=True,
            )
            strips.append(str(strip))
        await asyncio.to_thread(
            subprocess.run, ["convert", *strips, "+append", str(out / "12-tray-states.png")], check=True
        )
        print("  12-tray-states.png")

        # the open menu, below the icon
        app.tray.show_status(app.controller.status)
        geometry = app.tray.icon.geometry()
        app.tray.menu.popup(
            QPoint(geometry.right() - app.tray.menu.sizeHint().width(), geometry.bottom() + 4)
        )
        await asyncio.sleep(0.8)
        width = QApplication.primaryScreen().geometry().width()
        menu = app.tray.menu.sizeHint()
        crop_width = max(menu.width() + 60, 420)
        await asyncio.to_thread(
            root_shot, out / "13-tray-menu.png", f"{crop_width}x{menu.height() + 70}+{width - crop_width}+0"
        )
        app.tray.menu.hide()
        print("  13-tray-menu.png")
    finally:
        await app.shutdown()
        trayer.terminate()
        trayer.wait(5)
        lab.release()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="where the PNGs go")
    args = parser.parse_args(argv)
    missing = [tool for tool in ("trayer", "import", "convert") if shutil.which(tool) is None]
    if not os.environ.get("DISPLAY") or missing:
        print(
            "tray_screenshots.py needs X (xvfb-run) and trayer + imagemagick"
            + (f"; missing: {', '.join(missing)}" if missing else ""),
            file=sys.stderr,
        )
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    import qasync

    from relaywizard.gui.app import make_app

    app = make_app()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    print(f"Tray screenshots into {args.out}:")
    with tempfile.TemporaryDirectory(prefix="rw-tray-shots-") as work, contextlib.closing(loop):
        loop.run_until_complete(asyncio.wait_for(shoot(args.out, Path(work)), 120))
    return 0


if __name__ == "__main__":
    sys.exit(main())
