"""Fixtures of the SMTP stage tests: test certificates, and scripted peers closed after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.diagnostics.fake_smtp import Certificates, FakeSmtp, Script, StartPeer


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
async def peer(certs: Certificates) -> AsyncIterator[StartPeer]:
    """Start a scripted peer (with the trusted certificate unless the script says otherwise)."""
    started: list[FakeSmtp] = []

    async def start(cert: str = "valid", **script: Any) -> FakeSmtp:
        script.setdefault("tls", certs.server_context(cert))  # type: ignore[arg-type]
        fake = await FakeSmtp(Script(**script)).start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        await fake.close()
