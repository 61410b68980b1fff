"""Reads of the remote stops: a session's open and latest stop, why a stop cannot be requested now,
the failure kind behind a stop's card, the stop history and one stop request's timeline.

Every list is a constant number of queries: related rows come with select_related, counts are one
COUNT, ordering always ends with the primary key so pages are stable and the indexes on
requested_at / id can serve them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from ..charging.selectors import named_sessions_q
from ..index_queries import distinct_values
from ..models import AuditRecord, ChargeDetailRecord, ChargingSession, InboundMessage, RemoteStopRequest
from ..periods import date_range_q
from . import rules as stop_rules
from .rules import StopBlock

State = RemoteStopRequest.State


def open_stop_request(*, charging_session: ChargingSession) -> RemoteStopRequest | None:
    return (
        charging_session.stop_requests.filter(state__in=RemoteStopRequest.OPEN_STATES)
        .select_related("requested_by")
        .first()
    )


def latest_stop_request(*, charging_session: ChargingSession) -> RemoteStopRequest | None:
    return charging_session.stop_requests.select_related("requested_by").order_by("-requested_at", "-pk").first()


def stop_block(
    *,
    charging_session: ChargingSession,
    now: datetime | None = None,
    recent_stops: Iterable[RemoteStopRequest] | None = None,
) -> StopBlock | None:
    """Why a stop cannot be requested now, None when it can: the eligibility rule
    (`stop_rules.stop_block`, a code and its facts, no words) over the stops that could stand in the
    way, read in one query (none once the session is closed: the rule decides before reading them).
    `recent_stops`: those stops when the caller has read them already (`()`: it knows there are none).
    """
    now = now or timezone.now()
    window = timedelta(minutes=settings.STOP_CONFIRMATION_MINUTES)
    # One query for both kinds the rule looks at: an open stop, or one accepted within the confirmation window.
    recent = recent_stops
    if recent is None:
        recent = charging_session.stop_requests.filter(
            Q(state__in=RemoteStopRequest.OPEN_STATES) | Q(state=State.ACCEPTED, finished_at__gte=now - window)
        ).order_by("-requested_at", "-pk")[:5]
    return stop_rules.stop_block(
        charging_session=charging_session, recent_stops=recent, now=now, confirmation_window=window
    )


def get_stop_request(*, pk: int) -> RemoteStopRequest | None:
    return RemoteStopRequest.objects.select_related("charging_session", "requested_by").filter(pk=pk).first()


# --- what the agent's stop card is chosen from (the words: stops.presenters) --------------------------


def last_failure_kind(*, stop_request: RemoteStopRequest) -> str:
    """The failure kind of the request's last unsuccessful attempt (a key of FAILURE_KINDS), "" if none."""
    last = (
        stop_request.audit_records.filter(
            event_type__in=[
                AuditRecord.EventType.STOP_FAILED,
                AuditRecord.EventType.STOP_REJECTED,
                AuditRecord.EventType.STOP_ATTEMPT_FAILED,
            ]
        )
        .order_by("-occurred_at", "-pk")
        .first()
    )
    return ((last.data or {}).get("failure_kind", "") if last else "") or ""


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
    stops = stops.filter(date_range_q("requested_at", filters.date_from, filters.date_to))
    if filters.agent_id:
        stops = stops.filter(requested_by_id=filters.agent_id)
    if filters.operator_id:
        # The operator's sessions first (their index), then their stops (stop_state_session_at_idx).
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
            RemoteStopRequest.objects.filter(named_sessions_q(query))
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
