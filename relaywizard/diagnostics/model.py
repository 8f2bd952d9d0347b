"""What a diagnostics run is asked to test, what each check reports, and the events a run emits.

The wizard's test page and ``relaywizard check`` consume exactly these types.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

Method = Literal["smtp-auth", "direct-send", "connector"]
AuthKind = Literal["password", "oauth-app", "oauth-delegated"]
Group = Literal["dns", "smtp"]

METHODS: tuple[Method, ...] = ("smtp-auth", "direct-send", "connector")
AUTH_KINDS: tuple[AuthKind, ...] = ("password", "oauth-app", "oauth-delegated")

#: Every check id, in the order a report lists them (contract.md).
CHECK_IDS = (
    "dns.mx",
    "dns.spf",
    "dns.dkim",
    "dns.dmarc",
    "dns.autodiscover",
    "smtp.connect",
    "smtp.banner",
    "smtp.ehlo",
    "smtp.starttls",
    "smtp.tls",
    "smtp.auth",
    "smtp.mail_from",
    "smtp.rcpt_to",
    "smtp.data",
)


class Status(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class Target:
    """What to test: a domain, a sending method, and how to reach and authenticate to the endpoint."""

    domain: str
    method: Method = "smtp-auth"
    dns_servers: tuple[tuple[str, int], ...] = ()
    """Resolvers to ask instead of the system's: (address, port)."""
    smtp_host: str | None = None
    """Overrides the endpoint the method implies (smtp.office365.com, or the domain's MX endpoint)."""
    smtp_port: int | None = None
    ca_file: Path | None = None
    user: str | None = None
    auth: AuthKind = "password"
    secret: str | None = field(default=None, repr=False)
    """The password for ``auth="password"``; never printed, never in a report."""
    token_provider: Callable[[], Awaitable[str]] | None = field(default=None, repr=False)
    """For OAuth: returns an access token for XOAUTH2 (the auth layer supplies it)."""
    mail_from: str | None = None
    rcpt_to: str | None = None
    send: bool = False
    relay_ip: str | None = None
    """The office's public IP, checked against SPF for direct-send and connector."""
    source_address: str | None = None
    """Local address to connect from (a LAN interface; the lab's connector test uses 127.0.0.2)."""
    helo_name: str | None = None
    timeout: float = 10.0
    """Limit for each network step, in seconds."""

    @property
    def has_credentials(self) -> bool:
        return bool(self.user) and (self.secret is not None or self.token_provider is not None)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check. Every ``fail`` and ``warn`` has a non-empty ``fix``."""

    id: str
    status: Status
    title: str
    summary: str
    fix: str = ""
    code: str | None = None
    """The enhanced status code (``5.7.139``) of the SMTP reply behind the result."""
    duration_ms: int = 0
    data: dict[str, Any] = field(default_factory=dict)
    blocked_by: str | None = None
    """For a ``skip`` caused by a failed check: that check's id (later checks skip too)."""

    def __post_init__(self) -> None:
        if self.status in (Status.FAIL, Status.WARN) and not self.fix.strip():
            raise ValueError(f"{self.id}: a {self.status} result needs a fix")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": str(self.status),
            "title": self.title,
            "summary": self.summary,
            "fix": self.fix or None,
            "code": self.code,
            "duration_ms": self.duration_ms,
            "data": self.data,
        }


@dataclass(frozen=True)
class CheckStarted:
    id: str
    title: str


@dataclass(frozen=True)
class CheckProgress:
    id: str
    text: str


@dataclass(frozen=True)
class CheckFinished:
    result: CheckResult


Event = CheckStarted | CheckProgress | CheckFinished


@dataclass
class Report:
    """A finished (or cancelled) run: what the JSON document and the human report are made from."""

    domain: str
    method: Method
    results: list[CheckResult] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    duration_ms: int = 0
    cancelled: bool = False

    @property
    def failed(self) -> bool:
        return any(r.status is Status.FAIL for r in self.results)

    def result(self, check_id: str) -> CheckResult | None:
        return next((r for r in self.results if r.id == check_id), None)

    def ordered(self) -> list[CheckResult]:
        order = {cid: i for i, cid in enumerate(CHECK_IDS)}
        return sorted(self.results, key=lambda r: order.get(r.id, len(order)))

    def to_json(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "method": self.method,
            "duration_ms": self.duration_ms,
            "checks": [r.to_json() for r in self.ordered()],
        }
