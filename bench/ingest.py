"""Inbound ingest: ChargingNotifications (Start) and CDRs per second through the production server,
and how fast the workers then apply them.

gunicorn with 2 sync workers and persistent database connections (CONN_MAX_AGE 60), `wrk` with 16
connections, each request a new SessionID and EvseID. As in production (OICP_INBOUND_APPLY=worker)
Celery workers on Redis apply the stored messages to their sessions during the run, on the same
2 cores; after each run the benchmark waits until every message is applied and reports how many
were left at the end of the burst, how long they took (the drain) and the apply rate meanwhile
(messages/s). The baseline in the same run, on the same server and database: a minimal Django view
(bench/urls.py) that parses the same JSON and INSERTs one row. The CDR runs close the sessions the
Start run opened (same IDs), as Hubject's CDRs do. On SQLite (WAL, a file in a temp dir) and on
PostgreSQL (a throwaway server).

    BENCH_INGEST_SECONDS=12  measured seconds per run (after BENCH_INGEST_WARMUP=3 s of warm-up)
    BENCH_INGEST_ROUNDS=3    the seconds split into this many rounds of baseline, Start, CDR, baseline,
                             one after the other; the ratio is the median round's (other engineers'
                             load on the shared cores drifts within a minute: one baseline measured
                             20 s before the portal's run made the ratio swing by 2×)
    BENCH_INGEST_WORKERS=0,1,2 one pass per count of inbound worker processes (as `make run` starts
                             one); 0: the endpoint alone, what the acknowledgement costs
    BENCH_INGEST_WORKER=0    no worker at all: the requests alone
    BENCH_INGEST_WORKERS_AFTER=1  the workers start after each burst: the apply rate on its own
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import requests

from bench.common import ROOT, report, servers
from bench.support import (
    DATABASES,
    NICENESS,
    drop_pg_database,
    ensure_debian,
    log,
    manage,
    new_database,
    portal_env,
    postgres_server,
    run_wrk,
    workdir,
)
from portal.processes import inbound_worker_command

BASELINE_TABLE = "bench_ingest_baseline"  # bench/urls.py inserts into it

SECONDS = float(os.environ.get("BENCH_INGEST_SECONDS", "12"))
WARMUP = float(os.environ.get("BENCH_INGEST_WARMUP", "3"))
ROUNDS = max(1, int(os.environ.get("BENCH_INGEST_ROUNDS", "3")))
CONNECTIONS = int(os.environ.get("BENCH_INGEST_CONNECTIONS", "16"))
THREADS = 2
LUA = ROOT / "bench" / "ingest.lua"
TARGET = 0.7  # issue 16 (0.5 before)
# 1: the workers start only after each burst (apply rate alone, not sharing the CPU with the requests).
AFTER = os.environ.get("BENCH_INGEST_WORKERS_AFTER") == "1"
WORKER_COUNTS = [int(n) for n in os.environ.get("BENCH_INGEST_WORKERS", "0,1,2").split(",") if n]


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
    timing = ["-t", str(THREADS), "-c", str(CONNECTIONS), "-d", f"{seconds:.0f}s", "--timeout", "10s"]
    return run_wrk([*timing, "-s", str(LUA), url, "--", kind, str(nonce), target])


def measure(url: str, kind: str, target: str, nonce: int, *, seconds: float = SECONDS, warm_up: bool = True) -> dict:
    if warm_up:
        wrk(url, kind, nonce + 1, target, WARMUP)  # warm-up: connections, imports, caches (its own IDs)
    result = wrk(url, kind, nonce, target, seconds)
    log(
        f"{target} {kind}: {result['rps']:.0f} req/s, p50 {result['p50_us'] / 1000:.1f} ms, "
        f"p99 {result['p99_us'] / 1000:.1f} ms, errors {result['errors']}"
    )
    return result


class PendingCounter:
    """Counts the messages still to apply with a plain connection of its own (a `manage.py shell`
    per poll would cost a second of CPU each, taken from the workers being measured)."""

    SQL = "SELECT COUNT(*) FROM charging_sessions_inboundmessage WHERE applied_at IS NULL AND apply_error = ''"

    def __init__(self, database_url: str):
        if database_url.startswith("sqlite:///"):
            import sqlite3

            self.connection = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=30)
        else:
            import psycopg

            self.connection = psycopg.connect(database_url.replace("postgres://", "postgresql://", 1), autocommit=True)

    def __call__(self) -> int:
        cursor = self.connection.cursor()
        cursor.execute(self.SQL)
        count = cursor.fetchone()[0]
        cursor.close()
        if hasattr(self.connection, "commit"):
            self.connection.commit()  # SQLite: end the read transaction, see the next commits
        return count

    def close(self) -> None:
        self.connection.close()


def drain(pending: PendingCounter) -> tuple[float, int]:
    """Seconds from the end of the run until the workers applied every stored message, and how many were left."""
    started = time.monotonic()
    left = pending()
    while pending():
        time.sleep(0.2)
    return time.monotonic() - started, left


def _workers(env: dict[str, str], count: int, *, announce: bool = AFTER) -> list:
    # Each a process of its own, as deployed: the inbound appliers' worker (portal/processes.py, its
    # queue, threads and lower CPU priority); the apply tasks are kicked by each web process at most
    # every 0.1 s (beat's sweep is not running here).
    return [
        servers.Process(
            f"worker{number}",
            inbound_worker_command(
                name=f"ingest{number}", loglevel="INFO" if announce else "WARNING", quiet=True, **NICENESS
            ),
            env,
        )
        for number in range(1, count + 1)
    ]


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
        counts = [0] if os.environ.get("BENCH_INGEST_WORKER") == "0" else WORKER_COUNTS
        server = Gunicorn(env, base / f"gunicorn-{kind}.log")
        pending = PendingCounter(url)
        try:
            label = "SQLite" if kind == "sqlite" else "PostgreSQL"
            for workers in counts:
                _measure_with_workers(env, server, pending, label, workers)
                if not workers:
                    _apply_what_was_left(env, pending)
        finally:
            pending.close()
            server.stop()
            if pg_url:
                drop_pg_database(pg_url, "bench_ingest")


def _apply_what_was_left(env: dict[str, str], pending: PendingCounter) -> None:
    """Apply what the pass without workers stored, before the next pass (not measured). Left
    waiting, it is older than OICP_INBOUND_MAX_DEFER_SECONDS when the next pass begins, and a
    queue that old is applied at once, burst or not: the next pass's workers would spend their
    first round on the previous pass's backlog instead of waiting for the burst to ease."""
    left = pending()
    if left:
        seconds, _ = _apply_with_new_workers(env, pending, 2, kick=True)
        log(f"applied the {left} messages stored without workers in {seconds:.1f} s (not measured)")


def _apply_with_new_workers(env: dict[str, str], pending: PendingCounter, count: int, *, kick: bool = False):
    """Start `count` workers on what is stored, wait until it is all applied, stop them: (seconds, left).
    `kick`: queue one apply task as well (the kicks queued while no worker ran may be gone)."""
    started = _workers(env, count, announce=True)
    try:
        for worker in started:
            worker.wait_for_line("ready.", timeout=60)
        if kick:
            manage(env, "shell", "-c", "from sessions.tasks import apply_inbound_messages as t; t.delay()")
        return drain(pending)
    finally:
        for worker in started:
            worker.stop()


def _measure_with_workers(env, server, pending: PendingCounter, label: str, workers: int) -> None:
    nonce = random.randrange(1, 2**30) & ~1  # even: measured runs; nonce + 1: their warm-ups
    running = [] if AFTER else _workers(env, workers)

    def applied() -> tuple[float, int]:
        if not workers:
            return 0.0, pending()
        if not AFTER:
            return drain(pending)
        # The workers start only now, on the backlog of the burst (and its queued kicks).
        return _apply_with_new_workers(env, pending, workers)

    rounds = []
    try:
        for number in range(ROUNDS):
            # The baselines bracket the portal's runs: baseline, Start, CDR, baseline; each round its own IDs.
            first, seconds, ids = number == 0, SECONDS / ROUNDS, nonce + 1000 * number
            base_start = measure(server.url, "start", "baseline", ids + 100, seconds=seconds, warm_up=first)
            start = measure(server.url, "start", "oicp", ids, seconds=seconds, warm_up=first)
            start["drain_s"], start["left"] = applied()
            cdr = measure(server.url, "cdr", "oicp", ids, seconds=seconds, warm_up=first)  # closes those sessions
            cdr["drain_s"], cdr["left"] = applied()
            base_cdr = measure(server.url, "cdr", "baseline", ids + 200, seconds=seconds, warm_up=first)
            rounds.append({"start": (start, base_start), "cdr": (cdr, base_cdr)})
    finally:
        for worker in running:
            worker.stop()
    for name, key in (("Start notifications", "start"), ("CDRs", "cdr")):
        pairs = [round_[key] for round_ in rounds]
        by_ratio = sorted(pairs, key=lambda pair: pair[0]["rps"] / pair[1]["rps"] if pair[1]["rps"] else 0.0)
        ratios = [ours["rps"] / baseline["rps"] if baseline["rps"] else 0.0 for ours, baseline in by_ratio]
        ours, baseline = by_ratio[len(by_ratio) // 2]  # the median round stands for the figure
        ratio = ratios[len(ratios) // 2]
        errors = sum(o["errors"] + b["errors"] for o, b in pairs)
        ours = {**ours, "left": sum(o["left"] for o, _ in pairs), "drain_s": sum(o["drain_s"] for o, _ in pairs)}
        rate = ours["left"] / ours["drain_s"] if ours["drain_s"] else 0.0
        if workers:
            applying = (
                f"{ours['left']} messages (warm-up included) still to apply at the end of the run, all applied "
                f"{ours['drain_s']:.1f} s later ({rate:.0f} messages/s)"
            )
        else:
            applying = (
                f"{ours['left']} messages stored for workers that were not running (the acknowledgement's cost alone)"
            )
        log(f"{name}, {workers} worker(s): {applying}")
        beside = f"{workers} worker(s)" if workers else "no worker (the endpoint alone)"
        report(
            f"ingest {name}, {label}, {beside}",
            f"{ours['rps']:.0f} req/s (p99 {ours['p99_us'] / 1000:.1f} ms); baseline {baseline['rps']:.0f} req/s",
            ratio,
            f"≥ {TARGET}",
            (ratio or 0) >= TARGET and errors == 0,
            f"gunicorn 2 sync workers, {CONNECTIONS} connections, {ROUNDS} rounds of {SECONDS / ROUNDS:.0f} s "
            f"(ratio per round: {', '.join(f'{r:.2f}' for r in ratios)}); {workers} worker process(es) "
            f"beside it: {applying}" + (f"; {errors} failed requests" if errors else ""),
        )


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
