"""The relay as one unit: spool, delivery log, forwarder and inbound server, started and stopped together.

The same engine runs headless (``relaywizard relay``, plain asyncio) and inside the tray (qasync): it only
needs a running event loop. Start order makes sure nothing is answered 250 before the spool is open and
the forwarder can be woken; stop order makes sure nothing in flight is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import ssl
from collections.abc import Callable, Mapping
from typing import Any

from relaywizard.core.errors import ConfigError
from relaywizard.relay.config import RelayConfig
from relaywizard.relay.credentials import Credentials
from relaywizard.relay.deliverylog import DeliveryLog
from relaywizard.relay.forwarder import Forwarder
from relaywizard.relay.forwarder_types import ForwarderEvent
from relaywizard.relay.inbound import start_inbound
from relaywizard.relay.model import Envelope, State
from relaywizard.relay.policy import InboundPolicy
from relaywizard.relay.spool import Spool

log = logging.getLogger("relaywizard.relay")

#: How long stop() lets devices finish a session that is under way before closing it.
SESSION_GRACE = 5.0


class Relay:
    """A running relay: ``await start()``, then ``await stop()``."""

    def __init__(
        self,
        config: RelayConfig,
        credentials: Credentials | None,
        *,
        on_event: Callable[[ForwarderEvent], None] | None = None,
        on_queued: Callable[[Envelope], None] | None = None,
        device_passwords: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self._device_passwords = dict(device_passwords or {})
        self.spool = Spool(config.spool)
        self.delivery_log = DeliveryLog(config.delivery_log)
        self.forwarder = Forwarder(
            self.spool,
            config.upstream,
            credentials,
            self.delivery_log,
            connections=config.connections,
            rate=config.rate,
            sender=config.sender_map() if config.device_senders else config.sender,
            **_graph_upstream(config, credentials),
            on_event=on_event,
        )
        self._on_queued = on_queued
        self._server: asyncio.Server | None = None
        self._forwarding: asyncio.Task[None] | None = None

    @property
    def address(self) -> tuple[str, int]:
        """Where devices connect (the real port when the configuration asked for port 0)."""
        if self._server is None:
            return self.config.listen_host, self.config.listen_port
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def start(self) -> None:
        self.spool.open()
        try:
            recovered = self.spool.recover()
            if recovered.get("requeued"):
                log.info(
                    "requeued %d message(s) that were in flight when the relay last stopped",
                    recovered["requeued"],
                )
            self.delivery_log.open()
            self._forwarding = asyncio.create_task(self.forwarder.run(), name="relaywizard-forwarder")
            policy = InboundPolicy(
                hostname=self.config.hostname,
                allow=self.config.allow,
                authenticate=self._authenticate if self._device_passwords else None,
                auth_networks=self.config.auth_networks,
                allowed_recipient_domains=self.config.recipient_domains,
                max_message_size=self.config.max_message_size,
                bare_lf=self.config.bare_lf,
                tls_context=inbound_tls(self.config),
            )
            self._server = await start_inbound(
                policy, self.spool, self._queued, self.config.listen_host, self.config.listen_port
            )
        except BaseException:
            await self._stop_forwarder()
            self.spool.close()
            self.delivery_log.close()
            raise

    def _authenticate(self, login: str, password: str) -> bool:
        expected = self._device_passwords.get(login)
        # compare_digest: the time taken must not tell how much of a guessed password was right
        return expected is not None and hmac.compare_digest(expected.encode(), password.encode())

    def _queued(self, envelope: Envelope) -> None:
        self.forwarder.wake()
        if self._on_queued is not None:
            self._on_queued(envelope)

    async def stop(self) -> None:
        """Stop accepting, let sessions and deliveries under way finish briefly, keep the rest queued."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SESSION_GRACE):
                    await self._server.wait_closed()
            self._server = None
        await self._stop_forwarder()
        self.spool.close()
        self.delivery_log.close()

    async def _stop_forwarder(self) -> None:
        if self._forwarding is None:
            return
        await self.forwarder.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await self._forwarding
        self._forwarding = None

    def pause(self) -> None:
        self.forwarder.pause()

    def resume(self) -> None:
        self.forwarder.resume()

    def counts(self) -> dict[State, int]:
        return self.spool.counts()


def _graph_upstream(config: RelayConfig, credentials: Credentials | None) -> dict[str, Any]:
    """The forwarder's sessions when the relay delivers through Microsoft Graph (``--graph``), else none."""
    if config.graph_url is None:
        return {}
    from urllib.parse import urlsplit

    from relaywizard.relay.graph import graph_factory

    return {
        "session_factory": graph_factory(config.upstream, credentials, config.graph_url),
        "upstream_name": f"Microsoft Graph ({urlsplit(config.graph_url).netloc})",
    }


def inbound_tls(config: RelayConfig) -> ssl.SSLContext | None:
    """The STARTTLS context offered to devices, from the configured certificate and key."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"The relay's TLS certificate {config.tls_cert} or key {config.tls_key} cannot be used: "
            f"{getattr(exc, 'strerror', None) or exc}.",
            hint="Give a PEM certificate chain and its unencrypted PEM private key.",
        ) from None
    return context
