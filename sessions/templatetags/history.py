"""Rendering helpers of the stop history and the audit export: step times, durations, sort headers."""

from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

register = template.Library()


def _absolute(local: datetime) -> str:
    """A local time as the tooltips write it: 2026-12-07 10:42:05 UTC+01:00."""
    text = local.strftime("%Y-%m-%d %H:%M:%S UTC%z")
    return text[:-2] + ":" + text[-2:]


@register.filter
def span(value: timedelta | None) -> str:
    """A duration in words a person reads at a glance: 0.4 s, 12 s, 2 min 05 s, 3 h 12 min."""
    if value is None:
        return "—"
    exact = max(0.0, value.total_seconds())
    if exact < 10:
        return f"{exact:.1f} s"
    seconds = int(exact)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@register.simple_tag
def step_time(value: datetime | None, since: datetime | None):
    """When a step happened, as an offset from the request ("+4 s"), the absolute time in the tooltip."""
    if value is None:
        return mark_safe('<span class="muted">—</span>')
    # One conversion to local time, not three: the history prints 200 of these a page.
    local = timezone.localtime(value)
    absolute = _absolute(local)
    offset = "+" + span(value - since) if since is not None else absolute
    return format_html('<time datetime="{}" title="{}">{}</time>', local.isoformat(), absolute, offset)


@register.simple_tag
def sort_header(sorts: dict, key: str, label: str):
    """A sortable column header: a link that toggles the order, with aria-sort on the cell."""
    link = sorts[key]
    arrow = {"ascending": " ▲", "descending": " ▼"}.get(link["aria"], "")
    return format_html(
        '<th scope="col" aria-sort="{}"><a href="{}" class="sort">{}<span aria-hidden="true">{}</span></a></th>',
        link["aria"],
        link["url"],
        label,
        arrow,
    )


@register.filter
def percent(done: int | None, total: int | None) -> int:
    if not total:
        return 100 if done else 0
    return min(100, int(100 * (done or 0) / total))


@register.filter
def as_json(value) -> str:
    """Indented JSON, as the exchange was recorded (escaped by the template like any text)."""
    import json

    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


@register.simple_tag
def copyable_short(value: str | None, keep: int = 12):
    """A long identifier (a checksum) shortened on screen; the tooltip and the copy button hold all of it."""
    if not value:
        return mark_safe('<span class="muted">—</span>')
    return format_html(
        '<span class="id"><code title="{}">{}…</code><button type="button" class="copy" data-copy="{}" '
        'aria-label="Copy the whole value {}">Copy</button></span>',
        value,
        value[:keep],
        value,
        value,
    )
