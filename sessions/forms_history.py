"""Filter forms of the stop history and the audit-log export (GET forms: the filters live in the URL).

A value a user can type (in the form or the address bar) that cannot be used gets an error on its
field; nothing is exported from a form with errors, and no date answers 500.
"""

import re
from datetime import date

from django import forms
from django.utils import timezone

from .models import AuditExport, AuditRecord, RemoteStopRequest, StopReason
from .selectors_history import (
    DEFAULT_HISTORY_SORT,
    HISTORY_SORTS,
    PERIODS,
    AuditLogFilters,
    StopHistoryFilters,
    period_days,
)

FIRST_DAY = date(2000, 1, 1)  # before the portal existed: nothing older can be in it


def last_day() -> date:
    """The last day a filter may name: the end of next year (a range may reach into the future)."""
    return date(timezone.localdate(timezone.now(), timezone.get_default_timezone()).year + 1, 12, 31)


class _DateRangeForm(forms.Form):
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
        self.is_valid()  # fields with a bad value are left out (their error is shown); the others still apply
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


# --- the audit-log export ------------------------------------------------------------------------

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


class AuditLogFilterForm(_DateRangeForm):
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
