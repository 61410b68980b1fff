"""Rendering helpers for what Hubject's EVSE directory tells the agent: a hotline to call, a live status."""

import re

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

register = template.Library()

# OICP EvseStatusType in words.
STATUS_WORDS = {
    "Available": "Available",
    "Reserved": "Reserved",
    "Occupied": "Occupied",
    "OutOfService": "Out of service",
    "EvseNotFound": "Not found at Hubject",
    "Unknown": "Unknown",
}


def tel_href(number: str) -> str:
    """A phone number as a tel: URL: digits and a leading "+" only ("+49 30 1234-5" → "tel:+493012345")."""
    digits = re.sub(r"[^0-9+]", "", number)
    return "tel:" + (digits[:1] + digits[1:].replace("+", ""))


@register.simple_tag
def hotline(number: str | None, label: str = ""):
    """A hotline as a tel: link (tapping it calls on a phone) with a copy button."""
    if not number:
        return mark_safe('<span class="muted">—</span>')
    return format_html(
        '<span class="id hotline"><a class="tel nowrap" href="{}"{}>{}</a>'
        '<button type="button" class="copy" data-copy="{}" aria-label="Copy {}">Copy</button></span>',
        tel_href(number),
        format_html(' aria-label="Call {} at {}"', label, number) if label else "",
        number,
        number,
        number,
    )


@register.filter
def evse_status_words(status: str) -> str:
    return STATUS_WORDS.get(status, status)
