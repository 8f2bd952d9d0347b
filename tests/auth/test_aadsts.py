"""Every row of the AADSTS and OAuth error tables becomes one readable sentence with a hint."""

from __future__ import annotations

import pytest

from relaywizard.auth import aadsts
from relaywizard.auth.errors import OAuthError, SignInRequired
from relaywizard.auth.model import OAuthSettings

SETTINGS = OAuthSettings(
    kind="oauth-delegated", tenant="contoso.onmicrosoft.com", client_id="app-1234", user="scanner@contoso.com"
)


def _one_sentence(error: OAuthError) -> None:
    assert error.message.endswith(".")
    assert error.message.count(". ") == 0, error.message
    assert "{" not in error.message + error.hint
    assert error.hint.strip()
    assert "\n" not in error.one_line()


@pytest.mark.parametrize("number", sorted(aadsts.AADSTS))
def test_each_aadsts_code_is_explained(number: str) -> None:
    answer = {
        "error": "invalid_grant",
        "error_description": f"AADSTS{number}: Something went wrong. Trace ID: abc Correlation ID: def",
        "error_codes": [int(number)],
    }
    error = aadsts.explain(answer, SETTINGS)
    cause = aadsts.AADSTS[number]
    assert error.code == f"AADSTS{number}"
    assert error.title == cause.title
    assert f"(AADSTS{number})" in error.message
    assert isinstance(error, SignInRequired) == cause.sign_in
    _one_sentence(error)


@pytest.mark.parametrize("error_code", sorted(aadsts.OAUTH_ERRORS))
def test_each_oauth_error_is_explained(error_code: str) -> None:
    error = aadsts.explain({"error": error_code, "error_description": "no number here"}, SETTINGS)
    assert error.code == error_code
    assert error.title == aadsts.OAUTH_ERRORS[error_code].title
    _one_sentence(error)


def test_the_number_is_found_in_the_description_without_error_codes() -> None:
    error = aadsts.explain(
        {"error": "invalid_client", "error_description": "AADSTS7000222: expired"}, SETTINGS
    )
    assert error.code == "AADSTS7000222"
    assert "has expired" in error.message


def test_the_number_wins_over_the_oauth_error() -> None:
    error = aadsts.explain({"error": "invalid_grant", "error_codes": [53003]}, SETTINGS)
    assert "Conditional Access" in error.message
    assert not isinstance(error, SignInRequired)


def test_an_unknown_answer_keeps_the_authoritys_first_sentence() -> None:
    answer = {
        "error": "server_error",
        "error_description": "AADSTS9999999: The moon is in the wrong phase. Trace ID: 1 Correlation ID: 2",
    }
    error = aadsts.explain(answer, SETTINGS)
    assert error.code == "AADSTS9999999"
    assert error.message == (
        "The authority refused the sign-in for scanner@contoso.com (AADSTS9999999): "
        "The moon is in the wrong phase."
    )
    _one_sentence(error)


def test_an_empty_answer_is_still_a_sentence() -> None:
    error = aadsts.explain({}, SETTINGS)
    assert "no error code" in error.message
    _one_sentence(error)
