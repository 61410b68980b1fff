"""Chain verification: `manage.py verify_audit` over every audit record (1,000,000), against reading
the same rows with a plain database cursor and chaining HMAC-SHA-256 (the chain's function, with
the same key) over their stored bytes in a bare Python loop (HMAC(key, prev + data column text) per
row), in the same run.

    python -m bench.verify --baseline sqlite /path/db.sqlite3     the baseline alone (used by the run)
    python -m bench.verify --baseline postgres postgres://…/db
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sys
import time

from bench.common import ROOT, report
from bench.support import PYTHON, Dataset, log, measure_process, portal_env, run_on_datasets

TARGET = 2.0
# The columns verify_audit reads (sessions.audit.chain.CHAIN_FIELDS), in id order.
COLUMNS = (
    "id, event_type, occurred_at, actor_id, charging_session_id, stop_request_id, correlation_id, {data}, "
    "prev_hash, record_hash"
)


def baseline(kind: str, where: str) -> None:
    """Read every row with a plain cursor and chain HMAC-SHA-256 over prev + the data column's text."""
    started = time.perf_counter()
    prev, count = "", 0
    if kind == "sqlite":
        import sqlite3

        connection = sqlite3.connect(where)
        cursor = connection.execute(
            f"SELECT {COLUMNS.format(data='data')} FROM charging_sessions_auditrecord ORDER BY id"
        )
    else:
        import psycopg

        connection = psycopg.connect(where.replace("postgres://", "postgresql://", 1))
        cursor = connection.cursor()  # a plain client-side cursor
        cursor.execute(f"SELECT {COLUMNS.format(data='data::text')} FROM charging_sessions_auditrecord ORDER BY id")
    keyed = hmac.new(os.environ["AUDIT_CHAIN_KEY"].encode(), digestmod=hashlib.sha256)
    for row in cursor:
        mac = keyed.copy()
        mac.update((prev + row[7]).encode())
        prev = mac.hexdigest()
        count += 1
    connection.close()
    print(f"BASELINE {count} {time.perf_counter() - started:.3f} {prev}", flush=True)


def run(sets: dict[tuple[str, str], Dataset]) -> None:
    for kind in [k for k in ("sqlite", "postgres") if (k, "full") in sets]:
        dataset = sets[(kind, "full")]
        env = portal_env(dataset.url)
        log(f"verify on {dataset.label}: {dataset.audit:,} audit records")
        where = dataset.sqlite_path if kind == "sqlite" else dataset.url
        bare = measure_process([PYTHON, "-m", "bench.verify", "--baseline", kind, where], env=env)
        ours = measure_process([PYTHON, "manage.py", "verify_audit"], env=env)
        if bare.returncode != 0 or ours.returncode != 0:
            report(
                f"verify_audit, {dataset.label}",
                "failed",
                None,
                f"≤ {TARGET:.0f}× bare loop",
                False,
                ((ours.stderr or bare.stderr).strip().splitlines() or [""])[-1][:200],
            )
            continue
        rows = int(bare.stdout.split()[1])
        ratio = ours.seconds / bare.seconds
        report(
            f"verify_audit, {dataset.label}",
            f"{ours.seconds:.1f} s; bare cursor + HMAC-SHA-256 loop {bare.seconds:.1f} s",
            ratio,
            f"≤ {TARGET:.0f}× bare loop",
            ratio <= TARGET,
            f"{rows:,} records; both as whole processes (interpreter and Django start-up included); "
            + ours.stdout.strip().splitlines()[-1][:120],
        )


def main() -> None:
    run_on_datasets(run)


if __name__ == "__main__":
    os.chdir(ROOT)
    if len(sys.argv) == 4 and sys.argv[1] == "--baseline":
        baseline(sys.argv[2], sys.argv[3])
    else:
        main()
