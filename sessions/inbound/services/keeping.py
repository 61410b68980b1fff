"""Keeping an inbound message: its InboundMessage row with the anomalies found, and what recording it did."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from ...audit.records import AuditEntry, record_audits
from ...models import ChargingSession, InboundMessage
from ...oicp import ids
from ...oicp.anomalies import HELD_BACK, Anomaly
from .steps import current_batch

logger = logging.getLogger(__name__)

# The columns an applied message row gets (`_store_message`).
APPLIED_MESSAGE_FIELDS = ("charging_session", "parsed", "applied_at", "anomalies", "flagged", "held_back")


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
        logger.warning("inbound message %s (%s for %s): %s", message.pk, message.kind, message.session_id, anomaly.text)


def _write_audit(entries: list[AuditEntry], received: AuditEntry, audit_to: list[AuditEntry] | None) -> None:
    """Last in the transaction: the message's audit records (`received` last) written now, or handed to
    the applier of a group of messages (`audit_to`), which writes the whole group's at once."""
    entries.append(received)
    if audit_to is None:
        record_audits(entries)
    else:
        audit_to.extend(entries)


def _recorded(message: InboundMessage, anomalies: list[Anomaly], **outcome) -> RecordOutcome:
    """After the transaction: log the message's anomalies and say what recording it did."""
    _log_anomalies(message, anomalies)
    return RecordOutcome(inbound_message=message, **outcome)


def _store_message(
    message: InboundMessage | None,
    *,
    kind: str,
    charging_session: ChargingSession,
    operator_id: str,
    received_at,
    remote_addr,
    raw: str,
    parsed,
    anomalies: list[Anomaly],
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
        batch = current_batch()
        if batch is not None:
            batch.message_applied(message)  # its row is written with the batch's
        else:
            message.save(update_fields=APPLIED_MESSAGE_FIELDS)
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
