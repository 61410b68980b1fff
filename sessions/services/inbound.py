"""What Hubject pushes (or the CDR pull brings): charging notifications and charge detail records.

Each accepted message is kept raw and parsed as an InboundMessage linked to its session and
written to the audit trail (NOTIFICATION_RECEIVED / CDR_RECEIVED) in the transaction that applies
it. The session row is locked while a message is applied; two messages creating the same unknown
session at once meet at the unique SessionID, and the loser applies its message to the winner's
row. Messages are validated before they get here (`sessions.oicp.inbound`).

Status only moves forward (ACTIVE → CHARGING_ENDED → CLOSED): a notification arriving after the
CDR is kept and audited but does not reopen the session or overwrite the CDR's energy.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.utils import timezone

from ..models import AuditRecord, ChargeDetailRecord, ChargingSession, InboundMessage
from ..oicp import ids
from ..oicp.inbound import ChargeDetailRecord as ParsedCdr
from ..oicp.inbound import ChargingNotification
from .audit import record_audit
from .charging_sessions import create_charging_session
from .stops import confirm_remote_stops

Event = AuditRecord.EventType
Status = ChargingSession.Status


@dataclass(frozen=True)
class RecordOutcome:
    """What recording one inbound message did."""

    charging_session: ChargingSession
    inbound_message: InboundMessage
    # The portal did not know the session and created it from this message.
    session_created: bool
    # A CDR for a session that already has one: kept as an InboundMessage, not stored again.
    duplicate: bool = False
    stops_confirmed: int = 0

    @property
    def created(self) -> bool:
        """The message changed the portal's view (False only for a duplicate CDR)."""
        return not self.duplicate


def record_charging_notification(
    *, notification: ChargingNotification, raw: str, remote_addr: str | None
) -> RecordOutcome:
    """Apply a Start, Progress, End or Error notification to its session (creating it if unknown).

    Start: creates the session, or fills in what a late-learned one lacks. Progress: energy
    (ConsumedEnergyProgress) and last_update_at. End: CHARGING_ENDED, charging_ended_at, energy,
    and the session's accepted stops are confirmed (confirmed_by END). Error: last_error_*.
    Any Type but Start for an unknown session creates it marked learned_late.
    """
    now = timezone.now()
    with transaction.atomic():
        charging_session, created = _lock_or_create_session(
            session_id=notification.session_id,
            evse_id=notification.evse_id,
            started_at=notification.session_start or notification.charging_start,
            emp_partner_session_id=notification.emp_partner_session_id or "",
            cpo_partner_session_id=notification.cpo_partner_session_id or "",
            learned_late=notification.type != "Start",
            status=Status.CHARGING_ENDED if notification.type == "End" else Status.ACTIVE,
            source=f"NOTIFICATION_{notification.kind}",
        )
        status_before = charging_session.status
        changed = _fill_in(charging_session, notification=notification)
        energy = notification.energy_kwh
        if energy is not None and charging_session.status != Status.CLOSED:
            # Once the CDR arrived its energy is final; a late notification does not overwrite it.
            if notification.type == "End" or charging_session.status == Status.ACTIVE:
                charging_session.energy_kwh = energy
                changed.append("energy_kwh")
        if notification.type == "End":
            if charging_session.status == Status.ACTIVE:
                charging_session.status = Status.CHARGING_ENDED
                changed.append("status")
            if charging_session.status != Status.CLOSED or charging_session.charging_ended_at is None:
                charging_session.charging_ended_at = notification.charging_end
                changed.append("charging_ended_at")
        elif notification.type == "Error":
            charging_session.last_error_type = notification.error_type
            charging_session.last_error_info = notification.error_additional_info or ""
            charging_session.last_error_at = now
            changed += ["last_error_type", "last_error_info", "last_error_at"]
        charging_session.last_update_at = now
        charging_session.save(update_fields=sorted(set(changed) | {"last_update_at"}))

        parsed = notification.to_json()
        message = _store_message(
            kind=notification.kind,
            charging_session=charging_session,
            operator_id=notification.operator_id,
            received_at=now,
            remote_addr=remote_addr,
            raw=raw,
            parsed=parsed,
        )
        confirmed = 0
        if notification.type == "End":
            confirmed = confirm_remote_stops(charging_session=charging_session, confirmed_by="END", at=now)
        audit: dict[str, Any] = {
            "kind": notification.kind,
            "message": parsed,
            "inbound_message_id": message.pk,
            "remote_addr": message.remote_addr,
            "session_created": created,
            "learned_late": created and charging_session.learned_late,
            "status_before": status_before,
            "status_after": charging_session.status,
            "stops_confirmed": confirmed,
        }
        if charging_session.evse_id != notification.evse_id:
            audit["evse_id_differs"] = {"session": charging_session.evse_id, "message": notification.evse_id}
        record_audit(event_type=Event.NOTIFICATION_RECEIVED, charging_session=charging_session, data=audit)
    return RecordOutcome(
        charging_session=charging_session,
        inbound_message=message,
        session_created=created,
        stops_confirmed=confirmed,
    )


def record_cdr(*, cdr: ParsedCdr, raw: str, source: str, remote_addr: str | None = None) -> RecordOutcome:
    """Store a charge detail record and close its session (creating it, learned_late, if unknown).

    One CDR per SessionID, as at Hubject: a repeated one (a re-push, or the pull bringing one that
    was pushed) is kept as a raw InboundMessage whose parsed data says `"duplicate": true`, and its
    CDR_RECEIVED audit record says so too; no second ChargeDetailRecord is stored and the session
    is not changed. `source` is "PUSH" or "PULL".
    """
    if source not in ChargeDetailRecord.Source.values:
        raise ValueError(f"source must be one of {ChargeDetailRecord.Source.values}, not {source!r}")
    now = timezone.now()
    parsed = cdr.to_json()
    with transaction.atomic():
        charging_session, created = _lock_or_create_session(
            session_id=cdr.session_id,
            evse_id=cdr.evse_id,
            started_at=cdr.session_start,
            emp_partner_session_id=cdr.emp_partner_session_id or "",
            cpo_partner_session_id=cdr.cpo_partner_session_id or "",
            learned_late=True,
            status=Status.CLOSED,
            source=f"CDR_{source}",
            hub_provider_id=cdr.hub_provider_id,
        )
        status_before = charging_session.status
        stored = ChargeDetailRecord.objects.filter(session_id=cdr.session_id).first()
        if stored is None:
            try:
                with transaction.atomic():
                    stored = ChargeDetailRecord.objects.create(
                        charging_session=charging_session,
                        session_id=cdr.session_id,
                        evse_id=cdr.evse_id,
                        operator_id=cdr.operator_id,
                        charging_start=cdr.charging_start,
                        charging_end=cdr.charging_end,
                        session_start=cdr.session_start,
                        session_end=cdr.session_end,
                        consumed_energy_kwh=cdr.consumed_energy,
                        source=source,
                        received_at=now,
                        data=parsed,
                    )
                duplicate = False
            except IntegrityError:  # another process stored it between our look and our insert
                stored = ChargeDetailRecord.objects.get(session_id=cdr.session_id)
                duplicate = True
        else:
            duplicate = True

        confirmed = 0
        if not duplicate:
            _fill_in(charging_session, notification=None, cdr=cdr)
            charging_session.status = Status.CLOSED
            charging_session.ended_at = cdr.session_end
            charging_session.energy_kwh = cdr.consumed_energy
            charging_session.cdr_received_at = now
            if charging_session.charging_ended_at is None:
                charging_session.charging_ended_at = cdr.charging_end
            charging_session.last_update_at = now
            charging_session.save()
            confirmed = confirm_remote_stops(charging_session=charging_session, confirmed_by="CDR", at=now)

        message = _store_message(
            kind=InboundMessage.Kind.CDR,
            charging_session=charging_session,
            operator_id=cdr.operator_id,
            received_at=now,
            remote_addr=remote_addr,
            raw=raw,
            parsed={**parsed, "duplicate": True} if duplicate else parsed,
        )
        audit: dict[str, Any] = {
            "kind": "CDR",
            "source": source,
            "message": parsed,
            "inbound_message_id": message.pk,
            "remote_addr": message.remote_addr,
            "duplicate": duplicate,
            "session_created": created,
            "learned_late": created,
            "status_before": status_before,
            "status_after": charging_session.status,
            "stops_confirmed": confirmed,
        }
        if duplicate:
            # Hubject keeps one CDR per SessionID; say whether the repeat differs from the stored one.
            audit["cdr_id"] = stored.pk
            audit["differs_from_stored"] = stored.data != parsed
        record_audit(event_type=Event.CDR_RECEIVED, charging_session=charging_session, data=audit)
    return RecordOutcome(
        charging_session=charging_session,
        inbound_message=message,
        session_created=created,
        duplicate=duplicate,
        stops_confirmed=confirmed,
    )


# --- helpers ---------------------------------------------------------------------------------


def _provider_id(hub_provider_id: str | None) -> str:
    """Sessions learned from inbound messages belong to us: settings.OICP_PROVIDER_ID."""
    for candidate in (settings.OICP_PROVIDER_ID, hub_provider_id or ""):
        if ids.is_provider_id(candidate):
            return candidate
    raise ImproperlyConfigured("OICP_PROVIDER_ID must be set to record sessions pushed by Hubject")


def _locked_session(session_id: str) -> ChargingSession | None:
    return ChargingSession.objects.select_for_update().filter(session_id=session_id).first()


def _lock_or_create_session(
    *,
    session_id: str,
    evse_id: str,
    started_at,
    emp_partner_session_id: str,
    cpo_partner_session_id: str,
    learned_late: bool,
    status: str,
    source: str,
    hub_provider_id: str | None = None,
) -> tuple[ChargingSession, bool]:
    """The session row, locked for this transaction; created (with its audit record) if unknown."""
    charging_session = _locked_session(session_id)
    if charging_session is not None:
        return charging_session, False
    try:
        with transaction.atomic():  # a savepoint: losing the race below leaves our transaction usable
            charging_session = create_charging_session(
                session_id=session_id,
                evse_id=evse_id,
                provider_id=_provider_id(hub_provider_id),
                started_at=started_at,
                emp_partner_session_id=emp_partner_session_id,
                cpo_partner_session_id=cpo_partner_session_id,
                learned_late=learned_late,
                status=status,
                source=source,
            )
        return charging_session, True
    except IntegrityError:
        # Another message for the same unknown session created it first (unique session_id).
        charging_session = _locked_session(session_id)
        if charging_session is None:
            raise
        return charging_session, False


def _fill_in(charging_session: ChargingSession, *, notification=None, cdr=None) -> list[str]:
    """Fill what the session does not know yet (start time, partner session IDs); never overwrite."""
    message = notification or cdr
    changed = []
    started_at = message.session_start or message.charging_start
    if charging_session.started_at is None and started_at is not None:
        charging_session.started_at = started_at
        changed.append("started_at")
    for attr in ("emp_partner_session_id", "cpo_partner_session_id"):
        value = getattr(message, attr)
        if value and not getattr(charging_session, attr):
            setattr(charging_session, attr, value)
            changed.append(attr)
    return changed


def _store_message(
    *, kind: str, charging_session: ChargingSession, operator_id: str, received_at, remote_addr, raw: str, parsed
) -> InboundMessage:
    return InboundMessage.objects.create(
        kind=kind,
        charging_session=charging_session,
        session_id=charging_session.session_id,
        operator_id=operator_id,
        received_at=received_at,
        remote_addr=_ip_or_none(remote_addr),
        raw=raw,
        parsed=parsed,
    )


def _ip_or_none(value) -> str | None:
    try:
        return str(ipaddress.ip_address(value)) if value else None
    except ValueError:
        return None


def record_inbound_refusal(*, client_address: str | None, path: str, method: str, reason: str) -> None:
    """Audit a caller the inbound endpoints refused: who, where, why; never the body (bounded)."""
    record_audit(
        event_type=Event.INBOUND_REFUSED,
        data={
            "client_address": (client_address or "")[:64],
            "path": path[:200],
            "method": method[:10],
            "reason": reason[:200],
        },
    )
