"""The remote-stop service on the database: rules, guard, audit rows, enqueue after commit."""

from datetime import timedelta
from unittest import mock

import pytest
import responses
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from sessions import services
from sessions.models import AuditRecord, ChargingSession, RemoteStopRequest, StopReason
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory

pytestmark = pytest.mark.usefixtures("no_broker")
State = RemoteStopRequest.State
Event = AuditRecord.EventType
STOP_URL = "http://127.0.0.1:9/api/oicp/charging/v21/providers/DE-EMP/authorize-remote/stop"


def ack(result=True, code="000", description="Success"):
    return {"Result": result, "StatusCode": {"Code": code, "Description": description, "AdditionalInfo": None}}


def request_stop(charging_session, user, **kwargs):
    return services.request_remote_stop(
        charging_session_id=charging_session.pk,
        acting_user=user,
        reason=kwargs.pop("reason", StopReason.CABLE_LOCKED),
        **kwargs,
    ).stop_request


def events(stop_request):
    return list(stop_request.audit_records.order_by("pk").values_list("event_type", flat=True))


# --- request_remote_stop ---------------------------------------------------------------------


def test_request_creates_pending_request_and_audit_row(charging_session, agent):
    stop = request_stop(charging_session, agent, note=" driver on the phone ", case_reference="CASE-1")
    assert stop.state == State.PENDING
    assert (stop.note, stop.case_reference, stop.requested_by) == ("driver on the phone", "CASE-1", agent)
    record = stop.audit_records.get()
    assert record.event_type == Event.STOP_REQUESTED
    assert record.actor == agent
    assert record.correlation_id == stop.correlation_id
    assert record.charging_session == charging_session
    assert record.data["reason"] == StopReason.CABLE_LOCKED
    assert record.data["case_reference"] == "CASE-1"


def test_enqueues_only_after_commit(charging_session, agent, no_broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        stop = request_stop(charging_session, agent)
    assert no_broker.call_count == 0  # nothing is sent before the row is committed
    assert len(callbacks) == 1
    callbacks[0]()
    # Published on a connection of its own, bounded so a stalled broker cannot hold the agent's click.
    no_broker.assert_called_once_with(args=[stop.pk], retry=False, connection=mock.ANY)
    connection = no_broker.call_args.kwargs["connection"]
    bound = settings.STOP_PUBLISH_TIMEOUT_SECONDS
    assert bound <= 1.0 and connection.connect_timeout == bound
    assert {
        key: connection.transport_options[key]
        for key in ("socket_connect_timeout", "socket_timeout", "max_retries", "retry_on_timeout")
    } == {"socket_connect_timeout": bound, "socket_timeout": bound, "max_retries": 0, "retry_on_timeout": False}


def test_nothing_enqueued_when_the_transaction_rolls_back(
    charging_session, agent, no_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            request_stop(charging_session, agent)
            raise RuntimeError("something after the stop failed")
    assert callbacks == [] and no_broker.call_count == 0
    assert not RemoteStopRequest.objects.exists()


def test_broker_down_leaves_request_pending(charging_session, agent, no_broker, django_capture_on_commit_callbacks):
    no_broker.side_effect = ConnectionError("redis down")
    with django_capture_on_commit_callbacks(execute=True):
        stop = request_stop(charging_session, agent)
    stop.refresh_from_db()
    assert stop.state == State.PENDING


def test_refused_when_the_session_has_ended(agent):
    # Closed (its CDR arrived) is the end; "Charging ended" is not (tests/test_real_world_sessions.py).
    charging_session = ChargingSessionFactory(status=ChargingSession.Status.CLOSED, ended_at=timezone.now())
    with pytest.raises(services.StopNotAllowed):
        request_stop(charging_session, agent)
    assert not RemoteStopRequest.objects.exists()
    assert not AuditRecord.objects.exists()


def test_second_request_refused_while_one_is_open(charging_session, agent, other_agent):
    request_stop(charging_session, agent)
    with pytest.raises(services.StopNotAllowed, match="still open"):
        request_stop(charging_session, other_agent)
    assert RemoteStopRequest.objects.count() == 1
    assert AuditRecord.objects.count() == 1


def test_new_request_allowed_after_the_previous_one_is_final(charging_session, agent):
    RemoteStopRequestFactory(charging_session=charging_session, state=State.REJECTED)
    assert request_stop(charging_session, agent).state == State.PENDING


def test_database_guard_holds_without_the_python_check(charging_session, agent):
    RemoteStopRequestFactory(charging_session=charging_session, state=State.SENDING)
    with pytest.raises(IntegrityError), transaction.atomic():
        RemoteStopRequestFactory(charging_session=charging_session, state=State.PENDING)


def test_guard_turns_a_race_into_a_refusal(charging_session, agent, other_agent):
    # Simulate the other agent committing between our eligibility check and our insert.
    def racing_blocker(**kwargs):
        RemoteStopRequestFactory(charging_session=charging_session, requested_by=other_agent)
        return None  # the eligibility rule found nothing in the way

    with mock.patch("sessions.stops.selectors.stop_block", side_effect=racing_blocker):
        with pytest.raises(services.StopNotAllowed, match="already open"):
            request_stop(charging_session, agent)
    # The racing row was made inside our transaction here, so both roll back: nothing of ours stays.
    assert not AuditRecord.objects.filter(event_type=Event.STOP_REQUESTED).exists()


@pytest.mark.parametrize(
    "reason, note, message",
    [("NOT_A_REASON", "", "Choose a reason"), (StopReason.OTHER, "  ", "Explain")],
)
def test_bad_reason_is_refused_and_changes_nothing(charging_session, agent, reason, note, message):
    with pytest.raises(services.StopNotAllowed, match=message):
        request_stop(charging_session, agent, reason=reason, note=note)
    assert not RemoteStopRequest.objects.exists() and not AuditRecord.objects.exists()


def test_unknown_session_is_refused(agent, db):
    with pytest.raises(services.StopNotAllowed):
        services.request_remote_stop(charging_session_id=999999, acting_user=agent, reason=StopReason.OTHER, note="x")


# --- send_remote_stop --------------------------------------------------------------------------


@pytest.fixture
def pending(charging_session, agent):
    return request_stop(charging_session, agent)


@responses.activate
def test_accepted_stop_records_exact_exchange(pending):
    responses.post(STOP_URL, json=ack(), headers={"Process-ID": "proc-1"})
    outcome = services.send_remote_stop(stop_request_id=pending.pk)
    pending.refresh_from_db()
    assert outcome == services.SendOutcome(state=State.ACCEPTED)
    assert pending.state == State.ACCEPTED
    assert (pending.http_status, pending.oicp_code, pending.process_id) == (200, "000", "proc-1")
    assert pending.attempt_count == 1
    assert pending.first_sent_at and pending.answered_at and pending.finished_at
    assert events(pending) == [Event.STOP_REQUESTED, Event.STOP_SENDING, Event.STOP_ACCEPTED]
    accepted = pending.audit_records.get(event_type=Event.STOP_ACCEPTED)
    assert accepted.data["request"]["json"]["SessionID"] == pending.charging_session.session_id
    assert accepted.data["response"]["status"] == 200
    assert accepted.correlation_id == pending.correlation_id
    assert accepted.actor is None  # the worker is the system


@responses.activate
def test_business_rejection_is_final(pending):
    responses.post(STOP_URL, json=ack(False, "400", "Session is invalid"))
    outcome = services.send_remote_stop(stop_request_id=pending.pk)
    pending.refresh_from_db()
    assert outcome.retry_in is None
    assert (pending.state, pending.oicp_code, pending.oicp_description) == (State.REJECTED, "400", "Session is invalid")
    assert events(pending)[-1] == Event.STOP_REJECTED


@responses.activate
def test_transient_failure_schedules_a_retry_then_fails_after_max_attempts(pending, settings):
    settings.OICP_MAX_ATTEMPTS = 2
    responses.post(STOP_URL, status=503, body="<html>bad gateway</html>")
    first = services.send_remote_stop(stop_request_id=pending.pk)
    pending.refresh_from_db()
    assert first.retry_in is not None and first.retry_in > 0
    assert pending.state == State.PENDING and pending.next_attempt_at is not None
    # Not yet due: a duplicate message does nothing.
    pending.next_attempt_at = timezone.now() + timedelta(minutes=5)
    pending.save()
    assert services.send_remote_stop(stop_request_id=pending.pk).retry_in is None
    assert len(responses.calls) == 1
    RemoteStopRequest.objects.filter(pk=pending.pk).update(next_attempt_at=timezone.now())
    second = services.send_remote_stop(stop_request_id=pending.pk)
    pending.refresh_from_db()
    assert second.retry_in is None
    assert (pending.state, pending.attempt_count, pending.http_status) == (State.FAILED, 2, 503)
    assert events(pending) == [
        Event.STOP_REQUESTED,
        Event.STOP_SENDING,
        Event.STOP_ATTEMPT_FAILED,
        Event.STOP_SENDING,
        Event.STOP_FAILED,
    ]


@responses.activate
@pytest.mark.parametrize("state", [State.ACCEPTED, State.REJECTED, State.FAILED, State.SENDING])
def test_request_that_left_pending_is_not_sent_again(pending, state):
    RemoteStopRequest.objects.filter(pk=pending.pk).update(state=state)
    outcome = services.send_remote_stop(stop_request_id=pending.pk)
    assert outcome == services.SendOutcome(state=state)
    assert len(responses.calls) == 0


def test_missing_request_is_ignored(db):
    assert services.send_remote_stop(stop_request_id=424242).state == "MISSING"


@responses.activate
def test_busy_operator_defers_without_an_attempt(pending, settings):
    settings.OICP_PER_OPERATOR_CONCURRENCY = 1
    from sessions.concurrency import acquire_operator_slot, release_operator_slot

    slot = acquire_operator_slot(pending.charging_session.operator_id, limit=1, ttl=60)
    try:
        outcome = services.send_remote_stop(stop_request_id=pending.pk)
    finally:
        release_operator_slot(slot)
    pending.refresh_from_db()
    assert outcome.retry_in is not None
    assert (pending.state, pending.attempt_count) == (State.PENDING, 0)
    assert len(responses.calls) == 0


def test_a_stop_waiting_for_a_busy_cpo_looks_again_less_often_each_time_within_a_bound():
    from sessions.stops.services.sending import SLOT_WAIT_MAX_SECONDS, slot_wait_seconds

    first, later, much_later = (slot_wait_seconds(n) for n in (0, 4, 50))
    assert 0.5 <= first <= 0.75
    assert later > 0.75  # 0.5 × 1.5⁴ ≈ 2.5 s at the least
    assert SLOT_WAIT_MAX_SECONDS <= much_later <= SLOT_WAIT_MAX_SECONDS * 1.5


def test_mark_failed_closes_an_open_request_with_an_audit_row(pending):
    services.mark_remote_stop_failed(stop_request_id=pending.pk, error="SoftTimeLimitExceeded")
    pending.refresh_from_db()
    assert pending.state == State.FAILED
    assert events(pending)[-1] == Event.STOP_FAILED
    services.mark_remote_stop_failed(stop_request_id=pending.pk, error="again")  # final: no second row
    assert events(pending).count(Event.STOP_FAILED) == 1


def test_create_charging_session_derives_operator_and_upper_cases(db):
    charging_session = services.create_charging_session(
        session_id="B2688855-7F00-0002-6D8E-48D883F6ABB6",
        evse_id="de*abc*e123*1",
        provider_id="de-emp",
        started_at=timezone.now(),
        source="test",
    )
    assert (charging_session.evse_id, charging_session.operator_id, charging_session.provider_id) == (
        "DE*ABC*E123*1",
        "DE*ABC",
        "DE-EMP",
    )
    assert charging_session.audit_records.get().event_type == Event.SESSION_CREATED


@pytest.mark.parametrize("field, value", [("session_id", "not-a-guid"), ("evse_id", "XX"), ("provider_id", "D")])
def test_create_charging_session_rejects_bad_ids(db, field, value):
    kwargs = {
        "session_id": "b2688855-7f00-0002-6d8e-48d883f6abb6",
        "evse_id": "DE*ABC*E1",
        "provider_id": "DE-EMP",
        "started_at": timezone.now(),
        field: value,
    }
    with pytest.raises(ValueError):
        services.create_charging_session(**kwargs)
    assert not ChargingSession.objects.exists()


def test_accepted_stop_blocks_a_new_one_until_the_confirmation_window_passes(charging_session, agent, settings):
    settings.STOP_CONFIRMATION_MINUTES = 10
    accepted = RemoteStopRequestFactory(
        charging_session=charging_session, state=State.ACCEPTED, finished_at=timezone.now() - timedelta(minutes=3)
    )
    with pytest.raises(services.StopNotAllowed, match="was accepted"):
        request_stop(charging_session, agent)
    RemoteStopRequest.objects.filter(pk=accepted.pk).update(finished_at=timezone.now() - timedelta(minutes=11))
    assert request_stop(charging_session, agent).state == State.PENDING


@responses.activate
def test_stop_is_not_sent_when_the_cdr_arrived_while_it_was_queued(pending):
    ChargingSession.objects.filter(pk=pending.charging_session_id).update(
        status=ChargingSession.Status.CLOSED, cdr_received_at=timezone.now(), ended_at=timezone.now()
    )
    outcome = services.send_remote_stop(stop_request_id=pending.pk)
    pending.refresh_from_db()
    assert outcome.state == State.REJECTED and pending.state == State.REJECTED
    assert len(responses.calls) == 0 and pending.attempt_count == 0
    record = pending.audit_records.get(event_type=Event.STOP_REJECTED)
    assert record.data["failure_kind"] == "session_ended" and record.data["sent"] is False
    from sessions.stops import presenters as stop_advice

    progress = stop_advice.stop_progress(stop_request=pending)
    # The CDR closed the session: the card says so, whatever the stop was told (it was never sent).
    assert (progress.card.subject, progress.card.situation, progress.card.tone) == (
        "session_ended",
        "session_ended",
        "ok",
    )
    assert progress.card.code_line == "Session already ended."
    assert progress.card.tell_driver == "Your session has ended; you can unplug."
    assert progress.headline == "Rejected: Session already ended."
