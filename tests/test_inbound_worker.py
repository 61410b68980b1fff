"""The inbound appliers' own worker: pushed messages are applied by it, not by the stops' worker.

Issue 16, as found: the apply tasks ran in the stops' worker, so a batch being applied (CPU-bound
Python) held the GIL the stop threads needed, and on 2 cores the appliers took the CPU from the
acknowledgements and the agents' pages (sustained 500/s: dispatch p99 638 ms against the bare
task's 221; ingest with two workers beside 0.35 of the one-INSERT view). The apply tasks now go to
their own queue (OICP_INBOUND_QUEUE), served by a worker process of their own (portal/processes.py),
as `make run` starts it. Real parts: Redis, Celery's routing, the worker processes, the real
endpoint.
"""

from __future__ import annotations

import os
import time

import pytest
import redis

from portal.processes import INBOUND_WORKER_NICENESS, celery_worker_command, inbound_worker_command
from sessions.inbound import queue as inbound_queue
from sessions.models import ChargingSession, InboundMessage
from tests import servers
from tests.test_inbound import END, START, msg
from tests.test_inbound_applier_recovery import _push

SESSION_ID = "00000016-0000-4000-8000-000000000016"


@pytest.mark.integration
def test_apply_tasks_are_published_to_the_inbound_queue_and_stops_to_their_own(redis_url, settings):
    """The kick of a stored message, beat's sweep (by the task's name) and a stop each land on their
    own queue."""
    from portal.celery import app
    from sessions.tasks import send_remote_stop

    broker = redis_url.rsplit("/", 1)[0] + "/9"
    queues = redis.Redis.from_url(broker)
    queues.flushdb()
    with servers.celery_publisher(broker):
        inbound_queue._last_kick = 0.0
        inbound_queue.kick_inbound_worker()
        app.send_task("charging_sessions.apply_inbound_messages")  # as beat sends its sweep
        send_remote_stop.apply_async(args=[0], retry=False)
    assert settings.OICP_INBOUND_QUEUE == "inbound"
    assert (queues.llen("inbound"), queues.llen("celery")) == (2, 1)
    queues.flushdb()
    queues.close()


def test_the_inbound_worker_command_serves_the_inbound_queue_only_and_can_run_at_a_lower_priority():
    argv = inbound_worker_command()
    assert argv[0].endswith("celery") and argv[argv.index("-Q") + 1] == "inbound"
    assert inbound_worker_command(niceness=5)[:3] == ["nice", "-n", "5"]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_pushed_messages_are_applied_by_the_inbound_worker_and_never_by_the_stops_worker(
    redis_url, simulator, client, settings, monkeypatch
):
    settings.OICP_INBOUND_APPLY = "worker"
    broker = redis_url.rsplit("/", 1)[0] + "/10"
    redis.Redis.from_url(broker).flushdb()
    database_url = servers.database_url_for_children()
    options = {"broker_url": broker, "database_url": database_url, "oicp_base_url": simulator.url}
    stops_only = celery_worker_command(queues="celery,stop-retries", concurrency=4, quiet=True)

    def applied() -> int:
        return InboundMessage.objects.filter(applied_at__isnull=False).count()

    with servers.celery_publisher(broker), servers.celery_worker(**options, command=stops_only):
        _push(client, msg(START, SessionID=SESSION_ID), monkeypatch)
        time.sleep(3)  # the stops' worker is ready (the fixture waited) and must leave the kick alone
        assert applied() == 0 and not ChargingSession.objects.exists()

        with servers.celery_worker(**options, command=inbound_worker_command(quiet=True)) as inbound:
            assert os.getpriority(os.PRIO_PROCESS, inbound.proc.pid) == INBOUND_WORKER_NICENESS + os.nice(0)
            servers.wait_until(lambda: applied() == 1, timeout=30, message="the waiting Start to be applied")
            _push(client, msg(END, SessionID=SESSION_ID), monkeypatch)
            servers.wait_until(lambda: applied() == 2, timeout=30, message="the End to be applied")
    session = ChargingSession.objects.get()
    assert session.status == ChargingSession.Status.CHARGING_ENDED
