"""The stop's forms: the agent's stop dialog (and the admin's bulk stop), and the stop history's filters
with the `ids` selection the admin's bulk stop links to (GET: the filters live in the URL).

A value a user can type (in the form or the address bar) that cannot be used gets an error on its field.
"""

import re

from django import forms

from ..date_range_form import DateRangeForm
from ..models import RemoteStopRequest, StopReason
from .selectors import DEFAULT_HISTORY_SORT, HISTORY_SORTS, StopHistoryFilters


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


class AdminRemoteStopForm(RemoteStopForm):
    """The admin action's confirmation form; the same fields and rules as the agent's dialog."""


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


class StopHistoryForm(DateRangeForm):
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
