from django import forms

from .models import RemoteStopRequest, StopReason


class RemoteStopForm(forms.Form):
    reason = forms.ChoiceField(
        choices=[("", "Choose a reason…"), *StopReason.choices],
        error_messages={"required": "Choose a reason for the stop."},
    )
    note = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="What the driver told you; required when the reason is “Other”.",
    )
    case_reference = forms.CharField(
        required=False,
        max_length=64,
        label="Case reference",
        help_text="Ticket or case number, if there is one.",
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("reason") == StopReason.OTHER and not cleaned.get("note", "").strip():
            self.add_error("note", "Explain the reason when you choose “Other”.")
        return cleaned


class SessionSearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=250, label="Search")
    operator = forms.CharField(required=False, max_length=10, label="CPO")
    status = forms.ChoiceField(
        required=False,
        # "Open": every session Hubject still has open (no CDR yet), charging or not: a driver whose
        # cable is locked after charging ended is exactly who calls.
        choices=[("OPEN", "Open (no CDR yet)"), ("ACTIVE", "Charging"), ("CHARGING_ENDED", "Charging ended"),
                 ("CLOSED", "Closed"), ("", "Any state")],
        label="State",
    )
    stale_hours = forms.IntegerField(required=False, min_value=1, max_value=720, label="No update for more than (hours)")


class AdminRemoteStopForm(RemoteStopForm):
    """The admin action's confirmation form; the same fields and rules as the agent's dialog."""


__all__ = ["RemoteStopForm", "SessionSearchForm", "AdminRemoteStopForm", "RemoteStopRequest"]
