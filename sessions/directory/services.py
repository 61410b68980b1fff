"""Writes of the EVSE directory: the pull (`pull`), and what support admins add to an operator.

Hubject's name and hotline of a CPO come from the pull; an operator's escalation e-mail, hotline
hours and internal note come from the support team, each change audited with before and after,
and no pull ever writes them.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import transaction

from ..audit.records import record_audit
from ..models import AuditRecord, Operator
from .pull import EvsePullReport, next_last_call, pull_evse_data, pull_evse_data_periodically

__all__ = [
    "CONTACT_FIELDS",
    "EvsePullReport",
    "change_operator_contact",
    "next_last_call",
    "pull_evse_data",
    "pull_evse_data_periodically",
]

CONTACT_FIELDS = ("escalation_email", "hotline_hours", "internal_note")
PERMISSION = "charging_sessions.change_operator_contact"


def change_operator_contact(
    *, operator_id: int, acting_user, escalation_email: str, hotline_hours: str, internal_note: str
) -> Operator:
    """Set the support team's three fields of one operator; one OPERATOR_CONTACT_CHANGED record (before/after).

    Raises PermissionDenied without change_operator_contact, ValidationError for a bad e-mail or a
    too-long text; nothing changes then. Saving the same values again writes nothing.
    """
    if acting_user is None or not acting_user.has_perm(PERMISSION):
        raise PermissionDenied("Changing a CPO's contact details needs the change_operator_contact permission.")
    values = {
        "escalation_email": (escalation_email or "").strip(),
        "hotline_hours": (hotline_hours or "").strip(),
        "internal_note": (internal_note or "").strip(),
    }
    if values["escalation_email"]:
        validate_email(values["escalation_email"])
    limit = Operator._meta.get_field("hotline_hours").max_length
    if len(values["hotline_hours"]) > limit:
        raise ValidationError(f"Hotline hours: at most {limit} characters.")
    with transaction.atomic():
        operator = Operator.objects.select_for_update().get(pk=operator_id)
        before = {name: getattr(operator, name) for name in CONTACT_FIELDS}
        if before == values:
            return operator
        for name, value in values.items():
            setattr(operator, name, value)
        operator.save(update_fields=list(CONTACT_FIELDS))
        changed = [name for name in CONTACT_FIELDS if before[name] != values[name]]
        record_audit(
            event_type=AuditRecord.EventType.OPERATOR_CONTACT_CHANGED,
            actor=acting_user,
            data={
                "operator_id": operator.operator_id,
                "operator_name": operator.name,
                "changed": changed,
                "before": {name: before[name] for name in changed},
                "after": {name: values[name] for name in changed},
            },
        )
    return operator
