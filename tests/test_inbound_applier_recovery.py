"""A worker killed while it applies the inbound queue: the queue is applied again within seconds.

Issue 13, as found: the applier's cache lock outlived a SIGKILLed worker by up to 120 s, and every
apply task meanwhile (the kicks of newly pushed End notifications and CDRs) returned at once, so
the queue stood still. Since issue 16 there is no portal-wide lock: an applier claims sessions with
a short lease (sessions/inbound/claims.py, CLAIM_SECONDS), renewed only while it works; the
sessions a dead applier held wait until its claims lapse, and a run that finds them held comes
back then; every other session is applied at once. Real parts: Redis, two Celery worker processes
one after the other, the real endpoint.
"""

from __future__ import annotations

import json
import signal
import time
from datetime import timedelta

import pytest
import redis
from django.test import TestCase
from django.utils import timezone

from sessions.inbound import claims
from sessions.inbound import queue as inbound_queue
from sessions.models import AuditRecord, ChargingSession, InboundMessage
from sessions.oicp import ids
from tests import servers, test_inbound
from tests.test_inbound import END, NOTIFY_URL, START, assert_ack, msg

Event = AuditRecord.EventType
SESSIONS = 100  # a Start and an End each: a backlog the first worker is still applying when killed
RECOVERY_BUDGET_SECONDS = 15  # was up to 120 s (the old lock's lifetime)


def _session_id(number: int) -> str:
    return f"{number:08d}-0000-4000-8000-000000000013"


def _backlog(sessions: int) -> None:
    """What Hubject pushed while no worker applied: stored (acknowledged), waiting, a minute old
    (so applying does not wait for a burst to ease)."""
    received_at = timezone.now() - timedelta(minutes=1)
    rows = []
    for number in range(sessions):
        sid = _session_id(number)
        for sample, kind in ((START, InboundMessage.Kind.START), (END, InboundMessage.Kind.END)):
            rows.append(
                InboundMessage(
                    kind=kind,
                    session_id=ids.session_key(sid),
                    operator_id="DE*ABC",
                    received_at=received_at,
                    remote_addr="127.0.0.1",
                    raw=json.dumps(msg(sample, SessionID=sid)),
                    parsed={},
                )
            )
    InboundMessage.objects.bulk_create(rows)


def _push(client, body, monkeypatch) -> None:
    """POST as Hubject; the stored message kicks the worker (as outside a test, on commit)."""
    monkeypatch.setattr(inbound_queue, "_last_kick", 0.0)
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert_ack(test_inbound.post(client, NOTIFY_URL, body), result=True, code="000", status=200)


def _pending() -> int:
    return InboundMessage.objects.filter(applied_at__isnull=True, apply_error="").count()


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_while_applying_holds_up_the_queue_only_for_seconds(
    redis_url, simulator, client, settings, monkeypatch
):
    settings.OICP_INBOUND_APPLY = "worker"
    broker = redis_url.rsplit("/", 1)[0] + "/4"  # a Redis database of its own: broker and cache
    store = redis.Redis.from_url(broker)
    store.flushdb()
    database_url = servers.database_url_for_children()
    _backlog(SESSIONS)
    total = 2 * SESSIONS + 2

    with servers.celery_publisher(broker):
        first = servers.celery_worker(
            broker_url=broker, database_url=database_url, oicp_base_url=simulator.url, concurrency=4
        )
        with first as proc:
            # A pushed Start kicks the worker, which applies the whole queue in arrival order.
            _push(client, msg(START, SessionID=_session_id(SESSIONS)), monkeypatch)
            servers.wait_until(
                lambda: _pending() <= total - 20,
                timeout=60,
                interval=0.01,
                message="the first worker to be applying the backlog",
            )
            proc.stop(signal.SIGKILL)  # the whole process group, mid-apply: no chance to let go
            killed_at = time.monotonic()
        assert proc.proc.returncode == -signal.SIGKILL
        left = _pending()
        assert left > 0, "the first worker finished before it was killed: make the backlog larger"
        held = InboundMessage.objects.pending().filter(claimed_until__gte=timezone.now())
        assert held.exists(), "the killed worker held claims on the sessions it was applying"

        # Restarted (as a supervisor does) and Hubject pushes the End: its task finds the dead lock.
        second = servers.celery_worker(
            broker_url=broker, database_url=database_url, oicp_base_url=simulator.url, concurrency=4
        )
        with second:
            _push(client, msg(END, SessionID=_session_id(SESSIONS)), monkeypatch)
            resumed = []

            def applied_all() -> bool:
                waiting = _pending()
                if not resumed and waiting < left + 1:
                    resumed.append(time.monotonic() - killed_at)
                return waiting == 0

            try:
                servers.wait_until(
                    applied_all,
                    timeout=RECOVERY_BUDGET_SECONDS,
                    interval=0.05,
                    message="the queue to be applied after the crash",
                )
            except AssertionError as error:
                raise AssertionError(
                    f"{_pending()} of {left + 1} messages still waiting {time.monotonic() - killed_at:.1f} s after "
                    f"the crash ({held.count()} still claimed)"
                ) from error
            recovered_in = time.monotonic() - killed_at
    print(
        f"\nkilled with {left} messages waiting: applying resumed {resumed[0]:.1f} s after the crash, "
        f"all applied after {recovered_in:.1f} s"
    )
    # The dead claims lapse (at most CLAIM_SECONDS) and the waiting follow-up comes back at once.
    assert resumed[0] < claims.CLAIM_SECONDS + 3
    assert recovered_in < RECOVERY_BUDGET_SECONDS

    # Each message applied once, each session's in the order they arrived (what must stay in order
    # since issue 16: different sessions are applied in parallel).
    messages = list(InboundMessage.objects.order_by("id").values_list("applied_at", "apply_error", "session_id"))
    assert len(messages) == total
    assert all(applied_at is not None and error == "" for applied_at, error, _ in messages)
    per_session: dict[str, list] = {}
    for applied_at, _, session_id in messages:
        per_session.setdefault(session_id, []).append(applied_at)
    assert all(applied == sorted(applied) for applied in per_session.values()), "applied out of arrival order"
    received = AuditRecord.objects.filter(event_type=Event.NOTIFICATION_RECEIVED)
    assert received.count() == total
    # Every session saw its Start before its End: none is left (or reopened) active.
    assert ChargingSession.objects.count() == SESSIONS + 1
    assert set(ChargingSession.objects.values_list("status", flat=True)) == {ChargingSession.Status.CHARGING_ENDED}
