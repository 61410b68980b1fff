#!/usr/bin/env bash
# The code's rules as checks, run first by `make test` (seconds): formatting, lint and the import
# contracts (the layers inside each part; pyproject.toml holds all three configurations).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "=== ruff format --check, ruff check, lint-imports ==="
.venv/bin/ruff format --check --quiet . || { echo "Formatting differs: run .venv/bin/ruff format ." >&2; exit 1; }
.venv/bin/ruff check --quiet .
# Its banner says nothing; on success only the contracts, on failure everything.
if contracts=$(.venv/bin/lint-imports --no-cache 2>&1); then
  echo "$contracts" | grep -E "^Contracts:"
else
  echo "$contracts" >&2
  exit 1
fi
