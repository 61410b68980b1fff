"""A stop request keeps its session's OperatorID (RemoteStopRequest.operator_id, migration 0022), so
the CPO pages read one CPO's stops of a period by one index range (bench/RESULTS.md, "Directory"):
set when the request is created (the agent's button, a re-send, the admin's bulk stop all go
through request_remote_stop), filled for older rows by the migration, and what the CPO page's
figures are counted by, read from stop_operator_at_idx alone on both databases."""

from __future__ import annotations

import importlib
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sessions import services
from sessions.models import RemoteStopRequest, StopReason
from sessions.operators import selectors
from sessions.operators.selectors import Period
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory

pytestmark = pytest.mark.usefixtures("no_broker")
State = RemoteStopRequest.State
BERLIN = ZoneInfo("Europe/Berlin")
PERIOD = Period(date(2025, 3, 3), date(2025, 3, 16))


def test_a_new_stop_request_carries_its_session_s_operator(agent):
    charging_session = ChargingSessionFactory(evse_id="NL*FST*E00042*1", operator_id="NL*FST")
    stop = services.request_remote_stop(
        charging_session_id=charging_session.pk, acting_user=agent, reason=StopReason.CABLE_LOCKED
    ).stop_request
    stop.refresh_from_db()
    assert stop.operator_id == "NL*FST"


def test_a_stop_sent_again_carries_the_operator_too(agent):
    charging_session = ChargingSessionFactory(evse_id="DE*SLO*E00001*1", operator_id="DE*SLO")
    previous = RemoteStopRequestFactory(charging_session=charging_session, state=State.UNCONFIRMED)
    again = services.resend_remote_stop(stop_request_id=previous.pk, acting_user=agent)
    again.refresh_from_db()
    assert (again.pk != previous.pk, again.operator_id) == (True, "DE*SLO")


def test_the_migration_fills_the_older_rows_from_their_sessions(db):
    first = RemoteStopRequestFactory(charging_session=ChargingSessionFactory(evse_id="DE*AAA*E1*1"))
    second = RemoteStopRequestFactory(charging_session=ChargingSessionFactory(evse_id="AT*BBB*E2*1"))
    RemoteStopRequest.objects.update(operator_id="")  # as rows were before the column existed
    migration = importlib.import_module("sessions.migrations.0022_stop_operator")
    migration.fill_operator_ids(apps, None)
    assert dict(RemoteStopRequest.objects.values_list("pk", "operator_id")) == {
        first.pk: "DE*AAA",
        second.pk: "AT*BBB",
    }


def _at(day: int) -> datetime:
    return datetime.combine(date(2025, 3, day), time(12), tzinfo=BERLIN)


@pytest.fixture
def two_cpos(db):
    for day, operator_id, state in [(4, "DE*AAA", State.CONFIRMED), (5, "DE*AAA", State.REJECTED)] + [
        (6, "DE*BBB", State.CONFIRMED)
    ]:
        fields = {"requested_at": _at(day), "state": state, "oicp_code": "501" if state == State.REJECTED else "000"}
        if state == State.CONFIRMED:
            fields |= {"confirmed_at": _at(day) + timedelta(seconds=20), "time_to_confirmation": timedelta(seconds=20)}
        RemoteStopRequestFactory(
            charging_session=ChargingSessionFactory(evse_id=f"{operator_id}*E{day:05d}*1"), requested_by=None, **fields
        )


def test_the_page_counts_each_stop_for_the_operator_it_carries(two_cpos):
    record = selectors.operator_record(operator_id="DE*AAA", period=PERIOD)
    assert (record.sent, record.confirmed, record.rejected) == (2, 1, 1)
    assert selectors.refusal_codes(operator_id="DE*AAA", period=PERIOD) == [("501", 1)]
    assert sum(week.sent for week in selectors.weekly_trend(operator_id="DE*AAA", period=PERIOD)) == 2
    overview = {record.operator_id: record.sent for record in selectors.operator_overview(period=PERIOD)}
    assert overview == {"DE*AAA": 2, "DE*BBB": 1}


def _plans(call) -> list[str]:
    """The plan of each query the call makes (PostgreSQL: no sequential or bitmap scans)."""
    with CaptureQueriesContext(connection) as queries:
        call()
    plans = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for method in ("seqscan", "bitmapscan"):
                cursor.execute(f"SET LOCAL enable_{method} = off")
        prefix = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
        for query in queries.captured_queries:
            cursor.execute(prefix + query["sql"])
            plans.append("\n".join(str(row[-1]) for row in cursor.fetchall()))
    return plans


@pytest.mark.parametrize(
    "call",
    [
        lambda: selectors.operator_record(operator_id="DE*AAA", period=PERIOD),
        lambda: selectors.refusal_codes(operator_id="DE*AAA", period=PERIOD),
        lambda: selectors.weekly_trend(operator_id="DE*AAA", period=PERIOD),
    ],
    ids=["record", "refusal codes", "weekly trend"],
)
def test_the_cpo_page_reads_its_stops_from_the_index_alone(two_cpos, call):
    # Other CPOs' stops, analysed, as in a real table: with a handful of rows (and statistics that
    # depend on when autovacuum last looked at them mid-suite) any index is as good as another.
    crowd = ChargingSessionFactory(evse_id="DE*ZZZ*E9*1", operator_id="DE*ZZZ")
    RemoteStopRequest.objects.bulk_create(
        RemoteStopRequest(
            charging_session=crowd,
            operator_id="DE*ZZZ",
            state=State.REJECTED,
            oicp_code="400",
            requested_at=_at(4 + number % 10),
            reason=StopReason.CABLE_LOCKED,
        )
        for number in range(3000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE " + connection.ops.quote_name(RemoteStopRequest._meta.db_table))
    # bench/RESULTS.md: through the CPO's sessions, PostgreSQL scanned every stop of the period for
    # each of these (61–85 ms at 300,000 stops); now one range of a covering index.
    for plan in _plans(call):
        if connection.vendor == "sqlite":
            assert "USING COVERING INDEX stop_operator_at_idx (operator_id=? AND requested_at>? AND" in plan, plan
        else:
            assert "Index Only Scan using stop_operator_at_idx" in plan, plan
        assert "chargingsession" not in plan, plan  # no join to the sessions any more
