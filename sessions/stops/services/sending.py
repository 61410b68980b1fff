"""The worker's call to Hubject: claim one attempt, send it outside any transaction, record the outcome.

Also closing a request the worker could not finish (time limit, crash).
"""

from __future__ import annotations

import functools
import logging
import random
import threading
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from ...audit.records import AuditEntry, record_audit, record_audits
from ...concurrency import acquire_operator_slot, release_operator_slot
from ...log_context import correlation_id_var
from ...models import AuditRecord, ChargingSession, RemoteStopRequest
from ...oicp.client import HubjectClient, Outcome, RemoteStopResult
from ...row_updates import update_rows
from .confirmation import SETTLED_BY_PROOF, _confirm

logger = logging.getLogger(__name__)
State = RemoteStopRequest.State
Event = AuditRecord.EventType


@dataclass(frozen=True)
class SendOutcome:
    """What the worker should do after `send_remote_stop`."""

    state: str
    # Seconds until the task should run again, or None when nothing more is to be done.
    retry_in: float | None = None


_clients = threading.local()


def _hubject_client() -> HubjectClient:
    # One requests.Session per worker thread keeps connections to HBS alive between stops.
    client = getattr(_clients, "client", None)
    if client is None:
        client = _clients.client = HubjectClient.from_settings()
    return client


def prepare_worker_thread() -> None:
    """Open this worker thread's database connection and make its Hubject client, before its first
    stop (portal/celery.py, when the worker starts): otherwise that stop pays for both (a PostgreSQL
    connection is a new server process), and a fresh worker's first stops made the p99."""
    connection.ensure_connection()
    _hubject_client()


# A stop waiting for a busy CPO's slot looks again after 0.5 s, then a little later each time, up to
# SLOT_WAIT_MAX_SECONDS: a CPO that holds its calls for 60 s otherwise has every waiting stop polled
# twice a second (a query, five Redis calls and a publish each), CPU the healthy CPOs' stops need.
SLOT_WAIT_FIRST_SECONDS = 0.5
SLOT_WAIT_MAX_SECONDS = 5.0


def slot_wait_seconds(deferrals: int) -> float:
    wait = min(SLOT_WAIT_MAX_SECONDS, SLOT_WAIT_FIRST_SECONDS * 1.5 ** max(0, deferrals))
    return wait * random.uniform(1.0, 1.5)  # jitter, so the waiting stops do not look in lockstep


def _retry_delay(attempt: int) -> float:
    """Exponential backoff with jitter, so retries of many stops do not arrive in lockstep."""
    base = settings.OICP_RETRY_BACKOFF_SECONDS
    return base * 2 ** (attempt - 1) + random.uniform(0, base)


def send_remote_stop(*, stop_request_id: int, deferrals: int = 0) -> SendOutcome:
    """Send one attempt of a stop request to Hubject and record what came back.

    Idempotent: a request that is no longer PENDING (or whose retry is not yet due) is left
    alone, so redelivered or duplicate messages never cause a second call. `deferrals`: how often
    this request's task came back already (it paces the wait for a busy CPO's slot).
    """
    stop_request = _stop_to_send(stop_request_id)
    if stop_request is None or stop_request.state != State.PENDING:
        return SendOutcome(state=stop_request.state if stop_request else "MISSING")
    charging_session = stop_request.charging_session
    correlation_id_var.set(str(stop_request.correlation_id))
    if charging_session.status == ChargingSession.Status.CLOSED:
        # The CDR arrived while the stop waited in the queue: Hubject has closed the session.
        return _settle_unsent(
            stop_request_id=stop_request_id,
            failure_kind="session_ended",
            error="Not sent: the session ended (its CDR arrived) before the stop left the queue.",
        )

    try:
        slot = acquire_operator_slot(
            charging_session.operator_id,
            limit=settings.OICP_PER_OPERATOR_CONCURRENCY,
            ttl=settings.OICP_TIMEOUT_SECONDS + settings.OICP_CONNECT_TIMEOUT_SECONDS + 30,
        )
    except Exception:  # noqa: BLE001 - the cache (Redis) is down: send nothing, count no attempt
        logger.warning("per-CPO slots unavailable; stop request %s stays PENDING", stop_request_id, exc_info=True)
        # If Redis is down the retry cannot be queued either; the sweeper then re-sends it.
        return SendOutcome(state=State.PENDING, retry_in=random.uniform(5, 10))
    if slot is None:
        # This CPO already has its share of calls waiting; try again shortly without an attempt.
        return SendOutcome(state=State.PENDING, retry_in=slot_wait_seconds(deferrals))
    try:
        if not _claim(stop_request):
            return SendOutcome(state=stop_request.state)
        result = _hubject_client().authorize_remote_stop(
            session_id=charging_session.session_id,
            evse_id=charging_session.evse_id,
            emp_partner_session_id=charging_session.emp_partner_session_id,
            cpo_partner_session_id=charging_session.cpo_partner_session_id,
            correlation_id=str(stop_request.correlation_id),
        )
    finally:
        release_operator_slot(slot)
    return _record_result(stop_request=stop_request, result=result)


# What the call needs of the session; the rest of it stays deferred (loaded if anything asks).
_SESSION_FIELDS = ("status", "operator_id", "session_id", "evse_id", "emp_partner_session_id", "cpo_partner_session_id")


@functools.cache
def _stop_to_send_sql(vendor: str) -> str:
    # Plain SQL, built once: compiling select_related() over both models' ~60 columns took 0.6 ms of
    # the ~1.1 a stop's first read cost in the worker, before every call (bench/NOTES.md, issue 16).
    quote = connection.ops.quote_name
    stop, session = quote(RemoteStopRequest._meta.db_table), quote(ChargingSession._meta.db_table)
    columns = ", ".join(
        f"s.{quote(ChargingSession._meta.get_field(name).column)} AS {quote('session_' + name)}"
        for name in _SESSION_FIELDS
    )
    return f"SELECT r.*, {columns} FROM {stop} r JOIN {session} s ON s.id = r.charging_session_id WHERE r.id = %s"


def _stop_to_send(stop_request_id: int) -> RemoteStopRequest | None:
    """The stop request with the fields of its session the call needs (one statement)."""
    found = list(RemoteStopRequest.objects.raw(_stop_to_send_sql(connection.vendor), [stop_request_id]))
    if not found:
        return None
    stop_request = found[0]
    read = {name: stop_request.__dict__.pop(f"session_{name}") for name in _SESSION_FIELDS}
    read["id"] = stop_request.charging_session_id
    # from_db takes the values in the model's field order; the fields not given are deferred.
    names = [field.attname for field in ChargingSession._meta.concrete_fields if field.attname in read]
    stop_request.charging_session = ChargingSession.from_db(
        stop_request._state.db, names, [read[name] for name in names]
    )
    return stop_request


def _settle_unsent(*, stop_request_id: int, failure_kind: str, error: str) -> SendOutcome:
    """Close a PENDING request without calling Hubject, saying why."""
    with transaction.atomic():
        stop_request = RemoteStopRequest.objects.select_for_update().filter(pk=stop_request_id).first()
        if stop_request is None or stop_request.state != State.PENDING:
            return SendOutcome(state=stop_request.state if stop_request else "MISSING")
        stop_request.state = State.REJECTED
        stop_request.last_error = error
        stop_request.finished_at = timezone.now()
        stop_request.save(update_fields=["state", "last_error", "finished_at"])
        record_audit(
            event_type=Event.STOP_REJECTED,
            stop_request=stop_request,
            data={"failure_kind": failure_kind, "error": error, "sent": False, "attempt": stop_request.attempt_count},
        )
    return SendOutcome(state=State.REJECTED)


@functools.cache
def _claim_sql(vendor: str) -> str:
    # Plain SQL, built once: on SQLite the claim's transaction holds the one write lock, and
    # compiling this UPDATE with the ORM took longer than running it.
    quote = connection.ops.quote_name
    return (
        f"UPDATE {quote(RemoteStopRequest._meta.db_table)} SET state = %s, attempt_count = attempt_count + 1, "
        "first_sent_at = COALESCE(first_sent_at, %s), last_sent_at = %s, next_attempt_at = NULL "
        "WHERE id = %s AND state = %s AND attempt_count = %s AND (next_attempt_at IS NULL OR next_attempt_at <= %s)"
    )


def _claim(stop_request: RemoteStopRequest) -> bool:
    """PENDING → SENDING in one conditional UPDATE: only one worker can win it.

    The UPDATE also requires the attempt count just read, so a claim that wins knows the row's new
    values without reading it again (one statement fewer while the transaction holds SQLite's write
    lock; bench/dispatch.py's "claim" stage). A count that moved meanwhile means another delivery of
    the task claimed the request: this one does nothing, as for any lost claim.
    """
    now = timezone.now()
    adapt = connection.ops.adapt_datetimefield_value
    params = [State.SENDING, adapt(now), adapt(now), stop_request.pk, State.PENDING, stop_request.attempt_count]
    params.append(adapt(now + timedelta(seconds=1)))
    sql = _claim_sql(connection.vendor)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        if not cursor.rowcount:
            return False
        # What the UPDATE wrote, from the values it was conditioned on.
        stop_request.state = State.SENDING
        stop_request.attempt_count += 1
        stop_request.first_sent_at = stop_request.first_sent_at or now
        stop_request.last_sent_at = now
        stop_request.next_attempt_at = None
        record_audit(
            event_type=Event.STOP_SENDING,
            stop_request=stop_request,
            data={"attempt": stop_request.attempt_count, "max_attempts": settings.OICP_MAX_ATTEMPTS},
        )
    return True


@functools.cache
def _answer_lock_sql(vendor: str) -> str:
    # The stop and its session locked, as select_for_update().select_related() did: a CDR applied
    # meanwhile (it locks the session) either waits for this answer or is seen by it. Plain SQL.
    quote = connection.ops.quote_name
    stop, session = quote(RemoteStopRequest._meta.db_table), quote(ChargingSession._meta.db_table)
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    return (
        f"SELECT r.state, r.attempt_count, r.outcome_unknown, s.cdr_received_at IS NOT NULL FROM {stop} r "
        f"JOIN {session} s ON s.id = r.charging_session_id WHERE r.id = %s{lock}"
    )


# What every answer writes on the row; `_record_result` adds the columns this answer changes.
_ANSWER_FIELDS = ("state", "http_status", "oicp_code", "oicp_description", "oicp_additional_info", "process_id")


def _record_result(*, stop_request: RemoteStopRequest, result: RemoteStopResult) -> SendOutcome:
    """Store the answer on the claimed request (the instance `_claim` left): under SQLite's write lock
    two plain statements (lock, UPDATE of the columns this answer changes) and the audit append."""
    now = timezone.now()
    lock = _answer_lock_sql(connection.vendor)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(lock, [stop_request.pk])
            state, attempt_count, outcome_unknown, cdr_received = cursor.fetchone()
        if state != State.SENDING:
            # Someone else settled it meanwhile (e.g. marked failed after a time limit).
            return SendOutcome(state=state)
        # The row's own values where another writer may have moved them since the claim (the sweeper).
        stop_request.state, stop_request.attempt_count = state, attempt_count
        stop_request.outcome_unknown = bool(outcome_unknown)
        stop_request.http_status = result.http_status
        stop_request.oicp_code = result.oicp_code
        stop_request.oicp_description = result.description[:200]
        stop_request.oicp_additional_info = result.additional_info[:1000]
        stop_request.process_id = result.process_id[:100]
        stop_request.last_error = result.error[:500]
        changed = [*_ANSWER_FIELDS, "last_error"]
        if result.http_status is not None:
            stop_request.answered_at = now
            changed.append("answered_at")
        audit = {"attempt": stop_request.attempt_count, **result.to_audit()}
        if result.outcome_unknown:
            # The request left, no answer came back (read timeout, connection reset): Hubject
            # may have performed the stop. Kept for good, even when a later attempt is answered.
            stop_request.outcome_unknown = True
            changed.append("outcome_unknown")
            audit["outcome_unknown"] = True
        retry_in = None
        if result.outcome == Outcome.ACCEPTED:
            stop_request.state, event = State.ACCEPTED, Event.STOP_ACCEPTED
        elif result.outcome == Outcome.REJECTED and result.failure_kind != "tls":
            stop_request.state, event = State.REJECTED, Event.STOP_REJECTED
        elif result.outcome == Outcome.TRANSIENT and stop_request.attempt_count < settings.OICP_MAX_ATTEMPTS:
            retry_in = _retry_delay(stop_request.attempt_count)
            stop_request.state, event = State.PENDING, Event.STOP_ATTEMPT_FAILED
            stop_request.next_attempt_at = now + timedelta(seconds=retry_in)
            changed.append("next_attempt_at")
            audit["retry_in_seconds"] = round(retry_in, 3)
        else:
            stop_request.state, event = State.FAILED, Event.STOP_FAILED
        if stop_request.state in RemoteStopRequest.FINAL_STATES:
            stop_request.finished_at = now
            changed.append("finished_at")
        update_rows(RemoteStopRequest, [stop_request], changed)
        entries = [AuditEntry(event, stop_request=stop_request, data=audit)]
        if cdr_received and stop_request.state in SETTLED_BY_PROOF:
            # The CDR arrived while this attempt waited for Hubject's answer: that is the proof.
            charging_session = ChargingSession.objects.get(pk=stop_request.charging_session_id)
            stop_request.charging_session = charging_session
            entries += _confirm(stop_request, confirmed_by="CDR", at=charging_session.cdr_received_at)
        record_audits(entries)
    logger.info(
        "stop request %s attempt %s: %s (http %s, oicp %s)",
        stop_request.pk,
        stop_request.attempt_count,
        stop_request.state,
        result.http_status,
        result.oicp_code or "-",
    )
    return SendOutcome(state=stop_request.state, retry_in=retry_in)


def mark_remote_stop_failed(*, stop_request_id: int, error: str) -> None:
    """Close a request the worker could not finish (time limit, crash); the outcome is unknown."""
    with transaction.atomic():
        stop_request = RemoteStopRequest.objects.select_for_update().filter(pk=stop_request_id).first()
        if stop_request is None or not stop_request.is_open:
            return
        stop_request.state = State.FAILED
        stop_request.last_error = error[:500]
        stop_request.finished_at = timezone.now()
        stop_request.save(update_fields=["state", "last_error", "finished_at"])
        record_audit(
            event_type=Event.STOP_FAILED,
            stop_request=stop_request,
            data={"error": error[:500], "failure_kind": "worker_lost", "attempt": stop_request.attempt_count},
        )
