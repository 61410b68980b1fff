"""Times as the agent reads them: a clock time with its UTC offset, a duration, "ago", an age."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.timesince import timesince


@dataclass(frozen=True)
class Moment:
    """A time in the agent's zone with its UTC offset; `iso` goes into <time datetime=...>."""

    iso: str
    text: str


def clock(at: datetime) -> Moment:
    local = timezone.localtime(at)
    # Sliced from the ISO form ("2026-12-02T09:58:07+01:00"), not strftime'd three times: lists print
    # a hundred of these a page (the stuck queue), and this is a third of the cost.
    iso = local.isoformat(timespec="seconds")
    text = f"{iso[11:19]} UTC{iso[19:]}"
    if local.date() != timezone.localdate():
        text = f"{iso[:10]} {text}"
    return Moment(iso, text)


def duration(span: timedelta | None) -> str:
    if span is None:
        return "—"
    total = max(0, int(span.total_seconds()))
    if total < 60:
        return f"{total} s"
    if total < 3600:
        return f"{total // 60} min {total % 60:02d} s"
    return f"{total // 3600} h {total % 3600 // 60:02d} min"


def ago(moment: datetime) -> str:
    return "just now" if timezone.now() - moment < timedelta(minutes=1) else f"{timesince(moment)} ago"


def age(span: timedelta) -> str:
    """How long something has been stuck, at a glance: 40 s, 25 min, 2 h 05 min, 7 h, 3 d 4 h."""
    total = max(0, int(span.total_seconds()))
    if total < 60:
        return f"{total} s"
    minutes = total // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 3:
        return f"{hours} h {minutes:02d} min" if minutes else f"{hours} h"
    if hours < 48:
        return f"{hours} h"
    return f"{hours // 24} d {hours % 24} h" if hours % 24 else f"{hours // 24} d"
