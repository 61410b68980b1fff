"""Reads for the stop history, a stop request's timeline and the audit-log export.

Kept beside `selectors.py` (the agent's screens). Every list is a constant number of queries:
related rows come with select_related, counts are one COUNT, ordering always ends with the
primary key so pages are stable and the indexes on requested_at / id can serve them.
"""

from __future__ import annotations

import uuid
from dataclasses import InitVar, asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from .models import (
    AuditExport,
    AuditRecord,
    AuditVerification,
    ChargeDetailRecord,
    ChargingSession,
    InboundMessage,
    RemoteStopRequest,
    StopReason,
)
from .selectors import distinct_values, session_lookups


def _start_of_day(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def _date_range_q(field_name: str, date_from: date | None, date_to: date | None) -> Q:
    """Both days inclusive, in the portal's time zone (the forms keep the days plausible; the last
    day there is means no upper bound rather than an overflow)."""
    q = Q()
    if date_from:
        q &= Q(**{f"{field_name}__gte": _start_of_day(date_from)})
    if date_to and date_to < date.max:
        q &= Q(**{f"{field_name}__lt": _start_of_day(date_to + timedelta(days=1))})
    return q


# --- periods: named spans of days, in the portal's time zone ---------------------------------------

PERIODS = {"today": "today", "last7": "last 7 days", "last_month": "last month"}


def period_days(period: str, today: date | None = None) -> tuple[date, date]:
    """The first and last day (both included) of a named period: today; the last 7 days, today
    included; last month, the previous calendar month."""
    today = today or timezone.localdate(timezone.now(), timezone.get_default_timezone())
    if period == "today":
        return today, today
    if period == "last7":
        return today - timedelta(days=6), today
    if period == "last_month":
        last = today.replace(day=1) - timedelta(days=1)
        return last.replace(day=1), last
    raise ValueError(f"Unknown period {period!r}")


def _search_q(query: str) -> Q:
    """The sessions the query names as the driver speaks (`selectors.session_lookups`: EvseID in any
    spelling or its start, SessionID or its start, partner session ID, contract ID, card UID or
    printed number); index-friendly lookups only.

    The sessions are found first, through their own indexes, and the rows by their session's id
    (an OR over the joined session's columns made both databases scan every row). The case
    reference is the callers' own lookup (on the stop request).
    """
    lookups = [lookup for kind, lookup in session_lookups(query).items() if kind != "case_reference"]
    if not lookups:
        return Q(pk__in=[])
    return Q(charging_session_id__in=lookups[0].union(*lookups[1:]))


# --- stop history ------------------------------------------------------------------------------

# What the history may be sorted by: URL value -> ORM ordering (the pk always breaks ties).
HISTORY_SORTS: dict[str, tuple] = {
    "requested": ("requested_at", "pk"),
    "-requested": ("-requested_at", "-pk"),
    "agent": ("requested_by__username", "-requested_at", "-pk"),
    "-agent": ("-requested_by__username", "-requested_at", "-pk"),
    "operator": ("charging_session__operator_id", "-requested_at", "-pk"),
    "-operator": ("-charging_session__operator_id", "-requested_at", "-pk"),
    "state": ("state", "-requested_at", "-pk"),
    "-state": ("-state", "-requested_at", "-pk"),
    "code": ("oicp_code", "-requested_at", "-pk"),
    "-code": ("-oicp_code", "-requested_at", "-pk"),
    "attempts": ("attempt_count", "-requested_at", "-pk"),
    "-attempts": ("-attempt_count", "-requested_at", "-pk"),
    # Stops that were never confirmed come last either way (the same on SQLite and PostgreSQL).
    "confirmation": (F("time_to_confirmation").asc(nulls_last=True), "-requested_at", "-pk"),
    "-confirmation": (F("time_to_confirmation").desc(nulls_last=True), "-requested_at", "-pk"),
}
DEFAULT_HISTORY_SORT = "-requested"


@dataclass(frozen=True)
class StopHistoryFilters:
    date_from: date | None = None
    date_to: date | None = None
    agent_id: int | None = None
    operator_id: str = ""
    state: str = ""
    oicp_code: str = ""
    reason: str = ""
    q: str = ""
    sort: str = DEFAULT_HISTORY_SORT
    # Exactly these stop requests (the admin's bulk stop links to them); None: no such filter, (): none.
    ids: tuple[int, ...] | None = None


def stop_history(*, filters: StopHistoryFilters, only_requested_by=None) -> QuerySet[RemoteStopRequest]:
    """Stop requests matching the filters; only one agent's own when `only_requested_by` is given."""
    stops = RemoteStopRequest.objects.select_related("charging_session", "requested_by")
    if only_requested_by is not None:
        stops = stops.filter(requested_by=only_requested_by)
    stops = stops.filter(_date_range_q("requested_at", filters.date_from, filters.date_to))
    if filters.agent_id:
        stops = stops.filter(requested_by_id=filters.agent_id)
    if filters.operator_id:
        # The operator's sessions first (their index), then their stops (stop_state_session_idx).
        operator_sessions = ChargingSession.objects.filter(operator_id=filters.operator_id.strip().upper())
        stops = stops.filter(charging_session_id__in=operator_sessions.order_by().values("pk"))
    if filters.state:
        stops = stops.filter(state=filters.state)
    if filters.oicp_code:
        stops = stops.filter(oicp_code=filters.oicp_code)
    if filters.reason:
        stops = stops.filter(reason=filters.reason)
    if filters.ids is not None:
        stops = stops.filter(pk__in=filters.ids)
    if filters.q.strip():
        # UNION of two indexed lookups: with an OR, PostgreSQL scanned every stop request.
        query = filters.q.strip()
        matching = (
            RemoteStopRequest.objects.filter(_search_q(query))
            .order_by()
            .values("pk")
            .union(RemoteStopRequest.objects.filter(case_reference=query).order_by().values("pk"))
        )
        stops = stops.filter(pk__in=matching)
    return stops.order_by(*HISTORY_SORTS.get(filters.sort, HISTORY_SORTS[DEFAULT_HISTORY_SORT]))


def portal_users() -> list[tuple[int, str]]:
    """(id, username) of every user, for the agent and actor filters (the user table is small)."""
    return list(get_user_model().objects.order_by("username").values_list("pk", "username"))


def stop_oicp_codes() -> list[str]:
    return distinct_values(RemoteStopRequest, "oicp_code", skip_empty=True)


# --- one stop request's timeline ---------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str  # "audit", "inbound", "cdr"
    item: Any


@dataclass(frozen=True)
class StopTimeline:
    stop_request: RemoteStopRequest
    entries: list[TimelineEntry]
    audit_count: int
    inbound_count: int
    cdr: ChargeDetailRecord | None


def get_history_stop_request(*, pk: int, only_requested_by=None) -> RemoteStopRequest | None:
    stops = RemoteStopRequest.objects.select_related("charging_session", "requested_by")
    if only_requested_by is not None:
        stops = stops.filter(requested_by=only_requested_by)
    return stops.filter(pk=pk).first()


def stop_timeline(*, stop_request: RemoteStopRequest, limit: int = 500) -> StopTimeline:
    """Every audit record of the request and the session's inbound messages and CDR, oldest first."""
    records = list(
        AuditRecord.objects.filter(stop_request=stop_request)
        .select_related("actor")
        .order_by("occurred_at", "pk")[:limit]
    )
    inbound = list(
        InboundMessage.objects.filter(charging_session_id=stop_request.charging_session_id).order_by(
            "received_at", "pk"
        )[:limit]
    )
    cdr = ChargeDetailRecord.objects.filter(charging_session_id=stop_request.charging_session_id).first()
    entries = [TimelineEntry(r.occurred_at, "audit", r) for r in records]
    entries += [
        TimelineEntry(m.received_at, "inbound", m) for m in inbound if m.kind != InboundMessage.Kind.CDR or cdr is None
    ]
    if cdr is not None:
        entries.append(TimelineEntry(cdr.received_at, "cdr", cdr))
    entries.sort(key=lambda entry: entry.at)
    return StopTimeline(stop_request, entries, len(records), len(inbound), cdr)


# --- the audit log, as exported --------------------------------------------------------------


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
    records = AuditRecord.objects.filter(_date_range_q("occurred_at", filters.date_from, filters.date_to))
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
            records = records.filter(_search_q(query) | Q(stop_request__case_reference=query))
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


__all__ = [
    "AuditLogFilters",
    "StopHistoryFilters",
    "StopReason",
    "audit_log",
    "stop_history",
    "stop_timeline",
]
