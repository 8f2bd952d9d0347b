#!/usr/bin/env bash
# Build the one-folder Linux application with PyInstaller: dist/relaywizard/relaywizard.
#
#   packaging/build.sh                 build into dist/ (work files in build/pyinstaller/)
#   DIST=/x WORK=/y packaging/build.sh  elsewhere (tests/test_bundle.py builds into its cache this way)
#
# Uses the repository's .venv (created and filled with the [dev] extra, which has PyInstaller, if needed)
# or, when RELAYWIZARD_PYTHON is set, that interpreter as it is. Windows and macOS: see packaging/README.md
# (the same spec, run with `pyinstaller --noconfirm packaging/relaywizard.spec`).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -n "${RELAYWIZARD_PYTHON:-}" ]; then
  PYTHON=$RELAYWIZARD_PYTHON
else
  source "$ROOT/scripts/setup.sh"
  ensure_debs "${RUN_DEBS[@]}"
  ensure_python
  ensure_venv "[dev]"
  PYTHON=$VENV/bin/python
fi
DIST=${DIST:-$ROOT/dist}
WORK=${WORK:-$ROOT/build/pyinstaller}
cd "$ROOT"
start=$(date +%s)
# QT_QPA_PLATFORM: the spec draws the icons with Qt, which needs no display for that.
QT_QPA_PLATFORM=offscreen "$PYTHON" -m PyInstaller --noconfirm --log-level "${LOG_LEVEL:-WARN}" \
  --distpath "$DIST" --workpath "$WORK" packaging/relaywizard.spec
echo "build.sh: $DIST/relaywizard built in $(( $(date +%s) - start )) s, $(du -sh "$DIST/relaywizard" | cut -f1)"
