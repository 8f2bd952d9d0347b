"""A ``TokenSource`` token really authenticating at the lab's Dovecot (XOAUTH2 with token introspection),
and a token the server refuses replaced through ``invalidate`` (what the relay's forwarder calls)."""

from __future__ import annotations

import base64
import ssl

import aiosmtplib
import pytest

from relaywizard.auth.model import OAuthSettings
from relaywizard.auth.source import TokenSource
from relaywizard.relay.credentials import TokenCredentials
from tests.lab.authority import DEFAULT_SECRET, FakeAuthority
from tests.lab.lab import Lab

pytestmark = pytest.mark.lab


async def xoauth2(lab: Lab, user: str, token: str) -> int:
    context = ssl.create_default_context(cafile=str(lab.ca_file))
    async with aiosmtplib.SMTP(
        hostname=lab.host, port=lab.submission_port, start_tls=True, tls_context=context, timeout=10
    ) as smtp:
        blob = base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode()).decode()
        response = await smtp.execute_command(b"AUTH", b"XOAUTH2", blob.encode())
        if response.code == 334:
            response = await smtp.execute_command(b"")
        return response.code


async def test_a_refused_token_is_replaced_after_invalidate(lab: Lab, lab_authority: FakeAuthority) -> None:
    settings = OAuthSettings(
        kind="oauth-app",
        tenant=lab_authority.tenant,
        client_id=lab_authority.client_id,
        user="app@lab.test",
        authority=lab_authority.url,
        ca_file=lab_authority.ca_file,
    )
    source = TokenSource(settings, credential=DEFAULT_SECRET)
    credentials = TokenCredentials(settings.user, source.token, on_rejected=source.invalidate)
    first = await credentials.secret()
    assert await xoauth2(lab, settings.user, first) == 235

    lab.revoke_token(first)  # revoked by the tenant before its expiry
    assert await credentials.secret() == first  # still held: the source cannot know
    assert await xoauth2(lab, settings.user, first) == 535
    credentials.rejected()
    second = await credentials.secret()
    assert second != first
    assert await xoauth2(lab, settings.user, second) == 235
