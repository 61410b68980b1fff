"""Closing a session record by hand: bookkeeping from the stuck-sessions queue, nothing is sent to Hubject."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from ...audit.records import record_audit
from ...models import AuditRecord, ChargingSession, RemoteStopRequest
from .request import StopNotAllowed

Event = AuditRecord.EventType


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
