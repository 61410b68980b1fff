"""Reads of the audit trail: the audit log as exported (its filters and records), the exports, the
chain's verifications and its newest record."""

from __future__ import annotations

import uuid
from dataclasses import InitVar, asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from ..charging.selectors import named_sessions_q
from ..models import AuditExport, AuditRecord, AuditVerification, LegalHold
from ..periods import PERIODS, date_range_q


@dataclass(frozen=True)
class AuditLogFilters:
    """What an audit-log export selects; stored with the export (JSON) so a job can re-run it."""

    date_from: date | None = None
    date_to: date | None = None
    event_types: tuple[str, ...] = ()  # none: every event type
    actor: str = ""  # a username, or "system" for records without an actor
    operator_id: str = ""
    q: str = ""  # correlation id, SessionID, EvseID (or its prefix) or case reference
    period: str = ""  # the named period the dates come from (PERIODS), for the summary
    # Records appended after the export was prepared are not part of it.
    max_id: int | None = field(default=None, compare=False)
    # One event type, as exports stored it before several could be chosen (and export_audit passes it).
    event_type: InitVar[str] = ""

    def __post_init__(self, event_type: str) -> None:
        types = tuple(self.event_types or ())
        if event_type and event_type not in types:
            types += (event_type,)
        object.__setattr__(self, "event_types", types)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("date_from", "date_to"):
            data[key] = data[key].isoformat() if data[key] else None
        data["event_types"] = list(self.event_types)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuditLogFilters:
        data = dict(data)
        for key in ("date_from", "date_to"):
            data[key] = date.fromisoformat(data[key]) if data.get(key) else None
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def summary(self) -> str:
        """The selection in words, as the export page, the file header and the audit record say it."""
        parts = []
        if self.period in PERIODS:
            parts.append(PERIODS[self.period])
        if self.date_from and self.date_to:
            parts.append(f"from {self.date_from:%Y-%m-%d} to {self.date_to:%Y-%m-%d}")
        elif self.date_from:
            parts.append(f"from {self.date_from:%Y-%m-%d}")
        elif self.date_to:
            parts.append(f"up to {self.date_to:%Y-%m-%d}")
        else:
            parts.append("all dates")
        if self.event_types:
            labels = [
                f"{AuditRecord.EventType(event).label if event in AuditRecord.EventType.values else event} ({event})"
                for event in self.event_types
            ]
            parts.append(("event " if len(labels) == 1 else "events ") + ", ".join(labels))
        if self.actor:
            parts.append(f"actor {self.actor}")
        if self.operator_id:
            parts.append(f"OperatorID {self.operator_id.upper()}")
        if self.q:
            parts.append(f"matching “{self.q}”")
        if self.max_id is not None:
            parts.append(f"records up to id {self.max_id}")
        zone = timezone.get_default_timezone_name()
        return f"Audit records, {', '.join(parts)} (days in {zone})"


def audit_log(*, filters: AuditLogFilters) -> QuerySet[AuditRecord]:
    """Audit records matching the filters, in chain (id) order."""
    records = AuditRecord.objects.filter(date_range_q("occurred_at", filters.date_from, filters.date_to))
    if len(filters.event_types) == 1:
        records = records.filter(event_type=filters.event_types[0])
    elif filters.event_types:
        records = records.filter(event_type__in=filters.event_types)
    if filters.actor:
        if filters.actor == "system":
            records = records.filter(actor__isnull=True)
        else:
            records = records.filter(actor__username=filters.actor)
    if filters.operator_id:
        records = records.filter(charging_session__operator_id=filters.operator_id.strip().upper())
    query = filters.q.strip()
    if query:
        try:
            as_uuid = uuid.UUID(query)
        except ValueError:
            as_uuid = None
        if as_uuid is not None:  # a correlation id or a Hubject SessionID (both are UUIDs)
            records = records.filter(Q(correlation_id=as_uuid) | Q(charging_session__session_key=str(as_uuid)))
        else:
            records = records.filter(named_sessions_q(query) | Q(stop_request__case_reference=query))
    if filters.max_id is not None:
        records = records.filter(id__lte=filters.max_id)
    return records.order_by("id")


def newest_audit_record_id() -> int | None:
    return AuditRecord.objects.order_by("-id").values_list("id", flat=True).first()


def recent_exports(*, limit: int = 20) -> list[AuditExport]:
    return list(AuditExport.objects.select_related("requested_by").order_by("-requested_at", "-pk")[:limit])


def get_export(*, pk: int) -> AuditExport | None:
    return AuditExport.objects.select_related("requested_by").filter(pk=pk).first()


def latest_verification() -> AuditVerification | None:
    """The newest completed walk of the chain (daily or asked for)."""
    return AuditVerification.objects.filter(state=AuditVerification.State.DONE).order_by("-finished_at", "-pk").first()


def latest_requested_verification() -> AuditVerification | None:
    """The newest "verify now" request, whatever its state."""
    return (
        AuditVerification.objects.filter(requested_at__isnull=False)
        .select_related("requested_by")
        .order_by("-requested_at", "-pk")
        .first()
    )


def export_runs_in_background(export: AuditExport) -> bool:
    """Larger exports than AUDIT_EXPORT_SYNC_MAX_ROWS are written by a worker, not streamed."""
    return (export.row_count or 0) > settings.AUDIT_EXPORT_SYNC_MAX_ROWS


def export_path(export: AuditExport) -> Path | None:
    """The file of a finished export, when it is still there."""
    if export.state != AuditExport.State.DONE or not export.file_name:
        return None
    path = Path(settings.AUDIT_EXPORT_DIR) / Path(export.file_name).name
    return path if path.is_file() else None


def active_legal_hold() -> LegalHold | None:
    return LegalHold.objects.filter(released_at__isnull=True).select_related("set_by").order_by("set_at").first()
