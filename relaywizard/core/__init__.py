"""Models, errors, settings, folders and the keyring wrapper. Imports no Qt."""
