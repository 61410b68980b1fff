"""The filters of the message-anomalies list (a GET form: the filters live in the URL).

A bad value gets its error next to its field and is left out; the other filters still apply.
"""

from __future__ import annotations

from datetime import date, timedelta

from django import forms
from django.utils import timezone

from ..models import InboundMessage
from ..oicp import ids
from ..oicp.anomalies import KINDS
from .selectors import AnomalyFilters

# Period presets: how many days before today the period starts (today included).
PERIODS = {"today": ("Today", 0), "7d": ("Last 7 days", 6), "30d": ("Last 30 days", 29)}
DEFAULT_PERIOD = "30d"  # without a period or dates in the URL: the list and its counts stay bounded
EARLIEST = date(2000, 1, 1)  # before OICP; anything earlier is a typing slip
AHEAD_DAYS = 366  # a date more than a year ahead is a typing slip too (and 9999-12-31 would overflow)


class AnomalyFilterForm(forms.Form):
    period = forms.ChoiceField(
        required=False,
        label="Period",
        choices=[*((key, label) for key, (label, _) in PERIODS.items()), ("", "Any time, or the dates")],
    )
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    kind = forms.ChoiceField(
        required=False, label="Message", choices=[("", "Any message"), *InboundMessage.Kind.choices]
    )
    code = forms.ChoiceField(required=False, label="Anomaly", choices=[("", "Any anomaly"), *KINDS.items()])
    operator = forms.CharField(required=False, max_length=10, label="OperatorID")
    held_back = forms.BooleanField(required=False, label="Held back only")
    refused = forms.BooleanField(required=False, label="Refused only")

    def __init__(self, data=None, *args, **kwargs):
        data = data.copy() if data is not None else {}
        if "period" not in data and not data.get("date_from") and not data.get("date_to"):
            data["period"] = DEFAULT_PERIOD  # also on page 2 of the default view: the same rows
        super().__init__(data, *args, **kwargs)

    def _clean_day(self, name: str) -> date | None:
        day = self.cleaned_data.get(name)
        if day is None:
            return None
        latest = timezone.localdate() + timedelta(days=AHEAD_DAYS)
        if not EARLIEST <= day <= latest:
            raise forms.ValidationError(f"Choose a day from {EARLIEST:%Y-%m-%d} to {latest:%Y-%m-%d}.")
        return day

    def clean_date_from(self) -> date | None:
        return self._clean_day("date_from")

    def clean_date_to(self) -> date | None:
        return self._clean_day("date_to")

    def clean_operator(self) -> str:
        value = self.cleaned_data.get("operator", "").strip().upper()
        if value and not ids.is_operator_id(value):
            raise forms.ValidationError("Not an OperatorID: write it like DE*ABC or +49*810.")
        return value

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and end < start:
            self.add_error("date_to", "“To” is before “From”.")
        if cleaned.get("period") and (self.data.get("date_from") or self.data.get("date_to")):
            self.add_error("period", "Choose a period or dates, not both: the period was not applied.")
        return cleaned

    def filters(self) -> AnomalyFilters:
        self.is_valid()  # fields with a bad value are left out; the others still apply
        data = getattr(self, "cleaned_data", {})
        date_from, date_to = data.get("date_from"), data.get("date_to")
        period = data.get("period")
        if period in PERIODS:
            today = timezone.localdate()
            date_from, date_to = today - timedelta(days=PERIODS[period][1]), today
        return AnomalyFilters(
            date_from=date_from,
            date_to=date_to,
            kind=data.get("kind", ""),
            code=data.get("code", ""),
            operator_id=data.get("operator", ""),
            held_back_only=bool(data.get("held_back")),
            refused_only=bool(data.get("refused")),
        )

    def period_words(self, filters: AnomalyFilters) -> str:
        """The period the counts cover, in words."""
        period = getattr(self, "cleaned_data", {}).get("period")
        days = ""
        if filters.date_from and filters.date_to:
            days = f"{filters.date_from:%Y-%m-%d} to {filters.date_to:%Y-%m-%d}"
        elif filters.date_from:
            days = f"from {filters.date_from:%Y-%m-%d}"
        elif filters.date_to:
            days = f"up to {filters.date_to:%Y-%m-%d}"
        if period in PERIODS:
            return f"{PERIODS[period][0].lower()} ({days})"
        return days or "all time"
