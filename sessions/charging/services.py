"""Charging sessions as the portal learns about them."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from ..audit.records import AuditEntry, record_audits
from ..models import AuditRecord, ChargingSession
from ..oicp import ids

Event = AuditRecord.EventType


def create_charging_session(*, acting_user=None, source: str = "", **fields) -> ChargingSession:
    """Record a session the portal learns about, with its SESSION_CREATED audit record.

    `fields` are `insert_charging_session`'s.
    """
    with transaction.atomic():
        charging_session = insert_charging_session(**fields)
        record_audits([session_created_entry(charging_session, source=source, acting_user=acting_user)])
    return charging_session


def insert_charging_session(**fields) -> ChargingSession:
    """INSERT the session row only; the caller writes `session_created_entry` in the same transaction.

    `fields` are `new_charging_session`'s.
    """
    charging_session = new_charging_session(**fields)
    charging_session.save(force_insert=True)
    return charging_session


def new_charging_session(
    *,
    session_id: str,
    evse_id: str,
    provider_id: str,
    started_at,
    emp_partner_session_id: str = "",
    cpo_partner_session_id: str = "",
    energy_kwh=None,
    learned_late: bool = False,
    status: str = ChargingSession.Status.ACTIVE,
    last_update_at=None,
    **more,
) -> ChargingSession:
    """The session row as it will be INSERTed (not saved: the inbound appliers insert a batch's at once).

    IDs are validated; EvseID and ProviderID are stored upper case, the SessionID exactly as
    given (Hubject compares it as given; the database keeps its lower-case `session_key`). `learned_late`: the portal first hears of it from something
    other than a Start (a later notification or the CDR); `status` lets such a session start out
    CHARGING_ENDED or CLOSED; `more` sets further fields at once (an End's charging_ended_at), so
    a new session needs no UPDATE right after its INSERT.
    """
    if not ids.is_session_id(session_id):
        raise ValueError(f"{session_id!r} is not a Hubject SessionID")
    if not ids.is_provider_id(provider_id):
        raise ValueError(f"{provider_id!r} is not a ProviderID")
    evse_id = evse_id.upper()
    return ChargingSession(
        session_id=session_id,
        evse_id=evse_id,
        operator_id=ids.operator_id_from_evse_id(evse_id),
        provider_id=provider_id.upper(),
        emp_partner_session_id=emp_partner_session_id,
        cpo_partner_session_id=cpo_partner_session_id,
        started_at=started_at,
        energy_kwh=energy_kwh,
        last_update_at=last_update_at or timezone.now(),
        learned_late=learned_late,
        status=status,
        **more,
    )


def session_created_entry(charging_session: ChargingSession, *, source: str, acting_user=None) -> AuditEntry:
    return AuditEntry(
        event_type=Event.SESSION_CREATED,
        actor=acting_user,
        charging_session=charging_session,
        data={
            "source": source,
            "session_id": charging_session.session_id,
            "evse_id": charging_session.evse_id,
            "status": charging_session.status,
            "learned_late": charging_session.learned_late,
        },
    )
