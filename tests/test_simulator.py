"""The Hubject HBS simulator (sessions.oicp.simulator): answers, behaviours, validation, control API, CLI.

No database and no Django: each test talks HTTP to a simulator serving on an ephemeral loopback port.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from sessions.oicp.simulator import (
    DEMO_BEHAVIOURS,
    DEMO_OPERATORS,
    BehaviourError,
    BehaviourTable,
    SimulatorServer,
    make_server,
    serve_in_thread,
)
from sessions.oicp.status_codes import HUBJECT_DESCRIPTIONS

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SESSION_ID = "f98efba4-02d8-4fa0-b810-9a9d50d2c527"
# The published sample request (DIGEST §1): what the portal sends.
SAMPLE = {
    "CPOPartnerSessionID": "1234XYZ",
    "EMPPartnerSessionID": "2345ABC",
    "EvseID": "DE*XYZ*ETEST1",
    "ProviderID": "DE-DCB",
    "SessionID": SESSION_ID,
}


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    server = make_server(port=0)
    thread = serve_in_thread(server)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)


def stop_url(sim: SimulatorServer, external_id: str = "DE-DCB") -> str:
    return f"{sim.url}/api/oicp/charging/v21/providers/{external_id}/authorize-remote/stop"


def body(**overrides: Any) -> dict[str, Any]:
    data = dict(SAMPLE, **overrides)
    return {k: v for k, v in data.items() if v is not None}


def post(sim: SimulatorServer, payload: Any, external_id: str = "DE-DCB", **kwargs: Any) -> requests.Response:
    kwargs.setdefault("timeout", 5)
    return requests.post(stop_url(sim, external_id), json=payload, **kwargs)


def configure(sim: SimulatorServer, table: dict[str, Any], method: str = "PUT") -> requests.Response:
    return requests.request(method, f"{sim.url}/_sim/behaviours", json=table, timeout=5)


def set_default(sim: SimulatorServer, behaviour: dict[str, Any]) -> None:
    response = configure(sim, {"default": behaviour})
    assert response.status_code == 200, response.text


def received(sim: SimulatorServer, **params: str) -> list[dict[str, Any]]:
    return requests.get(f"{sim.url}/_sim/received", params=params, timeout=5).json()


# ---- accept


def test_portal_sample_is_accepted_with_hbs_acknowledgement_shape(sim: SimulatorServer) -> None:
    response = post(sim, SAMPLE)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert len(response.headers["Process-ID"]) == 36
    assert response.json() == {
        "Result": True,
        "StatusCode": {"Code": "000", "Description": HUBJECT_DESCRIPTIONS["000"], "AdditionalInfo": None},
        "SessionID": SESSION_ID,
        "CPOPartnerSessionID": "1234XYZ",
        "EMPPartnerSessionID": "2345ABC",
    }
    [entry] = received(sim)
    assert entry["violations"] == []
    assert entry["answered_status"] == 200


def test_absent_partner_session_ids_are_echoed_as_explicit_nulls(sim: SimulatorServer) -> None:
    response = post(sim, body(CPOPartnerSessionID=None, EMPPartnerSessionID=None))

    ack = response.json()
    assert "CPOPartnerSessionID" in ack and ack["CPOPartnerSessionID"] is None
    assert "EMPPartnerSessionID" in ack and ack["EMPPartnerSessionID"] is None


def test_process_id_is_fresh_per_answer_even_on_a_kept_alive_connection(sim: SimulatorServer) -> None:
    with requests.Session() as http:
        first, second = (http.post(stop_url(sim), json=SAMPLE, timeout=5) for _ in range(2))
    assert first.headers["Process-ID"] != second.headers["Process-ID"]


# ---- reject codes


@pytest.mark.parametrize("code", ["400", "310", "501", "510", "022", "017", "603"])
def test_reject_answers_200_with_result_false_and_code(sim: SimulatorServer, code: str) -> None:
    set_default(sim, {"action": "reject", "code": code})

    response = post(sim, SAMPLE)

    assert response.status_code == 200
    ack = response.json()
    assert ack["Result"] is False
    assert ack["StatusCode"]["Code"] == code
    assert ack["StatusCode"]["Description"] == HUBJECT_DESCRIPTIONS[code]
    assert ack["SessionID"] == SESSION_ID


# ---- lookup order


def test_evse_beats_operator_beats_default(sim: SimulatorServer) -> None:
    response = configure(
        sim,
        {
            "default": {"action": "reject", "code": "022"},
            "operators": {"DE*SLO": {"action": "reject", "code": "501"}},
            "evses": {"De*Slo*E0001": {"action": "reject", "code": "510"}},
        },
    )
    assert response.status_code == 200, response.text

    def code_for(evse_id: str) -> str:
        return post(sim, body(EvseID=evse_id)).json()["StatusCode"]["Code"]

    assert code_for("DE*SLO*E0001") == "510"
    assert code_for("de*slo*E0001") == "510"  # HBS upper-cases EvseIDs
    assert code_for("DE*SLO*E0002") == "501"
    assert code_for("DESLOE0003") == "501"  # the ISO "*" is optional: same operator
    assert code_for("DE*XYZ*E0001") == "022"
    matched = [e["matched_by"] for e in received(sim)]
    assert matched == ["evse:DE*SLO*E0001", "evse:DE*SLO*E0001", "operator:DE*SLO", "operator:DE*SLO", "default"]


# ---- delays and HTTP-level failures


def test_delay_answers_after_the_delay_without_blocking_others(sim: SimulatorServer) -> None:
    configure(sim, {"evses": {"DE*SLO*E1": {"action": "accept", "delay_seconds": 0.3}}})

    started = time.monotonic()
    slow = post(sim, body(EvseID="DE*SLO*E1"))
    elapsed = time.monotonic() - started

    assert elapsed >= 0.3
    assert slow.json()["Result"] is True


def test_delay_does_not_block_other_requests(sim: SimulatorServer) -> None:
    configure(sim, {"evses": {"DE*SLO*E1": {"action": "accept", "delay_seconds": 2}}})
    with pytest.raises(requests.ReadTimeout):
        post(sim, body(EvseID="DE*SLO*E1"), timeout=0.2)  # leaves a request waiting on the server

    started = time.monotonic()
    assert post(sim, SAMPLE).status_code == 200
    assert time.monotonic() - started < 0.5


def test_http_error_500_is_fault_body(sim: SimulatorServer) -> None:
    set_default(sim, {"action": "http_error", "http_status": 500})

    response = post(sim, SAMPLE)

    assert response.status_code == 500
    assert response.headers["Content-Type"] == "application/json;charset=UTF-8"
    fault = response.json()
    assert fault["message"] == "Processing error"
    assert set(fault) == {"message", "extendedInfo", "validationErrors"}


def test_http_error_401_is_oicp_fault(sim: SimulatorServer) -> None:
    set_default(sim, {"action": "http_error", "http_status": 401})

    response = post(sim, SAMPLE)

    assert response.status_code == 401
    fault = response.json()
    assert fault["message"] == "Call not authorized"
    assert fault["StatusCode"]["Code"] == "017"


def test_http_error_404_is_oicp_fault(sim: SimulatorServer) -> None:
    set_default(sim, {"action": "http_error", "http_status": 404})

    response = post(sim, SAMPLE)

    assert response.status_code == 404
    assert response.json()["message"] == "Data not found"


def test_http_error_403_has_empty_body(sim: SimulatorServer) -> None:
    set_default(sim, {"action": "http_error", "http_status": 403})

    response = post(sim, SAMPLE)

    assert response.status_code == 403
    assert response.content == b""
    assert "Process-ID" in response.headers


@pytest.mark.parametrize("status", [502, 503, 504])
def test_http_error_gateway_statuses_are_nginx_html(sim: SimulatorServer, status: int) -> None:
    set_default(sim, {"action": "http_error", "http_status": status})

    response = post(sim, SAMPLE)

    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("text/html")
    assert f"<h1>{status} " in response.text and "nginx" in response.text


def test_html_error_defaults_to_502_and_can_be_200(sim: SimulatorServer) -> None:
    set_default(sim, {"action": "html_error"})
    response = post(sim, SAMPLE)
    assert response.status_code == 502
    assert "<html>" in response.text

    set_default(sim, {"action": "html_error", "http_status": 200})
    response = post(sim, SAMPLE)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    with pytest.raises(ValueError):
        response.json()


def test_non_json_answer(sim: SimulatorServer) -> None:
    set_default(sim, {"action": "non_json"})

    response = post(sim, SAMPLE)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    with pytest.raises(ValueError):
        response.json()


def test_wrong_shape_answer(sim: SimulatorServer) -> None:
    set_default(sim, {"action": "wrong_shape"})

    response = post(sim, SAMPLE)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_no_answer_makes_the_client_time_out(sim: SimulatorServer) -> None:
    set_default(sim, {"action": "no_answer"})

    with pytest.raises(requests.ReadTimeout):
        post(sim, SAMPLE, timeout=0.5)

    [entry] = received(sim)
    assert entry["body"]["SessionID"] == SESSION_ID  # the request was read
    assert entry["answered_status"] is None


def test_no_answer_closes_without_response_after_delay(sim: SimulatorServer) -> None:
    set_default(sim, {"action": "no_answer", "delay_seconds": 0.2})

    with pytest.raises(requests.ConnectionError):
        post(sim, SAMPLE, timeout=3)

    time.sleep(0.05)
    [entry] = received(sim)
    assert entry["outcome"] == "no_answer"
    assert entry["answered_status"] is None


def test_shutdown_ends_a_held_request_promptly() -> None:
    server = make_server(port=0, behaviours={"default": {"action": "no_answer"}})
    thread = serve_in_thread(server)
    raw = json.dumps(SAMPLE).encode()
    with socket.create_connection(server.server_address[:2], timeout=3) as client:
        client.sendall(
            b"POST /api/oicp/charging/v21/providers/DE-DCB/authorize-remote/stop HTTP/1.1\r\n"
            b"Host: sim\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(raw)}\r\n\r\n".encode()
            + raw
        )
        time.sleep(0.1)  # let the server read the request and start holding it
        started = time.monotonic()
        server.shutdown()
        assert client.recv(1024) == b""  # closed without an answer
        assert time.monotonic() - started < 1
    server.server_close()
    thread.join(timeout=2)
    assert server.state.received_list()[0]["outcome"] == "shutdown"


def test_reset_gives_connection_error(sim: SimulatorServer) -> None:
    set_default(sim, {"action": "reset"})

    with pytest.raises(requests.ConnectionError) as excinfo:
        post(sim, SAMPLE)

    assert "reset" in str(excinfo.value).lower() or "aborted" in str(excinfo.value).lower()
    [entry] = received(sim)
    assert entry["outcome"] == "reset"


# ---- validation (HTTP 400 FaultBody)


def assert_validation_error(response: requests.Response, field: str) -> dict[str, Any]:
    assert response.status_code == 400
    fault = response.json()
    assert fault["message"] == "Validation error"
    assert field in [e["fieldReference"] for e in fault["validationErrors"]], fault
    return fault


def test_bad_evse_id_is_a_validation_error(sim: SimulatorServer) -> None:
    assert_validation_error(post(sim, body(EvseID="DE*ICE*I01000*6")), "EvseID")


def test_missing_session_id_is_a_validation_error(sim: SimulatorServer) -> None:
    fault = assert_validation_error(post(sim, body(SessionID=None)), "SessionID")
    assert "mandatory" in fault["validationErrors"][0]["errorMessage"]


def test_path_and_body_provider_mismatch_is_a_validation_error(sim: SimulatorServer) -> None:
    assert_validation_error(post(sim, SAMPLE, external_id="DE-XXX"), "ProviderID")
    assert post(sim, SAMPLE, external_id="de-dcb").status_code == 200  # case-insensitive


def test_non_json_body_is_a_validation_error(sim: SimulatorServer) -> None:
    response = requests.post(
        stop_url(sim), data=b"SessionID=1", headers={"Content-Type": "application/json"}, timeout=5
    )
    assert_validation_error(response, "body")


def test_wrong_content_type_is_a_validation_error(sim: SimulatorServer) -> None:
    response = requests.post(
        stop_url(sim), data=json.dumps(SAMPLE), headers={"Content-Type": "text/plain"}, timeout=5
    )
    assert_validation_error(response, "Content-Type")


def test_json_array_is_a_validation_error(sim: SimulatorServer) -> None:
    assert_validation_error(post(sim, [SAMPLE]), "body")


def test_oversized_body_is_refused_with_413(sim: SimulatorServer) -> None:
    response = post(sim, body(CPOPartnerSessionID="x" * (65 * 1024)))

    assert response.status_code == 413
    [entry] = received(sim)
    assert entry["answered_status"] == 413
    assert entry["violations"][0].startswith("body:")


def test_unknown_path_is_hbs_404_fault(sim: SimulatorServer) -> None:
    response = requests.post(f"{sim.url}/api/oicp/charging/v21/providers/DE-DCB/authorize-remote/halt", json=SAMPLE, timeout=5)

    assert response.status_code == 404
    assert response.json()["StatusCode"]["Code"] == "300"
    assert response.json()["message"] == "Data not found"


# ---- received log


def test_received_log_records_violations_and_filters(sim: SimulatorServer) -> None:
    other_session = "b2688855-7f00-0002-6d8e-48d883f6abb6"
    post(sim, SAMPLE, headers={"X-Correlation-ID": "corr-1"})
    post(sim, body(EvseID="DE*ABC*E9", SessionID=other_session))
    post(sim, body(EvseID="not an evse"))

    entries = received(sim)
    assert [e["seq"] for e in entries] == [1, 2, 3]
    first = entries[0]
    assert first["method"] == "POST"
    assert first["path"].endswith("/providers/DE-DCB/authorize-remote/stop")
    assert first["headers"] == {"content-type": "application/json", "x-correlation-id": "corr-1"}
    assert json.loads(first["body_text"]) == SAMPLE
    assert first["body"] == SAMPLE
    assert first["behaviour"]["action"] == "accept"
    assert first["received_at"].endswith("+00:00")
    assert first["answered_at"] is not None
    assert entries[2]["violations"] and entries[2]["violations"][0].startswith("EvseID:")
    assert entries[2]["answered_status"] == 400
    assert entries[2]["behaviour"] is None

    assert [e["seq"] for e in received(sim, evse_id="de*abc*e9")] == [2]
    assert [e["seq"] for e in received(sim, session_id=SESSION_ID)] == [1, 3]

    assert requests.delete(f"{sim.url}/_sim/received", timeout=5).json() == {"cleared": 3}
    assert received(sim) == []


def test_received_log_keeps_at_most_max_entries() -> None:
    server = make_server(port=0)
    server.state.received = type(server.state.received)(maxlen=3)  # the real cap is 10,000
    for _ in range(5):
        server.state.record({"body": None})
    assert [e["seq"] for e in server.state.received_list()] == [3, 4, 5]
    server.server_close()


# ---- control API


def test_health_and_default_behaviours(sim: SimulatorServer) -> None:
    assert requests.get(f"{sim.url}/_sim/health", timeout=5).json() == {"ok": True}
    table = requests.get(f"{sim.url}/_sim/behaviours", timeout=5).json()
    assert table["default"]["action"] == "accept"
    assert table["operators"] == {} and table["evses"] == {}


@pytest.mark.parametrize(
    "table",
    [
        {"default": {"action": "explode"}},
        {"default": {"action": "reject", "code": 400}},  # codes are strings
        {"default": {"action": "reject", "code": "999"}},
        {"default": {"action": "http_error", "http_status": 418}},
        {"default": {"action": "accept", "delay_seconds": -1}},
        {"operators": {"DE-ABC": {"action": "accept"}}},  # "-" is not valid in an OperatorID
        {"evses": {"nope": {"action": "accept"}}},
        {"defaults": {"action": "accept"}},
        [],
    ],
)
def test_put_invalid_behaviours_is_400_with_message(sim: SimulatorServer, table: Any) -> None:
    response = configure(sim, table)

    assert response.status_code == 400
    assert response.json()["error"]
    assert requests.get(f"{sim.url}/_sim/behaviours", timeout=5).json()["default"]["action"] == "accept"


def test_put_replaces_and_patch_merges(sim: SimulatorServer) -> None:
    configure(sim, {"operators": {"DE*ACC": {"action": "accept"}, "DE*OFF": {"action": "reject", "code": "501"}}})
    configure(sim, {"operators": {"DE*DWN": {"action": "no_answer"}, "DE*ACC": None}}, method="PATCH")
    table = requests.get(f"{sim.url}/_sim/behaviours", timeout=5).json()
    assert set(table["operators"]) == {"DE*OFF", "DE*DWN"}
    assert table["operators"]["DE*DWN"]["delay_seconds"] == 600

    configure(sim, {"evses": {"DE*ACC*E1": {"action": "reset"}}})
    table = requests.get(f"{sim.url}/_sim/behaviours", timeout=5).json()
    assert table["operators"] == {} and list(table["evses"]) == ["DE*ACC*E1"]


def test_demo_operators_and_behaviours() -> None:
    table = BehaviourTable.from_json(DEMO_BEHAVIOURS)
    assert {op["operator_id"] for op in DEMO_OPERATORS} == set(table.operators)
    assert all(op["name"] and op["summary"] for op in DEMO_OPERATORS)
    assert table.lookup("DE*SLO*E1")[0]["delay_seconds"] == 8
    assert table.lookup("DE*OFF*E1")[0]["code"] == "501"
    assert table.lookup("AT*RJX*E1")[0]["code"] == "400"
    assert table.lookup("DE*DWN*E1")[0]["action"] == "no_answer"
    assert table.lookup("FR*ERR*E1")[0]["http_status"] == 503
    with pytest.raises(BehaviourError):
        BehaviourTable.from_json({"default": {"action": "reject", "code": "000"}})


# ---- CLI


def test_config_file_is_loaded_and_bad_config_refused(tmp_path: Path) -> None:
    from sessions.oicp.simulator import _load_table, _parse_args, main

    good = tmp_path / "good.json"
    good.write_text(json.dumps({"operators": {"DE*OFF": {"action": "reject", "code": "310"}}}))
    assert _load_table(_parse_args(["--config", str(good)])).lookup("DE*OFF*E1")[0]["code"] == "310"
    merged = _load_table(_parse_args(["--demo", "--config", str(good)]))
    assert merged.lookup("DE*OFF*E1")[0]["code"] == "310" and merged.lookup("DE*SLO*E1")[0]["delay_seconds"] == 8

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"default": {"action": "teleport"}}))
    assert main(["--config", str(bad), "--port", "0"]) == 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_cli_prints_ready_line_serves_and_stops_on_sigterm() -> None:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    env.pop("DJANGO_SETTINGS_MODULE", None)  # it must not need Django
    process = subprocess.Popen(
        [sys.executable, "-m", "sessions.oicp.simulator", "--port", str(port), "--demo", "--quiet"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        assert line.strip() == f"Hubject simulator listening on http://127.0.0.1:{port}"
        table = requests.get(f"http://127.0.0.1:{port}/_sim/behaviours", timeout=5).json()
        assert table["operators"]["DE*OFF"]["code"] == "501"

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_refuses_non_loopback_host() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sessions.oicp.simulator", "--host", "0.0.0.0", "--port", "0"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 2
    assert "non-loopback" in result.stderr
