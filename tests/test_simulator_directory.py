"""The simulator serves Hubject's EVSE directory: eRoamingPullEvseData_V2.3 and eRoamingPullEvseStatus_V2.1.

No database and no Django: each test talks HTTP to a simulator on an ephemeral loopback port.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from sessions.oicp.simulator import DEMO_OPERATORS, CpoConfig, SimulatorServer, make_server, serve_in_thread
from sessions.oicp.simulator.cli import parse_args
from tests.spec_files import spec_file

SESSION_ID = "f98efba4-02d8-4fa0-b810-9a9d50d2c527"
PULL = {"ProviderID": "DE-EMP", "GeoCoordinatesResponseFormat": "Google"}
STATUSES = {"Available", "Reserved", "Occupied", "OutOfService", "EvseNotFound", "Unknown"}


def start(**options: Any) -> SimulatorServer:
    server = make_server(port=0, **options)
    serve_in_thread(server)
    return server


def stop(server: SimulatorServer) -> None:
    server.shutdown()
    server.server_close()


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    """A simulator whose CPO runs the portal's sample session at an EVSE the network does not have."""
    server = start(seed=7)
    server.cpo.add_sessions([{"SessionID": SESSION_ID, "EvseID": "DE*XYZ*ETEST1"}])
    yield server
    stop(server)


def data_url(sim: SimulatorServer, provider: str = "DE-EMP", **query: Any) -> str:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{sim.url}/api/oicp/evsepull/v23/providers/{provider}/data-records" + (f"?{params}" if params else "")


def status_url(sim: SimulatorServer, variant: str = "", provider: str = "DE-EMP") -> str:
    return f"{sim.url}/api/oicp/evsepull/v21/providers/{provider}/status-records{variant}"


def pull(sim: SimulatorServer, body: Any = None, **query: Any) -> dict[str, Any]:
    response = requests.post(data_url(sim, **query), json=PULL if body is None else body, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json;charset=UTF-8"
    return response.json()


def statuses(sim: SimulatorServer, body: dict[str, Any], variant: str = "") -> dict[str, Any]:
    response = requests.post(status_url(sim, variant), json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def every_record(sim: SimulatorServer, body: dict[str, Any] | None = None, size: int = 100) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for page in range(1000):
        answer = pull(sim, body, page=page, size=size)
        records += answer["content"]
        if answer["last"]:
            return records
    raise AssertionError("no last page")


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


# ---- eRoamingPullEvseData: paging and records


def test_pages_run_to_the_last_page_with_every_evse_once(sim: SimulatorServer) -> None:
    first = pull(sim, page=0, size=50)

    total = first["totalElements"]
    assert total == 401  # the 400 generated EVSEs and the session's
    assert (first["number"], first["size"], first["totalPages"]) == (0, 50, 9)
    assert (first["first"], first["last"], first["numberOfElements"], first["empty"]) == (True, False, 50, False)
    assert first["StatusCode"]["Code"] == "000"
    last = pull(sim, page=8, size=50)
    assert (last["first"], last["last"], last["numberOfElements"]) == (False, True, 1)
    assert pull(sim, page=9, size=50)["content"] == []
    records = every_record(sim, size=50)
    assert len(records) == total == len({r["EvseID"] for r in records})
    assert pull(sim)["size"] == 20  # Hubject's default page size


def test_records_carry_operator_hotline_place_and_charging_facts(sim: SimulatorServer) -> None:
    records = every_record(sim)
    operators = {r["OperatorID"]: r["OperatorName"] for r in records}

    for demo in DEMO_OPERATORS:  # every demo CPO has stations, under its own name
        assert operators[demo["operator_id"]] == demo["name"]
    assert len(operators) > len(DEMO_OPERATORS)
    assert {r["Address"]["Country"] for r in records} >= {"DEU", "FRA", "NLD", "AUT"}
    hotlines = {r["OperatorID"]: r["HotlinePhoneNumber"] for r in records}
    assert all(re.fullmatch(r"\+[0-9]{5,15}", number) for number in hotlines.values())
    assert len(set(hotlines.values())) == len(hotlines)
    for record in records:
        address, name = record["Address"], record["ChargingStationNames"][0]["value"]
        assert address["PostalCode"] in name and address["City"] in name and address["Street"] in name
        assert record["EvseID"].startswith(record["OperatorID"] + "*E")
        assert 1 <= len(record["Plugs"]) and record["ChargingFacilities"][0]["Power"] > 0
        assert record["lastUpdate"].endswith("Z") and "deltaType" not in record
        assert record["IsOpen24Hours"] == ("OpeningTimes" not in record)
    german = [r["ChargingStationNames"][0]["value"] for r in records if r["Address"]["Country"] == "DEU"]
    assert any(re.fullmatch(r"[^,]+, [^,]+ \d+a?, \d{5} [^,]+", n) for n in german)
    assert any(re.search("[äöüßÄÖÜ]", n) for n in german)
    stations: dict[str, set[str]] = {}
    for record in records:
        stations.setdefault(record["ChargingStationID"], set()).add(record["EvseID"])
    assert max(len(evses) for evses in stations.values()) <= 8
    assert any(len(evses) >= 4 for evses in stations.values())


def test_the_network_is_the_same_for_the_same_seed() -> None:
    first, second = start(seed=3), start(seed=3)
    try:
        one, two = pull(first, size=100), pull(second, size=100)
    finally:
        stop(first)
        stop(second)
    names = [(r["EvseID"], r["ChargingStationNames"], r["Address"]) for r in one["content"]]
    assert names == [(r["EvseID"], r["ChargingStationNames"], r["Address"]) for r in two["content"]]


def test_coordinates_come_in_the_format_asked_for(sim: SimulatorServer) -> None:
    def coordinates(response_format: str) -> dict[str, Any]:
        return pull(sim, {**PULL, "GeoCoordinatesResponseFormat": response_format}, size=1)["content"][0][
            "GeoCoordinates"
        ]

    assert re.fullmatch(r"\d{2}\.\d{6} \d{1,2}\.\d{6}", coordinates("Google")["Google"]["Coordinates"])
    assert set(coordinates("DecimalDegree")["DecimalDegree"]) == {"Latitude", "Longitude"}
    assert re.fullmatch(
        r"\d{1,2}°\d{1,2}'\d{1,2}\.\d+''", coordinates("DegreeMinuteSeconds")["DegreeMinuteSeconds"]["Latitude"]
    )


def test_filters_select_operators_countries_and_a_radius(sim: SimulatorServer) -> None:
    cbl = every_record(sim, {**PULL, "OperatorIds": ["DECBL"]})
    french = every_record(sim, {**PULL, "CountryCodes": ["FRA"]})
    koeln = {"Google": {"Coordinates": "50.937531 6.960279"}}
    near = every_record(sim, {**PULL, "SearchCenter": {"GeoCoordinates": koeln, "Radius": 15}})
    open_all_day = every_record(sim, {**PULL, "IsOpen24Hours": True})

    assert cbl and {r["OperatorID"] for r in cbl} == {"DE*CBL"}
    assert french and {r["Address"]["Country"] for r in french} == {"FRA"}
    assert near and {r["Address"]["City"] for r in near} == {"Köln"}
    assert open_all_day and all(r["IsOpen24Hours"] for r in open_all_day)


# ---- delta pulls (LastCall)


def test_a_delta_pull_returns_inserts_updates_and_deletes_since_last_call(sim: SimulatorServer) -> None:
    directory = sim.directory
    started = directory.epoch
    directory.clock = lambda: started + 5  # ticks are 600 s: nothing changed yet
    last_call = iso(started + 1)
    assert pull(sim, {**PULL, "LastCall": last_call})["totalElements"] == 0

    directory.clock = lambda: started + 3 * 3600 + 30  # three hours later
    sim.cpo.add_sessions([{"EvseID": "NL*ABC*E77*1"}])  # a session at an EVSE new to the directory
    changes = every_record(sim, {**PULL, "LastCall": last_call})

    kinds = {r["deltaType"] for r in changes}
    assert kinds == {"insert", "update", "delete"}
    assert all(r["lastUpdate"] > last_call.replace("+00:00", "") for r in changes)
    deleted = {r["EvseID"] for r in changes if r["deltaType"] == "delete"}
    inserted = {r["EvseID"] for r in changes if r["deltaType"] == "insert"}
    assert "NL*ABC*E77*1" in inserted
    # A replaced charger: the old EvseID deleted, a new one inserted at the same station.
    by_station = {(r["ChargingStationID"], r["deltaType"]) for r in changes}
    assert all((r["ChargingStationID"], "insert") in by_station for r in changes if r["deltaType"] == "delete")
    now = {r["EvseID"] for r in every_record(sim)}
    assert not deleted & now and inserted <= now
    assert len(now) == 402  # replacements keep the count; the new session's EVSE was added
    # Unchanged records are not part of a delta; a later LastCall sees only later changes.
    assert len(changes) < len(now)
    directory.clock = lambda: started + 3 * 3600 + 60
    assert pull(sim, {**PULL, "LastCall": iso(started + 3 * 3600 + 40)})["totalElements"] == 0


def test_a_churn_of_n_evses_makes_a_delta_of_exactly_n_updates(sim: SimulatorServer) -> None:
    directory = sim.directory
    started = directory.epoch
    directory.clock = lambda: started + 60  # within the first tick: nothing changes by itself
    before = {r["EvseID"]: r for r in every_record(sim)}
    answer = requests.post(f"{sim.url}/_sim/directory/churn", json={"count": 25}, timeout=5)
    assert answer.status_code == 200 and answer.json() == {"churned": 25}
    directory.clock = lambda: started + 120

    changes = every_record(sim, {**PULL, "LastCall": iso(started + 30)})

    assert len(changes) == 25 and {r["deltaType"] for r in changes} == {"update"}
    assert all(r["EvseID"] in before and r != before[r["EvseID"]] for r in changes)
    assert all(r["lastUpdate"] > iso(started + 30).replace("+00:00", "") for r in changes)
    after = {r["EvseID"]: r for r in every_record(sim)}
    assert after.keys() == before.keys() and sum(after[k] != before[k] for k in after) == 25
    assert pull(sim, {**PULL, "LastCall": iso(started + 90)})["totalElements"] == 0  # nothing since
    for bad in ({"count": -1}, {"count": "5"}, {"count": 10**9}, []):
        assert requests.post(f"{sim.url}/_sim/directory/churn", json=bad, timeout=5).status_code == 400


# ---- eRoamingPullEvseStatus


def test_statuses_are_grouped_by_operator_and_follow_the_sessions(sim: SimulatorServer) -> None:
    answer = statuses(sim, {"ProviderID": "DE-EMP"})

    groups = answer["EvseStatuses"]["OperatorEvseStatus"]
    assert [g["OperatorID"] for g in groups] == sorted(g["OperatorID"] for g in groups)
    records = {r["EvseID"]: r["EvseStatus"] for g in groups for r in g["EvseStatusRecord"]}
    assert len(records) == 401
    assert set(records.values()) <= STATUSES and "Available" in records.values()
    assert records["DE*XYZ*ETEST1"] == "Occupied"  # the session is charging there
    assert answer["StatusCode"]["Code"] == "000"
    available = statuses(sim, {"ProviderID": "DE-EMP", "EVSEStatus": "Available"})
    assert {
        r["EvseStatus"] for g in available["EvseStatuses"]["OperatorEvseStatus"] for r in g["EvseStatusRecord"]
    } == {"Available"}


def test_statuses_change_with_time(sim: SimulatorServer) -> None:
    started = sim.directory.epoch

    def snapshot(offset: float) -> dict[str, str]:
        sim.directory.clock = lambda: started + offset
        groups = statuses(sim, {"ProviderID": "DE-EMP"})["EvseStatuses"]["OperatorEvseStatus"]
        return {r["EvseID"]: r["EvseStatus"] for g in groups for r in g["EvseStatusRecord"]}

    assert snapshot(10) == snapshot(10)
    assert snapshot(10) != snapshot(7200)


@pytest.mark.parametrize("variant", ["", "-by-operator-id"])
def test_statuses_by_operator(sim: SimulatorServer, variant: str) -> None:
    answer = statuses(sim, {"ProviderID": "DE-EMP", "OperatorID": ["DE*CBL", "FRMAJ"]}, variant)

    groups = answer["EvseStatuses"]["OperatorEvseStatus"]
    assert [(g["OperatorID"], g["OperatorName"]) for g in groups] == [
        ("DE*CBL", "Kabelklemme Laden"),
        ("FR*MAJ", "Majuscule Recharge"),
    ]
    for group in groups:
        assert group["EvseStatusRecord"]
        assert all(r["EvseID"].startswith(group["OperatorID"] + "*") for r in group["EvseStatusRecord"])


@pytest.mark.parametrize("variant", ["", "-by-id"])
def test_statuses_by_evse_id(sim: SimulatorServer, variant: str) -> None:
    known = pull(sim, size=1)["content"][0]["EvseID"]
    asked = ["DE*XYZ*ETEST1", known, "DE*ACC*E9999*9"]

    answer = statuses(sim, {"ProviderID": "DE-EMP", "EvseID": asked}, variant)

    records = answer["EVSEStatusRecords"]["EvseStatusRecord"]
    assert [r["EvseID"] for r in records] == asked
    assert records[0]["EvseStatus"] == "Occupied"
    assert records[1]["EvseStatus"] in STATUSES - {"EvseNotFound"}
    assert records[2]["EvseStatus"] == "EvseNotFound"


# ---- the sessions' EVSEs


def test_every_demo_session_has_its_evse_in_the_directory() -> None:
    server = start(new_session_interval_seconds=0.02, max_sessions=100, seed=11)
    # As the portal's demo data sends them (load_demo → demo sessions file): EVSEs the network may lack.
    server.cpo.add_sessions(
        [{"EvseID": f"{op['operator_id']}*E{4321 + n:04d}*3"} for n, op in enumerate(DEMO_OPERATORS)]
    )
    try:
        deadline = time.monotonic() + 10
        while len(server.cpo.sessions_list()) < len(DEMO_OPERATORS) + 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        evse_ids = sorted({s["EvseID"] for s in server.cpo.sessions_list()})
        directory = {r["EvseID"]: r for r in every_record(server, size=500)}
        by_id = statuses(server, {"ProviderID": "DE-EMP", "EvseID": evse_ids[:100]})
        added = server.directory.summary()["session_evses_added"]
    finally:
        stop(server)
    assert len(evse_ids) >= len(DEMO_OPERATORS) + 8
    for evse_id in evse_ids:
        assert evse_id in directory, evse_id
        assert directory[evse_id]["ChargingStationNames"] and directory[evse_id]["Address"]["City"]
    assert "EvseNotFound" not in {r["EvseStatus"] for r in by_id["EVSEStatusRecords"]["EvseStatusRecord"]}
    assert added <= len(DEMO_OPERATORS)  # the CPOs' own new sessions start at EVSEs of the network


# ---- Hubject's OpenAPI


@pytest.mark.parametrize("response_format", ["Google", "DecimalDegree", "DegreeMinuteSeconds"])
def test_pull_evse_data_request_and_answer_match_hubjects_openapi(sim: SimulatorServer, response_format: str) -> None:
    openapi = spec_file("openapi.yaml")  # skips, or fails under CI, when it is missing
    from openapi_core import OpenAPI
    from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

    api = OpenAPI.from_file_path(str(openapi))
    last_call = iso(sim.directory.epoch - 86_400)
    for body in (
        {**PULL, "GeoCoordinatesResponseFormat": response_format, "CountryCodes": ["DEU"], "IsHubjectCompatible": True},
        {**PULL, "GeoCoordinatesResponseFormat": response_format, "LastCall": last_call},
    ):
        prepared = requests.Request(
            "POST",
            "https://service-qa.hubject.com/api/oicp/evsepull/v23/providers/DE-EMP/data-records?page=0&size=50",
            data=json.dumps(body),
            headers={"Content-Type": "application/json"},
        ).prepare()
        api.validate_request(RequestsOpenAPIRequest(prepared))
        response = requests.post(data_url(sim, page=0, size=50), json=body, timeout=5)
        assert response.json()["numberOfElements"] > 0
        response.headers["Content-Type"] = "application/json"
        api.validate_response(RequestsOpenAPIRequest(prepared), RequestsOpenAPIResponse(response))


@pytest.mark.parametrize(
    "body",
    [
        {"ProviderID": "DE-EMP"},
        {"ProviderID": "DE-EMP", "OperatorID": ["DE*CBL"]},
        {"ProviderID": "DE-EMP", "EvseID": ["DE*XYZ*ETEST1", "DE*ACC*E9999*9"]},
    ],
)
def test_pull_evse_status_answers_match_hubjects_openapi(sim: SimulatorServer, body: dict[str, Any]) -> None:
    openapi = spec_file("openapi.yaml")
    from openapi_core import OpenAPI
    from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

    api = OpenAPI.from_file_path(str(openapi))
    prepared = requests.Request(
        "POST",
        "https://service-qa.hubject.com/api/oicp/evsepull/v21/providers/DE-EMP/status-records",
        data=json.dumps(body),
        headers={"Content-Type": "application/json"},
    ).prepare()
    response = requests.post(status_url(sim), json=body, timeout=5)
    response.headers["Content-Type"] = "application/json"
    api.validate_response(RequestsOpenAPIRequest(prepared), RequestsOpenAPIResponse(response))


# ---- refusals, as HBS refuses the simulator's other requests


def assert_validation_error(response: requests.Response, field: str) -> None:
    assert response.status_code == 400, response.text
    fault = response.json()
    assert fault["message"] == "Validation error"
    assert field in [e["fieldReference"] for e in fault["validationErrors"]], fault


@pytest.mark.parametrize(
    ("query", "payload", "field"),
    [
        ({}, {"ProviderID": "DE-EMP"}, "GeoCoordinatesResponseFormat"),
        ({}, {**PULL, "GeoCoordinatesResponseFormat": "Bing"}, "GeoCoordinatesResponseFormat"),
        ({}, {"GeoCoordinatesResponseFormat": "Google"}, "ProviderID"),
        ({}, {**PULL, "ProviderID": "DE-XYZ"}, "ProviderID"),
        ({}, {**PULL, "LastCall": "2026-01-05T10:00:00"}, "LastCall"),
        ({}, {**PULL, "LastCall": "2026-01-05T10:00:00Z", "OperatorIds": ["DE*ACC"]}, "LastCall"),
        ({}, {**PULL, "CountryCodes": ["DE"]}, "CountryCodes"),
        ({}, {**PULL, "OperatorIds": "DE*ACC"}, "OperatorIds"),
        ({}, {**PULL, "IsOpen24Hours": "yes"}, "IsOpen24Hours"),
        ({}, {**PULL, "SearchCenter": {"GeoCoordinates": {}, "Radius": 5}}, "SearchCenter.GeoCoordinates"),
        ({}, {**PULL, "EvseStatus": "Available"}, "EvseStatus"),
        ({"size": 0}, PULL, "size"),
        ({"size": 2001}, PULL, "size"),
        ({"page": -1}, PULL, "page"),
        ({}, [PULL], "body"),
    ],
)
def test_bad_evse_data_pulls_are_refused(sim: SimulatorServer, query: dict, payload: Any, field: str) -> None:
    assert_validation_error(requests.post(data_url(sim, **query), json=payload, timeout=5), field)


@pytest.mark.parametrize(
    ("variant", "payload", "field"),
    [
        ("", {}, "ProviderID"),
        ("", {"ProviderID": "DE-XYZ"}, "ProviderID"),
        ("", {"ProviderID": "DE-EMP", "EVSEStatus": "Free"}, "EVSEStatus"),
        ("", {"ProviderID": "DE-EMP", "EvseID": "DE*ACC*E1"}, "EvseID"),
        ("", {"ProviderID": "DE-EMP", "EvseID": [f"DE*ACC*E{n}" for n in range(101)]}, "EvseID"),
        ("-by-id", {"ProviderID": "DE-EMP"}, "EvseID"),
        ("-by-id", {"ProviderID": "DE-EMP", "EvseID": ["DE*ICE*I01000*6"]}, "EvseID"),
        ("-by-operator-id", {"ProviderID": "DE-EMP"}, "OperatorID"),
        ("-by-operator-id", {"ProviderID": "DE-EMP", "OperatorID": ["DE-ACC"]}, "OperatorID"),
        ("-by-operator-id", {"ProviderID": "DE-EMP", "OperatorID": ["DE*ACC"], "LastCall": "x"}, "LastCall"),
    ],
)
def test_bad_evse_status_pulls_are_refused(sim: SimulatorServer, variant: str, payload: Any, field: str) -> None:
    assert_validation_error(requests.post(status_url(sim, variant), json=payload, timeout=5), field)


def test_transport_refusals_are_the_same_as_for_the_other_operations(sim: SimulatorServer) -> None:
    wrong_type = requests.post(data_url(sim), data=json.dumps(PULL), headers={"Content-Type": "text/plain"}, timeout=5)
    not_json = requests.post(
        status_url(sim), data=b"{not json", headers={"Content-Type": "application/json"}, timeout=5
    )
    assert_validation_error(wrong_type, "Content-Type")
    assert_validation_error(not_json, "body")
    method = requests.get(data_url(sim), timeout=5)
    assert method.status_code == 405 and method.json()["message"] == "Method not allowed"
    logged = requests.get(f"{sim.url}/_sim/received", timeout=5).json()
    assert [e["answered_status"] for e in logged] == [400, 400, 405]
    assert logged[0]["violations"] and logged[0]["path"].endswith("/data-records")


# ---- size: --evse-count


def test_half_a_million_evses_page_from_first_to_last() -> None:
    server = start(evse_count=500_000)
    try:
        first = pull(server, size=20)
        last = pull(server, page=first["totalPages"] - 1, size=20)
        beyond = pull(server, page=first["totalPages"], size=20)
        by_id = statuses(server, {"ProviderID": "DE-EMP", "EvseID": [last["content"][-1]["EvseID"]]})
    finally:
        stop(server)
    assert (first["totalElements"], first["totalPages"], first["numberOfElements"]) == (500_000, 25_000, 20)
    assert (last["last"], last["number"], last["numberOfElements"]) == (True, 24_999, 20)
    assert beyond["content"] == [] and beyond["last"] is True
    assert by_id["EVSEStatusRecords"]["EvseStatusRecord"][0]["EvseStatus"] != "EvseNotFound"


def test_the_evse_count_option_and_the_control_api(sim: SimulatorServer) -> None:
    config = CpoConfig.from_options(parse_args(["--evse-count", "1234", "--evse-churn", "60"]))
    assert (config.evse_count, config.evse_churn_seconds) == (1234, 60)
    assert CpoConfig().evse_count == 400
    with pytest.raises(SystemExit):
        parse_args(["--evse-count", "-1"])
    summary = requests.get(f"{sim.url}/_sim/directory", timeout=5).json()
    assert summary["evse_count"] == 400 and summary["total"] == 401 and summary["session_evses_added"] == 1
    small = start(evse_count=3)
    try:
        assert pull(small)["totalElements"] == 3
    finally:
        stop(small)


def test_a_delta_far_back_lists_the_whole_network_as_inserts(sim: SimulatorServer) -> None:
    answer = pull(sim, {**PULL, "LastCall": iso(datetime.now(UTC).timestamp() - 5 * 365 * 86_400)}, size=1)
    assert answer["totalElements"] >= 401
    assert answer["content"][0]["deltaType"] in {"insert", "update"}
