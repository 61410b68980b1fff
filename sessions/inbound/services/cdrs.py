"""Charge detail records: one per session; the first closes it and confirms stops, a repeat is kept and flagged."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError
from django.utils import timezone

from ...audit.records import AuditEntry
from ...charging.services import session_created_entry
from ...models import AuditRecord, ChargeDetailRecord, ChargingSession, InboundMessage
from ...oicp.anomalies import Anomaly
from ...oicp.inbound import ChargeDetailRecord as ParsedCdr
from .keeping import RecordOutcome, _anomaly_data, _recorded, _store_message, _write_audit
from .matching import _differs_data, _evse_mismatch, _fill_in, _identification, _identification_differs
from .session_row import _confirm_stops, _lock_or_create_session, _save_session
from .steps import current_batch, message_step

Event = AuditRecord.EventType
Status = ChargingSession.Status


def record_cdr(
    *,
    cdr: ParsedCdr,
    raw: str,
    source: str,
    remote_addr: str | None = None,
    message: InboundMessage | None = None,
    audit_to: list[AuditEntry] | None = None,
) -> RecordOutcome:
    """Store a charge detail record and close its session (creating it, learned_late, if unknown).

    One CDR per session, as at Hubject: a repeated one (a re-push, or the pull bringing one that
    was pushed) is kept as a raw InboundMessage whose parsed data says `"duplicate": true`, and its
    CDR_RECEIVED audit record says so too; no second ChargeDetailRecord is stored and the session
    is not changed. A repeat whose values differ from the first is also flagged and held back. A
    CDR for another EVSE than the session's is kept and flagged, and changes nothing: the real CDR
    can still arrive. `source` is "PUSH" or "PULL".

    All of it in one atomic block (inside the caller's transaction, a savepoint: a failure leaves
    the caller's transaction usable). `audit_to`: the caller writes the audit entries (see keeping).
    """
    if source not in ChargeDetailRecord.Source.values:
        raise ValueError(f"source must be one of {ChargeDetailRecord.Source.values}, not {source!r}")
    # A queued message counts from when it arrived (the session's last update, time to confirmation).
    now = message.received_at if message is not None else timezone.now()
    parsed = cdr.to_json()
    anomalies = list(cdr.anomalies)
    with message_step():
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
            **_identification(cdr),
        )
        status_before = Status.CLOSED if created else charging_session.status
        mismatch = None if created else _evse_mismatch(charging_session, cdr.evse_id, "CDR")
        stored = None
        if mismatch is not None:
            anomalies.append(mismatch)
        else:
            record = ChargeDetailRecord(
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
            stored = _store_cdr(record)
        duplicate = stored is not None
        differences = _cdr_differences(stored.data, parsed) if duplicate else []
        if differences:
            anomalies.append(
                Anomaly(
                    "cdr_conflict",
                    "",
                    f"A second CDR for this session differs from the one received first (#{stored.pk}): "
                    f"{'; '.join(differences)}. The first one stays; this one is kept apart.",
                )
            )
        held_back = mismatch is not None or bool(differences)

        audit = [session_created_entry(charging_session, source=f"CDR_{source}")] if created else []
        confirmations = []
        differs = _identification_differs(charging_session, cdr) if not held_back else []
        if not duplicate and not created and mismatch is None:
            # A session created just now has its CDR's facts and no stops.
            changes = _cdr_changes(cdr, charging_ended_at=charging_session.charging_ended_at, now=now)
            changes.update(_fill_in(charging_session, cdr))
            _save_session(charging_session, changes)
            confirmations = _confirm_stops(charging_session, confirmed_by="CDR", at=now)
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
            anomalies=anomalies,
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
            **_anomaly_data(anomalies, held_back=held_back),
            **_differs_data(differs),
        }
        if duplicate:
            # Hubject keeps one CDR per SessionID; say whether the repeat differs from the stored one.
            data["cdr_id"] = stored.pk
            data["differs_from_stored"] = bool(differences)
        _write_audit(audit, AuditEntry(Event.CDR_RECEIVED, charging_session=charging_session, data=data), audit_to)
    return _recorded(
        message,
        anomalies,
        charging_session=charging_session,
        session_created=created,
        duplicate=duplicate,
        stops_confirmed=confirmed,
        held_back=held_back,
    )


def _store_cdr(record: ChargeDetailRecord) -> ChargeDetailRecord | None:
    """INSERT the session's CDR; the one stored before when there is one (a repeat), else None.

    The session's one CDR decides: no look first, a repeat is the rare case. A batch inserts its
    CDRs together and sends a repeat to the careful path (`NotBatchable`).
    """
    batch = current_batch()
    if batch is not None:
        batch.add_cdr(record)
        return None
    try:
        with message_step():
            record.save(force_insert=True)
    except IntegrityError:  # already stored (pushed again, or pulled after the push)
        return ChargeDetailRecord.objects.only("pk", "data").get(charging_session=record.charging_session)
    return None


# What makes two CDRs of one session different records, not a harmless repeat.
_CDR_FACTS = (
    "EvseID",
    "ChargingStart",
    "ChargingEnd",
    "SessionStart",
    "SessionEnd",
    "ConsumedEnergy",
    "MeterValueStart",
    "MeterValueEnd",
)


def _cdr_differences(first: dict[str, Any], second: dict[str, Any]) -> list[str]:
    """The facts two CDRs disagree on, compared as values: the same instant written with another
    offset (a push at +01:00, the pull in UTC) or 10 and 10.000 kWh are the same fact."""
    return [
        f"{name} {first.get(name, 'missing')} then {second.get(name, 'missing')}"
        for name in _CDR_FACTS
        if _fact(first.get(name)) != _fact(second.get(name))
    ]


def _fact(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
        try:
            return Decimal(value)
        except InvalidOperation:
            return value.replace("*", "").upper()  # an EvseID, with or without its separators
    return value


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
