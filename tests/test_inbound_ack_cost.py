"""What one acknowledged push costs in worker mode (issue 16, ingest): one INSERT for a notification,
one for a CDR too (it returns whether a CDR for the SessionID came before: it was a SELECT first, a
round trip and a tenth of the acknowledgement), the row exactly as the ORM would store it, no INFO
line per message."""

from __future__ import annotations

import importlib
import json
import logging

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sessions.inbound import queue as inbound_queue
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


def test_a_plain_message_is_stored_with_what_every_new_message_starts_with(client):
    # The columns not given are written as SQL in the INSERT (queue._FRESH); they must read back as
    # the model's defaults would, on both databases. A CDR keeps the operator of its URL.
    with CaptureQueriesContext(connection) as queries:
        post(client, NOTIFY_URL, msg(START, OperatorID="DE*XYZ"))  # the EvseID's: nothing odd
        post(client, cdr_url("DE*ABC"), CDR)  # through its hub operator, as Hubject may
    notification_sql, cdr_sql = (q["sql"] for q in queries.captured_queries)
    assert "EXISTS" not in notification_sql and "EXISTS" in cdr_sql  # only a CDR asks for a prior one
    start, cdr = InboundMessage.objects.order_by("id")
    for message in (start, cdr):
        for name in inbound_queue._FRESH:  # the model's own defaults, whatever they become
            default = InboundMessage._meta.get_field(name).get_default()
            assert getattr(message, name) == default or name == "path_operator_id" and message is cdr, name
        assert (message.parsed, message.anomalies, message.flagged, message.held_back) == ({}, [], False, False)
        assert (message.apply_error, message.applier, message.applied_at, message.charging_session) == (
            "",
            "",
            None,
            None,
        )
    assert (start.path_operator_id, cdr.path_operator_id) == ("", "DE*ABC")


def test_the_acknowledging_insert_writes_only_the_indexes_something_reads():
    # Every index is written by every acknowledged message. Before migration 0023 PostgreSQL kept
    # eight on this table: the kind's (five values) and a LIKE twin of it and of session_id's, and the
    # CDR check planned a BitmapAnd with the kind's index, a scan of every CDR ever received.
    constraints = connection.introspection.get_constraints(connection.cursor(), InboundMessage._meta.db_table)
    indexes = {
        tuple(info["columns"]) for name, info in constraints.items() if info["index"] and not info["primary_key"]
    }
    assert ("kind",) not in indexes and ("session_id",) not in indexes
    assert ("session_id", "id") in indexes
    assert len(indexes) == 5  # session+id, received_at, and three partial ones (pending, flagged, session's row)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT indexdef FROM pg_indexes WHERE tablename = %s AND indexdef LIKE %s",
                [InboundMessage._meta.db_table, "%charging_session_id%"],
            )
            assert [row[0].endswith("IS NOT NULL)") for row in cursor.fetchall()] == [True]


class _SchemaEditor:
    """What migration 0023's functions use of a schema editor (SQLite's refuses to open inside the
    test's transaction; CREATE and DROP INDEX need none of what it guards)."""

    connection = connection
    quote_name = staticmethod(connection.ops.quote_name)

    def execute(self, sql: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql)


def test_migration_0023_drops_the_old_indexes_by_what_they_index_and_can_be_undone():
    migration = importlib.import_module("sessions.migrations.0023_inbound_message_indexes")

    def single_column_indexes() -> set[str]:
        constraints = connection.introspection.get_constraints(connection.cursor(), InboundMessage._meta.db_table)
        return {info["columns"][0] for info in constraints.values() if info["index"] and len(info["columns"]) == 1}

    migration.create_single_column_indexes(apps, _SchemaEditor())  # as after `migrate … 0022` back
    assert {"kind", "session_id", "charging_session_id"} <= single_column_indexes()
    migration.drop_single_column_indexes(apps, _SchemaEditor())
    assert "kind" not in single_column_indexes() and "session_id" not in single_column_indexes()
    # The partial index on the session's row is not one of Django's old names: it stays.
    assert "charging_session_id" in single_column_indexes()
