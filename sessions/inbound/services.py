"""What Hubject pushes (or the CDR pull brings): charging notifications and charge detail records.

Each accepted message is kept raw and parsed as an InboundMessage linked to its session and
written to the audit trail (NOTIFICATION_RECEIVED / CDR_RECEIVED) in the transaction that applies
it. The session row is locked while a message is applied; two messages creating the same unknown
session at once meet at the unique SessionID, and the loser applies its message to the winner's
row. Messages are validated before they get here (`sessions.oicp.inbound`).

Status only moves forward (ACTIVE → CHARGING_ENDED → CLOSED): a notification arriving after the
CDR is kept and audited but does not reopen the session or overwrite the CDR's energy.

A message never changes a session it does not match (DIGEST §9): one whose EvseID is not the
session's, or a second CDR that disagrees with the first, is kept, linked to the session for its
timeline and flagged, but held back: the session and its stops stay as they were. Every anomaly
the reader found (`sessions.oicp.anomalies`) is stored on the InboundMessage and in its audit record.

Sessions are found by `session_key` (the SessionID in lower case), so a CPO that upper-cases the
SessionID still reaches the session; the SessionID itself is kept as first received.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from ..models import AuditRecord, ChargeDetailRecord, ChargingSession, InboundMessage, InboundRefusalCount
from ..oicp import ids
from ..oicp.anomalies import HELD_BACK, Anomaly
from ..oicp.inbound import ERROR_ADDITIONAL_INFO_MAX
from ..oicp.inbound import ChargeDetailRecord as ParsedCdr
from ..oicp.inbound import ChargingNotification
from ..audit.records import AuditEntry, record_audits
from ..charging.services import insert_charging_session, session_created_entry
from ..stops.services import confirmation_entries

logger = logging.getLogger(__name__)
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
    # Kept and flagged, but not applied: it does not match its session (or contradicts its CDR).
    held_back: bool = False

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
    and, when the End is news (the session was still charging), the stops sent before it are
    confirmed (confirmed_by END); a stop sent after the End waits for the CDR. Error: last_error_*.
    Any Type but Start for an unknown session creates it marked learned_late. A notification for
    another EVSE than the session's is kept and flagged, and changes nothing.
    """
    # A queued message counts from when it arrived (the session's last update, time to confirmation).
    now = message.received_at if message is not None else timezone.now()
    parsed = notification.to_json()
    anomalies = list(notification.anomalies)
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
            **_identification(notification),
        )
        status_before = new_status if created else charging_session.status
        mismatch = None if created else _evse_mismatch(charging_session, notification.evse_id, "notification")
        differs = _identification_differs(charging_session, notification) if mismatch is None else []
        if mismatch is not None:
            anomalies.append(mismatch)
        elif not created:
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
            anomalies=anomalies,
        )
        audit = [session_created_entry(charging_session, source=f"NOTIFICATION_{notification.kind}")] if created else []
        confirmations = []
        # End confirms only when it is news: a session created just now has no stops, and a stop
        # sent after an earlier End can only be confirmed by the CDR.
        if notification.type == "End" and not created and mismatch is None and status_before == Status.ACTIVE:
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
            **_anomaly_data(anomalies, held_back=mismatch is not None),
            **_differs_data(differs),
        }
        audit.append(AuditEntry(Event.NOTIFICATION_RECEIVED, charging_session=charging_session, data=data))
        record_audits(audit)
    _log_anomalies(message, anomalies)
    return RecordOutcome(
        charging_session=charging_session,
        inbound_message=message,
        session_created=created,
        stops_confirmed=confirmed,
        held_back=mismatch is not None,
    )


def _same_evse(first: str, second: str) -> bool:
    """DE*ABC*E123 and DEABCE123 are one EVSE (the separators are optional in the ID format)."""
    return first.replace("*", "").upper() == second.replace("*", "").upper()


def _evse_mismatch(charging_session: ChargingSession, evse_id: str, what: str) -> Anomaly | None:
    if _same_evse(charging_session.evse_id, evse_id):
        return None
    return Anomaly("evse_mismatch", "EvseID",
                   f"The {what} is for EVSE {evse_id}, but the session runs at {charging_session.evse_id}: "
                   "kept, not applied to the session and not taken as a stop's confirmation")


def _anomaly_data(anomalies: list[Anomaly], *, held_back: bool) -> dict[str, Any]:
    """What the audit record says about the message's anomalies (nothing when there were none)."""
    data: dict[str, Any] = {}
    if anomalies:
        data["anomalies"] = [anomaly.to_json() for anomaly in anomalies]
    if held_back:
        data["held_back"] = True
    return data


def _log_anomalies(message: InboundMessage, anomalies: list[Anomaly]) -> None:
    for anomaly in anomalies:
        logger.warning("inbound message %s (%s for %s): %s", message.pk, message.kind, message.session_id,
                       anomaly.text)


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


def record_cdr(
    *, cdr: ParsedCdr, raw: str, source: str, remote_addr: str | None = None, message: InboundMessage | None = None
) -> RecordOutcome:
    """Store a charge detail record and close its session (creating it, learned_late, if unknown).

    One CDR per session, as at Hubject: a repeated one (a re-push, or the pull bringing one that
    was pushed) is kept as a raw InboundMessage whose parsed data says `"duplicate": true`, and its
    CDR_RECEIVED audit record says so too; no second ChargeDetailRecord is stored and the session
    is not changed. A repeat whose values differ from the first is also flagged and held back. A
    CDR for another EVSE than the session's is kept and flagged, and changes nothing: the real CDR
    can still arrive. `source` is "PUSH" or "PULL".
    """
    if source not in ChargeDetailRecord.Source.values:
        raise ValueError(f"source must be one of {ChargeDetailRecord.Source.values}, not {source!r}")
    # A queued message counts from when it arrived (the session's last update, time to confirmation).
    now = message.received_at if message is not None else timezone.now()
    parsed = cdr.to_json()
    anomalies = list(cdr.anomalies)
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
            **_identification(cdr),
        )
        status_before = Status.CLOSED if created else charging_session.status
        mismatch = None if created else _evse_mismatch(charging_session, cdr.evse_id, "CDR")
        stored = None
        if mismatch is not None:
            anomalies.append(mismatch)
        else:
            try:
                # The session's one CDR decides: no look first, a repeat is the rare case.
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
                stored = ChargeDetailRecord.objects.only("pk", "data").get(charging_session=charging_session)
        duplicate = stored is not None
        differences = _cdr_differences(stored.data, parsed) if duplicate else []
        if differences:
            anomalies.append(Anomaly(
                "cdr_conflict", "",
                f"A second CDR for this session differs from the one received first (#{stored.pk}): "
                f"{'; '.join(differences)}. The first one stays; this one is kept apart.",
            ))
        held_back = mismatch is not None or bool(differences)

        audit = [session_created_entry(charging_session, source=f"CDR_{source}")] if created else []
        confirmations = []
        differs = _identification_differs(charging_session, cdr) if not held_back else []
        if not duplicate and not created and mismatch is None:
            # A session created just now has its CDR's facts and no stops.
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
        audit.append(AuditEntry(Event.CDR_RECEIVED, charging_session=charging_session, data=data))
        record_audits(audit)
    _log_anomalies(message, anomalies)
    return RecordOutcome(
        charging_session=charging_session,
        inbound_message=message,
        session_created=created,
        duplicate=duplicate,
        stops_confirmed=confirmed,
        held_back=held_back,
    )


# What makes two CDRs of one session different records, not a harmless repeat.
_CDR_FACTS = ("EvseID", "ChargingStart", "ChargingEnd", "SessionStart", "SessionEnd", "ConsumedEnergy",
              "MeterValueStart", "MeterValueEnd")


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


# --- helpers ---------------------------------------------------------------------------------


def _provider_id(hub_provider_id: str | None) -> str:
    """Sessions learned from inbound messages belong to us: settings.OICP_PROVIDER_ID."""
    for candidate in (settings.OICP_PROVIDER_ID, hub_provider_id or ""):
        if ids.is_provider_id(candidate):
            return candidate
    raise ImproperlyConfigured("OICP_PROVIDER_ID must be set to record sessions pushed by Hubject")


def _locked_session(session_id: str) -> ChargingSession | None:
    # By the lower-case key: Hubject's SessionIDs are GUIDs, whatever case a CPO writes them in.
    # order_by(): the key is unique, and compiling the model's default ordering costs more than the query.
    query = ChargingSession.objects.select_for_update().filter(session_key=ids.session_key(session_id)).order_by()
    return next(iter(query), None)


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
    """What the session does not know yet (start time, partner session IDs, the driver's contract
    ID, card UID and printed card number); never overwrites: the first value stays, and a
    different later one goes to the message's audit record (`_identification_differs`)."""
    changes: dict[str, Any] = {}
    started_at = message.session_start or message.charging_start
    if charging_session.started_at is None and started_at is not None:
        changes["started_at"] = started_at
    for attr in ("emp_partner_session_id", "cpo_partner_session_id"):
        value = getattr(message, attr)
        if value and not getattr(charging_session, attr):
            changes[attr] = value
    for attr, value in _identification(message).items():
        if not getattr(charging_session, attr):
            changes[attr] = value
    return changes


def _identification(message) -> dict[str, str]:
    """The contract ID (EvcoID), card UID and printed number the message's Identification carries
    (the first usable one of each, `ids.identification_values`)."""
    values = ids.identification_values(message.identification)
    return {attr: found[0] for attr, found in values.items() if found}


def _identification_differs(charging_session: ChargingSession, message) -> list[dict[str, str]]:
    """Each identification value of the message that is not the session's (compared by search key,
    so "DE-EMP-C12345678-X" and "DEEMPC12345678X" are one contract): the session keeps its first
    value, never overwritten silently; the audit record says what came."""
    differs = []
    for attr, found in ids.identification_values(message.identification).items():
        kept = getattr(charging_session, attr) or (found[0] if found else "")
        differs += [{"field": attr, "kept": kept, "received": value} for value in found
                    if ids.id_search_key(value) != ids.id_search_key(kept)]
    return differs


def _differs_data(differs: list[dict[str, str]]) -> dict[str, Any]:
    return {"identification_differs": differs} if differs else {}


def _store_message(
    message: InboundMessage | None, *, kind: str, charging_session: ChargingSession, operator_id: str, received_at,
    remote_addr, raw: str, parsed, anomalies: list[Anomaly]
) -> InboundMessage:
    """Keep the message, applied (or held back): a new row, or the queued row the worker is applying."""
    flags = {
        "anomalies": [anomaly.to_json() for anomaly in anomalies],
        "flagged": bool(anomalies),
        "held_back": any(anomaly.code in HELD_BACK for anomaly in anomalies),
    }
    if message is not None:
        message.charging_session = charging_session
        message.parsed = parsed
        message.applied_at = timezone.now()
        for name, value in flags.items():
            setattr(message, name, value)
        message.save(update_fields=["charging_session", "parsed", "applied_at", *flags])
        return message
    return InboundMessage.objects.create(
        kind=kind,
        charging_session=charging_session,
        session_id=ids.session_key(charging_session.session_id),
        operator_id=operator_id,
        received_at=received_at,
        remote_addr=_ip_or_none(remote_addr),
        raw=raw,
        parsed=parsed,
        applied_at=received_at,
        **flags,
    )


def _ip_or_none(value) -> str | None:
    try:
        return str(ipaddress.ip_address(value)) if value else None
    except ValueError:
        return None


def count_inbound_refusal(*, client_address: str | None, path: str, reason: str, now=None) -> bool:
    """Count a call the inbound endpoints refused; True for the caller's first such call (for this
    reason) in this minute.

    Anyone can call those endpoints, so a refusal is counted (one UPDATE, no audit-chain lock),
    never audited one by one: `report_inbound_refusals` writes one INBOUND_REFUSED record per
    caller and minute, with the counts, once the minute is over. Never the body.
    """
    address, reason = (client_address or "unknown")[:64], reason[:200]
    minute = (now or timezone.now()).replace(second=0, microsecond=0)
    counted = InboundRefusalCount.objects.filter(client_address=address, minute=minute, reason=reason)
    if counted.update(count=F("count") + 1):
        return False
    try:
        with transaction.atomic():
            InboundRefusalCount.objects.create(client_address=address, minute=minute, reason=reason, count=1,
                                               first_path=path[:200])
        return True
    except IntegrityError:  # another process counted this caller's first call of the minute
        counted.update(count=F("count") + 1)
        return False


def report_inbound_refusals(*, now=None, batch: int = 500) -> int:
    """Audit the refused calls of every minute that is over: one record per caller and minute,
    carrying the counts by reason (beat, every minute). Returns how many records were written."""
    current_minute = (now or timezone.now()).replace(second=0, microsecond=0)
    written = 0
    while True:
        with transaction.atomic():
            rows = list(InboundRefusalCount.objects.select_for_update(skip_locked=True)
                        .filter(audit_record_id__isnull=True, minute__lt=current_minute)
                        .order_by("minute", "client_address", "pk")[:batch])
            if not rows:
                return written
            callers: dict[tuple, list[InboundRefusalCount]] = {}
            for row in rows:
                callers.setdefault((row.client_address, row.minute), []).append(row)
            entries = [AuditEntry(Event.INBOUND_REFUSED, data={
                "client_address": address,
                "minute": minute.isoformat(),
                "refused_calls": sum(row.count for row in group),
                "reasons": {row.reason: row.count for row in group},
                "first_path": group[0].first_path,
            }) for (address, minute), group in callers.items()]
            records = record_audits(entries)
            for group, record in zip(callers.values(), records):
                for row in group:
                    row.audit_record_id = record.pk
            InboundRefusalCount.objects.bulk_update(rows, ["audit_record_id"])
        for entry in entries:
            logger.warning("%s inbound OICP call(s) refused from %s in the minute of %s: %s",
                           entry.data["refused_calls"], entry.data["client_address"], entry.data["minute"],
                           entry.data["reasons"])
        written += len(entries)
