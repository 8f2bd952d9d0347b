"""OAuth 2.0 for SMTP AUTH (MSAL). Imports no Qt."""
