"""Remote stops: the agent's request, the worker's call to Hubject, and their outcomes."""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from .. import selectors
from ..concurrency import acquire_operator_slot, release_operator_slot
from ..log_context import correlation_id_var
from ..models import AuditRecord, ChargingSession, RemoteStopRequest, StopReason
from ..oicp.client import HubjectClient, Outcome, RemoteStopResult
from .rules import StopBlock, StopBlockCode
from ..audit.records import AuditEntry, record_audit, record_audits

logger = logging.getLogger(__name__)
State = RemoteStopRequest.State
Event = AuditRecord.EventType


class StopNotAllowed(Exception):
    """The portal refuses the stop.

    A refusal by the eligibility rule carries its verdict and no words of its own: `block` (a
    `stop_rules.StopBlock`: the code and the facts) and `code`. The interfaces turn it into the
    presenter's words (`presenters.refusal_text`); str() gives the same words, for logs and tests.
    Other refusals (a bad reason, an unknown session) carry their message as before.
    """

    def __init__(self, message: str = "", *, block: StopBlock | None = None):
        super().__init__(message)
        self.block = block

    @property
    def code(self) -> StopBlockCode | None:
        return self.block.code if self.block is not None else None

    def __str__(self) -> str:
        if self.block is not None:
            from .presenters.blockers import blocker_text  # the words are the presenter's, not the service's

            return blocker_text(self.block)
        return super().__str__()


@dataclass(frozen=True)
class SendOutcome:
    """What the worker should do after `send_remote_stop`."""

    state: str
    # Seconds until the task should run again, or None when nothing more is to be done.
    retry_in: float | None = None


# --- the agent's request ---------------------------------------------------------------------


def request_remote_stop(
    *,
    charging_session_id: int,
    acting_user,
    reason: str,
    note: str = "",
    case_reference: str = "",
) -> RemoteStopRequest:
    """Create the one open stop request for a session and queue it for the worker.

    Raises StopNotAllowed when the session cannot be stopped now.
    """
    if reason not in StopReason.values:
        raise StopNotAllowed("Choose a reason for the stop.")
    if reason == StopReason.OTHER and not note.strip():
        raise StopNotAllowed("Explain the reason in the note when you choose “Other”.")
    with transaction.atomic():
        # The row lock serialises two agents on one session; the unique constraint below is
        # the guard that holds even where the lock does not (SQLite has no row locks).
        charging_session = ChargingSession.objects.select_for_update().filter(pk=charging_session_id).first()
        if charging_session is None:
            raise StopNotAllowed("This charging session does not exist.")
        block = selectors.stop_block(charging_session=charging_session)  # the eligibility rule (stop_rules)
        if block is not None:
            raise StopNotAllowed(block=block)
        try:
            with transaction.atomic():
                stop_request = RemoteStopRequest.objects.create(
                    charging_session=charging_session,
                    requested_by=acting_user,
                    reason=reason,
                    note=note.strip(),
                    case_reference=case_reference.strip(),
                    requested_at=timezone.now(),
                )
        except IntegrityError:
            raise StopNotAllowed("Another stop for this session is already open.") from None
        record_audit(
            event_type=Event.STOP_REQUESTED,
            actor=acting_user,
            stop_request=stop_request,
            data={
                "reason": reason,
                "note": stop_request.note,
                "case_reference": stop_request.case_reference,
                "session_id": charging_session.session_id,
                "evse_id": charging_session.evse_id,
            },
        )

        def queue() -> None:
            # Not stored: tells the caller (the agent's view) whether the broker took the message
            # right away. False means the row waits as PENDING for the sweeper; nothing is lost.
            stop_request.queued = dispatch_remote_stop(stop_request_id=stop_request.pk)

        transaction.on_commit(queue)
    logger.info("stop request %s queued for %s", stop_request.pk, charging_session.session_id)
    return stop_request


def dispatch_remote_stop(*, stop_request_id: int) -> bool:
    """Hand the request to the worker; False when the broker did not take it in time (it stays PENDING
    and the sweeper sends it later).

    The agent's click waits for this, so the publish is bounded: a connection of its own (never the
    pooled one, which carries the worker's longer socket timeout), STOP_PUBLISH_TIMEOUT_SECONDS for
    the TCP connect and for each broker reply, and no retries at any layer. A broker that is down,
    unreachable or stalled (accepts, never answers) costs about that long, never more.
    """
    from ..tasks import send_remote_stop  # the task module imports this one

    bound = settings.STOP_PUBLISH_TIMEOUT_SECONDS
    try:
        with send_remote_stop.app.connection_for_write(
            connect_timeout=bound,
            transport_options={
                "socket_connect_timeout": bound,
                "socket_timeout": bound,
                "max_retries": 0,  # kombu: fail on the first connection error, do not reconnect
                "retry_on_timeout": False,  # redis-py: a reply that does not come is not asked again
            },
        ) as connection:
            send_remote_stop.apply_async(args=[stop_request_id], retry=False, connection=connection)
    except Exception:  # noqa: BLE001 - kombu and redis-py raise several types; the row is safe as PENDING
        logger.warning("could not queue stop request %s; it stays PENDING for the sweeper", stop_request_id,
                       exc_info=True)
        return False
    return True


# --- the worker's call to Hubject -------------------------------------------------------------

_clients = threading.local()


def _hubject_client() -> HubjectClient:
    # One requests.Session per worker thread keeps connections to HBS alive between stops.
    client = getattr(_clients, "client", None)
    if client is None:
        client = _clients.client = HubjectClient.from_settings()
    return client


def _retry_delay(attempt: int) -> float:
    """Exponential backoff with jitter, so retries of many stops do not arrive in lockstep."""
    base = settings.OICP_RETRY_BACKOFF_SECONDS
    return base * 2 ** (attempt - 1) + random.uniform(0, base)


def send_remote_stop(*, stop_request_id: int) -> SendOutcome:
    """Send one attempt of a stop request to Hubject and record what came back.

    Idempotent: a request that is no longer PENDING (or whose retry is not yet due) is left
    alone, so redelivered or duplicate messages never cause a second call.
    """
    stop_request = (
        RemoteStopRequest.objects.select_related("charging_session").filter(pk=stop_request_id).first()
    )
    if stop_request is None or stop_request.state != State.PENDING:
        return SendOutcome(state=stop_request.state if stop_request else "MISSING")
    charging_session = stop_request.charging_session
    correlation_id_var.set(str(stop_request.correlation_id))
    if charging_session.status == ChargingSession.Status.CLOSED:
        # The CDR arrived while the stop waited in the queue: Hubject has closed the session.
        return _settle_unsent(stop_request_id=stop_request_id, failure_kind="session_ended",
                              error="Not sent: the session ended (its CDR arrived) before the stop left the queue.")

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
        return SendOutcome(state=State.PENDING, retry_in=random.uniform(0.5, 1.5))
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
    return _record_result(stop_request_id=stop_request_id, result=result)


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
        record_audit(event_type=Event.STOP_REJECTED, stop_request=stop_request,
                     data={"failure_kind": failure_kind, "error": error, "sent": False,
                           "attempt": stop_request.attempt_count})
    return SendOutcome(state=State.REJECTED)


def _claim(stop_request: RemoteStopRequest) -> bool:
    """PENDING → SENDING in one conditional UPDATE: only one worker can win it."""
    now = timezone.now()
    with transaction.atomic():
        claimed = (
            RemoteStopRequest.objects.filter(pk=stop_request.pk, state=State.PENDING)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now + timedelta(seconds=1)))
            .update(
                state=State.SENDING,
                attempt_count=F("attempt_count") + 1,
                first_sent_at=Coalesce(F("first_sent_at"), Value(now)),
                last_sent_at=now,
                next_attempt_at=None,
            )
        )
        if not claimed:
            return False
        stop_request.refresh_from_db(fields=["state", "attempt_count", "first_sent_at", "last_sent_at"])
        record_audit(
            event_type=Event.STOP_SENDING,
            stop_request=stop_request,
            data={"attempt": stop_request.attempt_count, "max_attempts": settings.OICP_MAX_ATTEMPTS},
        )
    return True


def _record_result(*, stop_request_id: int, result: RemoteStopResult) -> SendOutcome:
    now = timezone.now()
    with transaction.atomic():
        stop_request = RemoteStopRequest.objects.select_for_update().select_related("charging_session").get(
            pk=stop_request_id
        )
        if stop_request.state != State.SENDING:
            # Someone else settled it meanwhile (e.g. marked failed after a time limit).
            return SendOutcome(state=stop_request.state)
        stop_request.http_status = result.http_status
        stop_request.oicp_code = result.oicp_code
        stop_request.oicp_description = result.description[:200]
        stop_request.oicp_additional_info = result.additional_info[:1000]
        stop_request.process_id = result.process_id[:100]
        stop_request.last_error = result.error[:500]
        if result.http_status is not None:
            stop_request.answered_at = now
        audit = {"attempt": stop_request.attempt_count, **result.to_audit()}
        if result.outcome_unknown:
            # The request left, no answer came back (read timeout, connection reset): Hubject
            # may have performed the stop. Kept for good, even when a later attempt is answered.
            stop_request.outcome_unknown = True
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
            audit["retry_in_seconds"] = round(retry_in, 3)
        else:
            stop_request.state, event = State.FAILED, Event.STOP_FAILED
        if stop_request.state in RemoteStopRequest.FINAL_STATES:
            stop_request.finished_at = now
        stop_request.save()
        entries = [AuditEntry(event, stop_request=stop_request, data=audit)]
        if stop_request.charging_session.cdr_received_at is not None and stop_request.state in SETTLED_BY_PROOF:
            # The CDR arrived while this attempt waited for Hubject's answer: that is the proof.
            entries += _confirm(stop_request, confirmed_by="CDR", at=stop_request.charging_session.cdr_received_at)
        record_audits(entries)
    logger.info(
        "stop request %s attempt %s: %s (http %s, oicp %s)",
        stop_request_id,
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


# --- confirmation: the CPO's proof that the session really stopped -----------------------------


def confirm_remote_stops(*, charging_session: ChargingSession, confirmed_by: str, at=None) -> int:
    """Mark the session's stops sent before this proof CONFIRMED (`confirmation_entries`), with their
    audit records; how many. An UNCONFIRMED or FAILED stop is confirmed too when the proof arrives
    late: the record then says when it really ended.
    """
    with transaction.atomic():
        entries = confirmation_entries(charging_session=charging_session, confirmed_by=confirmed_by, at=at)
        record_audits(entries)
    return len(entries)


# Stops the CPO's End or CDR settles as CONFIRMED when it arrives after they were sent: accepted
# ones, those never confirmed in time, and failed ones that reached Hubject (a timeout or a broken
# connection may have reached the CPO; a stop answered 310 may still have been performed). A
# rejected stop was not performed (Hubject said so), and one that never left was not sent at all.
SETTLED_BY_PROOF = (State.ACCEPTED, State.UNCONFIRMED, State.FAILED)


def confirmation_entries(*, charging_session: ChargingSession, confirmed_by: str, at=None) -> list[AuditEntry]:
    """Confirm the session's stops sent before this End or CDR; the caller writes the returned audit
    records last (inside the transaction that records the End notification or the CDR).

    The caller decides whether the message is news: an End confirms only when the session was still
    charging; a stop sent after an End waits for the CDR. A stop still waiting for a retry after an
    attempt that may have reached the CPO is settled too: nothing more is sent for it.
    """
    now = at or timezone.now()
    entries = []
    reached_hubject = Q(outcome_unknown=True) | Q(http_status__isnull=False)
    waiting = RemoteStopRequest.objects.select_for_update().filter(
        Q(state__in=[State.ACCEPTED, State.UNCONFIRMED])
        | Q(reached_hubject, state__in=[State.FAILED, State.PENDING], first_sent_at__lte=now),
        charging_session=charging_session,
        requested_at__lte=now,
    ).order_by("pk")
    for stop_request in waiting:
        entries += _confirm(stop_request, confirmed_by=confirmed_by, at=now)
    return entries


def _confirm(stop_request: RemoteStopRequest, *, confirmed_by: str, at) -> list[AuditEntry]:
    previous = stop_request.state
    stop_request.state = State.CONFIRMED
    stop_request.confirmed_at = at
    stop_request.confirmed_by = confirmed_by
    stop_request.time_to_confirmation = max(at - stop_request.requested_at, timedelta(0))
    stop_request.finished_at = stop_request.finished_at or at
    stop_request.next_attempt_at = None
    stop_request.save(update_fields=["state", "confirmed_at", "confirmed_by", "time_to_confirmation",
                                     "finished_at", "next_attempt_at"])
    data = {
        "confirmed_by": confirmed_by,
        "previous_state": previous,
        "seconds_to_confirmation": round(stop_request.time_to_confirmation.total_seconds(), 3),
    }
    if previous in (State.FAILED, State.PENDING):
        data["settled"] = (
            f"The stop was {'still being retried' if previous == State.PENDING else 'marked failed'}"
            f"{' with its outcome unknown' if stop_request.outcome_unknown else ''}; the "
            f"{'CDR' if confirmed_by == 'CDR' else 'End notification'} that arrived after it was sent shows "
            "the session ended."
        )
        data["outcome_unknown"] = stop_request.outcome_unknown
    return [AuditEntry(Event.STOP_CONFIRMED, stop_request=stop_request, data=data)]


def mark_unconfirmed_stops(*, now=None) -> int:
    """ACCEPTED stops with no End or CDR within STOP_CONFIRMATION_MINUTES become UNCONFIRMED."""
    now = now or timezone.now()
    deadline = now - timedelta(minutes=settings.STOP_CONFIRMATION_MINUTES)
    marked = 0
    candidates = RemoteStopRequest.objects.filter(state=State.ACCEPTED, finished_at__lt=deadline).values_list(
        "pk", flat=True
    )
    for pk in list(candidates):
        with transaction.atomic():
            stop_request = RemoteStopRequest.objects.select_for_update().filter(pk=pk, state=State.ACCEPTED).first()
            if stop_request is None:
                continue
            stop_request.state = State.UNCONFIRMED
            stop_request.save(update_fields=["state"])
            record_audit(
                event_type=Event.STOP_UNCONFIRMED,
                stop_request=stop_request,
                data={"accepted_at": stop_request.finished_at.isoformat(),
                      "waited_minutes": settings.STOP_CONFIRMATION_MINUTES},
            )
            marked += 1
    return marked


# --- the sweeper: nothing lost when the broker or a worker was down ----------------------------


def sweep_stop_requests(*, now=None) -> dict[str, int]:
    """Re-dispatch PENDING requests nobody is working on, and settle SENDING ones a dead worker left.

    Safe to run as often as wanted: dispatching only enqueues, and the worker's conditional claim
    (PENDING → SENDING) lets one message through per attempt, so nothing is sent twice.
    """
    now = now or timezone.now()
    stale_pending = now - timedelta(seconds=settings.STOP_REDISPATCH_AFTER_SECONDS)
    pending = list(
        RemoteStopRequest.objects.filter(state=State.PENDING, requested_at__lt=stale_pending)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=stale_pending))
        .values_list("pk", flat=True)[:1000]
    )
    dispatched = sum(1 for pk in pending if dispatch_remote_stop(stop_request_id=pk))
    # A call never outlives the task's hard time limit; past it, its worker is gone.
    lost_before = now - timedelta(seconds=_sending_deadline_seconds())
    lost = list(
        RemoteStopRequest.objects.filter(state=State.SENDING, last_sent_at__lt=lost_before).values_list("pk", flat=True)
    )
    for pk in lost:
        if recover_lost_attempt(stop_request_id=pk):
            dispatch_remote_stop(stop_request_id=pk)
    return {"redispatched": dispatched, "recovered": len(lost)}


def _sending_deadline_seconds() -> float:
    return settings.OICP_CONNECT_TIMEOUT_SECONDS + settings.OICP_TIMEOUT_SECONDS + 60


def recover_lost_attempt(*, stop_request_id: int) -> bool:
    """A worker died during a call: record that its outcome is unknown, then retry or fail.

    Returns True when the request went back to PENDING for another attempt. Sending a stop again
    is harmless (at worst Hubject answers 400 Session is invalid), so retrying is the safe side.
    """
    with transaction.atomic():
        stop_request = RemoteStopRequest.objects.select_for_update().filter(pk=stop_request_id).first()
        if stop_request is None or stop_request.state != State.SENDING:
            return False
        stop_request.outcome_unknown = True
        stop_request.last_error = ("The worker stopped while waiting for Hubject; the outcome of that attempt is "
                                   "unknown.")
        retry = stop_request.attempt_count < settings.OICP_MAX_ATTEMPTS
        if retry:
            stop_request.state, event = State.PENDING, Event.STOP_ATTEMPT_FAILED
            stop_request.next_attempt_at = timezone.now()
        else:
            stop_request.state, event = State.FAILED, Event.STOP_FAILED
            stop_request.finished_at = timezone.now()
        stop_request.save()
        record_audit(
            event_type=event,
            stop_request=stop_request,
            data={"attempt": stop_request.attempt_count, "failure_kind": "worker_lost",
                  "error": stop_request.last_error, "outcome_unknown": True},
        )
    return retry


# --- supervisors' actions from the stuck-sessions queue ---------------------------------------


def resend_remote_stop(*, stop_request_id: int, acting_user, reason: str = "", note: str = "",
                       case_reference: str = "") -> RemoteStopRequest:
    """Send an unconfirmed (or failed) stop again, as a new audited request.

    The reason and note are the ones confirmed in the dialog (the previous request's reason when none
    is given); the note ends with which request this re-sends; an empty case reference keeps the
    previous one (the case goes on).
    """
    previous = RemoteStopRequest.objects.select_related("charging_session").filter(pk=stop_request_id).first()
    if previous is None:
        raise StopNotAllowed("This stop request does not exist.")
    if previous.state not in (State.UNCONFIRMED, State.FAILED, State.REJECTED):
        raise StopNotAllowed("Only an unconfirmed, failed or rejected stop can be sent again.")
    marker = f"Sent again from the stuck-sessions queue (previous request #{previous.pk})."
    note = note.strip()
    return request_remote_stop(
        charging_session_id=previous.charging_session_id,
        acting_user=acting_user,
        reason=reason or previous.reason,
        note=(f"{note}\n{marker}" if note else marker)[:2000],
        case_reference=case_reference.strip() or previous.case_reference,
    )


def close_session_manually(*, charging_session_id: int, acting_user, reason: str) -> ChargingSession:
    """Close a session record by hand. This is bookkeeping, not a remote stop: nothing is sent."""
    reason = reason.strip()
    if len(reason) < 5:
        raise StopNotAllowed("Say why the session is closed by hand (at least a few words).")
    with transaction.atomic():
        charging_session = ChargingSession.objects.select_for_update().filter(pk=charging_session_id).first()
        if charging_session is None:
            raise StopNotAllowed("This charging session does not exist.")
        if charging_session.status == ChargingSession.Status.CLOSED:
            raise StopNotAllowed("The session is already closed.")
        if charging_session.stop_requests.filter(state__in=RemoteStopRequest.OPEN_STATES).exists():
            raise StopNotAllowed("A stop for this session is still being sent; wait for its answer.")
        previous = charging_session.status
        now = timezone.now()
        charging_session.status = ChargingSession.Status.CLOSED
        charging_session.closed_manually = True
        charging_session.ended_at = charging_session.ended_at or now
        charging_session.last_update_at = now
        charging_session.save(update_fields=["status", "closed_manually", "ended_at", "last_update_at"])
        record_audit(
            event_type=Event.SESSION_CLOSED_MANUALLY,
            actor=acting_user,
            charging_session=charging_session,
            data={"reason": reason, "previous_status": previous, "remote_stop_sent": False},
        )
    return charging_session
