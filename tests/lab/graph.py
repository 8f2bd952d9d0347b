"""A fake Microsoft Graph on 127.0.0.1 over HTTPS: sendMail, and the large-message way (drafts, attachments,
upload sessions, send), answering as Graph documents it or as a test scripts it.

It follows Graph's documented answers: ``202 Accepted`` with an empty body for sendMail and send, ``201``
with the new object for a draft, an attachment and an upload session, ``200`` with ``nextExpectedRanges``
for each uploaded range and ``201`` with a ``Location`` for the last, ``204`` for a delete; ``429`` with
``Retry-After``, ``401`` for a token it does not like, errors as ``{"error": {"code": ..., "message": ...}}``.
It checks requests as Graph does: the 4 MB request limit on its own endpoints, attachments under 3 MB by
POST and from 3 MB (up to 150 MB) by upload session, upload ranges in order with a ``Content-Range`` that
matches the body and the announced size, each a multiple of 320 KiB but the last, no ``Authorization`` on
the (pre-authenticated) upload URL, header names starting with ``x-`` in ``internetMessageHeaders``.

Each request is recorded (route, path, headers, body, the decoded MIME of a sendMail) so tests can check
what the relay sent; ``sent`` are sendMail's accepted MIME messages, ``messages`` the drafts that were
sent with their attachments' bytes, ``drafts`` those still there. Replies can be scripted, in order,
for any request (``answer``) or for one route (``answer_on``); a scripted reply is given instead of doing
what the request asks. ``DROP`` closes the connection without answering, as a broken network would.

It runs ``http.server`` in a thread of its own, as a real server would be another process: the relay's
client under test stays on the test's event loop. TLS comes from the lab's trustme CA (``tests/lab/tls``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import http.server
import itertools
import json
import re
import secrets
import ssl
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

from tests.lab.tls import make_certificates

if TYPE_CHECKING:
    from relaywizard.relay.graph import GraphSession

SEND_MAIL = re.compile(r"^/v1\.0/users/(?P<upn>[^/?]+)/sendMail$")
MESSAGES = re.compile(
    r"^/v1\.0/users/(?P<upn>[^/?]+)/messages"
    r"(?:/(?P<id>[^/?]+)(?P<rest>/attachments|/attachments/createUploadSession|/send)?)?$"
)
UPLOAD = re.compile(r"^/upload/(?P<session>[^/?]+)\?authtoken=(?P<token>[^&]+)$")
CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")

MAX_REQUEST = 4 * 1024 * 1024
"""Graph's request limit on its own endpoints (sendMail, drafts, attachments)."""
SMALL_ATTACHMENT = 3_000_000
"""Attachments "under 3 MB" by POST, "between 3 MB and 150 MB" by upload session."""
MAX_ATTACHMENT = 150 * 1024 * 1024
SLICE = 320 * 1024
MAX_RANGE = 4 * 1024 * 1024

Route = Literal["sendMail", "draft", "attachment", "uploadSession", "upload", "send", "delete", "cancel"]
_ITEM_ROUTES: dict[str, Route] = {
    "/attachments": "attachment",
    "/attachments/createUploadSession": "uploadSession",
    "/send": "send",
}


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


DROP = Reply(0)
"""Close the connection without an answer."""


def accepted() -> Reply:
    return Reply(202)


def throttled(retry_after: str | None = "1", code: str = "ApplicationThrottled") -> Reply:
    headers = (("Retry-After", retry_after),) if retry_after is not None else ()
    return error(429, code, "Application is over its MailboxConcurrency limit.", headers)


def error(status: int, code: str, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    body = json.dumps({"error": {"code": code, "message": message, "innerError": {"request-id": "x"}}})
    return Reply(status, body.encode(), (("Content-Type", "application/json"), *headers))


def created(value: dict[str, Any], headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(201, json.dumps(value).encode(), (("Content-Type", "application/json"), *headers))


@dataclass
class Request:
    """One request as the endpoint saw it; ``mime`` is a sendMail's decoded message (None if not base64).
    An upload's bytes are not kept here (``size`` says how many): they are in the attachment."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    mime: bytes | None = None
    upn: str | None = None
    route: Route | None = None
    size: int = 0


@dataclass
class Attached:
    """An attachment as Graph stored it on a draft."""

    name: str
    content_type: str
    data: bytes
    is_inline: bool = False
    content_id: str | None = None
    uploaded: bool = False
    """True when it came through an upload session, False when by POST."""


@dataclass
class Draft:
    id: str
    upn: str
    message: dict[str, Any]
    attachments: list[Attached] = field(default_factory=list)


@dataclass
class UploadSession:
    id: str
    token: str
    draft: str
    item: dict[str, Any]
    received: bytearray = field(default_factory=bytearray)


@dataclass
class FakeGraph:
    base_url: str
    ca_file: Path
    script: deque[tuple[Route | None, Reply]] = field(default_factory=deque)
    requests: list[Request] = field(default_factory=list)
    valid_tokens: set[str] | None = None
    """When set, a bearer token outside it gets 401 (before the script is consulted)."""
    drafts: dict[str, Draft] = field(default_factory=dict)
    uploads: dict[str, UploadSession] = field(default_factory=dict)
    messages: list[Draft] = field(default_factory=list)
    """The drafts that were sent, in order."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: Iterator[int] = field(default_factory=itertools.count)

    def answer(self, *replies: Reply) -> None:
        """Script the next answers to any request, in order (after any still scripted)."""
        with self.lock:
            self.script.extend((None, reply) for reply in replies)

    def answer_on(self, route: Route, *replies: Reply) -> None:
        """Script the next answers to requests of one route (``upload``, ``send``...), in order."""
        with self.lock:
            self.script.extend((route, reply) for reply in replies)

    @property
    def sent(self) -> list[bytes]:
        """The MIME messages sendMail accepted (answered 202), in order."""
        with self.lock:
            return [r.mime for r in self.requests if r.status == 202 and r.mime is not None]

    def routes(self) -> list[tuple[Route | None, int]]:
        """Each request's route and the status it got, in order."""
        with self.lock:
            return [(r.route, r.status) for r in self.requests]

    def wait_for_sent(self, count: int, within: float = 10.0) -> list[bytes]:
        deadline = time.monotonic() + within
        while len(self.sent) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"Graph got {len(self.sent)} message(s), not {count}: {self.requests}")
            time.sleep(0.02)
        return self.sent

    def wait_for_messages(self, count: int, within: float = 10.0) -> list[Draft]:
        deadline = time.monotonic() + within
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"Graph sent {len(self.messages)} draft(s), not {count}: {self.routes()}"
                )
            time.sleep(0.02)
        with self.lock:
            return list(self.messages)

    def _scripted(self, route: Route | None) -> Reply | None:
        with self.lock:
            for entry in self.script:
                if entry[0] is None or entry[0] == route:
                    self.script.remove(entry)
                    return entry[1]
        return None

    def _new_id(self, prefix: str) -> str:
        # ids as Graph makes them: base64 with '/', '+' and '=', so the client must escape them in a URL
        return f"AAMk{prefix}/{next(self.ids)}+{secrets.token_hex(4)}="


def _invalid(message: str, code: str = "ErrorInvalidRequest") -> Reply:
    return error(400, code, message)


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _check_recipients(message: dict[str, Any]) -> str | None:
    for key in ("toRecipients", "ccRecipients", "bccRecipients", "replyTo"):
        for recipient in message.get(key, []):
            address = (
                recipient.get("emailAddress", {}).get("address") if isinstance(recipient, dict) else None
            )
            if not isinstance(address, str) or "@" not in address:
                return f"{key} holds a recipient without an address"
    return None


class _Graph:
    """What Graph does with each route when no reply is scripted (under ``graph.lock``)."""

    def __init__(self, graph: FakeGraph, root: str) -> None:
        self.graph = graph
        self.root = root

    def send_mail(self, body: bytes, content_type: str) -> Reply:
        if content_type != "text/plain":
            return _invalid("The content type must be text/plain for MIME.", "ErrorMimeContentInvalid")
        try:
            base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return _invalid("Invalid base64 string for MIME content.", "ErrorMimeContentInvalidBase64String")
        return accepted()

    def draft(self, upn: str, body: bytes, content_type: str) -> Reply:
        message = _json_object(body) if content_type == "application/json" else None
        if message is None:
            return _invalid("The request body must be a JSON message.")
        kind = message.get("body", {}).get("contentType") if isinstance(message.get("body"), dict) else None
        if kind not in ("text", "html"):
            return _invalid("body.contentType must be text or html.")
        if problem := _check_recipients(message):
            return _invalid(problem)
        for header in message.get("internetMessageHeaders", []):
            name = str(header.get("name", ""))
            if not name.lower().startswith("x-"):
                return _invalid(
                    f"The internet message header name '{name}' should start with 'x-' or 'X-'.",
                    "InvalidInternetMessageHeader",
                )
        draft = Draft(self.graph._new_id("draft"), upn, message)
        self.graph.drafts[draft.id] = draft
        return created({"id": draft.id, "isDraft": True, **message})

    def attachment(self, draft: Draft, body: bytes) -> Reply:
        value = _json_object(body)
        if value is None or value.get("@odata.type") != "#microsoft.graph.fileAttachment":
            return _invalid("An attachment must be a #microsoft.graph.fileAttachment.")
        try:
            data = base64.b64decode(value.get("contentBytes", ""), validate=True)
        except (binascii.Error, ValueError):
            return _invalid("contentBytes is not base64.")
        if not value.get("name"):
            return _invalid("An attachment needs a name.")
        if len(data) >= SMALL_ATTACHMENT:
            return error(
                413, "RequestEntityTooLarge", "An attachment of 3 MB or more needs an upload session."
            )
        draft.attachments.append(
            Attached(
                value["name"],
                value.get("contentType", ""),
                data,
                bool(value.get("isInline")),
                value.get("contentId"),
            )
        )
        return created({"id": self.graph._new_id("attachment"), "size": len(data)})

    def upload_session(self, draft: Draft, body: bytes) -> Reply:
        value = _json_object(body)
        item = value.get("AttachmentItem") if value else None
        if not isinstance(item, dict) or item.get("attachmentType") != "file" or not item.get("name"):
            return _invalid("AttachmentItem needs attachmentType file, a name and a size.")
        size = item.get("size")
        if not isinstance(size, int) or size < SMALL_ATTACHMENT:
            return _invalid(
                "The attachment is smaller than an upload session takes.",
                "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
            )
        if size > MAX_ATTACHMENT:
            return _invalid("The attachment is larger than 150 MB.", "ErrorAttachmentSizeTooLarge")
        session = UploadSession(
            self.graph._new_id("session").replace("/", "_"), secrets.token_urlsafe(16), draft.id, item
        )
        self.graph.uploads[session.id] = session
        return created(
            {
                "uploadUrl": f"{self.root}/upload/{urllib.parse.quote(session.id)}?authtoken={session.token}",
                "expirationDateTime": "2030-01-01T00:00:00Z",
                "nextExpectedRanges": ["0-"],
            }
        )

    def upload(self, session: UploadSession, body: bytes, headers: dict[str, str]) -> Reply:
        if "Authorization" in headers:
            return _invalid("The upload URL is pre-authenticated: send no Authorization header.")
        if headers.get("Content-Type") != "application/octet-stream":
            return _invalid("Content-Type must be application/octet-stream.")
        match = CONTENT_RANGE.match(headers.get("Content-Range", ""))
        if match is None:
            return _invalid("Content-Range must be bytes {start}-{end}/{total}.")
        start, end, total = (int(group) for group in match.groups())
        size = session.item["size"]
        if total != size or start != len(session.received) or end - start + 1 != len(body) or end >= total:
            return _invalid(
                f"Content-Range {start}-{end}/{total} of {len(body)} bytes does not follow "
                f"{len(session.received)} of {size} bytes.",
                "InvalidRange",
            )
        if len(body) > MAX_RANGE or (end + 1 < total and len(body) % SLICE):
            return _invalid(f"A range of {len(body)} bytes: up to 4 MB, a multiple of 320 KiB but the last.")
        session.received += body
        if len(session.received) < size:
            return Reply(
                200,
                json.dumps(
                    {
                        "expirationDateTime": "2030-01-01T00:00:00Z",
                        "nextExpectedRanges": [f"{len(session.received)}-"],
                    }
                ).encode(),
                (("Content-Type", "application/json"),),
            )
        del self.graph.uploads[session.id]
        draft = self.graph.drafts.get(session.draft)
        if draft is None:
            return error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        item = session.item
        draft.attachments.append(
            Attached(
                item["name"],
                item.get("contentType", ""),
                bytes(session.received),
                bool(item.get("isInline")),
                item.get("contentId"),
                uploaded=True,
            )
        )
        location = f"{self.root}/attachments/{self.graph._new_id('attachment')}"
        return Reply(201, b"", (("Location", location),))

    def send(self, draft: Draft) -> Reply:
        message = draft.message
        if not any(message.get(key) for key in ("toRecipients", "ccRecipients", "bccRecipients")):
            return _invalid("At least one recipient is not valid.", "ErrorInvalidRecipients")
        del self.graph.drafts[draft.id]
        self.graph.messages.append(draft)
        return accepted()


def _handler(graph: FakeGraph) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Graph does
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms wait for an ACK between

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PUT(self) -> None:
            self._handle("PUT")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            headers = dict(self.headers.items())
            route, upn, reply = self._route(method, body, headers)
            mime: bytes | None = None
            if route == "sendMail":
                with suppress(binascii.Error, ValueError):
                    mime = base64.b64decode(body, validate=True)
            kept = b"" if route == "upload" else body
            request = Request(method, self.path, headers, kept, reply.status, mime, upn, route, len(body))
            with graph.lock:
                graph.requests.append(request)
            self._reply(reply)

        def _route(
            self, method: str, body: bytes, headers: dict[str, str]
        ) -> tuple[Route | None, str | None, Reply]:
            auth = headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
            content_type = headers.get("Content-Type", "").split(";")[0].strip()
            fake = _Graph(graph, graph.base_url.removesuffix("/v1.0"))
            if upload := UPLOAD.match(self.path):
                route: Route = "upload" if method == "PUT" else "cancel"
                scripted = graph._scripted(route)
                if scripted is not None:
                    return route, None, scripted
                with graph.lock:
                    session = graph.uploads.get(urllib.parse.unquote(upload["session"]))
                    if session is None or not secrets.compare_digest(session.token, upload["token"]):
                        return (
                            route,
                            None,
                            error(401, "InvalidAuthenticationToken", "Not a valid upload URL."),
                        )
                    if route == "cancel":
                        del graph.uploads[session.id]
                        return route, None, Reply(204)
                    return route, None, fake.upload(session, body, headers)
            mail, messages = SEND_MAIL.match(self.path), MESSAGES.match(self.path)
            found = mail or messages
            if found is None:
                return None, None, error(400, "BadRequest", f"Resource not found for '{self.path}'.")
            upn = urllib.parse.unquote(found["upn"])
            if mail is not None:
                route = "sendMail"
            elif messages is not None and messages["id"] is None:
                route = "draft"
            else:
                assert messages is not None
                route = _ITEM_ROUTES.get(messages["rest"] or "", "delete")
            if (route == "delete") != (method == "DELETE") or (method == "PUT"):
                return route, upn, error(405, "ErrorInvalidRequest", f"{method} is not allowed here.")
            if token is None or (graph.valid_tokens is not None and token not in graph.valid_tokens):
                return route, upn, error(401, "InvalidAuthenticationToken", "Access token validation failure")
            scripted = graph._scripted(route)
            if scripted is not None:
                return route, upn, scripted
            if len(body) > MAX_REQUEST:
                return route, upn, error(413, "RequestEntityTooLarge", "The request is larger than 4 MB.")
            with graph.lock:
                if route == "sendMail":
                    return route, upn, fake.send_mail(body, content_type)
                if route == "draft":
                    return route, upn, fake.draft(upn, body, content_type)
                assert messages is not None
                draft = graph.drafts.get(urllib.parse.unquote(messages["id"]))
                if draft is None or draft.upn != upn:
                    return route, upn, error(404, "ErrorItemNotFound", "The specified object was not found.")
                if route == "delete":
                    del graph.drafts[draft.id]
                    return route, upn, Reply(204)
                if route == "send":
                    return route, upn, fake.send(draft)
                if content_type != "application/json":
                    return route, upn, _invalid("Content-Type must be application/json.")
                if route == "attachment":
                    return route, upn, fake.attachment(draft, body)
                return route, upn, fake.upload_session(draft, body)

        def _reply(self, reply: Reply) -> None:
            if reply is DROP:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures anyway
            pass

    return Handler


@contextmanager
def fake_graph(folder: Path) -> Iterator[FakeGraph]:
    """Serve a fake Graph on ``https://127.0.0.1:PORT/v1.0`` until the block ends."""
    certificates = make_certificates(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.cert, certificates.key)
    graph = FakeGraph("", certificates.ca)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(graph))
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    graph.base_url = f"https://127.0.0.1:{server.server_address[1]}/v1.0"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-graph", daemon=True
    )
    thread.start()
    try:
        yield graph
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- for tests of the relay's Graph client -----------------------------------------------------------------

MAILBOX = "scanner@contoso.example"
ALICE = "alice@contoso.example"
BOB = "bob@contoso.example"
TOKEN = "eyJ0eXAiOiJKV1QiLCJub25jZSI6InNlY3JldC10b2tlbi0x"  # looks like a JWT; must never leak


@pytest.fixture(name="graph")
def graph_fixture(tmp_path: Path) -> Iterator[FakeGraph]:
    """The fixture ``graph``: a fake Graph for one test (import ``graph_fixture`` into a test module)."""
    with fake_graph(tmp_path / "graph") as running:
        yield running


class Tokens:
    """A token source: token N+1 after the N-th rejection; counts calls."""

    def __init__(self, *tokens: str, fail: Exception | None = None) -> None:
        self.tokens = list(tokens) or [TOKEN]
        self.fail = fail
        self.calls = 0
        self.rejections = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return self.tokens[min(self.rejections, len(self.tokens) - 1)]

    def rejected(self) -> None:
        self.rejections += 1


class Sleeps(list[float]):
    """The session's sleep: records each wait and yields, so Retry-After is proven without waiting."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)
        await asyncio.sleep(0)


def session_for(graph: FakeGraph, tokens: Tokens | None = None, **kwargs: Any) -> GraphSession:
    """A ``GraphSession`` for ``MAILBOX`` talking to ``graph``, trusting its CA, recording its sleeps."""
    from relaywizard.relay.graph import GraphSession, graph_context

    tokens = tokens or Tokens()
    options: dict[str, Any] = {
        "on_rejected": tokens.rejected,
        "base_url": graph.base_url,
        "context": graph_context(str(graph.ca_file)),
        "timeout": 10.0,
        "trust_env": False,
        "sleep": Sleeps(),
    }
    options.update(kwargs)
    return GraphSession(MAILBOX, tokens, **options)


async def send_one(session: GraphSession, content: bytes, rcpts: list[str] | None = None) -> Any:
    """Open the session, send ``content`` to ``rcpts`` (Alice by default), close it; the transaction."""
    await session.ready()
    try:
        return await session.send(MAILBOX, rcpts or [ALICE], [content])
    finally:
        await session.close()
