"""unbound as an authoritative-only name server for the lab's test zones (tests/lab/zones.py).

It runs from a folder of its own (configuration, zone files, pid file, log, control socket), listens on
one loopback address and port, and never sends a query anywhere: every name outside the lab's zones is
answered REFUSED at once. How that is achieved (each point was checked with unbound 1.17):

* ``local-zone: "." refuse`` (and ``"test." refuse``, replacing unbound's default "test." zone) refuses
  everything not listed. Local zones are looked at *before* auth-zones, so each auth-zone also gets a
  ``transparent`` local-zone of the same name, which lets the query through to the auth-zone.
* Auth-zones are ``for-downstream: yes`` (answer clients), ``for-upstream: no`` (the iterator never uses
  them, so a CNAME into outlook.com is returned as it is and never chased) and ``fallback-enabled: no``
  (if a zone has no data, the answer is SERVFAIL, never a lookup on the internet).
* Belt and braces: ``module-config: "iterator"`` (no DNSSEC validator, no trust anchor fetch) and
  ``do-not-query-address`` for all of IPv4 and IPv6, so even a bug above could not send a query out.
* ``so-reuseport: no``: otherwise a second unbound binds the same port and the two share the queries.
* The SERVFAIL name is a secondary zone whose primary (127.0.0.1 port 1) never answers: unbound has no
  data for it and answers SERVFAIL immediately. Its SOA probes go to loopback only.

``unbound`` returns 0 once it has daemonized, even when the daemon then dies (a zone it cannot load, a
port in use), so :meth:`DnsLab.start` runs ``unbound-checkconf`` first and then waits until the server
answers, reporting the end of its log otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from tests.lab import ports, zones
from tests.lab.process import LabError, pid_alive, read_pid, stop_pid, tail

#: Where a name server whose primary never answers gets its (never arriving) zone from.
_DEAD_PRIMARY = "127.0.0.1@1"
_SBIN = "/usr/local/sbin:/usr/sbin:/sbin"


def _binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=_SBIN)
    if not found:
        raise LabError(f"{name} is not installed (Debian: apt-get install unbound)")
    return found


def _quoted(path: Path) -> str:
    text = str(path)
    if '"' in text or "\n" in text:
        raise ValueError(f"unbound cannot quote this path: {text!r}")
    return f'"{text}"'


class DnsLab:
    """One unbound process serving :data:`tests.lab.zones.ZONES` on ``host:port`` (UDP and TCP)."""

    def __init__(self, root: Path, host: str = ports.HOST, port: int = ports.DNS) -> None:
        self.root = Path(root).absolute()
        self.host = host
        self.port = port
        self.conf = self.root / "unbound.conf"
        self.pid_file = self.root / "unbound.pid"
        self.log_file = self.root / "unbound.log"
        self.control_socket = self.root / "unbound.ctl"
        self.zone_dir = self.root / "zones"

    # -- configuration -----------------------------------------------------------------------------

    def write_config(self) -> None:
        """Write unbound.conf and one zone file per auth-zone under :attr:`root`."""
        self.zone_dir.mkdir(parents=True, exist_ok=True)
        auth_zones: list[str] = []
        for name, text in zones.ZONES.items():
            zone_file = self.zone_dir / f"{name}.zone"
            zone_file.write_text(text)
            auth_zones.append(
                "auth-zone:\n"
                f'    name: "{name}."\n'
                f"    zonefile: {_quoted(zone_file)}\n"
                "    for-downstream: yes\n"
                "    for-upstream: no\n"
                "    fallback-enabled: no\n"
            )
        for name in zones.UNAVAILABLE_ZONES:
            auth_zones.append(
                "auth-zone:\n"
                f'    name: "{name}."\n'
                f"    primary: {_DEAD_PRIMARY}\n"
                "    for-downstream: yes\n"
                "    for-upstream: no\n"
                "    fallback-enabled: no\n"
            )
        local_zones = ['    local-zone: "." refuse', '    local-zone: "test." refuse']
        local_zones += [f'    local-zone: "{name}." transparent' for name in zones.ZONES]
        local_zones += [f'    local-zone: "{name}." transparent' for name in zones.UNAVAILABLE_ZONES]
        local_zones += [f'    local-zone: "{name}." {kind}' for name, kind in zones.LOCAL_ZONES.items()]
        server = f"""\
# Written by tests/lab/unbound.py: authoritative for the lab's test zones only, never recursing.
server:
    directory: {_quoted(self.root)}
    interface: {self.host}@{self.port}
    port: {self.port}
    do-ip4: yes
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    so-reuseport: no
    num-threads: 1
    username: ""
    chroot: ""
    do-daemonize: yes
    pidfile: {_quoted(self.pid_file)}
    logfile: {_quoted(self.log_file)}
    use-syslog: no
    log-time-ascii: yes
    verbosity: 1
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    do-not-query-address: 0.0.0.0/0
    do-not-query-address: ::/0
{chr(10).join(local_zones)}

remote-control:
    control-enable: yes
    control-interface: {_quoted(self.control_socket)}
    control-use-cert: no

"""
        self.conf.write_text(server + "\n".join(auth_zones))

    # -- life cycle --------------------------------------------------------------------------------

    def start(self, timeout: float = 10) -> None:
        """Check the configuration, start unbound daemonized and wait until it answers."""
        if self.running():
            return
        self.stop()  # a stale or unresponsive instance of ours
        self.pid_file.unlink(missing_ok=True)
        if not self.conf.exists():
            self.write_config()
        check = subprocess.run(
            [_binary("unbound-checkconf"), str(self.conf)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if check.returncode != 0:
            output = (check.stdout + check.stderr).strip()
            raise LabError(f"unbound-checkconf rejected {self.conf}:\n{output}")
        with self.log_file.open("ab") as log:
            log.write(f"$ unbound -c {self.conf}\n".encode())
            log.flush()
            # Output to the log file, not a pipe: a pipe kept open by the daemon would never end.
            result = subprocess.run(
                [_binary("unbound"), "-c", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                timeout=30,
                check=False,
            )
        if result.returncode != 0:
            raise LabError(f"unbound failed to start ({result.returncode}):\n{self.log_tail()}")
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 10) -> None:
        """Return once unbound answers on host:port; raise LabError (with its log) if it died or hangs."""
        deadline = time.monotonic() + timeout
        while not self.running():
            pid = read_pid(self.pid_file)
            if pid is not None and not pid_alive(pid):
                raise LabError(f"unbound (pid {pid}) exited during start-up:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise LabError(
                    f"unbound does not answer on {self.host}:{self.port} after {timeout:.0f} s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 10) -> None:
        """Stop our unbound by the PID in the pid file and wait until the process is gone."""
        pid = self.pid()
        if pid is not None:
            stop_pid(pid, timeout)
            # A killed daemon lingers as a zombie until init reaps it; give that a moment.
            deadline = time.monotonic() + 3
            while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)

    def pid(self) -> int | None:
        """The PID of our running unbound (from the pid file), or None when it is not running."""
        pid = read_pid(self.pid_file)
        if pid is None or not pid_alive(pid):
            return None
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        # Guard against a recycled PID: only the unbound started with our configuration counts.
        if not argv or Path(os.fsdecode(argv[0])).name != "unbound" or os.fsencode(self.conf) not in argv:
            return None
        return pid

    def running(self) -> bool:
        """Our unbound is alive and answers a query for the lab's own zone."""
        return self.pid() is not None and self._answers()

    def _answers(self) -> bool:
        query = dns.message.make_query(f"{zones.LAB}.", dns.rdatatype.SOA)
        try:
            reply = dns.query.udp(query, self.host, port=self.port, timeout=1.0)
        except (dns.exception.DNSException, OSError):
            return False
        return reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)

    # -- inspection --------------------------------------------------------------------------------

    def log_tail(self, lines: int = 25) -> str:
        return tail(self.log_file, lines)

    def stats(self) -> dict[str, str]:
        """unbound's counters (``unbound-control stats_noreset``), e.g. ``total.num.cachemiss``."""
        result = subprocess.run(
            [_binary("unbound-control"), "-c", str(self.conf), "stats_noreset"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if result.returncode != 0:
            raise LabError(f"unbound-control stats failed:\n{(result.stdout + result.stderr).strip()}")
        pairs = (line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
        return {key: value for key, value in pairs}
