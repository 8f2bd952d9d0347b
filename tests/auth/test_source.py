"""``TokenSource`` driving MSAL's real code paths against a fake HTTPS authority on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from relaywizard.auth.errors import AuthorityTlsError, OAuthError, SignInRequired
from relaywizard.auth.model import OAuthSettings
from relaywizard.auth.source import DeviceCode, TokenSource
from relaywizard.core.secrets import SecretStore
from tests.core.test_secrets import MemoryKeyring
from tests.lab.authority import DEFAULT_SECRET, FakeAuthority, stand_in_browser


def settings(fake: FakeAuthority, kind: str = "oauth-app", **changes: object) -> OAuthSettings:
    values: dict[str, object] = {
        "kind": kind,
        "tenant": fake.tenant,
        "client_id": fake.client_id,
        "user": fake.app_user if kind == "oauth-app" else fake.device_user,
        "authority": fake.url,
        "ca_file": fake.ca_file,
        "profile": "lab",
    }
    values.update(changes)
    return OAuthSettings(**values)  # type: ignore[arg-type]


def app_source(fake: FakeAuthority, secret: str = DEFAULT_SECRET, **changes: object) -> TokenSource:
    return TokenSource(settings(fake, **changes), credential=secret)


def delegated_source(fake: FakeAuthority, store: SecretStore, **changes: object) -> TokenSource:
    return TokenSource(settings(fake, "oauth-delegated", **changes), store=store)


async def sign_in(source: TokenSource) -> tuple[str, list[DeviceCode]]:
    shown: list[DeviceCode] = []
    token = await source.sign_in_with_device_code(shown.append)
    return token, shown


# -- client credentials ------------------------------------------------------------------------------------


async def test_client_credentials_fetch_one_token_and_share_it(authority: FakeAuthority) -> None:
    source = app_source(authority)
    tokens = await asyncio.gather(*(source.token() for _ in range(5)))
    assert set(tokens) == {authority.issued[0]}
    assert authority.grants() == ["client_credentials"]
    form = next(seen.form for seen in authority.requests if seen.grant == "client_credentials")
    assert form["scope"] == "https://outlook.office365.com/.default"


async def test_a_token_near_its_expiry_is_replaced(authority: FakeAuthority) -> None:
    authority.lifetime = 200  # under MSAL's and the source's five minutes: expired at once
    source = app_source(authority)
    first = await source.token()
    second = await source.token()
    assert first != second
    assert authority.grants() == ["client_credentials", "client_credentials"]


async def test_an_invalidated_token_is_fetched_again(authority: FakeAuthority) -> None:
    source = app_source(authority)
    first = await source.token()
    assert await source.token() == first
    source.invalidate()
    assert await source.token() != first
    assert len(authority.grants()) == 2


async def test_a_wrong_client_secret_is_explained(authority: FakeAuthority) -> None:
    source = app_source(authority, secret="the-secret-id-not-its-value")
    with pytest.raises(OAuthError) as caught:
        await source.token()
    assert caught.value.code == "AADSTS7000215"
    assert "client secret" in caught.value.message
    assert "Value" in caught.value.hint
    assert "the-secret-id-not-its-value" not in caught.value.one_line()


async def test_an_expired_client_secret_is_explained(authority: FakeAuthority) -> None:
    authority.refuse(7000222, "invalid_client")
    with pytest.raises(OAuthError, match="has expired") as caught:
        await app_source(authority).token()
    assert caught.value.title == "Client secret expired"


async def test_an_untrusted_authority_names_the_ca(authority: FakeAuthority, tmp_path: Path) -> None:
    other = FakeAuthority(tmp_path / "other").start()
    try:
        source = app_source(authority, ca_file=other.ca_file)  # trusts only the other authority's CA
        with pytest.raises(AuthorityTlsError) as caught:
            await source.token()
    finally:
        other.stop()
    assert str(other.ca_file) in caught.value.message
    assert isinstance(caught.value, ConnectionError)


async def test_the_environment_cannot_replace_the_trusted_ca(
    authority: FakeAuthority, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    elsewhere = FakeAuthority(tmp_path / "elsewhere")
    elsewhere.start()
    elsewhere.stop()
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(name, str(elsewhere.ca_file))
    assert await app_source(authority).token() == authority.issued[0]


async def test_a_wrong_tenant_is_explained(authority: FakeAuthority) -> None:
    source = app_source(authority, authority=f"{authority.base}/no-such-tenant")
    with pytest.raises(OAuthError, match="did not answer as an OpenID sign-in authority"):
        await source.token()


async def test_an_app_source_needs_its_credential(authority: FakeAuthority) -> None:
    with pytest.raises(OAuthError, match="client secret or certificate"):
        TokenSource(settings(authority))


# -- delegated: device code, the keyring cache, refresh ------------------------------------------------------


async def test_device_code_sign_in_then_silent_tokens_from_the_keyring(authority: FakeAuthority) -> None:
    authority.pending_polls = 1  # the person has not entered the code yet at the first poll
    keyring = MemoryKeyring()
    token, shown = await sign_in(delegated_source(authority, SecretStore(keyring)))
    assert token == authority.issued[-1]
    assert shown[0].user_code in shown[0].message
    assert shown[0].verification_uri == f"{authority.base}/devicelogin"
    device_form = next(seen.form for seen in authority.requests if seen.path.endswith("/devicecode"))
    assert set(device_form["scope"].split()) == {
        "https://outlook.office.com/SMTP.Send",
        "offline_access",
        "openid",
        "profile",
    }
    stored = json.loads(keyring.items[("relaywizard", "oauth-cache-lab")])
    assert stored["msal"]["RefreshToken"]
    assert "AccessToken" not in stored["msal"]
    assert token not in json.dumps(stored)

    # A new process: the cache comes from the keyring; the access token is not in it, the refresh token is.
    later = delegated_source(authority, SecretStore(keyring))
    assert await later.signed_in_account() == authority.device_user
    fresh = await later.token()
    assert fresh == authority.issued[-1] != token
    assert authority.grants()[-1] == "refresh_token"
    assert later.last_refresh is not None


async def test_a_refused_refresh_is_explained(authority: FakeAuthority) -> None:
    keyring = MemoryKeyring()
    await sign_in(delegated_source(authority, SecretStore(keyring)))
    authority.refuse(700082, grant="refresh_token")
    with pytest.raises(SignInRequired) as caught:
        await delegated_source(authority, SecretStore(keyring)).token()
    assert caught.value.code == "AADSTS700082"
    assert "not used for 90 days" in caught.value.message
    assert "relaywizard signin" in caught.value.hint


async def test_a_revoked_refresh_token_is_explained(authority: FakeAuthority) -> None:
    keyring = MemoryKeyring()
    await sign_in(delegated_source(authority, SecretStore(keyring)))
    authority.revoke_refresh_tokens()
    with pytest.raises(SignInRequired, match="Conditional Access"):
        await delegated_source(authority, SecretStore(keyring)).token()


async def test_without_a_sign_in_the_source_says_to_sign_in(authority: FakeAuthority) -> None:
    with pytest.raises(SignInRequired, match=r"Nobody has signed in for oauth@lab\.test"):
        await delegated_source(authority, SecretStore(MemoryKeyring())).token()


async def test_another_account_signing_in_is_refused_and_forgotten(authority: FakeAuthority) -> None:
    keyring = MemoryKeyring()
    authority.device_user = "scanner@lab.test"
    with pytest.raises(SignInRequired, match=r"scanner@lab\.test signed in, but the mailbox to send as is"):
        await sign_in(delegated_source(authority, SecretStore(keyring), user="oauth@lab.test"))
    assert ("relaywizard", "oauth-cache-lab") not in keyring.items


async def test_a_cache_of_another_account_is_explained(authority: FakeAuthority) -> None:
    keyring = MemoryKeyring()
    await sign_in(delegated_source(authority, SecretStore(keyring)))
    with pytest.raises(SignInRequired, match=r"saved sign-in is for oauth@lab\.test, not alice@lab\.test"):
        await delegated_source(authority, SecretStore(keyring), user="alice@lab.test").token()


async def test_device_code_sign_in_can_be_cancelled(authority: FakeAuthority) -> None:
    authority.pending_polls = 1000
    shown = asyncio.Event()
    source = delegated_source(authority, SecretStore(MemoryKeyring()))
    task = asyncio.create_task(source.sign_in_with_device_code(lambda _code: shown.set()))
    await asyncio.wait_for(shown.wait(), 10)
    await asyncio.sleep(0.2)  # polling now
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_declined_device_sign_in_is_explained(authority: FakeAuthority) -> None:
    authority.queue(400, {"error": "authorization_declined", "error_description": "declined"}, grant=None)
    with pytest.raises(SignInRequired, match="declined"):
        await sign_in(delegated_source(authority, SecretStore(MemoryKeyring())))


async def test_throttling_is_explained(authority: FakeAuthority) -> None:
    authority.queue(
        429,
        {"error": "temporarily_unavailable", "error_description": "AADSTS50196: too many requests"},
        headers={"Retry-After": "1"},
    )
    with pytest.raises(OAuthError) as caught:
        await app_source(authority).token()
    assert "AADSTS50196" in caught.value.message


async def test_interactive_sign_in_through_a_browser(
    authority: FakeAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MSAL's loopback redirect, with a stand-in browser that follows the authority's redirect."""
    import webbrowser

    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", stand_in_browser(authority, opened))
    monkeypatch.setenv("BROWSER", "none-here")  # keep MSAL from preferring an installed Edge
    keyring = MemoryKeyring()
    token = await delegated_source(authority, SecretStore(keyring)).sign_in_interactively(wait=20)
    assert token == authority.issued[-1]
    assert opened[0].startswith(f"{authority.url}/oauth2/v2.0/authorize?")
    assert "login_hint=oauth%40lab.test" in opened[0]
    assert authority.grants() == ["authorization_code"]
    assert await delegated_source(authority, SecretStore(keyring)).signed_in_account() == "oauth@lab.test"


async def test_an_unfinished_browser_sign_in_is_explained(
    authority: FakeAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    import webbrowser

    monkeypatch.setattr(webbrowser, "open", lambda *args, **kwargs: False)  # no browser here
    monkeypatch.setenv("BROWSER", "none-here")
    source = delegated_source(authority, SecretStore(MemoryKeyring()))
    with pytest.raises(SignInRequired, match="not completed within 1 seconds") as caught:
        await source.sign_in_interactively(wait=1)
    assert "without --browser" in caught.value.hint


async def test_a_certificate_credential_signs_in(authority: FakeAuthority) -> None:
    import trustme

    from relaywizard.auth.certificate import sha1_thumbprint
    from relaywizard.auth.model import ClientCertificate
    from relaywizard.cli.oauth import app_credential

    issued = trustme.CA(key_type=trustme.KeyType.RSA).issue_cert(
        "relaywizard-app", key_type=trustme.KeyType.RSA
    )
    key = issued.private_key_pem.bytes().decode()
    certificate = issued.cert_chain_pems[0].bytes().decode()
    credential = app_credential(key + certificate)  # one keyring secret holding both
    assert isinstance(credential, ClientCertificate)
    authority.thumbprints.add(sha1_thumbprint(certificate))
    source = TokenSource(settings(authority), credential=credential)
    assert await source.token() == authority.issued[-1]
    assert "PRIVATE KEY" not in repr(credential)

    authority.thumbprints.clear()  # the certificate is not (or no longer) on the app registration
    with pytest.raises(OAuthError) as caught:
        await TokenSource(settings(authority), credential=credential).token()
    assert caught.value.code == "AADSTS700027"
    assert "not one uploaded to its app registration" in caught.value.message
