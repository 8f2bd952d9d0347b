"""Every error a user can cause or meet, as one tree.

Each carries a ``title`` (a few words, for a dialog's title or a tray notification), a ``message``
(one readable sentence: what went wrong) and a ``hint`` (what to do about it, may be empty), so the CLI,
the GUI and the tray all show it well without ever printing a traceback.

    RelayWizardError
    ├── UsageError                  bad command-line input (exit 2)
    ├── ConfigError                 settings the program cannot use
    │   ├── SettingsFileError       the settings file cannot be read, parsed or written
    │   └── SettingsValidationError a value in the settings is invalid (names the field)
    ├── SecretStoreError            the operating system's keyring failed
    │   ├── KeyringUnavailable      no usable keyring backend (or only an insecure one)
    │   ├── KeyringLocked           the keyring is locked, or its unlock prompt was dismissed
    │   └── SecretNotFound          no secret stored for that profile
    └── DisplayUnavailable          a GUI command on a machine without a display

Network and protocol errors of later layers subclass ``RelayWizardError`` and also ``ConnectionError``
or ``TimeoutError`` where that is what they are, so callers can catch them generically.
"""

from __future__ import annotations


class RelayWizardError(Exception):
    """Base of every error relaywizard reports to a person."""

    default_title = "relaywizard error"

    def __init__(self, message: str, *, hint: str = "", title: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.title = title or self.default_title

    def one_line(self) -> str:
        """The message and hint as one line, for a terminal or a log."""
        text = self.message.rstrip()
        if self.hint:
            text = f"{text.rstrip('.')}. {self.hint.strip()}"
        return text


class UsageError(RelayWizardError):
    default_title = "Invalid input"


class ConfigError(RelayWizardError):
    default_title = "Settings problem"


class SettingsFileError(ConfigError):
    default_title = "Cannot use the settings file"


class SettingsValidationError(ConfigError):
    default_title = "Invalid setting"

    def __init__(self, field: str, message: str, *, hint: str = "", title: str | None = None) -> None:
        super().__init__(message, hint=hint, title=title)
        self.field = field


class SecretStoreError(RelayWizardError):
    default_title = "Keyring problem"


class KeyringUnavailable(SecretStoreError):
    default_title = "No keyring"


class KeyringLocked(SecretStoreError):
    default_title = "Keyring locked"


class SecretNotFound(SecretStoreError):
    default_title = "Secret not found"


class DisplayUnavailable(RelayWizardError):
    default_title = "No display"
