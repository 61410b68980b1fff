"""Nothing lost when the broker is down or a worker dies mid-call; nothing sent twice.

- Broker down or stalled (accepts, never answers; a Redis in CLIENT PAUSE): the agent's stop (through
  the view) is saved as PENDING first and the agent is told within 3 s that it is saved and will be sent; when Redis is back on the same port, the periodic sweeper (the beat task,
  run by the worker) dispatches it, and Hubject receives it exactly once.
- Worker killed (SIGKILL to its process group) while a call waits on Hubject: after a restart the
  sweeper settles the SENDING row: the record says the first call's outcome is unknown (audit
  failure_kind worker_lost), and the agent's screen says so in every later state.
"""

from __future__ import annotations

import html
import signal
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from sessions import services
from sessions.models import AuditRecord, RemoteStopRequest, StopReason
from sessions.stops import presenters as stop_advice
from sessions.stops.services.sweeper import _sending_deadline_seconds
from tests import servers
from tests.factories import (
    AgentFactory,
    ChargingSessionFactory,
    RemoteStopRequestFactory,
)

State = RemoteStopRequest.State
Event = AuditRecord.EventType


def _wait_for_state(stop, states, timeout=90):
    def reached():
        stop.refresh_from_db()
        return stop.state in states

    servers.wait_until(reached, timeout=timeout, message=f"stop {stop.pk} to reach {states} (is {stop.state})")
    return stop


def _page(client, stop) -> str:
    response = client.get(reverse("charging_sessions:stop-status", args=[stop.pk]))
    assert response.status_code == 200
    return html.unescape(response.content.decode())


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_broker_down_the_stop_is_saved_queued_and_sent_exactly_once_when_redis_is_back(simulator, client):
    redis = servers.RedisServer().start()
    try:
        broker = redis.url(0)
        worker = servers.celery_worker(
            broker_url=broker,
            database_url=servers.database_url_for_children(),
            oicp_base_url=simulator.url,
            concurrency=4,
        )
        with worker, servers.celery_publisher(broker):
            agent = AgentFactory()
            client.force_login(agent)
            charging_session = ChargingSessionFactory()
            simulator.patch_behaviours({"evses": {charging_session.evse_id: {"action": "accept"}}})
            simulator.add_sessions(charging_session)

            redis.stop()
            started = time.monotonic()
            response = client.post(
                reverse("charging_sessions:request-stop", args=[charging_session.pk]),
                {"reason": StopReason.CABLE_LOCKED},
                follow=True,
            )
            took = time.monotonic() - started
            # The agent is not kept waiting on the broker (measured: ~0.05 s refused; a stalled broker is
            # bounded by STOP_PUBLISH_TIMEOUT_SECONDS, see the stalled-broker tests below).
            assert took < 3, f"submitting with the broker down took {took:.1f} s"
            assert response.status_code == 200
            page = html.unescape(response.content.decode())
            assert stop_advice.QUEUED_WHILE_WORKER_UNREACHABLE in page
            stop = RemoteStopRequest.objects.get(charging_session=charging_session)
            assert (stop.state, stop.attempt_count) == (State.PENDING, 0)
            assert "Queued" in stop_advice.stop_progress(stop_request=stop).headline
            # A minute later (older than STOP_REDISPATCH_AFTER_SECONDS), the page still says it is safe.
            RemoteStopRequest.objects.filter(pk=stop.pk).update(requested_at=timezone.now() - timedelta(minutes=2))
            stop.refresh_from_db()
            fragment = _page(client, stop)
            assert "Queued: the stop is saved and will be sent as soon as the worker is reachable" in fragment
            assert "Nothing is lost; you do not need to click again." in fragment
            assert simulator.received(session_id=charging_session.session_id) == []

            redis.start()  # the same port: workers and web processes reconnect by themselves
            from portal.celery import app

            # Beat's job, by its registered name, run by the worker; twice, as overlapping beats would.
            assert "charging_sessions.sweep_stop_requests" in {
                entry["task"] for entry in app.conf.beat_schedule.values()
            }
            app.send_task("charging_sessions.sweep_stop_requests")
            app.send_task("charging_sessions.sweep_stop_requests")
            _wait_for_state(stop, [State.ACCEPTED])
            # An in-process sweep afterwards finds nothing left to do.
            assert services.sweep_stop_requests() == {"redispatched": 0, "recovered": 0}
    finally:
        redis.close()

    assert stop.attempt_count == 1
    assert len(simulator.received(session_id=charging_session.session_id)) == 1
    assert list(stop.audit_records.order_by("pk").values_list("event_type", flat=True)) == [
        Event.STOP_REQUESTED,
        Event.STOP_SENDING,
        Event.STOP_ACCEPTED,
    ]
    assert "Accepted" in _page(client, stop)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_worker_killed_mid_call_outcome_unknown_is_recorded_and_shown_then_settled(
    simulator, redis_url, client, settings
):
    broker = redis_url.rsplit("/", 1)[0] + "/3"
    env = {"OICP_MAX_ATTEMPTS": "2", "OICP_RETRY_BACKOFF_SECONDS": "0.1"}
    database_url = servers.database_url_for_children()
    agent = AgentFactory()
    client.force_login(agent)
    retried, given_up = ChargingSessionFactory(), ChargingSessionFactory()
    # Hubject holds both calls for a long time: the worker dies while waiting.
    held = {"action": "accept", "delay_seconds": 60}
    simulator.patch_behaviours({"evses": {retried.evse_id: held, given_up.evse_id: held}})
    simulator.add_sessions(retried, given_up)

    with servers.celery_publisher(broker):
        first = servers.celery_worker(
            broker_url=broker, database_url=database_url, oicp_base_url=simulator.url, concurrency=4, extra_env=env
        )
        with first as proc:
            stops = [
                services.request_remote_stop(
                    charging_session_id=cs.pk, acting_user=agent, reason=StopReason.DRIVER_ASKED
                ).stop_request
                for cs in (retried, given_up)
            ]
            for stop, cs in zip(stops, (retried, given_up), strict=True):
                _wait_for_state(stop, [State.SENDING])
                servers.wait_until(
                    lambda cs=cs: simulator.received(session_id=cs.session_id),
                    timeout=60,
                    message="the simulator to hold the call",
                )
            proc.stop(signal.SIGKILL)  # the whole process group, no chance to clean up
        assert proc.proc.returncode == -signal.SIGKILL

        retry_stop, failed_stop = stops
        for stop in stops:
            stop.refresh_from_db()
            assert stop.state == State.SENDING  # nobody knows yet what Hubject did with the call
            assert "Sent to Hubject" in stop_advice.stop_progress(stop_request=stop).headline

        simulator.patch_behaviours({"evses": {retried.evse_id: {"action": "accept"}}})
        second = servers.celery_worker(
            broker_url=broker, database_url=database_url, oicp_base_url=simulator.url, concurrency=4, extra_env=env
        )
        with second:
            # The sweeper only touches SENDING rows older than the deadline (client timeouts + 60 s);
            # the test looks at the clock from after that deadline instead of waiting for it.
            later = timezone.now() + timedelta(seconds=_sending_deadline_seconds() + 1)
            settings.OICP_MAX_ATTEMPTS = 1  # the second stop has used all its attempts ...
            assert services.recover_lost_attempt(stop_request_id=failed_stop.pk) is False
            settings.OICP_MAX_ATTEMPTS = 2  # ... the first may try once more
            assert services.sweep_stop_requests(now=later) == {"redispatched": 0, "recovered": 1}
            _wait_for_state(retry_stop, [State.ACCEPTED])
    failed_stop.refresh_from_db()

    # The retried stop: accepted on attempt 2, and the record still says attempt 1 is unknown.
    assert (retry_stop.attempt_count, retry_stop.outcome_unknown) == (2, True)
    assert len(simulator.received(session_id=retried.session_id)) == 2
    events = list(retry_stop.audit_records.order_by("pk"))
    assert [r.event_type for r in events] == [
        Event.STOP_REQUESTED,
        Event.STOP_SENDING,
        Event.STOP_ATTEMPT_FAILED,
        Event.STOP_SENDING,
        Event.STOP_ACCEPTED,
    ]
    lost = events[2].data
    assert (lost["failure_kind"], lost["outcome_unknown"], lost["attempt"]) == ("worker_lost", True, 1)
    progress = stop_advice.stop_progress(stop_request=retry_stop)
    assert progress.headline.startswith("Accepted")
    assert stop_advice.OUTCOME_UNKNOWN_NOTE in progress.detail
    assert stop_advice.OUTCOME_UNKNOWN_NOTE in _page(client, retry_stop)

    # The stop that had no attempt left: failed, outcome unknown, with the worker-lost playbook.
    assert (failed_stop.state, failed_stop.attempt_count, failed_stop.outcome_unknown) == (State.FAILED, 1, True)
    assert len(simulator.received(session_id=given_up.session_id)) == 1
    last = failed_stop.audit_records.order_by("-pk").first()
    assert (last.event_type, last.data["failure_kind"]) == (Event.STOP_FAILED, "worker_lost")
    page = _page(client, failed_stop)
    assert "Failed: Worker stopped while waiting." in page
    assert stop_advice.OUTCOME_UNKNOWN_NOTE in page


@pytest.mark.django_db
@pytest.mark.parametrize(
    "state",
    [State.PENDING, State.SENDING, State.ACCEPTED, State.REJECTED, State.FAILED, State.CONFIRMED, State.UNCONFIRMED],
)
def test_the_agent_sees_an_unknown_outcome_in_every_state(state):
    from sessions.audit.records import record_audit

    stop = RemoteStopRequestFactory(
        state=state,
        attempt_count=1,
        outcome_unknown=True,
        next_attempt_at=timezone.now() + timedelta(seconds=5),
        time_to_confirmation=timedelta(seconds=30),
    )
    # What recover_lost_attempt records when the sweeper finds the dead worker's call.
    record_audit(
        event_type=Event.STOP_ATTEMPT_FAILED,
        stop_request=stop,
        data={"attempt": 1, "failure_kind": "worker_lost", "outcome_unknown": True},
    )
    progress = stop_advice.stop_progress(stop_request=stop)
    assert stop_advice.OUTCOME_UNKNOWN_NOTE in progress.detail
    if state == State.PENDING:
        assert progress.headline.startswith("The worker stopped during the call; retrying (2 of 3) in ")
        assert [step.label for step in progress.steps][1] == "Sent to Hubject · attempt 2 of 3"
        assert [step.status for step in progress.steps] == ["done", "current", "todo", "todo"]  # never back


STOP_URL = "http://127.0.0.1:9/api/oicp/charging/v21/providers/DE-EMP/authorize-remote/stop"


@pytest.mark.django_db
def test_with_redis_gone_mid_task_nothing_is_sent_and_the_stop_stays_pending(monkeypatch):
    """A worker's retry running while Redis (slots, broker) is down must not fail the stop."""
    import redis
    import responses

    from sessions import concurrency

    stop = RemoteStopRequestFactory()
    monkeypatch.setattr(concurrency.cache, "add", mock_raise(redis.exceptions.ConnectionError("Redis is down")))
    with responses.RequestsMock() as hubject:
        outcome = services.send_remote_stop(stop_request_id=stop.pk)
        assert len(hubject.calls) == 0
    stop.refresh_from_db()
    assert (stop.state, stop.attempt_count, outcome.state) == (State.PENDING, 0, State.PENDING)
    assert outcome.retry_in and outcome.retry_in >= 5


@pytest.mark.django_db
def test_an_answer_is_recorded_even_when_the_slot_cannot_be_given_back(monkeypatch):
    import redis
    import responses

    from sessions import concurrency

    stop = RemoteStopRequestFactory()
    monkeypatch.setattr(concurrency.cache, "delete", mock_raise(redis.exceptions.ConnectionError("Redis is down")))
    with responses.RequestsMock() as hubject:
        hubject.post(STOP_URL, json={"Result": True, "StatusCode": {"Code": "000"}})
        services.send_remote_stop(stop_request_id=stop.pk)
    stop.refresh_from_db()
    assert (stop.state, stop.attempt_count) == (State.ACCEPTED, 1)


@contextmanager
def stalled_broker():
    """A "Redis" that accepts connections and never answers: a broker that hangs (a stuck server, a
    half-open connection through a firewall), the way the agent's click was found frozen. Yields its URL."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            accepted.append(connection)  # held open, never read, never answered

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        listener.close()


def _post_stop(client, charging_session):
    started = time.monotonic()
    response = client.post(
        reverse("charging_sessions:request-stop", args=[charging_session.pk]),
        {"reason": StopReason.CABLE_LOCKED},
        HTTP_HX_REQUEST="true",
    )
    return response, time.monotonic() - started


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_broker_that_accepts_and_never_answers_cannot_hold_the_click_for_more_than_3_s(client):
    """Cold: the web process has no broker connection yet; the broker's TCP accept works, nothing else."""
    client.force_login(AgentFactory())
    charging_session = ChargingSessionFactory()
    with stalled_broker() as broker, servers.celery_publisher(broker):
        response, took = _post_stop(client, charging_session)
    assert took < 3, f"the click answered after {took:.1f} s"
    _assert_saved_and_said(response, charging_session)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_paused_redis_cannot_hold_the_click_for_more_than_3_s_and_the_worker_survives_it(client, simulator):
    """Warm: the web process and a worker are connected when Redis stops answering (CLIENT PAUSE ALL:
    every command waits). The click answers within 3 s; when Redis answers again, the worker, still
    running with its own (longer) timeouts, sends the stop, exactly once, after the sweeper re-queues it."""
    redis = servers.RedisServer().start()
    agent = AgentFactory()
    client.force_login(agent)
    charging_session = ChargingSessionFactory()
    simulator.patch_behaviours({"evses": {charging_session.evse_id: {"action": "accept"}}})
    simulator.add_sessions(charging_session)
    try:
        broker = redis.url(4)
        worker = servers.celery_worker(
            broker_url=broker,
            database_url=servers.database_url_for_children(),
            oicp_base_url=simulator.url,
            concurrency=2,
        )
        with worker as proc, servers.celery_publisher(broker):
            from sessions.tasks import send_remote_stop

            send_remote_stop.apply_async(args=[0], retry=False)  # the web process's pool is connected
            cli = [servers.require("redis-cli", "redis-server"), "-p", str(redis.port)]
            subprocess.run([*cli, "CLIENT", "PAUSE", "6000", "ALL"], check=True, capture_output=True)
            response, took = _post_stop(client, charging_session)
            assert took < 3, f"the click answered after {took:.1f} s"
            stop = _assert_saved_and_said(response, charging_session)
            time.sleep(6)  # the pause ends by itself, as a stalled broker's does
            assert proc.proc.poll() is None, "the worker died while Redis did not answer:\n" + proc.output()
            RemoteStopRequest.objects.filter(pk=stop.pk).update(requested_at=timezone.now() - timedelta(minutes=2))
            from portal.celery import app

            app.send_task("charging_sessions.sweep_stop_requests")
            _wait_for_state(stop, [State.ACCEPTED], timeout=60)
    finally:
        redis.close()
    assert stop.attempt_count == 1
    assert len(simulator.received(session_id=charging_session.session_id)) == 1


def _assert_saved_and_said(response, charging_session) -> RemoteStopRequest:
    assert response.status_code == 200
    page = html.unescape(response.content.decode())
    assert 'id="stop-queued"' in page
    assert "Stop saved: it will be sent to Hubject" in page
    stop = RemoteStopRequest.objects.get(charging_session=charging_session)
    assert (stop.state, stop.attempt_count) == (State.PENDING, 0)
    assert stop.audit_records.filter(event_type=Event.STOP_REQUESTED).count() == 1
    return stop


def mock_raise(error):
    def fail(*args, **kwargs):
        raise error

    return fail


@pytest.mark.integration
def test_the_test_publisher_can_switch_brokers_back_and_forth(redis_url):
    """servers.point_celery_at: A → B → A → A publishes where the last call said, every time."""
    import redis

    from portal.celery import app
    from sessions.tasks import send_remote_stop

    base = redis_url.rsplit("/", 1)[0]
    first, second = f"{base}/7", f"{base}/8"
    queues = {url: redis.Redis.from_url(url) for url in (first, second)}
    for client in queues.values():
        client.delete("celery")
    previous = app.conf.broker_url
    try:
        for url in (first, second, first, first, second):
            servers.point_celery_at(url)
            send_remote_stop.apply_async(args=[0], retry=False)
    finally:
        servers.point_celery_at(previous)
    assert (queues[first].llen("celery"), queues[second].llen("celery")) == (3, 2)
    for client in queues.values():
        client.delete("celery")
        client.close()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_clicks_reuse_one_publishing_connection_and_a_redis_restart_between_them_costs_no_click(client):
    """The click publishes on a kept connection (a new one per click was most of its cost: it fails
    the first check below). When Redis restarted since the last click, that connection's socket is
    dead: the click still publishes at once instead of leaving the stop to the sweeper."""
    import redis as redis_py

    redis = servers.RedisServer().start()
    client.force_login(AgentFactory())
    try:
        broker = redis.url(3)
        queue = redis_py.Redis.from_url(broker)
        with servers.celery_publisher(broker):
            first, second, third = ChargingSessionFactory.create_batch(3)

            def publishers() -> set[str]:  # the connections other than this test's own
                return {c["id"] for c in queue.client_list() if c["cmd"] != "client|list"}

            _post_stop(client, first)
            after_first = publishers()
            _post_stop(client, second)
            assert queue.llen("celery") == 2
            assert after_first and publishers() == after_first, "the second click opened a connection of its own"

            redis.stop()
            redis.start()  # the same port, empty: the kept connection is dead
            queue = redis_py.Redis.from_url(broker)
            response, took = _post_stop(client, third)
            assert took < 3
            assert queue.llen("celery") == 1, "the click after the restart was left to the sweeper"
            assert 'id="stop-queued"' not in html.unescape(response.content.decode())
    finally:
        redis.close()
    assert RemoteStopRequest.objects.filter(state=State.PENDING).count() == 3  # no worker here: all queued
