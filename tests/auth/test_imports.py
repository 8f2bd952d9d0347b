"""``relaywizard.auth`` stays cheap to import: msal and requests load only when a token is needed."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_auth_package_loads_neither_msal_nor_requests() -> None:
    code = (
        "import sys, relaywizard.auth.source, relaywizard.auth.expiry, relaywizard.cli.oauth; "
        "print(sorted(m for m in ('msal', 'requests', 'cryptography') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
