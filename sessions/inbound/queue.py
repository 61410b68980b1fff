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

One applier at a time: a short lock in the cache (APPLIER_LOCK_SECONDS), whose value is its
owner's token, kept alive by a heartbeat thread while the applier works. A worker killed mid-apply
(SIGKILL, the OOM killer, a lost machine) stops its heartbeat with it, so its lock expires within
seconds; the task that found the lock taken comes back just after the lock's expiry (one such
follow-up at a time, APPLIER_FOLLOW_UP_KEY) and applies what waits, without waiting for a new
message or for beat. A lock is refreshed and deleted only by its owner (compare-and-expire,
compare-and-delete in one Lua script on Redis), so an applier whose lock expired (it was paused
longer than the TTL) never takes over or frees the lock of the applier that took it next; it
sees that it lost the lock and stops after the message in hand.

During a burst (more than OICP_INBOUND_BURST_RATE messages a second, e.g. Hubject re-pushing after
an outage) the applier waits, for at most OICP_INBOUND_MAX_DEFER_SECONDS: the acknowledgements get
the database and the CPU first (on SQLite, the single writer), and the queue is applied once the
burst eases. Normal traffic is applied within moments.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from ..models import InboundMessage
from ..oicp import ids, inbound
from ..oicp.inbound import ChargeDetailRecord as ParsedCdr
from ..oicp.inbound import ChargingNotification
from .services import record_cdr, record_charging_notification
from .services.keeping import _ip_or_none

logger = logging.getLogger(__name__)

KICK_INTERVAL = 0.1  # seconds
_last_kick = 0.0
APPLIER_KEY = "inbound-applier"
# The applier's lock lives this long unless its heartbeat renews it (every third of it, so two
# renewals in a row may fail or come late before it lapses). It bounds how long a killed worker
# holds up the queue: after a crash, pushed Ends and CDRs wait at most this long, plus the
# follow-up's margin (it was 120 s; measured in tests/test_inbound_applier_recovery.py: ~10.5 s).
# Shorter would risk a live applier losing the lock to a pause (CPU starved, a Redis blip).
APPLIER_LOCK_SECONDS = 10
APPLIER_HEARTBEAT_SECONDS = APPLIER_LOCK_SECONDS / 3
# An applier that has not moved on (no message applied, no batch read, no burst pause) for this
# long is taken to hang (a database call that never returns): its heartbeat stops renewing, so the
# queue is not held up for ever. Far above one message's worst case (SQLite's 20 s busy timeout).
APPLIER_STALL_SECONDS = 120
# A task that finds the lock taken schedules one follow-up task (at most one waiting at a time)
# for just after the lock's expiry: after a crash nobody else may come (no new message, no beat).
APPLIER_FOLLOW_UP_KEY = "inbound-applier-follow-up"
APPLIER_FOLLOW_UP_MARGIN_SECONDS = 0.5
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
    # Pushed or pulled, applied or still queued: every CDR ever received is an InboundMessage.
    # Only the SessionID in the query: its index finds a session's few messages; `kind` (in every row)
    # could lead the planner to the wrong index.
    kinds = (
        InboundMessage.objects.filter(session_id=ids.session_key(cdr.session_id))
        .order_by()
        .values_list("kind", flat=True)
    )
    duplicate = InboundMessage.Kind.CDR in kinds
    _queue(
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
) -> None:
    # One INSERT, committed on its own (autocommit): the message is safe before Hubject hears "000".
    # `parsed` is filled in when the message is applied (from `raw`, parsed again there); so are the
    # anomalies, which applying completes (a message that does not match its session).
    _insert_message(
        kind=kind,
        session_id=ids.session_key(session_id),
        operator_id=operator_id or "",
        path_operator_id=(path_operator_id or "")[:10],
        received_at=timezone.now(),
        remote_addr=_ip_or_none(remote_addr),
        raw=raw,
        parsed={},
        apply_error="",
        anomalies=[anomaly.to_json() for anomaly in anomalies],
        flagged=bool(anomalies),
        held_back=False,
    )
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


def apply_inbound_messages(*, limit: int | None = None, follow_up: bool = False) -> int:
    """Apply stored messages in arrival order until none is left (or `limit`); how many were applied.

    One applier at a time (a cache lock with a heartbeat), so the messages of a session are applied
    in the order they arrived; each message in its own transaction, claimed there, so nothing is
    applied twice. When another applier holds the lock, a follow-up task is scheduled for just
    after the lock would expire (in case that applier is dead) and this run leaves the queue to it.
    `follow_up`: this run is that task; the next run to find the lock taken may schedule another.
    """
    if follow_up:
        _forget_follow_up()
    applied = 0
    while limit is None or applied < limit:
        lock = ApplierLock()
        if not lock.acquire():
            _follow_up_after(lock)
            return applied  # another applier is at work; it looks again before it stops
        try:
            while (limit is None or applied < limit) and lock.working():
                if _burst_in_progress():
                    # Hubject is pushing hard: the database (SQLite's single writer above all) and
                    # the CPU serve the acknowledgements first; apply once the burst eases. The
                    # heartbeat keeps the lock meanwhile.
                    time.sleep(BURST_PAUSE_SECONDS)
                    continue
                batch = _pending_ids(BATCH_SIZE if limit is None else min(BATCH_SIZE, limit - applied))
                if not batch:
                    break
                for message_id in batch:
                    if not lock.working():
                        break  # the lock lapsed and may be someone else's: leave the rest to them
                    applied += _apply(message_id)
        finally:
            lock.release()
        if lock.lost:
            logger.warning(
                "inbound applier lost its lock (paused for longer than %s s?); leaving the queue to the next applier",
                APPLIER_LOCK_SECONDS,
            )
            _follow_up_after(lock)
            return applied
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
    pending = InboundMessage.objects.pending()
    oldest = pending.order_by("id").values_list("received_at", flat=True).first()
    if oldest is None or oldest < now - timedelta(seconds=settings.OICP_INBOUND_MAX_DEFER_SECONDS):
        return False
    recent = pending.filter(received_at__gte=now - timedelta(seconds=1)).order_by()[: settings.OICP_INBOUND_BURST_RATE]
    return recent.count() >= settings.OICP_INBOUND_BURST_RATE


def _pending_ids(count: int) -> list[int]:
    return list(InboundMessage.objects.pending().order_by("id").values_list("id", flat=True)[:count])


# Compare-and-expire and compare-and-delete: each one atomic script, so a lock that expired and was
# taken by another applier between our GET and our EXPIRE/DEL can never be renewed or freed by us.
_REFRESH_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class ApplierLock:
    """The one-applier-at-a-time lock: its value is a token only this holder knows.

    acquire() takes it for APPLIER_LOCK_SECONDS (SET NX through the cache) and starts a daemon
    thread that renews it every APPLIER_HEARTBEAT_SECONDS while the applier reports progress
    (working()); release() stops the thread and deletes the lock if it is still ours. A killed
    process takes its heartbeat with it, so its lock lapses within APPLIER_LOCK_SECONDS.

    On Redis (django.core.cache.backends.redis.RedisCache, what production and the workers the
    tests start use) renewing and deleting compare the token in one Lua script. Any other cache
    backend (locmem in unit tests, one process) gets the same steps as a GET, then TOUCH or DELETE:
    not atomic, so there a lock that lapsed and was retaken in between could be renewed or
    deleted by its previous owner. Locmem is per process, so it cannot coordinate workers anyway;
    the per-message claim (`_apply`) still applies each message once.

    Without a cache at all (Redis unreachable) acquire() answers True and nothing is renewed:
    the claims keep each message applied once, as before.
    """

    def __init__(self) -> None:
        self.token = secrets.randbits(62)  # an int: stored as plain digits by Django's Redis serializer
        self.lost = False
        self._cache = caches["default"]  # the caller's; the heartbeat thread uses the same one
        self._held = False
        self._last_progress = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the lock --------------------------------------------------------------------------------

    def acquire(self) -> bool:
        try:
            taken = self._cache.add(APPLIER_KEY, self.token, timeout=APPLIER_LOCK_SECONDS)
        except Exception:  # noqa: BLE001 - no cache: apply anyway, the claims keep it correct
            logger.warning("cache unavailable; applying inbound messages without the applier lock", exc_info=True)
            return True
        if taken:
            self._held = True
            self._last_progress = time.monotonic()
            self._thread = threading.Thread(target=self._heartbeat, name="inbound-applier-heartbeat", daemon=True)
            self._thread.start()
        return taken

    def working(self) -> bool:
        """The applier moves on: True while the lock is still ours (then the heartbeat renews it)."""
        self._last_progress = time.monotonic()
        return not self.lost

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)  # a renewal in flight; the thread never outlives a stuck Redis call long
        if not self._held:
            return
        self._held = False
        try:
            if self._redis() is not None:
                self._redis().eval(_RELEASE_SCRIPT, 1, self._key(), self.token)
            elif self._cache.get(APPLIER_KEY) == self.token:
                self._cache.delete(APPLIER_KEY)
        except Exception:  # noqa: BLE001 - it expires by itself within APPLIER_LOCK_SECONDS
            logger.warning("could not release the inbound applier lock; it expires by itself", exc_info=True)

    def refresh(self) -> bool:
        """Renew the lock if it is still ours; False when it is not (it lapsed, maybe retaken)."""
        if self._redis() is not None:
            milliseconds = int(APPLIER_LOCK_SECONDS * 1000)
            return bool(self._redis().eval(_REFRESH_SCRIPT, 1, self._key(), self.token, milliseconds))
        if self._cache.get(APPLIER_KEY) != self.token:
            return False
        return self._cache.touch(APPLIER_KEY, max(1, math.ceil(APPLIER_LOCK_SECONDS)))

    def seconds_left(self) -> float:
        """How long the lock, whoever holds it, lives at most without a renewal."""
        try:
            if self._redis() is not None:
                milliseconds = self._redis().pttl(self._key())
                if milliseconds >= 0:
                    return milliseconds / 1000
                return 0.0 if milliseconds == -2 else APPLIER_LOCK_SECONDS  # -2: gone; -1: no expiry (not ours)
        except Exception:  # noqa: BLE001
            pass
        return APPLIER_LOCK_SECONDS

    # --- the heartbeat ---------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        while not self._stop.wait(APPLIER_HEARTBEAT_SECONDS):
            if time.monotonic() - self._last_progress > APPLIER_STALL_SECONDS:
                logger.error(
                    "inbound applier made no progress for %s s; no longer renewing its lock", APPLIER_STALL_SECONDS
                )
                return
            try:
                if not self.refresh():
                    self.lost = True
                    return
            except Exception:  # noqa: BLE001 - Redis away for a moment: try again at the next beat
                logger.warning("could not renew the inbound applier lock", exc_info=True)

    # --- Redis -----------------------------------------------------------------------------------

    def _key(self) -> str:
        return self._cache.make_and_validate_key(APPLIER_KEY)

    def _redis(self):
        if isinstance(self._cache, RedisCache):
            return self._cache._cache.get_client(self._key(), write=True)
        return None


def _follow_up_after(lock: ApplierLock) -> None:
    """Come back just after the lock would lapse, in case its holder died; never raises.

    One follow-up waits at a time (a cache key that lives as long as its countdown), so a burst of
    kicks finding the lock taken queues one task, not thousands. A live holder renews its lock and
    looks again itself before it stops; the follow-up then finds the queue empty (or the lock
    taken again, and schedules the next one).
    """
    from ..tasks import apply_inbound_messages  # the task module imports this one

    countdown = min(lock.seconds_left(), APPLIER_LOCK_SECONDS) + APPLIER_FOLLOW_UP_MARGIN_SECONDS
    try:
        # The key outlives the countdown a little, in case the follow-up is late; the follow-up
        # deletes it when it starts, and a lost one (its worker died too) frees it by expiring.
        if not cache.add(APPLIER_FOLLOW_UP_KEY, 1, timeout=math.ceil(countdown) + 1):
            return  # one is already waiting
        apply_inbound_messages.apply_async(kwargs={"follow_up": True}, countdown=countdown, retry=False)
    except Exception:  # noqa: BLE001 - broker or cache down: beat's sweep applies the queue
        logger.warning(
            "could not schedule the inbound apply follow-up; the next sweep applies the queue", exc_info=True
        )
        _forget_follow_up()


def _forget_follow_up() -> None:
    try:
        cache.delete(APPLIER_FOLLOW_UP_KEY)
    except Exception:  # noqa: BLE001 - it expires by itself
        pass


def _apply(message_id: int) -> int:
    try:
        with transaction.atomic():
            message = InboundMessage.objects.select_for_update().order_by().pending().filter(pk=message_id).first()
            if message is None:
                return 0  # applied meanwhile
            body = message.raw.encode()
            if message.kind == InboundMessage.Kind.CDR:
                _, cdr = inbound.parse_charge_detail_record(
                    body, path_operator_id=message.path_operator_id or message.operator_id
                )
                record_cdr(cdr=cdr, raw=message.raw, source="PUSH", remote_addr=message.remote_addr, message=message)
            else:
                _, notification = inbound.parse_charging_notification(body)
                record_charging_notification(
                    notification=notification, raw=message.raw, remote_addr=message.remote_addr, message=message
                )
        return 1
    except OperationalError:
        raise  # the database is unavailable: the message stays queued for the next run
    except Exception as error:  # noqa: BLE001 - keep the queue moving; the message says what went wrong
        logger.exception("inbound message %s could not be applied", message_id)
        InboundMessage.objects.filter(pk=message_id).update(apply_error=f"{type(error).__name__}: {error}"[:2000])
        return 0
