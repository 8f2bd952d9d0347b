"""bench/tray: the tray with its relay running, delivering a message a minute for an hour; resident memory.

Run on demand: ``.venv/bin/python bench/tray.py [--minutes 60] [--interval 60]`` (``xvfb-run -a`` with a
tray host such as ``trayer`` for a real tray icon; without a display it uses Qt's offscreen platform,
where the icon, its menu and the queue window still exist). The tray runs in a child process exactly as
``relaywizard tray`` runs it (TrayApp on qasync, the relay in-process, its control channel, the queue
window refreshed on every event), forwarding over STARTTLS with AUTH to the lab's Postfix. The parent
sends one message every ``--interval`` seconds, samples the child's VmRSS every 10 s and reports the
first, peak and last sample. Target (issue #7): at most 120 MB resident after an hour.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import smtplib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.lab.lab import Lab
from tests.lab.mail import ACCOUNTS
from tests.lab.process import free_port

SCANNER = ACCOUNTS[0]
TARGET_MB = 120.0

CHILD = r"""
import asyncio, ipaddress, os, sys
from pathlib import Path
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen" if not os.environ.get("DISPLAY") else "xcb")
from relaywizard.gui.app import make_app
from relaywizard.gui.tray_app import TrayApp
from relaywizard.relay.config import RelayConfig
from relaywizard.relay.credentials import PasswordCredentials
from relaywizard.relay.model import Upstream
from relaywizard.relay.service import RelayService
import qasync

port, work, host, upstream_port, ca, user, password = sys.argv[1:8]
work = Path(work)
config = RelayConfig(
    listen_host="127.0.0.1", listen_port=int(port), allow=(ipaddress.ip_network("127.0.0.1/32"),),
    spool=work / "spool", delivery_log=work / "deliveries.jsonl",
    upstream=Upstream(host=host, port=int(upstream_port), tls="starttls", user=user, ca_file=ca),
    auth="password", profile=None, sender=user, rate=30, connections=3,
    max_message_size=35 * 1024 * 1024, hostname="relay.bench",
)
app = make_app()
loop = qasync.QEventLoop(app)
asyncio.set_event_loop(loop)

async def start_relay():
    service = RelayService(config, PasswordCredentials(user, password))
    await service.start()
    return service

async def main():
    tray = TrayApp(config, start_relay=start_relay, available=lambda: True)
    await tray.start()
    tray.controller.open_queue()  # the window open all along: the worst case for memory
    print("ready", flush=True)
    await tray.quitting.wait()

with loop:
    loop.run_until_complete(main())
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


RUN = f"{os.getpid()}-{int(time.time())}"


def send(port: int, number: int) -> None:
    body = (
        f"Subject: bench tray {RUN} {number}\r\nFrom: scanner@office.example\r\nTo: {SCANNER.login}\r\n\r\n"
    )
    body += "scanned page\r\n" * 200
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.sendmail("scanner@office.example", [SCANNER.login], body)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=60, help="how long the tray runs")
    parser.add_argument("--interval", type=float, default=60, help="seconds between messages")
    parser.add_argument("--json", metavar="FILE", help="also write the samples and results here")
    args = parser.parse_args()
    lab = Lab.acquire()
    port = free_port("127.0.0.1")
    with tempfile.TemporaryDirectory(prefix="rw-bench-tray-") as work:
        env = dict(
            os.environ, RELAYWIZARD_HOME=str(Path(work) / "home"), RELAYWIZARD_RUNTIME_DIR=f"{work}/run"
        )
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                str(port),
                work,
                lab.host,
                str(lab.submission_port),
                str(lab.ca_file),
                SCANNER.login,
                SCANNER.password,
            ],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise SystemExit("the tray did not start")
            started = time.monotonic()
            end = started + args.minutes * 60
            samples: list[tuple[float, float]] = [(0.0, rss_mb(child.pid))]
            sent = 0
            next_send = started
            next_sample = started + 10
            while time.monotonic() < end:
                now = time.monotonic()
                if now >= next_send:
                    send(port, sent)
                    sent += 1
                    next_send += args.interval
                if now >= next_sample:
                    samples.append((now - started, rss_mb(child.pid)))
                    next_sample += 10
                time.sleep(max(0.0, min(next_send, next_sample) - time.monotonic()))
            time.sleep(min(args.interval, 20))  # the last message delivered, the relay idle again
            samples.append((time.monotonic() - started, rss_mb(child.pid)))
        finally:
            child.terminate()
            child.wait(timeout=30)
    delivered = sum(
        f"bench tray {RUN} " in path.read_text(errors="replace") for path in lab.message_files(SCANNER.login)
    )
    first, peak, last = samples[0][1], max(mb for _, mb in samples), samples[-1][1]
    result = {
        "machine": f"{platform.node()} {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
        "python": platform.python_version(),
        "minutes": args.minutes,
        "messages": sent,
        "delivered": delivered,
        "rss_start_mb": round(first, 1),
        "rss_peak_mb": round(peak, 1),
        "rss_end_mb": round(last, 1),
        "target_mb": TARGET_MB,
        "met": last <= TARGET_MB and peak <= TARGET_MB and delivered == sent,
    }
    lab.release()
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "samples": samples}, indent=2))
    return 0 if result["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
