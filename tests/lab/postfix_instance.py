"""A private Postfix instance for one test: its own config folder, queue and port on 127.0.0.1.

It is the admin's Postfix in miniature: the test puts files into ``conf_dir`` as an admin would into
/etc/postfix, ``write_config`` makes a minimal main.cf (what any instance needs, plus ``extra``: the
fragment under test) and a master.cf with one smtpd on ``port``. Like the shared lab (tests/lab/mail.py)
it runs without chroot and is started and stopped by PID through ``postfix -c DIR``, never by name; it
shares nothing with the shared lab's instance.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.lab.process import LabError, free_port, read_pid, run_as_root, stop_pid, tail, wait_for_port

HOST = "127.0.0.1"


class PostfixInstance:
    """One Postfix below ``root``: ``conf/`` (main.cf, master.cf, maps), ``queue/``, ``data/``, ``log/``."""

    def __init__(self, root: Path | None = None) -> None:
        # The daemons run as the postfix user: pytest's tmp_path (mode 0700, root's) would lock them out.
        self.root = root or Path(tempfile.mkdtemp(prefix="relaywizard-postfix-", dir="/var/tmp"))
        self.root.chmod(0o755)
        self.conf_dir = self.root / "conf"
        self.queue_dir = self.root / "queue"
        self.data_dir = self.root / "data"
        self.log_file = self.root / "log" / "postfix.log"
        self.port = free_port(HOST)
        for folder in (self.conf_dir, self.queue_dir / "private", self.data_dir, self.log_file.parent):
            folder.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.data_dir, "postfix", "postfix")

    def write_config(self, extra: str = "") -> None:
        """main.cf = the instance's own lines, then ``extra`` (later lines win); master.cf = one smtpd."""
        base = [
            "compatibility_level = 3.6",
            f"queue_directory = {self.queue_dir}",
            f"data_directory = {self.data_dir}",
            "multi_instance_directories =",
            "multi_instance_enable = no",
            f"maillog_file = {self.log_file}",
            f"maillog_file_prefixes = /var, /dev/stdout, {self.root}",
            "myhostname = relayhost.office.test",
            "mydomain = office.test",
            "myorigin = office.test",
            "mydestination =",
            f"inet_interfaces = {HOST}",
            "inet_protocols = ipv4",
            "alias_maps =",
            "alias_database =",
            "biff = no",
            # No DNS: the relayhost is named by /etc/hosts (localhost) or an address.
            "smtp_dns_support_level = disabled",
            "smtp_host_lookup = native",
            # As a distribution's main.cf has them: an export must replace these, not add to them.
            "relayhost =",
            "mynetworks = 127.0.0.0/8",
            "smtpd_relay_restrictions = permit_mynetworks, defer_unauth_destination",
            "smtp_tls_security_level = may",
            "message_size_limit = 10240000",
        ]
        (self.conf_dir / "main.cf").write_text("\n".join(base) + "\n\n" + extra)
        dist = Path("/usr/share/postfix/master.cf.dist").read_text().splitlines()
        kept = [line for line in dist if not line.startswith("smtp      inet")]
        smtpd = f"{HOST}:{self.port} inet n - n - - smtpd\n  -o syslog_name=export-test\n"
        (self.conf_dir / "master.cf").write_text("\n".join(kept) + "\n" + smtpd)
        subprocess.run(["postconf", "-c", str(self.conf_dir), "-F", "*/*/chroot = n"], check=True)

    def postconf(self, *args: str) -> str:
        """``postconf -c conf ARGS``'s output."""
        return subprocess.run(
            ["postconf", "-c", str(self.conf_dir), *args], capture_output=True, text=True, check=True
        ).stdout

    def postmap(self, table: str) -> None:
        """``postmap hash:conf/<table>``, as the admin's README says."""
        run_as_root(["postmap", f"hash:{self.conf_dir / table}"], log=self.root / "commands.log")

    def check(self) -> subprocess.CompletedProcess[str]:
        """``postfix -c conf check``: exit 0 and no output when the configuration is sound."""
        return subprocess.run(
            ["postfix", "-c", str(self.conf_dir), "check"], capture_output=True, text=True, check=False
        )

    def start(self) -> None:
        log = self.root / "commands.log"
        run_as_root(["postfix", "-c", str(self.conf_dir), "set-permissions"], log=log)
        run_as_root(["postfix", "-c", str(self.conf_dir), "start"], log=log)
        wait_for_port(HOST, self.port, timeout=15, log=self.log_file)

    def pid(self) -> int | None:
        return read_pid(self.queue_dir / "pid" / "master.pid")

    def stop(self) -> None:
        """``postfix stop``, then the master's PID until it is gone; the folder is removed after."""
        subprocess.run(
            ["postfix", "-c", str(self.conf_dir), "stop"], capture_output=True, check=False, timeout=30
        )
        stop_pid(self.pid())
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        return tail(self.log_file, 40)


__all__ = ["LabError", "PostfixInstance"]
