"""A private Postfix relay for bench/relay.py: the job relaywizard does, done by Postfix.

It accepts mail on 127.0.0.1:<port> from 127.0.0.0/8 and relays everything to ``relayhost`` (the lab's
submission port) with STARTTLS (certificate verified against the lab CA) and SASL AUTH, as a Postfix
set up by the book for Microsoft 365 would. Its configuration, queue, data and log live in one folder of
its own (``postfix -c DIR``); the machine's /etc/postfix is never read for settings nor changed.
Postfix's defaults are kept where the job does not need a change: in particular TLS connection reuse is
off (``smtp_tls_connection_reuse = no``), so each delivery opens a new TLS and AUTH session.
See ../shared/lab-notes.md for why each setting is there (chroot, maillog_file, TLS policy, ...).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

from tests.lab.process import read_pid, run_as_root, stop_pid, tail, wait_for_port


class PostfixRelay:
    """``start()`` then ``stop()``; every process it started is gone after ``stop()``."""

    def __init__(
        self,
        root: Path,
        *,
        port: int,
        relayhost: tuple[str, int],
        ca_file: Path,
        tls_name: str,
        login: str,
        password: str,
    ) -> None:
        self.root = root
        self.port = port
        self.relayhost = relayhost
        self.ca_file = ca_file
        self.tls_name = tls_name
        self.login = login
        self.password = password
        self.queue_dir = root / "queue"
        self.data_dir = root / "data"
        self.log_file = root / "log" / "postfix.log"
        self.started = False

    @property
    def nexthop(self) -> str:
        host, port = self.relayhost
        return f"[{host}]:{port}"

    def write_config(self) -> None:
        for folder in (self.queue_dir, self.data_dir, self.log_file.parent):
            folder.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.data_dir, "postfix", "postfix")
        maps = self.root / "maps"
        maps.mkdir(exist_ok=True)
        (maps / "sasl_passwd").write_text(f"{self.nexthop} {self.login}:{self.password}\n")
        (maps / "sasl_passwd").chmod(0o600)
        (maps / "tls_policy").write_text(f"{self.nexthop} secure match={self.tls_name}\n")
        main = [
            "compatibility_level = 3.6",
            f"queue_directory = {self.queue_dir}",
            f"data_directory = {self.data_dir}",
            "multi_instance_directories =",
            "multi_instance_enable = no",
            f"maillog_file = {self.log_file}",
            f"maillog_file_prefixes = /var, /dev/stdout, {self.root}",
            "myhostname = postfix-relay.bench.lab.test",
            "mydomain = bench.lab.test",
            "myorigin = $mydomain",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            "mynetworks = 127.0.0.0/8",
            "mydestination =",
            "relay_domains =",
            "alias_maps =",
            "alias_database =",
            "local_recipient_maps =",
            "local_transport = error:this relay delivers nothing locally",
            "biff = no",
            "append_dot_mydomain = no",
            "smtpd_relay_restrictions = permit_mynetworks, reject",
            "message_size_limit = 36700160",
            # the job: everything to the submission port, TLS verified, AUTH as the mailbox
            f"relayhost = {self.nexthop}",
            "default_transport = smtp",
            "relay_transport = smtp",
            "smtp_dns_support_level = disabled",
            "smtp_sasl_auth_enable = yes",
            f"smtp_sasl_password_maps = texthash:{maps / 'sasl_passwd'}",
            "smtp_sasl_security_options = noanonymous",
            "smtp_sasl_tls_security_options = noanonymous",
            "smtp_tls_security_level = secure",
            f"smtp_tls_CAfile = {self.ca_file}",
            f"smtp_tls_policy_maps = texthash:{maps / 'tls_policy'}",
            "smtp_tls_loglevel = 0",
        ]
        (self.root / "main.cf").write_text("\n".join(main) + "\n")
        dist = Path("/usr/share/postfix/master.cf.dist").read_text().splitlines()
        kept = [line for line in dist if not line.startswith("smtp      inet")]
        listener = f"127.0.0.1:{self.port} inet n - n - - smtpd\n  -o syslog_name=bench-postfix/smtpd\n"
        (self.root / "master.cf").write_text("\n".join(kept) + "\n" + listener)
        # No chroot: there is no syslog here, and the folders live outside any chroot.
        subprocess.run(["postconf", "-c", str(self.root), "-F", "*/*/chroot = n"], check=True)

    def start(self) -> None:
        self.write_config()
        log = self.root / "start.log"
        run_as_root(["postfix", "-c", str(self.root), "set-permissions"], log=log)
        self.started = True
        run_as_root(["postfix", "-c", str(self.root), "start"], log=log)
        wait_for_port("127.0.0.1", self.port, timeout=20, log=self.log_file)

    def master_pid(self) -> int | None:
        return read_pid(self.queue_dir / "pid" / "master.pid")

    def _own_processes(self) -> list[int]:
        """Postfix daemons run in their queue folder: the PIDs whose working folder is ours."""
        queue = self.queue_dir.resolve()
        pids: list[int] = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError):
                if Path(os.readlink(f"/proc/{entry}/cwd")) == queue:
                    pids.append(int(entry))
        return pids

    def stop(self) -> None:
        if not self.started:
            return
        with contextlib.suppress(Exception):
            run_as_root(["postfix", "-c", str(self.root), "stop"], log=self.root / "start.log")
        stop_pid(self.master_pid())
        for pid in self._own_processes():  # children still finishing their work, by PID
            stop_pid(pid, timeout=5)
        self.started = False

    def queue_size(self) -> int:
        """Messages still in Postfix's queue (incoming, active, deferred)."""
        count = 0
        for folder in ("incoming", "active", "deferred", "maildrop"):
            for _, _, files in os.walk(self.queue_dir / folder):
                count += len(files)
        return count

    def log_tail(self, lines: int = 20) -> str:
        return tail(self.log_file, lines)
