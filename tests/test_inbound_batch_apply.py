"""Set-based applying (sessions/inbound/services/batch.py): a worker's batch ends exactly where
applying its messages one by one ends, in a number of statements that does not grow with the batch.

The reference is the careful path (each message in its own savepoint, the code request mode and the
CDR pull use): each scenario is applied both ways on the same stored messages, in transactions
rolled back in between, and every row the messages touch is compared.
"""

from __future__ import annotations

import json
import logging
import re
from decimal import Decimal
from unittest import mock

import pytest
from django.db import connection, transaction
from django.test import TestCase
from django.test.utils import CaptureQueriesContext

from sessions import services
from sessions.inbound import applying, claims
from sessions.inbound import queue as inbound_queue
from sessions.inbound.services.batch import SessionBatch
from sessions.models import AuditRecord, ChargeDetailRecord, ChargingSession, InboundMessage, RemoteStopRequest
from tests import test_inbound
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory
from tests.test_inbound import CDR, END, ERROR, NOTIFY_URL, PROGRESS, START, cdr_url, msg

State = RemoteStopRequest.State


@pytest.fixture(autouse=True)
def one_batch(worker_mode, settings, monkeypatch):
    settings.OICP_INBOUND_BURST_RATE = 0  # the tests push faster than a burst: apply at once
    # Every message in one claim and one transaction, on both databases.
    monkeypatch.setattr(inbound_queue, "BATCH_SIZE", 500)
    monkeypatch.setattr(inbound_queue, "MESSAGES_PER_TRANSACTION", {"postgresql": 500, "sqlite": 500})


def _sid(number: int) -> str:
    return f"{number:08d}-2727-4000-8000-000000000027"


def _push(client, sample: dict, **changes) -> None:
    url = cdr_url() if sample is CDR else NOTIFY_URL
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert test_inbound.post(client, url, msg(sample, **changes)).status_code == 200


def _known_session_with_a_stop(number: int) -> RemoteStopRequest:
    return RemoteStopRequestFactory(
        state=State.ACCEPTED,
        charging_session=ChargingSessionFactory(session_id=_sid(number), evse_id="DE*XYZ*ETEST1"),
    )


def _everyday_traffic(client) -> None:
    """What a batch meets all day, interleaved across sessions as Hubject pushes."""
    _known_session_with_a_stop(0)  # known, with a stop the End confirms
    ChargingSessionFactory(session_id=_sid(1), evse_id="DE*XYZ*ETEST1", started_at=None, emp_partner_session_id="")
    _push(client, START, SessionID=_sid(2))  # new, its whole life in the batch
    _push(client, PROGRESS, SessionID=_sid(0))
    _push(client, PROGRESS, SessionID=_sid(3))  # learned late: no Start
    _push(client, START, SessionID=_sid(1))  # fills in what the known session lacks
    _push(client, PROGRESS, SessionID=_sid(2).upper())  # the same session in upper case
    _push(client, END, SessionID=_sid(0))
    _push(client, ERROR, SessionID=_sid(2))
    _push(client, PROGRESS, SessionID=_sid(1), EvseID="DE*XYZ*EOTHER")  # another EVSE: held back
    _push(client, END, SessionID=_sid(2))
    _push(client, PROGRESS, SessionID=_sid(2), Identification={"RFIDMifareFamilyIdentification": {"UID": "99887766"}})
    _push(client, CDR, SessionID=_sid(2))
    _push(client, CDR, SessionID=_sid(0))
    _push(client, CDR, SessionID=_sid(4))  # a CDR for a session never heard of
    _push(client, PROGRESS, SessionID=_sid(4))  # after its CDR: the final energy stays


def _snapshot() -> dict:
    """Every row the messages touch, by its natural key (primary keys of new rows differ between
    runs), as JSON (so keys are strings, values as `str` gives them)."""

    def fields(row, skip=()):
        skipped = {"id", "created_at", *skip}
        return {
            field.attname: getattr(row, field.attname)
            for field in row._meta.concrete_fields
            if field.attname not in skipped
        }

    keys = dict(ChargingSession.objects.values_list("pk", "session_key"))
    state = {
        "sessions": {row.session_key: fields(row) for row in ChargingSession.objects.all()},
        "messages": {
            row.pk: {
                **fields(row, skip=("applied_at", "charging_session_id", "claimed_until", "applier")),
                "session": keys.get(row.charging_session_id),
                "applied": row.applied_at is not None,
            }
            for row in InboundMessage.objects.all()
        },
        "cdrs": {
            row.session_id: fields(row, skip=("charging_session_id",)) for row in ChargeDetailRecord.objects.all()
        },
        "stops": {row.pk: fields(row) for row in RemoteStopRequest.objects.all()},
        "audit": [
            (
                row.event_type,
                keys.get(row.charging_session_id),
                row.stop_request_id,
                {key: value for key, value in row.data.items() if key != "cdr_id"},
            )
            for row in AuditRecord.objects.order_by("id")
        ],
    }
    # A repeated CDR's texts name the first one's row ("#12"), a new row in each run.
    return json.loads(re.sub(r"#\d+", "#N", json.dumps(state, default=str)))


def _applied_both_ways(caplog) -> tuple[dict, dict, bool]:
    """The state after the careful path and after the batch path, and whether the batch fell back."""
    groups = claims.claim_messages("test-applier", batch=500)
    message_ids = [pk for group in groups for pk in group]
    results = []
    for careful in (True, False):
        with transaction.atomic():
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="sessions.inbound.applying"):
                if careful:
                    outcome = applying._apply(message_ids, applier="test-applier", careful=True)
                else:
                    outcome = applying.apply_group(message_ids, applier="test-applier")
            assert outcome.applied == len(message_ids) and outcome.failed == 0
            results.append(_snapshot())
            fell_back = "applied one by one" in caplog.text
            transaction.set_rollback(True)
    return results[0], results[1], fell_back


@pytest.mark.django_db
def test_a_batch_ends_where_applying_its_messages_one_by_one_ends(client, caplog):
    _everyday_traffic(client)
    one_by_one, batch, fell_back = _applied_both_ways(caplog)
    assert not fell_back, caplog.text
    assert batch == one_by_one
    # And what it ends with is what the rules say (so the comparison is not of two empty states).
    assert batch["stops"][str(RemoteStopRequest.objects.get().pk)]["confirmed_by"] == "END"
    assert batch["sessions"][_sid(2)]["status"] == ChargingSession.Status.CLOSED
    assert batch["sessions"][_sid(3)]["learned_late"] is True
    assert batch["sessions"][_sid(1)]["started_at"] is not None
    assert Decimal(batch["sessions"][_sid(4)]["energy_kwh"]) == 10
    assert sum(message["held_back"] for message in batch["messages"].values()) == 1
    assert len(batch["cdrs"]) == 3


@pytest.mark.django_db
def test_a_repeated_cdr_sends_the_batch_the_careful_way_and_it_ends_the_same(client, caplog):
    _push(client, START, SessionID=_sid(5))
    _push(client, CDR, SessionID=_sid(5))
    _push(client, CDR, SessionID=_sid(5), ConsumedEnergy=11)  # a repeat that differs: flagged, held back
    _push(client, CDR, SessionID=_sid(6))
    one_by_one, batch, fell_back = _applied_both_ways(caplog)
    assert fell_back
    assert batch == one_by_one
    repeat = max(
        (int(pk), pk) for pk, message in batch["messages"].items() if message["kind"] == "CDR" and message["held_back"]
    )
    assert batch["messages"][repeat[1]]["parsed"]["duplicate"] is True


@pytest.mark.django_db
def test_a_session_already_stored_cdr_makes_the_repeat_careful_too(client, caplog):
    _push(client, CDR, SessionID=_sid(7))
    services.apply_inbound_messages()
    _push(client, CDR, SessionID=_sid(7))
    _push(client, START, SessionID=_sid(8))
    one_by_one, batch, fell_back = _applied_both_ways(caplog)
    assert fell_back and batch == one_by_one


@pytest.mark.django_db
def test_a_session_created_behind_the_batchs_back_fails_its_write_and_the_batch_is_applied_carefully(client, caplog):
    for sample in (START, PROGRESS):
        _push(client, sample, SessionID=_sid(9))
    real_write = SessionBatch.write

    def someone_else_creates_it_first(batch):
        ChargingSessionFactory(session_id=_sid(9), evse_id="DE*XYZ*ETEST1")  # e.g. the CDR pull
        real_write(batch)

    with mock.patch.object(SessionBatch, "write", someone_else_creates_it_first):
        with caplog.at_level(logging.INFO, logger="sessions.inbound.applying"):
            assert services.apply_inbound_messages() == 2
    assert "applied one by one" in caplog.text and "IntegrityError" in caplog.text
    # Applied once, carefully, to the one session (which the rollback took away with the batch).
    assert ChargingSession.objects.filter(session_id=_sid(9)).count() == 1
    assert InboundMessage.objects.filter(applied_at__isnull=False, charging_session__session_id=_sid(9)).count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("sessions", [5, 25])
def test_a_batchs_statements_do_not_grow_with_its_messages(client, sessions):
    """Counted, not timed: 10 messages or 50 in a batch are the same statements (one by one, a
    message was about three: lock its session, update it, update its row)."""
    for number in range(sessions):
        _known_session_with_a_stop(100 + number)
    for sample in (PROGRESS, END):
        for number in range(sessions):
            _push(client, sample, SessionID=_sid(100 + number))
    for number in range(sessions):
        _push(client, START, SessionID=_sid(200 + number))
    with CaptureQueriesContext(connection) as queries:
        assert services.apply_inbound_messages() == 3 * sessions
    # Confirming a stop is a stop's own write (a SELECT … FOR UPDATE and an UPDATE each): not counted.
    stop_table = RemoteStopRequest._meta.db_table
    counted = [
        q
        for q in queries
        if stop_table not in q["sql"].split(" WHERE ")[0]
        and not q["sql"].startswith("SAVEPOINT")
        and not q["sql"].startswith("RELEASE")
    ]
    assert RemoteStopRequest.objects.filter(state=State.CONFIRMED).count() == sessions
    # Claim (3), the batch's reads (3) and writes (4, the UPDATEs each one executemany), the audit
    # write (3, its INSERT split in two on SQLite by its parameter limit), looking for more (3).
    assert len(counted) <= 16, "\n".join(q["sql"][:100] for q in counted)
