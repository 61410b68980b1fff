#!/usr/bin/env bash
# The whole suite. Integration and browser tests start their own Redis, worker and simulator.
set -euo pipefail
cd "$(dirname "$0")/.."
export DJANGO_ALLOW_ASYNC_UNSAFE=true  # Playwright's event loop runs beside the live server
.venv/bin/pytest "$@"
