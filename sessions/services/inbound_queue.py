"""Pushed charging notifications and CDRs: acknowledged once stored, applied by the worker.

Hubject only needs to know that a message is safely kept. So with OICP_INBOUND_APPLY = "worker"
(the default) the endpoint validates the message, stores it raw (one INSERT) and answers; the
worker then applies the stored messages to their sessions in arrival order (`record_charging_
notification` / `record_cdr`, the same code as "request" mode, which applies it before answering).
That keeps the endpoint close to the cost of a bare INSERT when Hubject pushes in bursts, and a
slow transaction (or SQLite's single writer) never holds up the acknowledgement.

Pending messages are found through a partial index (`inbound_pending_idx`). A web process queues
an apply task for a new message unless it queued one less than KICK_INTERVAL ago (publishing a
Celery message costs more than storing the inbound message itself); a message whose kick was
skipped is found by the task queued just before it, or at the latest by the beat sweep every
OICP_INBOUND_SWEEP_SECONDS, which also covers a broker that was down. A task that finds another
applier at work leaves the queue to it, and an applier looks once more after it lets go, so
nothing stored meanwhile is left behind.

During a burst (more than OICP_INBOUND_BURST_RATE messages a second, e.g. Hubject re-pushing after
an outage) the applier waits, for at most OICP_INBOUND_MAX_DEFER_SECONDS: the acknowledgements get
the database and the CPU first (on SQLite, the single writer), and the queue is applied once the
burst eases. Normal traffic is applied within moments.
"""

from __future__ import annotations

import logging
from functools import lru_cache
import time
from datetime import timedelta
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from ..models import InboundMessage
from ..oicp import ids, inbound
from ..oicp.inbound import ChargeDetailRecord as ParsedCdr
from ..oicp.inbound import ChargingNotification
from .inbound import _ip_or_none, record_cdr, record_charging_notification

logger = logging.getLogger(__name__)

KICK_INTERVAL = 0.1  # seconds
_last_kick = 0.0
APPLIER_KEY = "inbound-applier"
# A killed applier's lock expires after this; one batch takes far less.
APPLIER_LOCK_SECONDS = 120
BATCH_SIZE = 200
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
    _queue(kind=notification.kind, session_id=notification.session_id, operator_id=notification.operator_id,
           raw=raw, remote_addr=remote_addr, anomalies=notification.anomalies)
    return Received()


def receive_cdr(*, cdr: ParsedCdr, raw: str, remote_addr: str | None, path_operator_id: str = "") -> Received:
    """Keep a pushed CDR; `duplicate` when one for its SessionID was received before.

    `path_operator_id` is the {operatorID} of the URL it was posted to: applying reads the CDR
    again with it, so the anomaly "pushed for another operator" is kept with the message.
    """
    if settings.OICP_INBOUND_APPLY == "request":
        outcome = record_cdr(cdr=cdr, raw=raw, source="PUSH", remote_addr=remote_addr)
        return Received(duplicate=outcome.duplicate)
    # Pushed or pulled, applied or still queued: every CDR ever received is an InboundMessage.
    # Only the SessionID in the query: its index finds a session's few messages; `kind` (in every row)
    # could lead the planner to the wrong index.
    kinds = (InboundMessage.objects.filter(session_id=ids.session_key(cdr.session_id)).order_by()
             .values_list("kind", flat=True))
    duplicate = InboundMessage.Kind.CDR in kinds
    _queue(kind=InboundMessage.Kind.CDR, session_id=cdr.session_id, operator_id=cdr.operator_id, raw=raw,
           remote_addr=remote_addr, anomalies=cdr.anomalies, path_operator_id=path_operator_id)
    return Received(duplicate=duplicate)


def _queue(*, kind: str, session_id: str, operator_id: str, raw: str, remote_addr: str | None,
           anomalies=(), path_operator_id: str = "") -> None:
    # One INSERT, committed on its own (autocommit): the message is safe before Hubject hears "000".
    # `parsed` is filled in when the message is applied (from `raw`, parsed again there); so are the
    # anomalies, which applying completes (a message that does not match its session).
    _insert_message(kind=kind, session_id=ids.session_key(session_id), operator_id=operator_id or "",
                    path_operator_id=(path_operator_id or "")[:10], received_at=timezone.now(),
                    remote_addr=_ip_or_none(remote_addr), raw=raw, parsed={}, apply_error="",
                    anomalies=[anomaly.to_json() for anomaly in anomalies], flagged=bool(anomalies),
                    held_back=False)
    transaction.on_commit(kick_inbound_worker)  # at once, unless a caller's transaction is still open


@lru_cache(maxsize=8)
def _insert_sql(vendor: str, names: tuple[str, ...]) -> str:
    meta = InboundMessage._meta
    quote = connection.ops.quote_name
    columns = ", ".join(quote(meta.get_field(name).column) for name in names)
    return f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({', '.join(['%s'] * len(names))})"


def _insert_message(**values) -> None:
    """INSERT one row without building a model instance: this is the whole cost of the endpoint.

    The values go through each field's own conversion (get_db_prep_save), as Model.save() would;
    a plain INSERT is about a quarter of the ORM's time for the same row.
    """
    meta = InboundMessage._meta
    params = [meta.get_field(name).get_db_prep_save(value, connection) for name, value in values.items()]
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(connection.vendor, tuple(values)), params)


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


def pending_inbound_messages() -> int:
    return InboundMessage.objects.filter(applied_at__isnull=True, apply_error="").count()


def apply_inbound_messages(*, limit: int | None = None) -> int:
    """Apply stored messages in arrival order until none is left (or `limit`); how many were applied.

    One applier at a time (a cache lock), so the messages of a session are applied in the order
    they arrived; each message in its own transaction, claimed there, so nothing is applied twice.
    """
    applied = 0
    while limit is None or applied < limit:
        if not _take_applier_lock():
            return applied  # another applier is at work; it looks again before it stops
        try:
            while limit is None or applied < limit:
                if _burst_in_progress():
                    # Hubject is pushing hard: the database (SQLite's single writer above all) and
                    # the CPU serve the acknowledgements first; apply once the burst eases.
                    _refresh_applier_lock()
                    time.sleep(BURST_PAUSE_SECONDS)
                    continue
                batch = _pending_ids(BATCH_SIZE if limit is None else min(BATCH_SIZE, limit - applied))
                if not batch:
                    break
                for message_id in batch:
                    applied += _apply(message_id)
                _refresh_applier_lock()
        finally:
            _release_applier_lock()
        # A message stored after our last look, whose own task found the lock taken, is ours.
        if not _pending_ids(1):
            break
    return applied


def _burst_in_progress() -> bool:
    """More than OICP_INBOUND_BURST_RATE messages arrived in the last second, and none has waited
    longer than OICP_INBOUND_MAX_DEFER_SECONDS yet."""
    if settings.OICP_INBOUND_BURST_RATE <= 0:
        return False
    now = timezone.now()
    pending = InboundMessage.objects.filter(applied_at__isnull=True, apply_error="")
    oldest = pending.order_by("id").values_list("received_at", flat=True).first()
    if oldest is None or oldest < now - timedelta(seconds=settings.OICP_INBOUND_MAX_DEFER_SECONDS):
        return False
    recent = pending.filter(received_at__gte=now - timedelta(seconds=1)).order_by()[:settings.OICP_INBOUND_BURST_RATE]
    return recent.count() >= settings.OICP_INBOUND_BURST_RATE


def _pending_ids(count: int) -> list[int]:
    return list(InboundMessage.objects.filter(applied_at__isnull=True, apply_error="")
                .order_by("id").values_list("id", flat=True)[:count])


def _take_applier_lock() -> bool:
    try:
        return cache.add(APPLIER_KEY, 1, timeout=APPLIER_LOCK_SECONDS)
    except Exception:  # noqa: BLE001 - no cache: apply anyway, the claims keep it correct
        logger.warning("cache unavailable; applying inbound messages without the applier lock", exc_info=True)
        return True


def _refresh_applier_lock() -> None:
    try:
        cache.touch(APPLIER_KEY, APPLIER_LOCK_SECONDS)
    except Exception:  # noqa: BLE001
        pass


def _release_applier_lock() -> None:
    try:
        cache.delete(APPLIER_KEY)
    except Exception:  # noqa: BLE001 - it expires by itself
        pass


def _apply(message_id: int) -> int:
    try:
        with transaction.atomic():
            message = (InboundMessage.objects.select_for_update().order_by()
                       .filter(pk=message_id, applied_at__isnull=True, apply_error="").first())
            if message is None:
                return 0  # applied meanwhile
            body = message.raw.encode()
            if message.kind == InboundMessage.Kind.CDR:
                _, cdr = inbound.parse_charge_detail_record(
                    body, path_operator_id=message.path_operator_id or message.operator_id)
                record_cdr(cdr=cdr, raw=message.raw, source="PUSH", remote_addr=message.remote_addr, message=message)
            else:
                _, notification = inbound.parse_charging_notification(body)
                record_charging_notification(notification=notification, raw=message.raw,
                                             remote_addr=message.remote_addr, message=message)
        return 1
    except OperationalError:
        raise  # the database is unavailable: the message stays queued for the next run
    except Exception as error:  # noqa: BLE001 - keep the queue moving; the message says what went wrong
        logger.exception("inbound message %s could not be applied", message_id)
        InboundMessage.objects.filter(pk=message_id).update(apply_error=f"{type(error).__name__}: {error}"[:2000])
        return 0
