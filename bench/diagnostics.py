"""bench/diagnostics: ``relaywizard check`` against the same facts gathered by sequential dig + swaks.

Run on demand (not part of the test suite): ``.venv/bin/python bench/diagnostics.py [--runs 7]``.
It starts (or reuses) the test lab, then times, median of ``--runs``:

- relaywizard: one ``relaywizard check lab.test`` with DNS and the full SMTP test up to RCPT TO, as JSON;
- sequential tools: ``dig`` for each record the DNS checks read (MX, SPF TXT and its include, two DKIM
  CNAMEs, DMARC, autodiscover), then one ``swaks --quit-after RCPT`` with STARTTLS and AUTH;

on loopback, and again with 40 ms added to every DNS answer and every SMTP round trip (delay_proxy.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.delay_proxy import DelayProxies  # noqa: E402
from tests.lab.lab import Lab  # noqa: E402
from tests.lab.mail import ACCOUNTS  # noqa: E402

USER = ACCOUNTS[0]
DOMAIN = "lab.test"
DIG_QUERIES = [
    (DOMAIN, "MX"),
    (DOMAIN, "TXT"),
    ("spf.protection.outlook.com", "TXT"),
    (f"selector1._domainkey.{DOMAIN}", "CNAME"),
    (f"selector2._domainkey.{DOMAIN}", "CNAME"),
    (f"_dmarc.{DOMAIN}", "TXT"),
    (f"autodiscover.{DOMAIN}", "CNAME"),
]


def relaywizard(lab: Lab, dns_port: int, smtp_port: int) -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "relaywizard"),
            "check",
            DOMAIN,
            "--dns-server",
            f"127.0.0.1:{dns_port}",
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            str(smtp_port),
            "--ca-file",
            str(lab.ca_file),
            "--user",
            USER.login,
            "--password-stdin",
            "--from",
            USER.login,
            "--to",
            "alice@lab.test",
            "--json",
            "--timeout",
            "5",
        ],
        input=USER.password,
        capture_output=True,
        text=True,
        check=False,
    )
    statuses = {c["id"]: c["status"] for c in json.loads(result.stdout)["checks"]}
    assert statuses["smtp.rcpt_to"] == "pass", result.stdout


def sequential(lab: Lab, dns_port: int, smtp_port: int) -> None:
    for name, rdtype in DIG_QUERIES:
        subprocess.run(
            ["dig", "+time=5", "+tries=1", "@127.0.0.1", "-p", str(dns_port), name, rdtype],
            capture_output=True,
            check=True,
        )
    result = subprocess.run(
        [
            "swaks",
            "--server",
            f"127.0.0.1:{smtp_port}",
            "--tls",
            "--tls-verify",
            "--tls-ca-path",
            str(lab.ca_file),
            "--auth",
            "PLAIN",
            "--auth-user",
            USER.login,
            "--auth-password",
            USER.password,
            "--from",
            USER.login,
            "--to",
            "alice@lab.test",
            "--quit-after",
            "RCPT",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def median_seconds(runs: int, action: Callable[[Lab, int, int], None], *args: Any) -> float:
    action(*args)  # warm-up: caches, page cache, Postfix's first smtpd
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action(*args)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--delay-ms", type=float, default=40.0)
    args = parser.parse_args()
    lab = Lab.acquire()
    rows = []
    try:
        for label, delay in (
            ("loopback", 0.0),
            (f"+{args.delay_ms:g} ms per round trip", args.delay_ms / 1000),
        ):
            proxies = None
            dns_port, smtp_port = lab.dns_port, lab.submission_port
            if delay:
                proxies = DelayProxies(
                    (lab.host, lab.dns_port), (lab.host, lab.submission_port), delay
                ).start()
                dns_port, smtp_port = proxies.dns_port, proxies.smtp_port
            try:
                ours = median_seconds(args.runs, relaywizard, lab, dns_port, smtp_port)
                theirs = median_seconds(args.runs, sequential, lab, dns_port, smtp_port)
            finally:
                if proxies:
                    proxies.stop()
            rows.append((label, ours, theirs))
    finally:
        lab.release()
    print(
        f"bench/diagnostics on {platform.node()} ({platform.machine()}, {platform.python_version()}), "
        f"median of {args.runs} runs, {time.strftime('%Y-%m-%d')}"
    )
    print(f"{'network':<28}{'relaywizard check':>20}{'dig x7 + swaks':>18}{'ratio':>8}")
    for label, ours, theirs in rows:
        print(f"{label:<28}{ours * 1000:>17.0f} ms{theirs * 1000:>15.0f} ms{ours / theirs:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
