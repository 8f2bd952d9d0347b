"""The relay's settings as a Postfix relayhost configuration, for admins who outgrow the workstation relay.

``PostfixTarget`` is what Postfix needs to know (where to relay, how to sign in, who may send, which
sender to use); ``generate`` turns it into the files of an export, ``write_export`` puts them in a folder.
No Qt, no network; the only secret ever written is the password handed to ``generate`` (the CLI does so
only with ``--include-secret``), and only into ``sasl_passwd``, which is always mode 0600.

Choices, also explained to the admin in the README:

- TLS level ``secure``, not ``encrypt``: ``encrypt`` encrypts without checking who answers, so a
  machine in the middle could collect the mailbox password. ``secure`` verifies the certificate chain
  against the CA file and the name against the relayhost (``smtp_tls_secure_cert_match = nexthop``).
- Sender rewriting with a regexp ``sender_canonical_maps`` entry mapping every sender to the mailbox,
  for the envelope and the From header (``sender_canonical_classes``); Postfix rewrites headers of
  mail from other machines only for ``local_header_rewrite_clients``, so ``mynetworks`` is put there.
  Unlike the workstation relay, Postfix cannot keep the device's address in a Reply-To.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from relaywizard.core import m365
from relaywizard.core.errors import ConfigError, UsageError
from relaywizard.relay.config import Network, RelayConfig, UpstreamAuth
from relaywizard.relay.model import TlsMode

Method = Literal["smtp-auth", "direct-send", "connector"]

FRAGMENT = "main.cf.fragment"
SASL_PASSWD = "sasl_passwd"
SENDER_CANONICAL = "sender_canonical"
CA_FILE = "relaywizard-ca.pem"
README = "README.md"
#: Where a Debian or Ubuntu system keeps its CA bundle (RHEL: /etc/pki/tls/certs/ca-bundle.crt).
SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"
DEFAULT_POSTFIX_DIR = "/etc/postfix"
PASSWORD_PLACEHOLDER = "PASSWORD"
_LOOPBACK = ("127.0.0.0/8", "[::1]/128")


@dataclass(frozen=True)
class PostfixTarget:
    """The settings an export is made of; nothing secret (the keyring profile is only named)."""

    method: Method
    host: str
    port: int
    tls: TlsMode
    user: str | None
    auth: UpstreamAuth
    sender: str | None
    allow: tuple[Network, ...]
    max_message_size: int
    rate: int
    connections: int
    ca_file: Path | None = None

    @classmethod
    def from_config(cls, config: RelayConfig, method: Method) -> PostfixTarget:
        """The export of the relay's own resolved configuration."""
        up = config.upstream
        return cls(
            method=method,
            host=up.host,
            port=up.port,
            tls=up.tls,
            user=up.user,
            auth=config.auth,
            sender=config.sender,
            allow=config.allow,
            max_message_size=config.max_message_size,
            rate=config.rate,
            connections=config.connections,
            ca_file=Path(up.ca_file).expanduser() if up.ca_file else None,
        )

    @property
    def relayhost(self) -> str:
        """``[host]:port``: brackets so Postfix connects to the host itself instead of its MX records."""
        host = f"ipv6:{self.host}" if ":" in self.host else self.host
        return f"[{host}]:{self.port}"

    @property
    def signs_in(self) -> bool:
        return self.auth != "none" and self.user is not None

    @property
    def oauth(self) -> bool:
        return self.auth in ("oauth-app", "oauth-delegated")


@dataclass(frozen=True)
class ExportFile:
    """One file of an export: its name in the folder, its text and its permission bits."""

    name: str
    text: str = field(repr=False)  # sasl_passwd's may hold the password
    mode: int = 0o644


def method_for(profile_method: str | None, config: RelayConfig) -> Method:
    """The sending method: the settings profile's, else implied by whether the relay signs in."""
    if profile_method in ("smtp-auth", "direct-send", "connector"):
        return profile_method  # type: ignore[return-value]
    if config.auth != "none":
        return "smtp-auth"
    return "direct-send" if m365.is_microsoft_mx(config.upstream.host) else "connector"


def generate(
    target: PostfixTarget, *, postfix_dir: str = DEFAULT_POSTFIX_DIR, password: str | None = None
) -> tuple[ExportFile, ...]:
    """The files of an export; ``password`` fills ``sasl_passwd`` instead of the placeholder."""
    if password is not None:
        if not target.signs_in or target.oauth:
            raise UsageError(
                "--include-secret has nothing to include: only password sign-in puts a secret in sasl_passwd."
            )
        if not password or password != password.strip() or any(ch in password for ch in "\r\n"):
            raise ConfigError(
                "The stored password starts or ends with a space or holds a line break, which sasl_passwd "
                "cannot hold: write it into the file by hand.",
            )
    files = [ExportFile(FRAGMENT, main_cf_fragment(target, postfix_dir))]
    if target.signs_in:
        files.append(ExportFile(SASL_PASSWD, sasl_passwd(target, password, postfix_dir), 0o600))
    if target.sender:
        files.append(ExportFile(SENDER_CANONICAL, sender_canonical(target.sender)))
    if target.ca_file is not None:
        try:
            files.append(ExportFile(CA_FILE, target.ca_file.read_text()))
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "it is not a PEM text file"
            raise ConfigError(f"--ca-file: cannot read {target.ca_file}: {reason}.") from None
    files.append(ExportFile(README, readme(target, postfix_dir, [f.name for f in files])))
    return tuple(files)


def _network(net: Network) -> str:
    return f"[{net.network_address}]/{net.prefixlen}" if net.version == 6 else str(net)


def mynetworks(allow: Sequence[Network]) -> str:
    """Postfix's ``mynetworks``: loopback, then the relay's allow-list (IPv6 in brackets)."""
    return ", ".join(dict.fromkeys([*_LOOPBACK, *(_network(n) for n in allow)]))


def _tls_lines(target: PostfixTarget) -> list[str]:
    if target.tls == "none":
        return [
            "# The relay was set up without TLS upstream (--tls none): mail travels unencrypted.",
            "smtp_tls_security_level = none",
        ]
    lines = [
        "# secure = TLS required, certificate chain and name verified (encrypt would not verify who answers)",
        "smtp_tls_security_level = secure",
        "smtp_tls_secure_cert_match = nexthop",
        "smtp_tls_mandatory_protocols = >=TLSv1.2",
        "smtp_tls_protocols = >=TLSv1.2",
    ]
    if target.tls == "implicit":
        lines.append("smtp_tls_wrappermode = yes")
    return lines


def main_cf_fragment(target: PostfixTarget, postfix_dir: str = DEFAULT_POSTFIX_DIR) -> str:
    """The lines to add to ``main.cf`` (later lines of main.cf win, so append them at its end)."""
    d = postfix_dir.rstrip("/") or "/"
    lines = [
        "# --- relaywizard export: relay all mail through Microsoft 365 ---",
        f"# Sending method: {target.method}. See README.md next to this file: apply each line with",
        "# postconf -e, which replaces the same setting where main.cf already has it.",
        f"relayhost = {target.relayhost}",
        "",
        "# Who may send through this server: the devices' networks (and this machine).",
        f"mynetworks = {mynetworks(target.allow)}",
        "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination",
        "# Postfix must listen where the devices can reach it (Debian's satellite default is loopback-only):",
        "# inet_interfaces = all",
        f"message_size_limit = {target.max_message_size}",
        "",
        "# TLS to the upstream",
        *_tls_lines(target),
        f"smtp_tls_CAfile = {d}/{CA_FILE}" if target.ca_file else f"smtp_tls_CAfile = {SYSTEM_CA_FILE}",
    ]
    if target.ca_file:
        lines.append("# the system's CAs as well (not found from inside a chroot; the CAfile above is)")
        lines.append("smtp_tls_CApath = /etc/ssl/certs")
    else:
        lines.append("# RHEL, Fedora: smtp_tls_CAfile = /etc/pki/tls/certs/ca-bundle.crt")
    lines.append("smtp_tls_loglevel = 1")
    lines.append("")
    if target.signs_in:
        lines += [
            f"# Sign in as {target.user}",
            "smtp_sasl_auth_enable = yes",
            f"smtp_sasl_password_maps = hash:{d}/{SASL_PASSWD}",
            "smtp_sasl_security_options = noanonymous",
            "smtp_sasl_tls_security_options = noanonymous",
        ]
        if target.oauth:
            lines += [
                "# OAuth: needs a SASL XOAUTH2 plugin for Cyrus SASL (e.g. sasl-xoauth2), see README.md",
                "smtp_sasl_mechanism_filter = xoauth2",
            ]
        else:
            lines.append("smtp_sasl_mechanism_filter = plain, login")
    else:
        lines += [
            "# No sign-in: Microsoft 365 recognises this server by its IP address or certificate.",
            "smtp_sasl_auth_enable = no",
        ]
    if target.sender:
        lines += [
            "",
            f"# Every sender becomes {target.sender} (Microsoft 365 refuses others with 5.7.60),",
            "# in the envelope and in the From header; headers of mail from the devices are rewritten",
            "# only for local_header_rewrite_clients.",
            f"sender_canonical_maps = regexp:{d}/{SENDER_CANONICAL}",
            "sender_canonical_classes = envelope_sender, header_sender",
            "local_header_rewrite_clients = permit_mynetworks, permit_inet_interfaces",
        ]
    lines += ["", "# Microsoft's limits per mailbox: connections at once, and messages a minute."]
    delay = rate_delay(target.rate)
    if delay:
        lines += [
            f"# {target.rate} a minute: one message every {delay} s (a rate delay also means one at a time)",
            f"smtp_destination_rate_delay = {delay}s",
        ]
    lines.append(f"smtp_destination_concurrency_limit = {target.connections}")
    lines.append("# --- end of relaywizard export ---")
    return "\n".join(lines) + "\n"


def rate_delay(rate: int) -> int:
    """Whole seconds between messages for at most ``rate`` a minute; 0 for no pacing (Postfix counts
    rate delays in whole seconds, so more than 60 a minute is left to the concurrency limit)."""
    return math.ceil(60 / rate) if 0 < rate <= 60 else 0


def sasl_passwd(
    target: PostfixTarget, password: str | None = None, postfix_dir: str = DEFAULT_POSTFIX_DIR
) -> str:
    """``[host]:port user:secret``; the placeholder unless ``password`` is given."""
    if target.oauth:
        secret = f"/etc/tokens/{target.user}"
        note = (
            "# OAuth with sasl-xoauth2: the password field names the plugin's token file (see README.md).\n"
        )
    else:
        secret = password if password is not None else PASSWORD_PLACEHOLDER
        note = (
            "" if password is not None else f"# Replace {PASSWORD_PLACEHOLDER} with the mailbox's password.\n"
        )
    return (
        "# relaywizard export: the upstream account. Keep this file mode 0600, owned by root.\n"
        f"{note}# After each change: postmap hash:{postfix_dir.rstrip('/')}/{SASL_PASSWD}\n"
        f"{target.relayhost} {target.user}:{secret}\n"
    )


def sender_canonical(sender: str) -> str:
    """A regexp table mapping every sender address to ``sender``."""
    return (
        "# relaywizard export: every sender address becomes the mailbox (a regexp table: no postmap).\n"
        f"/./ {sender}\n"
    )


def readme(target: PostfixTarget, postfix_dir: str, names: Sequence[str]) -> str:
    """The admin's guide to the export."""
    d = postfix_dir.rstrip("/") or "/"
    what = {
        FRAGMENT: "settings to append to main.cf (relayhost, TLS, SASL, sender rewriting, mynetworks).",
        SASL_PASSWD: "the upstream account for Postfix's SASL client; mode 0600, never world-readable.",
        SENDER_CANONICAL: "a regexp table that maps every sender to the mailbox.",
        CA_FILE: "the CA certificates the relay was told to trust (--ca-file).",
        README: "this file.",
    }
    lines = [
        "# Postfix relayhost configuration from relaywizard",
        "",
        f"Postfix relays all mail to **{target.relayhost}** ({target.method}), the same upstream as the "
        "relaywizard relay, so devices can point at this server instead of a workstation.",
        "",
        "## Files",
        "",
        *(f"- `{name}`: {what[name]}" for name in names if name in what),
        f"- `{README}`: {what[README]}",
        "",
        "## Install",
        "",
        "```sh",
        "apt install postfix libsasl2-modules    # Debian/Ubuntu; RHEL: dnf install postfix cyrus-sasl-plain",
        *(f"install -m {oct(_mode(n))[2:]} -o root {n} {d}/" for n in names if n not in (FRAGMENT, README)),
        "# set each line of the fragment in main.cf, replacing what main.cf says for the same settings:",
        apply_command(postfix_dir),
    ]
    if target.signs_in:
        lines.append(
            f"postmap hash:{d}/{SASL_PASSWD}          # builds sasl_passwd.db; again after each change"
        )
    lines += [
        "postfix check && postfix reload",
        "```",
        "",
    ]
    if target.signs_in and not target.oauth:
        lines += [
            f"`{SASL_PASSWD}` holds `{PASSWORD_PLACEHOLDER}` unless the export was made with "
            "`--include-secret`: replace it with the mailbox's password. Keep the file and its `.db` at "
            "mode 0600.",
            "",
        ]
    lines += [
        "Postfix must listen where the devices can reach it: set `inet_interfaces = all` (or the LAN "
        "address) if it listens on loopback only, and let TCP port 25 in from the devices' networks "
        f"(`mynetworks`: {mynetworks(target.allow)}).",
        "",
        "## Verify",
        "",
        "```sh",
        "postfix check                        # silent when the configuration is sound",
        "postconf relayhost mynetworks smtp_tls_security_level",
        "swaks --server localhost --from device@example.invalid --to someone@your-domain \\",
        "      --header 'Subject: relay test'",
        "tail -f /var/log/mail.log           # status=sent (250 ...) from the upstream",
        "```",
        "",
        "## Choices made",
        "",
        "- TLS level `secure`: TLS is required and the upstream's certificate chain and name are "
        "verified (`encrypt` would encrypt without checking who answers). Only TLS 1.2 and later.",
        f"- Message size limit {target.max_message_size} bytes (Exchange Online's default is 35 MB).",
    ]
    if target.sender:
        lines += [
            f"- Every sender becomes `{target.sender}`, in the envelope and the From header, because "
            "Microsoft 365 refuses any other (550 5.7.60). Postfix cannot, as the relaywizard relay does, "
            "keep the device's own address in a Reply-To, and the display name is left as the device wrote "
            "it. Bounces Postfix itself sends (empty sender) are not rewritten.",
        ]
    if rate_delay(target.rate):
        lines.append(
            f"- Paced to {target.rate} messages a minute (`smtp_destination_rate_delay`), Microsoft's "
            "per-mailbox SMTP limit.",
        )
    if target.oauth:
        lines += [
            "",
            "## OAuth",
            "",
            "This profile signs in with OAuth 2.0. Postfix's SASL client has no XOAUTH2 of its own: install "
            "a Cyrus SASL XOAUTH2 plugin such as **sasl-xoauth2** (https://github.com/tarickb/sasl-xoauth2), "
            "whose token file the password field of `sasl_passwd` names, and register the app there. "
            "Without a plugin, use a Microsoft 365 inbound connector instead (by the server's static IP or "
            "certificate) and export a connector profile.",
        ]
    if target.method == "direct-send":
        lines += [
            "",
            "## Direct Send",
            "",
            "No sign-in: mail goes to the tenant's MX host on port 25 and only reaches the tenant's own "
            "mailboxes. The server's public IP must be in the domain's SPF record, and the tenant must not "
            "reject Direct Send.",
        ]
    elif target.method == "connector":
        lines += [
            "",
            "## Connector",
            "",
            "No sign-in: Microsoft 365 recognises this server by an inbound connector, by its static public "
            "IP or by a TLS client certificate (then set `smtp_tls_chain_files` to its certificate and key).",
        ]
    return "\n".join(lines) + "\n"


def apply_command(postfix_dir: str = DEFAULT_POSTFIX_DIR) -> str:
    """The shell line that sets every line of the fragment in ``postfix_dir``'s main.cf."""
    d = postfix_dir.rstrip("/") or "/"
    postconf = "postconf -e" if d == DEFAULT_POSTFIX_DIR else f"postconf -c {d} -e"
    return f"grep -Ev '^(#|$)' {FRAGMENT} | while IFS= read -r setting; do {postconf} \"$setting\"; done"


def _mode(name: str) -> int:
    return 0o600 if name == SASL_PASSWD else 0o644


def write_export(files: Sequence[ExportFile], out: Path, *, force: bool = False) -> list[Path]:
    """Write ``files`` into ``out`` (made when its parent exists); replace existing files only with force."""
    out = out.expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} is a file, not a folder.")
    if not out.exists():
        if not out.parent.is_dir():
            raise UsageError(f"--out: the folder {out.parent} does not exist.")
        try:
            out.mkdir(mode=0o755)
        except OSError as exc:
            raise UsageError(f"--out: cannot create {out}: {exc.strerror or exc}.") from None
    existing = [f.name for f in files if (out / f.name).exists()]
    if existing and not force:
        raise UsageError(
            f"--out: {out} already holds {', '.join(existing)}; give --force to replace "
            f"{'them' if len(existing) > 1 else 'it'}."
        )
    written = []
    for file in files:
        written.append(_write_file(out, file))
    return written


def _write_file(folder: Path, file: ExportFile) -> Path:
    """Atomically, with the mode set before any byte is written (a secret is never readable by others)."""
    target = folder / file.name
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{file.name}.")
    try:
        os.fchmod(fd, file.mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(file.text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise UsageError(f"--out: cannot write {target}: {exc.strerror or exc}.") from None
    return target


__all__ = [
    "ExportFile",
    "PostfixTarget",
    "apply_command",
    "generate",
    "main_cf_fragment",
    "method_for",
    "mynetworks",
    "rate_delay",
    "readme",
    "sasl_passwd",
    "sender_canonical",
    "write_export",
]
