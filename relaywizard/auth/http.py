"""The HTTP session MSAL talks to the authority through.

It trusts the system's CA certificates plus ``--ca-file``, and nothing the environment says:
``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` (set by some corporate proxies' installers) would otherwise
replace the trust that was configured (requests lets them win over ``verify=``). Proxies from the
environment are still honoured, explicitly.
"""

from __future__ import annotations

import ssl
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from relaywizard.auth.errors import AuthorityTlsError, AuthorityUnreachable


def trust_context(ca_file: Path | None) -> ssl.SSLContext:
    """The system's CA certificates, and those of ``ca_file`` as well."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def authority_session(authority: str, ca_file: Path | None) -> Any:
    """A ``requests.Session`` for ``authority`` that verifies its certificate against ``trust_context``."""
    import requests
    from requests.adapters import HTTPAdapter

    class TrustAdapter(HTTPAdapter):
        def __init__(self, context: ssl.SSLContext) -> None:
            self._context = context
            super().__init__()

        def build_connection_pool_key_attributes(
            self, request: Any, verify: Any, cert: Any = None
        ) -> tuple[dict[str, Any], dict[str, Any]]:
            host, pool = super().build_connection_pool_key_attributes(request, verify, cert)
            pool.pop("ca_certs", None)
            pool.pop("ca_cert_dir", None)
            pool["ssl_context"] = self._context
            pool["cert_reqs"] = "CERT_REQUIRED"
            return host, pool

        def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
            # The context carries the trust; requests would add its own bundle (certifi) to it here.
            conn.cert_reqs = "CERT_REQUIRED"
            conn.ca_certs = None
            conn.ca_cert_dir = None

    session = requests.Session()
    session.trust_env = False
    session.verify = True
    session.mount("https://", TrustAdapter(trust_context(ca_file)))
    host = urlsplit(authority).hostname or ""
    if not urllib.request.proxy_bypass(host):
        session.proxies = {k: v for k, v in urllib.request.getproxies().items() if k in ("http", "https")}
    return session


def network_error(exc: BaseException, authority: str, ca_file: Path | None) -> AuthorityUnreachable | None:
    """One sentence for a requests error on the way to the authority; None for anything else."""
    import requests

    host = urlsplit(authority).netloc or authority
    if isinstance(exc, requests.exceptions.SSLError):
        trusted = f"the CA certificates in {ca_file} nor the system's" if ca_file else "the system's CAs"
        which = f"neither {trusted}" if ca_file else trusted
        reason = _tls_reason(exc)
        return AuthorityTlsError(
            f"The certificate of the sign-in authority {host} is not trusted by {which}"
            + (f" ({reason})." if reason else "."),
            hint="Give the CA that signed it with --ca-file (a TLS-inspecting proxy's CA, for example)."
            if not ca_file
            else f"Check that {ca_file} holds the CA that signed the authority's certificate.",
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return AuthorityUnreachable(
            f"The sign-in authority {host} did not answer in time.",
            hint="Check the internet connection and any proxy, then try again.",
        )
    if isinstance(exc, requests.exceptions.RequestException):
        return AuthorityUnreachable(
            f"The sign-in authority {host} could not be reached.",
            hint="Check the internet connection, the proxy and the --authority URL.",
        )
    return None


def _tls_reason(exc: BaseException) -> str:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return str(current.verify_message or "").strip()
        for arg in getattr(current, "args", ()):
            if isinstance(arg, BaseException):
                found = _tls_reason(arg)
                if found:
                    return found
        current = current.__cause__ or current.__context__
    return ""
