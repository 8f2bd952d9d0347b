"""The pieces every check is built from: the ``Check`` base class, its ``Context``, and the DNS interface.

A check is a small class with a stable ``id``, a ``title``, the ``group`` it runs in (DNS checks run
concurrently; SMTP checks run in order on one connection), the checks it ``requires``, and one async
``run(ctx)`` that returns a ``CheckResult``. It reports progress with ``ctx.progress(text)``.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, ClassVar, Literal, Protocol

from relaywizard.diagnostics.model import CheckResult, Group, Status, Target

DnsFailureKind = Literal["timeout", "servfail", "refused", "nxdomain", "error"]

_KIND_TEXT: dict[str, str] = {
    "timeout": "timed out",
    "servfail": "got a server failure (SERVFAIL)",
    "refused": "was refused (REFUSED)",
    "nxdomain": "got no such domain (NXDOMAIN)",
    "error": "failed with a DNS error",
}


class DnsLookupError(Exception):
    """A DNS query that got no usable answer: it names its kind and the server asked."""

    def __init__(self, kind: DnsFailureKind, name: str, rdtype: str, server: str, detail: str = "") -> None:
        self.kind = kind
        self.name = name
        self.rdtype = rdtype
        self.server = server
        self.detail = detail
        super().__init__(self.describe())

    def describe(self) -> str:
        """e.g. "the TXT query for contoso.com timed out (asked 192.0.2.53:53)"."""
        text = f"the {self.rdtype} query for {self.name.rstrip('.')} {_KIND_TEXT[self.kind]}"
        if self.detail:
            text += f": {self.detail}"
        return f"{text} (asked {self.server})"


class Resolver(Protocol):
    """DNS as the checks see it; the real one wraps dnspython's asyncio resolver, tests use a fake."""

    async def query(self, name: str, rdtype: str) -> list[str]:
        """The answer's records as text: TXT strings joined and unquoted, MX "10 host.", CNAME "target.".

        An existing name without records of that type gives ``[]``. NXDOMAIN, a timeout, SERVFAIL,
        REFUSED and other failures raise ``DnsLookupError``.
        """
        ...

    def describe(self) -> str:
        """The server(s) asked, for messages: "127.0.0.1:5353" or "the system resolver (…)"."""
        ...


#: The id of the check running in the current task, so progress is attributed right when DNS checks
#: run concurrently.
current_check: ContextVar[str] = ContextVar("current_check", default="")


class Context:
    """What a check can use: the target, DNS, earlier results, state shared by its group, progress."""

    def __init__(
        self,
        target: Target,
        resolver: Resolver,
        progress: Callable[[str, str], None] | None = None,
    ) -> None:
        self.target = target
        self.resolver = resolver
        self.results: dict[str, CheckResult] = {}
        self.shared: dict[str, Any] = {}
        """State a group's checks share, e.g. the open SMTP connection under "smtp"."""
        self._progress = progress
        self._closers: list[Callable[[], Awaitable[None]]] = []

    def progress(self, text: str) -> None:
        """Report what the running check is doing now ("Looking up TXT for contoso.com")."""
        if self._progress is not None:
            self._progress(current_check.get(), text)

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run ``closer`` when the run ends, however it ends (QUIT and close the SMTP connection)."""
        self._closers.append(closer)

    async def close(self) -> None:
        closers, self._closers = self._closers, []
        for closer in reversed(closers):
            # Closing is best effort: the run's results are already final.
            with contextlib.suppress(Exception):
                await closer()


class Check(ABC):
    """One diagnostic with a stable id."""

    id: ClassVar[str]
    title: ClassVar[str]
    group: ClassVar[Group]
    requires: ClassVar[tuple[str, ...]] = ()
    steps: ClassVar[int] = 2
    """How many network steps the check may take at most: its overall limit is ``steps * timeout + 1``."""

    @abstractmethod
    async def run(self, ctx: Context) -> CheckResult:
        """Do the check and return its result (``duration_ms`` is filled in by the runner)."""

    def result(
        self,
        status: Status,
        summary: str,
        *,
        fix: str = "",
        code: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> CheckResult:
        return CheckResult(
            id=self.id, status=status, title=self.title, summary=summary, fix=fix, code=code, data=data or {}
        )

    def passed(self, summary: str, **data: Any) -> CheckResult:
        return self.result(Status.PASS, summary, data=data)

    def skipped(self, summary: str) -> CheckResult:
        """Not applicable here (no credentials, another method): later checks still run."""
        return self.result(Status.SKIP, summary)
