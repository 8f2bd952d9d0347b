"""A fake Microsoft Graph ``sendMail`` endpoint on 127.0.0.1 over HTTPS, answering as a test scripts it.

It follows Graph's documented answers: ``202 Accepted`` with an empty body, ``429`` with ``Retry-After``,
``401`` for a token it does not like, and errors as ``{"error": {"code": ..., "message": ...}}``. Each
request is recorded (path, headers, the decoded MIME message) so tests can check what the relay sent.
Replies come from a script, in order; when the script is empty the endpoint answers ``202``. A reply of
``DROP`` closes the connection without answering, as a broken network would.

It runs ``http.server`` in a thread of its own, as a real server would be another process: the relay's
client under test stays on the test's event loop. TLS comes from the lab's trustme CA (``tests/lab/tls``).
"""

from __future__ import annotations

import base64
import binascii
import http.server
import json
import re
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.lab.tls import make_certificates

SEND_MAIL = re.compile(r"^/v1\.0/users/(?P<upn>[^/]+)/sendMail$")


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


@dataclass
class Request:
    """One request as the endpoint saw it; ``mime`` is the decoded message (None if not valid base64)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    mime: bytes | None = None
    upn: str | None = None


@dataclass
class FakeGraph:
    base_url: str
    ca_file: Path
    script: deque[Reply] = field(default_factory=deque)
    requests: list[Request] = field(default_factory=list)
    valid_tokens: set[str] | None = None
    """When set, a bearer token outside it gets 401 (before the script is consulted)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, *replies: Reply) -> None:
        """Script the next answers, in order (after any still scripted)."""
        with self.lock:
            self.script.extend(replies)

    @property
    def sent(self) -> list[bytes]:
        """The MIME messages Graph accepted (answered 202), in order."""
        with self.lock:
            return [r.mime for r in self.requests if r.status == 202 and r.mime is not None]

    def wait_for_sent(self, count: int, within: float = 10.0) -> list[bytes]:
        deadline = time.monotonic() + within
        while len(self.sent) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"Graph got {len(self.sent)} message(s), not {count}: {self.requests}")
            time.sleep(0.02)
        return self.sent

    def _next(self, token: str | None) -> Reply:
        with self.lock:
            if self.valid_tokens is not None and token not in self.valid_tokens:
                return error(401, "InvalidAuthenticationToken", "Access token validation failure.")
            return self.script.popleft() if self.script else accepted()


def _handler(graph: FakeGraph) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Graph does

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            auth = self.headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
            match = SEND_MAIL.match(self.path)
            reply = self._route(match, token)
            mime: bytes | None = None
            with suppress(binascii.Error, ValueError):
                mime = base64.b64decode(body, validate=True)
            request = Request(
                "POST", self.path, dict(self.headers.items()), body, reply.status, mime,
                match["upn"] if match else None,
            )  # fmt: skip
            with graph.lock:
                graph.requests.append(request)
            self._reply(reply)

        def _route(self, match: re.Match[str] | None, token: str | None) -> Reply:
            if match is None:
                return error(400, "BadRequest", f"Resource not found for the segment '{self.path}'.")
            if self.headers.get("Content-Type", "").split(";")[0].strip() != "text/plain":
                return error(400, "ErrorMimeContentInvalid", "The content type must be text/plain for MIME.")
            return graph._next(token)

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
    thread = threading.Thread(target=server.serve_forever, name="fake-graph", daemon=True)
    thread.start()
    try:
        yield graph
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
