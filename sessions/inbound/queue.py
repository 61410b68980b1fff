"""Pushed charging notifications and CDRs: acknowledged once stored, applied by the workers.

Hubject only needs to know that a message is safely kept. So with OICP_INBOUND_APPLY = "worker"
(the default) the endpoint validates the message, stores it raw (one INSERT) and answers; the
workers then apply the stored messages to their sessions (`record_charging_notification` /
`record_cdr`, the same code as "request" mode, which applies it before answering). That keeps the
endpoint close to the cost of a bare INSERT when Hubject pushes in bursts, and a slow transaction
(or SQLite's single writer) never holds up the acknowledgement.

Pending messages are found through a partial index (`inbound_pending_idx`). A web process queues
an apply task for a new message unless it queued one less than KICK_INTERVAL ago (publishing a
Celery message costs more than storing the inbound message itself); a message whose kick was
skipped is found by the task queued just before it, or at the latest by the beat sweep every
OICP_INBOUND_SWEEP_SECONDS, which also covers a broker that was down.

What must stay in order is each session's own messages (Start, Progress, End, CDR as they
arrived), not the whole portal's. So many appliers work at once (APPLIERS_PER_PROCESS in each
worker process, any number of processes): each claims a batch of sessions with all their pending
messages (`claims`: a lease of CLAIM_SECONDS; a session someone else holds is skipped) and applies
each session's messages in one transaction with one audit write (`applying`). An applier claims
again until nothing is claimable, and looks once more after it lets go of its slot, so a message
whose own task found the slots taken is not left behind. A crashed applier's claims lapse within
CLAIM_SECONDS; a run that stops while others hold claims schedules one follow-up task for just
after the first of them lapses (one waiting at a time, FOLLOW_UP_KEY), so those sessions are
applied then even if no new message and no sweep come.

During a burst (more than OICP_INBOUND_BURST_RATE messages a second, e.g. Hubject re-pushing after
an outage) the appliers wait, for at most OICP_INBOUND_MAX_DEFER_SECONDS: the acknowledgements get
the database and the CPU first (on SQLite, the single writer), and the queue is applied once the
burst eases. The rate (1,000/s by default) sits above steady traffic: steady traffic above it would
wait too and its queue only grow (bench/NOTES.md, issue 16). Every message of the last second
counts, applied or not: appliers keeping up with a burst must still see it. An applier in the middle
of a batch looks between its transactions, so that every applier stands aside at once. When
messages trickle in instead, an applier that claimed only a few waits GATHER_SECONDS before it
claims again.

Throughput grows with worker processes until the database or the CPU is the limit: a batch is
read and written set-based (a fixed number of statements however many messages it has), so what is
left per message is its parsing, its rules and its audit record (under 1 ms of Python); every
batch's audit write takes the audit chain's one lock for a moment. Measured in README "Scaling
out" and bench/RESULTS.md (ingest, sustained).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.utils import timezone

from ..models import InboundMessage
from ..oicp import ids
from ..oicp.inbound import ChargeDetailRecord as ParsedCdr
from ..oicp.inbound import ChargingNotification
from . import claims
from .applying import GroupOutcome, apply_group
from .services import record_cdr, record_charging_notification
from .services.keeping import _ip_or_none

logger = logging.getLogger(__name__)

KICK_INTERVAL = 0.1  # seconds
_last_kick = 0.0
# Messages per claim: the sessions of the oldest BATCH_SIZE claimable messages, with all their
# pending messages. Small enough that several appliers share a burst, large enough that claiming
# (serialised, two statements) costs little per message.
BATCH_SIZE = 200
# Claimed sessions' groups are applied together, in transactions of about this many messages: a
# batch is read and written in a fixed number of statements (services/batch.py), so larger
# batches cost less per message; but every session in one is locked until it commits, and an
# agent's stop for one of them waits that long (on SQLite every write waits: one writer). About
# 0.8 ms a message (profiled, PostgreSQL): 100 holds a lock some 80 ms, 25 on SQLite some 20 ms.
MESSAGES_PER_TRANSACTION = {"postgresql": 100, "sqlite": 25}
# A claim of fewer messages than this means they trickle in: the applier waits GATHER_SECONDS before
# it claims again, so that it applies them in batches. Without the wait, under steady traffic the
# appliers claimed two or three messages at a time, as fast as they arrived, and paid a batch's
# fixed cost for each handful: two workers took the CPU from the acknowledgements (ingest at
# ~300 instead of ~1,400 a second on 2 cores, bench/NOTES.md). It adds at most that much to the lag.
SMALL_CLAIM = 50
GATHER_SECONDS = 0.2
# Appliers at once in one worker process (its threads): the work is CPU-bound Python between short
# database calls, so more threads than this only wait for the GIL and the audit chain's lock.
# More capacity is more worker processes (README "Scaling out").
APPLIERS_PER_PROCESS = 2
_slots = threading.BoundedSemaphore(APPLIERS_PER_PROCESS)
# A run that stops while other appliers hold claims schedules one follow-up task (at most one
# waiting at a time) for just after the first of those claims would lapse: if that applier died,
# nobody else may come (no new message for its sessions, beat only every few seconds).
FOLLOW_UP_KEY = "inbound-applier-follow-up"
FOLLOW_UP_MARGIN_SECONDS = 0.5
BURST_PAUSE_SECONDS = 0.25


@dataclass(frozen=True)
class Received:
    """What the endpoint tells Hubject: the message is kept (and whether a CDR is a repeat)."""

    duplicate: bool = False


def receive_charging_notification(*, notification: ChargingNotification, raw: str, remote_addr: str | None) -> Received:
    """Keep a pushed notification: applied now ("request") or by the worker ("worker")."""
    if settings.OICP_INBOUND_APPLY == "request":
        record_charging_notification(notification=notification, raw=raw, remote_addr=remote_addr)
        return Received()
    _queue(
        kind=notification.kind,
        session_id=notification.session_id,
        operator_id=notification.operator_id,
        raw=raw,
        remote_addr=remote_addr,
        anomalies=notification.anomalies,
    )
    return Received()


def receive_cdr(*, cdr: ParsedCdr, raw: str, remote_addr: str | None, path_operator_id: str = "") -> Received:
    """Keep a pushed CDR; `duplicate` when one for its SessionID was received before.

    `path_operator_id` is the {operatorID} of the URL it was posted to: applying reads the CDR
    again with it, so the anomaly "pushed for another operator" is kept with the message.
    """
    if settings.OICP_INBOUND_APPLY == "request":
        outcome = record_cdr(cdr=cdr, raw=raw, source="PUSH", remote_addr=remote_addr)
        return Received(duplicate=outcome.duplicate)
    duplicate = _queue(
        kind=InboundMessage.Kind.CDR,
        session_id=cdr.session_id,
        operator_id=cdr.operator_id,
        raw=raw,
        remote_addr=remote_addr,
        anomalies=cdr.anomalies,
        path_operator_id=path_operator_id,
    )
    return Received(duplicate=duplicate)


def _queue(
    *,
    kind: str,
    session_id: str,
    operator_id: str,
    raw: str,
    remote_addr: str | None,
    anomalies=(),
    path_operator_id: str = "",
) -> bool:
    """Store the message; for a CDR, whether one for its session was received before."""
    # One INSERT, committed on its own (autocommit): the message is safe before Hubject hears "000".
    # `parsed` is filled in when the message is applied (from `raw`, parsed again there); so are the
    # anomalies, which applying completes (a message that does not match its session).
    values = {
        "kind": kind,
        "session_id": ids.session_key(session_id),
        "operator_id": operator_id or "",
        "received_at": timezone.now(),
        "remote_addr": _client_address(remote_addr),
        "raw": raw,
    }
    if path_operator_id:
        values["path_operator_id"] = path_operator_id[:10]
    if anomalies:
        values["anomalies"] = [anomaly.to_json() for anomaly in anomalies]
        values["flagged"] = True
    received_before = _insert_message(values, prior_cdr=kind == InboundMessage.Kind.CDR)
    transaction.on_commit(kick_inbound_worker)  # at once, unless a caller's transaction is still open
    return received_before


# Fields whose value (a str or a bool here) is already what the database takes: Django's conversion
# of them returns the value itself, so _insert_message skips it (a few µs a field).
_STORED_AS_IS = frozenset({"CharField", "TextField", "BooleanField"})
# What a new message holds in the columns not given, written into the INSERT as SQL (the same on
# both databases) instead of parameters: psycopg quotes each parameter in Python, and a statement
# with 13 took a third longer than one with 6 (bench/NOTES.md, issue 16).
_FRESH = {
    "path_operator_id": "''",
    "parsed": "'{}'",
    "apply_error": "''",
    "applier": "''",
    "anomalies": "'[]'",
    "flagged": "FALSE",
    "held_back": "FALSE",
}


@lru_cache(maxsize=16)
def _insert_plan(vendor: str, names: tuple[str, ...], prior_cdr: bool) -> tuple[str, tuple]:
    """The INSERT statement for these columns (the others as in _FRESH), and each one's conversion,
    None where the value is stored as it is (built once per process, database and shape).

    With `prior_cdr`, it also returns whether a CDR for the same SessionID was received before this
    row (pushed or pulled, applied or still queued: every CDR ever received is an InboundMessage):
    the CDR endpoint answers a repeat with "Duplicate", and asking in the same statement saves a
    round trip a CDR (a tenth of its acknowledgement). `id <` the new row's: the row itself never
    counts. Other kinds do not ask (the subquery and the returned row cost a quarter of the INSERT).
    """
    meta = InboundMessage._meta
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    fields = [meta.get_field(name) for name in names]
    fresh = {name: literal for name, literal in _FRESH.items() if name not in names}
    columns = ", ".join(quote(field.column) for field in fields)
    columns += "".join(f", {quote(meta.get_field(name).column)}" for name in fresh)
    converters = tuple(
        None if field.get_internal_type() in _STORED_AS_IS else field.get_db_prep_save for field in fields
    )
    values = ", ".join(["%s"] * len(names) + list(fresh.values()))
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    sql = f"INSERT INTO {table} ({columns}) VALUES ({values})"
    if prior_cdr:
        kind, session = (quote(meta.get_field(name).column) for name in ("kind", "session_id"))
        # In RETURNING the table's name is the new row (SQLite knows no alias there). The SessionID
        # is given again as a parameter: compared with the new row's column, SQLite scanned the table.
        sql += (
            f" RETURNING CASE WHEN EXISTS (SELECT 1 FROM {table} prior WHERE prior.{session} = %s "
            f"AND prior.{kind} = '{InboundMessage.Kind.CDR}' AND prior.{pk} < {table}.{pk}) THEN 1 ELSE 0 END"
        )
    return sql, converters


def _insert_message(values: dict, *, prior_cdr: bool = False) -> bool:
    """INSERT one row without building a model instance: this is the whole cost of the endpoint;
    with `prior_cdr`, whether a CDR for its SessionID was received before (see _insert_plan).

    The values go through their field's own conversion (get_db_prep_save) where the database needs
    one (the time, the address, the JSON), as Model.save() would; a plain INSERT is about a quarter
    of the ORM's time for the same row.
    """
    db = connections[DEFAULT_DB_ALIAS]  # once: each `connection.x` is a lookup in a thread-local
    sql, converters = _insert_plan(db.vendor, tuple(values), prior_cdr)
    params = [
        value if convert is None else convert(value, db)
        for convert, value in zip(converters, values.values(), strict=True)
    ]
    with db.cursor() as cursor:
        if not prior_cdr:
            cursor.execute(sql, params)
            return False
        cursor.execute(sql, [*params, values["session_id"]])  # the prior CDR's
        return bool(cursor.fetchone()[0])


# The caller's address as stored (normalised, or None): Hubject calls from a few addresses, so the
# parse is done once per address and process.
_client_address = lru_cache(maxsize=256)(_ip_or_none)


def kick_inbound_worker() -> None:
    """Queue an apply task (at most one per KICK_INTERVAL from this process); never raises."""
    from ..tasks import apply_inbound_messages  # the task module imports this one

    global _last_kick
    now = time.monotonic()
    if now - _last_kick < KICK_INTERVAL:
        return  # the task queued a moment ago, or the sweep, applies this message
    _last_kick = now
    try:
        apply_inbound_messages.apply_async(retry=False)
    except Exception:  # noqa: BLE001 - broker down: the message waits for the sweep
        logger.warning("could not queue the inbound apply task; the next sweep applies the message", exc_info=True)


def apply_inbound_messages(*, limit: int | None = None, follow_up: bool = False) -> int:
    """Claim and apply stored messages, session by session, until none is claimable; how many were applied.

    Several runs (tasks in one worker, or in many) work at once, each on the sessions it claimed
    (`claims`): a session's messages are applied in arrival order, in one transaction with the
    groups of a few other sessions (`applying.apply_group`). When this run stops while sessions are still claimed by others, a
    follow-up task is scheduled for just after the first of those claims would lapse, in case its
    applier is dead. `limit`: stop after about this many (a whole batch is applied once claimed).
    `follow_up`: this run is that task; the next run to stop that way may schedule another.
    """
    if follow_up:
        _forget_follow_up()
    applier = claims.new_applier_name()
    applied = failed = 0
    while limit is None or applied < limit:
        if not _slots.acquire(blocking=False):
            return applied  # this process's appliers are all at work; each looks again when it stops
        try:
            outcome = _apply_until_nothing_claimable(applier, limit=None if limit is None else limit - applied)
            applied, failed = applied + outcome.applied, failed + outcome.failed
        finally:
            _slots.release()
        # A message whose own task found every slot taken just before we let go is ours.
        if not claims.anything_claimable():
            break
    if failed:
        logger.warning("inbound applier %s: %s applied, %s could not be applied", applier, applied, failed)
    _follow_up_if_others_hold_claims(applier)
    return applied


def _apply_until_nothing_claimable(applier: str, *, limit: int | None) -> GroupOutcome:
    applied = failed = 0
    claimed = BATCH_SIZE
    try:
        while limit is None or applied < limit:
            if _burst_in_progress():
                time.sleep(BURST_PAUSE_SECONDS)
                continue
            if claimed < SMALL_CLAIM:
                # Messages trickle in: let them gather for a moment rather than claim them a few
                # at a time (a batch costs its ~12 statements however few it holds).
                if not claims.anything_claimable():
                    break
                time.sleep(GATHER_SECONDS)
            groups = claims.claim_messages(applier, batch=BATCH_SIZE)
            if not groups:
                break  # the queue is empty, or every waiting session is another applier's
            claimed = sum(len(group) for group in groups)
            renewed = time.monotonic()
            for number, message_ids in enumerate(_transactions(groups)):
                # A burst seen mid-batch: wait now, not after the batch; every applier has to stand
                # aside at once for the acknowledgements to speed up.
                while number and _burst_in_progress():
                    time.sleep(BURST_PAUSE_SECONDS)
                    renewed = _renew_if_due(applier, renewed)
                renewed = _renew_if_due(applier, renewed)
                outcome = apply_group(message_ids, applier=applier)
                applied, failed = applied + outcome.applied, failed + outcome.failed
    except BaseException:
        _release(applier)  # an error stopped this run: the sessions it holds go to the next one at once
        raise
    return GroupOutcome(applied=applied, failed=failed)


def _renew_if_due(applier: str, renewed: float) -> float:
    """Renew this applier's claims once a third of their life has passed (a long batch, or a wait
    in its middle: keep the sessions not yet applied); when they were last renewed."""
    if time.monotonic() - renewed <= claims.CLAIM_SECONDS / 3:
        return renewed
    claims.renew_claims(applier)
    return time.monotonic()


def _transactions(groups: list[list[int]]) -> list[list[int]]:
    """The claimed sessions' groups joined into transactions of about MESSAGES_PER_TRANSACTION
    messages (by database); a session's group is never split: its messages go together, in order."""
    most = MESSAGES_PER_TRANSACTION.get(connection.vendor, 10)
    chunks: list[list[int]] = [[]]
    for group in groups:
        if chunks[-1] and len(chunks[-1]) + len(group) > most:
            chunks.append([])
        chunks[-1].extend(group)
    return [chunk for chunk in chunks if chunk]


def _release(applier: str) -> None:
    try:
        claims.release_claims(applier)
    except Exception:  # noqa: BLE001 - the database is away: the claims lapse by themselves
        logger.warning("could not release the inbound claims of %s; they lapse by themselves", applier, exc_info=True)


def _burst_in_progress() -> bool:
    """More than OICP_INBOUND_BURST_RATE messages arrived in the last second, and none has waited
    longer than OICP_INBOUND_MAX_DEFER_SECONDS yet."""
    if settings.OICP_INBOUND_BURST_RATE <= 0:
        return False
    now = timezone.now()
    pending = InboundMessage.objects.pending()
    oldest = pending.order_by("id").values_list("received_at", flat=True).first()
    if oldest is None or oldest < now - timedelta(seconds=settings.OICP_INBOUND_MAX_DEFER_SECONDS):
        return False
    # Every message of the last second, applied or not: counting only the waiting ones, appliers at
    # work kept the count low by applying, and never saw the burst they were slowing down.
    recent = InboundMessage.objects.filter(received_at__gte=now - timedelta(seconds=1))
    return recent.order_by()[: settings.OICP_INBOUND_BURST_RATE].count() >= settings.OICP_INBOUND_BURST_RATE


def _follow_up_if_others_hold_claims(applier: str) -> None:
    """Come back just after the first claim of another applier lapses, in case it died; never raises.

    One follow-up waits at a time (a cache key that lives as long as its countdown), so a burst of
    runs finding every waiting session claimed queues one task, not thousands. A live applier
    claims again before it stops; the follow-up then finds the queue empty (or claims still held,
    and schedules the next one).
    """
    from ..tasks import apply_inbound_messages  # the task module imports this one

    try:
        lapses_at = claims.next_claim_lapse(applier)
        if lapses_at is None:
            return
        seconds_left = (lapses_at - timezone.now()).total_seconds()
        countdown = min(max(seconds_left, 0.0), claims.CLAIM_SECONDS) + FOLLOW_UP_MARGIN_SECONDS
        # The key outlives the countdown a little, in case the follow-up is late; the follow-up
        # deletes it when it starts, and a lost one (its worker died too) frees it by expiring.
        if not cache.add(FOLLOW_UP_KEY, 1, timeout=math.ceil(countdown) + 1):
            return  # one is already waiting
        apply_inbound_messages.apply_async(kwargs={"follow_up": True}, countdown=countdown, retry=False)
    except Exception:  # noqa: BLE001 - broker, cache or database down: beat's sweep applies the queue
        logger.warning(
            "could not schedule the inbound apply follow-up; the next sweep applies the queue", exc_info=True
        )
        _forget_follow_up()


def _forget_follow_up() -> None:
    try:
        cache.delete(FOLLOW_UP_KEY)
    except Exception:  # noqa: BLE001 - it expires by itself
        pass
