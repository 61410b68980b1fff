"""The EVSE directory pull (eRoamingPullEvseData_V2.3): paging, deltas, failures, refusals, the audit trail.

Against a mocked HBS (`responses`) for the exact exchanges, and against the portal's own simulator
for a full pull followed by a delta after the simulator's clock moved.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from django.core.management import CommandError, call_command

from sessions import services
from sessions.directory.pull import next_last_call
from sessions.directory.search_text import fold
from sessions.models import AuditRecord, EvsePullRun, EvseRecord, Operator
from sessions.oicp.client import HubjectClient
from sessions.oicp.simulator import make_server, serve_in_thread
from tests.spec_files import code_snippets, spec_file

BASE = "https://hbs.test"
URL = BASE + "/api/oicp/evsepull/v23/providers/DE-DCB/data-records"
STATUS_URL = BASE + "/api/oicp/evsepull/v21/providers/DE-DCB/status-records-by-id"

pytestmark = pytest.mark.django_db


def record(evse_id: str, operator: str = "DE*ABC", **overrides: Any) -> dict[str, Any]:
    body = {
        "EvseID": evse_id,
        "OperatorID": operator,
        "OperatorName": f"{operator} Energie",
        "ChargingStationID": "ST-" + evse_id,
        "ChargingStationNames": [{"lang": "de", "value": "Ladepark Müllerstraße"}],
        "Address": {"Country": "DEU", "City": "Köln", "Street": "Große Straße", "HouseNum": "7", "PostalCode": "50667"},
        "GeoCoordinates": {"DecimalDegree": {"Latitude": "50.937531", "Longitude": "6.960279"}},
        "Plugs": ["Type 2 Outlet"],
        "ChargingFacilities": [{"PowerType": "AC_3_PHASE", "Power": 22}],
        "RenewableEnergy": True,
        "CalibrationLawDataAvailability": "Local",
        "AuthenticationModes": ["REMOTE"],
        "PaymentOptions": ["Contract"],
        "ValueAddedServices": ["None"],
        "Accessibility": "Free publicly accessible",
        "HotlinePhoneNumber": "+4922100000",
        "IsOpen24Hours": True,
        "IsHubjectCompatible": True,
        "lastUpdate": "2026-01-05T10:00:00.000Z",
    }
    body.update(overrides)
    return body


def page(content: list, *, number: int = 0, total_pages: int = 1, size: int = 2000) -> dict[str, Any]:
    return {
        "content": content,
        "number": number,
        "size": size,
        "totalElements": len(content),
        "last": number + 1 >= total_pages,
        "totalPages": total_pages,
        "first": number == 0,
        "numberOfElements": len(content),
        "StatusCode": {"Code": "000", "Description": "Success", "AdditionalInfo": ""},
    }


@pytest.fixture
def hbs():
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def client() -> HubjectClient:
    return HubjectClient(base_url=BASE, provider_id="DE-DCB")


def bodies(hbs) -> list[dict[str, Any]]:
    return [json.loads(call.request.body) for call in hbs.calls]


def audit() -> AuditRecord:
    return AuditRecord.objects.filter(event_type=AuditRecord.EventType.EVSE_DATA_PULLED).latest("pk")


# ---- paging and the first (full) run


def test_a_first_run_pulls_every_page_in_full_and_records_it(hbs, client):
    hbs.post(URL, json=page([record("DE*ABC*E1*1"), record("DE*ABC*E1*2")], total_pages=2))
    hbs.post(URL, json=page([record("DE*XYZ*E9*1", "DE*XYZ", HotlinePhoneNumber="+4930111")], number=1, total_pages=2))

    report = services.pull_evse_data(client=client, page_size=2)

    assert report.ok and report.kind == EvsePullRun.Kind.FULL
    assert (report.pages, report.added, report.changed, report.deleted, report.refused) == (2, 3, 0, 0, 0)
    assert [parse_qs(urlsplit(c.request.url).query) for c in hbs.calls] == [
        {"page": ["0"], "size": ["2"]},
        {"page": ["1"], "size": ["2"]},
    ]
    assert all("LastCall" not in body and body["ProviderID"] == "DE-DCB" for body in bodies(hbs))
    evse = EvseRecord.objects.get(evse_id="DE*ABC*E1*1")
    assert (evse.city, evse.latitude, evse.longitude) == ("Köln", Decimal("50.937531"), Decimal("6.960279"))
    assert evse.search_text == "ladepark mullerstrasse grosse strasse 7 50667 koln"
    assert evse.raw["PaymentOptions"] == ["Contract"] and evse.operator.operator_id == "DE*ABC"
    assert evse.hubject_last_update == datetime(2026, 1, 5, 10, tzinfo=UTC)
    operators = {op.operator_id: op for op in Operator.objects.all()}
    assert operators["DE*ABC"].evse_count == 2 and operators["DE*XYZ"].hotline == "+4930111"
    run = EvsePullRun.objects.get()
    assert (run.ok, run.pages, run.added, run.finished_at is not None) == (True, 2, 3, True)
    data = audit().data
    assert (data["kind"], data["pages"], data["added"], data["refused"], data["ok"]) == ("FULL", 2, 3, 0, True)


def test_every_request_matches_hubjects_openapi(hbs, client):
    openapi = spec_file("openapi.yaml")
    from openapi_core import OpenAPI
    from openapi_core.contrib.requests import RequestsOpenAPIRequest

    hbs.post(URL, json=page([record("DE*ABC*E1*1")]))
    hbs.post(URL, json=page([]))
    hbs.post(STATUS_URL, json={"EVSEStatusRecords": {"EvseStatusRecord": []}, "StatusCode": {"Code": "000"}})
    services.pull_evse_data(client=client)  # full
    services.pull_evse_data(client=client)  # delta: LastCall
    client.pull_evse_status_by_id(evse_ids=["DE*ABC*E1*1"])
    assert "LastCall" in bodies(hbs)[1]
    api = OpenAPI.from_file_path(str(openapi))
    for call in hbs.calls[:2]:
        path = urlsplit(call.request.url).path.removeprefix("/api/oicp")
        prepared = requests.Request(
            "POST",
            "https://service-qa.hubject.com/api/oicp" + path,
            data=call.request.body,
            headers={"Content-Type": "application/json"},
        ).prepare()
        api.validate_request(RequestsOpenAPIRequest(prepared))
    # The ByID body has its own path in the code snippets; the OpenAPI takes it on status-records in
    # a oneOf that its own ByID body can never satisfy (eRoamingPullEVSEStatus matches it too), so
    # the body is checked against its schema.
    import yaml
    from openapi_schema_validator import OAS30Validator

    components = yaml.safe_load(openapi.read_text())["components"]
    schema = {"$ref": "#/components/schemas/eRoamingPullEVSEStatusByID", "components": components}
    OAS30Validator(schema).validate(bodies(hbs)[2])
    assert urlsplit(hbs.calls[2].request.url).path.endswith("/evsepull/v21/providers/DE-DCB/status-records-by-id")


def test_hubjects_own_sample_answer_is_accepted(hbs, client):
    sample = json.loads(code_snippets("asciidoc/06_EMP_Code_Snippets.asciidoc")["eRoamingPullEVSEData"][1])
    sample["last"] = True  # the sample is page 1 of 8; here it is the only one
    hbs.post(URL, json=sample)

    report = services.pull_evse_data(client=client)

    assert report.ok and report.added == 1
    evse = EvseRecord.objects.get(evse_id="DE*XYZ*ETEST1")
    assert evse.operator.operator_id == "DE*ABC"  # the sample's "OperatorId" spelling
    assert (evse.station_name, evse.city, evse.latitude) == (
        "ABC Charging Station Test",
        "Berlin",
        Decimal("52.480495"),
    )
    assert evse.raw["EnergySource"][0]["Energy"] == "Solar" and evse.opening_times[0]["on"] == "Everyday"
    assert evse.operator.name == "ABC technologies" and evse.operator.hotline == "+49123123123123"


def test_status_by_id_reads_hubjects_sample(hbs, client):
    snippet = code_snippets("asciidoc/06_EMP_Code_Snippets.asciidoc")["eRoamingPullEVSEStatusByID"]
    hbs.post(STATUS_URL, json=json.loads(snippet[1]))
    result = client.pull_evse_status_by_id(evse_ids=["DE*XYZ*ETEST1"])
    assert result.ok and result.statuses == {"DE*XYZ*ETEST1": "Available"}
    assert bodies(hbs)[0] == json.loads(snippet[0]) | {"ProviderID": "DE-DCB"}
    with pytest.raises(ValueError):
        client.pull_evse_status_by_id(evse_ids=[f"DE*ABC*E{n}" for n in range(101)])


# ---- deltas


def test_a_delta_inserts_updates_and_deletes_and_never_touches_support_fields(hbs, client, settings):
    settings.EVSE_DATA_PULL_OVERLAP_MINUTES = 10
    hbs.post(URL, json=page([record("DE*ABC*E1*1"), record("DE*ABC*E1*2"), record("DE*ABC*E1*3")]))
    first = services.pull_evse_data(client=client)
    operator = Operator.objects.get(operator_id="DE*ABC")
    Operator.objects.filter(pk=operator.pk).update(
        escalation_email="esc@abc.example", hotline_hours="Mo-Fr 8-18", internal_note="call Jan"
    )
    hbs.post(
        URL,
        json=page(
            [
                record(
                    "DE*ABC*E1*2",
                    deltaType="update",
                    HotlinePhoneNumber="+4922199999",
                    lastUpdate="2026-01-06T10:00:00Z",
                    OperatorName="ABC Neu",
                ),
                record("DE*ABC*E1*3", deltaType="delete"),
                record("DE*ABC*E1*4", deltaType="insert"),
            ]
        ),
    )

    report = services.pull_evse_data(client=client)

    assert report.ok and report.kind == EvsePullRun.Kind.DELTA
    assert (report.added, report.changed, report.deleted) == (1, 1, 1)
    sent = bodies(hbs)[1]["LastCall"]
    assert datetime.fromisoformat(sent) == (first.started_at - timedelta(minutes=10)).replace(microsecond=0)
    assert set(EvseRecord.objects.values_list("evse_id", flat=True)) == {"DE*ABC*E1*1", "DE*ABC*E1*2", "DE*ABC*E1*4"}
    operator.refresh_from_db()
    assert (operator.name, operator.hotline, operator.evse_count) == ("ABC Neu", "+4922199999", 3)
    assert (operator.escalation_email, operator.hotline_hours, operator.internal_note) == (
        "esc@abc.example",
        "Mo-Fr 8-18",
        "call Jan",
    )


def test_a_full_pull_deletes_what_it_no_longer_sees_only_when_complete(hbs, client):
    hbs.post(URL, json=page([record("DE*ABC*E1*1"), record("DE*ABC*E1*2")]))
    services.pull_evse_data(client=client)
    # A full pull that fails on its second page deletes nothing.
    hbs.post(URL, json=page([record("DE*ABC*E1*1")], total_pages=2))
    hbs.post(URL, status=500, json={"message": "boom"})
    failed = services.pull_evse_data(client=client, full=True)
    assert not failed.ok and failed.failure and EvseRecord.objects.count() == 2
    hbs.post(URL, json=page([record("DE*ABC*E1*1")]))
    done = services.pull_evse_data(client=client, full=True)
    assert done.ok and (done.unchanged, done.deleted) == (1, 1)
    assert list(EvseRecord.objects.values_list("evse_id", flat=True)) == ["DE*ABC*E1*1"]
    assert Operator.objects.get().evse_count == 1


# ---- failures and refusals are loud


def test_a_page_that_cannot_be_applied_fails_the_run_and_leaves_nothing_of_itself(hbs, client, monkeypatch):
    hbs.post(URL, json=page([record("DE*ABC*E1*1")], total_pages=2))
    hbs.post(URL, json=page([record("DE*ABC*E2*1"), record("DE*ABC*E2*2")], number=1, total_pages=2))
    from sessions.directory import pull

    def upsert_failing(rows):  # the page's EVSE rows fail after its operators were written
        if any(row["evse_id"].startswith("DE*ABC*E2") for row in rows):
            raise RuntimeError("disk full")
        return original(rows)

    original = pull.upsert_evses
    monkeypatch.setattr(pull, "upsert_evses", upsert_failing)

    report = services.pull_evse_data(client=client)

    assert not report.ok and not report.complete and "Page 1" in report.failure and "disk full" in report.failure
    assert list(EvseRecord.objects.values_list("evse_id", flat=True)) == ["DE*ABC*E1*1"]
    run = EvsePullRun.objects.get()
    assert run.ok is False and "disk full" in run.failure and run.pages == 1
    assert audit().data["failure"] == run.failure
    assert next_last_call() is None  # no complete run: the next one pulls in full


def test_hubject_refusing_the_pull_fails_the_run(hbs, client):
    hbs.post(URL, json={"content": [], "StatusCode": {"Code": "017", "Description": "Unauthorized Access"}})
    report = services.pull_evse_data(client=client)
    assert not report.ok and "017" in report.failure and EvsePullRun.objects.get().ok is False


def test_refused_records_are_counted_named_and_the_rest_applied(hbs, client):
    no_operator = record("DE*ABC*E1*2")
    del no_operator["OperatorID"]
    no_evse = record("x")
    del no_evse["EvseID"]
    hbs.post(URL, json=page([record("DE*ABC*E1*1"), no_operator, no_evse, "not an object"]))

    report = services.pull_evse_data(client=client)

    assert report.complete and not report.ok and (report.added, report.refused) == (1, 3)
    named = audit().data["refused_records"]
    assert {(r["evse_id"], r["reason"]) for r in named} == {
        ("DE*ABC*E1*2", "no OperatorID"),
        ("", "no EvseID"),
        ("", "not a JSON object"),
    }
    assert EvsePullRun.objects.get().refused == 3


# ---- the command


def test_the_command_prints_counts_and_exits_non_zero_on_failure_or_refusal(hbs, settings, capsys):
    settings.OICP_BASE_URL, settings.OICP_PROVIDER_ID = BASE, "DE-DCB"
    hbs.post(URL, json=page([record("DE*ABC*E1*1")]))
    call_command("pull_evse_data")
    assert "1 added" in capsys.readouterr().out
    hbs.post(URL, json=page([{"OperatorID": "DE*ABC"}]))
    with pytest.raises(CommandError, match="1 record"):
        call_command("pull_evse_data")
    assert "refused: page 0 record 0 (no EvseID): no EvseID" in capsys.readouterr().out
    hbs.post(URL, status=503, body="down")
    with pytest.raises(CommandError, match="Page 0"):
        call_command("pull_evse_data", "--full")
    assert EvsePullRun.objects.order_by("pk").first().kind == "FULL"
    assert list(EvsePullRun.objects.order_by("pk").values_list("kind", flat=True)) == ["FULL", "DELTA", "FULL"]


def test_accents_are_folded_for_the_place_search():
    assert fold("  Straße  ÄÖÜ éàç Œuvre") == "strasse aou eac œuvre"


# ---- against the portal's simulator


@pytest.fixture
def simulator():
    server = make_server(port=0, seed=7)
    serve_in_thread(server)
    yield server
    server.shutdown()
    server.server_close()


def test_a_full_pull_then_a_delta_from_the_simulator(simulator, settings):
    settings.EVSE_DATA_PULL_OVERLAP_MINUTES = 0
    directory = simulator.directory
    started = directory.epoch
    directory.clock = lambda: started + 5
    client = HubjectClient(base_url=simulator.url, provider_id="DE-EMP")

    full = services.pull_evse_data(client=client, page_size=150)

    assert full.ok and full.kind == "FULL" and full.pages == 3 and full.added == EvseRecord.objects.count() == 400
    assert Operator.objects.filter(evse_count__gt=0).count() == Operator.objects.count() > 5
    before = set(EvseRecord.objects.values_list("evse_id", flat=True))
    # Three hours later on the simulator's clock; the portal's last run started "now".
    run = EvsePullRun.objects.get()
    EvsePullRun.objects.filter(pk=run.pk).update(started_at=datetime.fromtimestamp(started + 1, UTC))
    directory.clock = lambda: started + 3 * 3600

    delta = services.pull_evse_data(client=client, page_size=150)

    assert delta.ok and delta.kind == "DELTA" and delta.added and delta.changed and delta.deleted
    assert delta.unchanged == 0  # a delta carries only what changed
    after = set(EvseRecord.objects.values_list("evse_id", flat=True))
    assert len(after) == 400 and after != before
    everything = set()
    for number in range(10):
        answer = requests.post(
            f"{simulator.url}/api/oicp/evsepull/v23/providers/DE-EMP/data-records?page={number}&size=200",
            json={"ProviderID": "DE-EMP", "GeoCoordinatesResponseFormat": "Google"},
            timeout=30,
        ).json()
        everything |= {r["EvseID"] for r in answer["content"]}
        if answer["last"]:
            break
    assert after == everything
