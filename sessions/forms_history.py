"""Filter forms of the stop history and the audit-log export (GET forms: the filters live in the URL)."""

from django import forms

from .models import AuditExport, AuditRecord, RemoteStopRequest, StopReason
from .selectors_history import DEFAULT_HISTORY_SORT, HISTORY_SORTS, AuditLogFilters, StopHistoryFilters


class _DateRangeForm(forms.Form):
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and end < start:
            self.add_error("date_to", "“To” is before “From”.")
        return cleaned


class StopHistoryForm(_DateRangeForm):
    agent = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Agent")
    operator = forms.CharField(required=False, max_length=10, label="OperatorID")
    state = forms.ChoiceField(required=False, choices=[("", "Any state"), *RemoteStopRequest.State.choices])
    code = forms.CharField(required=False, max_length=3, label="OICP code")
    reason = forms.ChoiceField(required=False, choices=[("", "Any reason"), *StopReason.choices])
    q = forms.CharField(required=False, max_length=250, label="Search")
    sort = forms.ChoiceField(required=False, choices=[(key, key) for key in HISTORY_SORTS])

    def __init__(self, *args, users=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["agent"].choices = [("", "All agents"), *users]

    def filters(self) -> StopHistoryFilters:
        self.is_valid()  # fields with a bad value are left out; the others still apply
        data = getattr(self, "cleaned_data", {})
        return StopHistoryFilters(
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
            agent_id=data.get("agent"),
            operator_id=data.get("operator", ""),
            state=data.get("state", ""),
            oicp_code=data.get("code", "").strip(),
            reason=data.get("reason", ""),
            q=data.get("q", ""),
            sort=data.get("sort") or DEFAULT_HISTORY_SORT,
        )


class AuditLogFilterForm(_DateRangeForm):
    event_type = forms.ChoiceField(required=False, choices=[("", "Any event"), *AuditRecord.EventType.choices],
                                   label="Event type")
    actor = forms.CharField(required=False, max_length=150, label="Actor",
                            help_text="A username, or “system” for the portal's own records.")
    operator = forms.CharField(required=False, max_length=10, label="OperatorID")
    q = forms.CharField(required=False, max_length=250, label="Correlation id, SessionID, EvseID or case ref")

    def filters(self) -> AuditLogFilters:
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return AuditLogFilters(
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
            event_type=data.get("event_type", ""),
            actor=data.get("actor", "").strip(),
            operator_id=data.get("operator", "").strip().upper(),
            q=data.get("q", "").strip(),
        )


class StartExportForm(AuditLogFilterForm):
    format = forms.ChoiceField(choices=AuditExport.Format.choices, initial=AuditExport.Format.CSV, label="Format")
