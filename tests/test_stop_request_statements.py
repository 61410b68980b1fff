"""The agent's stop request is a few plain statements, and still refuses a second open stop.

Issue 16 (dispatch p99): the request's transaction holds the session's row lock (SQLite: the one
write lock) and, at its end, the audit chain's head; every statement in it is paid by whoever waits.
So the session is read and locked together with whether any stop stands in the way, the stop is
INSERTed without a savepoint, and the eligibility rule reads the stops only when some do.
"""

import threading
import time

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sessions import services
from sessions.models import AuditRecord, RemoteStopRequest, StopReason
from sessions.stops.rules import StopBlockCode
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory, UserFactory

pytestmark = pytest.mark.usefixtures("no_broker")
State = RemoteStopRequest.State
STOP_TABLE = RemoteStopRequest._meta.db_table


def _statements(queries) -> list[str]:
    """The statements of the request itself (not the test transaction's savepoint around it)."""
    return [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"].upper()]


def test_a_stop_request_is_one_read_one_insert_and_the_audit_append(charging_session, agent):
    from sessions.audit.records import lock_audit_chain

    with transaction.atomic():
        lock_audit_chain()  # the chain's head row exists, as it does after the first audited change
    with CaptureQueriesContext(connection) as queries:
        services.request_remote_stop(
            charging_session_id=charging_session.pk, acting_user=agent, reason=StopReason.CABLE_LOCKED
        )
    sql = _statements(queries)
    audit_append = 2 if connection.vendor == "postgresql" else 3  # PostgreSQL moves the head in the INSERT
    assert len(sql) == 2 + audit_append, sql
    assert sql[0].startswith("SELECT s.*, EXISTS") and f'FROM "{STOP_TABLE}"' in sql[0]
    assert sql[1].startswith(f'INSERT INTO "{STOP_TABLE}"')
    # The one savepoint is this test's transaction around the service's, not one around the INSERT.
    assert sum("SAVEPOINT" in q["sql"].upper() and "RELEASE" not in q["sql"].upper() for q in queries) == 1


def test_the_rule_reads_the_stops_only_when_one_stands_in_the_way(charging_session, agent, other_agent):
    RemoteStopRequestFactory(charging_session=charging_session, state=State.REJECTED)  # not in the way
    services.request_remote_stop(
        charging_session_id=charging_session.pk, acting_user=agent, reason=StopReason.CABLE_LOCKED
    )
    with CaptureQueriesContext(connection) as queries, pytest.raises(services.StopNotAllowed) as refused:
        services.request_remote_stop(
            charging_session_id=charging_session.pk, acting_user=other_agent, reason=StopReason.CABLE_LOCKED
        )
    assert refused.value.code == StopBlockCode.STOP_OPEN and refused.value.block.stop_request.requested_by == agent
    sql = _statements(queries)
    assert len(sql) == 2 and sql[1].startswith("SELECT") and not any(s.startswith("INSERT") for s in sql)
    assert RemoteStopRequest.objects.filter(state=State.PENDING).count() == 1


def _second_agent(charging_session, agent, outcome: dict) -> threading.Thread:
    """A thread that asks to stop the session as `agent`; outcome["result"]: "created" or the refusal."""

    def ask() -> None:
        try:
            services.request_remote_stop(
                charging_session_id=charging_session.pk, acting_user=agent, reason=StopReason.DRIVER_ASKED
            )
            outcome["result"] = "created"
        except services.StopNotAllowed as refusal:
            outcome["result"] = refusal
        finally:
            connections.close_all()

    return threading.Thread(target=ask)


@pytest.mark.django_db(transaction=True)
def test_an_agent_who_waited_for_the_lock_is_refused_with_the_open_stop(no_broker):
    """Two agents on one session, really concurrent: the second waits for the first's lock (PostgreSQL:
    the session row, SQLite: the write lock), then is refused with the stop that is open, and nothing
    of its own is written."""
    charging_session = ChargingSessionFactory()
    first, second = UserFactory(username="agent-1"), UserFactory(username="agent-2")
    outcome: dict = {}
    thread = _second_agent(charging_session, second, outcome)
    with transaction.atomic():
        services.request_remote_stop(
            charging_session_id=charging_session.pk, acting_user=first, reason=StopReason.DRIVER_ASKED
        )
        thread.start()
        _wait_until_blocked(thread)
    thread.join(30)
    refusal = outcome["result"]
    assert isinstance(refusal, services.StopNotAllowed), refusal
    assert refusal.code == StopBlockCode.STOP_OPEN and refusal.block.stop_request.requested_by == first
    stops = list(RemoteStopRequest.objects.filter(charging_session=charging_session))
    assert [stop.requested_by for stop in stops] == [first]
    assert AuditRecord.objects.filter(event_type=AuditRecord.EventType.STOP_REQUESTED).count() == 1
    assert services.verify_audit_chain().ok


@pytest.mark.django_db(transaction=True)
def test_a_stop_accepted_while_an_agent_waited_for_the_lock_still_refuses_a_new_one(no_broker):
    """What the unique constraint cannot guard: while the second agent waits for the session's lock,
    the first agent's stop is committed and already accepted (no longer open). The second agent must
    see it once it has the lock: a statement that read the stops before its wait (PostgreSQL answers
    from before the wait) would find none and let a second stop through."""
    charging_session = ChargingSessionFactory()
    first, second = UserFactory(username="agent-1"), UserFactory(username="agent-2")
    outcome: dict = {}
    thread = _second_agent(charging_session, second, outcome)
    with transaction.atomic():
        stop = services.request_remote_stop(
            charging_session_id=charging_session.pk, acting_user=first, reason=StopReason.DRIVER_ASKED
        ).stop_request
        thread.start()
        _wait_until_blocked(thread)
        # Sent and accepted before the second agent has the lock (a slow agent, a fast CPO).
        RemoteStopRequest.objects.filter(pk=stop.pk).update(state=State.ACCEPTED, finished_at=timezone.now())
    thread.join(30)
    refusal = outcome["result"]
    assert isinstance(refusal, services.StopNotAllowed), refusal
    assert refusal.code == StopBlockCode.STOP_ACCEPTED and refusal.block.stop_request == stop
    assert RemoteStopRequest.objects.filter(charging_session=charging_session).count() == 1


def _wait_until_blocked(thread: threading.Thread) -> None:
    """Until the other agent's statement waits for our lock (PostgreSQL says so; SQLite's busy handler
    does not, so there a moment is given: either way the outcome asserted is the same)."""
    if connection.vendor != "postgresql":
        time.sleep(0.3)
        return
    with connections["default"].cursor() as cursor:
        for _ in range(500):
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            if cursor.fetchone()[0]:
                return
            if not thread.is_alive():
                return
            time.sleep(0.01)
