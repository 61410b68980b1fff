"""Charging notifications (Start, Progress, End, Error) applied to their session; an End that is news confirms stops."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from ...audit.records import AuditEntry
from ...charging.services import session_created_entry
from ...models import AuditRecord, ChargingSession, InboundMessage
from ...oicp.inbound import ERROR_ADDITIONAL_INFO_MAX, ChargingNotification
from .keeping import RecordOutcome, _anomaly_data, _recorded, _store_message, _write_audit
from .matching import _differs_data, _evse_mismatch, _fill_in, _identification, _identification_differs
from .session_row import _confirm_stops, _lock_or_create_session, _save_session
from .steps import message_step

Event = AuditRecord.EventType
Status = ChargingSession.Status


def record_charging_notification(
    *,
    notification: ChargingNotification,
    raw: str,
    remote_addr: str | None,
    message: InboundMessage | None = None,
    audit_to: list[AuditEntry] | None = None,
) -> RecordOutcome:
    """Apply a Start, Progress, End or Error notification to its session (creating it if unknown).

    Start: creates the session, or fills in what a late-learned one lacks. Progress: energy
    (ConsumedEnergyProgress) and last_update_at. End: CHARGING_ENDED, charging_ended_at, energy,
    and, when the End is news (the session was still charging), the stops sent before it are
    confirmed (confirmed_by END); a stop sent after the End waits for the CDR. Error: last_error_*.
    Any Type but Start for an unknown session creates it marked learned_late. A notification for
    another EVSE than the session's is kept and flagged, and changes nothing.

    All of it in one atomic block (inside the caller's transaction, a savepoint: a failure leaves
    the caller's transaction usable). `audit_to`: the caller writes the audit entries (see keeping).
    """
    # A queued message counts from when it arrived (the session's last update, time to confirmation).
    now = message.received_at if message is not None else timezone.now()
    parsed = notification.to_json()
    anomalies = list(notification.anomalies)
    with message_step():
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
            **_identification(notification),
        )
        status_before = new_status if created else charging_session.status
        mismatch = None if created else _evse_mismatch(charging_session, notification.evse_id, "notification")
        differs = _identification_differs(charging_session, notification) if mismatch is None else []
        if mismatch is not None:
            anomalies.append(mismatch)
        elif not created:
            changes = _notification_changes(
                notification,
                status=charging_session.status,
                charging_ended_at=charging_session.charging_ended_at,
                now=now,
            )
            changes.update(_fill_in(charging_session, notification))
            _save_session(charging_session, changes)

        message = _store_message(
            message,
            kind=notification.kind,
            charging_session=charging_session,
            operator_id=notification.operator_id,
            received_at=now,
            remote_addr=remote_addr,
            raw=raw,
            parsed=parsed,
            anomalies=anomalies,
        )
        audit = [session_created_entry(charging_session, source=f"NOTIFICATION_{notification.kind}")] if created else []
        confirmations = []
        # End confirms only when it is news: a session created just now has no stops, and a stop
        # sent after an earlier End can only be confirmed by the CDR.
        if notification.type == "End" and not created and mismatch is None and status_before == Status.ACTIVE:
            confirmations = _confirm_stops(charging_session, confirmed_by="END", at=now)
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
            **_anomaly_data(anomalies, held_back=mismatch is not None),
            **_differs_data(differs),
        }
        received = AuditEntry(Event.NOTIFICATION_RECEIVED, charging_session=charging_session, data=data)
        _write_audit(audit, received, audit_to)
    return _recorded(
        message,
        anomalies,
        charging_session=charging_session,
        session_created=created,
        stops_confirmed=confirmed,
        held_back=mismatch is not None,
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
        changes["last_error_info"] = (notification.error_additional_info or "")[:ERROR_ADDITIONAL_INFO_MAX]
        changes["last_error_at"] = now
    return changes
