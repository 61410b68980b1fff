"""Confirmation: the CPO's proof (an End notification or a CDR) that the session really stopped.

Stops sent before the proof become CONFIRMED; ACCEPTED ones that wait too long for it become UNCONFIRMED.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ...audit.records import AuditEntry, record_audit, record_audits
from ...models import AuditRecord, ChargingSession, RemoteStopRequest

State = RemoteStopRequest.State
Event = AuditRecord.EventType


def confirm_remote_stops(*, charging_session: ChargingSession, confirmed_by: str, at=None) -> int:
    """Mark the session's stops sent before this proof CONFIRMED (`confirm_stops_for_session_end`), with
    their audit records; how many. An UNCONFIRMED or FAILED stop is confirmed too when the proof arrives
    late: the record then says when it really ended.
    """
    with transaction.atomic():
        entries = confirm_stops_for_session_end(charging_session=charging_session, confirmed_by=confirmed_by, at=at)
        record_audits(entries)
    return len(entries)


# Stops the CPO's End or CDR settles as CONFIRMED when it arrives after they were sent: accepted
# ones, those never confirmed in time, and failed ones that reached Hubject (a timeout or a broken
# connection may have reached the CPO; a stop answered 310 may still have been performed). A
# rejected stop was not performed (Hubject said so), and one that never left was not sent at all.
SETTLED_BY_PROOF = (State.ACCEPTED, State.UNCONFIRMED, State.FAILED)


def confirm_stops_for_session_end(*, charging_session: ChargingSession, confirmed_by: str, at=None) -> list[AuditEntry]:
    """Save the session's stops sent before this End or CDR as CONFIRMED; the caller writes the returned
    audit records last (inside the transaction that records the End notification or the CDR).

    The caller decides whether the message is news: an End confirms only when the session was still
    charging; a stop sent after an End waits for the CDR. A stop still waiting for a retry after an
    attempt that may have reached the CPO is settled too: nothing more is sent for it.
    """
    now = at or timezone.now()
    entries = []
    reached_hubject = Q(outcome_unknown=True) | Q(http_status__isnull=False)
    waiting = (
        RemoteStopRequest.objects.select_for_update()
        .filter(
            Q(state__in=[State.ACCEPTED, State.UNCONFIRMED])
            | Q(reached_hubject, state__in=[State.FAILED, State.PENDING], first_sent_at__lte=now),
            charging_session=charging_session,
            requested_at__lte=now,
        )
        .order_by("pk")
    )
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
    stop_request.save(
        update_fields=[
            "state",
            "confirmed_at",
            "confirmed_by",
            "time_to_confirmation",
            "finished_at",
            "next_attempt_at",
        ]
    )
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
                data={
                    "accepted_at": stop_request.finished_at.isoformat(),
                    "waited_minutes": settings.STOP_CONFIRMATION_MINUTES,
                },
            )
            marked += 1
    return marked
