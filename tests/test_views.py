"""The agent's screens over the Django test client: permissions, search, the stop POST, live status."""


import pytest
from django.urls import reverse

from sessions import roles
from sessions.models import AuditRecord, ChargingSession, RemoteStopRequest, StopReason
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory, UserFactory

pytestmark = pytest.mark.usefixtures("no_broker")
State = RemoteStopRequest.State




def stop_url(charging_session):
    return reverse("charging_sessions:request-stop", args=[charging_session.pk])


def detail_url(charging_session):
    return reverse("charging_sessions:session-detail", args=[charging_session.pk])


# --- who may see and do what ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["charging_sessions:session-list"])
def test_anonymous_is_sent_to_login(client, db, name):
    response = client.get(reverse(name))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_anonymous_cannot_post_a_stop(client, charging_session):
    response = client.post(stop_url(charging_session), {"reason": StopReason.DRIVER_ASKED})
    assert response.status_code == 302 and reverse("login") in response["Location"]
    assert not RemoteStopRequest.objects.exists()


def test_user_without_role_gets_403_everywhere(client, charging_session):
    client.force_login(UserFactory(username="nobody"))
    assert client.get(reverse("charging_sessions:session-list")).status_code == 403
    assert client.get(detail_url(charging_session)).status_code == 403
    assert client.post(stop_url(charging_session), {"reason": StopReason.DRIVER_ASKED}).status_code == 403


@pytest.mark.parametrize(
    "role, can_stop",
    [(roles.AGENT, True), (roles.ADMIN, True), (roles.SUPERVISOR, True), (roles.AUDITOR, False)],
)
def test_stop_button_and_post_follow_the_permission(client, charging_session, role, can_stop):
    client.force_login(UserFactory(username=f"u-{role}", role=role))
    page = client.get(detail_url(charging_session))
    assert page.status_code == 200
    assert (b'id="stop-button"' in page.content) is can_stop
    response = client.post(stop_url(charging_session), {"reason": StopReason.DRIVER_ASKED})
    assert response.status_code == (302 if can_stop else 403)
    assert RemoteStopRequest.objects.exists() is can_stop


def test_roles_module_matches_the_migrated_groups(db):
    from django.contrib.auth.models import Group

    for role, codenames in roles.ROLE_PERMISSIONS.items():
        group = Group.objects.get(name=role)
        assert sorted(group.permissions.values_list("codename", flat=True)) == sorted(codenames)


# --- the list and search ----------------------------------------------------------------------


def test_list_shows_active_sessions_with_open_stop_state(agent_client, agent):
    active = ChargingSessionFactory(evse_id="DE*ACC*E1*1")
    ChargingSessionFactory(evse_id="DE*ACC*E2*1", status=ChargingSession.Status.CLOSED)
    RemoteStopRequestFactory(charging_session=active, requested_by=agent)
    page = agent_client.get(reverse("charging_sessions:session-list"))
    assert page.status_code == 200
    assert b"DE*ACC*E1*1" in page.content and b"DE*ACC*E2*1" not in page.content
    assert b"Stop queued" in page.content
    assert page.context["page"].paginator.count == 1


@pytest.mark.parametrize("field", ["session_id", "evse_id", "emp_partner_session_id", "cpo_partner_session_id"])
def test_search_by_any_id_goes_straight_to_the_single_match(agent_client, field):
    target = ChargingSessionFactory(cpo_partner_session_id="CPO-777")
    ChargingSessionFactory()
    value = getattr(target, field)
    response = agent_client.get(reverse("charging_sessions:session-list"), {"q": value.lower() if field == "evse_id" else value})
    assert response.status_code == 302 and response["Location"] == detail_url(target)


def test_search_with_several_matches_lists_them(agent_client):
    ChargingSessionFactory(evse_id="DE*ACC*E9*1")
    ChargingSessionFactory(evse_id="DE*ACC*E9*2")
    response = agent_client.get(reverse("charging_sessions:session-list"), {"q": "DE*ACC*E9"})
    assert response.status_code == 200 and response.context["page"].paginator.count == 2


def test_bad_filter_values_do_not_fail(agent_client):
    response = agent_client.get(reverse("charging_sessions:session-list"), {"stale_hours": "abc", "page": "zz"})
    assert response.status_code == 200


def test_htmx_refresh_returns_only_the_rows(agent_client, charging_session):
    response = agent_client.get(reverse("charging_sessions:session-list"), HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and b"<html" not in response.content
    assert charging_session.evse_id.encode() in response.content


def test_unknown_session_is_404(agent_client, db):
    assert agent_client.get(reverse("charging_sessions:session-detail", args=[999])).status_code == 404
    assert agent_client.post(reverse("charging_sessions:request-stop", args=[999]), {"reason": "OTHER"}).status_code == 404


# --- the stop ---------------------------------------------------------------------------------


def test_post_creates_one_request_and_shows_live_status(agent_client, charging_session, agent):
    response = agent_client.post(
        stop_url(charging_session), {"reason": StopReason.CABLE_LOCKED, "note": "stuck", "case_reference": "T-9"},
        follow=True,
    )
    stop = RemoteStopRequest.objects.get()
    assert (stop.requested_by, stop.reason, stop.case_reference) == (agent, StopReason.CABLE_LOCKED, "T-9")
    content = response.content.decode()
    assert 'id="stop-status"' in content and 'hx-trigger="every 1s"' in content
    assert "still open" in content  # the button is now disabled with its reason
    assert 'id="stop-button"' in content and "disabled" in content


def test_double_click_causes_one_request(agent_client, charging_session, no_broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        agent_client.post(stop_url(charging_session), {"reason": StopReason.DRIVER_ASKED})
        second = agent_client.post(stop_url(charging_session), {"reason": StopReason.DRIVER_ASKED}, follow=True)
    assert RemoteStopRequest.objects.count() == 1
    assert no_broker.call_count == 1
    assert "still open" in second.content.decode()


def test_invalid_form_changes_nothing(agent_client, charging_session):
    response = agent_client.post(stop_url(charging_session), {"reason": "BOGUS"}, follow=True)
    assert "The stop was not sent" in response.content.decode()
    assert not RemoteStopRequest.objects.exists() and not AuditRecord.objects.exists()


def test_other_without_note_is_refused_next_to_the_reason(agent_client, charging_session):
    response = agent_client.post(stop_url(charging_session), {"reason": StopReason.OTHER}, follow=True)
    assert "Explain the reason" in response.content.decode()
    assert not RemoteStopRequest.objects.exists()


def test_get_on_stop_url_is_not_allowed(agent_client, charging_session):
    assert agent_client.get(stop_url(charging_session)).status_code == 405


def test_closed_session_shows_disabled_button_with_reason(agent_client):
    from django.utils import timezone

    closed = ChargingSessionFactory(status=ChargingSession.Status.CLOSED, ended_at=timezone.now())
    content = agent_client.get(detail_url(closed)).content.decode()
    assert "disabled" in content and "The session has ended" in content
    assert 'id="stop-dialog"' not in content


def test_status_fragment_polls_until_final_then_shows_playbook(agent_client, charging_session, agent):
    stop = RemoteStopRequestFactory(charging_session=charging_session, requested_by=agent, state=State.SENDING,
                                    attempt_count=1)
    url = reverse("charging_sessions:stop-status", args=[stop.pk])
    open_fragment = agent_client.get(url)
    assert b'hx-trigger="every 1s"' in open_fragment.content and "HX-Trigger" not in open_fragment
    assert agent_client.get(url, {"seen": "SENDING"}).get("HX-Trigger") is None  # unchanged: nothing to refresh
    RemoteStopRequest.objects.filter(pk=stop.pk).update(
        state=State.REJECTED, oicp_code="501", oicp_description="Communication to EVSE failed.", http_status=200
    )
    final = agent_client.get(url, {"seen": "SENDING"})
    content = final.content.decode()
    assert b"every 1s" not in final.content and b"hx-get" not in final.content  # polling ends
    assert final["HX-Trigger"] == "stop-changed"
    assert "OICP 501" in content and "Tell the driver" in content and "Next step" in content


def test_csrf_is_enforced_on_the_stop(charging_session, agent):
    from django.test import Client

    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(agent)
    response = csrf_client.post(stop_url(charging_session), {"reason": StopReason.DRIVER_ASKED})
    assert response.status_code == 403
    assert not RemoteStopRequest.objects.exists()
