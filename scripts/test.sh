#!/usr/bin/env bash
# The whole suite, twice: on SQLite, then on PostgreSQL. Integration and browser tests start their
# own Redis, worker and simulator; for the PostgreSQL run this script starts a throwaway server on
# loopback (its own data dir under /tmp, a free port, fsync off) and removes it on exit.
#
#   scripts/test.sh [pytest args]                     both databases, same arguments to each run
#   PORTAL_TEST_DATABASES=sqlite scripts/test.sh      one of them (sqlite | postgres)
#
# Both runs always happen; the exit status is non-zero when either failed.
set -euo pipefail
cd "$(dirname "$0")/.."
export DJANGO_ALLOW_ASYNC_UNSAFE=true  # Playwright's event loop runs beside the live server
databases="${PORTAL_TEST_DATABASES:-sqlite postgres}"
failed=()

PGROOT=""
PGBIN=""
AS_POSTGRES=()

stop_postgres() {
  if [ -n "$PGROOT" ] && [ -d "$PGROOT/data" ]; then
    "${AS_POSTGRES[@]}" "$PGBIN/pg_ctl" -D "$PGROOT/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  [ -n "$PGROOT" ] && rm -rf "$PGROOT"
  PGROOT=""
}

start_postgres() {
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$PGBIN" ]; then
    echo "PostgreSQL is not installed (Debian package postgresql); scripts/bootstrap.sh test installs it." >&2
    return 1
  fi
  PGROOT=$(mktemp -d /tmp/portal-test-pg-XXXXXX)
  trap stop_postgres EXIT
  trap 'stop_postgres; exit 130' INT TERM
  chmod 755 "$PGROOT"  # the postgres user must reach its data dir inside it
  mkdir -m 700 "$PGROOT/data"
  if [ "$(id -u)" -eq 0 ]; then
    # initdb refuses to run as root: run the server as Debian's postgres user.
    chown postgres:postgres "$PGROOT/data"
    AS_POSTGRES=(runuser -u postgres --)
  fi
  PGPORT=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "${AS_POSTGRES[@]}" "$PGBIN/initdb" -D "$PGROOT/data" -U postgres -A trust -E UTF8 --no-sync \
    >"$PGROOT/initdb.log" 2>&1 || { cat "$PGROOT/initdb.log" >&2; return 1; }
  # Throwaway and loopback only: no durability needed, room for the concurrency tests' connections.
  "${AS_POSTGRES[@]}" "$PGBIN/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/data/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGROOT/data -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    start >/dev/null || { cat "$PGROOT/data/server.log" >&2; return 1; }
  "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -qc "create database portal" >/dev/null
  export DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/portal"
  echo "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PGPORT (data in $PGROOT, removed on exit)"
}

for database in $databases; do
  case "$database" in
    sqlite)
      echo "=== Test suite on SQLite ==="
      DATABASE_URL="sqlite:///$PWD/db.sqlite3" .venv/bin/pytest "$@" || failed+=(sqlite)
      ;;
    postgres)
      echo "=== Test suite on PostgreSQL ==="
      if start_postgres; then
        .venv/bin/pytest "$@" || failed+=(postgres)
        stop_postgres
        unset DATABASE_URL
      elif [ -n "${CI:-}" ]; then
        failed+=(postgres)
      else
        echo "Skipping the PostgreSQL run." >&2
      fi
      ;;
    *)
      echo "Unknown database '$database' in PORTAL_TEST_DATABASES (use sqlite and/or postgres)" >&2
      exit 2
      ;;
  esac
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "FAILED on: ${failed[*]}" >&2
  exit 1
fi
echo "All test runs passed: $databases"
