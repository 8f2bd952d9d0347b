"""bench/startup: process start to the wizard visible, against a bare QWizard; and idle resident size.

Run on demand: ``.venv/bin/python bench/startup.py [--runs 9]``. Each run is a fresh process that prints
when its first window is exposed (a real window under Xvfb when DISPLAY is set, else Qt's offscreen
platform) and its resident size then; the parent measures from just before starting it. The first run
of each kind is a warm-up (cold page cache), the median of the rest is reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import sys, os, time
KIND = sys.argv[1]
from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication, QWizard, QWizardPage

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0

class Exposed(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Expose and obj.isExposed():
            QTimer.singleShot(0, done)
        return False

def done():
    print(f"visible {time.time():.6f} {rss_mb():.1f}", flush=True)
    QApplication.instance().quit()

if KIND == "bare":
    app = QApplication(sys.argv[:1])
    window = QWizard()
    page = QWizardPage(); page.setTitle("What are you setting up?")
    window.addPage(page)
else:
    from relaywizard.gui.app import make_app
    app = make_app()
    from relaywizard.gui.wizard import SetupWizard
    window = SetupWizard()
window.show()
handle = window.windowHandle()
watcher = Exposed()
handle.installEventFilter(watcher)
if handle.isExposed():
    QTimer.singleShot(0, done)
app.exec()
"""


def once(kind: str, env: dict[str, str]) -> tuple[float, float]:
    started = time.time()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, kind], env=env, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("visible"))
    _, when, rss = line.split()
    return float(when) - started, float(rss)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    env = dict(os.environ, RELAYWIZARD_HOME=tempfile.mkdtemp(prefix="rw-bench-"))
    if not env.get("DISPLAY"):
        env["QT_QPA_PLATFORM"] = "offscreen"
    results: dict[str, tuple[float, float]] = {}
    for kind in ("bare", "relaywizard"):
        once(kind, env)  # warm-up
        samples = [once(kind, env) for _ in range(args.runs)]
        results[kind] = (statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples))
    bare, ours = results["bare"], results["relaywizard"]
    platform_name = "Xvfb" if env.get("DISPLAY") else "offscreen"
    print(
        f"bench/startup on {platform.node()} ({os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform_name}), median of {args.runs} warm runs, {time.strftime('%Y-%m-%d')}"
    )
    print(f"{'':<14}{'start to visible':>18}{'resident':>12}")
    for kind, (seconds, rss) in results.items():
        print(f"{kind:<14}{seconds * 1000:>15.0f} ms{rss:>9.0f} MB")
    ratio = ours[0] / bare[0]
    print(
        f"ratio {ratio:.2f} (target ≤ 1.5), wizard {ours[0] * 1000:.0f} ms (target < 500 ms), "
        f"resident {ours[1]:.0f} MB (target ≤ 120 MB)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
