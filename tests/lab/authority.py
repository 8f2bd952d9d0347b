"""A fake OpenID / OAuth 2.0 authority on https://localhost:PORT/<tenant>, for MSAL's real code paths.

It serves what MSAL asks of Entra ID: OpenID discovery, the device authorization endpoint, an authorize
endpoint (redirecting straight back with a code, for the interactive flow) and the token endpoint with
the client-credentials, device-code, authorization-code and refresh-token grants. Access tokens come from
``issue(username, lifetime)``: with the lab's ``issue_token`` they really authenticate at its Dovecot.

Tests script it: ``lifetime`` (under 300 s forces MSAL to refresh), ``token_user`` (issue tokens for
another user), ``pending_polls`` (device code answers ``authorization_pending`` that many times),
``queue(...)`` (the next answers of the token endpoint, e.g. ``invalid_grant`` with an AADSTS code, or
429 with Retry-After), ``revoke_refresh_tokens()``. Every request is recorded in ``requests``.
Shown working with msal 1.39 (see ../shared/oauth-notes.md for the pitfalls it avoids).
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme

DEFAULT_TENANT = "lab-tenant"
DEFAULT_CLIENT_ID = "11111111-2222-3333-4444-555555555555"
DEFAULT_SECRET = "lab-client-secret-value"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_jwt(claims: dict[str, Any]) -> str:
    """An ``alg: none`` JWT: MSAL reads an ID token's claims without checking a signature."""
    header = _b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64url(json.dumps(claims).encode())}."


def jwt_header(token: str) -> dict[str, Any]:
    head = token.split(".")[0]
    parsed: dict[str, Any] = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    return parsed


@dataclass
class Scripted:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    grant: str | None = None
    """Only for this grant_type (None: the next token request of any grant)."""


@dataclass
class Seen:
    method: str
    path: str
    form: dict[str, str]
    headers: dict[str, str]

    @property
    def grant(self) -> str:
        return self.form.get("grant_type", "")


class FakeAuthority:
    """Start with ``start()``, stop with ``stop()``; ``url`` is the authority to give MSAL."""

    def __init__(
        self,
        folder: Path,
        *,
        issue: Callable[[str, float], str] | None = None,
        tenant: str = DEFAULT_TENANT,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_SECRET,
        app_user: str = "app@lab.test",
        device_user: str = "oauth@lab.test",
    ) -> None:
        self.folder = folder
        self.tenant = tenant
        self.client_id = client_id
        self.client_secret = client_secret
        self.app_user = app_user
        """Whose mailbox app-only tokens are good for (the lab's introspection needs a username)."""
        self.device_user = device_user
        """Who signs in through the device-code and interactive flows."""
        self.thumbprints: set[str] = set()
        """SHA-1 thumbprints (upper-case hex) of certificates registered for the app."""
        self.lifetime = 3600.0
        self.token_user: str | None = None
        """Issue access tokens for this user instead of the right one (another user's token)."""
        self.pending_polls = 0
        self.requests: list[Seen] = []
        self.issued: list[str] = []
        """Every access token handed out, in order."""
        self._issue = issue or (lambda user, lifetime: "fake-" + secrets.token_urlsafe(24))
        self._script: list[Scripted] = []
        self._devices: dict[str, int] = {}
        self._codes: dict[str, str] = {}  # authorization code -> the nonce its ID token must carry
        self._refresh: dict[str, str] = {}  # refresh token -> user
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.ca_file = folder / "authority-ca.pem"
        self.port = 0

    # -- scripting -----------------------------------------------------------------------------------

    def queue(
        self,
        status: int,
        body: dict[str, Any],
        *,
        headers: dict[str, str] | None = None,
        grant: str | None = None,
    ) -> None:
        """Answer the next token request (of ``grant``, if given) with this instead."""
        with self._lock:
            self._script.append(Scripted(status, body, headers or {}, grant))

    def refuse(self, aadsts: int, error: str = "invalid_grant", *, grant: str | None = None) -> None:
        """The next token request (of ``grant``) gets Entra's 400 answer for ``AADSTS<aadsts>``."""
        self.queue(
            400,
            {
                "error": error,
                "error_description": f"AADSTS{aadsts}: scripted by the test. Trace ID: 0 Correlation ID: 0",
                "error_codes": [aadsts],
            },
            grant=grant,
        )

    def revoke_refresh_tokens(self) -> None:
        with self._lock:
            self._refresh.clear()

    def trust_with(self, *ca_files: Path) -> Path:
        """One PEM file trusting this authority and ``ca_files`` (the lab's CA), for one ``--ca-file``."""
        bundle = self.folder / "trust.pem"
        bundle.write_bytes(b"".join(path.read_bytes() for path in (self.ca_file, *ca_files)))
        return bundle

    def cli_args(self) -> list[str]:
        """``--tenant``, ``--client-id`` and ``--authority`` for a relaywizard command signing in here."""
        return ["--tenant", self.tenant, "--client-id", self.client_id, "--authority", self.url]

    def grants(self) -> list[str]:
        return [seen.grant for seen in self.requests if seen.path.endswith("/token")]

    # -- life cycle ----------------------------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/{self.tenant}"

    def start(self) -> FakeAuthority:
        ca = trustme.CA(organization_name="relaywizard fake authority CA")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
        self.folder.mkdir(parents=True, exist_ok=True)
        ca.cert_pem.write_to_path(str(self.ca_file))
        authority = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                authority._handle(self, "GET")

            def do_POST(self) -> None:
                authority._handle(self, "POST")

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-authority", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- the endpoints -------------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        parsed = urllib.parse.urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length).decode() if length else ""
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body or parsed.query).items()}
        self.requests.append(Seen(method, parsed.path, form, dict(request.headers.items())))
        path = parsed.path
        prefix = f"/{self.tenant}"
        if path == f"{prefix}/v2.0/.well-known/openid-configuration":
            self._reply(request, 200, self._discovery())
        elif not path.startswith(prefix + "/"):
            self._reply(
                request,
                400,
                {
                    "error": "invalid_tenant",
                    "error_description": "AADSTS90002: Tenant not found.",
                    "error_codes": [90002],
                },
            )
        elif path.endswith("/oauth2/v2.0/devicecode"):
            self._reply(request, 200, self._device_code())
        elif path.endswith("/oauth2/v2.0/authorize"):
            self._authorize(request, form)
        elif path.endswith("/oauth2/v2.0/token"):
            status, answer, headers = self._token(form)
            self._reply(request, status, answer, headers)
        else:
            self._reply(request, 404, {"error": "not_found"})

    @staticmethod
    def _reply(
        request: BaseHTTPRequestHandler,
        status: int,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(data)

    def _discovery(self) -> dict[str, Any]:
        oauth = f"{self.url}/oauth2/v2.0"
        return {
            "issuer": f"{self.url}/v2.0",
            "authorization_endpoint": f"{oauth}/authorize",
            "token_endpoint": f"{oauth}/token",
            "device_authorization_endpoint": f"{oauth}/devicecode",
            "response_types_supported": ["code"],
        }

    def _device_code(self) -> dict[str, Any]:
        device_code = secrets.token_urlsafe(16)
        user_code = secrets.token_hex(4).upper()
        with self._lock:
            self._devices[device_code] = self.pending_polls
        link = f"{self.base}/devicelogin"
        return {
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": link,
            "expires_in": 900,
            "interval": 1,
            "message": f"To sign in, use a web browser to open the page {link} and enter the code "
            f"{user_code} to authenticate.",
        }

    def _authorize(self, request: BaseHTTPRequestHandler, form: dict[str, str]) -> None:
        code = secrets.token_urlsafe(16)
        with self._lock:
            self._codes[code] = form.get("nonce", "")
        query = urllib.parse.urlencode({"code": code, "state": form.get("state", "")})
        request.send_response(302)
        request.send_header("Location", f"{form['redirect_uri']}?{query}")
        request.send_header("Content-Length", "0")
        request.end_headers()

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
        grant = form.get("grant_type", "")
        with self._lock:
            for i, scripted in enumerate(self._script):
                if scripted.grant in (None, grant):
                    del self._script[i]
                    return scripted.status, scripted.body, scripted.headers
        if form.get("client_id") != self.client_id:
            return _error(400, "unauthorized_client", 700016, "Application not found in the directory.")
        if grant == "client_credentials":
            if not self._client_authenticated(form):
                if "client_assertion" in form:
                    return _error(
                        401, "invalid_client", 700027, "Client assertion failed signature validation."
                    )
                return _error(401, "invalid_client", 7000215, "Invalid client secret provided.")
            return 200, self._tokens(self.app_user, user_tokens=False), {}
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            with self._lock:
                pending = self._devices.get(form.get("device_code", ""))
                if pending is None:
                    return _error(400, "bad_verification_code", 70000, "Unknown device code.")
                if pending > 0:
                    self._devices[form["device_code"]] = pending - 1
                    return _error(400, "authorization_pending", 70016, "Pending end-user authorization.")
                del self._devices[form["device_code"]]
            return 200, self._tokens(self.device_user, user_tokens=True), {}
        if grant == "authorization_code":
            with self._lock:
                nonce = self._codes.pop(form.get("code", ""), None)
            if nonce is None:
                return _error(400, "invalid_grant", 70000, "The provided authorization code is invalid.")
            return 200, self._tokens(self.device_user, user_tokens=True, nonce=nonce), {}
        if grant == "refresh_token":
            with self._lock:
                user = self._refresh.pop(form.get("refresh_token", ""), None)
            if user is None:
                return _error(400, "invalid_grant", 70043, "The refresh token has expired or is invalid.")
            return 200, self._tokens(user, user_tokens=True), {}
        return _error(400, "unsupported_grant_type", 70003, f"Unsupported grant type {grant!r}.")

    def _client_authenticated(self, form: dict[str, str]) -> bool:
        if "client_secret" in form:
            return form["client_secret"] == self.client_secret
        assertion = form.get("client_assertion")
        if assertion:
            return str(jwt_header(assertion).get("x5t", "")).rstrip("=") in {
                _b64url(bytes.fromhex(t)) for t in self.thumbprints
            }
        return False

    def _tokens(self, user: str, *, user_tokens: bool, nonce: str = "") -> dict[str, Any]:
        lifetime = self.lifetime
        access_token = self._issue(self.token_user or user, lifetime)
        self.issued.append(access_token)
        answer: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": access_token,
            "expires_in": int(lifetime),
            "ext_expires_in": int(lifetime),
        }
        if not user_tokens:
            return answer  # no client_info for client credentials (oauth-notes.md, pitfall 8)
        uid = f"uid-{user.split('@')[0]}"
        refresh_token = "rt-" + secrets.token_urlsafe(24)
        with self._lock:
            self._refresh[refresh_token] = user
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": f"{self.url}/v2.0",
            "aud": self.client_id,
            "sub": uid,
            "oid": uid,
            "tid": self.tenant,
            "preferred_username": user,
            "name": user.split("@")[0],
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
        }
        if nonce:  # MSAL checks the interactive flow's nonce
            claims["nonce"] = nonce
        answer.update(
            scope="https://outlook.office.com/SMTP.Send openid profile offline_access",
            refresh_token=refresh_token,
            client_info=_b64url(json.dumps({"uid": uid, "utid": self.tenant}).encode()),
            id_token=unsigned_jwt(claims),
        )
        return answer


def _error(status: int, error: str, aadsts: int, text: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    return (
        status,
        {"error": error, "error_description": f"AADSTS{aadsts}: {text}", "error_codes": [aadsts]},
        {},
    )


def stand_in_browser(authority: FakeAuthority, opened: list[str]) -> Callable[..., bool]:
    """A ``webbrowser.open`` for MSAL's browser sign-in: records the URL and, in a thread, does what a
    person's browser would: follows the authority's redirect and posts the code to MSAL's loopback
    listener (MSAL asks for ``response_mode=form_post``)."""
    import requests

    def follow(url: str) -> None:
        answer = requests.get(url, verify=str(authority.ca_file), allow_redirects=False, timeout=10)
        target = urllib.parse.urlsplit(answer.headers["Location"])
        form = dict(urllib.parse.parse_qsl(target.query))
        requests.post(target._replace(query="").geturl(), data=form, timeout=10)

    def browser(url: str, *args: object, **kwargs: object) -> bool:
        opened.append(url)
        threading.Thread(target=follow, args=(url,), daemon=True).start()
        return True

    return browser
