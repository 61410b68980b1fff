"""The cable-stuck call end to end, with real parts and a simulator that plays the real world.

The simulated CPO starts a session (Start pushed to the portal), stops charging by itself (End
pushed: "Charging ended") and keeps the car plugged until a stop arrives. The agent stops the
session; the Celery worker sends it through Redis to the simulated HBS, which knows the session
(it issued it, with an upper-case SessionID) and accepts; the CPO then pushes its CDR, which the
portal's worker applies: the stop is CONFIRMED by the CDR. The CPO writes its messages as real ones
do (float noise, Eichrecht values, explicit nulls): accepted, flagged, applied.

And the other side of a real HBS: a stop for a SessionID it never issued is answered "400 Session
is invalid", and the portal records a rejection, not a retry.
"""

from __future__ import annotations

import pytest
import requests

from sessions import services
from sessions.models import AuditRecord, ChargingSession, InboundMessage, RemoteStopRequest, StopReason
from sessions.stops import presenters as stop_advice
from tests import servers
from tests.factories import AgentFactory, ChargingSessionFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
State = RemoteStopRequest.State
Status = ChargingSession.Status
Event = AuditRecord.EventType
EVSE = "DE*CBL*E0007*1"
BEHAVIOURS = {
    "default": {"action": "accept"},
    "operators": {
        "DE*CBL": {
            "action": "accept",
            "cable_stuck_after_seconds": 1,
            "quirks": ["upper_case_session_ids", "float_noise", "explicit_nulls", "eichrecht_over_10"],
        },
    },
    "evses": {},
}


@pytest.fixture(scope="module")
def real_world_redis():
    with servers.redis_server() as url:
        yield url


@pytest.fixture(scope="module")
def real_world_simulator(live_server):
    # No --tidy: this HBS refuses stops for sessions it never issued, as the real one does.
    with servers.simulator_process(
        "--portal-url",
        live_server.url,
        "--push-delay",
        "0.2",
        "--cdr-delay",
        "0.3",
        "--progress-interval",
        "0",
        "--quiet",
    ) as sim:
        yield sim


@pytest.fixture(scope="module")
def real_world_worker(django_db_setup, django_db_blocker, real_world_redis, real_world_simulator):
    with django_db_blocker.unblock():
        database_url = servers.database_url_for_children()
    with servers.celery_worker(
        broker_url=real_world_redis,
        database_url=database_url,
        oicp_base_url=real_world_simulator.url,
        extra_env={"OICP_RETRY_BACKOFF_SECONDS": "0.2", "OICP_MAX_ATTEMPTS": "2"},
    ) as proc:
        yield proc


@pytest.fixture
def hbs(real_world_worker, real_world_redis, real_world_simulator, settings):
    settings.OICP_INBOUND_APPLY = "worker"  # as in production: stored, acknowledged, applied by the worker
    servers.point_celery_at(real_world_redis)
    real_world_simulator.set_behaviours(BEHAVIOURS)
    real_world_simulator.clear()
    return real_world_simulator


def wait_for(predicate, message: str, timeout: float = 30):
    servers.wait_until(predicate, timeout=timeout, message=message)


def test_the_cable_stuck_session_is_stopped_after_end_and_confirmed_by_the_cdr(hbs):
    answer = requests.post(f"{hbs.url}/_sim/sessions", json=[{"EvseID": EVSE}], timeout=10)
    answer.raise_for_status()
    [session_id] = answer.json()["issued"]
    assert session_id == session_id.upper()  # this CPO writes its GUIDs in upper case

    # Start, then End: the portal shows "Charging ended", and the stop is allowed.
    def charging_ended():
        found = ChargingSession.objects.filter(session_key=session_id.lower()).first()
        return found is not None and found.status == Status.CHARGING_ENDED

    wait_for(charging_ended, "the End notification to be applied")
    charging_session = ChargingSession.objects.get(session_key=session_id.lower())
    assert charging_session.session_id == session_id  # kept as Hubject sent it
    assert stop_advice.stop_blocker(charging_session=charging_session) == ""

    stop_request = services.request_remote_stop(
        charging_session_id=charging_session.pk, acting_user=AgentFactory(), reason=StopReason.CABLE_LOCKED
    ).stop_request

    def confirmed():
        stop_request.refresh_from_db()
        return stop_request.state == State.CONFIRMED

    wait_for(confirmed, "the stop to be confirmed by the CDR")
    assert stop_request.confirmed_by == RemoteStopRequest.ConfirmedBy.CDR  # End came before the stop
    charging_session.refresh_from_db()
    assert charging_session.status == Status.CLOSED
    progress = stop_advice.stop_progress(stop_request=stop_request)
    assert progress.headline.startswith("Session ended, confirmed by the CDR")
    # The stop carried the SessionID exactly as issued, and HBS accepted it (it knows the session).
    [sent] = [entry for entry in hbs.received() if entry["path"].endswith("/authorize-remote/stop")]
    assert sent["body"]["SessionID"] == session_id and sent["violations"] == []
    # The messy messages were accepted, applied and flagged, never refused.
    messages = InboundMessage.objects.filter(session_id=session_id.lower())
    assert set(messages.values_list("kind", flat=True)) >= {"START", "END", "CDR"}
    assert not messages.filter(applied_at__isnull=True).exists() and not messages.filter(held_back=True).exists()
    cdr = messages.get(kind="CDR")
    assert {anomaly["code"] for anomaly in cdr.anomalies} >= {"too_many"}
    assert len(charging_session.cdr.data["SignedMeteringValues"]) == 15


def test_a_stop_for_a_session_hubject_never_issued_is_rejected_as_invalid(hbs):
    charging_session = ChargingSessionFactory(evse_id="DE*ACC*E0001*1", operator_id="DE*ACC")

    stop_request = services.request_remote_stop(
        charging_session_id=charging_session.pk, acting_user=AgentFactory(), reason=StopReason.DRIVER_ASKED
    ).stop_request

    def final():
        stop_request.refresh_from_db()
        return stop_request.state in RemoteStopRequest.FINAL_STATES

    wait_for(final, "the stop to be answered")
    assert (stop_request.state, stop_request.oicp_code, stop_request.attempt_count) == (State.REJECTED, "400", 1)


@pytest.mark.browser
def test_the_agent_stops_a_cable_stuck_session_in_the_browser_and_sees_it_confirmed(hbs, page, live_server):
    from tests.test_browser import log_in_as_agent, open_session_by_search, submit_stop

    answer = requests.post(f"{hbs.url}/_sim/sessions", json=[{"EvseID": EVSE}], timeout=10)
    answer.raise_for_status()
    [session_id] = answer.json()["issued"]
    wait_for(
        lambda: ChargingSession.objects.filter(session_key=session_id.lower(), status=Status.CHARGING_ENDED).exists(),
        "the End notification to be applied",
    )
    log_in_as_agent(page, live_server)

    open_session_by_search(page, EVSE)
    assert page.locator(".session-head .badge.big").inner_text() == "Charging ended"
    assert "still open at Hubject" in page.locator("#charging-ended-hint").inner_text()
    assert page.locator("#stop-button").is_enabled()
    submit_stop(page, reason="Cable locked / cannot unplug")

    page.wait_for_selector("#stop-status[data-state=CONFIRMED]", timeout=30_000)
    assert "Session ended, confirmed by the CDR" in page.locator("#stop-status").inner_text()
    assert page.evaluate("window.__noReload === true"), "the page reloaded instead of updating live"
    page.locator(".session-head .badge.big", has_text="Closed").wait_for()
