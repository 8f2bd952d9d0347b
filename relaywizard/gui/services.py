"""What the wizard's pages may use from the core, in one object the tests can replace piece by piece.

Pages never open sockets or touch the keyring themselves: they call these, which run on the one asyncio
loop (qasync's in the application).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from relaywizard.core.paths import AppPaths

if TYPE_CHECKING:
    from relaywizard.core.secrets import SecretStore
    from relaywizard.diagnostics.base import Resolver
    from relaywizard.diagnostics.model import Target
    from relaywizard.diagnostics.runner import DiagnosticsRun


def _secret_store() -> SecretStore:
    from relaywizard.core.secrets import SecretStore

    return SecretStore()


def _start_run(target: Target, resolver: Resolver | None = None) -> DiagnosticsRun:
    from relaywizard.diagnostics.checks import start_run

    return start_run(target, resolver=resolver)


@dataclass
class Services:
    paths: AppPaths = field(default_factory=AppPaths.default)
    secret_store: Callable[[], SecretStore] = _secret_store
    start_run: Callable[[Target], DiagnosticsRun] = _start_run
    dns_servers: tuple[tuple[str, int], ...] = ()
    """Resolvers the tests page asks (empty: the system's); the lab tests point this at unbound."""
    smtp_host: str | None = None
    smtp_port: int | None = None
    """Override the endpoint the method implies (tests point this at the lab)."""
    ca_file: str | None = None
    authority: str | None = None
    """Override the OAuth authority (None: https://login.microsoftonline.com/<tenant>); the tests point
    this at their local one, trusted through ``ca_file``."""
