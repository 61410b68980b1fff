"""The base of every filter form with a "From"/"To" pair of days: plausible days, in order.

A day a user can type (in the form or the address bar) that cannot be used gets an error on its
field, so no date answers 500.
"""

from datetime import date

from django import forms
from django.utils import timezone

FIRST_DAY = date(2000, 1, 1)  # before the portal existed: nothing older can be in it


def last_day() -> date:
    """The last day a filter may name: the end of next year (a range may reach into the future)."""
    return date(timezone.localdate(timezone.now(), timezone.get_default_timezone()).year + 1, 12, 31)


class DateRangeForm(forms.Form):
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def _plausible(self, name: str) -> date | None:
        day = self.cleaned_data.get(name)
        if day is not None and not FIRST_DAY <= day <= last_day():
            raise forms.ValidationError(
                f"Choose a day between {FIRST_DAY:%Y-%m-%d} and {last_day():%Y-%m-%d}.", code="out_of_range"
            )
        return day

    def clean_date_from(self):
        return self._plausible("date_from")

    def clean_date_to(self):
        return self._plausible("date_to")

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and end < start:
            self.add_error("date_to", "“To” is before “From”.")
        return cleaned
