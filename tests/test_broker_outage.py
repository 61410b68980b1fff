"""A broker outage with work in flight: the workers ride it out, and nothing is sent twice.

As found (issue 13, finding 1): with stops waiting on a slow CPO and retries scheduled, stopping
Redis made both Celery workers exit ("Restoring N unacknowledged message(s)", then
`Unrecoverable error: AttributeError("'NoneType' object has no attribute 'hostname'")`), and
`make run` then stopped the whole portal. The workers here are started as `make run` starts them:
one for fresh stops (`-Q celery`), one for retries and deferred stops (`-Q stop-retries`).
"""

from __future__ import annotations

import subprocess
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from portal.processes import celery_worker_command
from sessions import services
from sessions.models import RemoteStopRequest, StopReason
from tests import servers
from tests.factories import AgentFactory, ChargingSessionFactory

State = RemoteStopRequest.State
pytestmark = pytest.mark.integration

PER_CPO = 2
# Calls that Hubject answers while Redis is down, and calls answered after the workers reconnected
# (their acknowledgement goes through the connection that was lost).
DURING, AFTER = 4, 22
OUTAGE = 8


def make_run_worker(
    name: str, queue: str, *, broker_url: str, database_url: str, oicp_base_url: str, extra_env: dict[str, str]
) -> servers.Process:
    """A worker with `make run`'s command line (scripts/run.py), on the test's Redis and database."""
    env = servers.child_env(
        CELERY_BROKER_URL=broker_url,
        DATABASE_URL=database_url,
        OICP_BASE_URL=oicp_base_url,
        CACHE_URL=broker_url.replace("redis://", "rediscache://", 1),
        **extra_env,
    )
    return servers.Process(name, celery_worker_command(queues=queue, concurrency=8, name=name), env)


def _alive(workers: list[servers.Process]) -> None:
    for proc in workers:
        assert proc.proc.poll() is None, f"{proc.name} exited with {proc.proc.returncode}:\n{proc.output()}"
        assert "Unrecoverable error" not in proc.output(), proc.output()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_redis_stopped_with_stops_in_flight_and_retries_scheduled_workers_survive_and_send_once(simulator, settings):
    redis = servers.RedisServer().start()
    database_url = servers.database_url_for_children()
    agent = AgentFactory()
    # Two slow CPOs: PER_CPO calls wait on each, the others are deferred (countdown messages on the
    # retry queue, re-deferred every ~1 s while the CPO's slots are taken).
    quick = [ChargingSessionFactory(evse_id=f"DE*SLW*E{9100 + n:05d}*1") for n in range(PER_CPO + 1)]
    held = [ChargingSessionFactory(evse_id=f"DE*SLX*E{9200 + n:05d}*1") for n in range(PER_CPO + 1)]
    sessions = quick + held
    behaviours = {cs.evse_id: {"action": "accept", "delay_seconds": DURING} for cs in quick}
    behaviours |= {cs.evse_id: {"action": "accept", "delay_seconds": AFTER} for cs in held}
    simulator.patch_behaviours({"evses": behaviours})
    simulator.add_sessions(*sessions)
    env = {"OICP_PER_OPERATOR_CONCURRENCY": str(PER_CPO)}
    workers: list[servers.Process] = []
    try:
        broker = redis.url(0)
        for name, queue in (("worker", "celery"), ("retries", "stop-retries")):
            workers.append(
                make_run_worker(
                    name,
                    queue,
                    broker_url=broker,
                    database_url=database_url,
                    oicp_base_url=simulator.url,
                    extra_env=env,
                )
            )
        for proc in workers:
            proc.wait_for_line("ready.", timeout=60)
        with servers.celery_publisher(broker):
            stops = [
                services.request_remote_stop(
                    charging_session_id=cs.pk, acting_user=agent, reason=StopReason.DRIVER_ASKED
                ).stop_request
                for cs in sessions
            ]

            def in_flight():
                return RemoteStopRequest.objects.filter(state=State.SENDING).count() == 2 * PER_CPO

            servers.wait_until(in_flight, timeout=30, message="calls waiting on the slow CPOs")
            workers[1].wait_for_line("] received", timeout=30)  # deferred stops on the retry queue

            cli = servers.require("redis-cli", "redis-server")
            subprocess.run([cli, "-p", str(redis.port), "shutdown", "nosave"], capture_output=True, timeout=10)
            redis.stop()
            time.sleep(OUTAGE)  # the quick CPO's calls come back while Redis is gone
            _alive(workers)
            redis.start()  # the same port, empty: queued and unacknowledged messages are gone
            # New calls are answered at once; the held ones still wait for their answers.
            simulator.patch_behaviours({"evses": {cs.evse_id: {"action": "accept"} for cs in sessions}})

            # The sweeper (beat's job) re-queues the stops whose messages the outage lost; from a
            # clock past the redispatch age instead of waiting for it.
            later = timezone.now() + timedelta(seconds=settings.STOP_REDISPATCH_AFTER_SECONDS + 1)
            services.sweep_stop_requests(now=later)

            def all_final():
                return not RemoteStopRequest.objects.filter(state__in=[State.PENDING, State.SENDING]).exists()

            servers.wait_until(all_final, timeout=40, message="every stop to be final")
            time.sleep(1)  # the held calls' acknowledgements, through the lost connection
            _alive(workers)
    finally:
        for proc in workers:
            proc.stop()
        redis.close()

    for stop in stops:
        stop.refresh_from_db()
        assert (stop.state, stop.attempt_count) == (State.ACCEPTED, 1)
    for cs in sessions:
        assert len(simulator.received(session_id=cs.session_id)) == 1, cs.session_id


def test_a_channel_of_a_lost_connection_raises_a_connection_error_not_an_attribute_error(redis_url):
    """The mechanism behind the crash, and the guard in portal/celery.py: the consumer collects a lost
    connection (the transport lets go of its client), then restores unacknowledged messages and acks
    late tasks through that connection's channel. That must be a connection error, which kombu and
    Celery ignore or log, not an AttributeError, which ends the worker."""
    import redis
    from kombu import Connection

    import portal.celery  # noqa: F401 - installs the guard, as in every worker

    connection = Connection(redis_url.rsplit("/", 1)[0] + "/9")
    channel = connection.default_channel
    connection.collect()
    with pytest.raises(redis.exceptions.ConnectionError):
        channel.qos.restore_unacked()
    with pytest.raises(redis.exceptions.ConnectionError):
        channel.qos.ack("a-delivery-tag")
