"""Reads of the CPOs' stop records: one CPO's figures over a period, and every CPO's in one table.

A stop request belongs to the CPO of its session, as the request keeps it (`RemoteStopRequest.operator_id`,
copied from the session when it is created), and to the period in which it was requested
(`requested_at`, days in the portal's time zone, both included). Its state
says how it ended; every request falls in exactly one outcome (OUTCOMES), so the outcomes add up to
the stops sent.

Every figure comes from the database in a fixed number of queries, whatever the number of stops:
- the counts (and the confirmation-time histogram) are one aggregate with COUNT(...) FILTER (WHERE ...)
  (Django's `Count(filter=)`; a CASE on SQLite), grouped by OperatorID for the overview;
- the median and 90th percentile of the time from request to confirmation are the same aggregate on
  PostgreSQL (`percentile_cont(f) WITHIN GROUP (ORDER BY time_to_confirmation)`, computed where the
  rows are); SQLite has no percentile function, so there one more query reads the confirmation times
  of the period, ordered (only that CPO's on its page, one column per stop for the overview), and
  Python interpolates them exactly as percentile_cont does (`percentile_cont` below). That is one
  number per confirmed stop in memory, bounded by the period; SQLite is the development and demo
  database, production runs PostgreSQL.
- the refusal codes are one GROUP BY oicp_code, the weekly trend one GROUP BY day (at most the
  period's days, folded into weeks here).

Each CPO's name and EVSE count come from Hubject's EVSE directory (`Operator`), matched by
`sessions.oicp.ids.operator_key` (sessions name their CPO "DE*ABC" or "DEABC"): one more query for
the overview, whatever its number of rows. A CPO the directory does not list keeps `in_directory`
False, an empty name and no EVSE count, and is listed all the same.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.db import connection
from django.db.models import Aggregate, Count, DurationField, Q, QuerySet
from django.db.models.functions import TruncDate

from ..models import ChargingSession, Operator, RemoteStopRequest
from ..oicp.ids import operator_key
from ..periods import date_range_q

State = RemoteStopRequest.State


@dataclass(frozen=True)
class Period:
    """The first and the last day of a period, both included, in the portal's time zone."""

    date_from: date
    date_to: date

    @property
    def days(self) -> int:
        return (self.date_to - self.date_from).days + 1


# Every stop request falls in exactly one outcome: (key, label, its states).
OUTCOMES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("confirmed", "Confirmed ended", (State.CONFIRMED,)),
    ("open", "Accepted, not yet confirmed", (State.ACCEPTED,)),
    ("unconfirmed", "Accepted, never confirmed", (State.UNCONFIRMED,)),
    ("rejected", "Rejected", (State.REJECTED,)),
    ("failed", "Failed", (State.FAILED,)),
    ("in_flight", "Still being sent", (State.PENDING, State.SENDING)),
)
# The CPO accepted the stop (OICP Result true), whatever happened after.
ACCEPTED_STATES = (State.ACCEPTED, State.CONFIRMED, State.UNCONFIRMED)
# The stop did not end the session: refused, failed or never confirmed.
FAILURE_KEYS = ("rejected", "failed", "unconfirmed")
# Where a refusal's OICP code is counted.
REFUSED_STATES = (State.REJECTED, State.FAILED)

# The confirmation-time histogram: (label, lower bound included, upper bound excluded or None).
BUCKETS: tuple[tuple[str, timedelta, timedelta | None], ...] = (
    ("< 30 s", timedelta(0), timedelta(seconds=30)),
    ("30–60 s", timedelta(seconds=30), timedelta(minutes=1)),
    ("1–2 min", timedelta(minutes=1), timedelta(minutes=2)),
    ("2–5 min", timedelta(minutes=2), timedelta(minutes=5)),
    ("5–15 min", timedelta(minutes=5), timedelta(minutes=15)),
    ("≥ 15 min", timedelta(minutes=15), None),
)
MEDIAN, P90 = 0.5, 0.9


@dataclass
class OperatorRecord:
    """One CPO's stop record over a period."""

    operator_id: str
    sent: int = 0
    accepted: int = 0
    confirmed: int = 0
    open: int = 0
    unconfirmed: int = 0
    rejected: int = 0
    failed: int = 0
    in_flight: int = 0
    median: timedelta | None = None
    p90: timedelta | None = None
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    # From Hubject's EVSE directory (`with_directory`): the CPO's name and its number of EVSEs.
    name: str = ""
    evse_count: int | None = None
    in_directory: bool = False

    @property
    def failures(self) -> int:
        return sum(getattr(self, key) for key in FAILURE_KEYS)

    @property
    def success_rate(self) -> float | None:
        """Confirmed / sent, None without stops."""
        return self.confirmed / self.sent if self.sent else None

    @property
    def failure_rate(self) -> float | None:
        """(Rejected + failed + never confirmed) / sent, None without stops."""
        return self.failures / self.sent if self.sent else None

    def outcomes(self) -> list[tuple[str, str, int]]:
        return [(key, label, getattr(self, key)) for key, label, _ in OUTCOMES]


@dataclass(frozen=True)
class Week:
    start: date  # the Monday (or the period's first day for the first week)
    end: date  # the Sunday (or the period's last day)
    sent: int
    confirmed: int


class PercentileCont(Aggregate):
    """PostgreSQL's ordered-set aggregate: the continuous percentile (linear interpolation)."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression, fraction: float, **extra):
        super().__init__(expression, fraction=float(fraction), output_field=DurationField(), **extra)


def percentile_cont(values: list[timedelta], fraction: float) -> timedelta | None:
    """The `fraction` percentile of ascending `values`, interpolated as PostgreSQL's percentile_cont."""
    if not values:
        return None
    position = fraction * (len(values) - 1)
    low, high = math.floor(position), math.ceil(position)
    return values[low] + (values[high] - values[low]) * (position - low)


def _percentiles_in_sql() -> bool:
    return connection.vendor == "postgresql"


def _counts() -> dict:
    """The aggregate of every count: outcomes, accepted, histogram buckets."""
    counts = {"sent": Count("pk"), "accepted": Count("pk", filter=Q(state__in=ACCEPTED_STATES))}
    for key, _, states in OUTCOMES:
        counts[key] = Count("pk", filter=Q(state__in=states))
    for index, (_, low, high) in enumerate(BUCKETS):
        bucket = Q(time_to_confirmation__gte=low)
        if high is not None:
            bucket &= Q(time_to_confirmation__lt=high)
        counts[f"bucket_{index}"] = Count("pk", filter=bucket)
    if _percentiles_in_sql():
        counts["median"] = PercentileCont("time_to_confirmation", MEDIAN)
        counts["p90"] = PercentileCont("time_to_confirmation", P90)
    return counts


def _record(operator_id: str, row: dict) -> OperatorRecord:
    record = OperatorRecord(operator_id=operator_id)
    for key in ("sent", "accepted", *(key for key, _, _ in OUTCOMES)):
        setattr(record, key, row[key] or 0)
    record.buckets = [row[f"bucket_{index}"] or 0 for index in range(len(BUCKETS))]
    record.median, record.p90 = row.get("median"), row.get("p90")
    return record


def _in_period(period: Period) -> QuerySet[RemoteStopRequest]:
    return RemoteStopRequest.objects.filter(date_range_q("requested_at", period.date_from, period.date_to)).order_by()


def _of_operator(operator_id: str, period: Period) -> QuerySet[RemoteStopRequest]:
    # One range of stop_operator_at_idx, which holds every column the aggregates read. Through the
    # CPO's sessions instead, PostgreSQL hashed them and scanned all the period's stops.
    return _in_period(period).filter(operator_id=operator_id)


def directory_operators(operator_ids: list[str]) -> dict[str, Operator]:
    """The directory's entries of these CPOs by their operator_key, in one query (none without IDs)."""
    keys = {operator_key(operator_id) for operator_id in operator_ids if operator_id}
    if not keys:
        return {}
    return {operator.operator_key: operator for operator in Operator.objects.filter(operator_key__in=keys)}


def with_directory(records: list[OperatorRecord]) -> dict[str, Operator]:
    """Fill each record's name and EVSE count from the directory (one query for all); returns the
    entries found, by operator_key."""
    operators = directory_operators([record.operator_id for record in records])
    for record in records:
        operator = operators.get(operator_key(record.operator_id))
        if operator is not None:
            record.name, record.evse_count, record.in_directory = operator.name, operator.evse_count, True
    return operators


def operator_known(operator_id: str) -> bool:
    """The portal has seen a session of this CPO."""
    return ChargingSession.objects.filter(operator_id=operator_id).exists()


def operator_record(*, operator_id: str, period: Period) -> OperatorRecord:
    """One CPO's figures: one query on PostgreSQL, two on SQLite (the confirmation times)."""
    stops = _of_operator(operator_id, period)
    record = _record(operator_id, stops.aggregate(**_counts()))
    if not _percentiles_in_sql():
        times = list(
            stops.filter(time_to_confirmation__isnull=False)
            .order_by("time_to_confirmation")
            .values_list("time_to_confirmation", flat=True)
        )
        record.median, record.p90 = percentile_cont(times, MEDIAN), percentile_cont(times, P90)
    return record


def operator_overview(*, period: Period) -> list[OperatorRecord]:
    """Every CPO with a stop in the period, by OperatorID, with its name and EVSE count from the
    directory: two queries on PostgreSQL, three on SQLite."""
    rows = _in_period(period).values("operator_id").annotate(**_counts()).order_by("operator_id")
    records = [_record(row["operator_id"], row) for row in rows]
    if not _percentiles_in_sql() and records:
        times: dict[str, list[timedelta]] = defaultdict(list)
        confirmed = (
            _in_period(period)
            .filter(time_to_confirmation__isnull=False)
            .order_by("operator_id", "time_to_confirmation")
            .values_list("operator_id", "time_to_confirmation")
        )
        for operator_id, duration in confirmed:
            times[operator_id].append(duration)
        for record in records:
            values = times.get(record.operator_id, [])
            record.median, record.p90 = percentile_cont(values, MEDIAN), percentile_cont(values, P90)
    with_directory(records)
    return records


def refusal_codes(*, operator_id: str, period: Period, limit: int = 5) -> list[tuple[str, int]]:
    """The most frequent OICP codes of the CPO's rejected or failed stops, most frequent first
    (the code breaks ties), as (code, count). Failures without an OICP code are not among them."""
    rows = (
        _of_operator(operator_id, period)
        .filter(state__in=REFUSED_STATES)
        .exclude(oicp_code="")
        .values("oicp_code")
        .annotate(count=Count("pk"))
        .order_by("-count", "oicp_code")[:limit]
    )
    return [(row["oicp_code"], row["count"]) for row in rows]


def weekly_trend(*, operator_id: str, period: Period) -> list[Week]:
    """Stops sent and confirmed per calendar week (Monday to Sunday) of the period, every week
    listed (none left out for having no stops); the first and last week are cut to the period."""
    per_day = (
        _of_operator(operator_id, period)
        .annotate(day=TruncDate("requested_at"))
        .values("day")
        .annotate(sent=Count("pk"), confirmed=Count("pk", filter=Q(state=State.CONFIRMED)))
        .order_by("day")
    )
    sent: dict[date, int] = defaultdict(int)
    confirmed: dict[date, int] = defaultdict(int)
    for row in per_day:
        monday = row["day"] - timedelta(days=row["day"].weekday())
        sent[monday] += row["sent"]
        confirmed[monday] += row["confirmed"]
    weeks = []
    monday = period.date_from - timedelta(days=period.date_from.weekday())
    while monday <= period.date_to:
        start, end = max(monday, period.date_from), min(monday + timedelta(days=6), period.date_to)
        weeks.append(Week(start, end, sent[monday], confirmed[monday]))
        monday += timedelta(days=7)
    return weeks
