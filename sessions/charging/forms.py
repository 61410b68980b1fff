"""The charging screens' GET forms: the sessions search and the stuck queue's filters."""

from django import forms

from ..stops.presenters.follow_up import STUCK_KIND_LABELS
from .selectors import STUCK_SORTS


class SessionSearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=250, label="Search")
    operator = forms.CharField(required=False, max_length=10, label="CPO")
    status = forms.ChoiceField(
        required=False,
        # "Open": every session Hubject still has open (no CDR yet), charging or not: a driver whose
        # cable is locked after charging ended is exactly who calls.
        choices=[
            ("OPEN", "Open (no CDR yet)"),
            ("ACTIVE", "Charging"),
            ("CHARGING_ENDED", "Charging ended"),
            ("CLOSED", "Closed"),
            ("", "Any state"),
        ],
        label="State",
    )
    stale_hours = forms.IntegerField(
        required=False, min_value=1, max_value=720, label="No update for more than (hours)"
    )


class StuckQueueForm(forms.Form):
    """The stuck queue's filters and order, all in the URL; a bad value is said next to its field and the
    others still apply."""

    kind = forms.ChoiceField(
        required=False, label="Kind of problem", choices=[("", "Every kind"), *STUCK_KIND_LABELS.items()]
    )
    operator = forms.CharField(required=False, max_length=10, label="CPO")
    min_age = forms.TypedChoiceField(
        required=False,
        coerce=int,
        empty_value=None,
        label="Stuck for at least",
        choices=[
            ("", "Any time"),
            ("15", "15 min"),
            ("30", "30 min"),
            ("60", "1 h"),
            ("120", "2 h"),
            ("240", "4 h"),
            ("720", "12 h"),
            ("1440", "24 h"),
        ],
    )
    sort = forms.ChoiceField(required=False, choices=[(key, key) for key in STUCK_SORTS], label="Order")

    def filters(self) -> dict:
        """The valid values (an invalid field counts as not given)."""
        self.is_valid()
        cleaned = getattr(self, "cleaned_data", {})
        return {
            "kind": cleaned.get("kind") or "",
            "operator_id": cleaned.get("operator") or "",
            "min_age_minutes": cleaned.get("min_age"),
            "sort": cleaned.get("sort") or "age",
        }
