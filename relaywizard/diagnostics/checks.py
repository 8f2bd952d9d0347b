"""The facade the CLI and the wizard use: which checks a run has, and starting one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from relaywizard.diagnostics.base import Check, Resolver
from relaywizard.diagnostics.model import Group, Target
from relaywizard.diagnostics.runner import DiagnosticsRun

if TYPE_CHECKING:
    from relaywizard.diagnostics.smtp_ahead import SessionAhead


def build_checks(only: Group | None = None) -> list[Check]:
    """Every check of contract.md, or those of one group, in report order."""
    from relaywizard.diagnostics.dns_checks import DNS_CHECKS
    from relaywizard.diagnostics.smtp_checks import SMTP_CHECKS

    classes = (DNS_CHECKS if only != "smtp" else ()) + (SMTP_CHECKS if only != "dns" else ())
    return [cls() for cls in classes]


def start_run(
    target: Target,
    only: Group | None = None,
    resolver: Resolver | None = None,
    ahead: SessionAhead | None = None,
) -> DiagnosticsRun:
    """A run ready to go: iterate ``events()`` or await ``run()``; ``cancel()`` stops it.

    ``ahead``: the SMTP session, already begun (``smtp.connect`` takes it over).
    """
    if resolver is None:
        from relaywizard.diagnostics.dns_resolver import DnsResolver

        resolver = DnsResolver(target.dns_servers, timeout=target.timeout)
    shared = {ahead.SHARED_KEY: ahead} if ahead is not None else {}
    return DiagnosticsRun(target, build_checks(only), resolver, shared)
