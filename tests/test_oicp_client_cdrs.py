"""HubjectClient.get_charge_detail_records: eRoamingGetChargeDetailRecords_V2.2 (DIGEST §5.4)."""

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from sessions.oicp.client import HubjectClient
from sessions.oicp.exchange import Page
from sessions.oicp.outcomes import Outcome
from sessions.oicp.paths import MAX_CDR_PAGE_SIZE
from tests.spec_files import spec_file

BASE = "https://hbs.example"
URL = f"{BASE}/api/oicp/cdrmgmt/v22/providers/DE-DCB/get-charge-detail-records-request"
FROM = datetime(2020, 9, 1, tzinfo=timezone(timedelta(hours=2)))
TO = datetime(2020, 9, 30, 12, 0, tzinfo=UTC)
# The OpenAPI example's CDR, trimmed to what matters here.
CDR = {
    "SessionID": "f98efba4-02d8-4fa0-b810-9a9d50d2c527",
    "CPOPartnerSessionID": "1234XYZ",
    "EMPPartnerSessionID": "9876655",
    "EvseID": "DE*XYZ*ETEST1",
    "Identification": {"RemoteIdentification": {"EvcoID": "DE-DCB-C12345678-X"}},
    "ChargingStart": "2020-09-23T14:17:53.038Z",
    "ChargingEnd": "2020-09-23T14:17:53.038Z",
    "SessionStart": "2020-09-23T14:17:53.039Z",
    "SessionEnd": "2020-09-23T14:17:53.039Z",
    "MeterValueStart": 0,
    "MeterValueEnd": 10.123,
    "MeterValueInBetween": {"meterValues": [10]},
    "ConsumedEnergy": 10.123,
}


def page_body(content: list, *, number: int = 0, size: int = 20, total: int | None = None, **overrides: Any) -> dict:
    total = len(content) if total is None else total
    pages = (total + size - 1) // size
    body = {
        "content": content,
        "number": number,
        "size": size,
        "totalElements": total,
        "empty": not content,
        "last": number >= pages - 1,
        "totalPages": pages,
        "first": number == 0,
        "pageable": {
            "sort": {"sorted": False, "empty": True, "unsorted": True},
            "pageSize": size,
            "pageNumber": number,
            "offset": number * size,
            "paged": True,
            "unpaged": False,
        },
        "numberOfElements": len(content),
        "StatusCode": {"Code": "000", "Description": "Description", "AdditionalInfo": "Additional info"},
    }
    body.update(overrides)
    return body


@pytest.fixture
def hbs():
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def client() -> HubjectClient:
    return HubjectClient(base_url=BASE + "/", provider_id="DE-DCB", timeout=75, connect_timeout=10)


def pull(client: HubjectClient, page: int = 0, size: int = 2000) -> Page:
    return client.get_charge_detail_records(date_from=FROM, date_to=TO, page=page, size=size)


def test_a_page_is_read_with_its_paging_fields_and_exact_decimals(hbs, client):
    hbs.post(URL, json=page_body([CDR], size=2000), headers={"Process-ID": "p-1"})

    result = pull(client)

    assert result.ok and not result.transient and result.outcome is Outcome.ACCEPTED
    assert result.records == [{**CDR, "MeterValueEnd": Decimal("10.123"), "ConsumedEnergy": Decimal("10.123")}]
    assert isinstance(result.records[0]["ConsumedEnergy"], Decimal)  # never a float
    assert (result.number, result.size, result.total_elements, result.total_pages) == (0, 2000, 1, 1)
    assert (result.first, result.last, result.number_of_elements) == (True, True, 1)
    assert (result.http_status, result.oicp_code, result.process_id) == (200, "000", "p-1")


def test_request_carries_provider_window_with_offsets_and_page_parameters(hbs, client):
    hbs.post(URL, json=page_body([], number=3, size=500))

    client.get_charge_detail_records(date_from=FROM, date_to=TO, page=3, size=500)

    sent = hbs.calls[0].request
    assert parse_qs(urlsplit(sent.url).query) == {"page": ["3"], "size": ["500"]}
    assert sent.headers["Content-Type"].startswith("application/json")
    assert json.loads(sent.body) == {
        "ProviderID": "DE-DCB",
        "From": "2020-09-01T00:00:00+02:00",
        "To": "2020-09-30T12:00:00+00:00",
    }


def test_size_is_capped_at_2000(hbs, client):
    hbs.post(URL, json=page_body([], size=2000))

    result = pull(client, size=50_000)

    assert parse_qs(urlsplit(hbs.calls[0].request.url).query)["size"] == [str(MAX_CDR_PAGE_SIZE)]
    assert result.requested_size == 2000


def test_status_code_null_as_in_the_asciidoc_sample_is_tolerated(hbs, client):
    hbs.post(URL, json=page_body([CDR], StatusCode=None))

    result = pull(client)

    assert result.ok and result.oicp_code == "" and len(result.records) == 1


def test_missing_paging_fields_are_derived(hbs, client):
    hbs.post(URL, json={"content": [CDR, CDR]})

    result = pull(client, size=2)

    assert result.ok
    assert result.last is False  # a full page without "last": there may be more
    assert (result.number, result.number_of_elements) == (0, 2)


def test_middle_page_is_not_last(hbs, client):
    hbs.post(URL, json=page_body([CDR], number=1, size=1, total=3))

    result = pull(client, page=1, size=1)

    assert (result.number, result.first, result.last, result.total_pages) == (1, False, False, 3)


@pytest.mark.parametrize(
    ("status", "body", "outcome", "kind", "code"),
    [
        (503, "<html><h1>503 Service Temporarily Unavailable</h1></html>", Outcome.TRANSIENT, "http_error", ""),
        (
            500,
            {"message": "Processing error", "extendedInfo": None, "validationErrors": []},
            Outcome.TRANSIENT,
            "http_error",
            "",
        ),
        (
            401,
            {"StatusCode": {"Code": "017", "Description": "Unauthorized Access"}, "message": "Call not authorized"},
            Outcome.REJECTED,
            "unauthorized",
            "017",
        ),
        (404, {"StatusCode": {"Code": "300"}, "message": "Data not found"}, Outcome.REJECTED, "http_error", "300"),
    ],
)
def test_http_errors_are_classified(hbs, client, status, body, outcome, kind, code):
    if isinstance(body, str):
        hbs.post(URL, body=body, status=status, content_type="text/html")
    else:
        hbs.post(URL, json=body, status=status)

    result = pull(client)

    assert (result.outcome, result.failure_kind, result.oicp_code, result.http_status) == (outcome, kind, code, status)
    assert result.records == [] and result.error
    assert "stop" not in result.error.lower()


def test_validation_error_names_the_fields(hbs, client):
    fault = {
        "message": "Validation error",
        "extendedInfo": None,
        "validationErrors": [{"fieldReference": "From", "errorMessage": "must not be null"}],
    }
    hbs.post(URL, json=fault, status=400)

    result = pull(client)

    assert result.outcome is Outcome.REJECTED and result.failure_kind == "validation"
    assert "From: must not be null" in result.error


@pytest.mark.parametrize(
    ("code", "outcome"), [("017", Outcome.REJECTED), ("021", Outcome.TRANSIENT), ("001", Outcome.TRANSIENT)]
)
def test_an_oicp_failure_code_in_a_200_answer_is_a_failure(hbs, client, code, outcome):
    hbs.post(URL, json={"Result": False, "StatusCode": {"Code": code}})

    result = pull(client)

    assert (result.outcome, result.oicp_code) == (outcome, code)
    assert code in result.error


@pytest.mark.parametrize(
    "body",
    [
        "<html>maintenance</html>",
        "[]",
        json.dumps({"content": "none"}),
        json.dumps({"content": [], "StatusCode": {"Code": 0}}),
    ],
)
def test_unreadable_answers_are_transient(hbs, client, body):
    hbs.post(URL, body=body, status=200, content_type="application/json")

    result = pull(client)

    assert result.transient and result.failure_kind == "unreadable" and result.records == []


@pytest.mark.parametrize(
    ("exc", "outcome", "kind"),
    [
        (requests.ConnectionError("refused"), Outcome.TRANSIENT, "connection"),
        (requests.ConnectTimeout("connect timed out"), Outcome.TRANSIENT, "connection"),
        (requests.ReadTimeout("read timed out"), Outcome.TRANSIENT, "timeout"),
        (requests.exceptions.SSLError("certificate verify failed"), Outcome.REJECTED, "tls"),
        (OSError("Could not find the TLS key file"), Outcome.REJECTED, "tls"),
    ],
)
def test_network_problems_never_raise(hbs, client, exc, outcome, kind):
    hbs.post(URL, body=exc)

    result = pull(client)

    assert (result.outcome, result.failure_kind, result.http_status) == (outcome, kind, None)
    assert result.error and result.request["json"]["ProviderID"] == "DE-DCB"


def test_timeouts_and_tls_settings_are_passed(client, monkeypatch):
    seen = {}

    def fake_request(method, url, **kwargs):
        seen.update(kwargs)
        raise requests.ConnectionError("down")

    tls_client = HubjectClient(
        base_url=BASE,
        provider_id="DE-DCB",
        client_cert="c.pem",
        client_key="k.pem",
        ca_bundle="ca.pem",
        timeout=75,
        connect_timeout=10,
    )
    monkeypatch.setattr(tls_client.session, "request", fake_request)

    assert pull(tls_client).transient
    assert seen["timeout"] == (10, 75)
    assert seen["cert"] == ("c.pem", "k.pem") and seen["verify"] == "ca.pem"
    assert seen["allow_redirects"] is False


def test_audit_summary_leaves_the_cdrs_out(hbs, client):
    hbs.post(URL, json=page_body([CDR]))

    audit = pull(client).to_audit()

    json.dumps(audit)  # serialisable
    assert audit["number_of_elements"] == 1 and "records" not in audit and "content" not in json.dumps(audit)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"date_from": datetime(2020, 9, 1), "date_to": TO, "page": 0},  # naive
        {"date_from": TO, "date_to": FROM, "page": 0},  # reversed
        {"date_from": FROM, "date_to": TO, "page": -1},
    ],
)
def test_caller_mistakes_raise_value_error(client, kwargs):
    with pytest.raises(ValueError):
        client.get_charge_detail_records(**kwargs)


def test_request_matches_hubjects_openapi(hbs, client):
    openapi = spec_file("openapi.yaml")  # skips, or fails under CI, when it is missing
    from openapi_core import OpenAPI
    from openapi_core.contrib.requests import RequestsOpenAPIRequest

    hbs.post(URL, json=page_body([]))
    pull(client)
    sent = hbs.calls[0].request
    api = OpenAPI.from_file_path(str(openapi))
    path = urlsplit(sent.url).path.removeprefix("/api/oicp")
    prepared = requests.Request(
        "POST",
        "https://service-qa.hubject.com/api/oicp" + path,
        data=sent.body,
        headers={"Content-Type": "application/json"},
    ).prepare()
    api.validate_request(RequestsOpenAPIRequest(prepared))
