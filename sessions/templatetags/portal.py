"""Small rendering helpers shared by every screen: times with their offset, copyable IDs."""

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince

from sessions.inbound.selectors import labelled
from sessions.models import StopReason

register = template.Library()


@register.simple_tag
def when(value: datetime | None, relative: bool = True):
    """A <time> element: relative text, the absolute local time with its UTC offset as tooltip."""
    if value is None:
        return mark_safe('<span class="muted">—</span>')
    local = timezone.localtime(value)
    absolute = local.strftime("%Y-%m-%d %H:%M:%S UTC%z")
    absolute = absolute[:-2] + ":" + absolute[-2:]
    age = (timezone.now() - value).total_seconds()
    if not relative or age < -5:
        text = absolute
    elif age < 60:
        text = "just now"
    else:
        text = f"{timesince(value)} ago"
    return format_html('<time datetime="{}" title="{}">{}</time>', local.isoformat(), absolute, text)


@register.simple_tag
def copyable(value: str | None):
    """An identifier in monospace that never wraps mid-token, with a copy button."""
    if not value:
        return mark_safe('<span class="muted">—</span>')
    v = escape(value)  # once for its three places (the history prints 100 of these a page)
    return mark_safe(
        f'<span class="id"><code>{v}</code><button type="button" class="copy" data-copy="{v}" '
        f'aria-label="Copy {v}">Copy</button></span>'
    )


@register.simple_tag
def session_id(value: str | None):
    """A SessionID in a table cell: monospace, never wrapped mid-token, shortened on screen by CSS (the
    whole value stays in the page, the tooltip and the copy button). A tag, not an include, and the
    value escaped once for its four places: the lists print up to 100 of them a page."""
    if not value:
        return mark_safe('<span class="muted">—</span>')
    v = escape(value)
    return mark_safe(
        f'<span class="id session-id"><code title="{v}">{v}</code><button type="button" class="copy" '
        f'data-copy="{v}" aria-label="Copy SessionID {v}">Copy</button></span>'
    )


@register.simple_tag
def stop_badge(badge):
    """The last stop's outcome (stops.presenters.last_stop_badge, a Badge or None): words and a mark,
    never colour alone."""
    if not badge:
        return mark_safe('<span class="muted">—</span>')
    return format_html(
        '<span class="badge last-stop tone-{}" title="{}"><span class="tone-mark" aria-hidden="true">{}</span> {}{}</span>',
        badge.tone,
        badge.title,
        badge.mark,
        badge.text,
        format_html(" · <strong>{}</strong>", badge.flag) if badge.flag else "",
    )


@register.filter
def anomaly_labels(anomalies) -> list[dict]:
    """A message's anomalies (from an InboundMessage or its audit record) with their kinds' labels,
    for sessions/_anomaly_list.html."""
    return labelled(anomalies)


@register.filter
def reason_label(value: str) -> str:
    return StopReason(value).label if value in StopReason.values else value


@register.filter
def duration_since(value: datetime | None) -> str:
    if value is None:
        return "—"
    minutes = int((timezone.now() - value).total_seconds() // 60)
    hours, minutes = divmod(max(minutes, 0), 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


@register.filter
def is_stale(value: datetime | None, hours: int = 2) -> bool:
    return value is not None and (timezone.now() - value).total_seconds() > hours * 3600


@register.simple_tag
def code_info(code: str):
    """An OICP code with Hubject's description and the presenter's words (meaning, next step)."""
    from sessions.oicp.status_codes import describe
    from sessions.stops.presenters.cards import code_meaning

    return code_meaning(describe(code))
