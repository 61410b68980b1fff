"""One page of a CDR pull: each CDR stored, found already stored, held back or refused (kept, flagged).

The run around it (its window, its record, its audit record) is sessions/inbound/reconciliation.py.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Q
from django.utils import timezone

from ..models import AuditRecord, ChargeDetailRecord, ChargingSession, InboundMessage
from ..oicp import ids, inbound
from .reconciliation_report import (
    _REASON_LISTED_MAX,
    MAX_REFUSED_LISTED,
    REFUSED_PREFIX,
    ReconciliationReport,
    RefusedCdr,
)
from .services import record_cdr

logger = logging.getLogger(__name__)
Event = AuditRecord.EventType

# A guard against an HBS that never says "last": 10,000 pages of 2,000 is 20 million CDRs.


# --- one page ----------------------------------------------------------------------------------


@dataclass
class _Refusal:
    index: int
    record: Any
    raw: str
    error: inbound.InboundError


def _apply_page(records: list[Any], *, page: int, report: ReconciliationReport) -> None:
    parsed: list[tuple[inbound.ChargeDetailRecord, str]] = []
    refusals: list[_Refusal] = []
    for index, record in enumerate(records):
        report.seen += 1
        raw = _json_text(record)
        try:
            _, cdr = inbound.parse_charge_detail_record(raw)
        except inbound.InboundError as exc:
            refusals.append(_Refusal(index, record, raw, exc))
            continue
        except Exception as exc:  # noqa: BLE001 - a reader bug: an error of the run, not a refusal
            report.errors += 1
            report.note(
                f"page {page} item {index} (SessionID {_sent_session_id(record) or '(none)'}): "
                f"could not be read: {type(exc).__name__}: {exc}"
            )
            logger.exception("pulled CDR (page %s item %s) could not be read", page, index)
            continue
        parsed.append((cdr, raw))

    keys = {ids.session_key(cdr.session_id) for cdr, _ in parsed}
    refused_keys = {_refused_key(refusal.record) for refusal in refusals}
    # One query each for the whole page: which CDRs we already have, the sessions' status, and
    # the refused or held-back CDRs earlier runs (or pushes) kept for these SessionIDs.
    stored = set(
        ChargeDetailRecord.objects.filter(charging_session__session_key__in=keys).values_list(
            "charging_session__session_key", flat=True
        )
    )
    sessions = {
        key: (pk, status)
        for pk, key, status in ChargingSession.objects.filter(session_key__in=(keys | refused_keys) - {""}).values_list(
            "pk", "session_key", "status"
        )
    }
    kept_refused: dict[tuple[str, str], int] = {}
    kept_held: set[tuple[str, str]] = set()
    if refusals or parsed:
        spellings = keys | refused_keys | {cdr.session_id for cdr, _ in parsed}
        earlier = (
            InboundMessage.objects.filter(kind=InboundMessage.Kind.CDR, session_id__in=spellings)
            .filter(Q(held_back=True) | Q(apply_error__startswith=REFUSED_PREFIX))
            .order_by("id")
            .values_list("pk", "session_id", "raw", "held_back")
        )
        for pk, session_id, raw, held_back in earlier:
            if held_back:
                kept_held.add((session_id.lower(), raw))
            else:
                kept_refused.setdefault((session_id.lower(), raw), pk)

    for refusal in refusals:
        _refuse(refusal, page=page, report=report, sessions=sessions, kept=kept_refused)

    for cdr, raw in parsed:
        key = ids.session_key(cdr.session_id)
        if key in stored:
            report.duplicates += 1
            continue
        if (key, raw) in kept_held:
            report.already_seen += 1
            continue
        try:
            outcome = record_cdr(cdr=cdr, raw=raw, source=ChargeDetailRecord.Source.PULL)
        except Exception as exc:  # noqa: BLE001 - one CDR that cannot be stored must not lose the others
            report.errors += 1
            report.note(f"SessionID {cdr.session_id}: could not be stored: {type(exc).__name__}: {exc}")
            logger.exception("pulled CDR for %s could not be stored", cdr.session_id)
            continue
        if getattr(outcome, "held_back", False):
            kept_held.add((key, raw))
            report.held_back += 1
            message_id = getattr(outcome.inbound_message, "pk", None)
            reasons = "; ".join(
                a.get("text", "")
                for a in getattr(outcome.inbound_message, "anomalies", None) or []
                if isinstance(a, dict) and a.get("code") in ("evse_mismatch", "cdr_conflict")
            )
            report.note(
                f"SessionID {cdr.session_id}: held back, kept as #{message_id} and not applied to its "
                f"session{': ' + reasons if reasons else ''}"
            )
            if len(report.held_back_cdrs) < MAX_REFUSED_LISTED:
                report.held_back_cdrs.append(
                    {
                        "session_id": cdr.session_id,
                        "inbound_message_id": message_id,
                        "reason": reasons[:_REASON_LISTED_MAX],
                    }
                )
            continue
        stored.add(key)
        if outcome.duplicate:  # pushed while we were pulling
            report.duplicates += 1
            continue
        report.new += 1
        report.stops_confirmed += outcome.stops_confirmed
        if outcome.session_created:
            report.sessions_created += 1
        elif sessions.get(key, (None, None))[1] != ChargingSession.Status.CLOSED:
            report.sessions_closed += 1


def _refuse(
    refusal: _Refusal,
    *,
    page: int,
    report: ReconciliationReport,
    sessions: dict[str, tuple[int, str]],
    kept: dict[tuple[str, str], int],
) -> None:
    """Keep a refused CDR as a flagged message (once), count it and name it."""
    report.refused += 1
    reason = refusal.error.summary
    sent = _sent_session_id(refusal.record)
    key = _refused_key(refusal.record)
    message_id = kept.get((key, refusal.raw))
    already_kept = message_id is not None
    if not already_kept:
        first = refusal.error.problems[0] if refusal.error.problems else ""
        problem_field = first.split(":", 1)[0].strip()[:100] if ":" in first else ""
        try:
            message = InboundMessage.objects.create(
                kind=InboundMessage.Kind.CDR,
                # Linked only to the session whose key is the whole SessionID (not a clipped one).
                charging_session_id=sessions.get(key, (None, None))[0] if key and key == sent.lower() else None,
                session_id=key,
                operator_id=_operator_id(refusal.record),
                received_at=timezone.now(),
                raw=refusal.raw,
                parsed={},
                applied_at=None,
                apply_error=REFUSED_PREFIX + reason,
                anomalies=[{"code": "refused", "field": problem_field, "text": reason}],
                flagged=True,
            )
        except Exception as exc:  # noqa: BLE001 - counted and named all the same
            report.errors += 1
            report.note(f"SessionID {sent or '(none)'}: refused, and could not be kept: {type(exc).__name__}: {exc}")
            logger.exception("refused CDR of SessionID %s could not be kept", sent)
        else:
            message_id = kept[(key, refusal.raw)] = message.pk
    item = RefusedCdr(
        session_id=sent,
        reason=reason,
        page=page,
        item=refusal.index,
        inbound_message_id=message_id,
        already_kept=already_kept,
    )
    if len(report.refused_cdrs) < MAX_REFUSED_LISTED:
        report.refused_cdrs.append(item)
    logger.warning("CDR pull refused a CDR: %s", item.describe())


def _sent_session_id(record: Any) -> str:
    """The SessionID as Hubject sent it, for people ("" when there is none)."""
    value = record.get("SessionID") if isinstance(record, dict) else None
    if value is None:
        return ""
    return value[:100] if isinstance(value, str) else _json_text(value)[:100]


def _refused_key(record: Any) -> str:
    value = record.get("SessionID") if isinstance(record, dict) else None
    return ids.session_key(value)[:36] if isinstance(value, str) else ""


def _operator_id(record: Any) -> str:
    evse_id = record.get("EvseID") if isinstance(record, dict) else None
    if not isinstance(evse_id, str):
        return ""
    try:
        return ids.operator_id_from_evse_id(evse_id)[:10]
    except ValueError:
        return ""


def _json_text(value: Any) -> str:
    """JSON text of a pulled CDR with its numbers exactly as HBS sent them (Decimals, never floats)."""
    if isinstance(value, dict):
        return (
            "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{_json_text(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(_json_text(item) for item in value) + "]"
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else json.dumps(str(value))
    return json.dumps(value, ensure_ascii=False)
