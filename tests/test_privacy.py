"""An agent sees that another agent stopped a session, when, and its outcome, but never that agent's
note, case reference or exact request and response: not on the session page, not in the stop-status
fragment the page polls, not in the timeline (nor in its refresh). Whoever holds
`charging_sessions.view_all_remote_stops` (support admins, supervisors, auditors) sees all of it."""

import html

import pytest
from django.urls import reverse

from sessions import roles, services
from sessions.audit.records import record_audit
from sessions.models import AuditRecord, RemoteStopRequest, StopReason
from tests.factories import ChargingSessionFactory, UserFactory

pytestmark = pytest.mark.usefixtures("no_broker")
State = RemoteStopRequest.State
Event = AuditRecord.EventType

SECRETS = (
    "Driver sounded drunk, keep this quiet",
    "CASE-SECRET-4711",
    "request-secret-marker",
    "response-secret-marker",
)


@pytest.fixture
def stopped(db, agent):
    """agent-a's stop with a note, a case reference and the exact exchange with Hubject."""
    charging_session = ChargingSessionFactory(evse_id="DE*ACC*E77*1")
    stop = services.request_remote_stop(
        charging_session_id=charging_session.pk,
        acting_user=agent,
        reason=StopReason.SUSPECTED_MISUSE,
        note=SECRETS[0],
        case_reference=SECRETS[1],
    ).stop_request
    RemoteStopRequest.objects.filter(pk=stop.pk).update(
        state=State.REJECTED, oicp_code="501", http_status=200, attempt_count=1
    )
    stop.refresh_from_db()
    record_audit(
        event_type=Event.STOP_REJECTED,
        stop_request=stop,
        data={
            "attempt": 1,
            "oicp_code": "501",
            "description": "Communication to EVSE failed.",
            "request": {"SessionID": charging_session.session_id, "x": SECRETS[2]},
            "response": {"status": 200, "body": {"StatusCode": {"Code": "501"}, "y": SECRETS[3]}},
        },
    )
    return stop


def pages(client, stop):
    """Everything the session page is made of, as the browser loads and refreshes it."""
    detail = reverse("charging_sessions:session-detail", args=[stop.charging_session_id])
    status = reverse("charging_sessions:stop-status", args=[stop.pk])
    return {
        "page": client.get(detail),
        "timeline refresh": client.get(detail, HTTP_HX_REQUEST="true"),
        "fragment": client.get(status),
        "fragment polled": client.get(status, {"seen": "SENDING.ACTIVE"}, HTTP_HX_REQUEST="true"),
    }


def words(response) -> str:
    return html.unescape(response.content.decode())


def test_another_agent_sees_who_when_and_the_outcome_but_no_note_case_or_exchange(client, stopped, other_agent):
    client.force_login(other_agent)
    for where, response in pages(client, stopped).items():
        assert response.status_code == 200, where
        content = words(response)
        for secret in SECRETS:
            assert secret not in content, (where, secret)
    page = words(pages(client, stopped)["page"])
    assert "agent-a" in page  # who stopped it
    assert "Stop rejected" in page and "OICP 501" in page  # its outcome
    assert 'datetime="' in page  # when
    assert "visible to the agent who sent the stop" in page  # and why the rest is not shown
    # The stop's own page in the history is not theirs either.
    assert client.get(reverse("charging_sessions:stop-timeline", args=[stopped.pk])).status_code == 404


def test_the_agent_who_stopped_it_sees_their_own_note_and_exchange(client, stopped, agent):
    client.force_login(agent)
    page = words(pages(client, stopped)["page"])
    for secret in SECRETS:
        assert secret in page, secret


@pytest.mark.parametrize("role", [roles.ADMIN, roles.SUPERVISOR, roles.AUDITOR])
def test_admins_supervisors_and_auditors_see_everything(client, stopped, role):
    client.force_login(UserFactory(username=f"u-{role}", role=role))
    assert client.get("/").status_code == 200
    page = words(pages(client, stopped)["page"])
    for secret in SECRETS:
        assert secret in page, (role, secret)


def test_a_closed_by_hand_reason_is_the_supervisors_note(client, agent, db):
    supervisor = UserFactory(username="sup-b", role=roles.SUPERVISOR)
    charging_session = ChargingSessionFactory()
    services.close_session_manually(
        charging_session_id=charging_session.pk,
        acting_user=supervisor,
        reason="hotline says the customer is a known fraudster",
    )
    client.force_login(agent)
    page = words(client.get(reverse("charging_sessions:session-detail", args=[charging_session.pk])))
    assert "Session closed by hand" in page and "sup-b" in page
    assert "fraudster" not in page
