"""The agent's screens over the Django test client: permissions, search, the stop POST, live status."""

import html
from unittest import mock

import pytest
from django.urls import reverse
from django.utils import timezone

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


@pytest.mark.django_db(transaction=True)
def test_roles_come_back_after_a_flush_and_lose_what_they_should_not_hold():
    """post_migrate (after migrate, and after the flush that ends a transactional test) makes the
    groups hold exactly sessions/roles.py's permissions: nothing imports a migration for it."""
    from django.contrib.auth.models import Group, Permission
    from django.core.management import call_command

    agent = Group.objects.get(name=roles.AGENT)
    agent.permissions.add(Permission.objects.get(codename="export_auditrecord"))  # granted by hand
    call_command("flush", "--no-input")
    assert Group.objects.count() == len(roles.ROLE_PERMISSIONS)
    for role, codenames in roles.ROLE_PERMISSIONS.items():
        assert sorted(Group.objects.get(name=role).permissions.values_list("codename", flat=True)) == sorted(codenames)
    agent = Group.objects.get(name=roles.AGENT)
    agent.permissions.add(Permission.objects.get(codename="export_auditrecord"))
    call_command("migrate", verbosity=0)
    assert "export_auditrecord" not in agent.permissions.values_list("codename", flat=True)


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
    response = agent_client.get(
        reverse("charging_sessions:session-list"), {"q": value.lower() if field == "evse_id" else value}
    )
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
    assert (
        agent_client.post(reverse("charging_sessions:request-stop", args=[999]), {"reason": "OTHER"}).status_code == 404
    )


# --- the stop ---------------------------------------------------------------------------------


def test_post_creates_one_request_and_shows_live_status(agent_client, charging_session, agent):
    response = agent_client.post(
        stop_url(charging_session),
        {"reason": StopReason.CABLE_LOCKED, "note": "stuck", "case_reference": "T-9"},
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
    stop = RemoteStopRequestFactory(
        charging_session=charging_session, requested_by=agent, state=State.SENDING, attempt_count=1
    )
    url = reverse("charging_sessions:stop-status", args=[stop.pk])
    open_fragment = agent_client.get(url)
    assert b'hx-trigger="every 1s"' in open_fragment.content and "HX-Trigger" not in open_fragment
    assert b"seen=SENDING.ACTIVE" in open_fragment.content  # the state of the stop and of its session
    assert agent_client.get(url, {"seen": "SENDING.ACTIVE"}).get("HX-Trigger") is None  # unchanged: nothing to refresh
    RemoteStopRequest.objects.filter(pk=stop.pk).update(
        state=State.REJECTED, oicp_code="501", oicp_description="Communication to EVSE failed.", http_status=200
    )
    final = agent_client.get(url, {"seen": "SENDING.ACTIVE"})
    content = final.content.decode()
    # The stop is settled; the card still follows the session slowly (an End or a CDR changes the advice).
    assert b"every 1s" not in final.content and b'hx-trigger="every 5s"' in final.content
    assert final["HX-Trigger"] == "stop-changed"
    assert "OICP 501" in content and "Tell the driver" in content and "Next step" in content
    # The CDR arrives: the card says the session is over, and polling ends.
    ChargingSession.objects.filter(pk=charging_session.pk).update(
        status=ChargingSession.Status.CLOSED, cdr_received_at=timezone.now(), ended_at=timezone.now()
    )
    closed = agent_client.get(url, {"seen": "REJECTED.ACTIVE"})
    assert b"hx-get" not in closed.content and b"hx-trigger" not in closed.content  # polling ends
    assert closed["HX-Trigger"] == "stop-changed"
    assert "Your session has ended; you can unplug." in html.unescape(closed.content.decode())


# --- every submit answers in place (htmx): the dialog, the stop area --------------------------------


def htmx_post(client, charging_session, data):
    return client.post(stop_url(charging_session), data, HTTP_HX_REQUEST="true")


def test_a_field_error_answers_inside_the_dialog_next_to_its_field(agent_client, charging_session):
    response = htmx_post(agent_client, charging_session, {"reason": StopReason.OTHER, "case_reference": "T-1"})
    content = html.unescape(response.content.decode())
    assert response.status_code == 200  # htmx swaps 2xx only
    assert "HX-Retarget" not in response and "HX-Trigger-After-Settle" not in response  # the dialog stays open
    assert content.lstrip().startswith('<form id="stop-form"')  # it replaces the form inside the dialog
    assert '<p class="field-error" id="note-error">Explain the reason when you choose “Other”.</p>' in content
    assert 'aria-describedby="note-help note-error" aria-invalid="true"' in content
    assert '<option value="OTHER" selected>' in content and 'value="T-1"' in content  # what was chosen stays
    assert "hx-disabled-elt=\"find button[type='submit']\"" in content  # the button comes back after the answer
    assert not RemoteStopRequest.objects.exists() and not AuditRecord.objects.exists()


def test_a_missing_reason_is_said_next_to_the_reason(agent_client, charging_session):
    content = htmx_post(agent_client, charging_session, {"reason": ""}).content.decode()
    assert '<p class="field-error" id="reason-error">Choose a reason for the stop.</p>' in content
    assert 'aria-invalid="true" aria-describedby="reason-error"' in content
    assert not RemoteStopRequest.objects.exists()


def test_a_refusal_answers_in_the_stop_area(agent_client, charging_session, agent):
    RemoteStopRequestFactory(
        charging_session=charging_session, requested_by=agent, state=State.SENDING, attempt_count=1
    )
    response = htmx_post(agent_client, charging_session, {"reason": StopReason.DRIVER_ASKED})
    content = html.unescape(response.content.decode())
    assert (response["HX-Retarget"], response["HX-Reswap"]) == ("#stop-area", "outerHTML")
    assert response["HX-Trigger-After-Settle"] == "stop-dialog-done"  # the page closes the dialog
    assert (
        '<p id="stop-refusal" class="notice tone-bad" role="alert" tabindex="-1"><span class="tone-mark" '
        'aria-hidden="true">✕</span> The stop was not sent: A stop requested just now is still open (waiting '
        "for Hubject's answer).</p>"
    ) in content
    assert content.lstrip().startswith('<div id="stop-area"') and 'id="stop-status"' in content
    assert '<form id="stop-form"' in content and 'hx-swap-oob="true"' in content  # a fresh form for the dialog
    assert RemoteStopRequest.objects.count() == 1


@pytest.mark.django_db(transaction=True)  # real commits: the publish runs inside the request, as in production
def test_a_stop_answers_in_the_stop_area_and_the_broker_warning_says_saved(agent_client, charging_session):
    from sessions.stops import presenters as stop_advice

    with mock.patch("sessions.stops.services.request.dispatch_remote_stop", return_value=False):
        response = htmx_post(agent_client, charging_session, {"reason": StopReason.CABLE_LOCKED})
    content = html.unescape(response.content.decode())
    assert (
        f'role="alert" tabindex="-1"><span class="tone-mark" aria-hidden="true">⚠</span> '
        f"{stop_advice.QUEUED_WHILE_WORKER_UNREACHABLE}</p>" in content
    )
    assert 'id="stop-queued"' in content
    assert RemoteStopRequest.objects.get().state == State.PENDING
    assert 'id="stop-button"' in content and "disabled" in content  # the open stop blocks a second one

    RemoteStopRequest.objects.update(state=State.REJECTED, oicp_code="400", finished_at=timezone.now())
    second = htmx_post(agent_client, charging_session, {"reason": StopReason.CABLE_LOCKED})  # no_broker: taken
    assert 'id="stop-requested" class="notice tone-info" role="status"' in second.content.decode()
    assert stop_advice.REQUESTED in second.content.decode()


def test_the_session_page_has_the_shortcuts_and_the_dialog_even_while_a_stop_is_open(
    agent_client, charging_session, agent
):
    RemoteStopRequestFactory(charging_session=charging_session, requested_by=agent)
    content = agent_client.get(detail_url(charging_session)).content.decode()
    assert 'aria-keyshortcuts="s"' in content and 'id="shortcuts-dialog"' in content
    assert "<kbd>s</kbd></dt><dd>Open the stop dialog" in content
    # The dialog is there for when the button is enabled again (no reload needed).
    assert 'id="stop-dialog"' in content and 'id="stop-button"' in content


def test_csrf_is_enforced_on_the_stop(charging_session, agent):
    from django.test import Client

    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(agent)
    response = csrf_client.post(stop_url(charging_session), {"reason": StopReason.DRIVER_ASKED})
    assert response.status_code == 403
    assert not RemoteStopRequest.objects.exists()
