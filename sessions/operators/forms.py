"""The period of the CPO pages: last 7, 30 or 90 days (links), or From/To days (a form); GET, so
the period lives in the URL.

A period that cannot be used gets an error on its field and the page shows the default period
(DEFAULT_PERIOD), saying so: a bad day never changes the figures to something unasked, nor answers 500.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.utils import timezone

from ..date_range_form import DateRangeForm
from .selectors import Period

PRESETS = {"last7": 7, "last30": 30, "last90": 90}
DEFAULT_PERIOD = "last30"
CUSTOM = "custom"
MAX_DAYS = 731  # a custom period of at most two years: the weekly chart stays readable
SORT_KEYS = (
    "operator",
    "sent",
    "confirmed",
    "rejected",
    "failed",
    "unconfirmed",
    "open",
    "success",
    "failure",
    "median",
)


def today():
    return timezone.localdate(timezone.now(), timezone.get_default_timezone())


def preset_period(key: str) -> Period:
    end = today()
    return Period(end - timedelta(days=PRESETS[key] - 1), end)


class OperatorPeriodForm(DateRangeForm):
    period = forms.ChoiceField(
        required=False,
        label="Period",
        choices=[
            ("last7", "Last 7 days"),
            ("last30", "Last 30 days"),
            ("last90", "Last 90 days"),
            (CUSTOM, "From – To (choose the days)"),
        ],
    )
    sort = forms.ChoiceField(required=False, choices=[(key, key) for k in SORT_KEYS for key in (k, f"-{k}")])

    def clean(self):
        cleaned = super().clean()
        dates_given = bool(self.data.get("date_from") or self.data.get("date_to"))
        if "period" in self.errors:
            return cleaned
        # The From/To form sends only days; the preset links only `period`: days given mean those days.
        period = CUSTOM if dates_given else (cleaned.get("period") or DEFAULT_PERIOD)
        cleaned["period"] = period
        if period != CUSTOM:
            return cleaned
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start is None and "date_from" not in self.errors:
            self.add_error("date_from", "Choose the first day of the period.")
        if end is None and "date_to" not in self.errors:
            self.add_error("date_to", "Choose the last day of the period.")
        if start and end and (end - start).days + 1 > MAX_DAYS:
            self.add_error("date_to", f"Choose at most {MAX_DAYS} days (two years).")
        return cleaned

    def chosen_period(self) -> tuple[Period, str, bool]:
        """(the period to show, its key, whether it is the one asked for): the default when the
        period asked for has an error."""
        if not self.is_bound:
            return preset_period(DEFAULT_PERIOD), DEFAULT_PERIOD, True
        period_errors = {"period", "date_from", "date_to"} & set(self.errors)
        if not self.is_valid() and period_errors:
            return preset_period(DEFAULT_PERIOD), DEFAULT_PERIOD, False
        key = self.cleaned_data["period"]
        if key == CUSTOM:
            return Period(self.cleaned_data["date_from"], self.cleaned_data["date_to"]), CUSTOM, True
        return preset_period(key), key, True

    def chosen_sort(self, default: str) -> str:
        self.is_valid()
        return getattr(self, "cleaned_data", {}).get("sort") or default
