"""The relay engine: inbound policy, durable spool, upstream forwarding. Imports no Qt."""
