"""Support admins add what Hubject does not know about a CPO (audited); a pull never overwrites it."""

from __future__ import annotations

import pytest
import responses
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from sessions import roles, services
from sessions.models import AuditRecord, EvseRecord, Operator
from sessions.oicp.client import HubjectClient
from tests.factories import UserFactory

URL = "https://hbs.test/api/oicp/evsepull/v23/providers/DE-DCB/data-records"
CHANGE = "admin:charging_sessions_operator_change"

pytestmark = pytest.mark.django_db


def staff(client, role):
    user = UserFactory(username=f"staff-{role}".replace(" ", "-"), role=role)
    user.is_staff = True
    user.save()
    client.force_login(user)
    return user


def answer(name: str) -> dict:
    record = {"EvseID": "DE*ABC*E1*1", "OperatorID": "DE*ABC", "OperatorName": name, "HotlinePhoneNumber": "+491"}
    return {
        "content": [record],
        "number": 0,
        "size": 20,
        "totalElements": 1,
        "last": True,
        "totalPages": 1,
        "first": True,
        "numberOfElements": 1,
        "StatusCode": {"Code": "000"},
    }


def pull(name: str, *, full: bool = False):
    with responses.RequestsMock() as hbs:
        hbs.post(URL, json=answer(name))
        return services.pull_evse_data(
            client=HubjectClient(base_url="https://hbs.test", provider_id="DE-DCB"), full=full
        )


def form(**values):
    return {"escalation_email": "", "hotline_hours": "", "internal_note": "", **values}


def test_a_support_admin_edits_the_contact_fields_audited_and_a_pull_keeps_them(client):
    assert pull("ABC Energie").ok
    operator = Operator.objects.get()
    user = staff(client, roles.ADMIN)

    response = client.post(
        reverse(CHANGE, args=[operator.pk]),
        form(escalation_email="noc@abc.example", hotline_hours="24/7", internal_note="Ask for Jan", name="Hacked"),
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    operator.refresh_from_db()
    assert (operator.escalation_email, operator.hotline_hours, operator.internal_note) == (
        "noc@abc.example",
        "24/7",
        "Ask for Jan",
    )
    assert operator.name == "ABC Energie"  # Hubject's fields are read-only here
    record = AuditRecord.objects.get(event_type=AuditRecord.EventType.OPERATOR_CONTACT_CHANGED)
    assert record.actor == user
    assert record.data["before"] == {"escalation_email": "", "hotline_hours": "", "internal_note": ""}
    assert record.data["after"]["escalation_email"] == "noc@abc.example" and record.data["operator_id"] == "DE*ABC"

    assert pull("ABC Energie GmbH").ok and pull("ABC Energie GmbH", full=True).ok
    operator.refresh_from_db()
    assert operator.name == "ABC Energie GmbH" and operator.escalation_email == "noc@abc.example"
    assert (operator.hotline_hours, operator.internal_note) == ("24/7", "Ask for Jan")
    assert AuditRecord.objects.filter(event_type=AuditRecord.EventType.OPERATOR_CONTACT_CHANGED).count() == 1


def test_a_bad_email_changes_nothing(client):
    pull("ABC")
    operator = Operator.objects.get()
    staff(client, roles.SUPERVISOR)
    response = client.post(reverse(CHANGE, args=[operator.pk]), form(escalation_email="not-an-email"))
    assert response.status_code == 200
    operator.refresh_from_db()
    assert operator.escalation_email == ""
    assert not AuditRecord.objects.filter(event_type=AuditRecord.EventType.OPERATOR_CONTACT_CHANGED).exists()


def test_without_the_permission_the_operator_is_read_only(client):
    pull("ABC")
    operator = Operator.objects.get()
    auditor = staff(client, roles.AUDITOR)
    assert client.post(reverse(CHANGE, args=[operator.pk]), form(hotline_hours="x")).status_code == 403
    with pytest.raises(PermissionDenied):
        services.change_operator_contact(
            operator_id=operator.pk, acting_user=auditor, escalation_email="", hotline_hours="x", internal_note=""
        )
    operator.refresh_from_db()
    assert operator.hotline_hours == ""


def test_directory_lists_are_read_only_and_shown_to_support_admins(client):
    pull("ABC")
    staff(client, roles.ADMIN)
    for name in ("operator", "evserecord", "evsepullrun"):
        response = client.get(reverse(f"admin:charging_sessions_{name}_changelist"))
        assert response.status_code == 200, name
    evse = EvseRecord.objects.get()
    html = client.get(reverse("admin:charging_sessions_evserecord_change", args=[evse.pk])).content.decode()
    assert "DE*ABC*E1*1" in html and 'name="_save"' not in html
    assert client.get(reverse("admin:charging_sessions_evserecord_add")).status_code == 403
