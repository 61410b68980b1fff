"""The whole loop with real parts: a stop goes out, the CPO's proof comes back over HTTP.

service → Redis → Celery worker → simulator (accepts the stop) → simulator pushes End and the CDR to
the portal's real inbound endpoints (pytest-django's live server) → the stop becomes CONFIRMED.
And the reconciliation: a CDR Hubject holds but never pushed is pulled from the simulator.

This module runs its own Redis, worker and simulator (with --portal-url): the session-wide ones in
conftest.py talk to a simulator that pushes nothing.
"""

import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from sessions import services
from sessions.models import (
    AuditRecord,
    ChargeDetailRecord,
    ChargingSession,
    InboundMessage,
    RemoteStopRequest,
    StopReason,
)
from tests import servers
from tests.factories import AgentFactory, ChargingSessionFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
State = RemoteStopRequest.State
Event = AuditRecord.EventType
BEHAVIOURS = {
    "default": {"action": "accept"},
    "operators": {"DE*ACC": {"action": "accept"}, "DE*NCF": {"action": "accept", "confirm": False}},
    "evses": {},
}


@pytest.fixture(scope="module")
def pushing_redis():
    with servers.redis_server() as url:
        yield url


@pytest.fixture(scope="module")
def pushing_simulator(live_server):
    # --tidy: stops for the factories' sessions are accepted without telling the simulator about
    # them first (that would push a Start the assertions on pushes and audit records do not expect).
    with servers.simulator_process(
        "--portal-url",
        live_server.url,
        "--push-delay",
        "0.3",
        "--cdr-delay",
        "0.3",
        "--progress-interval",
        "0",
        "--quiet",
        "--tidy",
    ) as sim:
        yield sim


@pytest.fixture(scope="module")
def pushing_worker(django_db_setup, django_db_blocker, pushing_redis, pushing_simulator):
    with django_db_blocker.unblock():
        database_url = servers.database_url_for_children()
    with servers.celery_worker(
        broker_url=pushing_redis,
        database_url=database_url,
        oicp_base_url=pushing_simulator.url,
        extra_env={"OICP_RETRY_BACKOFF_SECONDS": "0.2", "OICP_MAX_ATTEMPTS": "2"},
    ) as proc:
        yield proc


@pytest.fixture
def cpo(pushing_worker, pushing_redis, pushing_simulator, settings):
    # As in production: the endpoints store and acknowledge, the worker applies (inbound_queue).
    settings.OICP_INBOUND_APPLY = "worker"
    servers.point_celery_at(pushing_redis)
    pushing_simulator.set_behaviours(BEHAVIOURS)
    pushing_simulator.clear()
    requests.delete(f"{pushing_simulator.url}/_sim/pushed", timeout=5).raise_for_status()
    requests.delete(f"{pushing_simulator.url}/_sim/cdrs", timeout=5).raise_for_status()
    return pushing_simulator


def pushed(sim, session_id: str) -> list[dict]:
    response = requests.get(f"{sim.url}/_sim/pushed", params={"session_id": session_id}, timeout=5)
    response.raise_for_status()
    return response.json()


def stop(charging_session) -> RemoteStopRequest:
    return services.request_remote_stop(
        charging_session_id=charging_session.pk, acting_user=AgentFactory(), reason=StopReason.CABLE_LOCKED
    ).stop_request


def wait_for_state(stop_request: RemoteStopRequest, *states: str, timeout: float = 30) -> RemoteStopRequest:
    def reached():
        stop_request.refresh_from_db()
        return stop_request.state in states

    servers.wait_until(reached, timeout=timeout, message=f"stop request {stop_request.pk} to become {states}")
    return stop_request


def test_accepted_stop_is_confirmed_by_the_end_and_cdr_the_cpo_pushes(cpo):
    charging_session = ChargingSessionFactory(
        evse_id="DE*ACC*E0042*1", operator_id="DE*ACC", cpo_partner_session_id="CPO-42"
    )
    stop_request = stop(charging_session)

    wait_for_state(stop_request, State.CONFIRMED)

    assert stop_request.confirmed_by == RemoteStopRequest.ConfirmedBy.END  # End arrives before the CDR
    assert stop_request.time_to_confirmation is not None and stop_request.time_to_confirmation.total_seconds() > 0.3
    servers.wait_until(
        lambda: ChargeDetailRecord.objects.filter(session_id=charging_session.session_id).exists(),
        timeout=15,
        message="the pushed CDR to be stored",
    )
    charging_session.refresh_from_db()
    assert charging_session.status == ChargingSession.Status.CLOSED
    assert charging_session.cdr.source == ChargeDetailRecord.Source.PUSH
    assert charging_session.cdr.operator_id == "DE*ACC" and charging_session.cdr.consumed_energy_kwh is not None
    # Both pushes went over HTTP to the portal's endpoints and were acknowledged by it.
    log = pushed(cpo, charging_session.session_id)
    assert [(p["kind"], p["status"], p["acknowledged"]) for p in log] == [("End", 200, True), ("CDR", 200, True)]
    assert log[1]["url"].endswith("/api/oicp/cdrmgmt/v22/operators/DE*ACC/charge-detail-record")
    assert list(stop_request.audit_records.order_by("pk").values_list("event_type", flat=True)) == [
        Event.STOP_REQUESTED,
        Event.STOP_SENDING,
        Event.STOP_ACCEPTED,
        Event.STOP_CONFIRMED,
    ]
    received = charging_session.audit_records.filter(event_type__in=[Event.NOTIFICATION_RECEIVED, Event.CDR_RECEIVED])
    assert sorted(received.values_list("event_type", flat=True)) == [Event.CDR_RECEIVED, Event.NOTIFICATION_RECEIVED]
    # Stored by the endpoint, applied by the worker.
    messages = InboundMessage.objects.filter(session_id=charging_session.session_id)
    assert messages.count() == 2 and not messages.filter(applied_at__isnull=True).exists()
    assert all(m.applied_at > m.received_at for m in messages)


def test_a_cpo_that_never_confirms_leaves_the_stop_accepted_until_it_is_marked_unconfirmed(cpo):
    charging_session = ChargingSessionFactory(evse_id="DE*NCF*E0001*1", operator_id="DE*NCF")
    stop_request = wait_for_state(stop(charging_session), *RemoteStopRequest.FINAL_STATES)
    assert stop_request.state == State.ACCEPTED

    time.sleep(1.5)  # well past the push and CDR delays
    stop_request.refresh_from_db()
    assert stop_request.state == State.ACCEPTED
    assert pushed(cpo, charging_session.session_id) == []

    later = datetime.now(UTC) + timedelta(hours=1)
    assert services.mark_unconfirmed_stops(now=later) >= 1
    stop_request.refresh_from_db()
    assert stop_request.state == State.UNCONFIRMED


def test_a_cdr_hubject_never_pushed_is_pulled_and_closes_the_session(cpo, settings):
    settings.OICP_BASE_URL = cpo.url
    charging_session = ChargingSessionFactory(evse_id="NL*FST*E0007*2", operator_id="NL*FST")
    RemoteStopRequest.objects.create(
        charging_session=charging_session,
        reason=StopReason.DRIVER_ASKED,
        state=State.UNCONFIRMED,
        requested_at=datetime.now(UTC) - timedelta(hours=1),
        finished_at=datetime.now(UTC) - timedelta(minutes=50),
    )
    end = datetime.now(UTC).replace(microsecond=0)
    never_pushed = {
        "SessionID": charging_session.session_id,
        "EvseID": "NL*FST*E0007*2",
        "Identification": {"RemoteIdentification": {"EvcoID": "DE-EMP-C12345678-9"}},
        "ChargingStart": (end - timedelta(hours=2)).isoformat(),
        "ChargingEnd": end.isoformat(),
        "SessionStart": (end - timedelta(hours=2)).isoformat(),
        "SessionEnd": end.isoformat(),
        "ConsumedEnergy": 17.123,
    }
    requests.post(f"{cpo.url}/_sim/cdrs", json=[never_pushed], timeout=5).raise_for_status()

    report = services.pull_charge_detail_records(date_from=end - timedelta(hours=1), date_to=end + timedelta(minutes=1))

    assert report.ok and (report.new, report.sessions_closed, report.stops_confirmed) == (1, 1, 1)
    charging_session.refresh_from_db()
    assert charging_session.status == ChargingSession.Status.CLOSED
    assert str(charging_session.cdr.consumed_energy_kwh) == "17.123"
    assert charging_session.cdr.source == ChargeDetailRecord.Source.PULL
    assert charging_session.stop_requests.get().state == State.CONFIRMED
    received = cpo.received()
    assert received[-1]["path"].startswith("/api/oicp/cdrmgmt/v22/providers/DE-EMP/get-charge-detail-records-request")
    assert received[-1]["violations"] == []

    again = services.pull_charge_detail_records(date_from=end - timedelta(hours=1), date_to=end + timedelta(minutes=1))
    assert (again.new, again.duplicates) == (0, 1)
