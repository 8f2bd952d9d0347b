# Shared by ./run.sh and ./test.sh (sourced, not run): Debian packages and the virtual environment.
# Everything here is idempotent and quick when there is nothing to do.

RELAYWIZARD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${RELAYWIZARD_VENV:-$RELAYWIZARD_ROOT/.venv}

# What Qt needs to show a window on a minimal Debian (PySide6 brings Qt itself).
RUN_DEBS=(libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 libglib2.0-0
  libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-render-util0 libxcb-render0
  libxcb-shape0 libxcb-util1 libxcb-xkb1 fonts-dejavu-core)
# What the tests start: the Microsoft 365 stand-in, DNS, the office device, the keyring, a screen.
TEST_DEBS=("${RUN_DEBS[@]}" postfix dovecot-core unbound swaks libnet-ssleay-perl libio-socket-ssl-perl
  libauthen-sasl-perl libsasl2-modules bind9-dnsutils openssl gnome-keyring dbus dbus-bin xvfb xauth
  procps coreutils
  appstream desktop-file-utils)  # the Linux bundle's AppStream metadata and menu entry are validated

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@";
  elif command -v sudo >/dev/null 2>&1; then sudo "$@";
  else echo "relaywizard: root (or sudo) is needed to run: $*" >&2; return 1; fi
}

ensure_debs() {
  # Install the named Debian packages that are missing; nothing to do on a machine without dpkg.
  command -v dpkg-query >/dev/null 2>&1 || return 0
  local missing=() package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "relaywizard: installing Debian packages: ${missing[*]}" >&2
  as_root apt-get update -qq
  # A mail server installed for the tests only delivers locally; it must not ask questions.
  echo "postfix postfix/main_mailer_type select Local only" | as_root debconf-set-selections
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

ensure_python() {
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    ensure_debs python3
  fi
  python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null || {
    echo "relaywizard: Python 3.11 or newer is needed (found $(python3 --version 2>&1))." >&2; return 1; }
  python3 -c 'import venv, ensurepip' 2>/dev/null || ensure_debs python3-venv
}

ensure_venv() {
  # $1: the extras to install ("" or "[dev]"). Reinstalls only when pyproject.toml changed.
  local extras=${1:-} stamp="$VENV/.relaywizard-stamp" want
  want="$(sha256sum "$RELAYWIZARD_ROOT/pyproject.toml" | cut -c1-16)$extras"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "relaywizard: installing into $VENV" >&2
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    "$VENV/bin/python" -m pip install -q -e "$RELAYWIZARD_ROOT$extras" >&2
    echo "$want" > "$stamp"
  fi
}
