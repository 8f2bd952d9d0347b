"""A tiny OAuth 2.0 token introspection endpoint (RFC 7662) for Dovecot's XOAUTH2 check.

Run as its own process by the lab: ``python introspection.py PORT TOKENS_FILE``. Tokens live in a JSON
file (``{"<token>": {"username": "...", "exp": <unix time>}}``) that the tests write; it is re-read on
every request, so a token is valid the moment it is written and revoked the moment it is removed.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def _lookup(tokens_file: Path, token: str) -> dict[str, object]:
    try:
        tokens = json.loads(tokens_file.read_text())
    except (OSError, ValueError):
        tokens = {}
    entry = tokens.get(token)
    if not isinstance(entry, dict) or float(entry.get("exp", 0)) < time.time():
        return {"active": False}
    return {"active": True, "username": entry["username"], "exp": int(entry["exp"]), "scope": "SMTP.Send"}


def serve(port: int, tokens_file: Path) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            token = (form.get("token") or [""])[0]
            if not token:
                auth = self.headers.get("Authorization", "")
                token = auth.removeprefix("Bearer ").strip()
            body = json.dumps(_lookup(tokens_file, token)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST

        def log_message(self, format: str, *args: object) -> None:
            sys.stderr.write("introspection: " + (format % args) + "\n")

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]))
