"""Errors carry a title, a message and a hint, and print as one line."""

from __future__ import annotations

from relaywizard.core import errors


def test_one_line_joins_message_and_hint() -> None:
    exc = errors.KeyringLocked("The keyring is locked.", hint="Unlock it, then try again.")
    assert exc.title == "Keyring locked"
    assert exc.one_line() == "The keyring is locked. Unlock it, then try again."
    assert str(exc) == "The keyring is locked."


def test_title_can_be_given_and_hint_is_optional() -> None:
    exc = errors.UsageError("'x' is not a domain name", title="Check the domain")
    assert exc.title == "Check the domain"
    assert exc.one_line() == "'x' is not a domain name"


def test_every_error_is_a_relaywizard_error_with_its_own_title() -> None:
    classes = [
        c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.RelayWizardError)
    ]
    assert len(classes) >= 10
    for cls in classes:
        assert cls.__name__ in errors.__doc__ or cls is errors.RelayWizardError, cls
    titles = [c.default_title for c in classes]
    assert len(titles) == len(set(titles))


def test_validation_error_names_its_field() -> None:
    exc = errors.SettingsValidationError("relay.rate", "relay.rate must be a whole number")
    assert exc.field == "relay.rate"
    assert isinstance(exc, errors.ConfigError)
