"""The first steps of the SMTP session, begun before the run that needs them.

Before the SMTP stages can send EHLO, a run imports the checks and aiosmtplib (tens of milliseconds of
CPU), connects, looks up this machine's name and reads the system's CA certificates for the TLS context
(tens of milliseconds more, in worker threads). ``relaywizard check`` therefore begins the session first:
the connection, the name look-up and the TLS context are under way, and the server's greeting on its way,
while the checks are imported. ``smtp.connect`` takes the connection over and reports on it as if it had
connected itself; the session takes the name and the context. Nothing here imports aiosmtplib.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

from relaywizard.diagnostics.model import Target
from relaywizard.diagnostics.smtp_net import endpoint_for, local_fqdn, open_tcp
from relaywizard.diagnostics.smtp_tls import verifying_context


class SessionAhead:
    """A connection attempt to ``target``'s SMTP endpoint, its EHLO name look-up and its TLS context."""

    SHARED_KEY = "smtp.ahead"
    """Where a run's checks find it (``DiagnosticsRun(shared=...)``)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.host, self.port = endpoint_for(target)
        loop = asyncio.get_running_loop()
        self.connection: asyncio.Future[socket.socket] = asyncio.ensure_future(
            open_tcp(self.host, self.port, target.source_address, target.timeout)
        )
        self.fqdn: asyncio.Future[str] | None = None
        if not target.helo_name:
            self.fqdn = asyncio.ensure_future(local_fqdn(target.timeout))
        self.tls_context: asyncio.Future[ssl.SSLContext] = loop.run_in_executor(
            None, verifying_context, target.ca_file
        )
        self.taken = False

    def serves(self, target: Target) -> bool:
        return target == self.target

    def take(self) -> SessionAhead:
        """Take the connection over: whoever took it closes its socket."""
        self.taken = True
        return self

    def discard(self) -> None:
        """After the run: stop what is still running, and close the socket unless it was taken."""
        for job in (self.connection, self.fqdn, self.tls_context):
            if job is None:
                continue
            if not job.done():
                job.cancel()
            elif (
                not job.cancelled() and job.exception() is None and job is self.connection and not self.taken
            ):
                self.connection.result().close()
