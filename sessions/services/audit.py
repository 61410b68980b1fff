"""The audit trail: its single write path, the hash chain's verification, retention and legal holds.

Every audit record is chained to the one before it (see `sessions.audit_chain`). Appends are
serialised by locking the one `AuditChainHead` row in the caller's transaction, and that lock is
held until the transaction ends. So a service writes its audit records *last*, all at once
(`record_audits`): the content is hashed before the lock is taken, and under the lock there are
exactly three statements (read the head, one multi-row INSERT, move the head) followed by COMMIT.
Every other writer of the trail waits only for those, never for the rest of a transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Max, Min
from django.utils import timezone

from ..audit_chain import ChainWalk, canonical_bytes, chain_hash, normalise_data
from ..models import (
    AuditChainHead,
    AuditCheckpoint,
    AuditRecord,
    AuditVerification,
    ChargingSession,
    LegalHold,
    RemoteStopRequest,
)

from .audit_verify import walk_chain_fast

logger = logging.getLogger(__name__)
Event = AuditRecord.EventType

HEAD_PK = 1
PURGE_BATCH_SIZE = 10_000


@dataclass
class AuditEntry:
    """One audit record to append: what happened, who did it, to which session or stop request."""

    event_type: str
    actor: Any = None
    charging_session: ChargingSession | None = None
    stop_request: RemoteStopRequest | None = None
    data: dict[str, Any] | None = None


def _head_sql() -> tuple[str, str]:
    # Plain SQL: these two statements run under the chain lock on every audited change, and the
    # ORM's query compilation would cost more than the statements themselves.
    table = connection.ops.quote_name(AuditChainHead._meta.db_table)
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""  # SQLite: BEGIN IMMEDIATE
    return (f"SELECT last_hash FROM {table} WHERE id = %s{lock}",
            f"UPDATE {table} SET last_hash = %s, last_record_id = %s WHERE id = %s")


def _locked_head_hash(cursor) -> str:
    """The newest record's hash, with the chain head locked until the caller's transaction ends."""
    select, _ = _head_sql()
    cursor.execute(select, [HEAD_PK])
    row = cursor.fetchone()
    if row is None:
        # A fresh (or flushed) database: start from whatever is newest, normally nothing.
        newest = AuditRecord.objects.order_by("-id").values_list("id", "record_hash").first()
        AuditChainHead.objects.get_or_create(
            pk=HEAD_PK,
            defaults={"last_record_id": newest[0] if newest else None, "last_hash": newest[1] if newest else ""},
        )
        cursor.execute(select, [HEAD_PK])
        row = cursor.fetchone()
    return row[0]


def _lock_chain() -> None:
    """Hold the chain head until the transaction ends: no append, legal hold or purge meanwhile."""
    with connection.cursor() as cursor:
        _locked_head_hash(cursor)


def record_audits(entries: Sequence[AuditEntry]) -> list[AuditRecord]:
    """Append records to the chain in one step; call it last in the transaction of the change."""
    if not entries:
        return []
    records = []
    for entry in entries:
        stop_request = entry.stop_request
        session_id = entry.charging_session.pk if entry.charging_session is not None else None
        if session_id is None and stop_request is not None:
            session_id = stop_request.charging_session_id
        records.append(AuditRecord(
            event_type=entry.event_type,
            actor=entry.actor,
            charging_session_id=session_id,
            stop_request=stop_request,
            correlation_id=stop_request.correlation_id if stop_request is not None else None,
            data=normalise_data(entry.data),
        ))
    # savepoint=False: inside the caller's transaction this adds no statement at all.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        previous = _locked_head_hash(cursor)
        # Taken under the lock, so the chain's order (ids) and the records' times agree.
        occurred_at = timezone.now()
        for record in records:
            record.occurred_at = occurred_at
            content = canonical_bytes(
                event_type=record.event_type,
                occurred_at=occurred_at,
                actor_id=record.actor_id,
                charging_session_id=record.charging_session_id,
                stop_request_id=record.stop_request_id,
                correlation_id=record.correlation_id,
                data=record.data,
            )
            record.prev_hash = previous
            record.record_hash = previous = chain_hash(previous, content)
        AuditRecord.objects.bulk_create(records)
        cursor.execute(_head_sql()[1], [previous, records[-1].pk, HEAD_PK])
    return records


def record_audit(
    *,
    event_type: str,
    actor=None,
    charging_session: ChargingSession | None = None,
    stop_request: RemoteStopRequest | None = None,
    data: dict[str, Any] | None = None,
) -> AuditRecord:
    """Append one audit record; callers invoke it last inside the transaction of the change."""
    return record_audits([AuditEntry(event_type, actor, charging_session, stop_request, data)])[0]


# --- verification --------------------------------------------------------------------------------

# The walk itself: canonical content put together from the stored values, the exact
# re-serialisation only where that does not give a record's hash.


def _broken(walk: ChainWalk, record_id: int | None, detail: str) -> ChainWalk:
    walk.ok, walk.broken_id, walk.detail = False, record_id, detail
    return walk


def _check_chain() -> ChainWalk:
    checkpoint = AuditCheckpoint.objects.order_by("-last_purged_id").first()
    start_hash = checkpoint.last_purged_hash if checkpoint else ""
    start_after = checkpoint.last_purged_id if checkpoint else None
    walk = walk_chain_fast(start_hash=start_hash, start_after_id=start_after)
    if not walk.ok:
        return walk
    if checkpoint is not None:
        leftover = AuditRecord.objects.filter(id__lte=checkpoint.last_purged_id).order_by("id").first()
        if leftover is not None:
            return _broken(walk, leftover.pk, f"inserted: record {leftover.pk} is older than the purge checkpoint "
                                              f"(everything up to id {checkpoint.last_purged_id} was purged)")
    # The head must point at the newest record. Records appended while we walked move it on: walk those too.
    for _ in range(10):
        head = AuditChainHead.objects.filter(pk=HEAD_PK).values_list("last_record_id", "last_hash").first()
        head_id, head_hash = head if head else (None, "")
        if head_id == walk.last_id or (head_id is None and walk.last_id == start_after):
            if head is not None and head_hash != walk.last_hash:
                return _broken(walk, walk.last_id, f"edited: record {walk.last_id} does not match the chain head")
            break
        if head_id is not None and (walk.last_id is None or head_id > walk.last_id):
            before = walk.checked
            walk = walk_chain_fast(walk=walk)
            if not walk.ok:
                return walk
            if walk.checked == before:
                return _broken(walk, head_id, f"deleted: the newest record(s), up to id {head_id} where the chain "
                                              f"head points, are missing (the last one left is {walk.last_id})")
            continue
        return _broken(walk, walk.last_id, f"inserted: records after id {head_id} (the chain head) were added "
                                           "outside the audit service")
    # The newest record of the previous verification must still be there, unchanged.
    anchor = (
        AuditRecord.objects.filter(event_type=Event.AUDIT_VERIFIED).order_by("-id").values_list("data", flat=True).first()
    )
    anchor_id = (anchor or {}).get("chain_last_id")
    if anchor_id and (start_after is None or anchor_id > start_after):
        found = AuditRecord.objects.filter(pk=anchor_id).values_list("record_hash", flat=True).first()
        if found != anchor.get("chain_last_hash"):
            what = "deleted" if found is None else "edited"
            return _broken(walk, anchor_id, f"{what}: record {anchor_id}, the newest record at the previous "
                                            "verification, is no longer in the chain as it was")
    return walk


def verify_audit_chain(*, acting_user=None) -> AuditVerification:
    """Walk the whole chain in id order, store the result and append an AUDIT_VERIFIED record."""
    started_at = timezone.now()
    return _record_verification(_check_chain(), started_at=started_at, acting_user=acting_user)


def _record_verification(walk: ChainWalk, *, started_at: datetime, acting_user,
                         verification: AuditVerification | None = None) -> AuditVerification:
    """Store a walk's result (on the requested row, or a new one) with its AUDIT_VERIFIED record."""
    detail = walk.detail or f"{walk.checked} records checked, chain intact"
    with transaction.atomic():
        result = {
            "state": AuditVerification.State.DONE,
            "started_at": started_at,
            "finished_at": timezone.now(),
            "ok": walk.ok,
            "records_checked": walk.checked,
            "first_broken_id": walk.broken_id,
            "detail": detail,
        }
        if verification is None:
            verification = AuditVerification.objects.create(**result)
        else:
            for name, value in result.items():
                setattr(verification, name, value)
            verification.save(update_fields=list(result))
        record_audit(
            event_type=Event.AUDIT_VERIFIED,
            actor=acting_user,
            data={
                "verification_id": verification.pk,
                "ok": walk.ok,
                "records_checked": walk.checked,
                "first_broken_id": walk.broken_id,
                "detail": detail,
                "chain_last_id": walk.last_id if walk.ok else None,
                "chain_last_hash": walk.last_hash if walk.ok else None,
                **({"requested_at": verification.requested_at.isoformat()} if verification.requested_at else {}),
            },
        )
    log = logger.info if walk.ok else logger.error
    log("audit chain verification: %s", detail)
    return verification


# --- "verify now": a supervisor asks, a worker walks -------------------------------------------------

# A request no worker has finished by then did not run (the broker or the worker was down); a new
# one may be made. A walk of millions of records takes seconds, not minutes.
VERIFICATION_STALE_AFTER = timedelta(minutes=30)
_OPEN = (AuditVerification.State.QUEUED, AuditVerification.State.RUNNING)


def request_audit_verification(*, acting_user) -> AuditVerification:
    """Queue a walk of the chain (QUEUED) for a worker; one already waiting or running is returned
    instead of queueing a second. The walk is audited (AUDIT_VERIFIED, this user) when it runs."""
    now = timezone.now()
    with transaction.atomic():
        AuditVerification.objects.filter(state__in=_OPEN, requested_at__lt=now - VERIFICATION_STALE_AFTER).update(
            state=AuditVerification.State.FAILED, finished_at=now,
            error=f"No worker finished it within {VERIFICATION_STALE_AFTER.seconds // 60} minutes "
                  "(is the Celery worker running?).")
        pending = AuditVerification.objects.filter(state__in=_OPEN).order_by("-requested_at", "-pk").first()
        if pending is not None:
            return pending
        verification = AuditVerification.objects.create(
            state=AuditVerification.State.QUEUED, requested_by=acting_user, requested_at=now)
        transaction.on_commit(lambda: _dispatch_verification(verification.pk))
    return verification


def _dispatch_verification(verification_id: int) -> None:
    from ..tasks import verify_audit_chain_requested  # the task module imports this package

    try:
        verify_audit_chain_requested.apply_async(args=[verification_id], retry=False)
    except Exception as error:  # noqa: BLE001 - kombu raises several types
        logger.exception("could not queue audit verification %s", verification_id)
        AuditVerification.objects.filter(pk=verification_id, state=AuditVerification.State.QUEUED).update(
            state=AuditVerification.State.FAILED, finished_at=timezone.now(),
            error=f"Could not queue the job: {error}"[:500])


def run_requested_verification(*, verification_id: int) -> AuditVerification | None:
    """The worker's side of "verify now": QUEUED → RUNNING (once: a redelivered message does
    nothing), the walk, then the result and its audit record, as the daily verification writes them."""
    started_at = timezone.now()
    claimed = AuditVerification.objects.filter(pk=verification_id, state=AuditVerification.State.QUEUED).update(
        state=AuditVerification.State.RUNNING, started_at=started_at)
    verification = AuditVerification.objects.select_related("requested_by").filter(pk=verification_id).first()
    if not claimed or verification is None:
        return verification
    try:
        walk = _check_chain()
    except Exception as error:
        logger.exception("audit verification %s failed", verification_id)
        AuditVerification.objects.filter(pk=verification_id).update(
            state=AuditVerification.State.FAILED, finished_at=timezone.now(),
            error=f"{type(error).__name__}: {error}"[:500])
        raise
    return _record_verification(walk, started_at=started_at, acting_user=verification.requested_by,
                                verification=verification)


# --- retention -----------------------------------------------------------------------------------


class PurgeRefused(Exception):
    """The purge may not run (legal hold, retention period); the message says why."""


@dataclass
class PurgePlan:
    before: datetime
    count: int = 0
    first_id: int | None = None
    last_id: int | None = None
    last_hash: str = ""
    committed: bool = False
    checkpoint: AuditCheckpoint | None = field(default=None, repr=False)


def active_legal_hold() -> LegalHold | None:
    return LegalHold.objects.filter(released_at__isnull=True).select_related("set_by").order_by("set_at").first()


def _refuse_if_held() -> None:
    hold = active_legal_hold()
    if hold is not None:
        by = hold.set_by.get_username() if hold.set_by else "system"
        raise PurgeRefused(
            f"Legal hold #{hold.pk} is active (set by {by} on {timezone.localtime(hold.set_at):%Y-%m-%d}: "
            f"“{hold.reason}”); nothing may be purged until it is released."
        )


def _purge_plan(before: datetime) -> PurgePlan:
    # Only a prefix of the chain (in id order) is removed: everything before the first record
    # that is not older than `before`.
    first_kept = AuditRecord.objects.filter(occurred_at__gte=before).order_by("id").values_list("id", flat=True).first()
    candidates = AuditRecord.objects.all() if first_kept is None else AuditRecord.objects.filter(id__lt=first_kept)
    stats = candidates.aggregate(count=Count("id"), first=Min("id"), last=Max("id"))
    plan = PurgePlan(before=before, count=stats["count"], first_id=stats["first"], last_id=stats["last"])
    if plan.last_id is not None:
        plan.last_hash = AuditRecord.objects.filter(pk=plan.last_id).values_list("record_hash", flat=True).get()
    return plan


def purge_audit_records(*, before: datetime, commit: bool = False, acting_user=None) -> PurgePlan:
    """Delete audit records older than `before` (a dry run unless `commit`), leaving a checkpoint.

    Refused while a legal hold is active, and for records younger than AUDIT_RETENTION_DAYS.
    """
    oldest_allowed = timezone.now() - timedelta(days=settings.AUDIT_RETENTION_DAYS)
    if before > oldest_allowed:
        raise PurgeRefused(
            f"Audit records are kept for {settings.AUDIT_RETENTION_DAYS} days (AUDIT_RETENTION_DAYS): "
            f"choose a date on or before {timezone.localtime(oldest_allowed):%Y-%m-%d}."
        )
    _refuse_if_held()
    plan = _purge_plan(before)
    if not commit or plan.count == 0:
        return plan
    with transaction.atomic():
        _lock_chain()
        _refuse_if_held()
        plan = _purge_plan(before)
        if plan.count:
            if connection.vendor == "postgresql":
                # The append-only trigger lets this transaction, and only it, delete.
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL portal.audit_purge = 'on'")
            low = plan.first_id - 1
            while low < plan.last_id:
                high = min(low + PURGE_BATCH_SIZE, plan.last_id)
                AuditRecord.objects.filter(id__gt=low, id__lte=high)._raw_delete(connection.alias)
                low = high
            plan.checkpoint = AuditCheckpoint.objects.create(
                created_at=timezone.now(),
                purged_before=before,
                purged_count=plan.count,
                last_purged_id=plan.last_id,
                last_purged_hash=plan.last_hash,
                actor=acting_user,
            )
            record_audit(
                event_type=Event.AUDIT_PURGED,
                actor=acting_user,
                data={
                    "purged_before": before.isoformat(),
                    "count": plan.count,
                    "first_id": plan.first_id,
                    "last_id": plan.last_id,
                    "last_hash": plan.last_hash,
                    "checkpoint_id": plan.checkpoint.pk,
                    "retention_days": settings.AUDIT_RETENTION_DAYS,
                },
            )
            plan.committed = True
    logger.warning("purged %s audit records older than %s (ids %s-%s)", plan.count, before, plan.first_id, plan.last_id)
    return plan


# --- legal holds ---------------------------------------------------------------------------------


def set_legal_hold(*, reason: str, acting_user) -> LegalHold:
    """Stop every purge until the hold is released."""
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("A legal hold needs a reason (for example the case or authority that requires it).")
    with transaction.atomic():
        hold = LegalHold.objects.create(reason=reason[:500], set_by=acting_user, set_at=timezone.now())
        record_audit(
            event_type=Event.LEGAL_HOLD_CHANGED,
            actor=acting_user,
            data={"action": "set", "hold_id": hold.pk, "reason": hold.reason},
        )
    return hold


def release_legal_hold(*, hold_id: int, acting_user) -> LegalHold:
    """Release one hold; purges stay refused while any other hold is active."""
    with transaction.atomic():
        hold = LegalHold.objects.select_for_update().get(pk=hold_id)
        if hold.released_at is not None:
            return hold
        hold.released_at = timezone.now()
        hold.released_by = acting_user
        hold.save(update_fields=["released_at", "released_by"])
        record_audit(
            event_type=Event.LEGAL_HOLD_CHANGED,
            actor=acting_user,
            data={"action": "released", "hold_id": hold.pk, "reason": hold.reason},
        )
    return hold
