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
from .audit import AuditEntry, record_audit, record_audits
from .charging_sessions import insert_charging_session, session_created_entry
from .stops import confirmation_entries

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
    *, notification: ChargingNotification, raw: str, remote_addr: str | None, message: InboundMessage | None = None
) -> RecordOutcome:
    """Apply a Start, Progress, End or Error notification to its session (creating it if unknown).

    Start: creates the session, or fills in what a late-learned one lacks. Progress: energy
    (ConsumedEnergyProgress) and last_update_at. End: CHARGING_ENDED, charging_ended_at, energy,
    and the session's accepted stops are confirmed (confirmed_by END). Error: last_error_*.
    Any Type but Start for an unknown session creates it marked learned_late.
    """
    # A queued message counts from when it arrived (the session's last update, time to confirmation).
    now = message.received_at if message is not None else timezone.now()
    parsed = notification.to_json()
    with transaction.atomic():
        new_status = Status.CHARGING_ENDED if notification.type == "End" else Status.ACTIVE
        charging_session, created = _lock_or_create_session(
            session_id=notification.session_id,
            evse_id=notification.evse_id,
            started_at=notification.session_start or notification.charging_start,
            emp_partner_session_id=notification.emp_partner_session_id or "",
            cpo_partner_session_id=notification.cpo_partner_session_id or "",
            learned_late=notification.type != "Start",
            status=new_status,
            now=now,
            # A new session gets the notification's facts in its INSERT (no UPDATE after it).
            **_notification_changes(notification, status=new_status, charging_ended_at=None, now=now),
        )
        status_before = new_status if created else charging_session.status
        if not created:
            changes = _notification_changes(notification, status=charging_session.status,
                                            charging_ended_at=charging_session.charging_ended_at, now=now)
            changes.update(_fill_in(charging_session, notification))
            for name, value in changes.items():
                setattr(charging_session, name, value)
            charging_session.save(update_fields=sorted(changes))

        message = _store_message(
            message,
            kind=notification.kind,
            charging_session=charging_session,
            operator_id=notification.operator_id,
            received_at=now,
            remote_addr=remote_addr,
            raw=raw,
            parsed=parsed,
        )
        audit = [session_created_entry(charging_session, source=f"NOTIFICATION_{notification.kind}")] if created else []
        confirmations = []
        if notification.type == "End" and not created:  # a session created just now has no stops
            confirmations = confirmation_entries(charging_session=charging_session, confirmed_by="END", at=now)
        confirmed = len(confirmations)
        audit += confirmations
        data: dict[str, Any] = {
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
            data["evse_id_differs"] = {"session": charging_session.evse_id, "message": notification.evse_id}
        audit.append(AuditEntry(Event.NOTIFICATION_RECEIVED, charging_session=charging_session, data=data))
        record_audits(audit)
    return RecordOutcome(
        charging_session=charging_session,
        inbound_message=message,
        session_created=created,
        stops_confirmed=confirmed,
    )


def _notification_changes(notification: ChargingNotification, *, status: str, charging_ended_at, now) -> dict:
    """The session fields a notification sets, given the session's status (never reopens or overwrites a CDR)."""
    changes: dict[str, Any] = {"last_update_at": now}
    energy = notification.energy_kwh
    if energy is not None and status != Status.CLOSED:
        # Once the CDR arrived its energy is final; a late notification does not overwrite it.
        if notification.type == "End" or status == Status.ACTIVE:
            changes["energy_kwh"] = energy
    if notification.type == "End":
        if status == Status.ACTIVE:
            changes["status"] = Status.CHARGING_ENDED
        if status != Status.CLOSED or charging_ended_at is None:
            changes["charging_ended_at"] = notification.charging_end
    elif notification.type == "Error":
        changes["last_error_type"] = notification.error_type
        changes["last_error_info"] = notification.error_additional_info or ""
        changes["last_error_at"] = now
    return changes


def record_cdr(
    *, cdr: ParsedCdr, raw: str, source: str, remote_addr: str | None = None, message: InboundMessage | None = None
) -> RecordOutcome:
    """Store a charge detail record and close its session (creating it, learned_late, if unknown).

    One CDR per SessionID, as at Hubject: a repeated one (a re-push, or the pull bringing one that
    was pushed) is kept as a raw InboundMessage whose parsed data says `"duplicate": true`, and its
    CDR_RECEIVED audit record says so too; no second ChargeDetailRecord is stored and the session
    is not changed. `source` is "PUSH" or "PULL".
    """
    if source not in ChargeDetailRecord.Source.values:
        raise ValueError(f"source must be one of {ChargeDetailRecord.Source.values}, not {source!r}")
    # A queued message counts from when it arrived (the session's last update, time to confirmation).
    now = message.received_at if message is not None else timezone.now()
    parsed = cdr.to_json()
    with transaction.atomic():
        charging_session, created = _lock_or_create_session(
            session_id=cdr.session_id,
            evse_id=cdr.evse_id,
            started_at=cdr.session_start,
            emp_partner_session_id=cdr.emp_partner_session_id or "",
            cpo_partner_session_id=cdr.cpo_partner_session_id or "",
            learned_late=True,
            now=now,
            hub_provider_id=cdr.hub_provider_id,
            **_cdr_changes(cdr, charging_ended_at=None, now=now),
        )
        status_before = Status.CLOSED if created else charging_session.status
        stored = None
        try:
            # The unique SessionID decides: no look first, a repeat is the rare case.
            with transaction.atomic():
                ChargeDetailRecord.objects.create(
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
        except IntegrityError:  # already stored (pushed again, or pulled after the push)
            stored = ChargeDetailRecord.objects.only("pk", "data").get(session_id=cdr.session_id)
        duplicate = stored is not None

        audit = [session_created_entry(charging_session, source=f"CDR_{source}")] if created else []
        confirmations = []
        if not duplicate and not created:  # a session created just now has its CDR's facts and no stops
            changes = _cdr_changes(cdr, charging_ended_at=charging_session.charging_ended_at, now=now)
            changes.update(_fill_in(charging_session, cdr))
            for name, value in changes.items():
                setattr(charging_session, name, value)
            charging_session.save(update_fields=sorted(changes))
            confirmations = confirmation_entries(charging_session=charging_session, confirmed_by="CDR", at=now)
        confirmed = len(confirmations)
        audit += confirmations

        message = _store_message(
            message,
            kind=InboundMessage.Kind.CDR,
            charging_session=charging_session,
            operator_id=cdr.operator_id,
            received_at=now,
            remote_addr=remote_addr,
            raw=raw,
            parsed={**parsed, "duplicate": True} if duplicate else parsed,
        )
        data: dict[str, Any] = {
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
            data["cdr_id"] = stored.pk
            data["differs_from_stored"] = stored.data != parsed
        audit.append(AuditEntry(Event.CDR_RECEIVED, charging_session=charging_session, data=data))
        record_audits(audit)
    return RecordOutcome(
        charging_session=charging_session,
        inbound_message=message,
        session_created=created,
        duplicate=duplicate,
        stops_confirmed=confirmed,
    )


def _cdr_changes(cdr: ParsedCdr, *, charging_ended_at, now) -> dict:
    """The session fields a (first) CDR sets: it closes the session with its final energy."""
    changes: dict[str, Any] = {
        "status": Status.CLOSED,
        "ended_at": cdr.session_end,
        "energy_kwh": cdr.consumed_energy,
        "cdr_received_at": now,
        "last_update_at": now,
    }
    if charging_ended_at is None:
        changes["charging_ended_at"] = cdr.charging_end
    return changes


# --- helpers ---------------------------------------------------------------------------------


def _provider_id(hub_provider_id: str | None) -> str:
    """Sessions learned from inbound messages belong to us: settings.OICP_PROVIDER_ID."""
    for candidate in (settings.OICP_PROVIDER_ID, hub_provider_id or ""):
        if ids.is_provider_id(candidate):
            return candidate
    raise ImproperlyConfigured("OICP_PROVIDER_ID must be set to record sessions pushed by Hubject")


def _locked_session(session_id: str) -> ChargingSession | None:
    # order_by(): SessionID is unique, and compiling the model's default ordering costs more than the query.
    return next(iter(ChargingSession.objects.select_for_update().filter(session_id=session_id).order_by()), None)


def _lock_or_create_session(
    *,
    session_id: str,
    evse_id: str,
    started_at,
    emp_partner_session_id: str,
    cpo_partner_session_id: str,
    learned_late: bool,
    status: str,
    now,
    hub_provider_id: str | None = None,
    **more,
) -> tuple[ChargingSession, bool]:
    """The session row, locked for this transaction; INSERTed (with `more` fields) if unknown.

    The caller writes the SESSION_CREATED audit record when `created` is True.
    """
    charging_session = _locked_session(session_id)
    if charging_session is not None:
        return charging_session, False
    try:
        with transaction.atomic():  # a savepoint: losing the race below leaves our transaction usable
            charging_session = insert_charging_session(
                session_id=session_id,
                evse_id=evse_id,
                provider_id=_provider_id(hub_provider_id),
                started_at=started_at,
                emp_partner_session_id=emp_partner_session_id,
                cpo_partner_session_id=cpo_partner_session_id,
                learned_late=learned_late,
                status=status,
                last_update_at=more.pop("last_update_at", now),
                **more,
            )
        return charging_session, True
    except IntegrityError:
        # Another message for the same unknown session created it first (unique session_id).
        charging_session = _locked_session(session_id)
        if charging_session is None:
            raise
        return charging_session, False


def _fill_in(charging_session: ChargingSession, message) -> dict[str, Any]:
    """What the session does not know yet (start time, partner session IDs); never overwrites."""
    changes: dict[str, Any] = {}
    started_at = message.session_start or message.charging_start
    if charging_session.started_at is None and started_at is not None:
        changes["started_at"] = started_at
    for attr in ("emp_partner_session_id", "cpo_partner_session_id"):
        value = getattr(message, attr)
        if value and not getattr(charging_session, attr):
            changes[attr] = value
    return changes


def _store_message(
    message: InboundMessage | None, *, kind: str, charging_session: ChargingSession, operator_id: str, received_at,
    remote_addr, raw: str, parsed
) -> InboundMessage:
    """Keep the message, applied: a new row, or the queued row the worker is applying."""
    if message is not None:
        message.charging_session = charging_session
        message.parsed = parsed
        message.applied_at = timezone.now()
        message.save(update_fields=["charging_session", "parsed", "applied_at"])
        return message
    return InboundMessage.objects.create(
        kind=kind,
        charging_session=charging_session,
        session_id=charging_session.session_id,
        operator_id=operator_id,
        received_at=received_at,
        remote_addr=_ip_or_none(remote_addr),
        raw=raw,
        parsed=parsed,
        applied_at=received_at,
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
