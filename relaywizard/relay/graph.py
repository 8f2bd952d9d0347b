"""Microsoft Graph as the relay's upstream, for tenants that turn SMTP AUTH off.

``GraphSession`` offers what ``UpstreamSession`` offers the forwarder (``ready()``, ``send()`` returning a
``Transaction``, ``close()``, ``abort()``, ``connected``, ``where``, ``connects``), so the forwarder can take
either. A message goes as Graph's documented MIME send: ``POST {base}/users/{upn}/sendMail`` with the
whole message base64-encoded as a ``text/plain`` body; ``202 Accepted`` means Exchange Online took it.
What each other answer means is in ``graph_errors``; in short:

- ``401`` once: the token source is told (``on_rejected``), a fresh token is fetched and the request sent
  once more; a second ``401`` is ``AuthFailed``, and the message stays queued.
- ``429`` and ``5xx``: when Graph's ``Retry-After`` (or, without one, a short backoff) is at most
  ``inline_wait`` seconds, the session waits and tries again itself, up to ``inline_retries`` times;
  otherwise the message is deferred with a ``451`` ``GraphTransaction`` whose ``retry_after`` carries
  Graph's delay. Nothing is dropped: a deferred message stays in the spool.
- Network errors and timeouts raise ``UpstreamUnavailable``, as for SMTP.

sendMail takes at most 4 MB (``MAX_REQUEST_BYTES``), about 3 MB of message once in base64. A larger
message (a scan of 5-30 MB), or one Graph answers ``413``, goes the documented large way instead: a draft,
its attachments (large ones through upload sessions), then send; see ``graph_large``. Every request there
is handled as above. Up to 150 MB; that needs ``Mail.ReadWrite`` besides ``Mail.Send``.

Recipients: Graph takes them from the message's To, Cc and Bcc headers, not from an SMTP envelope, and
Exchange removes Bcc from the copies recipients get. The relay's truth is the envelope (the device strips
Bcc from the header; an alias may expand), so ``graph_mime`` rewrites the header to send to exactly the
envelope's recipients: To and Cc stay as they are when they name only envelope recipients (the usual
case); an address the envelope does not list is taken out of them; any Bcc the device left is removed;
and the envelope recipients not named in To or Cc go into a new Bcc header (a large message's draft gets
the same To, Cc and Bcc). The envelope sender is not used: Graph sends as the mailbox in the URL, and
bounces go to that mailbox.

The token comes from ``token_source`` (for app-only access, a client-credentials token for the scope
``https://graph.microsoft.com/.default`` with the ``Mail.Send`` application permission, and ``Mail.ReadWrite``
for large messages); it is put in the Authorization header of Graph's own URLs and nowhere else: not in a
log, an exception or a repr, nor on an upload URL (which carries a token of its own, never logged either).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import logging
import re
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from relaywizard.relay.config import DEFAULT_GRAPH_URL
from relaywizard.relay.credentials import TOKEN_MECHANISMS, Credentials
from relaywizard.relay.graph_errors import (
    MAX_REQUEST_BYTES,
    Step,
    judge,
    judge_step,
    read_error,
    retry_after,
)
from relaywizard.relay.model import Upstream
from relaywizard.relay.upstream_session import (
    AuthFailed,
    Buffer,
    ForwarderConfigError,
    SessionError,
    Transaction,
    UpstreamRefused,
    UpstreamUnavailable,
    content_size,
    tls_context,
)

#: The scope of an app-only token for Graph (the app needs the Mail.Send application permission).
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
INLINE_WAIT = 10.0
INLINE_RETRIES = 2
RETRYABLE = frozenset({429, 500, 502, 503, 504})
#: Deleting a draft after a failure is a courtesy: it may not hold up the forwarder for long.
DISCARD_TIMEOUT = 15.0
#: How much ``graph_mime`` may change a message's size (CRLF line ends, the rewritten To/Cc/Bcc): a message
#: over the limit by more than this goes the large way without being built for sendMail first.
_SLACK = 256 * 1024
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_LINE_ENDS = re.compile(rb"\r\n|\n|\r(?!\n)")
_RECIPIENT_FIELDS = (b"to", b"cc")

TokenSource = Callable[[], Awaitable[str]]
log = logging.getLogger(__name__)


@dataclass
class GraphTransaction(Transaction):
    """A ``Transaction`` that may also say how long Graph asked the relay to wait (``Retry-After``)."""

    retry_after: float | None = None


def graph_context(ca_file: str | None) -> ssl.SSLContext:
    """TLS for Graph: the system's CAs plus ``ca_file``, TLS 1.2 or later (``ForwarderConfigError``)."""
    return tls_context(Upstream(host="graph", port=443, tls="implicit", ca_file=ca_file))


# -- the message as Graph needs it ------------------------------------------------------------------------


def header_fields(header: bytes) -> list[bytes]:
    """The header block as whole fields, each with its folded continuation lines."""
    fields: list[bytes] = []
    for line in header.splitlines(keepends=True):
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def _name(field: bytes) -> bytes:
    return field.split(b":", 1)[0].strip().lower() if b":" in field else b""


def addresses(field: bytes) -> list[tuple[str, str]]:
    """The (display name, address) pairs of an address field such as ``To: a, "B" <b@example>``."""
    value = field.split(b":", 1)[1].decode("utf-8", "surrogateescape")
    return [
        (name, address) for name, address in email.utils.getaddresses([" ".join(value.split())]) if address
    ]


def in_envelope(pairs: Sequence[tuple[str, str]], wanted: set[str]) -> list[tuple[str, str]]:
    """The pairs whose address is one of ``wanted`` (lower case): a header may name nobody else."""
    return [pair for pair in pairs if pair[1].lower() in wanted]


def blind_copies(recipients: Sequence[str], named: set[str]) -> list[tuple[str, str]]:
    """The envelope recipients that To and Cc do not name (``named``, lower case), once each: the Bcc."""
    blind, seen = [], set(named)
    for address in recipients:
        if address.lower() not in seen:
            seen.add(address.lower())
            blind.append(("", address))
    return blind


def _address_field(name: str, pairs: Sequence[tuple[str, str]]) -> bytes:
    """``Name: a, b`` folded one address a line, so no line grows past what mail allows."""
    shown = ",\r\n ".join(email.utils.formataddr(pair) for pair in pairs)
    return f"{name}: {shown}\r\n".encode("utf-8", "surrogateescape")


def graph_mime(content: Sequence[Buffer], recipients: Sequence[str]) -> bytes:
    """The message with CRLF line ends and a header that makes Graph deliver to exactly ``recipients``."""
    data = _LINE_ENDS.sub(b"\r\n", b"".join(bytes(part) for part in content))
    end = _HEADER_END.search(data)
    header, body = (data[: end.start()], data[end.start() + 2 :]) if end else (data, b"\r\n")
    header = header.rstrip(b"\r\n") + b"\r\n"
    wanted = {address.lower() for address in recipients}
    named: set[str] = set()
    kept: list[bytes] = []
    for field in header_fields(header):
        if not field.strip():
            continue
        name = _name(field)
        if name == b"bcc":
            continue  # the envelope decides who gets a blind copy
        if name in _RECIPIENT_FIELDS:
            pairs = addresses(field)
            inside = in_envelope(pairs, wanted)
            named.update(address.lower() for _, address in inside)
            if len(inside) != len(pairs):
                if not inside:
                    continue
                field = _address_field(field.split(b":", 1)[0].decode("ascii", "replace").strip(), inside)
        kept.append(field)
    blind = blind_copies(recipients, named)
    if blind:
        kept.append(_address_field("Bcc", blind))
    return b"".join(kept) + body


def request_size(message_bytes: int) -> int:
    """Bytes of the base64 body Graph receives for a message of ``message_bytes``."""
    return 4 * ((message_bytes + 2) // 3)


# -- the session ------------------------------------------------------------------------------------------


@dataclass
class Vouch:
    """Whether a session's next ``ready()`` says the upstream works; shared by one forwarder's sessions.

    HTTP has nothing like SMTP's AUTH to prove a session works before a message is sent. So the first
    ``ready()`` of all vouches for the upstream, and after a failure the first ``ready()`` once a message
    has gone through again: a probe that fails again, or another session starting, does not report the
    upstream as back.
    """

    pending: bool = True
    suspect: bool = False
    """A session failed, and no message has gone through since."""


class GraphSession:
    """Sends messages with Graph's ``sendMail`` as one mailbox; an HTTPS client kept open between messages."""

    def __init__(
        self,
        mailbox: str,
        token_source: TokenSource,
        *,
        on_rejected: Callable[[], None] | None = None,
        base_url: str = DEFAULT_GRAPH_URL,
        context: ssl.SSLContext | None = None,
        timeout: float = 60.0,
        max_request_bytes: int | None = MAX_REQUEST_BYTES,
        inline_wait: float = INLINE_WAIT,
        inline_retries: int = INLINE_RETRIES,
        trust_env: bool = True,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        vouch: Vouch | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.mailbox = mailbox
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/users/{urllib.parse.quote(mailbox, safe='@')}/sendMail"
        self._token_source = token_source
        self._on_rejected = on_rejected
        self.context = context if context is not None else graph_context(None)
        self.timeout = timeout
        self.max_request_bytes = max_request_bytes
        self.inline_wait = inline_wait
        self.inline_retries = inline_retries
        self.trust_env = trust_env  # HTTPS_PROXY and NO_PROXY from the environment, as offices need
        self._sleep = sleep
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.vouch = vouch if vouch is not None else Vouch()
        self.connects = 0
        self.requests = 0

    def __repr__(self) -> str:
        return f"GraphSession(mailbox={self.mailbox!r}, url={self.url!r})"

    @property
    def connected(self) -> bool:
        return self._client is not None

    @property
    def where(self) -> str:
        host = urllib.parse.urlsplit(self.base_url).netloc or self.base_url
        return f"Microsoft Graph ({host})"

    def _new_client(self, timeout: float | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            verify=self.context,
            timeout=httpx.Timeout(timeout if timeout is not None else self.timeout),
            trust_env=self.trust_env,
            follow_redirects=False,
            headers={"User-Agent": "relaywizard"},  # no Authorization here: it goes on each Graph request
        )

    async def ready(self) -> bool:
        """Make the session usable; True when it vouches that the upstream works (see ``Vouch``)."""
        if self._client is None:
            self._client = self._new_client()
            self.connects += 1
            await self._token()  # a token that cannot be had fails here, as a wrong password fails AUTH
        pending, self.vouch.pending = self.vouch.pending, False
        return pending

    async def _token(self) -> str:
        try:
            return await self._token_source()
        except Exception as exc:  # MSAL refused the refresh, a locked keyring, the authority down...
            reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            raise self._failed(
                AuthFailed(f"The relay has no usable token for Graph as {self.mailbox}: {reason}")
            ) from None

    def _failed(self, error: SessionError) -> SessionError:
        self.vouch.pending, self.vouch.suspect = False, True
        return error

    async def send(self, sender: str, recipients: list[str], content: Sequence[Buffer]) -> Transaction:
        """Send one message; ``sender`` is not used (Graph sends as the mailbox in the URL).

        A message whose MIME request would be over ``max_request_bytes`` goes the large way instead
        (``graph_large``: a draft, its attachments, then send), as does one that Graph answers 413.
        """
        if self._client is None:
            raise UpstreamUnavailable(f"The session to {self.where} is not open.")
        limit = self.max_request_bytes
        if limit is not None and request_size(content_size(content)) > limit + _SLACK:
            return await self._send_large(content, recipients)  # no need to build what cannot go
        message = graph_mime(content, recipients)
        if limit is not None and request_size(len(message)) > limit:
            del message
            return await self._send_large(content, recipients)
        body = base64.b64encode(message)
        del message
        response = await self.call("POST", self.url, content=body, headers={"Content-Type": "text/plain"})
        del body
        if response.status_code == 413:  # Graph's limit is lower than the relay took it to be
            return await self._send_large(content, recipients)
        return self.conclude(response, recipients)

    async def _send_large(self, content: Sequence[Buffer], recipients: list[str]) -> GraphTransaction:
        from relaywizard.relay.graph_large import send_large  # it builds on this module

        return await send_large(self, content, recipients)

    async def call(
        self,
        method: str,
        url: str,
        *,
        content: bytes | AsyncIterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        authorized: bool = True,
    ) -> httpx.Response:
        """One Graph request, and Graph's final answer to it.

        ``authorized`` requests carry the token; a 401 has the token source told and the request sent
        once more with a fresh token, and a second 401 is ``AuthFailed``. 429 and 5xx are waited out
        here when Graph asks for at most ``inline_wait`` seconds, up to ``inline_retries`` times; after
        that their answer is returned, for ``conclude`` to defer the message. Network errors and timeouts
        raise ``UpstreamUnavailable``. Upload URLs carry their own token: ``authorized=False`` sends none.
        """
        refreshed = False
        waits = 0
        while True:
            response = await self._request(method, url, content, headers, authorized)
            if response.status_code == 401 and authorized:
                if not refreshed:
                    refreshed = True
                    if self._on_rejected is not None:
                        self._on_rejected()
                    continue
                error = read_error(response)
                raise self._failed(
                    AuthFailed(
                        f"Graph refused the relay's token for {self.mailbox} twice ({error}): the token must "
                        f"be for {GRAPH_SCOPE} from the mailbox's tenant",
                        str(error),
                    )
                )
            if response.status_code in RETRYABLE and waits < self.inline_retries:
                wait = retry_after(response, self._clock())
                delay = wait if wait is not None else 2.0**waits
                if delay <= self.inline_wait:
                    waits += 1
                    await self._sleep(delay)
                    continue
            return response

    def conclude(
        self, response: httpx.Response, recipients: Sequence[str], step: Step | None = None
    ) -> GraphTransaction:
        """The message's outcome from Graph's final answer (``graph_errors``): a ``GraphTransaction``, or
        ``AuthFailed`` / ``UpstreamRefused`` raised when the session cannot send anything."""
        wait = retry_after(response, self._clock())
        error = read_error(response)
        verdict = (
            judge(error, self.mailbox, wait) if step is None else judge_step(step, error, self.mailbox, wait)
        )
        if verdict.outcome == "auth":
            raise self._failed(AuthFailed(verdict.reply, verdict.reply))
        if verdict.outcome == "refused":
            raise self._failed(UpstreamRefused(verdict.reply, verdict.reply))
        if verdict.outcome == "delivered" and self.vouch.suspect:
            self.vouch.suspect, self.vouch.pending = False, True
        return GraphTransaction(
            "data",
            verdict.code,
            verdict.reply,
            accepted=list(recipients) if verdict.outcome == "delivered" else [],
            retry_after=wait if verdict.outcome == "retry" else None,
        )

    async def _request(
        self,
        method: str,
        url: str,
        content: bytes | AsyncIterable[bytes] | None,
        headers: Mapping[str, str] | None,
        authorized: bool,
    ) -> httpx.Response:
        client = self._client
        if client is None:
            raise UpstreamUnavailable(f"The session to {self.where} is not open.")
        sent = dict(headers or {})
        if authorized:
            sent["Authorization"] = f"Bearer {await self._token()}"
        self.requests += 1
        try:
            return await client.request(method, url, content=content, headers=sent)
        except httpx.HTTPError as exc:
            self.abort()
            raise self._failed(self._network_error(exc)) from None

    async def discard(self, url: str, fresh: bool = False) -> None:
        """Delete a draft, best effort: one try, with a client of its own when the session's is gone (or
        ``fresh``). A draft that cannot be deleted is logged (never with the token), not raised."""
        client, own = self._client, None
        if fresh or client is None:
            client = own = self._new_client(DISCARD_TIMEOUT)
        try:
            token = await self._token_source()
            response = await client.delete(url, headers={"Authorization": f"Bearer {token}"})
            if not response.is_success and response.status_code != 404:  # 404: no draft to delete
                log.warning(
                    "A draft of a large message stays in the Drafts folder of %s: Graph answered %s to "
                    "deleting it",
                    self.mailbox,
                    read_error(response),
                )
        except Exception as exc:  # the network, the token: the draft stays, nothing else is wrong
            why = self._network_error(exc).text if isinstance(exc, httpx.HTTPError) else type(exc).__name__
            log.warning("A draft of a large message stays in the Drafts folder of %s: %s", self.mailbox, why)
        finally:
            if own is not None:
                await own.aclose()

    def discard_later(self, url: str) -> None:
        """``discard`` in the background, with a client of its own (the send was cancelled); ``close()``
        waits for it."""
        try:
            task = asyncio.get_running_loop().create_task(self.discard(url, fresh=True))
        except RuntimeError:
            return
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _network_error(self, exc: httpx.HTTPError) -> UpstreamUnavailable:
        """One readable sentence for a network, TLS or protocol failure (never with the token in it)."""
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ssl.SSLCertVerificationError):
                return UpstreamUnavailable(
                    f"The certificate of {self.where} could not be verified ({cause.verify_message})."
                )
            cause = cause.__cause__ or cause.__context__
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamUnavailable(f"{self.where} did not answer in time.")
        reason = str(exc).strip().rstrip(".") or type(exc).__name__
        return UpstreamUnavailable(f"Cannot talk to {self.where}: {reason}.")

    async def close(self) -> None:
        """Close the HTTPS connections. Never called while a request is under way."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def abort(self) -> None:
        """Drop the client at once (after an error, or when cancelled mid-request)."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            task = asyncio.get_running_loop().create_task(client.aclose())
        except RuntimeError:  # no loop any more: nothing left to close politely
            return
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


def graph_factory(
    upstream: Upstream,
    credentials: Credentials | None,
    base_url: str = DEFAULT_GRAPH_URL,
    **options: Any,
) -> Callable[[], GraphSession]:
    """The forwarder's ``session_factory`` for Graph: ``GraphSession`` s sharing one TLS context and one
    ``Vouch``.

    The mailbox and the token come from ``credentials`` (a ``TokenCredentials``); a password is refused
    here, before any session. TLS always verifies (the system's CAs plus ``upstream.ca_file``), whatever
    ``upstream.tls`` says, since the bearer token must not go to an unverified server. ``options`` go to
    ``GraphSession``.
    """
    if credentials is None or not set(TOKEN_MECHANISMS) & set(credentials.mechanisms):
        raise ForwarderConfigError(
            "Microsoft Graph takes only OAuth tokens: the relay needs --auth oauth-app (or "
            "oauth-delegated) and --user for the Graph upstream.",
        )
    token_credentials = credentials
    contexts: list[ssl.SSLContext] = []
    vouch = Vouch()

    def make() -> GraphSession:
        if not contexts:
            contexts.append(graph_context(upstream.ca_file))  # once: loading the system CAs is not free
        return GraphSession(
            token_credentials.user,
            token_credentials.secret,
            on_rejected=token_credentials.rejected,
            base_url=base_url,
            context=contexts[0],
            timeout=upstream.timeout,
            vouch=vouch,
            **options,
        )

    return make
