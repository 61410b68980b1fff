#!/usr/bin/env bash
# Install what the portal needs on a fresh Debian 12 machine, and nothing twice.
#   scripts/bootstrap.sh run    Python runtime packages into .venv; redis-server when missing
#   scripts/bootstrap.sh test   plus the test packages, Chromium and PostgreSQL
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-run}"
PYTHON="${PYTHON:-python3}"

# --- Debian packages, only those missing -------------------------------------------------------
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ "$mode" = test ]; then
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "Missing Debian packages: ${missing[*]}. Install them as root:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  echo "Installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Python packages into .venv, re-installed only when a requirements file changes ------------
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
req=requirements.txt
[ "$mode" = test ] && req=requirements-test.txt
stamp=".venv/.installed-$(cat requirements.txt requirements-test.txt | sha256sum | cut -c1-16)-$mode"
if [ ! -f "$stamp" ]; then
  echo "Installing Python packages from $req into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -r "$req"
  touch "$stamp"
fi
