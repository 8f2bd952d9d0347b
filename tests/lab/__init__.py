"""The test lab: real Postfix, Dovecot and unbound on 127.0.0.1, standing in for Microsoft 365 and DNS."""
