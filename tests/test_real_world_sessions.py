"""Sessions as Hubject and CPOs really run them (issue 11): the cable-stuck stop after End, messages
that do not match their session, a second CDR that disagrees, SessionIDs in any case, stops whose
outcome is unknown, and bodies sent chunked."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
import requests
import responses
from django.test import Client
from django.test.client import ClientHandler
from django.utils import timezone

from sessions import services
from sessions.charging import selectors
from sessions.models import AuditRecord, ChargeDetailRecord, ChargingSession, InboundMessage, RemoteStopRequest
from sessions.stops import presenters as stop_advice
from tests.factories import ChargingSessionFactory

pytestmark = pytest.mark.django_db
NOTIFY_URL = "/api/oicp/notificationmgmt/v11/charging-notifications"
STOP_URL = "http://127.0.0.1:9/api/oicp/charging/v21/providers/DE-EMP/authorize-remote/stop"
State = RemoteStopRequest.State
Status = ChargingSession.Status
Event = AuditRecord.EventType
EVSE = "DE*ACC*E00001*1"


def cdr_url(operator_id: str = "DE*ACC") -> str:
    return f"/api/oicp/cdrmgmt/v22/operators/{operator_id}/charge-detail-record"


def end(session_id: str, evse_id: str = EVSE, **more) -> dict:
    return {
        "Type": "End",
        "SessionID": session_id,
        "EvseID": evse_id,
        "OperatorID": "DE*ACC",
        "ChargingEnd": "2026-12-06T10:30:00+01:00",
        "ConsumedEnergy": 21.5,
        **more,
    }


def cdr(session_id: str, evse_id: str = EVSE, **more) -> dict:
    return {
        "SessionID": session_id,
        "EvseID": evse_id,
        "Identification": {"RemoteIdentification": {"EvcoID": "DE-EMP-C12345678-X"}},
        "ChargingStart": "2026-12-06T09:00:00+01:00",
        "ChargingEnd": "2026-12-06T10:30:00+01:00",
        "SessionStart": "2026-12-06T08:59:00+01:00",
        "SessionEnd": "2026-12-06T10:45:00+01:00",
        "ConsumedEnergy": 21.5,
        **more,
    }


def push(client: Client, url: str, body: dict) -> dict:
    response = client.post(url, data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def stop(charging_session, agent, **state) -> RemoteStopRequest:
    stop_request = services.request_remote_stop(
        charging_session_id=charging_session.pk, acting_user=agent, reason="CABLE_LOCKED"
    ).stop_request
    if state:
        RemoteStopRequest.objects.filter(pk=stop_request.pk).update(**state)
        stop_request.refresh_from_db()
    return stop_request


def accepted(**more) -> dict:
    now = timezone.now()
    return {
        "state": State.ACCEPTED,
        "attempt_count": 1,
        "first_sent_at": now,
        "last_sent_at": now,
        "http_status": 200,
        "oicp_code": "000",
        "finished_at": now,
        **more,
    }


# --- the cable-stuck call: a stop after End --------------------------------------------------


@pytest.mark.parametrize(
    "facts",
    [
        {"status": Status.CHARGING_ENDED, "charging_ended_at": timezone.now()},
        {"status": Status.ACTIVE, "learned_late": True},
        {"status": Status.ACTIVE, "last_error_type": "ConnectorError", "last_error_at": timezone.now()},
    ],
    ids=["charging-ended", "learned-late", "after-an-error"],
)
def test_a_session_without_its_cdr_can_be_stopped(agent, no_broker, facts):
    charging_session = ChargingSessionFactory(**facts)

    assert stop_advice.stop_blocker(charging_session=charging_session) == ""
    stop_request = stop(charging_session, agent)

    assert stop_request.state == State.PENDING
    assert stop_request.reason == "CABLE_LOCKED"


def test_a_session_with_its_cdr_cannot_be_stopped(agent):
    charging_session = ChargingSessionFactory(
        status=Status.CLOSED, cdr_received_at=timezone.now(), ended_at=timezone.now()
    )
    with pytest.raises(services.StopNotAllowed, match="charge detail record"):
        stop(charging_session, agent)


def test_cable_locked_is_a_first_class_reason():
    from sessions.models import StopReason

    assert StopReason.CABLE_LOCKED.label == "Cable locked / cannot unplug"
    assert StopReason.values.index("CABLE_LOCKED") <= 1


def test_end_confirms_the_stop_sent_while_charging(client, agent, no_broker):
    charging_session = ChargingSessionFactory(evse_id=EVSE)
    stop_request = stop(charging_session, agent, **accepted())

    push(client, NOTIFY_URL, end(charging_session.session_id))

    stop_request.refresh_from_db()
    assert (stop_request.state, stop_request.confirmed_by) == (State.CONFIRMED, "END")


def test_a_stop_sent_after_end_waits_for_the_cdr(client, agent, no_broker):
    charging_session = ChargingSessionFactory(evse_id=EVSE)
    push(client, NOTIFY_URL, end(charging_session.session_id))  # charging ended, the cable stays locked
    charging_session.refresh_from_db()
    assert charging_session.status == Status.CHARGING_ENDED
    stop_request = stop(charging_session, agent, **accepted())

    push(client, NOTIFY_URL, end(charging_session.session_id))  # a repeated End is not news
    stop_request.refresh_from_db()
    assert stop_request.state == State.ACCEPTED

    push(client, cdr_url(), cdr(charging_session.session_id))
    stop_request.refresh_from_db()
    assert (stop_request.state, stop_request.confirmed_by) == (State.CONFIRMED, "CDR")


# --- never let a message change a session it does not match ----------------------------------


def test_a_cdr_for_another_evse_is_kept_flagged_and_changes_nothing(client, agent, no_broker):
    charging_session = ChargingSessionFactory(evse_id=EVSE, energy_kwh="12.345")
    stop_request = stop(charging_session, agent, **accepted())

    ack = push(client, cdr_url("DE*XYZ"), cdr(charging_session.session_id, evse_id="DE*XYZ*E9*1", ConsumedEnergy=0))

    assert ack["Result"] is True  # kept: Hubject must not send it again
    charging_session.refresh_from_db()
    stop_request.refresh_from_db()
    assert charging_session.status == Status.ACTIVE and str(charging_session.energy_kwh) == "12.345"
    assert stop_request.state == State.ACCEPTED
    assert not ChargeDetailRecord.objects.exists()
    message = InboundMessage.objects.get()
    assert message.held_back and message.flagged and message.charging_session == charging_session
    assert [anomaly["code"] for anomaly in message.anomalies] == ["evse_mismatch"]
    assert "DE*XYZ*E9*1" in message.anomalies[0]["text"] and EVSE in message.anomalies[0]["text"]
    record = AuditRecord.objects.get(event_type=Event.CDR_RECEIVED)
    assert record.data["held_back"] is True and record.data["stops_confirmed"] == 0

    # The session's real CDR still closes it and confirms the stop.
    push(client, cdr_url(), cdr(charging_session.session_id))
    charging_session.refresh_from_db()
    stop_request.refresh_from_db()
    assert charging_session.status == Status.CLOSED and stop_request.state == State.CONFIRMED


def test_an_end_for_another_evse_changes_nothing(client, agent, no_broker):
    charging_session = ChargingSessionFactory(evse_id=EVSE)
    stop_request = stop(charging_session, agent, **accepted())

    push(client, NOTIFY_URL, end(charging_session.session_id, evse_id="DE*ACC*E99999*1"))

    charging_session.refresh_from_db()
    stop_request.refresh_from_db()
    assert charging_session.status == Status.ACTIVE and charging_session.charging_ended_at is None
    assert stop_request.state == State.ACCEPTED
    assert InboundMessage.objects.get().held_back


def test_the_same_evse_written_without_separators_matches(client):
    charging_session = ChargingSessionFactory(evse_id=EVSE)

    push(client, cdr_url(), cdr(charging_session.session_id, evse_id="DEACCE00001*1"))

    charging_session.refresh_from_db()
    assert charging_session.status == Status.CLOSED
    assert not InboundMessage.objects.get().held_back


def test_a_second_cdr_that_differs_is_kept_apart_and_the_first_stays(client):
    charging_session = ChargingSessionFactory(evse_id=EVSE)
    push(client, cdr_url(), cdr(charging_session.session_id))

    ack = push(client, cdr_url(), cdr(charging_session.session_id, ConsumedEnergy=35))

    assert "Duplicate" in ack["StatusCode"]["AdditionalInfo"]
    charging_session.refresh_from_db()
    assert str(charging_session.energy_kwh) == "21.500"
    assert str(ChargeDetailRecord.objects.get().consumed_energy_kwh) == "21.500"
    second = InboundMessage.objects.order_by("pk").last()
    assert second.held_back and second.anomalies[0]["code"] == "cdr_conflict"
    assert "ConsumedEnergy 21.500 then 35" in second.anomalies[0]["text"]


def test_a_repeated_cdr_in_another_offset_is_not_a_conflict(client):
    charging_session = ChargingSessionFactory(evse_id=EVSE)
    push(client, cdr_url(), cdr(charging_session.session_id))

    push(
        client, cdr_url(), cdr(charging_session.session_id, ChargingStart="2026-12-06T08:00:00Z", ConsumedEnergy=21.500)
    )

    assert not InboundMessage.objects.filter(flagged=True).exists()


# --- SessionIDs as Hubject sends them --------------------------------------------------------


@responses.activate
def test_the_session_id_is_sent_back_in_the_stop_exactly_as_received(client, agent, no_broker, settings):
    session_id = "F98EFBA4-02D8-4FA0-B810-9A9D50D2C527"
    push(
        client,
        NOTIFY_URL,
        {"Type": "Start", "SessionID": session_id, "EvseID": EVSE, "ChargingStart": "2026-12-06T09:00:00+01:00"},
    )
    charging_session = ChargingSession.objects.get()
    assert charging_session.session_id == session_id
    assert selectors.search_charging_sessions(query=session_id.lower()).get() == charging_session
    responses.post(STOP_URL, json={"Result": True, "StatusCode": {"Code": "000"}, "SessionID": session_id})
    stop_request = stop(charging_session, agent)

    services.send_remote_stop(stop_request_id=stop_request.pk)

    assert json.loads(responses.calls[0].request.body)["SessionID"] == session_id


# --- outcome unknown ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        requests.exceptions.ReadTimeout("read timed out"),
        requests.exceptions.ConnectionError(ConnectionResetError(104, "Connection reset by peer")),
    ],
    ids=["read-timeout", "connection-reset"],
)
@responses.activate
def test_no_answer_after_the_request_left_marks_the_outcome_unknown(agent, no_broker, settings, failure):
    settings.OICP_MAX_ATTEMPTS = 1
    charging_session = ChargingSessionFactory(evse_id=EVSE)
    responses.post(STOP_URL, body=failure)
    stop_request = stop(charging_session, agent)

    services.send_remote_stop(stop_request_id=stop_request.pk)

    stop_request.refresh_from_db()
    assert stop_request.state == State.FAILED and stop_request.outcome_unknown
    assert AuditRecord.objects.get(event_type=Event.STOP_FAILED).data["outcome_unknown"] is True
    # Until End or the CDR settles it, it is on the stuck-sessions queue.
    assert stop_request in selectors.stuck_queue().unconfirmed


@responses.activate
def test_a_refused_connection_is_not_an_unknown_outcome(agent, no_broker, settings):
    settings.OICP_MAX_ATTEMPTS = 1
    charging_session = ChargingSessionFactory(evse_id=EVSE)
    responses.post(STOP_URL, body=requests.exceptions.ConnectTimeout("connect timed out"))
    stop_request = stop(charging_session, agent)

    services.send_remote_stop(stop_request_id=stop_request.pk)

    stop_request.refresh_from_db()
    assert stop_request.state == State.FAILED and not stop_request.outcome_unknown


@pytest.mark.parametrize("proof", ["CDR", "END"])
def test_a_failed_stop_with_unknown_outcome_is_settled_by_the_end_or_cdr(client, agent, no_broker, proof):
    charging_session = ChargingSessionFactory(evse_id=EVSE)
    sent = timezone.now() - timedelta(minutes=2)
    stop_request = stop(
        charging_session,
        agent,
        state=State.FAILED,
        attempt_count=3,
        first_sent_at=sent,
        last_sent_at=sent,
        outcome_unknown=True,
        finished_at=sent,
    )

    if proof == "CDR":
        push(client, cdr_url(), cdr(charging_session.session_id))
    else:
        push(client, NOTIFY_URL, end(charging_session.session_id))

    stop_request.refresh_from_db()
    assert (stop_request.state, stop_request.confirmed_by) == (State.CONFIRMED, proof)
    record = AuditRecord.objects.get(event_type=Event.STOP_CONFIRMED)
    assert record.data["previous_state"] == State.FAILED and record.data["outcome_unknown"] is True
    assert "outcome unknown" in record.data["settled"]
    assert stop_request not in selectors.stuck_queue().unconfirmed


def test_a_stop_that_never_left_is_not_confirmed_by_the_cdr(client, agent, no_broker):
    charging_session = ChargingSessionFactory(evse_id=EVSE)
    stop_request = stop(charging_session, agent, state=State.FAILED, attempt_count=3, finished_at=timezone.now())

    push(client, cdr_url(), cdr(charging_session.session_id))

    stop_request.refresh_from_db()
    assert stop_request.state == State.FAILED


def test_a_rejected_stop_stays_rejected_when_the_cdr_arrives(client, agent, no_broker):
    charging_session = ChargingSessionFactory(evse_id=EVSE)
    stop_request = stop(charging_session, agent, **accepted(state=State.REJECTED, oicp_code="400"))

    push(client, cdr_url(), cdr(charging_session.session_id))

    stop_request.refresh_from_db()
    assert stop_request.state == State.REJECTED


# --- chunked bodies ----------------------------------------------------------------------------


def test_a_chunked_body_without_content_length_is_read():
    """As gunicorn hands it over: no CONTENT_LENGTH, Transfer-Encoding chunked, wsgi.input de-chunked."""
    body = json.dumps(
        {
            "Type": "Start",
            "SessionID": "f98efba4-02d8-4fa0-b810-9a9d50d2c527",
            "EvseID": EVSE,
            "ChargingStart": "2026-12-06T09:00:00+01:00",
        }
    ).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": NOTIFY_URL,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.input": _Trickle(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
    }
    response = ClientHandler()(environ)

    assert response.status_code == 200, response.content
    assert ChargingSession.objects.get().session_id == "f98efba4-02d8-4fa0-b810-9a9d50d2c527"


def test_a_chunked_body_over_the_limit_is_refused(settings):
    settings.OICP_INBOUND_MAX_BODY_BYTES = 100
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": NOTIFY_URL,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.input": _Trickle(b"{" + b" " * 500 + b"}"),
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
    }
    response = ClientHandler()(environ)

    assert response.status_code == 413
    assert not InboundMessage.objects.exists()


class _Trickle(io.BytesIO):
    """A de-chunked stream that, like gunicorn's, may return fewer bytes than asked for."""

    def read(self, size=-1):
        return super().read(min(size, 7) if size and size > 0 else size)


def test_the_session_timeline_shows_each_anomaly_and_a_held_back_message(client, admin_user):
    charging_session = ChargingSessionFactory(evse_id=EVSE)
    push(
        client,
        NOTIFY_URL,
        {
            "Type": "Progress",
            "SessionID": charging_session.session_id,
            "EvseID": EVSE,
            "ChargingStart": "2026-12-06T09:00:00+01:00",
            "EventOccurred": "2026-12-06T09:30:00+01:00",
            "ConsumedEnergyProgress": 12.3456,
        },
    )
    push(client, cdr_url("DE*XYZ"), cdr(charging_session.session_id, evse_id="DE*XYZ*E9*1"))
    client.force_login(admin_user)

    page = client.get(f"/sessions/{charging_session.pk}/").content.decode()

    assert "ConsumedEnergyProgress 12.3456 stored as 12.346" in page
    assert "Held back: not applied to this session" in page
    assert "but the session runs at DE*ACC*E00001*1" in page


def test_the_sessions_list_shows_open_sessions_by_default_charging_ended_included(client, agent):
    charging = ChargingSessionFactory(evse_id="DE*ACC*E00001*1")
    ended = ChargingSessionFactory(
        evse_id="DE*CBL*E00002*1", status=Status.CHARGING_ENDED, charging_ended_at=timezone.now()
    )
    closed = ChargingSessionFactory(evse_id="DE*ACC*E00003*1", status=Status.CLOSED, ended_at=timezone.now())
    client.force_login(agent)

    page = client.get("/").content.decode()

    assert charging.evse_id in page and ended.evse_id in page and closed.evse_id not in page
    assert 'value="OPEN" selected' in page
