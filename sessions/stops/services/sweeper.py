"""The sweeper: nothing lost when the broker or a worker was down.

PENDING requests nobody is working on are dispatched again; SENDING ones a dead worker left are settled.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ...audit.records import record_audit
from ...models import AuditRecord, RemoteStopRequest
from .dispatch import dispatch_remote_stop

State = RemoteStopRequest.State
Event = AuditRecord.EventType


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
        stop_request.last_error = (
            "The worker stopped while waiting for Hubject; the outcome of that attempt is unknown."
        )
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
            data={
                "attempt": stop_request.attempt_count,
                "failure_kind": "worker_lost",
                "error": stop_request.last_error,
                "outcome_unknown": True,
            },
        )
    return retry
