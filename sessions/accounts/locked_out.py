"""The page a locked-out login sees (django-axes calls this through AXES_LOCKOUT_CALLABLE)."""

from axes.helpers import get_cool_off
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def locked_out(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    cool_off = get_cool_off(request)
    minutes = max(1, round(cool_off.total_seconds() / 60)) if cool_off else None
    # 429 Too Many Requests; the page names no account detail beyond what the user typed.
    return render(request, "registration/locked_out.html", {"cooloff_minutes": minutes}, status=429)
