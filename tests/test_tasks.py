"""The Celery task as an interface: one service call and the retry policy."""

from unittest import mock

import pytest
import responses
from celery.exceptions import Retry

from sessions import services, tasks
from sessions.models import RemoteStopRequest
from tests.factories import RemoteStopRequestFactory

State = RemoteStopRequest.State
STOP_URL = "http://127.0.0.1:9/api/oicp/charging/v21/providers/DE-EMP/authorize-remote/stop"


def test_task_options_are_safe_for_redelivery_and_slow_cpos(settings):
    task = tasks.send_remote_stop
    assert task.name == "charging_sessions.send_remote_stop"
    assert task.acks_late is True and task.ignore_result is True
    client_limit = settings.OICP_CONNECT_TIMEOUT_SECONDS + settings.OICP_TIMEOUT_SECONDS
    assert client_limit < task.soft_time_limit < task.time_limit
    assert settings.OICP_TIMEOUT_SECONDS > 60  # above Hubject's 60 s CPO window


def test_retries_with_the_services_countdown_on_a_transient_failure():
    outcome = services.SendOutcome(state=State.PENDING, retry_in=7.5)
    with (
        mock.patch.object(services, "send_remote_stop", return_value=outcome) as send,
        mock.patch.object(tasks.send_remote_stop, "retry", side_effect=Retry()) as retry,
    ):
        with pytest.raises(Retry):
            tasks.send_remote_stop(41)
    send.assert_called_once_with(stop_request_id=41, deferrals=0)  # the first run: not deferred yet
    retry.assert_called_once_with(countdown=7.5, queue="stop-retries")  # never in front of fresh stops


@pytest.mark.parametrize("state", [State.ACCEPTED, State.REJECTED, State.FAILED])
def test_not_retried_when_final(state):
    with (
        mock.patch.object(services, "send_remote_stop", return_value=services.SendOutcome(state=state)),
        mock.patch.object(tasks.send_remote_stop, "retry") as retry,
    ):
        tasks.send_remote_stop(41)
    retry.assert_not_called()


@responses.activate
def test_business_rejection_is_not_retried(db):
    stop = RemoteStopRequestFactory()
    responses.post(STOP_URL, json={"Result": False, "StatusCode": {"Code": "400", "Description": "Session is invalid"}})
    with mock.patch.object(tasks.send_remote_stop, "retry") as retry:
        tasks.send_remote_stop(stop.pk)
    retry.assert_not_called()
    stop.refresh_from_db()
    assert stop.state == State.REJECTED


@responses.activate
def test_transient_http_failure_is_retried(db):
    stop = RemoteStopRequestFactory()
    responses.post(STOP_URL, status=502, body="<html><body>502 Bad Gateway</body></html>")
    with mock.patch.object(tasks.send_remote_stop, "retry", side_effect=Retry()) as retry:
        with pytest.raises(Retry):
            tasks.send_remote_stop(stop.pk)
    assert retry.call_args.kwargs["countdown"] > 0
    stop.refresh_from_db()
    assert (stop.state, stop.attempt_count) == (State.PENDING, 1)


@responses.activate
def test_redelivered_message_does_nothing(db):
    stop = RemoteStopRequestFactory(state=State.ACCEPTED, attempt_count=1)
    tasks.send_remote_stop(stop.pk)
    tasks.send_remote_stop(stop.pk)
    assert len(responses.calls) == 0
    assert stop.audit_records.count() == 0


def test_unexpected_failure_closes_the_request(db):
    stop = RemoteStopRequestFactory(state=State.SENDING)
    tasks.send_remote_stop.on_failure(RuntimeError("boom"), "task-id", (stop.pk,), {}, None)
    stop.refresh_from_db()
    assert stop.state == State.FAILED and "boom" in stop.last_error
