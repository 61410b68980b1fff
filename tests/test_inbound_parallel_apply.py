"""Issue 16: the inbound queue applied in batches, in order per session, in parallel across sessions.

As found: one applier for the whole portal (a cache lock: a second applier gave up at once) and one
transaction, one audit-chain write, per message. Now an applier claims whole sessions
(sessions/inbound/claims.py) and applies each session's messages in one transaction with one
audit write (sessions/inbound/applying.py); several appliers work at once on different sessions.
On SQLite and PostgreSQL (real threads, each with its own database connection).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import defaultdict
from datetime import timedelta

import pytest
from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sessions import services
from sessions.inbound import applying, claims
from sessions.inbound import queue as inbound_queue
from sessions.inbound import selectors as inbound_selectors
from sessions.inbound.services import session_row
from sessions.models import AuditChainHead, AuditRecord, ChargingSession, InboundMessage, RemoteStopRequest
from tests import test_inbound
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory
from tests.test_inbound import CDR, END, NOTIFY_URL, PROGRESS, START, cdr_url, msg

Event = AuditRecord.EventType
RECEIVED = (Event.NOTIFICATION_RECEIVED, Event.CDR_RECEIVED)
pytestmark = pytest.mark.usefixtures("worker_mode")


def _sid(number: int) -> str:
    return f"{number:08d}-1616-4000-8000-000000000016"


def _push(client, number: int, sample: dict) -> None:
    url = cdr_url() if sample is CDR else NOTIFY_URL
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert test_inbound.post(client, url, msg(sample, SessionID=_sid(number))).status_code == 200


def _push_interleaved(client, sessions: int) -> None:
    """Start, Progress, End, CDR of each session; the sessions' messages interleaved, as Hubject pushes."""
    for sample in (START, PROGRESS, END, CDR):
        for number in range(sessions):
            _push(client, number, sample)


def _audit_writes(queries) -> int:
    head = AuditChainHead._meta.db_table
    # The head's move; on PostgreSQL it is inside the audit INSERT's statement (a data-modifying CTE).
    return sum(1 for query in queries if re.search(rf'UPDATE "?{head}"?', query["sql"]))


def _received_order_per_session() -> dict[int, list[int]]:
    """Per session, the inbound message ids in the order their audit records were chained."""
    order: dict[int, list[int]] = defaultdict(list)
    for session_pk, data in (
        AuditRecord.objects.filter(event_type__in=RECEIVED).order_by("id").values_list("charging_session_id", "data")
    ):
        order[session_pk].append((data if isinstance(data, dict) else json.loads(data))["inbound_message_id"])
    return order


# --- as found: one transaction and one audit write per message, one applier at a time -------------


@pytest.mark.django_db
def test_a_sessions_messages_are_applied_in_one_transaction_with_one_audit_write(client):
    stop = RemoteStopRequestFactory(
        state=RemoteStopRequest.State.ACCEPTED,
        charging_session=ChargingSessionFactory(session_id=_sid(0), evse_id="DE*XYZ*ETEST1"),
    )
    for sample in (START, PROGRESS, END, CDR):
        _push(client, 0, sample)
    _push(client, 1, START)
    with CaptureQueriesContext(connection) as queries:
        assert services.apply_inbound_messages() == 5
    assert _audit_writes(queries) == 1  # one per transaction (both sessions'), not one per message (it was 5)
    charging_session = ChargingSession.objects.get(session_id=_sid(0))
    assert charging_session.status == ChargingSession.Status.CLOSED
    stop.refresh_from_db()
    assert stop.state == RemoteStopRequest.State.CONFIRMED and stop.confirmed_by == "END"
    messages = list(InboundMessage.objects.filter(session_id=_sid(0)).order_by("id").values_list("pk", flat=True))
    assert _received_order_per_session()[charging_session.pk] == messages


@pytest.mark.django_db(transaction=True)
def test_two_appliers_at_once_keep_each_sessions_order_and_apply_every_message_once(client, monkeypatch):
    sessions = 30
    _push_interleaved(client, sessions)
    total = 4 * sessions
    monkeypatch.setattr(inbound_queue, "BATCH_SIZE", 4)  # many small claims: the appliers take turns
    apply_group = applying.apply_group

    def a_little_slower(message_ids, *, applier):
        time.sleep(0.005)  # neither applier can finish the whole queue before the other starts
        return apply_group(message_ids, applier=applier)

    monkeypatch.setattr(inbound_queue, "apply_group", a_little_slower)
    barrier = threading.Barrier(2)
    counts: list[int] = []
    errors: list[BaseException] = []

    def applier() -> None:
        try:
            barrier.wait(timeout=30)
            counts.append(services.apply_inbound_messages())
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=applier) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert sorted(counts)[0] > 0, f"one applier did all the work: {counts}"  # as found: [0, 120]
    assert sum(counts) == total

    applied = list(InboundMessage.objects.order_by("id").values_list("session_id", "applied_at", "apply_error"))
    assert all(applied_at is not None and error == "" for _, applied_at, error in applied)
    assert inbound_selectors.pending_inbound_messages() == 0
    # Exactly once: one audit record per message, each naming a different message.
    records = AuditRecord.objects.filter(event_type__in=RECEIVED)
    assert records.count() == total
    order = _received_order_per_session()
    assert sum(len(ids) for ids in order.values()) == total
    for session_pk, message_ids in order.items():
        assert message_ids == sorted(message_ids), f"session {session_pk} applied out of order: {message_ids}"
    assert len(order) == sessions
    assert set(ChargingSession.objects.values_list("status", flat=True)) == {ChargingSession.Status.CLOSED}
    assert len(set(InboundMessage.objects.values_list("applier", flat=True))) == 2  # both applied


# --- the claim -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_later_message_of_a_session_another_applier_holds_is_not_claimed(client):
    _push(client, 0, START)
    assert claims.claim_messages("worker-a", batch=10) == [[InboundMessage.objects.get().pk]]
    _push(client, 0, END)  # arrives while worker-a applies the Start
    _push(client, 1, START)
    groups = claims.claim_messages("worker-b", batch=10)
    assert groups == [[InboundMessage.objects.get(session_id=_sid(1)).pk]]  # not session 0's End
    assert claims.claim_messages("worker-c", batch=10) == []
    # Once worker-a is done with session 0, its End is anyone's.
    start = InboundMessage.objects.get(kind=InboundMessage.Kind.START, session_id=_sid(0))
    assert applying.apply_group([start.pk], applier="worker-a").applied == 1
    assert claims.claim_messages("worker-c", batch=10) == [[InboundMessage.objects.get(kind="END").pk]]


@pytest.mark.django_db
def test_a_claim_takes_every_waiting_message_of_its_sessions_grouped_in_arrival_order(client):
    _push_interleaved(client, 3)
    ids = defaultdict(list)
    for pk, key in InboundMessage.objects.order_by("id").values_list("pk", "session_id"):
        ids[key].append(pk)
    # The oldest two messages are sessions 0 and 1: all their messages, not session 2's.
    assert claims.claim_messages("worker-a", batch=2) == [ids[_sid(0)], ids[_sid(1)]]
    assert claims.claim_messages("worker-b", batch=2) == [ids[_sid(2)]]


@pytest.mark.django_db
def test_messages_without_a_session_key_are_groups_of_their_own(client):
    for number in range(3):
        _push(client, number, START)
    InboundMessage.objects.update(session_id="")  # cannot come from the endpoint; rows from elsewhere
    pks = list(InboundMessage.objects.order_by("id").values_list("pk", flat=True))
    assert claims.claim_messages("worker-a", batch=2) == [[pks[0]], [pks[1]]]
    assert claims.claim_messages("worker-b", batch=2) == [[pks[2]]]


@pytest.mark.django_db(transaction=True)
def test_a_crashed_appliers_claim_is_taken_over_once_it_lapses(client, monkeypatch, worker_mode):
    monkeypatch.setattr(claims, "CLAIM_SECONDS", 1)
    for sample in (START, END):
        _push(client, 0, sample)
    assert claims.claim_messages("crashed", batch=10)  # ... and never applied: the worker died
    worker_mode.reset_mock()
    assert services.apply_inbound_messages() == 0
    assert inbound_selectors.pending_inbound_messages() == 2
    # A follow-up comes back just after the dead claim lapses (one, however many runs stopped).
    assert services.apply_inbound_messages() == 0
    assert worker_mode.call_count == 1
    assert worker_mode.call_args.kwargs["kwargs"] == {"follow_up": True}
    assert 0.3 < worker_mode.call_args.kwargs["countdown"] <= 1 + inbound_queue.FOLLOW_UP_MARGIN_SECONDS
    time.sleep(1.1)
    assert services.apply_inbound_messages(follow_up=True) == 2
    appliers = set(InboundMessage.objects.values_list("applier", flat=True))
    assert len(appliers) == 1 and "crashed" not in appliers
    assert ChargingSession.objects.get().status == ChargingSession.Status.CHARGING_ENDED


@pytest.mark.django_db
def test_an_applier_whose_claim_lapsed_and_was_taken_over_applies_nothing_of_it(client):
    for sample in (START, END):
        _push(client, 0, sample)
    [group] = claims.claim_messages("paused", batch=10)
    InboundMessage.objects.update(claimed_until=timezone.now() - timedelta(seconds=1))  # paused too long
    assert claims.claim_messages("taker", batch=10) == [group]
    assert applying.apply_group(group, applier="paused").applied == 0
    assert applying.apply_group(group, applier="taker").applied == 2
    assert AuditRecord.objects.filter(event_type=Event.NOTIFICATION_RECEIVED).count() == 2


@pytest.mark.django_db
def test_a_long_batch_renews_its_claims_so_nobody_takes_its_sessions(client, monkeypatch):
    monkeypatch.setattr(claims, "CLAIM_SECONDS", 0.6)
    monkeypatch.setattr(inbound_queue, "MESSAGES_PER_TRANSACTION", {connection.vendor: 1})  # one per session
    for number in range(3):
        _push(client, number, START)
    apply_group = applying.apply_group
    rivals = []

    def slow(message_ids, *, applier):
        time.sleep(0.4)  # three groups: twice the claim's lifetime
        rivals.append(claims.claim_messages("rival", batch=10))
        return apply_group(message_ids, applier=applier)

    monkeypatch.setattr(inbound_queue, "apply_group", slow)
    assert services.apply_inbound_messages() == 3
    assert rivals == [[], [], []]


@pytest.mark.django_db
def test_a_burst_that_begins_mid_batch_is_waited_out_at_once_claims_kept(client, monkeypatch):
    """As found (bench/ingest.py, timelines of received and applied per 250 ms): an applier in the
    middle of a claim of 200 messages went on through a burst the others already waited for, and
    saw it only after its batch; one applier at work kept the acknowledgements slow."""
    monkeypatch.setattr(claims, "CLAIM_SECONDS", 0.6)
    monkeypatch.setattr(inbound_queue, "MESSAGES_PER_TRANSACTION", {connection.vendor: 1})  # one per session
    for number in range(3):
        _push(client, number, START)
    bursts = iter([False, True, True, True, False])  # before the claim; then between the first two groups
    monkeypatch.setattr(inbound_queue, "_burst_in_progress", lambda: next(bursts, False))
    rivals, waits, sleep = [], [], time.sleep

    def pause(seconds):
        waits.append(seconds)
        sleep(0.15)  # three pauses: most of the claim's lifetime
        rivals.append(claims.claim_messages("rival", batch=10))

    monkeypatch.setattr(inbound_queue.time, "sleep", pause)
    applied = []
    apply_group = applying.apply_group

    def counted(message_ids, *, applier):
        applied.append((len(waits), message_ids))
        return apply_group(message_ids, applier=applier)

    monkeypatch.setattr(inbound_queue, "apply_group", counted)
    assert services.apply_inbound_messages() == 3
    assert waits == [inbound_queue.BURST_PAUSE_SECONDS] * 3
    assert [pauses for pauses, _ in applied] == [0, 3, 3]  # after the first group, before the second
    assert rivals == [[], [], []]  # the waiting applier's sessions stayed its own


@pytest.mark.django_db
def test_an_error_gives_the_claims_back_at_once(client, monkeypatch):
    _push(client, 0, START)

    def broken(message_ids, *, applier):
        raise RuntimeError("stands for a database that went away")

    monkeypatch.setattr(inbound_queue, "apply_group", broken)
    with pytest.raises(RuntimeError):
        services.apply_inbound_messages()
    monkeypatch.undo()
    assert services.apply_inbound_messages() == 1  # not after the claim's lifetime


# --- a message that fails inside its session's group ----------------------------------------------


@pytest.mark.django_db
def test_a_clean_batch_is_applied_without_a_savepoint_per_message(client):
    """Optimistic first: a SAVEPOINT and a RELEASE per message were half of a message's statements."""
    for number in range(3):
        for sample in (START, PROGRESS, END, CDR):
            _push(client, number, sample)
    with CaptureQueriesContext(connection) as queries:
        assert services.apply_inbound_messages() == 12
    savepoints = [q["sql"] for q in queries if q["sql"].upper().startswith("SAVEPOINT")]
    # The test's own transaction makes each claim's and each batch's transaction a savepoint (at most
    # four here); a savepoint per message made it 22.
    assert len(savepoints) <= 4, len(savepoints)
    assert ChargingSession.objects.filter(status=ChargingSession.Status.CLOSED).count() == 3


@pytest.mark.django_db
def test_a_failing_message_is_set_aside_and_the_rest_of_its_session_and_others_are_applied(client, caplog):
    for sample in (START, PROGRESS, END):
        _push(client, 0, sample)
    _push(client, 1, START)
    broken = InboundMessage.objects.get(kind=InboundMessage.Kind.PROGRESS)
    InboundMessage.objects.filter(pk=broken.pk).update(raw="{not json")  # stands for a bug
    with CaptureQueriesContext(connection) as queries:
        assert services.apply_inbound_messages() == 3  # the batch failed, then applied carefully
    broken.refresh_from_db()
    assert broken.applied_at is None and broken.apply_error.startswith("InboundError")
    assert "could not be applied" in caplog.text and "1 could not be applied" in caplog.text
    assert ChargingSession.objects.get(session_id=_sid(0)).status == ChargingSession.Status.CHARGING_ENDED
    assert ChargingSession.objects.filter(session_id=_sid(1)).exists()
    assert _audit_writes(queries) == 1
    assert inbound_selectors.pending_inbound_messages() == 0  # not retried by itself


@pytest.mark.django_db
def test_a_message_that_fails_half_way_leaves_nothing_of_itself_behind(client, monkeypatch):
    stop = RemoteStopRequestFactory(
        state=RemoteStopRequest.State.ACCEPTED,
        charging_session=ChargingSessionFactory(session_id=_sid(0), evse_id="DE*XYZ*ETEST1"),
    )
    for sample in (END, CDR):
        _push(client, 0, sample)

    real_confirm = session_row.confirm_stops_for_session_end

    def confirm_fails(**kwargs):  # the End's, after it already changed the session row
        if kwargs["confirmed_by"] == "END":
            raise RuntimeError("stands for a bug")
        return real_confirm(**kwargs)

    monkeypatch.setattr(session_row, "confirm_stops_for_session_end", confirm_fails)
    assert services.apply_inbound_messages() == 1
    end = InboundMessage.objects.get(kind=InboundMessage.Kind.END)
    assert end.applied_at is None and end.charging_session is None and end.apply_error.startswith("RuntimeError")
    # The End's session change was rolled back with its savepoint; the CDR after it was applied.
    stop.refresh_from_db()
    assert stop.state == RemoteStopRequest.State.CONFIRMED and stop.confirmed_by == "CDR"
    assert list(AuditRecord.objects.filter(event_type__in=RECEIVED).values_list("event_type", flat=True)) == [
        Event.CDR_RECEIVED
    ]


def test_a_claim_is_short():
    assert claims.CLAIM_SECONDS <= 10  # a crash holds up its sessions this long at most (the lock was 120 s, then 10 s)


@pytest.mark.django_db
def test_a_follow_up_that_finds_claims_still_held_schedules_the_next_one(client, worker_mode):
    _push(client, 0, START)
    assert claims.claim_messages("live-worker", batch=10)
    worker_mode.reset_mock()
    assert services.apply_inbound_messages() == 0
    assert services.apply_inbound_messages(follow_up=True) == 0  # the first follow-up: still held
    assert worker_mode.call_count == 2
    assert services.apply_inbound_messages() == 0  # the second one is waiting
    assert worker_mode.call_count == 2
    InboundMessage.objects.update(claimed_until=None)  # the live worker gave it back
    assert services.apply_inbound_messages(follow_up=True) == 1


def test_claimed_groups_are_joined_into_transactions_without_splitting_a_session(monkeypatch):
    monkeypatch.setattr(inbound_queue, "MESSAGES_PER_TRANSACTION", {connection.vendor: 4})
    groups = [[1, 5, 9], [2], [3, 6], [4, 7, 8, 10, 11]]
    assert inbound_queue._transactions(groups) == [[1, 5, 9, 2], [3, 6], [4, 7, 8, 10, 11]]
