"""Postfix + Dovecot on 127.0.0.1 as the Microsoft 365 stand-in.

Everything runs from folders of the lab's own (``postfix -c DIR``, ``dovecot -c FILE``): the machine's
own /etc/postfix and /etc/dovecot are never read or changed. Listeners (see ``ports``):

=============  ==============================================================================
submission     smtp.office365.com:587: STARTTLS required, AUTH (PLAIN, LOGIN, XOAUTH2) only after
               TLS, 530 5.7.57 for unauthenticated MAIL FROM, the sender bound to the login
               (550 5.7.60 otherwise), literal Microsoft 365 replies for chosen addresses
mx             the MX endpoint (Direct Send): STARTTLS offered, no AUTH, only lab.test accepted
               (550 5.7.54 for other domains)
connector      connector relay: only 127.0.0.2 may send (550 5.7.64 for anyone else), to lab.test
               and external.test
plain          no STARTTLS at all; otherwise like mx
=============  ==============================================================================

Mail for lab.test and external.test is delivered into Maildirs under ``<root>/mail``; nothing is ever
delivered anywhere else (every other transport is ``error:``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.lab import ports
from tests.lab.process import pid_alive, read_pid, run_as_root, stop_pid, wait_for_port
from tests.lab.tls import LabCertificates

DOMAIN = "lab.test"
EXTERNAL_DOMAIN = "external.test"


@dataclass(frozen=True)
class Account:
    """A mailbox that can authenticate, and the senders it may use (its own address first)."""

    login: str
    password: str
    send_as: tuple[str, ...]


#: Mailboxes that log in (PLAIN/LOGIN with the password, XOAUTH2 with a token from the lab).
ACCOUNTS = (
    Account("scanner@lab.test", "scanner-pass", ("scanner@lab.test", "scans@lab.test")),
    Account("app@lab.test", "app-pass", ("app@lab.test", "noreply@lab.test")),
    Account("oauth@lab.test", "oauth-pass-unused", ("oauth@lab.test",)),
)
#: Mailboxes that only receive.
RECEIVERS = (
    "alice@lab.test",
    "bob@lab.test",
    "info@external.test",
    "partner@external.test",
)

#: Senders that get a literal Microsoft 365 reply at MAIL FROM, on every port.
SENDER_REPLIES = {
    "sendas-denied@lab.test": "550 5.7.60 SMTP; Client does not have permissions to send as this sender",
    "smtpauth-disabled@lab.test": "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is "
    "disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.",
    "basic-retired@lab.test": "550 5.7.30 Basic authentication is not supported for Client Submission.",
    "directsend-blocked@lab.test": "550 5.7.68 TenantInboundAttribution; Direct Send not allowed for "
    "this organization from unauthorized sources",
    "restricted@lab.test": "550 5.1.8 Access denied, bad outbound sender",
    "throttled@lab.test": "451 4.7.500 Server busy. Please try again later.",
}
#: Recipients that get a literal Microsoft 365 reply at RCPT TO, on every port.
RECIPIENT_REPLIES = {
    "blocked@lab.test": "550 5.4.1 Access denied. AS(201806281)",
    "quota@lab.test": "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; "
    "Failed to process message due to a permanent exception",
    "busy@lab.test": "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
}

_UNAUTHENTICATED = "530 5.7.57 Client was not authenticated to send anonymous mail during MAIL FROM"
_SEND_AS_DENIED = "550 5.7.60 SMTP; Client does not have permissions to send as this sender"
_NOT_ACCEPTED = "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain"
_CONNECTOR_DENIED = "550 5.7.64 TenantAttribution; Relay Access Denied"


def _mailboxes() -> list[str]:
    return [a.login for a in ACCOUNTS] + [s for a in ACCOUNTS for s in a.send_as[1:]] + list(RECEIVERS)


class MailLab:
    """The Postfix and Dovecot instances of one lab folder."""

    def __init__(self, root: Path, certs: LabCertificates) -> None:
        self.root = root
        self.certs = certs
        self.postfix_dir = root / "postfix"
        self.conf_dir = self.postfix_dir / "conf"
        self.queue_dir = self.postfix_dir / "queue"
        self.dovecot_dir = root / "dovecot"
        self.mail_dir = root / "mail"
        self.tokens_file = root / "oauth" / "tokens.json"
        self.mail_uid = os.getuid() or 65534
        self.mail_gid = os.getgid() or 65534

    # -- configuration ---------------------------------------------------------------------------

    def write_config(self) -> None:
        for folder in (
            self.conf_dir,
            self.queue_dir,
            self.postfix_dir / "data",
            self.postfix_dir / "log",
            self.dovecot_dir / "run",
            self.dovecot_dir / "state",
            self.tokens_file.parent,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        os.chown(self.mail_dir, self.mail_uid, self.mail_gid)
        shutil.chown(self.postfix_dir / "data", "postfix", "postfix")
        if not self.tokens_file.exists():
            self.tokens_file.write_text("{}")
        self._write_maps()
        (self.postfix_dir / "main.cf").write_text(self._main_cf())
        (self.postfix_dir / "master.cf").write_text(self._master_cf())
        # No chroot: there is no syslog, and the lab's paths live outside any chroot.
        subprocess.run(["postconf", "-c", str(self.postfix_dir), "-F", "*/*/chroot = n"], check=True)
        (self.dovecot_dir / "dovecot.conf").write_text(self._dovecot_conf())
        (self.dovecot_dir / "oauth2.conf.ext").write_text(
            "introspection_mode = post\n"
            f"introspection_url = http://{ports.HOST}:{ports.INTROSPECTION}/introspect\n"
            "force_introspection = yes\n"
            "username_attribute = username\n"
            "active_attribute = active\n"
            "active_value = true\n"
            "tokeninfo_url = \n"
        )
        (self.dovecot_dir / "passwd").write_text(
            "".join(f"{a.login}:{{PLAIN}}{a.password}::::::\n" for a in ACCOUNTS)
        )

    def _write_maps(self) -> None:
        c = self.conf_dir
        (c / "vmailbox").write_text(
            "".join(f"{m} {m.split('@')[1]}/{m.split('@')[0]}/\n" for m in _mailboxes())
        )
        (c / "sender_replies").write_text("".join(f"{k} {v}\n" for k, v in SENDER_REPLIES.items()))
        (c / "recipient_replies").write_text("".join(f"{k} {v}\n" for k, v in RECIPIENT_REPLIES.items()))
        (c / "sasl_classes").write_text("".join(f"{a.login} {_class_name(a)}\n" for a in ACCOUNTS))
        for account in ACCOUNTS:
            (c / f"senders_{_class_name(account)}").write_text("".join(f"{s} OK\n" for s in account.send_as))
        (c / "mx_accepted").write_text(f"!/@{DOMAIN.replace('.', '[.]')}$/ {_NOT_ACCEPTED}\n")
        (c / "connector_clients").write_text(
            f"{ports.CONNECTOR_CLIENT}/32 OK\n0.0.0.0/0 {_CONNECTOR_DENIED}\n"
        )

    def _main_cf(self) -> str:
        c = self.conf_dir
        classes = [_class_name(a) for a in ACCOUNTS]
        lines = [
            "compatibility_level = 3.6",
            f"queue_directory = {self.queue_dir}",
            f"data_directory = {self.postfix_dir / 'data'}",
            "multi_instance_directories =",
            "multi_instance_enable = no",
            f"maillog_file = {self.postfix_dir / 'log' / 'postfix.log'}",
            f"maillog_file_prefixes = /var, /dev/stdout, {self.root}",
            "myhostname = smtp.lab.test",
            f"mydomain = {DOMAIN}",
            f"myorigin = {DOMAIN}",
            "mydestination =",
            f"inet_interfaces = {ports.HOST}",
            "inet_protocols = ipv4",
            "mynetworks = 127.0.0.1/32",
            "smtpd_banner = $myhostname Microsoft ESMTP MAIL Service ready (relaywizard lab)",
            "biff = no",
            "alias_maps =",
            "alias_database =",
            "append_dot_mydomain = no",
            # Nothing ever leaves the lab.
            "default_transport = error:the relaywizard lab delivers to its own domains only",
            "relay_transport = error:the relaywizard lab delivers to its own domains only",
            "local_transport = error:the relaywizard lab has no local delivery",
            "smtp_dns_support_level = disabled",
            f"virtual_mailbox_domains = {DOMAIN}, {EXTERNAL_DOMAIN}",
            f"virtual_mailbox_base = {self.mail_dir}",
            f"virtual_mailbox_maps = texthash:{c / 'vmailbox'}",
            f"virtual_uid_maps = static:{self.mail_uid}",
            f"virtual_gid_maps = static:{self.mail_gid}",
            "message_size_limit = 36700160",
            "smtpd_delay_reject = no",
            f"smtpd_tls_chain_files = {self.certs.key}, {self.certs.cert}",
            "smtpd_tls_security_level = may",
            "smtpd_tls_protocols = >=TLSv1.2",
            "smtpd_tls_mandatory_protocols = >=TLSv1.2",
            "smtpd_tls_received_header = yes",
            "smtpd_sasl_type = dovecot",
            "smtpd_sasl_path = private/auth",
            "smtpd_sasl_auth_enable = no",
            "broken_sasl_auth_clients = no",
            "smtpd_client_restrictions =",
            "smtpd_helo_restrictions =",
            f"smtpd_restriction_classes = {', '.join(classes)}",
            *(
                f"{_class_name(a)} = check_sender_access texthash:{c / ('senders_' + _class_name(a))},"
                f" check_sender_access static:{{{_SEND_AS_DENIED}}}"
                for a in ACCOUNTS
            ),
            # submission: literal replies first, then the login binding, then anonymous refused
            f"lab_submission_sender = check_sender_access texthash:{c / 'sender_replies'},"
            f" check_sasl_access texthash:{c / 'sasl_classes'},"
            f" check_client_access static:{{{_UNAUTHENTICATED}}}",
            "lab_submission_relay = permit_sasl_authenticated, reject",
            f"lab_recipient = check_recipient_access texthash:{c / 'recipient_replies'},"
            " reject_unlisted_recipient, reject_unauth_destination, permit",
            f"lab_mx_sender = check_sender_access texthash:{c / 'sender_replies'}, permit",
            f"lab_mx_relay = check_recipient_access regexp:{c / 'mx_accepted'}, reject_unauth_destination",
            f"lab_connector_relay = check_client_access cidr:{c / 'connector_clients'}",
            "smtpd_sender_restrictions = $lab_mx_sender",
            "smtpd_relay_restrictions = $lab_mx_relay",
            "smtpd_recipient_restrictions = $lab_recipient",
        ]
        return "\n".join(lines) + "\n"

    def _master_cf(self) -> str:
        dist = Path("/usr/share/postfix/master.cf.dist").read_text().splitlines()
        kept = [line for line in dist if not line.startswith("smtp      inet")]
        services = [
            _service(
                ports.SUBMISSION,
                "submission",
                [
                    "smtpd_tls_security_level=encrypt",
                    "smtpd_sasl_auth_enable=yes",
                    "smtpd_tls_auth_only=yes",
                    "smtpd_sender_restrictions=$lab_submission_sender",
                    "smtpd_relay_restrictions=$lab_submission_relay",
                ],
            ),
            _service(ports.MX, "mx", []),
            _service(ports.CONNECTOR, "connector", ["smtpd_relay_restrictions=$lab_connector_relay"]),
            _service(ports.PLAIN, "plain", ["smtpd_tls_security_level=none"]),
        ]
        return "\n".join(kept) + "\n" + "".join(services)

    def _dovecot_conf(self) -> str:
        d = self.dovecot_dir
        return f"""\
instance_name = relaywizard-lab
base_dir = {d / "run"}
state_dir = {d / "state"}
log_path = {d / "dovecot.log"}
protocols =
listen = {ports.HOST}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2 oauthbearer
auth_failure_delay = 0
auth_cache_size = 0
auth_verbose = yes
auth_username_format = %Lu
passdb {{
  driver = passwd-file
  args = username_format=%u {d / "passwd"}
  mechanisms = plain login
}}
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {d / "oauth2.conf.ext"}
}}
userdb {{
  driver = static
  args = uid={self.mail_uid} gid={self.mail_gid} home=/nonexistent
}}
service auth {{
  unix_listener {self.queue_dir / "private" / "auth"} {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""

    # -- processes -------------------------------------------------------------------------------

    def postfix_pid(self) -> int | None:
        return read_pid(self.queue_dir / "pid" / "master.pid")

    def dovecot_pid(self) -> int | None:
        return read_pid(self.dovecot_dir / "run" / "master.pid")

    def start(self) -> None:
        (self.queue_dir / "private").mkdir(parents=True, exist_ok=True)
        log = self.root / "start.log"
        run_as_root(["postfix", "-c", str(self.postfix_dir), "set-permissions"], log=log)
        run_as_root(["dovecot", "-c", str(self.dovecot_dir / "dovecot.conf")], log=log)
        run_as_root(["postfix", "-c", str(self.postfix_dir), "start"], log=log)
        for port in (ports.SUBMISSION, ports.MX, ports.CONNECTOR, ports.PLAIN):
            wait_for_port(ports.HOST, port, timeout=20, log=self.postfix_dir / "log" / "postfix.log")

    def running(self) -> bool:
        return pid_alive(self.postfix_pid()) and pid_alive(self.dovecot_pid())

    def stop(self) -> None:
        stop_pid(self.postfix_pid())
        stop_pid(self.dovecot_pid())

    # -- what tests look at ----------------------------------------------------------------------

    def maildir(self, address: str) -> Path:
        local, domain = address.lower().split("@")
        return self.mail_dir / domain / local

    def message_files(self, address: str) -> list[Path]:
        folder = self.maildir(address)
        return sorted(
            p for sub in ("new", "cur") if (folder / sub).is_dir() for p in (folder / sub).iterdir()
        )

    def logs(self) -> Sequence[Path]:
        return (self.postfix_dir / "log" / "postfix.log", self.dovecot_dir / "dovecot.log")


def _class_name(account: Account) -> str:
    return "bind_" + "".join(ch if ch.isalnum() else "_" for ch in account.login)


def _service(port: int, name: str, options: list[str]) -> str:
    lines = [f"{ports.HOST}:{port} inet n - n - - smtpd", f"  -o syslog_name=lab/{name}"]
    lines += [f"  -o {option}" for option in options]
    return "\n".join(lines) + "\n"
