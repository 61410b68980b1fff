"""Retention of the audit trail: the purge of old records, and the legal holds that stop it.

A purge removes a prefix of the chain (in id order) and leaves a checkpoint signed with the chain
key, so the rest still verifies and a checkpoint written behind the portal's back does not. On
PostgreSQL the deletion itself is done by one database function (`charging_sessions_purge_audit`,
migration 0016), the only way to delete audit records: it applies the retention policy and the
legal holds itself and writes the checkpoint, so the portal's database role needs no DELETE.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, Max, Min
from django.utils import timezone

from ..models import AuditCheckpoint, AuditRecord, LegalHold, checkpoint_payload
from .keys import sign
from .records import lock_audit_chain, record_audit
from .selectors import active_legal_hold

logger = logging.getLogger(__name__)
Event = AuditRecord.EventType

PURGE_BATCH_SIZE = 10_000
PURGE_FUNCTION = "charging_sessions_purge_audit"


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
        lock_audit_chain()
        _refuse_if_held()
        plan = _purge_plan(before)
        if plan.count:
            payload = checkpoint_payload(
                purged_before=before,
                purged_count=plan.count,
                last_purged_id=plan.last_id,
                last_purged_hash=plan.last_hash,
            )
            key_id, signature = sign(payload)
            if connection.vendor == "postgresql":
                plan.checkpoint = _purge_in_database(plan, key_id=key_id, signature=signature, acting_user=acting_user)
            else:
                plan.checkpoint = _purge_here(plan, key_id=key_id, signature=signature, acting_user=acting_user)
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


def _purge_in_database(plan: PurgePlan, *, key_id: str, signature: str, acting_user) -> AuditCheckpoint:
    """PostgreSQL: the purge function checks the plan against its own policy, deletes, checkpoints."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {PURGE_FUNCTION}(%s, %s, %s, %s, %s, %s, %s)",
                [
                    plan.before,
                    plan.count,
                    plan.last_id,
                    plan.last_hash,
                    key_id,
                    signature,
                    acting_user.pk if acting_user is not None else None,
                ],
            )
            checkpoint_id = cursor.fetchone()[0]
    except DatabaseError as error:
        # The function's own refusal (its retention policy, a hold): say it, never a traceback.
        message = str(getattr(error, "__cause__", None) or error).splitlines()[0]
        raise PurgeRefused(f"The database refused the purge: {message}") from None
    return AuditCheckpoint.objects.get(pk=checkpoint_id)


def _purge_here(plan: PurgePlan, *, key_id: str, signature: str, acting_user) -> AuditCheckpoint:
    """SQLite: the same steps as the PostgreSQL function, in batches, under the chain lock."""
    low = plan.first_id - 1
    while low < plan.last_id:
        high = min(low + PURGE_BATCH_SIZE, plan.last_id)
        AuditRecord.objects.filter(id__gt=low, id__lte=high)._raw_delete(connection.alias)
        low = high
    return AuditCheckpoint.objects.create(
        created_at=timezone.now(),
        purged_before=plan.before,
        purged_count=plan.count,
        last_purged_id=plan.last_id,
        last_purged_hash=plan.last_hash,
        actor=acting_user,
        key_id=key_id,
        signature=signature,
    )


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
