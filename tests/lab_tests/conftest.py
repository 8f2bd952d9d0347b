"""Fixtures of the lab's own tests."""

from __future__ import annotations

import pytest

from tests.lab.lab import Lab
from tests.lab.unbound import DnsLab


@pytest.fixture(scope="session")
def dns_lab(lab: Lab) -> DnsLab:
    """The shared lab's unbound, serving the test zones on 127.0.0.1:25353."""
    return lab.dns
