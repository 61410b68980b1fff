"""`make bench`: every benchmark, one results table, bench/RESULTS.md.

Runs dispatch (`python -m bench.dispatch`), ingest, sustained, pages, export, verify and directory, each in its
own process; one throwaway PostgreSQL serves them all, and the data sets of pages/export/verify (and
the directory's CPO page) are generated once per database and handed down (BENCH_PG_URL,
BENCH_DATASETS). A benchmark that
misses its target, or even crashes, is a row in the table: the run always exits 0.

    BENCH_SCALE=0.05 make bench        a quick run on 1/20 of the data
    BENCH_ONLY=ingest,pages make bench only these (dispatch, ingest, sustained, pages, export, verify, directory)
    BENCH_DATABASES=sqlite make bench  one database only (sqlite, postgres)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common
from bench.common import ROOT, report
from bench.support import DATABASES, PYTHON, SCALE, datasets, datasets_json, ensure_debian, log, postgres_server

ALL = ["dispatch", "ingest", "sustained", "pages", "export", "verify", "directory"]
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
NOTES_MD = ROOT / "bench" / "NOTES.md"


def run_module(name: str, env: dict[str, str], rows_file: Path) -> None:
    before = rows_file.read_text().count("\n") if rows_file.exists() else 0
    started = time.perf_counter()
    log(f"running bench.{name}")
    proc = subprocess.run([PYTHON, "-m", f"bench.{name}"], cwd=ROOT, env={**env, "BENCH_ROWS_FILE": str(rows_file)})
    seconds = time.perf_counter() - started
    after = rows_file.read_text().count("\n") if rows_file.exists() else 0
    if proc.returncode != 0 or after == before:
        report(
            f"{name}: did not finish",
            f"exit status {proc.returncode} after {seconds:.0f} s",
            None,
            "—",
            False,
            "see the output above",
        )
    log(f"bench.{name} took {seconds:.0f} s")


def main() -> None:
    only = [name for name in os.environ.get("BENCH_ONLY", ",".join(ALL)).split(",") if name in ALL]
    started = time.perf_counter()
    ensure_debian("wrk", "wrk")
    ensure_debian("sqlite3", "sqlite3")
    base = Path(tempfile.mkdtemp(prefix="bench-run-"))
    rows_file = base / "rows.jsonl"
    env = {**os.environ, "BENCH_WORKDIR": str(base)}
    try:
        with postgres_server() if "postgres" in DATABASES else _nothing() as pg_url:
            if pg_url:
                env["BENCH_PG_URL"] = pg_url
            if "dispatch" in only:
                run_module("dispatch", env, rows_file)
            if "ingest" in only:
                run_module("ingest", env, rows_file)
            if "sustained" in only:
                run_module("sustained", env, rows_file)
            if {"pages", "export", "verify", "directory"} & set(only):
                sets = datasets(base / "data", pg_url)
                for dataset in sets.values():
                    if dataset.size == "full":
                        report(
                            f"data generation, {dataset.label}",
                            f"{dataset.seconds:.0f} s for {dataset.sessions:,} sessions, {dataset.stops:,} stops, "
                            f"{dataset.audit:,} audit records",
                            None,
                            "—",
                            None,
                            "manage.py generate_load_data (the 1/100 twin is generated too)",
                        )
                env["BENCH_DATASETS"] = datasets_json(sets)
                for name in ("pages", "export", "verify", "directory"):
                    if name in only:
                        run_module(name, env, rows_file)
    finally:
        rows = [json.loads(line) for line in rows_file.read_text().splitlines()] if rows_file.exists() else []
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(base, ignore_errors=True)
        ours = list(common.RESULTS)
        common.RESULTS[:] = rows + ours
        total = time.perf_counter() - started
        title = f"Benchmarks (make bench{'' if SCALE == 1 else f', BENCH_SCALE={SCALE}'}; {total / 60:.0f} min)"
        common.write_results(RESULTS_MD, title)
        if NOTES_MD.exists():
            with open(RESULTS_MD, "a", encoding="utf-8") as out:
                out.write("\n" + NOTES_MD.read_text())
        print(f"\n[bench] {len(common.RESULTS)} rows written to {RESULTS_MD} in {total / 60:.1f} min")
        for row in common.RESULTS:
            print(f"  {row['met']:>3}  {row['name']}: {row['figure']} | ratio {row['ratio'] or '—'} | {row['target']}")


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    os.chdir(ROOT)
    try:
        main()
    except Exception as error:  # a benchmark run never fails the build
        print(f"[bench] the run stopped: {type(error).__name__}: {error}", file=sys.stderr)
    sys.exit(0)
