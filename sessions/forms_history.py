"""Filter forms of the stop history and the audit-log export (GET forms: the filters live in the URL)."""

import re

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


# --- a set of stop request ids, `?ids=12,13,14` or `?ids=12-14`: the admin's bulk stop links to its requests ---

HISTORY_IDS_MAX = 1000  # ids in one selection; a longer address is refused, not cut
_ID_OR_RANGE = re.compile(r"([0-9]{1,18})(?:-([0-9]{1,18}))?")


def parse_ids(value: str) -> list[int]:
    """`12,13,14`, `12-14` or a mix, as sorted distinct ids; ValidationError on anything else."""
    ids: set[int] = set()
    for part in (part.strip() for part in value.split(",")):
        if not part:
            continue
        match = _ID_OR_RANGE.fullmatch(part.replace(" ", ""))
        if match is None:
            raise forms.ValidationError(f"“{part}” is not a request id or a range of ids such as 12-14.")
        start = int(match[1])
        end = int(match[2]) if match[2] else start
        if start < 1 or end < start:
            raise forms.ValidationError(f"“{part}” is not a range of request ids: ids start at 1, the smaller first.")
        if end - start + 1 + len(ids) > HISTORY_IDS_MAX:
            raise forms.ValidationError(f"At most {HISTORY_IDS_MAX} requests can be selected at once.")
        ids.update(range(start, end + 1))
    if not ids:
        raise forms.ValidationError("Name at least one request id.")
    return sorted(ids)


def ids_param(ids) -> str:
    """The shortest `ids` value for these ids: runs of consecutive ids as ranges (`1-3,7,9-11`)."""
    parts, run = [], []
    for pk in sorted(set(ids)):
        if run and pk != run[-1] + 1:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 2 else ",".join(map(str, run)))
            run = []
        run.append(pk)
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 2 else ",".join(map(str, run)))
    return ",".join(parts)


class RequestIdsField(forms.CharField):
    def to_python(self, value):
        value = super().to_python(value)
        if not value:
            return None
        if len(value) > 20 * HISTORY_IDS_MAX:
            raise forms.ValidationError(f"At most {HISTORY_IDS_MAX} requests can be selected at once.")
        return parse_ids(value)


class StopHistoryForm(_DateRangeForm):
    agent = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Agent")
    operator = forms.CharField(required=False, max_length=10, label="OperatorID")
    state = forms.ChoiceField(required=False, choices=[("", "Any state"), *RemoteStopRequest.State.choices])
    code = forms.CharField(required=False, max_length=3, label="OICP code")
    reason = forms.ChoiceField(required=False, choices=[("", "Any reason"), *StopReason.choices])
    q = forms.CharField(required=False, max_length=250, label="Search")
    sort = forms.ChoiceField(required=False, choices=[(key, key) for key in HISTORY_SORTS])
    ids = RequestIdsField(required=False, label="Selected requests")

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
            # A selection that is not understood selects nothing (never every request).
            ids=tuple(data["ids"]) if data.get("ids") else (() if "ids" in self.errors else None),
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
