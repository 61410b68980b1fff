"""Inbound ingest: ChargingNotifications (Start) and CDRs per second through the production server.

gunicorn with 2 sync workers and persistent database connections (CONN_MAX_AGE 60), `wrk` with 16
connections, each request a new SessionID and EvseID. As in production (OICP_INBOUND_APPLY=worker)
a Celery worker on Redis applies the stored messages to their sessions during the run, on the same
2 cores; after each run the benchmark waits until every message is applied and reports that too. The baseline in the same run, on the same
server and database: a minimal Django view (bench/urls.py) that parses the same JSON and INSERTs one
row. The CDR runs close the sessions the Start run opened (same IDs), as Hubject's CDRs do.
On SQLite (WAL, a file in a temp dir) and on PostgreSQL (a throwaway server).

    BENCH_INGEST_SECONDS=12  measured seconds per run (after BENCH_INGEST_WARMUP=3 s of warm-up)
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import requests

from bench.common import ROOT, report, servers
from bench.support import DATABASES, ensure_debian, log, manage, new_database, portal_env, postgres_server, workdir

BASELINE_TABLE = "bench_ingest_baseline"  # bench/urls.py inserts into it

SECONDS = float(os.environ.get("BENCH_INGEST_SECONDS", "12"))
WARMUP = float(os.environ.get("BENCH_INGEST_WARMUP", "3"))
CONNECTIONS = int(os.environ.get("BENCH_INGEST_CONNECTIONS", "16"))
THREADS = 2
LUA = ROOT / "bench" / "ingest.lua"
TARGET = 0.5


def _create_baseline_table(env: dict[str, str], kind: str) -> None:
    key = "INTEGER PRIMARY KEY AUTOINCREMENT" if kind == "sqlite" else "BIGSERIAL PRIMARY KEY"
    sql = (
        f"CREATE TABLE {BASELINE_TABLE} (id {key}, session_id VARCHAR(36) NOT NULL, evse_id VARCHAR(41) NOT NULL, "
        "body TEXT NOT NULL)"
    )
    manage(env, "shell", "-c", f"from django.db import connection\nwith connection.cursor() as c: c.execute({sql!r})")


class Gunicorn:
    """The portal (plus bench.urls) under gunicorn, as in production: its log goes to a file."""

    def __init__(self, env: dict[str, str], logfile: Path, workers: int = 2):
        self.port = servers.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(logfile, "wb")
        self.proc = subprocess.Popen(
            [
                str(servers.BIN / "gunicorn"),
                "portal.wsgi",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--timeout",
                "120",
                "--no-control-socket",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def answers():
            try:
                return requests.get(f"{self.url}/login/", timeout=5).status_code == 200
            except requests.RequestException:
                return False

        servers.wait_until(answers, timeout=60, message=f"gunicorn on {self.url} (log {logfile})")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def wrk(url: str, kind: str, nonce: int, target: str, seconds: float) -> dict:
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(THREADS),
            "-c",
            str(CONNECTIONS),
            "-d",
            f"{seconds:.0f}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            url,
            "--",
            kind,
            str(nonce),
            target,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"^WRKJSON (\{.*\})$", out.stdout, re.M)
    if not match:
        raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")
    result = json.loads(match.group(1))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = sum(
        result[k] for k in ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts")
    )
    return result


def measure(url: str, kind: str, target: str, nonce: int) -> dict:
    wrk(url, kind, nonce + 1, target, WARMUP)  # warm-up: connections, imports, caches (its own IDs)
    result = wrk(url, kind, nonce, target, SECONDS)
    log(
        f"{target} {kind}: {result['rps']:.0f} req/s, p50 {result['p50_us'] / 1000:.1f} ms, "
        f"p99 {result['p99_us'] / 1000:.1f} ms, errors {result['errors']}"
    )
    return result


def pending(env: dict[str, str]) -> int:
    done = manage(
        env,
        "shell",
        "-c",
        "from sessions.inbound.selectors import pending_inbound_messages; print(pending_inbound_messages())",
    )
    return int(done.stdout.strip().splitlines()[-1])


def drain(env: dict[str, str], started: float, count_before: int) -> tuple[float, int]:
    """Seconds from the end of the run until the worker applied every stored message, and how many were left."""
    left = pending(env)
    while pending(env):
        time.sleep(0.5)
    return time.monotonic() - started, left


def run_database(kind: str, pg_url: str | None, base: Path) -> None:
    url = new_database(kind, "bench_ingest", base, pg_url)
    with servers.redis_server() as redis_url:
        env = portal_env(
            url,
            DJANGO_SETTINGS_MODULE="bench.settings",
            DATABASE_CONN_MAX_AGE="60",
            LOG_LEVEL="INFO",
            WEB_CONCURRENCY="2",
            OICP_INBOUND_APPLY="worker",
            CELERY_BROKER_URL=redis_url,
            CACHE_URL=redis_url.replace("redis://", "rediscache://", 1),
        )
        manage(env, "migrate", "--verbosity", "0")
        _create_baseline_table(env, kind)
        # The worker that applies the stored messages runs beside gunicorn on the same 2 cores, with
        # the portal's defaults (it waits while the burst rate is above OICP_INBOUND_BURST_RATE, at
        # most OICP_INBOUND_MAX_DEFER_SECONDS). BENCH_INGEST_WORKER=0 runs without it.
        worker = (
            None
            if os.environ.get("BENCH_INGEST_WORKER") == "0"
            else servers.Process(
                "worker",
                [
                    str(servers.BIN / "celery"),
                    "-A",
                    "portal",
                    "worker",
                    "--pool",
                    "threads",
                    "--concurrency",
                    "2",
                    "--without-gossip",
                    "--without-mingle",
                    "--loglevel",
                    "WARNING",
                ],
                env,
            )
        )
        server = Gunicorn(env, base / f"gunicorn-{kind}.log")
        try:
            nonce = random.randrange(1, 2**30) & ~1  # even: measured runs; nonce + 1: their warm-ups
            label = "SQLite" if kind == "sqlite" else "PostgreSQL"
            # The baselines bracket the portal's runs: baseline, Start, CDR, baseline.
            base_start = measure(server.url, "start", "baseline", nonce + 100)
            start = measure(server.url, "start", "oicp", nonce)
            start["drain_s"], start["left"] = drain(env, time.monotonic(), 0) if worker else (0.0, pending(env))
            cdr = measure(server.url, "cdr", "oicp", nonce)  # the sessions the Start run opened
            cdr["drain_s"], cdr["left"] = drain(env, time.monotonic(), 0) if worker else (0.0, pending(env))
            base_cdr = measure(server.url, "cdr", "baseline", nonce + 200)
            for name, ours, baseline in (("Start notifications", start, base_start), ("CDRs", cdr, base_cdr)):
                errors = ours["errors"] + baseline["errors"]
                ratio = ours["rps"] / baseline["rps"] if baseline["rps"] else None
                log(
                    f"{name}: {ours['left']} messages (warm-up included) still to apply at the end of the run; "
                    f"all applied {ours['drain_s']:.1f} s later"
                )
                report(
                    f"ingest {name}, {label}",
                    f"{ours['rps']:.0f} req/s (p99 {ours['p99_us'] / 1000:.1f} ms); "
                    f"baseline {baseline['rps']:.0f} req/s",
                    ratio,
                    f"≥ {TARGET}",
                    (ratio or 0) >= TARGET and errors == 0,
                    f"gunicorn 2 sync workers, {CONNECTIONS} connections, {SECONDS:.0f} s; worker beside it: "
                    f"{ours['left']} messages (warm-up included) still to apply at the end, all applied "
                    f"{ours['drain_s']:.0f} s later" + (f"; {errors} failed requests" if errors else ""),
                )
        finally:
            server.stop()
            if worker is not None:
                worker.stop()


def main() -> None:
    ensure_debian("wrk", "wrk")
    base = workdir("ingest")
    for kind in DATABASES:
        if kind == "postgres":
            with postgres_server() as pg_url:
                run_database(kind, pg_url, base)
        else:
            run_database(kind, None, base)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
