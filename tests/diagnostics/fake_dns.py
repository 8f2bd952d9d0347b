"""An in-memory ``Resolver`` for unit tests: a dict of answers, optional delay, and a log of the queries.

The log records when each query started and ended, so a test can prove look-ups ran concurrently.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass

from relaywizard.diagnostics.base import DnsFailureKind, DnsLookupError

Answer = list[str] | DnsLookupError

SERVER = "192.0.2.53:53"


def _normal(name: str) -> str:
    return name.strip().rstrip(".").lower()


def failure(kind: DnsFailureKind, name: str, rdtype: str) -> DnsLookupError:
    """A ``DnsLookupError`` as the fake's server would report it."""
    return DnsLookupError(kind, _normal(name), rdtype, SERVER)


@dataclass
class Query:
    name: str
    rdtype: str
    started: float
    finished: float = 0.0


class FakeResolver:
    """Answers from ``records``: ``{(name, rdtype): [texts] | DnsLookupError}``.

    A name present with other types answers ``[]`` for a missing type; a name not present at all is
    NXDOMAIN. Every answer waits ``delay`` seconds (or ``delays[name]``), like a round trip.
    """

    def __init__(
        self,
        records: Mapping[tuple[str, str], Answer],
        delay: float = 0.0,
        delays: Mapping[str, float] | None = None,
    ) -> None:
        self.records = {(_normal(name), rdtype.upper()): answer for (name, rdtype), answer in records.items()}
        self.names = {name for name, _ in self.records}
        self.delay = delay
        self.delays = {_normal(name): value for name, value in (delays or {}).items()}
        self.queries: list[Query] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def describe(self) -> str:
        return SERVER

    async def query(self, name: str, rdtype: str) -> list[str]:
        key = (_normal(name), rdtype.upper())
        entry = Query(key[0], key[1], time.monotonic())
        self.queries.append(entry)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delays.get(key[0], self.delay))
        finally:
            self.in_flight -= 1
            entry.finished = time.monotonic()
        answer = self.records.get(key)
        if isinstance(answer, DnsLookupError):
            raise answer
        if answer is not None:
            return list(answer)
        if key[0] in self.names:
            return []
        raise failure("nxdomain", key[0], key[1])

    def asked(self, name: str, rdtype: str | None = None) -> int:
        """How many times ``name`` (of ``rdtype``, if given) was queried."""
        return sum(1 for q in self.queries if q.name == _normal(name) and rdtype in (None, q.rdtype))


MS_SPF = "v=spf1 ip4:40.92.0.0/15 ip4:104.47.0.0/17 ip6:2a01:111:f400::/48 -all"


def m365_domain(
    domain: str,
    *,
    mx: list[str] | None = None,
    spf: list[str] | None = None,
    dkim: dict[str, str] | None = None,
    dmarc: list[str] | None = None,
    autodiscover: str | None = "autodiscover.outlook.com.",
    tenant: str = "contoso",
) -> dict[tuple[str, str], Answer]:
    """A correctly set-up Microsoft 365 domain's records; each argument replaces one kind ([] / {} = none)."""
    dashed = domain.replace(".", "-")
    if mx is None:
        mx = [f"0 {dashed}.mail.protection.outlook.com."]
    if spf is None:
        spf = ["v=spf1 include:spf.protection.outlook.com -all"]
    if dkim is None:
        dkim = {s: f"{s}-{dashed}._domainkey.{tenant}.onmicrosoft.com." for s in ("selector1", "selector2")}
    if dmarc is None:
        dmarc = ["v=DMARC1; p=reject"]
    records: dict[tuple[str, str], Answer] = {
        (domain, "MX"): mx,
        (domain, "TXT"): [f"MS=ms{len(domain):08d}", *spf],
        (domain, "SOA"): [f"ns.{domain}. hostmaster.{domain}. 1 3600 600 86400 60"],
        ("spf.protection.outlook.com", "TXT"): [MS_SPF],
    }
    for selector, target in dkim.items():
        records[(f"{selector}._domainkey.{domain}", "CNAME")] = [target]
    if dmarc:
        records[(f"_dmarc.{domain}", "TXT")] = dmarc
    if autodiscover:
        records[(f"autodiscover.{domain}", "CNAME")] = [autodiscover]
    return records
