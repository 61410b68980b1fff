"""The stuck-sessions queue, re-sending a stop, closing by hand, and unconfirmed stops."""

from datetime import timedelta
from unittest import mock

import pytest
from django.urls import reverse
from django.utils import timezone

from sessions import roles, services
from sessions.models import AuditRecord, ChargingSession, RemoteStopRequest, StopReason
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory, UserFactory

pytestmark = pytest.mark.usefixtures("no_broker")
State = RemoteStopRequest.State
Event = AuditRecord.EventType
STUCK = reverse("charging_sessions:stuck-sessions")


@pytest.fixture
def supervisor_client(client, db):
    client.force_login(UserFactory(username="sup", role=roles.SUPERVISOR))
    return client


def test_accepted_stop_becomes_unconfirmed_after_the_window(db, settings):
    settings.STOP_CONFIRMATION_MINUTES = 10
    now = timezone.now()
    late = RemoteStopRequestFactory(state=State.ACCEPTED, finished_at=now - timedelta(minutes=11))
    recent = RemoteStopRequestFactory(state=State.ACCEPTED, finished_at=now - timedelta(minutes=9))
    assert services.mark_unconfirmed_stops(now=now) == 1
    late.refresh_from_db(), recent.refresh_from_db()
    assert (late.state, recent.state) == (State.UNCONFIRMED, State.ACCEPTED)
    assert late.audit_records.get().event_type == Event.STOP_UNCONFIRMED
    # With the clock moved on, the other one follows.
    assert services.mark_unconfirmed_stops(now=now + timedelta(minutes=2)) == 1


def test_confirmation_records_source_and_time(db):
    stop = RemoteStopRequestFactory(state=State.ACCEPTED, requested_at=timezone.now() - timedelta(seconds=90))
    at = timezone.now()
    assert services.confirm_remote_stops(charging_session=stop.charging_session, confirmed_by="CDR", at=at) == 1
    stop.refresh_from_db()
    assert (stop.state, stop.confirmed_by, stop.confirmed_at) == (State.CONFIRMED, "CDR", at)
    assert 89 <= stop.time_to_confirmation.total_seconds() <= 91
    # A late confirmation also settles an UNCONFIRMED stop.
    late = RemoteStopRequestFactory(state=State.UNCONFIRMED)
    services.confirm_remote_stops(charging_session=late.charging_session, confirmed_by="END")
    late.refresh_from_db()
    assert late.state == State.CONFIRMED


def test_queue_lists_unconfirmed_stops_and_silent_sessions_oldest_first(supervisor_client, settings):
    settings.STUCK_SESSION_HOURS = 4
    now = timezone.now()
    newer = RemoteStopRequestFactory(state=State.UNCONFIRMED, finished_at=now - timedelta(minutes=20), oicp_code="000")
    older = RemoteStopRequestFactory(state=State.UNCONFIRMED, finished_at=now - timedelta(hours=2), oicp_code="000")
    silent = ChargingSessionFactory(last_update_at=now - timedelta(hours=6), evse_id="DE*SIL*E1*1")
    ChargingSessionFactory(last_update_at=now - timedelta(hours=1), evse_id="DE*FRS*E1*1")
    page = supervisor_client.get(STUCK)
    assert page.status_code == 200
    queue = page.context["queue"]
    assert [s.pk for s in queue.unconfirmed] == [older.pk, newer.pk]
    assert [s.pk for s in queue.stale] == [silent.pk]
    content = page.content.decode()
    assert "DE*SIL*E1*1" in content and "DE*FRS*E1*1" not in content
    assert "Send stop again" in content and "Close by hand" in content


@pytest.mark.parametrize(
    "role, status", [(roles.AGENT, 403), (roles.AUDITOR, 403), (roles.ADMIN, 200), (roles.SUPERVISOR, 200)]
)
def test_queue_is_for_supervisors_and_admins(client, db, role, status):
    client.force_login(UserFactory(username=f"u-{role}", role=role))
    assert client.get(STUCK).status_code == status


def test_resend_creates_a_new_audited_request(supervisor_client):
    old = RemoteStopRequestFactory(state=State.UNCONFIRMED, reason=StopReason.CABLE_LOCKED, case_reference="C-7")
    url = reverse("charging_sessions:resend-stop", args=[old.pk])
    # The reason is confirmed again, as in the session page's dialog: without it nothing is sent.
    assert supervisor_client.post(url).status_code == 200 and RemoteStopRequest.objects.count() == 1
    response = supervisor_client.post(url, {"reason": StopReason.CABLE_LOCKED}, follow=True)
    assert response.status_code == 200
    new = RemoteStopRequest.objects.exclude(pk=old.pk).get()
    assert (new.state, new.reason, new.case_reference) == (State.PENDING, StopReason.CABLE_LOCKED, "C-7")
    assert f"#{old.pk}" in new.note
    assert new.audit_records.get().actor.username == "sup"


def test_resend_refused_for_an_accepted_stop(supervisor_client):
    stop = RemoteStopRequestFactory(state=State.ACCEPTED, finished_at=timezone.now())
    response = supervisor_client.post(
        reverse("charging_sessions:resend-stop", args=[stop.pk]), {"reason": StopReason.DRIVER_ASKED}, follow=True
    )
    assert "Not sent again" in response.content.decode()
    assert RemoteStopRequest.objects.count() == 1


def test_close_by_hand_needs_a_reason_and_is_marked_as_not_a_remote_stop(supervisor_client):
    charging_session = ChargingSessionFactory()
    url = reverse("charging_sessions:close-session", args=[charging_session.pk])
    refused = supervisor_client.post(url, {"reason": " "}, follow=True)
    assert "Not closed" in refused.content.decode()
    charging_session.refresh_from_db()
    assert charging_session.status == ChargingSession.Status.ACTIVE
    supervisor_client.post(url, {"reason": "CPO hotline confirmed the car left at 10:40"})
    charging_session.refresh_from_db()
    assert (charging_session.status, charging_session.closed_manually) == (ChargingSession.Status.CLOSED, True)
    record = charging_session.audit_records.get(event_type=Event.SESSION_CLOSED_MANUALLY)
    assert record.data["remote_stop_sent"] is False and record.actor.username == "sup"
    assert not RemoteStopRequest.objects.exists()


def test_close_refused_while_a_stop_is_being_sent(supervisor_client):
    stop = RemoteStopRequestFactory(state=State.SENDING)
    supervisor_client.post(
        reverse("charging_sessions:close-session", args=[stop.charging_session_id]),
        {"reason": "driver says it is over"},
    )
    stop.charging_session.refresh_from_db()
    assert stop.charging_session.status == ChargingSession.Status.ACTIVE


def test_agent_cannot_close_or_resend(client, db):
    client.force_login(UserFactory(username="ag", role=roles.AGENT))
    stop = RemoteStopRequestFactory(state=State.UNCONFIRMED)
    assert client.post(reverse("charging_sessions:resend-stop", args=[stop.pk])).status_code == 403
    assert (
        client.post(
            reverse("charging_sessions:close-session", args=[stop.charging_session_id]), {"reason": "because"}
        ).status_code
        == 403
    )


# --- the sweeper ------------------------------------------------------------------------------


def test_sweeper_redispatches_old_pending_requests_only(db, settings, no_broker):
    settings.STOP_REDISPATCH_AFTER_SECONDS = 60
    old = RemoteStopRequestFactory(requested_at=timezone.now() - timedelta(minutes=5))
    RemoteStopRequestFactory(requested_at=timezone.now())  # just made: its own message is on the way
    RemoteStopRequestFactory(
        requested_at=timezone.now() - timedelta(minutes=5), next_attempt_at=timezone.now() + timedelta(seconds=30)
    )  # a retry is scheduled
    assert services.sweep_stop_requests() == {"redispatched": 1, "recovered": 0}
    no_broker.assert_called_once_with(args=[old.pk], retry=False, connection=mock.ANY)


def test_sweeper_recovers_a_request_a_dead_worker_left_in_sending(db, settings, no_broker):
    settings.OICP_MAX_ATTEMPTS = 3
    stuck = RemoteStopRequestFactory(
        state=State.SENDING, attempt_count=1, last_sent_at=timezone.now() - timedelta(hours=1)
    )
    exhausted = RemoteStopRequestFactory(
        state=State.SENDING, attempt_count=3, last_sent_at=timezone.now() - timedelta(hours=1)
    )
    assert services.sweep_stop_requests()["recovered"] == 2
    stuck.refresh_from_db(), exhausted.refresh_from_db()
    assert (stuck.state, stuck.outcome_unknown) == (State.PENDING, True)
    assert (exhausted.state, exhausted.outcome_unknown) == (State.FAILED, True)
    assert exhausted.audit_records.get().data["failure_kind"] == "worker_lost"
    no_broker.assert_called_once_with(args=[stuck.pk], retry=False, connection=mock.ANY)
