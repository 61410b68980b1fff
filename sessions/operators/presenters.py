"""The CPO pages' figures as people read them: rates in per cent, times in seconds or minutes, and
the one-sentence summaries the charts carry as their accessible names."""

from __future__ import annotations

from datetime import timedelta

from .selectors import OperatorRecord, Period, Week


def rate(value: float | None) -> str:
    """0.8333 → "83.3 %"; "—" without stops."""
    return "—" if value is None else f"{value * 100:.1f} %"


def span(duration: timedelta | None) -> str:
    """A time to confirmation: "42 s", "12.5 s", "3 min 05 s"; "—" when none was confirmed."""
    if duration is None:
        return "—"
    seconds = duration.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s".replace(".0 s", " s")
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def period_words(period: Period) -> str:
    return f"{period.date_from:%d %b %Y} to {period.date_to:%d %b %Y}"


def weekly_summary(operator_id: str, weeks: list[Week], period: Period) -> str:
    sent = sum(week.sent for week in weeks)
    confirmed = sum(week.confirmed for week in weeks)
    text = (
        f"Stops sent and confirmed per week at {operator_id}, {period_words(period)}: "
        f"{sent} sent, {confirmed} confirmed in {len(weeks)} week{'s' if len(weeks) != 1 else ''}"
    )
    busiest = max(weeks, key=lambda week: week.sent, default=None)
    if busiest and busiest.sent:
        text += f"; the busiest week began {busiest.start:%d %b} with {busiest.sent} sent"
    return text + "."


def mix_summary(record: OperatorRecord) -> str:
    if not record.sent:
        return f"Outcomes of the stops at {record.operator_id}: no stop in this period."
    parts = [f"{label.lower()} {value}" for _, label, value in record.outcomes() if value]
    return f"Outcomes of the {record.sent} stops at {record.operator_id}: " + ", ".join(parts) + "."


def histogram_summary(record: OperatorRecord, buckets: list[tuple[str, int]]) -> str:
    total = sum(count for _, count in buckets)
    if not total:
        return f"Time from request to confirmation at {record.operator_id}: no stop confirmed in this period."
    most = max(buckets, key=lambda bucket: bucket[1])
    return (
        f"Time from request to confirmation of {total} confirmed stops at {record.operator_id}: "
        f"median {span(record.median)}, 90th percentile {span(record.p90)}; most took {most[0]} ({most[1]})."
    )


def record_cells(record: OperatorRecord) -> dict[str, str]:
    """The record's rates and times as written on the pages."""
    return {
        "success": rate(record.success_rate),
        "failure": rate(record.failure_rate),
        "median": span(record.median),
        "p90": span(record.p90),
    }
