"""Keep a lab running between test runs: ``python -m tests.lab start|stop|status``.

A test session reuses a running lab built from the same code and leaves it running.
"""

from __future__ import annotations

import sys

from tests.lab.lab import Lab, default_root


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "status"
    if command == "start":
        lab = Lab.acquire()
        print(f"lab running under {lab.root} ({'started' if lab.owned else 'already running'})")
    elif command == "stop":
        Lab(default_root()).stop()
        print("lab stopped")
    elif command == "status":
        lab = Lab(default_root())
        print(f"lab under {lab.root}: {'running' if lab.healthy() else 'not running'}")
    else:
        print("usage: python -m tests.lab start|stop|status", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
