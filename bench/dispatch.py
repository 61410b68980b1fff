"""Dispatch: stop requests through service → Redis → worker → simulator, against a bare Celery task.

Latency is measured from the moment a stop is requested to the simulator's receipt of the HTTP
call (both clocks are this machine's). The baseline in the same run is a bare Celery task that
only posts the same body to the simulator. A second run holds 30 stops on a CPO that answers after
60 s and measures the other stops again.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import ROOT, percentile, report, servers
from portal.processes import celery_worker_command

RATE = float(os.environ.get("BENCH_DISPATCH_RATE", "50"))
COUNT = int(os.environ.get("BENCH_DISPATCH_COUNT", "1000"))
HELD = int(os.environ.get("BENCH_DISPATCH_HELD", "30"))
HELD_DELAY = float(os.environ.get("BENCH_DISPATCH_HELD_DELAY", "60"))
HEALTHY_OPERATORS = [f"DE*B{n:02d}" for n in range(1, 11)]
SLOW_OPERATOR = "DE*SLW"


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
    workdir = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    with servers.redis_server() as redis_url, servers.simulator_process("--quiet", "--tidy") as simulator:
        env = {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "PORTAL_ENV_FILE": "/nonexistent/.env",
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": "bench-" + uuid.uuid4().hex,
            "AUDIT_CHAIN_KEY": "bench-audit-" + uuid.uuid4().hex,
            "AUDIT_ANCHOR_DIR": str(workdir / "audit-anchors"),
            "OICP_BASE_URL": simulator.url,
            "OICP_PROVIDER_ID": "DE-EMP",
            "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{workdir}/bench.sqlite3"),
            "CELERY_BROKER_URL": redis_url,
            "CACHE_URL": redis_url.replace("redis://", "rediscache://", 1),
            "LOG_LEVEL": "WARNING",
        }
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

            # Baseline: a bare task posting the same body.
            baseline_sent: dict[str, float] = {}
            baseline_sessions = make_sessions(COUNT, HEALTHY_OPERATORS)
            for index in paced(COUNT, RATE):
                cs = baseline_sessions[index]
                sid = str(uuid.uuid4())
                baseline_sent[sid] = time.time()
                post_body.delay(url, {"SessionID": sid, "ProviderID": "DE-EMP", "EvseID": cs.evse_id})
            got = wait_received(simulator, set(baseline_sent), timeout=120)
            base = [(got[s] - t) * 1000 for s, t in baseline_sent.items()]

            def run_ours(sessions: list[ChargingSession]) -> list[float]:
                sent: dict[str, float] = {}
                for index in paced(len(sessions), RATE):
                    cs = sessions[index]
                    sent[cs.session_id] = time.time()
                    services.request_remote_stop(
                        charging_session_id=cs.pk, acting_user=None, reason=StopReason.DRIVER_ASKED
                    )
                arrived = wait_received(simulator, set(sent), timeout=180)
                return [(arrived[s] - t) * 1000 for s, t in sent.items()]

            ours = run_ours(make_sessions(COUNT, HEALTHY_OPERATORS))
            elapsed_note = f"{COUNT} stops at {RATE:.0f}/s"
            b99, o99 = percentile(base, 99), percentile(ours, 99)
            report(
                "dispatch p50/p99 (ms)",
                f"ours {percentile(ours, 50):.1f}/{o99:.1f}; bare task {percentile(base, 50):.1f}/{b99:.1f}",
                o99 / b99 if b99 else None,
                "p99 within 20 ms of baseline p99",
                o99 - b99 <= 20,
                elapsed_note,
            )

            # Second run: 30 stops held for 60 s by one slow CPO, then the healthy load again.
            held = make_sessions(HELD, [SLOW_OPERATOR])
            for cs in held:
                services.request_remote_stop(
                    charging_session_id=cs.pk, acting_user=None, reason=StopReason.DRIVER_ASKED
                )
            time.sleep(2)
            with_slow = run_ours(make_sessions(COUNT, HEALTHY_OPERATORS))
            s99 = percentile(with_slow, 99)
            report(
                "dispatch p99 with a slow CPO (ms)",
                f"{s99:.1f} (healthy run {o99:.1f})",
                s99 / o99 if o99 else None,
                "≤ 2× the healthy run",
                s99 <= 2 * o99,
                f"{HELD} stops held {HELD_DELAY:.0f} s by {SLOW_OPERATOR}",
            )
        finally:
            worker.stop()
            retry_worker.stop()


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
