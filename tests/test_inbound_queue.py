"""OICP_INBOUND_APPLY = "worker": a pushed message is acknowledged once stored, applied by the worker.

The endpoints answer as in "request" mode (tests/test_inbound.py), but the session changes only
when `apply_inbound_messages` (the worker's task) runs. The real worker applying messages pushed
over HTTP is covered by tests/test_confirmation_integration.py, which runs in this mode.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.test import TestCase
from django.utils import timezone

from sessions import services
from sessions.inbound import applying, claims
from sessions.inbound import queue as inbound_queue
from sessions.inbound import selectors as inbound_selectors
from sessions.inbound.applying import apply_group
from sessions.models import AuditRecord, ChargeDetailRecord, ChargingSession, InboundMessage, RemoteStopRequest
from tests import test_inbound
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory
from tests.test_inbound import CDR, END, NOTIFY_URL, PROGRESS, SID, START, assert_ack, cdr_url, msg

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("worker_mode")]
Event = AuditRecord.EventType
State = RemoteStopRequest.State


def post(*args, **kwargs):
    """POST as Hubject, then run the kick the stored message schedules on commit (as outside a test)."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return test_inbound.post(*args, **kwargs)


def test_a_notification_is_acknowledged_stored_and_applied_only_by_the_worker(client, worker_mode):
    ack = assert_ack(post(client, NOTIFY_URL, START), result=True, code="000", status=200)
    assert ack["SessionID"] == SID
    message = InboundMessage.objects.get()
    assert message.applied_at is None and message.charging_session is None
    assert json.loads(message.raw) == START and message.session_id == SID
    assert not ChargingSession.objects.exists()
    assert inbound_selectors.pending_inbound_messages() == 1
    assert worker_mode.call_count == 1

    assert services.apply_inbound_messages() == 1

    message.refresh_from_db()
    charging_session = ChargingSession.objects.get(session_id=SID)
    assert message.charging_session == charging_session and message.applied_at is not None
    # The session counts from when the message arrived, not from when it was applied.
    assert charging_session.last_update_at == message.received_at
    events = list(AuditRecord.objects.order_by("id").values_list("event_type", flat=True))
    assert events == [Event.SESSION_CREATED, Event.NOTIFICATION_RECEIVED]
    assert inbound_selectors.pending_inbound_messages() == 0
    assert services.apply_inbound_messages() == 0


def test_a_message_stored_while_another_applier_finishes_is_not_left_behind(client, monkeypatch):
    post(client, NOTIFY_URL, START)
    late = msg(START, SessionID="00000000-02d8-4fa0-b810-9a9d50d2c527")

    class OneSlot(threading.BoundedSemaphore):
        def release(self):
            # The late message's own task ran while the only slot was taken, and gave up.
            if not InboundMessage.objects.filter(session_id=late["SessionID"]).exists():
                post(client, NOTIFY_URL, late)
                assert services.apply_inbound_messages() == 0
            super().release()

    monkeypatch.setattr(inbound_queue, "_slots", OneSlot(1))
    assert services.apply_inbound_messages() == 2
    assert inbound_selectors.pending_inbound_messages() == 0


def test_a_broker_that_is_down_does_not_lose_the_message_or_the_acknowledgement(client, worker_mode, caplog):
    worker_mode.side_effect = OperationalError("broker down")
    assert_ack(post(client, NOTIFY_URL, START), result=True, code="000", status=200)
    assert "the next sweep applies the message" in caplog.text
    assert services.apply_inbound_messages() == 1  # what the beat sweep runs
    assert ChargingSession.objects.filter(session_id=SID).exists()


def test_messages_of_a_session_are_applied_in_the_order_they_arrived(client):
    stop = RemoteStopRequestFactory(
        state=State.ACCEPTED, charging_session=ChargingSessionFactory(session_id=SID, evse_id="DE*XYZ*ETEST1")
    )
    post(client, NOTIFY_URL, END)
    post(client, cdr_url(), CDR)
    post(client, NOTIFY_URL, START)  # late: must not reopen what the CDR closed
    assert services.apply_inbound_messages() == 3
    charging_session = ChargingSession.objects.get(session_id=SID)
    assert charging_session.status == ChargingSession.Status.CLOSED
    stop.refresh_from_db()
    assert stop.state == State.CONFIRMED and stop.confirmed_by == "END"
    end_message = InboundMessage.objects.get(kind=InboundMessage.Kind.END)
    assert stop.confirmed_at == end_message.received_at
    events = list(AuditRecord.objects.order_by("id").values_list("event_type", flat=True))
    assert events[-4:] == [
        Event.STOP_CONFIRMED,
        Event.NOTIFICATION_RECEIVED,
        Event.CDR_RECEIVED,
        Event.NOTIFICATION_RECEIVED,
    ]


def test_a_repeated_cdr_is_named_a_duplicate_before_and_after_it_is_applied(client):
    first = assert_ack(post(client, cdr_url(), CDR), result=True, code="000", status=200)
    assert first["StatusCode"]["AdditionalInfo"] is None
    second = assert_ack(post(client, cdr_url(), CDR), result=True, code="000", status=200)
    assert second["StatusCode"]["AdditionalInfo"].startswith("Duplicate")
    assert services.apply_inbound_messages() == 2
    assert ChargeDetailRecord.objects.count() == 1
    flags = [m.parsed.get("duplicate", False) for m in InboundMessage.objects.order_by("id")]
    assert flags == [False, True]
    third = assert_ack(post(client, cdr_url(), CDR), result=True, code="000", status=200)
    assert third["StatusCode"]["AdditionalInfo"].startswith("Duplicate")


def test_a_message_that_cannot_be_applied_is_set_aside_and_the_queue_moves_on(client, caplog):
    post(client, NOTIFY_URL, START)
    post(client, NOTIFY_URL, msg(START, SessionID="00000000-02d8-4fa0-b810-9a9d50d2c527"))
    InboundMessage.objects.filter(session_id=SID).update(raw="{not json")  # cannot happen: stands for a bug
    assert services.apply_inbound_messages() == 1
    broken = InboundMessage.objects.get(session_id=SID)
    assert broken.applied_at is None and broken.apply_error.startswith("InboundError")
    assert ChargingSession.objects.filter(session_id="00000000-02d8-4fa0-b810-9a9d50d2c527").exists()
    assert inbound_selectors.pending_inbound_messages() == 0  # not retried by itself
    assert "could not be applied" in caplog.text


def test_the_database_going_away_leaves_the_message_queued(client, monkeypatch):
    post(client, NOTIFY_URL, START)

    def unavailable(**kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(applying, "record_charging_notification", unavailable)
    with pytest.raises(OperationalError):
        services.apply_inbound_messages()
    message = InboundMessage.objects.get()
    assert message.applied_at is None and message.apply_error == ""
    monkeypatch.undo()
    assert services.apply_inbound_messages() == 1


def test_a_session_claimed_by_another_applier_waits_until_its_claim_lapses(client):
    post(client, NOTIFY_URL, START)
    assert claims.claim_messages("other-worker", batch=10)  # another worker is applying
    assert services.apply_inbound_messages() == 0
    assert inbound_selectors.pending_inbound_messages() == 1
    InboundMessage.objects.update(claimed_until=timezone.now() - timedelta(seconds=1))  # its worker died
    assert services.apply_inbound_messages() == 1


def test_a_message_is_applied_once_even_when_two_runs_pick_it(client):
    post(client, NOTIFY_URL, START)
    [group] = claims.claim_messages("worker-a", batch=10)
    assert apply_group(group, applier="worker-a").applied == 1
    assert apply_group(group, applier="worker-a").applied == 0  # claimed: already applied
    assert AuditRecord.objects.filter(event_type=Event.NOTIFICATION_RECEIVED).count() == 1


def test_a_refused_message_is_not_stored(client):
    assert_ack(post(client, NOTIFY_URL, msg(START, EvseID="nonsense")), result=False, code="022", status=400)
    assert not InboundMessage.objects.exists()


def test_the_database_unavailable_at_the_endpoint_is_a_503_hubject_may_retry(client, monkeypatch):
    def unavailable(*args, **kwargs):
        raise OperationalError("no database")

    monkeypatch.setattr(inbound_queue, "_insert_message", unavailable)
    assert_ack(post(client, NOTIFY_URL, START), result=False, code="021", status=503)


def test_the_stored_row_is_what_the_orm_would_have_written(client):
    # The endpoint INSERTs with plain SQL; every field must read back as the model defines it.
    post(client, NOTIFY_URL, START, REMOTE_ADDR="::ffff:127.0.0.1")
    message = InboundMessage.objects.get()
    assert message.kind == InboundMessage.Kind.START and message.operator_id == "DE*ABC"
    assert message.remote_addr == "127.0.0.1" and message.parsed == {} and message.apply_error == ""
    assert abs((timezone.now() - message.received_at).total_seconds()) < 60
    services.apply_inbound_messages()
    message.refresh_from_db()
    assert message.parsed["SessionID"] == SID and message.parsed["Type"] == "Start"


def test_a_burst_queues_one_task_per_kick_interval(client, worker_mode, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(inbound_queue.time, "monotonic", lambda: clock[0])
    for number in range(5):
        post(client, NOTIFY_URL, msg(START, SessionID=f"{number:08d}-02d8-4fa0-b810-9a9d50d2c527"))
        clock[0] += 0.01
    assert worker_mode.call_count == 1
    clock[0] += inbound_queue.KICK_INTERVAL
    post(client, NOTIFY_URL, msg(END))
    assert worker_mode.call_count == 2
    # What no task picked up, the sweep applies (the same task, from the beat schedule).
    assert services.apply_inbound_messages() == 6


def test_the_sweep_runs_every_few_seconds(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["apply-inbound-messages"]
    assert entry["task"] == "charging_sessions.apply_inbound_messages"
    assert entry["schedule"] == settings.OICP_INBOUND_SWEEP_SECONDS <= 5


def test_the_admin_shows_where_each_message_is_in_the_queue(admin_client, client):
    post(client, NOTIFY_URL, START)
    post(client, NOTIFY_URL, msg(START, SessionID="00000000-02d8-4fa0-b810-9a9d50d2c527"))
    InboundMessage.objects.filter(session_id=SID).update(apply_error="ValueError: stands for a bug")
    url = "/admin/charging_sessions/inboundmessage/"
    assert b"waiting" in admin_client.get(url).content
    errors = admin_client.get(url, {"applied": "error"})
    assert errors.status_code == 200 and b"not applied: ValueError" in errors.content
    assert list(errors.context["cl"].queryset.values_list("session_id", flat=True)) == [SID]
    waiting = admin_client.get(url, {"applied": "waiting"}).context["cl"].queryset
    assert list(waiting.values_list("session_id", flat=True)) == ["00000000-02d8-4fa0-b810-9a9d50d2c527"]


def test_during_a_burst_applying_waits_until_it_eases_or_the_oldest_waited_too_long(client, settings, monkeypatch):
    settings.OICP_INBOUND_BURST_RATE = 3
    for number in range(3):
        post(client, NOTIFY_URL, msg(START, SessionID=f"{number:08d}-02d8-4fa0-b810-9a9d50d2c527"))
    assert inbound_queue._burst_in_progress()
    pauses = []

    def pause(seconds):
        # The burst is over a second later: the messages are no longer recent.
        pauses.append(seconds)
        InboundMessage.objects.update(received_at=timezone.now() - timedelta(seconds=2))

    monkeypatch.setattr(inbound_queue.time, "sleep", pause)
    assert services.apply_inbound_messages() == 3
    assert pauses == [inbound_queue.BURST_PAUSE_SECONDS]

    # A burst that goes on: the oldest message is applied once it has waited long enough.
    post(client, NOTIFY_URL, msg(END, SessionID="00000000-02d8-4fa0-b810-9a9d50d2c527"))
    for number in range(3, 6):
        post(client, NOTIFY_URL, msg(START, SessionID=f"{number:08d}-02d8-4fa0-b810-9a9d50d2c527"))
    assert inbound_queue._burst_in_progress()
    InboundMessage.objects.filter(kind=InboundMessage.Kind.END).update(
        received_at=timezone.now() - timedelta(seconds=settings.OICP_INBOUND_MAX_DEFER_SECONDS + 1)
    )
    assert not inbound_queue._burst_in_progress()
    settings.OICP_INBOUND_BURST_RATE = 0
    assert services.apply_inbound_messages() == 4


def test_a_burst_is_seen_while_appliers_keep_up_with_it(client, settings):
    """As found (bench/ingest.py, two workers beside gunicorn): only waiting messages were counted,
    so appliers that applied each handful at once never saw the burst they were slowing down."""
    settings.OICP_INBOUND_BURST_RATE = 3
    for number in range(3):
        post(client, NOTIFY_URL, msg(START, SessionID=f"{number:08d}-02d8-4fa0-b810-9a9d50d2c527"))
        settings.OICP_INBOUND_BURST_RATE, rate = 0, settings.OICP_INBOUND_BURST_RATE
        services.apply_inbound_messages()  # an applier at work beside the burst
        settings.OICP_INBOUND_BURST_RATE = rate
    post(client, NOTIFY_URL, msg(PROGRESS, SessionID="00000000-02d8-4fa0-b810-9a9d50d2c527"))
    assert inbound_queue._burst_in_progress()


def test_messages_that_trickle_in_are_gathered_before_the_next_claim(client, settings, monkeypatch):
    """A batch costs its fixed statements however few messages it holds: after a small claim the
    applier waits a moment for more (it claimed them two or three at a time, as fast as they came)."""
    settings.OICP_INBOUND_BURST_RATE = 0
    post(client, NOTIFY_URL, START)
    waits = []

    def meanwhile_another_arrives(seconds):
        waits.append(seconds)
        if len(waits) == 1:
            post(client, NOTIFY_URL, msg(START, SessionID="00000000-02d8-4fa0-b810-9a9d50d2c527"))

    checks = []

    def claimable():  # the first look finds the queue busy, as under steady traffic
        checks.append(1)
        return len(checks) == 1 or InboundMessage.objects.pending().exists()

    monkeypatch.setattr(inbound_queue.time, "sleep", meanwhile_another_arrives)
    monkeypatch.setattr(claims, "anything_claimable", claimable)
    assert services.apply_inbound_messages() == 2
    assert waits == [inbound_queue.GATHER_SECONDS]  # once, before the claim that found the new one
