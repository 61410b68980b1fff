"""Reads of the charging sessions: the search and its lookups, a session and its page's timeline,
the stuck-sessions queue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import connection
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery, Window
from django.utils import timezone

from ..directory.selectors import with_cpo_contact
from ..index_queries import distinct_values, prefix_q
from ..models import AuditRecord, ChargingSession, RemoteStopRequest
from ..models.charging import OPEN_SESSION_Q
from ..models.stops import STUCK_STOP_Q
from ..oicp import ids

State = RemoteStopRequest.State


def _latest_stop() -> QuerySet[RemoteStopRequest]:
    """The session's newest stop request, for correlated subqueries (OuterRef("pk") is the session)."""
    return RemoteStopRequest.objects.filter(charging_session=OuterRef("pk")).order_by("-requested_at", "-pk")


def with_last_stop(sessions: QuerySet[ChargingSession]) -> QuerySet[ChargingSession]:
    """Each session with its last stop's state, outcome_unknown flag and OICP code, in the same query."""
    latest = _latest_stop()
    return sessions.annotate(
        last_stop_state=Subquery(latest.values("state")[:1]),
        last_stop_outcome_unknown=Subquery(latest.values("outcome_unknown")[:1]),
        last_stop_code=Subquery(latest.values("oicp_code")[:1]),
    )


# The sessions list's sortable columns (the `sort` parameter: the key, "-" in front for descending).
SESSION_SORTS = {
    "evse": "evse_id",
    "cpo": "operator_id",
    "started": "started_at",
    "energy": "energy_kwh",
    "updated": "last_update_at",
    "state": "status",
}
DEFAULT_SESSION_SORT = "-updated"
_NULLABLE = {"started_at", "energy_kwh"}


def session_ordering(sort: str) -> list:
    """The ORDER BY for a whitelisted sort key; anything else gives the default (newest update first)."""
    if sort.lstrip("-") not in SESSION_SORTS:
        sort = DEFAULT_SESSION_SORT
    descending = sort.startswith("-")
    field_name = SESSION_SORTS[sort.lstrip("-")]
    if field_name in _NULLABLE:  # unknown values last, whichever way
        first = F(field_name).desc(nulls_last=True) if descending else F(field_name).asc(nulls_last=True)
    else:
        first = f"-{field_name}" if descending else field_name
    return [first, "-pk" if descending else "pk"]


def search_charging_sessions(
    *,
    query: str = "",
    operator_id: str = "",
    status: str = "",
    stale_hours: int | None = None,
    sort: str = DEFAULT_SESSION_SORT,
) -> QuerySet[ChargingSession]:
    """Sessions matching the agent's search, newest update first (or by `sort`), with their last stop's
    state (`with_last_stop`).

    The query is whatever the driver said (`session_lookups`); the sessions any lookup finds match.
    """
    sessions = with_last_stop(ChargingSession.objects.all())
    lookups = list(session_lookups(query).values())
    if lookups:
        # One indexed lookup per kind of ID, joined by UNION (bench/RESULTS.md: an OR across these
        # columns and the stop requests' join, with DISTINCT, scanned every session on each search).
        sessions = sessions.filter(pk__in=lookups[0].union(*lookups[1:]))
    if operator_id:
        sessions = sessions.filter(operator_id=operator_id.upper())
    if status == "OPEN":  # every session without its CDR: charging, or charging ended and still plugged
        sessions = sessions.filter(status__in=[ChargingSession.Status.ACTIVE, ChargingSession.Status.CHARGING_ENDED])
    elif status:
        sessions = sessions.filter(status=status)
    if stale_hours:
        sessions = sessions.filter(last_update_at__lt=timezone.now() - timedelta(hours=stale_hours))
    return sessions.order_by(*session_ordering(sort))


def session_lookups(query: str) -> dict[str, QuerySet]:
    """Search as drivers speak: each way the query may name a session → the pks it finds.

    Every lookup is one equality or prefix on an indexed key the database computes from the stored
    value (ChargingSession's GeneratedFields), the query normalised the same way (`ids`):
    an EvseID in any spacing, separator or case, or its start ("DE ACC E7260 4", "DEACCE72604");
    the start of a SessionID (8 characters or more, any case); a partner session ID in any case;
    the contract ID (EvcoID) in any spelling, or without its check digit; the card's UID or printed
    number in any spacing or case; a stop's case reference (as typed). A query that cannot be a
    kind of ID makes no lookup of that kind. Empty for an empty query.
    """
    query = query.strip()
    if not query:
        return {}
    sessions = ChargingSession.objects.order_by()
    lookups: dict[str, QuerySet] = {}
    session_prefix = ids.session_id_prefix(query)
    if session_prefix:
        lookups["session_id"] = sessions.filter(prefix_q("session_key", session_prefix))
    key = ids.id_search_key(query)
    if key:
        lookups["evse_id"] = sessions.filter(prefix_q("evse_key", key))
    partner = ids.partner_search_key(query)
    lookups["emp_partner_session_id"] = sessions.filter(emp_partner_key=partner)
    lookups["cpo_partner_session_id"] = sessions.filter(cpo_partner_key=partner)
    if key:
        lookups["contract_id"] = sessions.filter(
            prefix_q("contract_key", key) if len(key) >= ids.CONTRACT_PREFIX_MIN else Q(contract_key=key)
        )
        lookups["card_uid"] = sessions.filter(card_uid_key=key)
        lookups["printed_number"] = sessions.filter(printed_number_key=key)
    lookups = {kind: lookup.values("pk") for kind, lookup in lookups.items()}
    lookups["case_reference"] = (
        RemoteStopRequest.objects.filter(case_reference=query).order_by().values("charging_session_id")
    )
    return lookups


def named_sessions_q(query: str) -> Q:
    """The rows (stop requests, audit records: anything with a `charging_session`) of the sessions the
    query names as the driver speaks (`session_lookups`: EvseID in any spelling or its start, SessionID
    or its start, partner session ID, contract ID, card UID or printed number); index-friendly lookups only.

    The sessions are found first, through their own indexes, and the rows by their session's id
    (an OR over the joined session's columns made both databases scan every row). The case
    reference is the callers' own lookup (on the stop request).
    """
    lookups = [lookup for kind, lookup in session_lookups(query).items() if kind != "case_reference"]
    if not lookups:
        return Q(pk__in=[])
    return Q(charging_session_id__in=lookups[0].union(*lookups[1:]))


def operator_ids() -> list[str]:
    return distinct_values(ChargingSession, "operator_id")


def get_charging_session(*, pk: int) -> ChargingSession | None:
    return ChargingSession.objects.filter(pk=pk).first()


# --- the session page's timeline ------------------------------------------------------------------

# Progress notifications come about once a minute: folded into one line (`ProgressFold`) so the
# stop events stay in view. One with anomalies, or held back, stays a line of its own.
_FOLDED_PROGRESS = Q(
    event_type=AuditRecord.EventType.NOTIFICATION_RECEIVED,
    data__kind="PROGRESS",
    data__anomalies__isnull=True,
    data__held_back__isnull=True,
)
PROGRESS_SHOWN = 20  # the newest Progress notifications listed inside the fold

# What a viewer without `view_all_remote_stops` sees of another person's stop (or manual close):
# that it happened, who, when and its outcome. Their note, case reference and the exact request and
# response are left out here, so no template can show them.
_STOP_EVENTS = {value for value in AuditRecord.EventType.values if value.startswith("STOP_")}
_SHARED_STOP_FACTS = {
    "reason",
    "attempt",
    "max_attempts",
    "retry_in_seconds",
    "outcome",
    "http_status",
    "oicp_code",
    "description",
    "failure_kind",
    "error",
    "request_sent",
    "sent",
    "outcome_unknown",
    "accepted_at",
    "waited_minutes",
    "confirmed_by",
    "previous_state",
    "seconds_to_confirmation",
    "settled",
    "session_id",
    "evse_id",
}
_SHARED_CLOSE_FACTS = {"previous_status", "remote_stop_sent"}  # its free-text reason is the supervisor's note


@dataclass(frozen=True)
class ProgressFold:
    count: int
    latest: list[tuple[AuditRecord, str | None]]  # newest first, at most PROGRESS_SHOWN, with their energy
    energy_kwh: str | None  # the latest notification's ConsumedEnergyProgress, as stored
    at: datetime


@dataclass(frozen=True)
class TimelineEntry:
    """One line of the session's timeline: an audit record with the data this viewer may see, or the fold."""

    record: AuditRecord | None = None
    data: dict | None = None
    withheld: bool = False  # someone else's note, case reference or exchange was left out
    progress: ProgressFold | None = None


def session_timeline(
    *, charging_session: ChargingSession, viewer=None, sees_all: bool = True, limit: int = 200
) -> list[TimelineEntry]:
    """The session's audit records, newest first, Progress notifications folded into one entry placed
    where the newest of them is (three queries at most, whatever the number of notifications).

    `viewer`/`sees_all`: unless `sees_all`, the stops (and manual closes) of anyone but `viewer` show
    only their shared facts (`_SHARED_STOP_FACTS`).
    """
    records = (
        AuditRecord.objects.filter(charging_session=charging_session)
        .select_related("actor", "stop_request")
        .order_by("-occurred_at", "-pk")
    )
    shown = list(records.exclude(_FOLDED_PROGRESS)[:limit])
    progress = list(records.filter(_FOLDED_PROGRESS)[:PROGRESS_SHOWN])
    entries = [_visible_entry(record, viewer=viewer, sees_all=sees_all) for record in shown]
    if progress:
        count = len(progress) if len(progress) < PROGRESS_SHOWN else records.filter(_FOLDED_PROGRESS).count()
        newest = progress[0]
        rows = [
            (record, _kwh(((record.data or {}).get("message") or {}).get("ConsumedEnergyProgress")))
            for record in progress
        ]
        fold = TimelineEntry(progress=ProgressFold(count, rows, rows[0][1], newest.occurred_at))
        position = next(
            (i for i, record in enumerate(shown) if (record.occurred_at, record.pk) < (newest.occurred_at, newest.pk)),
            len(shown),
        )
        entries.insert(position, fold)
    return entries


def _kwh(value) -> str | None:
    """An energy as people read it: 22.900 → 22.9, 12.346 stays."""
    if value is None:
        return None
    try:
        return format(Decimal(str(value)).normalize(), "f")
    except InvalidOperation:
        return str(value)


def _visible_entry(record: AuditRecord, *, viewer, sees_all: bool) -> TimelineEntry:
    data = record.data if isinstance(record.data, dict) else {}
    if sees_all:
        return TimelineEntry(record, data)
    if record.event_type in _STOP_EVENTS:
        owner_id = record.stop_request.requested_by_id if record.stop_request_id else record.actor_id
        shared = _SHARED_STOP_FACTS
    elif record.event_type == AuditRecord.EventType.SESSION_CLOSED_MANUALLY:
        owner_id, shared = record.actor_id, _SHARED_CLOSE_FACTS
    else:
        return TimelineEntry(record, data)
    if viewer is not None and owner_id is not None and owner_id == viewer.pk:
        return TimelineEntry(record, data)
    visible = {key: value for key, value in data.items() if key in shared}
    return TimelineEntry(record, visible, withheld=len(visible) < len(data))


# --- the stuck-sessions queue --------------------------------------------------------------------


# The kinds of problem the queue lists (its `kind` filter): a stop accepted and never confirmed, a
# stop failed with its outcome unknown, an open session without updates.
UNCONFIRMED, UNKNOWN, STALE = "unconfirmed", "unknown", "stale"
STUCK_KINDS = (UNCONFIRMED, UNKNOWN, STALE)
# Sort keys of the queue: by age (oldest first by default) or by CPO; "-" in front reverses.
STUCK_SORTS = ("age", "-age", "cpo", "-cpo")


@dataclass(frozen=True)
class StuckQueue:
    unconfirmed: list[RemoteStopRequest]  # each with latest_stop_pk / latest_stop_state (`_with_latest`)
    unconfirmed_count: int
    stale: list[ChargingSession]
    stale_count: int
    stale_hours: int


def _stuck_stops(*, open_sessions) -> QuerySet[RemoteStopRequest]:
    """Stops accepted and never confirmed, or failed with an unknown outcome, of sessions not yet closed,
    unless a later stop took over (one still on its way, accepted, confirmed, or stuck itself)."""
    later = RemoteStopRequest.objects.filter(charging_session=OuterRef("charging_session"), pk__gt=OuterRef("pk"))
    took_over = later.exclude(state=State.REJECTED).exclude(state=State.FAILED, outcome_unknown=False)
    stuck = STUCK_STOP_Q  # as such: on PostgreSQL, the condition of the partial index stop_stuck_session_idx
    if connection.vendor == "sqlite":
        # SQLite has no statistics to choose that partial index: the states as a list let it probe
        # stop_state_session_at_idx per state and open session, instead of reading every stop in
        # either state (its plan for the OR alone).
        stuck &= Q(state__in=[State.UNCONFIRMED, State.FAILED])
    return RemoteStopRequest.objects.filter(stuck, charging_session_id__in=open_sessions).filter(~Exists(took_over))


def _with_latest(stops: QuerySet[RemoteStopRequest]) -> QuerySet[RemoteStopRequest]:
    """Each stop with its session's newest stop (a re-send shows as "re-sent, now: …") and its CPO's name and
    hotline from the directory (`cpo_name`, `cpo_hotline`)."""
    latest = RemoteStopRequest.objects.filter(charging_session=OuterRef("charging_session")).order_by("-pk")
    stops = with_cpo_contact(stops, operator_field="charging_session__operator_id")
    return stops.select_related("charging_session", "requested_by").annotate(
        latest_stop_pk=Subquery(latest.values("pk")[:1]),
        latest_stop_state=Subquery(latest.values("state")[:1]),
        latest_stop_code=Subquery(latest.values("oicp_code")[:1]),
    )


# What the queue's rows show (stops.presenters.stuck_rows), and only that: the stops' and sessions'
# other 60-odd columns (8 timestamps each, converted one by one) were a quarter of the selector's CPU.
_STOP_ROW_FIELDS = (
    "state",
    "requested_at",
    "finished_at",
    "case_reference",
    "requested_by__username",
    "charging_session__session_id",
    "charging_session__evse_id",
    "charging_session__operator_id",
)
_SESSION_ROW_FIELDS = ("session_id", "evse_id", "operator_id", "status", "last_update_at", "charging_ended_at")


def stuck_queue(
    *,
    kind: str = "",
    operator_id: str = "",
    min_age_minutes: int | None = None,
    sort: str = "age",
    limit: int = 50,
    now: datetime | None = None,
) -> StuckQueue:
    """Unconfirmed stops (and failed ones whose outcome is unknown) and open sessions without updates
    (charging, or charging ended without a CDR), oldest first or by `sort` (a constant number of queries).

    `kind` (STUCK_KINDS) keeps one kind of problem; `operator_id` one CPO; `min_age_minutes` only the
    rows stuck at least that long (a stop since its answer or its end, a session since its last update).
    """
    now = now or timezone.now()
    # Driven by the few sessions not yet closed (see _stuck_stops): unconfirmed stops of
    # closed sessions stay UNCONFIRMED for ever, and walking all of them grew with the history.
    # OPEN_SESSION_Q as such: the condition of the partial index session_open_update_idx.
    open_sessions = ChargingSession.objects.filter(OPEN_SESSION_Q).order_by()
    if operator_id:
        open_sessions = open_sessions.filter(operator_id=operator_id.upper())
    stops = _stuck_stops(open_sessions=open_sessions.values("pk"))
    if kind == UNCONFIRMED:
        stops = stops.filter(state=State.UNCONFIRMED)
    elif kind == UNKNOWN:
        stops = stops.filter(state=State.FAILED)
    elif kind == STALE:
        stops = stops.none()
    if min_age_minutes:
        stops = stops.filter(finished_at__lte=now - timedelta(minutes=min_age_minutes))
    descending = sort.startswith("-")
    if sort.lstrip("-") == "cpo":
        stop_order = [
            "-charging_session__operator_id" if descending else "charging_session__operator_id",
            "finished_at",
            "pk",
        ]
        stale_order = ["-operator_id" if descending else "operator_id", "last_update_at", "pk"]
    else:  # age: oldest first; "-age" newest first
        stop_order = ["-finished_at", "-pk"] if descending else ["finished_at", "pk"]
        stale_order = ["-last_update_at", "-pk"] if descending else ["last_update_at", "pk"]
    # One pass over the stuck stops gives the page's ids and their total (from stop_stuck_session_idx
    # alone on PostgreSQL); then the page's stops are read whole, with their annotations. Read whole
    # at once, every candidate was fetched from the table (and annotated, on SQLite) before the sort
    # kept `limit` of them; counted apart, the candidates were found twice.
    page = list(stops.annotate(total=Window(Count("pk"))).order_by(*stop_order).values_list("pk", "total")[:limit])
    shown = _with_latest(RemoteStopRequest.objects.filter(pk__in=[pk for pk, _total in page]))
    shown = shown.only(*_STOP_ROW_FIELDS).order_by(*stop_order)

    hours = settings.STUCK_SESSION_HOURS
    cutoff = now - timedelta(hours=hours)
    if min_age_minutes:
        cutoff = min(cutoff, now - timedelta(minutes=min_age_minutes))
    silent = open_sessions.filter(last_update_at__lt=cutoff)
    if kind in (UNCONFIRMED, UNKNOWN):
        silent = silent.none()
    stale = with_cpo_contact(with_last_stop(silent)).only(*_SESSION_ROW_FIELDS).order_by(*stale_order)
    return StuckQueue(
        unconfirmed=list(shown),
        unconfirmed_count=page[0][1] if page else 0,
        stale=list(stale[:limit]),
        stale_count=silent.count(),
        stale_hours=hours,
    )


def stuck_stop(*, pk: int) -> RemoteStopRequest | None:
    """One stop as the queue's row shows it (with its session's newest stop)."""
    return _with_latest(RemoteStopRequest.objects.filter(pk=pk)).first()
