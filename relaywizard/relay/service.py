"""The relay as a service: the engine, its day's status and its control channel, started and stopped as one.

``relaywizard relay`` runs it headless; the tray runs the same thing in its own process when no relay is
running for the spool yet, and then talks to it through the control channel like to any other. Also here:
the diagnostics target that tests the relay's own upstream (the tray's "Run the diagnostics").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from relaywizard.core.errors import ConfigError
from relaywizard.diagnostics.model import AuthKind, Method, Target
from relaywizard.relay.config import RelayConfig
from relaywizard.relay.control import ControlServer, RelayStatus, start_control
from relaywizard.relay.credentials import TOKEN_MECHANISMS, Credentials
from relaywizard.relay.engine import Relay
from relaywizard.relay.forwarder_types import ForwarderEvent

log = logging.getLogger("relaywizard.relay")


@dataclass
class RelayService:
    """``await start()``, then ``await stop()``; ``status`` follows the relay's events."""

    config: RelayConfig
    credentials: Credentials | None
    devices: Mapping[str, str] | None = None
    on_event: Callable[[ForwarderEvent], None] | None = None

    def __post_init__(self) -> None:
        self.status = RelayStatus()
        self.relay = Relay(
            self.config,
            self.credentials,
            on_event=self.status.listener(self.on_event),
            on_queued=self.status.on_queued,
            device_passwords=self.devices,
        )
        self.status.relay = self.relay
        self.control: ControlServer | None = None
        self.control_error: str | None = None
        """Why the control channel could not start (mail still flows without it)."""
        self._expiry: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the spool and listen; with OAuth, a first token before (a sign-in that cannot work stops
        the start with one sentence) and the warnings ahead of expiry now and daily."""
        from relaywizard.auth.upstream import SourceCredentials, start_relay_sign_in

        await self.status.load_today(self.relay.delivery_log)
        if isinstance(self.credentials, SourceCredentials):
            self._expiry = await start_relay_sign_in(self.credentials, warn=self.warn)
        try:
            await self.relay.start()
        except BaseException:
            self._stop_expiry()
            raise
        try:
            self.control = await start_control(self.relay, self.status)
        except ConfigError as exc:
            self.control_error = exc.one_line()

    def _stop_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    async def stop(self) -> None:
        self._stop_expiry()
        if self.control is not None:
            await self.control.close()
            self.control = None
        await self.relay.stop()

    def warn(self, text: str) -> None:
        """Tell whoever watches (the tray) about something ahead, such as a credential's expiry."""
        log.warning("%s", text)
        if text not in self.status.warnings:
            self.status.warnings.append(text)
        self.status.publish({"event": "expiry", "text": text})


def diagnostics_target(
    config: RelayConfig,
    credentials: Credentials | None,
    *,
    dns_servers: tuple[tuple[str, int], ...] = (),
) -> Target | None:
    """The checks for the relay's own upstream and mailbox domain; None when no domain is known."""
    upstream = config.upstream
    address = config.sender or upstream.user
    if address is None or "@" not in address:
        return None
    domain = address.rsplit("@", 1)[1]
    signs_in = credentials is not None
    method: Method = "smtp-auth" if signs_in else "connector"
    auth: AuthKind = "password"
    token_provider = None
    if credentials is not None and credentials.mechanisms == TOKEN_MECHANISMS:
        auth = "oauth-app" if config.auth == "oauth-app" else "oauth-delegated"
        token_provider = credentials.secret
    return Target(
        domain=domain,
        method=method,
        dns_servers=dns_servers,
        smtp_host=upstream.host,
        smtp_port=upstream.port,
        ca_file=Path(upstream.ca_file) if upstream.ca_file else None,
        user=credentials.user if credentials is not None else None,
        auth=auth,
        token_provider=token_provider,
        mail_from=address,
        rcpt_to=upstream.user or address,
    )


async def password_for(credentials: Credentials | None) -> str | None:
    """The password of password credentials (for the diagnostics' sign-in), else None."""
    if credentials is None or credentials.mechanisms == TOKEN_MECHANISMS:
        return None
    return await credentials.secret()
