"""Bulk data for the benchmarks: sessions, stop requests and a valid chain of audit records.

    python -m bench.generate_load_data --sessions 100000 --stops 300000 --audit 1000000

Run with the portal's environment (DJANGO_SETTINGS_MODULE, DATABASE_URL, AUDIT_CHAIN_KEY), into a
freshly migrated database: bench/support.py does. Sessions and stop requests go in with bulk inserts
(synthetic load, not history); the audit records go through the audit service's bulk path
(`record_audits`, 5,000 records per call, each with its own time), so they are chained and keyed
exactly as the portal chains them and `verify_audit` passes on them.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

OPERATORS = [f"DE*L{n:02d}" for n in range(50)]
BATCH = 5000


def generate(*, sessions: int, stops: int, audit: int, seed: int) -> None:
    from django.db import transaction
    from django.utils import timezone

    from sessions.audit.records import AuditEntry, record_audits
    from sessions.models import AuditRecord, ChargingSession, RemoteStopRequest, StopReason

    State = RemoteStopRequest.State
    final = [State.CONFIRMED, State.CONFIRMED, State.CONFIRMED, State.REJECTED, State.FAILED, State.UNCONFIRMED]
    codes = {State.CONFIRMED: "000", State.REJECTED: "501", State.FAILED: "", State.UNCONFIRMED: "000"}
    if AuditRecord.objects.exists() or ChargingSession.objects.exists():
        sys.exit("The database is not empty; generate load data into a fresh database only.")
    rng = random.Random(seed)
    started = time.monotonic()
    now = timezone.now()
    t0 = now - timedelta(days=60)

    session_rows = []
    for i in range(sessions):
        op = OPERATORS[i % len(OPERATORS)]
        start = t0 + timedelta(seconds=i * 50)
        active = i >= sessions - max(1, sessions // 20)  # the newest 5 % are still charging
        session_rows.append(
            ChargingSession(
                session_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                evse_id=f"{op}*E{i:07d}*1",
                operator_id=op,
                provider_id="DE-EMP",
                emp_partner_session_id=f"EMP-{i}",
                status=ChargingSession.Status.ACTIVE if active else ChargingSession.Status.CLOSED,
                started_at=start,
                ended_at=None if active else start + timedelta(hours=1),
                energy_kwh=Decimal(rng.randint(1000, 60000)) / 1000,
                last_update_at=start + timedelta(minutes=rng.randint(1, 300)),
            )
        )
    ChargingSession.objects.bulk_create(session_rows, batch_size=BATCH)
    session_ids = list(ChargingSession.objects.order_by("pk").values_list("pk", "started_at", "operator_id"))
    print(f"{sessions} sessions ({time.monotonic() - started:.1f} s)", flush=True)

    stop_rows = []
    for i in range(stops):
        pk, start, operator_id = session_ids[i % len(session_ids)]
        state = rng.choice(final)
        requested = start + timedelta(minutes=20 + i // len(session_ids))
        stop_rows.append(
            RemoteStopRequest(
                charging_session_id=pk,
                operator_id=operator_id,  # as request_remote_stop copies it from the session
                reason=rng.choice(StopReason.values),
                case_reference=f"CASE-{i}",
                state=state,
                attempt_count=1,
                http_status=200 if state != State.FAILED else 503,
                oicp_code=codes[state],
                oicp_description="Success." if codes[state] == "000" else "",
                requested_at=requested,
                first_sent_at=requested,
                last_sent_at=requested,
                answered_at=requested,
                finished_at=requested + timedelta(seconds=2),
                confirmed_at=requested + timedelta(minutes=3) if state == State.CONFIRMED else None,
                time_to_confirmation=timedelta(minutes=3) if state == State.CONFIRMED else None,
            )
        )
    RemoteStopRequest.objects.bulk_create(stop_rows, batch_size=BATCH)
    # Stand-ins carrying what an audit entry reads of its stop request (id, session, correlation id).
    stop_refs = [
        RemoteStopRequest(pk=pk, charging_session_id=session_pk, correlation_id=correlation)
        for pk, session_pk, correlation in RemoteStopRequest.objects.order_by("pk").values_list(
            "pk", "charging_session_id", "correlation_id"
        )
    ]
    print(f"{stops} stop requests ({time.monotonic() - started:.1f} s)", flush=True)

    events = [
        AuditRecord.EventType.STOP_REQUESTED,
        AuditRecord.EventType.STOP_SENDING,
        AuditRecord.EventType.STOP_ACCEPTED,
        AuditRecord.EventType.STOP_CONFIRMED,
    ]
    for low in range(0, audit, BATCH):
        entries = []
        for i in range(low, min(low + BATCH, audit)):
            stop = stop_refs[i % len(stop_refs)]
            data = {
                "attempt": 1,
                "outcome": "accepted",
                "http_status": 200,
                "oicp_code": "000",
                "request": {
                    "method": "POST",
                    "json": {
                        "SessionID": str(stop.correlation_id),
                        "ProviderID": "DE-EMP",
                        "EvseID": "DE*L01*E0000001*1",
                    },
                },
                "response": {"status": 200, "body": {"Result": True, "StatusCode": {"Code": "000"}}},
            }
            entries.append(
                AuditEntry(
                    events[i % len(events)], stop_request=stop, data=data, occurred_at=t0 + timedelta(seconds=i * 5)
                )
            )
        with transaction.atomic():
            record_audits(entries)
    print(f"{audit} audit records ({time.monotonic() - started:.1f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--stops", type=int, default=300_000)
    parser.add_argument("--audit", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    generate(sessions=args.sessions, stops=args.stops, audit=args.audit, seed=args.seed)


if __name__ == "__main__":
    main()
