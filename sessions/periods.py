"""Days as the portal counts them: named periods and inclusive day ranges, in the portal's time zone."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from django.db.models import Q
from django.utils import timezone

# Named spans of days (the `period` parameter → its words).
PERIODS = {"today": "today", "last7": "last 7 days", "last_month": "last month"}


def start_of_day(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def date_range_q(field_name: str, date_from: date | None, date_to: date | None) -> Q:
    """Both days inclusive, in the portal's time zone (the forms keep the days plausible; the last
    day there is means no upper bound rather than an overflow)."""
    q = Q()
    if date_from:
        q &= Q(**{f"{field_name}__gte": start_of_day(date_from)})
    if date_to and date_to < date.max:
        q &= Q(**{f"{field_name}__lt": start_of_day(date_to + timedelta(days=1))})
    return q


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
