"""The audit trail: its single write path, its anchors outside the database, its verification.

Every audit record is chained to the one before it (see `sessions.audit_chain`). Appends are
serialised by locking the one `AuditChainHead` row in the caller's transaction, and that lock is
held until the transaction ends. So a service writes its audit records *last*, all at once
(`record_audits`): the records' content and column values are put together before the lock is
taken; under the lock only their time and hashes are set, in three statements (read the head, one
multi-row INSERT, move the head) followed by COMMIT.
Every other writer of the trail waits only for those, never for the rest of a transaction.

Retention and legal holds are in `audit_retention`; the walk itself in `audit_verify`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from ..models import (
    AuditChainHead,
    AuditCheckpoint,
    AuditRecord,
    AuditVerification,
    ChargingSession,
    RemoteStopRequest,
)
from . import anchors as audit_anchors
from .append_sql import COLUMNS, head_sql, insert_params, insert_sql, row_values
from .chain import ChainWalk, canonical_bytes, canonical_parts, chain_hash, normalise_data, time_bytes
from .keys import all_keys, current_key, signature_valid
from .walk import walk_chain_fast

logger = logging.getLogger(__name__)
Event = AuditRecord.EventType

HEAD_PK = 1


@dataclass
class AuditEntry:
    """One audit record to append: what happened, who did it, to which session or stop request."""

    event_type: str
    actor: Any = None
    charging_session: ChargingSession | None = None
    stop_request: RemoteStopRequest | None = None
    data: dict[str, Any] | None = None
    # Only for loading history in bulk (bench/generate_load_data.py): when it happened. Every
    # change the portal makes is recorded at the time it is appended (under the chain lock).
    occurred_at: datetime | None = None


def _locked_head_hash(cursor) -> str:
    """The newest record's hash, with the chain head locked until the caller's transaction ends."""
    select, _ = head_sql(connection.vendor)
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


def lock_audit_chain() -> None:
    """Hold the chain head until the transaction ends: no append, legal hold or purge meanwhile."""
    with connection.cursor() as cursor:
        _locked_head_hash(cursor)


_AT, _PREV, _HASH = COLUMNS.index("occurred_at"), COLUMNS.index("prev_hash"), COLUMNS.index("record_hash")
_OCCURRED_AT = AuditRecord._meta.get_field("occurred_at")


def _prepare(record: AuditRecord, key_id: str) -> tuple[list, bytes | None, bytes]:
    """A record's column values and its canonical bytes around the time slot, (values, before,
    after); for a record that already has its time, (values, None, its whole canonical bytes)."""
    record.key_id = key_id
    values = row_values(record)
    fields = {
        "event_type": record.event_type,
        "actor_id": record.actor_id,
        "charging_session_id": record.charging_session_id,
        "stop_request_id": record.stop_request_id,
        "correlation_id": record.correlation_id,
        "data": record.data,
    }
    if record.occurred_at is not None:
        return values, None, canonical_bytes(occurred_at=record.occurred_at, **fields)
    before, after = canonical_parts(**fields)
    return values, before, after


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
        records.append(
            AuditRecord(
                event_type=entry.event_type,
                actor=entry.actor,
                charging_session_id=session_id,
                stop_request=stop_request,
                correlation_id=stop_request.correlation_id if stop_request is not None else None,
                data=normalise_data(entry.data),
                occurred_at=entry.occurred_at,
            )
        )
    key_id, key = current_key()
    vendor = connection.vendor
    # Everything but the time and the hashes is put together before the chain is locked: every
    # other audited change waits while it is held (at 500 pushed messages a second on two shared
    # cores the appliers' appends held it 30-50 % of the time; bench/NOTES.md, issue 16, sixth pass).
    prepared = [_prepare(record, key_id) for record in records]
    # At most this many records per INSERT (SQLite caps the parameters of a statement).
    per_insert = max(1, (connection.features.max_query_params or 10_000) // (len(COLUMNS) + 2))
    insert = insert_sql(vendor, min(len(records), per_insert))
    # savepoint=False: inside the caller's transaction this adds no statement at all.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        previous = _locked_head_hash(cursor)
        # Taken under the lock, so the chain's order (ids) and the records' times agree.
        now = timezone.now()
        now_db, now_bytes = _OCCURRED_AT.get_db_prep_save(now, connection), time_bytes(now)
        ids = []
        for low in range(0, len(records), per_insert):
            rows = []
            for record, (values, before, after) in zip(
                records[low : low + per_insert], prepared[low : low + per_insert], strict=True
            ):
                if before is not None:  # its time is now; else it came with one (bulk loading)
                    record.occurred_at = now
                    values[_AT] = now_db
                    content = before + now_bytes + after
                else:
                    content = after
                record.prev_hash = values[_PREV] = previous
                record.record_hash = values[_HASH] = previous = chain_hash(previous, content, key)
                rows.append(values)
            if len(rows) != per_insert:
                insert = insert_sql(vendor, len(rows))  # the last, shorter one
            # On PostgreSQL the INSERT also moves the head.
            cursor.execute(insert, insert_params(vendor, rows, previous, HEAD_PK))
            ids += sorted(row[0] for row in cursor.fetchall())
        if vendor != "postgresql":
            cursor.execute(head_sql(vendor)[1], [previous, ids[-1], HEAD_PK])
    for record, pk in zip(records, ids, strict=True):  # ids ascend in the rows' order (insert_sql)
        record.pk = pk
        record._state.adding, record._state.db = False, connection.alias
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


# --- anchors outside the database ------------------------------------------------------------------


@dataclass(frozen=True)
class ChainHead:
    """The chain's newest record as the head row points at it, and how many records there are."""

    record_id: int | None
    record_hash: str
    records: int

    def describe(self) -> str:
        if self.record_id is None:
            return "no records"
        return f"record {self.record_id}, hash {self.record_hash}, {self.records} records"


def _chain_head() -> ChainHead:
    # One statement, so the count and the head are of the same moment on PostgreSQL too.
    quote = connection.ops.quote_name
    head, records = quote(AuditChainHead._meta.db_table), quote(AuditRecord._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT h.last_record_id, h.last_hash, (SELECT COUNT(*) FROM {records} r WHERE r.id <= h.last_record_id) "
            f"FROM {head} h WHERE h.id = %s",
            [HEAD_PK],
        )
        row = cursor.fetchone()
    if row is None or row[0] is None:
        return ChainHead(None, "", 0)
    return ChainHead(row[0], row[1], row[2])


def anchor_audit_chain(*, reason: str) -> ChainHead:
    """Write a signed anchor of the chain's head outside the database; the head it anchored.

    A store that cannot be written is logged as an error, never the failure of what asked for
    the anchor (an export still runs; the next verification reports the missing anchors' gap).
    """
    head = _chain_head()
    try:
        audit_anchors.append_anchor(
            at=timezone.now(), reason=reason, head_id=head.record_id, head_hash=head.record_hash, records=head.records
        )
    except OSError:
        logger.exception("could not write the audit chain anchor to %s (AUDIT_ANCHOR_DIR)", audit_anchors.anchor_path())
    return head


def anchor_audit_chain_periodically() -> AuditVerification | None:
    """The periodic job: walk only what was appended since the newest anchor, then anchor the head.

    Cheap enough to run every few minutes. When the newest anchor's record is gone or changed, or
    the new part does not link on, the whole chain is verified (and the failure recorded for
    supervisors) instead of anchoring a head that would hide it.
    """
    newest = audit_anchors.read_anchors().newest
    if newest is not None and newest.head_id is not None:
        found = AuditRecord.objects.filter(pk=newest.head_id).values_list("record_hash", flat=True).first()
        if found == newest.head_hash:
            walk = walk_chain_fast(start_hash=newest.head_hash, start_after_id=newest.head_id)
            head = _chain_head()
            if walk.ok and head.record_id == walk.last_id and head.record_hash == walk.last_hash:
                anchor_audit_chain(reason="periodic")
                return None
    return verify_audit_chain()


# --- verification --------------------------------------------------------------------------------

# The walk itself: canonical content put together from the stored values, the exact
# re-serialisation only where that does not give a record's hash.

ANCHOR_BATCH = 1000


def _broken(walk: ChainWalk, record_id: int | None, detail: str) -> ChainWalk:
    walk.ok, walk.broken_id, walk.detail = False, record_id, detail
    return walk


def _checkpoint_problem(checkpoint: AuditCheckpoint) -> str:
    """Why a purge checkpoint cannot be trusted ("" when it can): signed with the chain key, and
    named by the AUDIT_PURGED record the purge appended (the chain protects that one)."""
    if not signature_valid(checkpoint.signature_payload(), key_id=checkpoint.key_id, signature=checkpoint.signature):
        return (
            f"forged checkpoint: purge checkpoint #{checkpoint.pk} (records up to id {checkpoint.last_purged_id}) "
            "is not signed with the chain key; the records it claims were purged were deleted behind the "
            "portal's back"
        )
    purges = AuditRecord.objects.filter(event_type=Event.AUDIT_PURGED, id__gt=checkpoint.last_purged_id)
    for data in purges.values_list("data", flat=True).iterator():
        if (data or {}).get("checkpoint_id") == checkpoint.pk and data.get("last_id") == checkpoint.last_purged_id:
            return ""
    return (
        f"forged checkpoint: no 'Audit records purged' record names purge checkpoint #{checkpoint.pk} "
        f"(records up to id {checkpoint.last_purged_id})"
    )


def _anchor_problem(
    walk: ChainWalk, start_after: int | None, anchors: audit_anchors.AnchorFile
) -> tuple[int | None, str]:
    """(first bad record id, what is wrong) when the chain no longer reaches every anchor written
    since the last purge; (None, "") when it does."""
    expected: dict[int, audit_anchors.Anchor] = {}
    for anchor in anchors.anchors:
        if anchor.head_id is not None and (start_after is None or anchor.head_id > start_after):
            expected.setdefault(anchor.head_id, anchor)
    ids = sorted(expected)
    for low in range(0, len(ids), ANCHOR_BATCH):
        chunk = ids[low : low + ANCHOR_BATCH]
        present = dict(AuditRecord.objects.filter(id__in=chunk).values_list("id", "record_hash"))
        for record_id in chunk:
            anchor = expected[record_id]
            written = (
                f"the anchor written at {anchor.at} ({anchor.reason}, line {anchor.line} of {audit_anchors.FILE_NAME})"
            )
            if record_id not in present:
                return record_id, (
                    f"deleted: record {record_id}, the newest record when {written}, is missing: records were cut "
                    f"off the end of the chain or the table was wiped ({walk.checked} records left since the "
                    f"last purge; {anchor.records} when anchored)"
                )
            if present[record_id] != anchor.head_hash:
                return record_id, (f"re-hashed: record {record_id} no longer carries the hash {written} saw")
    if anchors.bad_lines:
        lines = ", ".join(str(n) for n in anchors.bad_lines[:5]) + ("…" if len(anchors.bad_lines) > 5 else "")
        return None, (
            f"anchor store altered: line(s) {lines} of {audit_anchors.anchor_path()} are not anchors "
            "signed with the chain key"
        )
    return None, ""


def _check_chain() -> ChainWalk:
    keys = all_keys()
    checkpoint = AuditCheckpoint.objects.order_by("-last_purged_id").first()
    start_hash = checkpoint.last_purged_hash if checkpoint else ""
    start_after = checkpoint.last_purged_id if checkpoint else None
    walk = walk_chain_fast(start_hash=start_hash, start_after_id=start_after, keys=keys)
    if not walk.ok:
        return walk
    if checkpoint is not None:
        problem = _checkpoint_problem(checkpoint)
        if problem:
            return _broken(walk, checkpoint.last_purged_id, problem)
        leftover = AuditRecord.objects.filter(id__lte=checkpoint.last_purged_id).order_by("id").first()
        if leftover is not None:
            return _broken(
                walk,
                leftover.pk,
                f"inserted: record {leftover.pk} is older than the purge checkpoint "
                f"(everything up to id {checkpoint.last_purged_id} was purged)",
            )
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
            walk = walk_chain_fast(walk=walk, keys=keys)
            if not walk.ok:
                return walk
            if walk.checked == before:
                return _broken(
                    walk,
                    head_id,
                    f"deleted: the newest record(s), up to id {head_id} where the chain "
                    f"head points, are missing (the last one left is {walk.last_id})",
                )
            continue
        return _broken(
            walk,
            walk.last_id,
            f"inserted: records after id {head_id} (the chain head) were added outside the audit service",
        )
    # The chain must still reach every anchor written outside the database since the last purge.
    broken_id, problem = _anchor_problem(walk, start_after, audit_anchors.read_anchors())
    if problem:
        return _broken(walk, broken_id, problem)
    return walk


def verify_audit_chain(*, acting_user=None) -> AuditVerification:
    """Walk the whole chain in id order, store the result, append an AUDIT_VERIFIED record and,
    when the chain is intact, anchor its new head outside the database."""
    started_at = timezone.now()
    return _record_verification(_check_chain(), started_at=started_at, acting_user=acting_user)


def _record_verification(
    walk: ChainWalk, *, started_at: datetime, acting_user, verification: AuditVerification | None = None
) -> AuditVerification:
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
    if walk.ok:
        # Only an intact chain is anchored: an anchor of a cut chain would make the cut look normal.
        anchor_audit_chain(reason=f"verification {verification.pk}")
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
            state=AuditVerification.State.FAILED,
            finished_at=now,
            error=f"No worker finished it within {VERIFICATION_STALE_AFTER.seconds // 60} minutes "
            "(is the Celery worker running?).",
        )
        pending = AuditVerification.objects.filter(state__in=_OPEN).order_by("-requested_at", "-pk").first()
        if pending is not None:
            return pending
        verification = AuditVerification.objects.create(
            state=AuditVerification.State.QUEUED, requested_by=acting_user, requested_at=now
        )
        transaction.on_commit(lambda: _dispatch_verification(verification.pk))
    return verification


def _dispatch_verification(verification_id: int) -> None:
    from ..tasks import verify_audit_chain_requested  # the task module imports this package

    try:
        verify_audit_chain_requested.apply_async(args=[verification_id], retry=False)
    except Exception as error:  # noqa: BLE001 - kombu raises several types
        logger.exception("could not queue audit verification %s", verification_id)
        AuditVerification.objects.filter(pk=verification_id, state=AuditVerification.State.QUEUED).update(
            state=AuditVerification.State.FAILED,
            finished_at=timezone.now(),
            error=f"Could not queue the job: {error}"[:500],
        )


def run_requested_verification(*, verification_id: int) -> AuditVerification | None:
    """The worker's side of "verify now": QUEUED → RUNNING (once: a redelivered message does
    nothing), the walk, then the result and its audit record, as the daily verification writes them."""
    started_at = timezone.now()
    claimed = AuditVerification.objects.filter(pk=verification_id, state=AuditVerification.State.QUEUED).update(
        state=AuditVerification.State.RUNNING, started_at=started_at
    )
    verification = AuditVerification.objects.select_related("requested_by").filter(pk=verification_id).first()
    if not claimed or verification is None:
        return verification
    try:
        walk = _check_chain()
    except Exception as error:
        logger.exception("audit verification %s failed", verification_id)
        AuditVerification.objects.filter(pk=verification_id).update(
            state=AuditVerification.State.FAILED,
            finished_at=timezone.now(),
            error=f"{type(error).__name__}: {error}"[:500],
        )
        raise
    return _record_verification(
        walk, started_at=started_at, acting_user=verification.requested_by, verification=verification
    )
