"""HubjectClient.authorize_remote_stop against every answer shape HBS can give (DIGEST §1, §3, §4)."""

import json
import socket
from typing import Any

import pytest
import requests
import responses
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError, ReadTimeoutError
from urllib3.exceptions import SSLError as Urllib3SSLError

from sessions.oicp.client import HubjectClient
from sessions.oicp.ids import remote_stop_violations
from sessions.oicp.outcomes import Outcome
from sessions.oicp.remote_stop import RemoteStopResult
from sessions.stops.presenters.cards import code_meaning

BASE = "https://hbs.example"
URL = f"{BASE}/api/oicp/charging/v21/providers/DE-DCB/authorize-remote/stop"
SESSION_ID = "f98efba4-02d8-4fa0-b810-9a9d50d2c527"
EVSE_ID = "DE*XYZ*ETEST1"
# DIGEST §1, asciidoc 06_EMP_Code_Snippets: the published request and response.
SAMPLE_REQUEST = {
    "CPOPartnerSessionID": "1234XYZ",
    "EMPPartnerSessionID": "2345ABC",
    "EvseID": "DE*XYZ*ETEST1",
    "ProviderID": "DE-DCB",
    "SessionID": "f98efba4-02d8-4fa0-b810-9a9d50d2c527",
}
SAMPLE_RESPONSE = {
    "CPOPartnerSessionID": "1234XYZ",
    "EMPPartnerSessionID": "2345ABC",
    "Result": True,
    "SessionID": "f98efba4-02d8-4fa0-b810-9a9d50d2c527",
    "StatusCode": {"AdditionalInfo": "Success", "Code": "000", "Description": "Success"},
}
# Integration Guide VCP example: explicit JSON nulls.
VCP_RESPONSE = {
    "Result": True,
    "StatusCode": {"Code": "000", "Description": "VCP Remote Stop", "AdditionalInfo": None},
    "SessionID": SESSION_ID,
    "CPOPartnerSessionID": None,
    "EMPPartnerSessionID": None,
}


def ack(code: str, result: bool = False, **status: Any) -> dict[str, Any]:
    return {"Result": result, "StatusCode": {"Code": code, **status}, "SessionID": SESSION_ID}


@pytest.fixture
def hbs():
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def client() -> HubjectClient:
    return HubjectClient(base_url=BASE + "/", provider_id="DE-DCB")


def stop(client: HubjectClient, **kwargs: Any) -> RemoteStopResult:
    return client.authorize_remote_stop(**{"session_id": SESSION_ID, "evse_id": EVSE_ID, **kwargs})


def check_common(result: RemoteStopResult) -> None:
    """Invariants of every result: serialisable audit, consistent finality, sane code."""
    audit = result.to_audit()
    assert json.loads(json.dumps(audit)) == audit
    assert audit["outcome"] == result.outcome.value
    assert result.is_final is (result.outcome != Outcome.TRANSIENT)
    assert result.oicp_code == "" or (len(result.oicp_code) == 3 and result.oicp_code.isdigit())
    assert isinstance(result.elapsed_ms, int) and result.elapsed_ms >= 0
    assert code_meaning(result.playbook).meaning


# --- what we send -------------------------------------------------------------------------------


def test_sends_the_published_sample_request(hbs, client):
    hbs.post(URL, json=SAMPLE_RESPONSE)
    result = stop(
        client,
        cpo_partner_session_id="1234XYZ",
        emp_partner_session_id="2345ABC",
        correlation_id="c0ffee00-0000-4000-8000-000000000001",
    )
    sent = hbs.calls[0].request
    assert sent.method == "POST"
    assert sent.url == URL
    assert json.loads(sent.body) == SAMPLE_REQUEST
    assert remote_stop_violations(json.loads(sent.body)) == []
    assert sent.headers["Content-Type"] == "application/json; charset=UTF-8"
    assert sent.headers["Accept"] == "application/json"
    assert sent.headers["X-Correlation-ID"] == "c0ffee00-0000-4000-8000-000000000001"
    assert result.request["json"] == SAMPLE_REQUEST
    assert result.request["url"] == URL and result.request["method"] == "POST"
    assert result.outcome == Outcome.ACCEPTED
    assert (result.description, result.additional_info) == ("Success", "Success")
    check_common(result)


def test_partner_session_ids_and_correlation_header_only_when_known(hbs, client):
    hbs.post(URL, json=SAMPLE_RESPONSE)
    result = stop(client, cpo_partner_session_id="", emp_partner_session_id="")
    body = json.loads(hbs.calls[0].request.body)
    assert body == {"SessionID": SESSION_ID, "ProviderID": "DE-DCB", "EvseID": EVSE_ID}
    assert remote_stop_violations(body) == []
    assert "X-Correlation-ID" not in hbs.calls[0].request.headers
    assert result.request["json"] == body


def test_provider_id_goes_into_the_path_unencoded(hbs):
    url = f"{BASE}/api/oicp/charging/v21/providers/DE*ICE/authorize-remote/stop"
    hbs.post(url, json=VCP_RESPONSE)
    client = HubjectClient(base_url=BASE, provider_id="DE*ICE")
    result = stop(client, evse_id="DE*ICE*E0000TEST*6")
    assert hbs.calls[0].request.url == url
    body = json.loads(hbs.calls[0].request.body)
    assert body["ProviderID"] == "DE*ICE"
    assert remote_stop_violations(body) == []
    assert result.outcome == Outcome.ACCEPTED


def test_timeout_and_mutual_tls_reach_requests(hbs):
    hbs.post(URL, json=SAMPLE_RESPONSE)
    client = HubjectClient(
        base_url=BASE,
        provider_id="DE-DCB",
        client_cert="/etc/emp/cert.pem",
        client_key="/etc/emp/key.pem",
        ca_bundle="/etc/emp/hubject-ca.pem",
        timeout=75.0,
        connect_timeout=10.0,
    )
    result = stop(client)
    kwargs = hbs.calls[0].request.req_kwargs
    assert kwargs["timeout"] == (10.0, 75.0)
    assert kwargs["cert"] == ("/etc/emp/cert.pem", "/etc/emp/key.pem")
    assert kwargs["verify"] == "/etc/emp/hubject-ca.pem"
    # Nothing secret (not even the key's path) ends up in the audit record.
    assert "key.pem" not in json.dumps(result.to_audit())


class FakeSession:
    """Records the kwargs of Session.request; answers with `answer` or raises it."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls: list[dict[str, Any]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        self.calls.append({"method": method, "url": url, **kwargs})
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


def _response(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers.update(headers or {})
    return response


@pytest.mark.parametrize(
    "cert, key, ca, expected_cert, expected_verify",
    [
        ("/c.pem", "/k.pem", "/ca.pem", ("/c.pem", "/k.pem"), "/ca.pem"),
        ("/combined.pem", "", "", "/combined.pem", True),
        ("", "", "", None, True),
    ],
)
@pytest.mark.parametrize(
    "answer", [_response(200, json.dumps(SAMPLE_RESPONSE).encode()), requests.exceptions.ReadTimeout("slow")]
)
def test_every_call_passes_timeout_tuple_cert_and_verify(cert, key, ca, expected_cert, expected_verify, answer):
    session = FakeSession(answer)
    client = HubjectClient(
        base_url=BASE,
        provider_id="DE-DCB",
        client_cert=cert,
        client_key=key,
        ca_bundle=ca,
        timeout=80.0,
        connect_timeout=5.0,
        session=session,  # type: ignore[arg-type]
    )
    stop(client)
    (call,) = session.calls
    assert call["method"] == "POST" and call["url"] == URL
    assert call["timeout"] == (5.0, 80.0)
    assert call["cert"] == expected_cert
    assert call["verify"] == expected_verify
    assert call["allow_redirects"] is False


def test_default_session_makes_no_transport_retries(client):
    assert client.session.get_adapter(URL).max_retries.total == 0


# --- answers with an eRoamingAcknowledgement ------------------------------------------------------


def test_success_with_explicit_nulls_keeps_process_id(hbs, client):
    hbs.post(URL, json=VCP_RESPONSE, headers={"Process-ID": "proc-123"})
    result = stop(client)
    assert result.outcome == Outcome.ACCEPTED
    assert result.is_final
    assert (result.http_status, result.oicp_code) == (200, "000")
    assert (result.description, result.additional_info) == ("VCP Remote Stop", "")
    assert result.process_id == "proc-123"
    assert (result.failure_kind, result.error) == ("", "")
    assert result.request_sent is True
    assert result.response is not None
    assert result.response["status"] == 200
    assert result.response["headers"]["Process-ID"] == "proc-123"
    assert result.response["body"] == VCP_RESPONSE
    assert result.to_audit()["process_id"] == "proc-123"
    check_common(result)


@pytest.mark.parametrize(
    "code, outcome",
    [
        ("400", Outcome.REJECTED),
        ("310", Outcome.TRANSIENT),
        ("501", Outcome.REJECTED),
        ("510", Outcome.REJECTED),
        ("022", Outcome.REJECTED),
        ("017", Outcome.REJECTED),
        ("320", Outcome.TRANSIENT),
        ("999", Outcome.REJECTED),  # not in the table: not known to be retryable
    ],
)
def test_result_false_is_classified_by_code(hbs, client, code, outcome):
    hbs.post(URL, json=ack(code, Description=None, AdditionalInfo="details"), headers={"Process-ID": "p-1"})
    result = stop(client)
    assert result.outcome == outcome
    assert result.oicp_code == code
    assert result.http_status == 200
    assert result.failure_kind == ""
    assert code in result.error
    assert result.additional_info == "details"
    assert result.process_id == "p-1"
    if code == "400":
        assert result.description == "Session is invalid."  # Hubject's wording when it sends none
        assert "CDR" in code_meaning(result.playbook).next_step
    check_common(result)


@pytest.mark.parametrize("code, outcome", [("400", Outcome.REJECTED), ("310", Outcome.TRANSIENT)])
def test_result_true_with_a_failure_code_is_not_accepted(hbs, client, code, outcome):
    hbs.post(URL, json=ack(code, result=True, Description="x"))
    result = stop(client)
    assert result.outcome == outcome
    assert result.oicp_code == code
    assert "contradicts" in result.error
    check_common(result)


def test_result_false_with_success_code_is_unreadable(hbs, client):
    hbs.post(URL, json=ack("000", Description="Success"))
    result = stop(client)
    assert (result.outcome, result.failure_kind, result.oicp_code) == (Outcome.TRANSIENT, "unreadable", "")
    check_common(result)


@pytest.mark.parametrize(
    "body",
    [
        {"Result": True, "StatusCode": {"Code": 0}},
        {"Result": False, "StatusCode": {"Code": 400, "Description": "Session is invalid"}},
        {"Result": True, "StatusCode": {"Code": "0"}},
        {"Result": True, "StatusCode": {"Code": None}},
        {"Result": True, "StatusCode": None},
        {"Result": True},
        {"StatusCode": {"Code": "000"}},
        {"Result": "true", "StatusCode": {"Code": "000"}},
        {"foo": 1},
        [SAMPLE_RESPONSE],
        "000",
        None,
    ],
)
def test_malformed_acknowledgement_is_unreadable_and_retryable(hbs, client, body):
    hbs.post(URL, body=json.dumps(body), content_type="application/json", headers={"Process-ID": "p-2"})
    result = stop(client)
    assert (result.outcome, result.failure_kind, result.oicp_code) == (Outcome.TRANSIENT, "unreadable", "")
    assert result.http_status == 200
    assert result.process_id == "p-2"
    assert result.response is not None and result.response["body"] == body
    assert result.error
    check_common(result)


@pytest.mark.parametrize(
    "status, body, content_type",
    [
        (200, "", "application/json"),
        (200, "OK", "text/plain"),
        (200, "<html><body>Maintenance</body></html>", "text/html"),
        (201, "", "text/plain"),
    ],
)
def test_non_json_success_status_is_unreadable(hbs, client, status, body, content_type):
    hbs.post(URL, status=status, body=body, content_type=content_type, headers={"Process-ID": "p-3"})
    result = stop(client)
    assert (result.outcome, result.failure_kind) == (Outcome.TRANSIENT, "unreadable")
    assert result.http_status == status
    assert result.process_id == "p-3"
    assert result.response is not None and result.response["body"] == body
    check_common(result)


def test_long_texts_are_truncated(hbs, client):
    hbs.post(URL, json=ack("501", Description="d" * 500, AdditionalInfo="a" * 5000))
    result = stop(client)
    assert (len(result.description), len(result.additional_info)) == (200, 1000)


def test_raw_body_is_truncated(hbs, client):
    hbs.post(URL, status=503, body="<html>" + "x" * 10000, content_type="text/html")
    result = stop(client)
    assert result.response is not None and len(result.response["body"]) == 4000


# --- HTTP errors ------------------------------------------------------------------------------------


def test_validation_fault_lists_the_fields(hbs, client):
    fault = {
        "message": "Validation failed",
        "extendedInfo": "2 errors",
        "validationErrors": [
            {"fieldReference": "SessionID", "errorMessage": "must match pattern"},
            {"fieldReference": "EvseID", "errorMessage": None},
        ],
    }
    hbs.post(URL, status=400, json=fault, headers={"Process-ID": "p-4"})
    result = stop(client)
    assert (result.outcome, result.failure_kind, result.http_status) == (Outcome.REJECTED, "validation", 400)
    assert "SessionID" in result.error and "EvseID" in result.error
    assert result.oicp_code == ""  # HTTP 400 is not OICP code 400
    assert (result.description, result.additional_info) == ("Validation failed", "2 errors")
    assert result.process_id == "p-4"
    check_common(result)


def test_tls_error_page_on_400_is_tls(hbs, client):
    hbs.post(URL, status=400, body="<html>400 Bad Request: The SSL certificate error</html>", content_type="text/html")
    result = stop(client)
    assert (result.outcome, result.failure_kind) == (Outcome.REJECTED, "tls")


@pytest.mark.parametrize(
    "status, body, kind, code",
    [
        (
            401,
            {"StatusCode": {"Code": "017", "Description": "Unauthorized Access."}, "message": "no"},
            "unauthorized",
            "017",
        ),
        (401, {"StatusCode": None, "message": "Call not authorized"}, "unauthorized", ""),
        (404, {"StatusCode": {"Code": "300", "Description": None}, "message": "Data not found"}, "http_error", "300"),
        (404, {"message": "Data not found"}, "http_error", ""),
    ],
)
def test_oicp_fault_is_rejected_with_its_code(hbs, client, status, body, kind, code):
    hbs.post(URL, status=status, json=body, headers={"Process-ID": "p-5"})
    result = stop(client)
    assert (result.outcome, result.failure_kind, result.oicp_code) == (Outcome.REJECTED, kind, code)
    assert result.http_status == status
    assert result.process_id == "p-5"
    if code == "017":
        assert result.playbook.code == "017"
    check_common(result)


def test_403_with_empty_body(hbs, client):
    hbs.post(URL, status=403, body="")
    result = stop(client)
    assert (result.outcome, result.failure_kind, result.http_status) == (Outcome.REJECTED, "unauthorized", 403)
    assert result.response is not None and result.response["body"] == ""
    check_common(result)


def test_500_fault_body_is_transient(hbs, client):
    hbs.post(URL, status=500, json={"message": "Processing error", "extendedInfo": None, "validationErrors": None})
    result = stop(client)
    assert (result.outcome, result.failure_kind) == (Outcome.TRANSIENT, "http_error")
    assert result.description == "Processing error"
    check_common(result)


@pytest.mark.parametrize("status", [502, 503, 504, 429, 408])
def test_gateway_and_throttling_errors_are_transient(hbs, client, status):
    hbs.post(
        URL,
        status=status,
        body="<html><h1>Service Unavailable</h1></html>",
        content_type="text/html",
        headers={"Process-ID": "p-6"},
    )
    result = stop(client)
    assert (result.outcome, result.failure_kind, result.http_status) == (Outcome.TRANSIENT, "http_error", status)
    assert result.process_id == "p-6"
    assert result.response is not None and "Service Unavailable" in result.response["body"]
    check_common(result)


@pytest.mark.parametrize("status", [405, 409, 415, 422])
def test_other_client_errors_are_rejected(hbs, client, status):
    hbs.post(URL, status=status, body="")
    result = stop(client)
    assert (result.outcome, result.failure_kind) == (Outcome.REJECTED, "http_error")


def test_redirect_is_not_followed(hbs, client):
    hbs.post(URL, status=302, headers={"Location": "https://elsewhere.example/"})
    result = stop(client)
    assert len(hbs.calls) == 1
    assert (result.outcome, result.failure_kind) == (Outcome.REJECTED, "http_error")
    assert "elsewhere.example" in result.error


# --- no answer at all ---------------------------------------------------------------------------------


def _wrapped(reason: Exception) -> MaxRetryError:
    """How urllib3 reports a connect-phase failure (refused, DNS, TLS handshake) to requests."""
    return MaxRetryError(None, URL, reason)  # type: ignore[arg-type]


_REFUSED = NewConnectionError(None, "Failed to establish a new connection: Connection refused")  # type: ignore[arg-type]
_RESET = ProtocolError("Connection aborted.", ConnectionResetError(104, "Connection reset by peer"))
# A read timeout while streaming the body surfaces as ConnectionError(ReadTimeoutError).
_BODY_TIMEOUT = ReadTimeoutError(None, URL, "Read timed out.")  # type: ignore[arg-type]
_HANDSHAKE = Urllib3SSLError("CERTIFICATE_VERIFY_FAILED")


@pytest.mark.parametrize(
    "exc, outcome, kind, sent",
    [
        (requests.ConnectionError(_wrapped(_REFUSED)), Outcome.TRANSIENT, "connection", False),
        (requests.exceptions.ConnectTimeout("connect timed out"), Outcome.TRANSIENT, "connection", False),
        (requests.exceptions.ReadTimeout("read timed out"), Outcome.TRANSIENT, "timeout", True),
        (requests.ConnectionError(_BODY_TIMEOUT), Outcome.TRANSIENT, "timeout", True),
        (requests.ConnectionError(_RESET), Outcome.TRANSIENT, "connection", True),
        (requests.exceptions.ChunkedEncodingError("broken chunk"), Outcome.TRANSIENT, "connection", True),
        (requests.ConnectionError("unknown cause"), Outcome.TRANSIENT, "connection", True),
        (requests.exceptions.SSLError(_wrapped(_HANDSHAKE)), Outcome.REJECTED, "tls", False),
        (requests.exceptions.SSLError("bad record mac"), Outcome.REJECTED, "tls", True),
        (OSError("Could not find the TLS key file, invalid path: /k.pem"), Outcome.REJECTED, "tls", False),
    ],
)
def test_transport_failures(hbs, client, exc, outcome, kind, sent):
    hbs.post(URL, body=exc)
    result = stop(client)
    assert (result.outcome, result.failure_kind, result.request_sent) == (outcome, kind, sent)
    assert result.http_status is None and result.response is None
    assert result.oicp_code == "" and result.error
    assert result.request["json"]["SessionID"] == SESSION_ID
    check_common(result)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_real_connection_refused_is_known_not_sent():
    client = HubjectClient(base_url=f"http://127.0.0.1:{_free_port()}", provider_id="DE-DCB", connect_timeout=2)
    result = stop(client)
    assert (result.outcome, result.failure_kind, result.request_sent) == (Outcome.TRANSIENT, "connection", False)


def test_real_read_timeout_means_outcome_unknown():
    with socket.socket() as server:  # accepts connections (backlog) but never answers
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        client = HubjectClient(base_url=f"http://127.0.0.1:{port}", provider_id="DE-DCB", timeout=0.3)
        result = stop(client)
    assert (result.outcome, result.failure_kind, result.request_sent) == (Outcome.TRANSIENT, "timeout", True)


def test_real_missing_ca_bundle_is_a_tls_problem():
    client = HubjectClient(
        base_url=f"https://127.0.0.1:{_free_port()}", provider_id="DE-DCB", ca_bundle="/nonexistent/ca.pem"
    )
    result = stop(client)
    assert (result.outcome, result.failure_kind, result.request_sent) == (Outcome.REJECTED, "tls", False)


def test_invalid_base_url_is_rejected_not_raised():
    result = stop(HubjectClient(base_url="", provider_id="DE-DCB"))
    assert (result.outcome, result.failure_kind, result.request_sent) == (Outcome.REJECTED, "connection", False)


# --- configuration ---------------------------------------------------------------------------------------


def test_from_settings(request):
    if not request.config.pluginmanager.hasplugin("django"):
        pytest.skip("needs pytest-django")
    settings = request.getfixturevalue("settings")
    settings.OICP_BASE_URL = "https://service-qa.hubject.com"
    settings.OICP_PROVIDER_ID = "DE*ICE"
    settings.OICP_CLIENT_CERT = "/run/secrets/cert.pem"
    settings.OICP_CLIENT_KEY = "/run/secrets/key.pem"
    settings.OICP_CA_BUNDLE = "/run/secrets/ca.pem"
    settings.OICP_TIMEOUT_SECONDS = 75.0
    settings.OICP_CONNECT_TIMEOUT_SECONDS = 10.0
    client = HubjectClient.from_settings()
    assert client.stop_url() == (
        "https://service-qa.hubject.com/api/oicp/charging/v21/providers/DE*ICE/authorize-remote/stop"
    )
    assert client.provider_id == "DE*ICE"
    assert client.cert == ("/run/secrets/cert.pem", "/run/secrets/key.pem")
    assert client.verify == "/run/secrets/ca.pem"
    assert client.timeout == (10.0, 75.0)
