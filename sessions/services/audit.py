"""The audit trail's single write path."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from ..models import AuditRecord, ChargingSession, RemoteStopRequest


def record_audit(
    *,
    event_type: str,
    actor=None,
    charging_session: ChargingSession | None = None,
    stop_request: RemoteStopRequest | None = None,
    data: dict[str, Any] | None = None,
) -> AuditRecord:
    """Append one audit record; callers invoke it inside the transaction of the change."""
    if stop_request is not None and charging_session is None:
        charging_session = stop_request.charging_session
    return AuditRecord.objects.create(
        event_type=event_type,
        occurred_at=timezone.now(),
        actor=actor,
        charging_session=charging_session,
        stop_request=stop_request,
        correlation_id=stop_request.correlation_id if stop_request is not None else None,
        data=data or {},
    )
