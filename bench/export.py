"""Export: every audit record (1,000,000) to CSV through the portal's exporter, against the database's
own CSV dump of the same rows and columns in the same run.

Ours: `manage.py export_audit --format csv --output FILE` over the whole range (formula
neutralisation, checksum, header and its audit record included). Baseline: `sqlite3 -csv` or
`psql \\copy (SELECT …) TO STDOUT WITH CSV` of the same columns (the same joins for actor, SessionID,
EvseID and OperatorID). Memory: the export process's peak RSS minus that of a process that only
starts Django (`manage.py shell -c pass`).
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.common import ROOT, report
from bench.support import (
    DATABASES,
    PYTHON,
    Dataset,
    datasets,
    ensure_debian,
    log,
    measure_process,
    portal_env,
    postgres_server,
    workdir,
)

TIME_TARGET = 3.0
MEMORY_TARGET_MB = 100

SELECT = (
    "SELECT a.id, a.occurred_at, a.event_type, u.username, s.session_id, s.evse_id, s.operator_id, "
    "a.stop_request_id, a.correlation_id, a.data, a.prev_hash, a.record_hash "
    "FROM charging_sessions_auditrecord a "
    "LEFT JOIN charging_sessions_chargingsession s ON s.id = a.charging_session_id "
    "LEFT JOIN auth_user u ON u.id = a.actor_id ORDER BY a.id"
)


def database_dump(dataset: Dataset, target: Path):
    if dataset.kind == "sqlite":
        sqlite3 = ensure_debian("sqlite3", "sqlite3")
        return measure_process([sqlite3, "-csv", dataset.sqlite_path, SELECT], stdout_path=target)
    return measure_process(
        [
            "psql",
            "-X",
            "-q",
            dataset.url.replace("postgres://", "postgresql://", 1),
            "-c",
            f"\\copy ({SELECT}) TO STDOUT WITH CSV",
        ],
        stdout_path=target,
    )


def lines(path: Path) -> int:
    count = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 24):
            count += chunk.count(b"\n")
    return count


def run(sets: dict[tuple[str, str], Dataset], base: Path) -> None:
    for kind in [k for k in ("sqlite", "postgres") if (k, "full") in sets]:
        dataset = sets[(kind, "full")]
        env = portal_env(dataset.url)
        dump_file, ours_file = base / f"dump-{kind}.csv", base / f"export-{kind}.csv"
        log(f"export on {dataset.label}: {dataset.audit:,} audit records")
        startup = measure_process([PYTHON, "manage.py", "shell", "-c", "pass"], env=env)
        dump = database_dump(dataset, dump_file)
        ours = measure_process(
            [
                PYTHON,
                "manage.py",
                "export_audit",
                "--from",
                "2000-01-01",
                "--to",
                "2199-12-31",
                "--format",
                "csv",
                "--output",
                str(ours_file),
            ],
            env=env,
        )
        if ours.returncode != 0 or dump.returncode != 0:
            report(
                f"export CSV, {dataset.label}",
                "failed",
                None,
                f"≤ {TIME_TARGET:.0f}× dump",
                False,
                (ours.stderr or dump.stderr).strip().splitlines()[-1][:200],
            )
            continue
        growth_mb = max(0, ours.max_rss_kb - startup.max_rss_kb) / 1024
        dump_rows, our_lines = lines(dump_file), lines(ours_file)
        size_mb = ours_file.stat().st_size / 1e6
        ratio = ours.seconds / dump.seconds
        report(
            f"export CSV, {dataset.label}",
            f"{ours.seconds:.1f} s, +{growth_mb:.0f} MB peak ({size_mb:.0f} MB file); dump {dump.seconds:.1f} s",
            ratio,
            f"≤ {TIME_TARGET:.0f}× dump, < {MEMORY_TARGET_MB} MB",
            ratio <= TIME_TARGET and growth_mb < MEMORY_TARGET_MB,
            f"{dump_rows:,} rows dumped, {our_lines:,} lines written (header and comment lines included)",
        )
        for path in (dump_file, ours_file):
            path.unlink(missing_ok=True)


def main() -> None:
    base = workdir("data")
    if "postgres" in DATABASES:
        with postgres_server() as pg_url:
            run(datasets(base, pg_url), base)
    else:
        run(datasets(base, None), base)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
