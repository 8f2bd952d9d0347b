"""DNS and SMTP diagnostics. Imports no Qt."""
