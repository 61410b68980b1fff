"""Many agents, many stops, slow CPOs: with the real worker and simulator, on SQLite and PostgreSQL.

The point is PostgreSQL (`make test` runs the suite on both): real row locks, real concurrent
transactions, one connection per thread.
"""

from __future__ import annotations

import html
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
from django.db import connections
from django.test import Client
from django.urls import reverse

from sessions import services
from sessions.models import RemoteStopRequest, StopReason
from sessions.stops import presenters as stop_advice
from tests import servers
from tests.factories import AgentFactory, ChargingSessionFactory

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
State = RemoteStopRequest.State


def _in_threads(count: int, work) -> list:
    """Run work(index) in `count` threads released together; each thread closes its DB connections."""
    barrier = threading.Barrier(count)

    def run(index):
        try:
            barrier.wait(timeout=60)
            return work(index)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def _wait_all_final(pks: list[int], timeout: float = 240) -> None:
    def all_final():
        return (
            not RemoteStopRequest.objects.filter(pk__in=pks).exclude(state__in=RemoteStopRequest.FINAL_STATES).exists()
        )

    servers.wait_until(all_final, timeout=timeout, interval=0.5, message=f"{len(pks)} stops to become final")


def test_twenty_agents_stopping_one_session_at_once_make_one_request_and_one_hubject_call(live):
    charging_session = ChargingSessionFactory()
    live.add_sessions(charging_session)
    clients = []
    for index in range(20):
        client = Client()
        client.force_login(AgentFactory(username=f"agent-{index:02d}"))
        clients.append(client)
    url = reverse("charging_sessions:request-stop", args=[charging_session.pk])

    def submit(index):
        response = clients[index].post(url, {"reason": StopReason.DRIVER_ASKED}, follow=True)
        assert response.status_code == 200
        return html.unescape(response.content.decode())

    pages = _in_threads(20, submit)

    stops = list(RemoteStopRequest.objects.filter(charging_session=charging_session))
    assert len(stops) == 1
    accepted = [page for page in pages if stop_advice.REQUESTED in page]
    refused = [page for page in pages if stop_advice.REFUSED.format(reason="") in page]
    assert (len(accepted), len(refused)) == (1, 19)
    _wait_all_final([stops[0].pk], timeout=60)
    assert len(live.received(session_id=charging_session.session_id)) == 1
    stops[0].refresh_from_db()
    assert (stops[0].state, stops[0].attempt_count) == (State.ACCEPTED, 1)


def test_two_hundred_stops_for_two_hundred_sessions_at_once_all_become_final(live):
    operators = ["DE*ACC", "NL*FST", "DE*AAA", "DE*BBB"]
    sessions = [ChargingSessionFactory(evse_id=f"{operators[n % 4]}*E{n:05d}*9") for n in range(200)]
    live.add_sessions(*sessions)
    agents = [AgentFactory() for _ in range(20)]

    def submit(index):
        return [
            services.request_remote_stop(
                charging_session_id=cs.pk, acting_user=agents[index], reason=StopReason.DRIVER_ASKED
            ).stop_request.pk
            for cs in sessions[index::20]
        ]

    pks = [pk for batch in _in_threads(20, submit) for pk in batch]
    assert len(pks) == len(set(pks)) == 200
    _wait_all_final(pks)
    assert set(RemoteStopRequest.objects.filter(pk__in=pks).values_list("state", flat=True)) == {State.ACCEPTED}
    ours = {cs.session_id for cs in sessions}
    calls = [entry["body"]["SessionID"] for entry in live.received() if (entry["body"] or {}).get("SessionID") in ours]
    assert sorted(calls) == sorted(ours)  # exactly one Hubject call per session


@pytest.fixture
def slow_cpo_worker(simulator, redis_url, django_db_blocker):
    broker = redis_url.rsplit("/", 1)[0] + "/4"
    with django_db_blocker.unblock():
        database_url = servers.database_url_for_children()
    worker = servers.celery_worker(
        broker_url=broker,
        database_url=database_url,
        oicp_base_url=simulator.url,
        concurrency=10,
        extra_env={"OICP_PER_OPERATOR_CONCURRENCY": "5"},
    )
    with worker as proc, servers.celery_publisher(broker):
        yield proc
        # 30 calls of 20 s each are still queued or waiting: do not wait for them.
        proc.stop(signal.SIGKILL)
    simulator.patch_behaviours({"operators": {"DE*SLO": None, "NL*FST": None}})


def test_a_slow_cpo_does_not_hold_up_stops_for_other_cpos(simulator, slow_cpo_worker):
    agent = AgentFactory()
    simulator.patch_behaviours(
        {"operators": {"DE*SLO": {"action": "accept", "delay_seconds": 20}, "NL*FST": {"action": "accept"}}}
    )
    slow = [ChargingSessionFactory(evse_id=f"DE*SLO*E{n:05d}*1") for n in range(30)]
    fast = ChargingSessionFactory(evse_id="NL*FST*E00001*1")
    simulator.add_sessions(*slow, fast)
    slow_ids = {cs.session_id for cs in slow}
    for cs in slow:
        services.request_remote_stop(charging_session_id=cs.pk, acting_user=agent, reason=StopReason.DRIVER_ASKED)

    def held():
        return [e for e in simulator.received() if (e["body"] or {}).get("SessionID") in slow_ids]

    # The CPO holds its share of calls; the per-CPO limit keeps the rest queued, not in threads.
    servers.wait_until(lambda: len(held()) >= 5, timeout=60, message="the slow CPO to hold 5 calls")
    fast_stop = services.request_remote_stop(
        charging_session_id=fast.pk, acting_user=agent, reason=StopReason.DRIVER_ASKED
    ).stop_request

    def fast_accepted():
        fast_stop.refresh_from_db()
        return fast_stop.state == State.ACCEPTED

    servers.wait_until(fast_accepted, timeout=120, message="the other CPO's stop to be accepted")
    entries = simulator.received()
    [fast_entry] = [e for e in entries if (e["body"] or {}).get("SessionID") == fast.session_id]
    slow_entries = [e for e in entries if (e["body"] or {}).get("SessionID") in slow_ids]
    assert len(slow_entries) <= 5  # never more than OICP_PER_OPERATOR_CONCURRENCY waiting on one CPO
    # Ordering, not timing: it reached the simulator after the held calls and was answered before
    # any of them was.
    assert fast_entry["seq"] > max(e["seq"] for e in slow_entries)
    fast_answered = datetime.fromisoformat(fast_entry["answered_at"])
    for entry in slow_entries:
        assert entry["answered_at"] is None or datetime.fromisoformat(entry["answered_at"]) > fast_answered
    assert RemoteStopRequest.objects.filter(charging_session__in=slow, state=State.ACCEPTED).count() == 0
