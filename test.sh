#!/usr/bin/env bash
# Set up everything the tests need (Debian packages for the lab's real servers, the keyring and a
# screen; a virtual environment with the dev tools) and run the whole suite: ruff, mypy --strict, pytest.
# Arguments go to pytest. The run is bounded: a hang fails instead of running on.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/setup.sh"
ensure_debs "${TEST_DEBS[@]}"
ensure_python
ensure_venv "[dev]"
cd "$RELAYWIZARD_ROOT"
echo "== ruff"
"$VENV/bin/ruff" check relaywizard tests bench
"$VENV/bin/ruff" format --check relaywizard tests bench
echo "== mypy --strict"
"$VENV/bin/mypy" --strict relaywizard
echo "== pytest"
export QT_QPA_PLATFORM=offscreen
PYTEST=(timeout --kill-after=30 "${RELAYWIZARD_TEST_TIMEOUT:-1200}" "$VENV/bin/python" -m pytest)
if [ $# -eq 0 ]; then
  set -- -ra
fi
"${PYTEST[@]}" "$@" && echo "test.sh: every test passed"
