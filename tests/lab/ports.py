"""Fixed loopback addresses and ports of the lab. Nothing else on a machine is expected to use these."""

HOST = "127.0.0.1"
#: The source address the connector port accepts (a client binds to it; it is still loopback).
CONNECTOR_CLIENT = "127.0.0.2"

#: smtp.office365.com:587 stand-in: STARTTLS required, SASL AUTH (PLAIN, LOGIN, XOAUTH2) after TLS.
SUBMISSION = 25587
#: The MX endpoint (Direct Send) stand-in: STARTTLS offered, no AUTH, only the lab's own domains.
MX = 25525
#: Connector relay stand-in: only CONNECTOR_CLIENT may relay, to any lab domain.
CONNECTOR = 25526
#: A port that offers no STARTTLS at all.
PLAIN = 25527
#: unbound, authoritative for the test zones, never recursing.
DNS = 25353
#: The OAuth 2.0 token introspection endpoint Dovecot asks about XOAUTH2 tokens.
INTROSPECTION = 25580
