"""Errors of OAuth sign-in, below ``RelayWizardError`` (core/errors.py):

    OAuthError                      the authority refused, or the answer could not be used
    ├── SignInRequired              no usable sign-in is cached: a person has to sign in (again)
    └── AuthorityUnreachable        no answer from the authority (also a ``ConnectionError``)
        └── AuthorityTlsError       its certificate is not trusted by the CA that was configured

Each carries ``code``: the ``AADSTS`` number or OAuth error (``invalid_grant``) behind it, or "".
"""

from __future__ import annotations

from relaywizard.core.errors import RelayWizardError


class OAuthError(RelayWizardError):
    default_title = "Sign-in refused"

    def __init__(self, message: str, *, hint: str = "", title: str | None = None, code: str = "") -> None:
        super().__init__(message, hint=hint, title=title)
        self.code = code


class SignInRequired(OAuthError):
    default_title = "Sign-in needed"


class AuthorityUnreachable(OAuthError, ConnectionError):
    default_title = "Sign-in service unreachable"


class AuthorityTlsError(AuthorityUnreachable):
    default_title = "Sign-in service not trusted"
