"""Bulk data for benchmarks: sessions, stop requests and a valid chain of audit records.

    manage.py generate_load_data --sessions 100000 --stops 300000 --audit 1000000

Rows go in with bulk inserts (no services, no per-row audit) because this is synthetic load, not
history. The audit records carry a valid hash chain, so `verify_audit` passes on them.
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from sessions.audit_chain import canonical_bytes, chain_hash
from sessions.audit_keys import current_key
from sessions.models import AuditChainHead, AuditRecord, ChargingSession, RemoteStopRequest, StopReason

OPERATORS = [f"DE*L{n:02d}" for n in range(50)]
BATCH = 5000
State = RemoteStopRequest.State
FINAL = [State.CONFIRMED, State.CONFIRMED, State.CONFIRMED, State.REJECTED, State.FAILED, State.UNCONFIRMED]
CODES = {State.CONFIRMED: "000", State.REJECTED: "501", State.FAILED: "", State.UNCONFIRMED: "000"}


class Command(BaseCommand):
    help = "Generate synthetic sessions, stop requests and chained audit records for benchmarks."

    def add_arguments(self, parser):
        parser.add_argument("--sessions", type=int, default=100_000)
        parser.add_argument("--stops", type=int, default=300_000)
        parser.add_argument("--audit", type=int, default=1_000_000)
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args, sessions: int, stops: int, audit: int, seed: int, **options):
        if AuditRecord.objects.exists() or ChargingSession.objects.exists():
            raise CommandError("The database is not empty; generate load data into a fresh database only.")
        rng = random.Random(seed)
        started = time.monotonic()
        now = timezone.now()
        t0 = now - timedelta(days=60)

        session_rows = []
        for i in range(sessions):
            op = OPERATORS[i % len(OPERATORS)]
            start = t0 + timedelta(seconds=i * 50)
            active = i >= sessions - max(1, sessions // 20)  # the newest 5 % are still charging
            session_rows.append(ChargingSession(
                session_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)), evse_id=f"{op}*E{i:07d}*1",
                operator_id=op, provider_id="DE-EMP", emp_partner_session_id=f"EMP-{i}",
                status=ChargingSession.Status.ACTIVE if active else ChargingSession.Status.CLOSED,
                started_at=start, ended_at=None if active else start + timedelta(hours=1),
                energy_kwh=Decimal(rng.randint(1000, 60000)) / 1000,
                last_update_at=start + timedelta(minutes=rng.randint(1, 300))))
        ChargingSession.objects.bulk_create(session_rows, batch_size=BATCH)
        session_ids = list(ChargingSession.objects.order_by("pk").values_list("pk", "started_at"))
        self.stdout.write(f"{sessions} sessions ({time.monotonic() - started:.1f} s)")

        stop_rows = []
        for i in range(stops):
            pk, start = session_ids[i % len(session_ids)]
            state = rng.choice(FINAL)
            requested = start + timedelta(minutes=20 + i // len(session_ids))
            stop_rows.append(RemoteStopRequest(
                charging_session_id=pk, reason=rng.choice(StopReason.values), case_reference=f"CASE-{i}",
                state=state, attempt_count=1, http_status=200 if state != State.FAILED else 503,
                oicp_code=CODES[state], oicp_description="Success." if CODES[state] == "000" else "",
                requested_at=requested, first_sent_at=requested, last_sent_at=requested,
                answered_at=requested, finished_at=requested + timedelta(seconds=2),
                confirmed_at=requested + timedelta(minutes=3) if state == State.CONFIRMED else None,
                time_to_confirmation=timedelta(minutes=3) if state == State.CONFIRMED else None))
        RemoteStopRequest.objects.bulk_create(stop_rows, batch_size=BATCH)
        stop_refs = list(RemoteStopRequest.objects.order_by("pk").values_list("pk", "charging_session_id",
                                                                              "correlation_id"))
        self.stdout.write(f"{stops} stop requests ({time.monotonic() - started:.1f} s)")

        events = [AuditRecord.EventType.STOP_REQUESTED, AuditRecord.EventType.STOP_SENDING,
                  AuditRecord.EventType.STOP_ACCEPTED, AuditRecord.EventType.STOP_CONFIRMED]
        prev = ""
        key_id, key = current_key()
        batch: list[AuditRecord] = []
        with transaction.atomic():
            for i in range(audit):
                stop_pk, session_pk, correlation = stop_refs[i % len(stop_refs)]
                event = events[i % len(events)]
                occurred = t0 + timedelta(seconds=i * 5)
                data = {"attempt": 1, "outcome": "accepted", "http_status": 200, "oicp_code": "000",
                        "request": {"method": "POST", "json": {"SessionID": str(correlation), "ProviderID": "DE-EMP",
                                                              "EvseID": "DE*L01*E0000001*1"}},
                        "response": {"status": 200, "body": {"Result": True, "StatusCode": {"Code": "000"}}}}
                record_hash = chain_hash(prev, canonical_bytes(
                    event_type=event, occurred_at=occurred, actor_id=None, charging_session_id=session_pk,
                    stop_request_id=stop_pk, correlation_id=correlation, data=data), key)
                batch.append(AuditRecord(event_type=event, occurred_at=occurred, charging_session_id=session_pk,
                                         stop_request_id=stop_pk, correlation_id=correlation, data=data,
                                         prev_hash=prev, record_hash=record_hash, key_id=key_id))
                prev = record_hash
                if len(batch) == BATCH:
                    AuditRecord.objects.bulk_create(batch)
                    batch = []
            if batch:
                AuditRecord.objects.bulk_create(batch)
            last = AuditRecord.objects.order_by("-pk").values_list("pk", flat=True).first()
            AuditChainHead.objects.update_or_create(pk=1, defaults={"last_hash": prev, "last_record_id": last})
        self.stdout.write(f"{audit} audit records ({time.monotonic() - started:.1f} s)")
