"""The place search at Hubject's scale (bench/directory.py): PostgreSQL answers its full-text queries
through the GIN index whatever it expects them to match (a `LIMIT` and a common prefix made it scan
every EVSE, 6.5 s at 500,000), without that setting reaching any other query; and the candidates are
ranked as plain values, only the listed stations' EVSEs loaded whole, with the same result."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from sessions.directory import place_search
from sessions.directory import selectors as directory
from sessions.models import EvseRecord
from tests.factories import ChargingSessionFactory, EvseRecordFactory, OperatorFactory

postgresql_only = pytest.mark.skipif("connection.vendor != 'postgresql'")


@pytest.fixture
def stations(db):
    """Three stations in Köln's Hauptstraße (one with three EVSEs), one elsewhere."""
    operator = OperatorFactory(operator_id="DE*ACC", name="Offgrid")
    for n in range(3):
        EvseRecordFactory(evse_id=f"DE*ACC*E1{n}*1", operator=operator, charging_station_id="ST-1", house_number="1")
    EvseRecordFactory(evse_id="DE*ACC*E20*1", operator=operator, charging_station_id="ST-2", house_number="2")
    EvseRecordFactory(evse_id="DE*ACC*E30*1", operator=operator, charging_station_id="ST-3", house_number="3")
    EvseRecordFactory(
        evse_id="DE*ACC*E40*1", operator=operator, charging_station_id="ST-4", station_name="Aldi", city="Bonn"
    )


def test_each_listed_station_has_all_its_evses_and_the_limit_holds(stations):
    ChargingSessionFactory(evse_id="DE*ACC*E11*1")
    found = directory.search_places("Haupstrasse Koln", limit=2)
    assert [station.first.charging_station_id for station in found] == ["ST-1", "ST-2"]
    assert [evse.record.evse_id for evse in found[0].evses] == ["DE*ACC*E10*1", "DE*ACC*E11*1", "DE*ACC*E12*1"]
    assert found[0].open_session_count == 1 and found[0].operator.name == "Offgrid"
    assert {s.first.charging_station_id for s in directory.search_places("Haupstrasse Koln")} == {
        "ST-1",
        "ST-2",
        "ST-3",
    }


def test_the_listed_evses_are_loaded_without_hubject_s_record(stations):
    with CaptureQueriesContext(connection) as captured:
        found = directory.search_places("Hauptstrasse Bonn")
    assert [station.first.evse_id for station in found] == ["DE*ACC*E40*1"]
    loads = [q["sql"] for q in captured.captured_queries if '"charging_sessions_evserecord"."raw"' in q["sql"]]
    assert loads == []  # neither the ranking's values nor the listed EVSEs read `raw`


@postgresql_only
def test_the_full_text_query_is_planned_through_the_index_only(stations):
    # Without the search's settings, PostgreSQL plans this tiny table with a sequential scan; with
    # them, the one plan left is the GIN index's (at 500,000 EVSEs the scan cost seconds).
    query = (
        f"EXPLAIN SELECT id FROM {EvseRecord._meta.db_table} "
        f"WHERE {place_search.PG_WORDS} @@ to_tsquery('simple'::regconfig, 'schlo:* | haupt:*') LIMIT 1"
    )
    with connection.cursor() as cursor:
        cursor.execute(query)
        assert "Seq Scan" in str(cursor.fetchall())
        with place_search._full_text_plans():
            cursor.execute(query)
            plan = str(cursor.fetchall())
        assert "Bitmap Index Scan on evse_place_words_idx" in plan and "Seq Scan" not in plan, plan


@postgresql_only
@pytest.mark.parametrize("in_transaction", [False, True], ids=["autocommit", "inside a transaction"])
def test_the_planner_settings_never_reach_another_query(stations, in_transaction):
    def search_then_show() -> tuple[str, str]:
        assert directory.search_places("Haupstrasse Koln")
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('enable_seqscan'), current_setting('enable_indexscan')")
            return cursor.fetchone()

    if in_transaction:
        with transaction.atomic():
            assert search_then_show() == ("on", "on")
    else:
        assert search_then_show() == ("on", "on")
