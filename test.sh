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
if [ $# -gt 0 ]; then
  exec "${PYTEST[@]}" "$@"
fi
# The whole suite. The GUI test modules each run in a process of their own: a test process that ran
# several of them together has crashed in Qt's event processing (a known open problem, see the issue
# notes), and one module per process has not. A crash still fails the run; nothing is skipped.
status=0
"${PYTEST[@]}" -ra --ignore=tests/gui || status=$?
for module in tests/gui/test_*.py; do
  "${PYTEST[@]}" -ra "$module" || status=$?
done
[ "$status" -eq 0 ] && echo "test.sh: every test run passed" || echo "test.sh: a test run failed ($status)"
exit "$status"
