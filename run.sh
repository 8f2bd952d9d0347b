#!/usr/bin/env bash
# Set up (Debian packages Qt needs, a virtual environment in .venv) and start relaywizard.
# Without arguments it opens the setup wizard; any arguments go to the relaywizard command.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/setup.sh"
ensure_debs "${RUN_DEBS[@]}"
ensure_python
ensure_venv ""
exec "$VENV/bin/relaywizard" "$@"
