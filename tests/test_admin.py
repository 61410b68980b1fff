"""The Django admin: the stop action (delete_selected's shape) and read-only records."""


import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django.utils import timezone

from sessions import roles
from sessions.models import AuditRecord, ChargingSession, RemoteStopRequest, StopReason
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory, UserFactory

pytestmark = pytest.mark.usefixtures("no_broker")
CHANGELIST = reverse("admin:charging_sessions_chargingsession_changelist")




@pytest.fixture
def admin_client_for(client, db):
    def login(role):
        user = UserFactory(username=f"staff-{role}", role=role)
        user.is_staff = True
        user.save()
        client.force_login(user)
        return client

    return login


def action(pks, **extra):
    return {"action": "stop_selected_sessions", ACTION_CHECKBOX_NAME: [str(pk) for pk in pks], **extra}


def test_action_asks_for_confirmation_listing_the_sessions(admin_client_for):
    client = admin_client_for(roles.ADMIN)
    first, second = ChargingSessionFactory(), ChargingSessionFactory(status=ChargingSession.Status.CLOSED,
                                                                       ended_at=timezone.now())
    response = client.post(CHANGELIST, action([first.pk, second.pk]))
    content = response.content.decode()
    assert response.status_code == 200
    assert first.evse_id in content and second.evse_id in content
    assert "Will not be sent" in content and "Yes, send 1 stop" in content
    assert not RemoteStopRequest.objects.exists()


def test_confirmed_action_stops_eligible_sessions_through_the_service(admin_client_for):
    client = admin_client_for(roles.ADMIN)
    sessions = [ChargingSessionFactory() for _ in range(2)]
    busy = ChargingSessionFactory()
    RemoteStopRequestFactory(charging_session=busy)
    response = client.post(
        CHANGELIST,
        action([cs.pk for cs in [*sessions, busy]], post="yes", reason=StopReason.DUPLICATE_SESSION, case_reference="C-1"),
        follow=True,
    )
    assert response.status_code == 200
    created = RemoteStopRequest.objects.filter(reason=StopReason.DUPLICATE_SESSION)
    assert sorted(created.values_list("charging_session", flat=True)) == sorted(cs.pk for cs in sessions)
    assert AuditRecord.objects.filter(event_type=AuditRecord.EventType.STOP_REQUESTED).count() == 2
    messages = [str(m) for m in response.context["messages"]]
    assert any("2 stop request(s) queued" in m for m in messages)
    assert any(busy.evse_id in m and "still open" in m for m in messages)


def test_confirmation_without_reason_changes_nothing(admin_client_for):
    client = admin_client_for(roles.ADMIN)
    charging_session = ChargingSessionFactory()
    response = client.post(CHANGELIST, action([charging_session.pk], post="yes", reason=""))
    assert response.status_code == 200 and "Choose a reason" in response.content.decode()
    assert not RemoteStopRequest.objects.exists()


def test_auditor_has_no_stop_action(admin_client_for):
    client = admin_client_for(roles.AUDITOR)
    charging_session = ChargingSessionFactory()
    page = client.get(CHANGELIST)
    assert page.status_code == 200 and b"stop_selected_sessions" not in page.content
    client.post(CHANGELIST, action([charging_session.pk], post="yes", reason=StopReason.DRIVER_ASKED))
    assert not RemoteStopRequest.objects.exists()


@pytest.mark.parametrize("model", ["chargingsession", "remotestoprequest", "auditrecord"])
def test_records_are_read_only_even_for_superusers(client, db, model):
    superuser = UserFactory(username="root")
    superuser.is_superuser = superuser.is_staff = True
    superuser.save()
    client.force_login(superuser)
    stop = RemoteStopRequestFactory()
    record = AuditRecord.objects.create(event_type="STOP_REQUESTED", occurred_at=timezone.now(), stop_request=stop)
    obj = {"chargingsession": stop.charging_session, "remotestoprequest": stop, "auditrecord": record}[model]
    assert client.get(reverse(f"admin:charging_sessions_{model}_changelist")).status_code == 200
    assert client.get(reverse(f"admin:charging_sessions_{model}_add")).status_code == 403
    assert client.get(reverse(f"admin:charging_sessions_{model}_delete", args=[obj.pk])).status_code == 403
    change = client.post(reverse(f"admin:charging_sessions_{model}_change", args=[obj.pk]), {})
    assert change.status_code == 403


def test_an_audit_record_page_shows_its_data_as_json(admin_client_for):
    from sessions import services

    record = services.record_audit(event_type=AuditRecord.EventType.SESSION_UPDATED,
                                   data={"note": "Kabel <steckt>", "ok": None, "nested": {"b": 1, "a": True}})
    client = admin_client_for(roles.ADMIN)
    page = client.get(reverse("admin:charging_sessions_auditrecord_change", args=[record.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "&quot;ok&quot;: null" in html and "&quot;a&quot;: true" in html  # JSON, not a Python dict
    assert "Kabel &lt;steckt&gt;" in html  # escaped
