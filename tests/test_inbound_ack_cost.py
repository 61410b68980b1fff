"""What one acknowledged push costs in worker mode (issue 16, ingest): one INSERT for a notification,
one for a CDR too (it returns whether a CDR for the SessionID came before: it was a SELECT first, a
round trip and a tenth of the acknowledgement), the row exactly as the ORM would store it, no INFO
line per message."""

from __future__ import annotations

import json
import logging

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sessions.models import InboundMessage
from tests.test_inbound import CDR, NOTIFY_URL, SID, START, assert_ack, cdr_url, msg, post

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("worker_mode")]


def test_a_notification_costs_one_insert_and_is_stored_as_the_orm_would(client, caplog):
    caplog.set_level(logging.INFO)
    body = msg(START, SessionID=SID.upper(), OperatorID=...)  # a missing OperatorID: an anomaly
    with CaptureQueriesContext(connection) as queries:
        assert_ack(post(client, NOTIFY_URL, body, REMOTE_ADDR="::ffff:127.0.0.1"), result=True, code="000", status=200)
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["INSERT"]
    message = InboundMessage.objects.get()
    assert (message.kind, message.session_id, message.operator_id) == ("START", SID, "DE*XYZ")  # from the EvseID
    assert message.remote_addr == "127.0.0.1"  # normalised, as the ORM path stores it
    assert json.loads(message.raw) == body and message.parsed == {}
    assert (message.flagged, message.held_back, message.apply_error, message.applier) == (True, False, "", "")
    assert [anomaly["field"] for anomaly in message.anomalies] == ["OperatorID"]
    assert message.applied_at is None and message.received_at is not None
    # The stored message is the record; an INFO line per accepted message is not written.
    assert not [r for r in caplog.records if r.name == "sessions.inbound.endpoints" and r.levelno >= logging.INFO]


def test_a_cdr_costs_one_insert_and_a_repeat_is_still_a_duplicate(client, caplog):
    caplog.set_level(logging.INFO)
    with CaptureQueriesContext(connection) as queries:
        first = assert_ack(post(client, cdr_url(), CDR), result=True, code="000", status=200)
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["INSERT"]
    assert first["StatusCode"]["AdditionalInfo"] is None
    # HBS compares SessionIDs whatever their case; so does the check.
    again = msg(CDR, SessionID=CDR["SessionID"].upper())
    again = assert_ack(post(client, cdr_url(), again), result=True, code="000", status=200)
    assert again["StatusCode"]["AdditionalInfo"].startswith("Duplicate")
    assert InboundMessage.objects.filter(kind=InboundMessage.Kind.CDR).count() == 2
    # A repeat is rare and worth a line.
    assert "received again (duplicate" in caplog.text


def test_a_notification_then_a_cdr_of_the_same_session_is_no_duplicate(client):
    post(client, NOTIFY_URL, msg(START, SessionID=CDR["SessionID"]))
    ack = assert_ack(post(client, cdr_url(), CDR), result=True, code="000", status=200)
    assert ack["StatusCode"]["AdditionalInfo"] is None
