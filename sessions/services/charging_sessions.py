"""Charging sessions as the portal learns about them."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from ..models import AuditRecord, ChargingSession
from ..oicp import ids
from .audit import record_audit

Event = AuditRecord.EventType


def create_charging_session(
    *,
    session_id: str,
    evse_id: str,
    provider_id: str,
    started_at,
    emp_partner_session_id: str = "",
    cpo_partner_session_id: str = "",
    energy_kwh=None,
    acting_user=None,
    source: str = "",
    learned_late: bool = False,
    status: str = ChargingSession.Status.ACTIVE,
) -> ChargingSession:
    """Record a session the portal learns about; IDs are validated and stored upper case.

    `learned_late`: the portal first hears of it from something other than a Start (a later
    notification or the CDR); `status` lets such a session start out CHARGING_ENDED or CLOSED.
    """
    if not ids.is_session_id(session_id):
        raise ValueError(f"{session_id!r} is not a Hubject SessionID")
    if not ids.is_provider_id(provider_id):
        raise ValueError(f"{provider_id!r} is not a ProviderID")
    evse_id = evse_id.upper()
    with transaction.atomic():
        charging_session = ChargingSession.objects.create(
            session_id=session_id.lower(),
            evse_id=evse_id,
            operator_id=ids.operator_id_from_evse_id(evse_id),
            provider_id=provider_id.upper(),
            emp_partner_session_id=emp_partner_session_id,
            cpo_partner_session_id=cpo_partner_session_id,
            started_at=started_at,
            energy_kwh=energy_kwh,
            last_update_at=timezone.now(),
            learned_late=learned_late,
            status=status,
        )
        record_audit(
            event_type=Event.SESSION_CREATED,
            actor=acting_user,
            charging_session=charging_session,
            data={"source": source, "session_id": charging_session.session_id, "evse_id": evse_id,
                  "status": charging_session.status, "learned_late": learned_late},
        )
    return charging_session
