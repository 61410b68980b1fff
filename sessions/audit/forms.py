"""The audit-log export's forms (GET filters; POST to start an export) and the event types' groups.

A value a user can type (in the form or the address bar) that cannot be used gets an error on its
field; nothing is exported from a form with errors.
"""

from django import forms

from ..date_range_form import DateRangeForm
from ..models import AuditExport, AuditRecord
from ..periods import PERIODS, period_days
from .selectors import AuditLogFilters

Event = AuditRecord.EventType
CUSTOM = "custom"
PERIOD_CHOICES = [(CUSTOM, "Custom dates"), *((key, label.capitalize()) for key, label in PERIODS.items())]

# The event-type checkboxes, in groups a supervisor recognises; a type not listed here (a new one)
# appears under "Other", so every type can always be chosen.
_EVENT_GROUPS = [
    (
        "Stops",
        [
            Event.STOP_REQUESTED,
            Event.STOP_REFUSED,
            Event.STOP_SENDING,
            Event.STOP_ACCEPTED,
            Event.STOP_REJECTED,
            Event.STOP_ATTEMPT_FAILED,
            Event.STOP_FAILED,
            Event.STOP_CONFIRMED,
            Event.STOP_UNCONFIRMED,
        ],
    ),
    (
        "Sessions and Hubject's messages",
        [
            Event.SESSION_CREATED,
            Event.SESSION_UPDATED,
            Event.SESSION_CLOSED_MANUALLY,
            Event.NOTIFICATION_RECEIVED,
            Event.CDR_RECEIVED,
            Event.INBOUND_REFUSED,
            Event.RECONCILIATION_RUN,
            Event.SESSIONS_IMPORTED,
        ],
    ),
    ("The audit trail", [Event.AUDIT_EXPORTED, Event.AUDIT_VERIFIED, Event.AUDIT_PURGED, Event.LEGAL_HOLD_CHANGED]),
]


def event_groups() -> list[tuple[str, list[tuple[str, str]]]]:
    """(group, [(event type, label)]) covering every event type once."""
    listed = {event for _, events in _EVENT_GROUPS for event in events}
    others = [event for event in Event.values if event not in listed]
    accounts = [event for event in others if event.startswith(("USER_", "PASSWORD_", "TWO_FACTOR_"))]
    groups = [(name, list(events)) for name, events in _EVENT_GROUPS]
    if accounts:
        groups.append(("Accounts and sign-in", accounts))
    if rest := [event for event in others if event not in accounts]:
        groups.append(("Other", rest))
    return [(name, [(event, Event(event).label) for event in events]) for name, events in groups]


# The supervisor's usual question, one click away: stops that did not work.
FAILED_STOPS = [Event.STOP_REJECTED, Event.STOP_FAILED]


class _EventTypesField(forms.MultipleChoiceField):
    def to_python(self, value):
        # `event_type=` is how links from the single-choice form said "any event".
        return [event for event in super().to_python(value) if event]


class AuditLogFilterForm(DateRangeForm):
    period = forms.ChoiceField(required=False, choices=PERIOD_CHOICES, label="Period")
    event_type = _EventTypesField(
        required=False, choices=Event.choices, label="Event types", widget=forms.CheckboxSelectMultiple
    )
    actor = forms.CharField(
        required=False, max_length=150, label="Actor", help_text="A username, or “system” for the portal's own records."
    )
    operator = forms.CharField(required=False, max_length=10, label="OperatorID")
    q = forms.CharField(required=False, max_length=250, label="Correlation id, SessionID, EvseID or case ref")

    def __init__(self, *args, operators=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.operators = list(operators)
        self.fields["event_type"].choices = [(event, label) for _, events in event_groups() for event, label in events]

    def clean_operator(self):
        operator = self.cleaned_data.get("operator", "").strip().upper()
        if operator and operator not in self.operators:
            raise forms.ValidationError(
                f"{operator} is not an OperatorID the portal knows; choose one from the list.", code="unknown"
            )
        return operator

    def clean(self):
        cleaned = super().clean()
        period = cleaned.get("period") or CUSTOM
        cleaned["period"] = period
        if period != CUSTOM and "period" not in self.errors:
            # A named period replaces the dates (and their errors: they are not used).
            cleaned["date_from"], cleaned["date_to"] = period_days(period)
            for name in ("date_from", "date_to"):
                self.errors.pop(name, None)
        return cleaned

    def filters(self) -> AuditLogFilters | None:
        """What to export: everything for an empty form, None when a field has an error."""
        if not self.is_bound:
            return AuditLogFilters()
        if not self.is_valid():
            return None
        data = self.cleaned_data
        return AuditLogFilters(
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
            period="" if data["period"] == CUSTOM else data["period"],
            event_types=tuple(data.get("event_type") or ()),
            actor=data.get("actor", "").strip(),
            operator_id=data.get("operator", ""),
            q=data.get("q", "").strip(),
        )


class StartExportForm(AuditLogFilterForm):
    format = forms.ChoiceField(choices=AuditExport.Format.choices, initial=AuditExport.Format.CSV, label="Format")
