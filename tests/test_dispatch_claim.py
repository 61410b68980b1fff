"""The worker's claim of a stop (PENDING → SENDING) writes what it must in as few statements as it can.

Issue 16 (dispatch p99): the claim's transaction holds SQLite's one write lock (or, on PostgreSQL, the
audit chain's head) while it runs, so each statement in it is paid by every stop waiting behind it.
"""

from unittest import mock

import pytest
import responses
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sessions import services
from sessions.models import AuditRecord, RemoteStopRequest, StopReason
from sessions.stops.services import sending

pytestmark = pytest.mark.usefixtures("no_broker")
State = RemoteStopRequest.State
STOP_URL = "http://127.0.0.1:9/api/oicp/charging/v21/providers/DE-EMP/authorize-remote/stop"
ACK = {"Result": True, "StatusCode": {"Code": "000", "Description": "Success", "AdditionalInfo": None}}


@pytest.fixture
def pending(charging_session, agent):
    return services.request_remote_stop(
        charging_session_id=charging_session.pk, acting_user=agent, reason=StopReason.CABLE_LOCKED
    ).stop_request


def _stop_request_reads(queries) -> list[str]:
    table = RemoteStopRequest._meta.db_table
    return [
        q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("SELECT") and f'FROM "{table}"' in q["sql"]
    ]


def test_the_claim_does_not_read_the_request_again_and_records_what_it_wrote(pending):
    stop = RemoteStopRequest.objects.select_related("charging_session").get(pk=pending.pk)
    with CaptureQueriesContext(connection) as queries:
        assert sending._claim(stop) is True
    assert _stop_request_reads(queries.captured_queries) == []
    stored = RemoteStopRequest.objects.get(pk=pending.pk)
    # The instance holds exactly what the UPDATE wrote.
    assert (stop.state, stop.attempt_count, stop.next_attempt_at) == (State.SENDING, 1, None)
    assert (stored.state, stored.attempt_count, stored.next_attempt_at) == (State.SENDING, 1, None)
    assert stop.first_sent_at == stored.first_sent_at and stop.last_sent_at == stored.last_sent_at
    audit = stored.audit_records.get(event_type=AuditRecord.EventType.STOP_SENDING)
    assert audit.data["attempt"] == 1


def test_a_second_attempt_keeps_its_first_sent_time(pending):
    RemoteStopRequest.objects.filter(pk=pending.pk).update(attempt_count=1, first_sent_at=pending.requested_at)
    stop = RemoteStopRequest.objects.get(pk=pending.pk)
    assert sending._claim(stop) is True
    stored = RemoteStopRequest.objects.get(pk=pending.pk)
    assert (stop.attempt_count, stored.attempt_count) == (2, 2)
    assert stop.first_sent_at == stored.first_sent_at == pending.requested_at
    assert stored.last_sent_at > pending.requested_at


def test_a_claim_whose_attempt_count_moved_meanwhile_does_nothing(pending):
    """Another delivery of the task claimed (and finished) this attempt between the read and the claim."""
    stop = RemoteStopRequest.objects.get(pk=pending.pk)
    RemoteStopRequest.objects.filter(pk=pending.pk).update(attempt_count=1)  # still PENDING, for a retry
    assert sending._claim(stop) is False
    stored = RemoteStopRequest.objects.get(pk=pending.pk)
    assert (stored.state, stored.attempt_count) == (State.PENDING, 1)
    assert not stored.audit_records.filter(event_type=AuditRecord.EventType.STOP_SENDING).exists()


@responses.activate
def test_a_whole_send_keeps_its_audit_trail(pending):
    responses.post(STOP_URL, json=ACK)
    with mock.patch.object(sending, "_claim", wraps=sending._claim) as claim:
        assert services.send_remote_stop(stop_request_id=pending.pk).state == State.ACCEPTED
    assert claim.call_count == 1
    events = list(pending.audit_records.order_by("pk").values_list("event_type", "data__attempt"))
    assert events == [
        (AuditRecord.EventType.STOP_REQUESTED, None),
        (AuditRecord.EventType.STOP_SENDING, 1),
        (AuditRecord.EventType.STOP_ACCEPTED, 1),
    ]


def test_the_worker_reads_the_stop_and_what_the_call_needs_of_its_session_in_one_statement(pending, charging_session):
    # Plain SQL (compiling select_related over both models was half the read's cost); the session's
    # other fields are deferred, so anything that asks for one still gets the stored value.
    charging_session.emp_partner_session_id, charging_session.energy_kwh = "EMP-7", 12.5
    charging_session.save(update_fields=["emp_partner_session_id", "energy_kwh"])
    with CaptureQueriesContext(connection) as queries:
        stop = sending._stop_to_send(pending.pk)
        session = stop.charging_session
        read = (session.pk, session.status, session.operator_id, session.session_id, session.evse_id)
        partners = (session.emp_partner_session_id, session.cpo_partner_session_id)
    assert len(queries) == 1
    assert read == (
        charging_session.pk,
        charging_session.status,
        charging_session.operator_id,
        charging_session.session_id,
        charging_session.evse_id,
    )
    assert partners == ("EMP-7", charging_session.cpo_partner_session_id)
    assert (stop.state, stop.attempt_count, stop.correlation_id) == (State.PENDING, 0, pending.correlation_id)
    assert not hasattr(stop, "session_status")  # the joined columns are the session's, not the stop's
    assert float(session.energy_kwh) == 12.5  # deferred: loaded when asked
    assert sending._stop_to_send(pending.pk + 1000) is None
