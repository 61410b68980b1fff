"""Dispatch: stop requests through service → Redis → worker → simulator, against a bare Celery task.

Latency is measured from the moment a stop is requested to the simulator's receipt of the HTTP
call (both clocks are this machine's). The baseline in the same run is a bare Celery task that
only posts the same body to the simulator. A second run holds 30 stops on a CPO that answers after
60 s and measures the other stops again.

On each database of BENCH_DATABASES (SQLite, the embedded default of `make run`, and PostgreSQL),
each in its own process, and BENCH_DISPATCH_REPEATS times (default 3): the figure is the median
run's p99 and the spread is every run's, so one lucky run cannot stand for the figure.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import uuid
from itertools import pairwise
from pathlib import Path

from bench.common import ROOT, percentile, report, servers
from bench.support import SCALE, portal_env, run_per_database
from portal.processes import celery_worker_command

RATE = float(os.environ.get("BENCH_DISPATCH_RATE", "50"))
COUNT = int(os.environ.get("BENCH_DISPATCH_COUNT", max(100, round(1000 * SCALE))))  # BENCH_SCALE: quicker
HELD = int(os.environ.get("BENCH_DISPATCH_HELD", "30"))
HELD_DELAY = float(os.environ.get("BENCH_DISPATCH_HELD_DELAY", "60"))
HEALTHY_OPERATORS = [f"DE*B{n:02d}" for n in range(1, 11)]
SLOW_OPERATOR = "DE*SLW"
REPEATS = max(1, int(os.environ.get("BENCH_DISPATCH_REPEATS", "3")))
# The targets (issue 16): p99 within this many ms of the bare task's p99, per database; a slow CPO
# holding HELD stops may cost the others at most SLOW_CPO_FACTOR × the healthy p99.
GAP_TARGET_MS = {"sqlite": 25.0, "postgres": 10.0}
SLOW_CPO_FACTOR = 1.2
LABELS = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def paced(count: int, rate: float):
    """Yield 0..count-1 at a steady rate (no bursts)."""
    start = time.perf_counter()
    for index in range(count):
        delay = start + index / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield index


def wait_received(simulator, session_ids: set[str], timeout: float) -> dict[str, float]:
    """SessionID → the simulator's receipt time (epoch seconds) for each of session_ids."""
    deadline = time.monotonic() + timeout
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        for entry in simulator.received():
            body = entry.get("body") or {}
            sid = body.get("SessionID") if isinstance(body, dict) else None
            if sid in session_ids and sid not in seen:
                seen[sid] = entry["received_ts"]
        if len(seen) == len(session_ids):
            return seen
        time.sleep(0.5)
    raise RuntimeError(f"only {len(seen)} of {len(session_ids)} requests reached the simulator")


def main() -> None:
    """Each database in its own process (Django is set up once per process)."""
    if len(sys.argv) > 1:
        kind, database_url = sys.argv[1], sys.argv[2]
        measure(kind, database_url)
        return
    run_per_database("bench.dispatch")


def measure(kind: str, database_url: str) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    with servers.redis_server() as redis_url, servers.simulator_process("--quiet", "--tidy") as simulator:
        env = portal_env(
            database_url,
            AUDIT_ANCHOR_DIR=str(workdir / "audit-anchors"),
            OICP_BASE_URL=simulator.url,
            CELERY_BROKER_URL=redis_url,
            CACHE_URL=redis_url.replace("redis://", "rediscache://", 1),
        )
        os.environ.update(env)
        import django

        django.setup()
        from django.core.management import call_command

        from sessions import services
        from sessions.models import ChargingSession, StopReason

        call_command("migrate", verbosity=0)
        simulator.set_behaviours(
            {
                "default": {"action": "accept"},
                "operators": {SLOW_OPERATOR: {"action": "accept", "delay_seconds": HELD_DELAY}},
            }
        )

        def make_sessions(count: int, operators: list[str]) -> list[ChargingSession]:
            from django.utils import timezone

            now = timezone.now()
            rows = [
                ChargingSession(
                    session_id=str(uuid.uuid4()),
                    evse_id=f"{operators[i % len(operators)]}*E{i:05d}*1",
                    operator_id=operators[i % len(operators)],
                    provider_id="DE-EMP",
                    started_at=now,
                    last_update_at=now,
                )
                for i in range(count)
            ]
            ChargingSession.objects.bulk_create(rows, batch_size=1000)
            return list(ChargingSession.objects.filter(session_id__in=[r.session_id for r in rows]))

        worker_env = {**os.environ, **env}
        extra = ["--include", "bench.baseline_tasks", *os.environ.get("BENCH_WORKER_ARGS", "").split()]
        command = celery_worker_command(concurrency=40, loglevel="WARNING", quiet=True, extra=extra)
        worker = servers.Process("worker", command, worker_env)
        # Retries and deferred stops have their own worker, as in `make run`.
        retry_queue = os.environ.get("STOP_RETRY_QUEUE", "stop-retries")
        command = celery_worker_command(
            queues=retry_queue, concurrency=20, name="retries", loglevel="WARNING", quiet=True
        )
        retry_worker = servers.Process("retry-worker", command, worker_env)
        try:
            time.sleep(3)  # the worker logs nothing at WARNING when ready; give it time to connect
            from bench.baseline_tasks import post_body

            servers.point_celery_at(redis_url)
            url = f"{simulator.url}/api/oicp/charging/v21/providers/DE-EMP/authorize-remote/stop"

            # Warm-up: connections, imports, the first queries.
            warm = make_sessions(20, HEALTHY_OPERATORS)
            for cs in warm:
                services.request_remote_stop(
                    charging_session_id=cs.pk, acting_user=None, reason=StopReason.DRIVER_ASKED
                )
                post_body.delay(url, {"SessionID": str(uuid.uuid4()), "ProviderID": "DE-EMP", "EvseID": cs.evse_id})
            time.sleep(3)

            def run_baseline(sessions: list[ChargingSession]) -> list[float]:
                """A bare task posting the same body, at the same pace."""
                sent: dict[str, float] = {}
                for index in paced(len(sessions), RATE):
                    sid = str(uuid.uuid4())
                    sent[sid] = time.time()
                    post_body.delay(url, {"SessionID": sid, "ProviderID": "DE-EMP", "EvseID": sessions[index].evse_id})
                arrived = wait_received(simulator, set(sent), timeout=120)
                return [(arrived[s] - t) * 1000 for s, t in sent.items()]

            def run_ours(sessions: list[ChargingSession], label: str = "") -> list[float]:
                sent: dict[str, float] = {}
                published: dict[str, float] = {}
                stop_ids: dict[str, int] = {}
                for index in paced(len(sessions), RATE):
                    cs = sessions[index]
                    sent[cs.session_id] = time.time()
                    requested = services.request_remote_stop(
                        charging_session_id=cs.pk, acting_user=None, reason=StopReason.DRIVER_ASKED
                    )
                    published[cs.session_id] = time.time()
                    stop_ids[cs.session_id] = requested.stop_request.pk
                    request_ms.append((published[cs.session_id] - sent[cs.session_id]) * 1000)
                arrived = wait_received(simulator, set(sent), timeout=180)
                if label:
                    time.sleep(1)  # the last answers are being recorded
                    log_stages(label, stages(sent, published, arrived, stop_ids))
                return [(arrived[s] - t) * 1000 for s, t in sent.items()]

            request_ms: list[float] = []  # the agent's side alone: the request and its publish

            def settle_held_stops() -> None:
                """The slow CPO answers at once until every held stop (and those waiting for its slots,
                which would otherwise be held in turn for minutes) is final, then slows down again."""
                from sessions.models import RemoteStopRequest

                open_states = [RemoteStopRequest.State.PENDING, RemoteStopRequest.State.SENDING]
                simulator.patch_behaviours({"operators": {SLOW_OPERATOR: {"action": "accept"}}})
                servers.wait_until(
                    lambda: (
                        not RemoteStopRequest.objects.filter(
                            charging_session__operator_id=SLOW_OPERATOR, state__in=open_states
                        ).exists()
                    ),
                    timeout=HELD_DELAY + 120,
                    message="the held stops to finish",
                )
                slow = {"action": "accept", "delay_seconds": HELD_DELAY}
                simulator.patch_behaviours({"operators": {SLOW_OPERATOR: slow}})

            runs = []  # (bare p99, healthy p99, with a slow CPO p99, bare p50, healthy p50) per repeat
            for _ in range(REPEATS):
                base = run_baseline(make_sessions(COUNT, HEALTHY_OPERATORS))
                ours = run_ours(make_sessions(COUNT, HEALTHY_OPERATORS), label=f"{kind} run {len(runs) + 1} healthy")
                # Then HELD stops held by one slow CPO, and the healthy load again beside them.
                for cs in make_sessions(HELD, [SLOW_OPERATOR]):
                    services.request_remote_stop(
                        charging_session_id=cs.pk, acting_user=None, reason=StopReason.DRIVER_ASKED
                    )
                time.sleep(2)
                with_slow = run_ours(
                    make_sessions(COUNT, HEALTHY_OPERATORS), label=f"{kind} run {len(runs) + 1} beside a slow CPO"
                )
                runs.append(
                    (percentile(base, 99), percentile(ours, 99), percentile(with_slow, 99))
                    + (percentile(base, 50), percentile(ours, 50))
                )
                settle_held_stops()  # or the next run would still share the workers with them
            report_runs(kind, runs, request_ms)
        finally:
            worker.stop()
            retry_worker.stop()


STAGES = {
    "request": "the request and its publish (the agent's side)",
    "to worker": "published → claimed (broker, task start, the stop read, the CPO's slot)",
    "claim": "claimed → its audit record written (the write lock or the chain's lock, the UPDATE)",
    "to Hubject": "audit record → the simulator has the call (commit, the HTTP client)",
    "answer stored": "the simulator has the call → the answer recorded (after the figure, but it competes)",
}


def stages(sent: dict, published: dict, arrived: dict, stop_ids: dict) -> dict[str, list[float]]:
    """Per stop, the milliseconds of each stage of STAGES, from the rows' own times (RemoteStopRequest
    first_sent_at and finished_at, the STOP_SENDING audit record's occurred_at: the worker's clock,
    the same machine's) and the bench's (sent, published) and the simulator's (arrived)."""
    from sessions.models import AuditRecord, RemoteStopRequest

    by_id = {row.pk: row for row in RemoteStopRequest.objects.filter(pk__in=stop_ids.values())}
    sending = {
        row.stop_request_id: row.occurred_at.timestamp()
        for row in AuditRecord.objects.filter(
            stop_request_id__in=stop_ids.values(), event_type=AuditRecord.EventType.STOP_SENDING
        )
    }
    result: dict[str, list[float]] = {name: [] for name in STAGES}
    for session_id, stop_id in stop_ids.items():
        row, audited = by_id.get(stop_id), sending.get(stop_id)
        if row is None or row.first_sent_at is None or audited is None or row.finished_at is None:
            continue
        claimed, received = row.first_sent_at.timestamp(), arrived[session_id]
        points = (sent[session_id], published[session_id], claimed, audited, received, row.finished_at.timestamp())
        for name, (start, end) in zip(STAGES, pairwise(points), strict=True):
            result[name].append((end - start) * 1000)
    return result


def log_stages(label: str, measured: dict[str, list[float]]) -> None:
    parts = [
        f"{name} {percentile(values, 50):.1f}/{percentile(values, 99):.1f}/{max(values):.1f}"
        for name, values in measured.items()
        if values
    ]
    print(f"[bench] … {label}: stages p50/p99/max ms: " + "; ".join(parts), flush=True)


def report_runs(kind: str, runs: list[tuple[float, ...]], request_ms: list[float]) -> None:
    """The median run (by our p99) stands for the figure; every run's value is in the spread."""
    label = LABELS[kind]
    median = sorted(runs, key=lambda run: run[1])[len(runs) // 2]
    b99, o99, _, b50, o50 = median
    gaps = [run[1] - run[0] for run in runs]
    spread = ", ".join(f"{run[1]:.1f}/{run[0]:.1f}" for run in runs)
    report(
        f"dispatch p50/p99 (ms), {label}",
        f"ours {o50:.1f}/{o99:.1f}; bare task {b50:.1f}/{b99:.1f}",
        o99 / b99 if b99 else None,
        f"p99 within {GAP_TARGET_MS[kind]:.0f} ms of the bare task's",
        statistics.median(gaps) <= GAP_TARGET_MS[kind],
        f"{COUNT} stops at {RATE:.0f}/s, median of {len(runs)} runs; p99 ours/bare per run: {spread}; "
        f"of which the request and its publish p50/p99 {percentile(request_ms, 50):.1f}/{percentile(request_ms, 99):.1f}",
    )
    # Here the run with the median ratio stands for the figure (the median run by p99 above can
    # have another run's ratio: a row showed 1.64 and "met" by the median of 1.13).
    ratios = [run[2] / run[1] for run in runs if run[1]]
    by_ratio = sorted((run for run in runs if run[1]), key=lambda run: run[2] / run[1])
    slow_run = by_ratio[len(by_ratio) // 2] if by_ratio else median
    ratio = slow_run[2] / slow_run[1] if slow_run[1] else None
    report(
        f"dispatch p99 with a slow CPO (ms), {label}",
        f"{slow_run[2]:.1f} (healthy run {slow_run[1]:.1f})",
        ratio,
        f"≤ {SLOW_CPO_FACTOR}× the healthy run",
        ratio is not None and ratio <= SLOW_CPO_FACTOR,
        f"{HELD} stops held {HELD_DELAY:.0f} s by {SLOW_OPERATOR}, the run with the median ratio; ratio per "
        "run: " + ", ".join(f"{each:.2f}" for each in ratios),
    )


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
