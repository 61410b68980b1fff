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
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

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
from tests.spec_files import spec_file

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
    """A simulator that issued the sample's session, as HBS did for the portal's RemoteStart."""
    server = make_server(port=0)
    server.cpo.add_sessions([{"SessionID": SESSION_ID, "EvseID": SAMPLE["EvseID"]}])
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
            b"Host: sim\r\nContent-Type: application/json\r\n" + f"Content-Length: {len(raw)}\r\n\r\n".encode() + raw
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
    response = requests.post(stop_url(sim), data=json.dumps(SAMPLE), headers={"Content-Type": "text/plain"}, timeout=5)
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
    response = requests.post(
        f"{sim.url}/api/oicp/charging/v21/providers/DE-DCB/authorize-remote/halt", json=SAMPLE, timeout=5
    )

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
    from sessions.oicp.simulator.cli import load_table, main, parse_args

    good = tmp_path / "good.json"
    good.write_text(json.dumps({"operators": {"DE*OFF": {"action": "reject", "code": "310"}}}))
    assert load_table(parse_args(["--config", str(good)])).lookup("DE*OFF*E1")[0]["code"] == "310"
    merged = load_table(parse_args(["--demo", "--config", str(good)]))
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


# ---- the CPOs behind HBS: pushes to the portal, the CDR store, GetChargeDetailRecords

import re  # noqa: E402
import threading  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402

from sessions.oicp import inbound  # noqa: E402

# DIGEST §6
EVCO_ID = re.compile(
    r"^(([A-Za-z]{2}\-?[A-Za-z0-9]{3}\-?C[A-Za-z0-9]{8}\-?[\d|A-Za-z])|"
    r"([A-Za-z]{2}[\*|\-]?[A-Za-z0-9]{3}[\*|\-]?[A-Za-z0-9]{6}[\*|\-]?[\d|X]))$"
)
OFFSET = re.compile(r"(Z|[+-]\d{2}:\d{2})$")
NOTIFICATIONS = "/api/oicp/notificationmgmt/v11/charging-notifications"


class Receiver:
    """A tiny portal stand-in on loopback: records every POST and answers an acknowledgement."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append(
                        {
                            "path": self.path,
                            "raw": raw,
                            "body": json.loads(raw),
                            "content_type": self.headers.get("Content-Type"),
                            "at": time.monotonic(),
                        }
                    )
                    status = receiver.status
                answer = json.dumps(
                    {"Result": status == 200, "StatusCode": {"Code": "000" if status == 200 else "022"}}
                )
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def of(self, kind: str, session_id: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            found = [
                r
                for r in self.requests
                if (r["body"].get("Type") or "CDR") == kind
                or (kind == "CDR" and "charge-detail-record" in r["path"] and "Type" not in r["body"])
            ]
        if kind == "CDR":
            found = [r for r in found if "charge-detail-record" in r["path"]]
        return [r for r in found if session_id is None or r["body"].get("SessionID") == session_id]

    def wait_for(self, kind: str, session_id: str | None = None, count: int = 1, timeout: float = 5) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.of(kind, session_id)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"no {kind} push for {session_id} within {timeout}s: {self.requests}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def portal() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def start_cpo_sim(portal_url: str, **options: Any) -> SimulatorServer:
    options = {
        "push_delay_seconds": 0.2,
        "cdr_delay_seconds": 0.1,
        "progress_interval_seconds": 0,
        "push_backoff_seconds": 0.05,
        "seed": 7,
        **options,
    }
    server = make_server(port=0, portal_url=portal_url, **options)
    serve_in_thread(server)
    return server


@pytest.fixture
def cpo_sim(portal: Receiver) -> Iterator[SimulatorServer]:
    server = start_cpo_sim(portal.url)
    yield server
    server.shutdown()
    server.server_close()


def demo_session(session_id: str = SESSION_ID, evse_id: str = "DE*ACC*E0001*1", **extra: Any) -> dict[str, Any]:
    return {
        "SessionID": session_id,
        "EvseID": evse_id,
        "OperatorID": evse_id.split("*E")[0],
        "EMPPartnerSessionID": "EMP-1",
        "CPOPartnerSessionID": "CPO-1",
        "ChargingStart": "2026-01-05T10:00:00+01:00",
        **extra,
    }


def stop_body(session_id: str = SESSION_ID, evse_id: str = "DE*ACC*E0001*1") -> dict[str, Any]:
    return {"SessionID": session_id, "ProviderID": "DE-DCB", "EvseID": evse_id, "EMPPartnerSessionID": "EMP-1"}


def assert_valid_oicp(push: dict[str, Any]) -> None:
    """What the portal's own inbound parser accepts, plus the message rules the brief names."""
    if "charge-detail-record" in push["path"]:
        _, message = inbound.parse_charge_detail_record(push["raw"])
        timestamps = ("ChargingStart", "ChargingEnd", "SessionStart", "SessionEnd")
    else:
        _, message = inbound.parse_charging_notification(push["raw"])
        timestamps = [
            k
            for k in ("ChargingStart", "ChargingEnd", "SessionStart", "SessionEnd", "EventOccurred")
            if k in push["body"]
        ]
    body = push["body"]
    assert push["content_type"].startswith("application/json")
    assert EVCO_ID.fullmatch(body["Identification"]["RemoteIdentification"]["EvcoID"])
    for name in timestamps:
        assert OFFSET.search(body[name]), (name, body[name])
    for name in ("ConsumedEnergy", "ConsumedEnergyProgress", "MeterValueStart", "MeterValueEnd"):
        if name in body:
            assert re.fullmatch(r"\d+(\.\d{1,3})?", json.dumps(body[name])), (name, body[name])
    if "MeterValueInBetween" in body:
        assert isinstance(body["MeterValueInBetween"], dict) and isinstance(
            body["MeterValueInBetween"]["meterValues"], list
        )
    assert message.session_id == body["SessionID"].lower()


def test_new_sessions_push_start_then_progress_with_growing_energy(portal: Receiver) -> None:
    server = start_cpo_sim(portal.url, progress_interval_seconds=0.15)
    try:
        response = requests.post(f"{server.url}/_sim/sessions", json=[demo_session()], timeout=5)
        assert response.json() == {"added": 1, "already_known": 0, "issued": []}

        [start] = portal.wait_for("Start", SESSION_ID)
        progress = portal.wait_for("Progress", SESSION_ID, count=2)
    finally:
        server.shutdown()
        server.server_close()

    assert start["path"] == NOTIFICATIONS and start["at"] < progress[0]["at"]
    assert_valid_oicp(start)
    assert start["body"]["ChargingStart"] == "2026-01-05T10:00:00+01:00"
    assert (start["body"]["OperatorID"], start["body"]["EvseID"]) == ("DE*ACC", "DE*ACC*E0001*1")
    assert (start["body"]["EMPPartnerSessionID"], start["body"]["CPOPartnerSessionID"]) == ("EMP-1", "CPO-1")
    for push in progress:
        assert_valid_oicp(push)
        assert push["body"]["ChargingDuration"] > 0
    energies = [p["body"]["ConsumedEnergyProgress"] for p in progress]
    assert energies == sorted(energies) and energies[0] > 0
    assert len(progress[1]["body"]["MeterValueInBetween"]["meterValues"]) == 2


def test_posting_a_known_session_again_pushes_no_second_start(cpo_sim: SimulatorServer, portal: Receiver) -> None:
    requests.post(f"{cpo_sim.url}/_sim/sessions", json=[demo_session()], timeout=5)
    again = requests.post(f"{cpo_sim.url}/_sim/sessions", json=[demo_session()], timeout=5)
    portal.wait_for("Start")
    time.sleep(0.2)

    assert again.json() == {"added": 0, "already_known": 1, "issued": []}
    assert len(portal.of("Start")) == 1


def test_accepted_stop_pushes_end_after_the_delay_then_the_cdr(cpo_sim: SimulatorServer, portal: Receiver) -> None:
    requests.post(f"{cpo_sim.url}/_sim/sessions", json=[demo_session()], timeout=5)
    portal.wait_for("Start")
    accepted_at = time.monotonic()
    assert post(cpo_sim, stop_body(), external_id="DE-DCB").json()["Result"] is True

    [end] = portal.wait_for("End", SESSION_ID)
    [cdr] = portal.wait_for("CDR", SESSION_ID)

    assert end["at"] - accepted_at >= 0.2  # push_delay_seconds
    assert cdr["at"] > end["at"]
    assert end["path"] == NOTIFICATIONS
    assert cdr["path"] == "/api/oicp/cdrmgmt/v22/operators/DE*ACC/charge-detail-record"
    assert_valid_oicp(end)
    assert_valid_oicp(cdr)
    assert cdr["body"]["ConsumedEnergy"] == end["body"]["ConsumedEnergy"]
    assert cdr["body"]["ChargingEnd"] == end["body"]["ChargingEnd"]
    assert cdr["body"]["MeterValueEnd"] == pytest.approx(cdr["body"]["MeterValueStart"] + cdr["body"]["ConsumedEnergy"])
    pushed = requests.get(f"{cpo_sim.url}/_sim/pushed", params={"session_id": SESSION_ID}, timeout=5).json()
    assert [p["kind"] for p in pushed] == ["Start", "End", "CDR"]
    assert all(p["status"] == 200 and p["acknowledged"] is True and p["url"].startswith(portal.url) for p in pushed)
    assert pushed[2]["body"] == cdr["body"]
    [session] = requests.get(f"{cpo_sim.url}/_sim/sessions", timeout=5).json()
    assert session["state"] == "CLOSED"


def test_a_second_accepted_stop_does_not_end_the_session_twice(cpo_sim: SimulatorServer, portal: Receiver) -> None:
    requests.post(f"{cpo_sim.url}/_sim/sessions", json=[demo_session()], timeout=5)
    post(cpo_sim, stop_body())
    post(cpo_sim, stop_body())
    portal.wait_for("CDR", SESSION_ID)
    time.sleep(0.4)

    assert len(portal.of("End", SESSION_ID)) == 1 and len(portal.of("CDR", SESSION_ID)) == 1


def test_tidy_a_session_the_simulator_was_never_told_about_still_ends(
    cpo_sim: SimulatorServer, portal: Receiver
) -> None:
    configure(cpo_sim, {"tidy": True})
    other = "b2688855-7f00-0002-6d8e-48d883f6abb6"
    assert post(cpo_sim, stop_body(other, "NL*FST*E0007*1")).json()["Result"] is True

    [end] = portal.wait_for("End", other)
    [cdr] = portal.wait_for("CDR", other)

    assert end["body"]["OperatorID"] == "NL*FST" and end["body"]["EMPPartnerSessionID"] == "EMP-1"
    assert cdr["path"].endswith("/operators/NL*FST/charge-detail-record")
    assert_valid_oicp(cdr)


def test_a_cpo_that_never_confirms_accepts_but_pushes_nothing(cpo_sim: SimulatorServer, portal: Receiver) -> None:
    configure(cpo_sim, {"operators": {"DE*NCF": {"action": "accept", "confirm": False}}})
    requests.post(f"{cpo_sim.url}/_sim/sessions", json=[demo_session(evse_id="DE*NCF*E0001*1")], timeout=5)
    portal.wait_for("Start")

    answer = post(cpo_sim, stop_body(evse_id="DE*NCF*E0001*1")).json()
    time.sleep(0.6)

    assert answer["Result"] is True and answer["StatusCode"]["Code"] == "000"
    assert [r["body"]["Type"] for r in portal.requests] == ["Start"]
    assert requests.get(f"{cpo_sim.url}/_sim/cdrs", timeout=5).json() == []


def test_rejected_or_failed_stops_push_nothing(cpo_sim: SimulatorServer, portal: Receiver) -> None:
    configure(
        cpo_sim,
        {
            "operators": {
                "DE*OFF": {"action": "reject", "code": "501"},
                "FR*ERR": {"action": "http_error", "http_status": 503},
            }
        },
    )

    post(cpo_sim, stop_body(evse_id="DE*OFF*E1"))
    post(cpo_sim, stop_body("b2688855-7f00-0002-6d8e-48d883f6abb6", "FR*ERR*E1"))
    time.sleep(0.6)

    assert portal.requests == []


def test_demo_has_a_cpo_that_never_confirms() -> None:
    [ncf] = [op for op in DEMO_OPERATORS if op["operator_id"] == "DE*NCF"]
    assert ncf["behaviour"] == {"action": "accept", "confirm": False}
    assert "never" in ncf["summary"]
    table = BehaviourTable.from_json(DEMO_BEHAVIOURS)
    assert table.lookup("DE*NCF*E1")[0]["confirm"] is False
    assert table.lookup("DE*ACC*E1")[0]["confirm"] is True


@pytest.mark.parametrize("behaviour", [{"action": "reject", "confirm": False}, {"action": "accept", "confirm": "no"}])
def test_confirm_is_a_boolean_for_accept_only(behaviour: dict[str, Any]) -> None:
    with pytest.raises(BehaviourError, match="confirm"):
        BehaviourTable.from_json({"default": behaviour})


def test_a_portal_that_is_down_never_stops_the_simulator(portal: Receiver) -> None:
    dead_port = free_port()
    server = start_cpo_sim(f"http://127.0.0.1:{dead_port}", push_attempts=2, behaviours={"tidy": True})
    try:
        post(server, stop_body())
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(requests.get(f"{server.url}/_sim/pushed", timeout=5).json()) < 2:
            time.sleep(0.05)
        pushed = requests.get(f"{server.url}/_sim/pushed", timeout=5).json()
        # Still answering, and the CDR is kept for the pull, marked as not forwarded.
        assert post(server, stop_body("b2688855-7f00-0002-6d8e-48d883f6abb6")).status_code == 200
        cdrs = requests.get(f"{server.url}/_sim/cdrs", timeout=5).json()
    finally:
        server.shutdown()
        server.server_close()

    assert [p["kind"] for p in pushed] == ["End", "CDR"]
    assert all(p["status"] is None and p["attempts"] == 2 and "Connection" in p["error"] for p in pushed)
    assert cdrs[0]["forwarded"] is False and cdrs[0]["cdr"]["SessionID"] == SESSION_ID


def test_a_portal_answering_503_is_retried(portal: Receiver) -> None:
    portal.status = 503
    server = start_cpo_sim(portal.url, push_attempts=3)
    try:
        requests.post(f"{server.url}/_sim/sessions", json=[demo_session()], timeout=5)
        portal.wait_for("Start", count=3)
        time.sleep(0.2)
        [entry] = requests.get(f"{server.url}/_sim/pushed", params={"kind": "start"}, timeout=5).json()
    finally:
        server.shutdown()
        server.server_close()
    assert (entry["status"], entry["attempts"], entry["acknowledged"]) == (503, 3, False)
    assert len(portal.of("Start")) == 3


def test_pushed_log_can_be_filtered_and_cleared(cpo_sim: SimulatorServer, portal: Receiver) -> None:
    other = "b2688855-7f00-0002-6d8e-48d883f6abb6"
    requests.post(f"{cpo_sim.url}/_sim/sessions", json=[demo_session(), demo_session(other)], timeout=5)
    portal.wait_for("Start", count=2)
    time.sleep(0.1)

    assert [
        p["session_id"]
        for p in requests.get(f"{cpo_sim.url}/_sim/pushed", params={"session_id": other}, timeout=5).json()
    ] == [other]
    assert requests.delete(f"{cpo_sim.url}/_sim/pushed", timeout=5).json() == {"cleared": 2}
    assert requests.get(f"{cpo_sim.url}/_sim/pushed", timeout=5).json() == []


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"SessionID": SESSION_ID}, "sessions: must be a JSON list"),
        (["DE*ACC*E1"], "sessions[0]: must be an object"),
        ([{"SessionID": "nope", "EvseID": "DE*ACC*E1"}], "sessions[0].SessionID"),
        ([demo_session(EvseID="XX")], "sessions[0].EvseID"),
        ([demo_session(ChargingStart="2026-01-05T10:00:00")], "sessions[0].ChargingStart"),
        ([demo_session(Colour="red")], "sessions[0].Colour"),
    ],
)
def test_bad_sessions_are_refused_with_the_field_named(cpo_sim: SimulatorServer, payload: Any, message: str) -> None:
    response = requests.post(f"{cpo_sim.url}/_sim/sessions", json=payload, timeout=5)
    assert response.status_code == 400 and message in response.json()["error"]
    assert requests.get(f"{cpo_sim.url}/_sim/sessions", timeout=5).json() == []


def test_new_demo_sessions_appear_by_themselves(portal: Receiver) -> None:
    server = start_cpo_sim(portal.url, new_session_interval_seconds=0.1)
    try:
        starts = portal.wait_for("Start", count=2)
    finally:
        server.shutdown()
        server.server_close()
    operators = {op["operator_id"] for op in DEMO_OPERATORS}
    for start in starts:
        assert_valid_oicp(start)
        assert start["body"]["OperatorID"] in operators
    assert starts[0]["body"]["SessionID"] != starts[1]["body"]["SessionID"]


def test_at_the_cap_the_oldest_session_finishes_when_a_new_one_starts(portal: Receiver) -> None:
    server = start_cpo_sim(portal.url, new_session_interval_seconds=0.15, max_sessions=1)
    try:
        requests.post(f"{server.url}/_sim/sessions", json=[demo_session()], timeout=5)
        portal.wait_for("End", SESSION_ID)
        portal.wait_for("CDR", SESSION_ID)
    finally:
        server.shutdown()
        server.server_close()


# -- GetChargeDetailRecords


def cdrs_url(sim: SimulatorServer, provider: str = "DE-EMP", **query: Any) -> str:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{sim.url}/api/oicp/cdrmgmt/v22/providers/{provider}/get-charge-detail-records-request" + (
        f"?{params}" if params else ""
    )


def injected_cdr(index: int, end: str = "2026-01-05T11:00:00+01:00", evse_id: str = "DE*ACC*E0001*1") -> dict:
    return {
        "SessionID": f"{index:08d}-0000-4000-8000-000000000000",
        "EvseID": evse_id,
        "Identification": {"RemoteIdentification": {"EvcoID": "DE-EMP-C12345678-9"}},
        "ChargingStart": "2026-01-05T10:00:00+01:00",
        "ChargingEnd": end,
        "SessionStart": "2026-01-05T10:00:00+01:00",
        "SessionEnd": end,
        "ConsumedEnergy": 1.5,
    }


WINDOW = {"ProviderID": "DE-EMP", "From": "2026-01-05T00:00:00+01:00", "To": "2026-01-06T00:00:00Z"}


def test_get_cdrs_pages_over_every_cdr_in_the_window(sim: SimulatorServer) -> None:
    added = requests.post(
        f"{sim.url}/_sim/cdrs",
        json=[injected_cdr(i) for i in range(5)] + [injected_cdr(9, end="2026-01-07T11:00:00+01:00")],
        timeout=5,
    )
    assert added.json() == {"added": 6}

    pages = [requests.post(cdrs_url(sim, page=p, size=2), json=WINDOW, timeout=5) for p in range(3)]

    bodies = [p.json() for p in pages]
    assert [p.status_code for p in pages] == [200, 200, 200]
    assert [[c["SessionID"][:8] for c in b["content"]] for b in bodies] == [
        ["00000000", "00000001"],
        ["00000002", "00000003"],
        ["00000004"],
    ]
    first, _, last = bodies
    assert (first["number"], first["size"], first["totalElements"], first["totalPages"]) == (0, 2, 5, 3)
    assert (first["first"], first["last"], first["numberOfElements"], first["empty"]) == (True, False, 2, False)
    assert (last["first"], last["last"], last["numberOfElements"]) == (False, True, 1)
    assert first["StatusCode"]["Code"] == "000"
    assert first["pageable"]["pageSize"] == 2 and first["pageable"]["offset"] == 0
    assert pages[0].headers["Content-Type"] == "application/json;charset=UTF-8" and "Process-ID" in pages[0].headers


def test_get_cdrs_defaults_to_20_and_includes_generated_cdrs(sim: SimulatorServer) -> None:
    sim.cpo.config.cdr_delay_seconds = 0
    sim.cpo.config.push_delay_seconds = 0
    post(sim, stop_body())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not sim.cdrs.listed():
        time.sleep(0.02)
    now = datetime.now(UTC)
    window = {
        "ProviderID": "DE-EMP",
        "From": (now - timedelta(hours=1)).isoformat(),
        "To": (now + timedelta(hours=1)).isoformat(),
    }

    body = requests.post(cdrs_url(sim), json=window, timeout=5).json()

    assert body["size"] == 20 and body["totalElements"] == 1
    [record] = body["content"]
    assert record["SessionID"] == SESSION_ID and "Identification" in record
    inbound.charge_detail_record_from_dict(json.loads(json.dumps(record), parse_float=Decimal))


def test_get_cdrs_filters_by_session_and_operator(sim: SimulatorServer) -> None:
    requests.post(f"{sim.url}/_sim/cdrs", json=[injected_cdr(1), injected_cdr(2, evse_id="NL*FST*E1")], timeout=5)

    by_session = requests.post(cdrs_url(sim), json={**WINDOW, "SessionID": [injected_cdr(2)["SessionID"]]}, timeout=5)
    by_operator = requests.post(cdrs_url(sim), json={**WINDOW, "OperatorID": "NLFST"}, timeout=5)
    as_list = requests.post(cdrs_url(sim), json={**WINDOW, "OperatorID": ["DE*ACC"]}, timeout=5)  # the snippet's form

    assert [c["EvseID"] for c in by_session.json()["content"]] == ["NL*FST*E1"]
    assert [c["EvseID"] for c in by_operator.json()["content"]] == ["NL*FST*E1"]
    assert [c["EvseID"] for c in as_list.json()["content"]] == ["DE*ACC*E0001*1"]


def test_get_cdrs_empty_window(sim: SimulatorServer) -> None:
    body = requests.post(cdrs_url(sim, page=0, size=2000), json=WINDOW, timeout=5).json()

    assert (body["content"], body["totalElements"], body["totalPages"], body["empty"]) == ([], 0, 0, True)
    assert body["first"] is True and body["last"] is True


@pytest.mark.parametrize(
    ("query", "payload", "field"),
    [
        ({}, {k: v for k, v in WINDOW.items() if k != "From"}, "From"),
        ({}, {k: v for k, v in WINDOW.items() if k != "ProviderID"}, "ProviderID"),
        ({}, {**WINDOW, "To": "2026-01-06T00:00:00"}, "To"),
        ({}, {**WINDOW, "From": "2026-01-07T00:00:00Z"}, "From"),
        ({}, {**WINDOW, "ProviderID": "DE-XYZ"}, "ProviderID"),
        ({}, {**WINDOW, "SessionID": "not-a-list"}, "SessionID"),
        ({}, {**WINDOW, "CDRForwarded": "yes"}, "CDRForwarded"),
        ({"size": 2001}, WINDOW, "size"),
        ({"size": 0}, WINDOW, "size"),
        ({"page": -1}, WINDOW, "page"),
        ({"page": "x"}, WINDOW, "page"),
        ({}, [WINDOW], "body"),
    ],
)
def test_get_cdrs_validation_errors_are_fault_bodies(
    sim: SimulatorServer, query: dict, payload: Any, field: str
) -> None:
    assert_validation_error(requests.post(cdrs_url(sim, **query), json=payload, timeout=5), field)


def test_get_cdrs_answer_matches_hubjects_openapi(sim: SimulatorServer) -> None:
    openapi = spec_file("openapi.yaml")  # skips, or fails under CI, when it is missing
    from openapi_core import OpenAPI
    from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

    cdr = injected_cdr(1)
    cdr["ConsumedEnergy"] = 10
    requests.post(f"{sim.url}/_sim/cdrs", json=[cdr], timeout=5)
    response = requests.post(cdrs_url(sim, page=0, size=20), json=WINDOW, timeout=5)

    api = OpenAPI.from_file_path(str(openapi))
    prepared = requests.Request(
        "POST",
        "https://service-qa.hubject.com/api/oicp/cdrmgmt/v22/providers/DE-EMP/get-charge-detail-records-request",
        data=json.dumps(WINDOW),
        headers={"Content-Type": "application/json"},
    ).prepare()
    response.headers["Content-Type"] = "application/json"
    api.validate_response(RequestsOpenAPIRequest(prepared), RequestsOpenAPIResponse(response))


def test_injected_cdrs_need_a_charging_end(sim: SimulatorServer) -> None:
    response = requests.post(f"{sim.url}/_sim/cdrs", json=[{"SessionID": SESSION_ID}], timeout=5)
    assert response.status_code == 400 and "ChargingEnd" in response.json()["error"]
    assert requests.delete(f"{sim.url}/_sim/cdrs", timeout=5).json() == {"cleared": 0}


def test_cli_refuses_a_bad_portal_url_and_a_bad_sessions_file(tmp_path: Path) -> None:
    from sessions.oicp.simulator import main

    assert main(["--port", "0", "--portal-url", "ftp://x"]) == 2
    bad = tmp_path / "sessions.json"
    bad.write_text(json.dumps([{"SessionID": "nope"}]))
    assert main(["--port", "0", "--demo-sessions-file", str(bad)]) == 2
    assert main(["--port", "0", "--demo-sessions-file", str(tmp_path / "absent.json")]) == 2


def test_cli_loads_the_demo_sessions_file_and_pushes_to_the_portal(tmp_path: Path, portal: Receiver) -> None:
    sessions_file = tmp_path / "demo-sessions.json"
    sessions_file.write_text(json.dumps([demo_session()]))
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    env.pop("DJANGO_SETTINGS_MODULE", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sessions.oicp.simulator",
            "--port",
            str(port),
            "--demo",
            "--quiet",
            "--portal-url",
            portal.url,
            "--demo-sessions-file",
            str(sessions_file),
            "--push-delay",
            "0.1",
            "--progress-interval",
            "0.2",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline().startswith("Hubject simulator listening")  # type: ignore[union-attr]
        portal.wait_for("Start", SESSION_ID)
        portal.wait_for("Progress", SESSION_ID)
        requests.post(
            f"http://127.0.0.1:{port}/api/oicp/charging/v21/providers/DE-DCB/authorize-remote/stop",
            json=stop_body(),
            timeout=5,
        )
        portal.wait_for("CDR", SESSION_ID)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# ---- HBS checks the session: 400 Session is invalid (DIGEST §2, §8.5)

OTHER_SESSION = "b2688855-7f00-0002-6d8e-48d883f6abb6"


def assert_hbs_answered(response: requests.Response, code: str) -> dict[str, Any]:
    assert response.status_code == 200  # an acknowledgement, not an HTTP error
    ack = response.json()
    assert ack["Result"] is False
    assert ack["StatusCode"]["Code"] == code and ack["StatusCode"]["Description"] == HUBJECT_DESCRIPTIONS[code]
    return ack


def test_a_stop_for_a_session_hbs_never_issued_is_400_session_is_invalid(sim: SimulatorServer) -> None:
    ack = assert_hbs_answered(post(sim, body(SessionID=OTHER_SESSION)), "400")

    assert ack["SessionID"] == OTHER_SESSION
    [entry] = received(sim)
    assert entry["violations"] == [] and entry["hbs_answer"] == "400: session never issued"
    assert [s["SessionID"] for s in sim.cpo.sessions_list()] == [SESSION_ID]  # the CPO never heard of it


def test_session_ids_are_compared_exactly_as_given(sim: SimulatorServer) -> None:
    assert_hbs_answered(post(sim, body(SessionID=SESSION_ID.upper())), "400")
    assert post(sim, SAMPLE).json()["StatusCode"]["Code"] == "000"


def test_the_session_check_comes_before_accept_only(sim: SimulatorServer) -> None:
    """Other actions are failures a test asks for, whatever the SessionID."""
    configure(
        sim,
        {
            "evses": {
                "DE*OFF*E1": {"action": "reject", "code": "501"},
                "FR*ERR*E1": {"action": "http_error", "http_status": 503},
            }
        },
    )

    assert post(sim, body(SessionID=OTHER_SESSION, EvseID="DE*OFF*E1")).json()["StatusCode"]["Code"] == "501"
    assert post(sim, body(SessionID=OTHER_SESSION, EvseID="FR*ERR*E1")).status_code == 503


def test_sessions_the_cpo_issues_count_as_issued(sim: SimulatorServer) -> None:
    answer = requests.post(f"{sim.url}/_sim/sessions", json=[{"EvseID": "DE*ACC*E0001*1"}], timeout=5).json()

    [issued] = answer["issued"]
    assert answer["added"] == 1 and re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", issued)
    assert post(sim, body(SessionID=issued, EvseID="DE*ACC*E0001*1")).json()["Result"] is True


def test_a_stop_after_the_cdr_is_400_session_is_invalid(cpo_sim: SimulatorServer, portal: Receiver) -> None:
    requests.post(f"{cpo_sim.url}/_sim/sessions", json=[demo_session()], timeout=5)
    assert post(cpo_sim, stop_body()).json()["Result"] is True
    portal.wait_for("CDR", SESSION_ID)

    assert_hbs_answered(post(cpo_sim, stop_body()), "400")
    assert received(cpo_sim)[-1]["hbs_answer"] == "400: session closed"
    time.sleep(0.4)
    assert len(portal.of("End", SESSION_ID)) == 1 and len(portal.of("CDR", SESSION_ID)) == 1


def test_a_stop_for_a_session_whose_cdr_hbs_holds_is_400(sim: SimulatorServer) -> None:
    cdr = dict(injected_cdr(1), SessionID=OTHER_SESSION)
    requests.post(f"{sim.url}/_sim/cdrs", json=[cdr], timeout=5).raise_for_status()

    assert_hbs_answered(post(sim, body(SessionID=OTHER_SESSION)), "400")
    assert received(sim)[-1]["hbs_answer"] == "400: session closed"


# ---- the tidy switch


def test_tidy_accepts_any_session_id_and_a_put_returns_to_the_startup_setting(sim: SimulatorServer) -> None:
    assert configure(sim, {"tidy": True}).json()["tidy"] is True
    assert post(sim, body(SessionID=OTHER_SESSION)).json()["Result"] is True
    assert received(sim)[-1]["hbs_answer"] is None

    configure(sim, {"default": {"action": "accept"}})  # a PUT naming no option: back to how it started
    assert requests.get(f"{sim.url}/_sim/behaviours", timeout=5).json()["tidy"] is False
    assert_hbs_answered(post(sim, body(SessionID="c2688855-7f00-0002-6d8e-48d883f6abb6")), "400")


def test_a_simulator_started_tidy_stays_tidy_across_puts() -> None:
    from sessions.oicp.simulator.cli import load_table, parse_args

    table = load_table(parse_args(["--tidy", "--cpo-window", "5"]))
    assert (table.tidy, table.cpo_window_seconds) == (True, 5.0)
    server = make_server(port=0, behaviours=table)
    serve_in_thread(server)
    try:
        configure(server, {"default": {"action": "accept"}})
        assert post(server, body(SessionID=OTHER_SESSION)).json()["Result"] is True
        options = requests.get(f"{server.url}/_sim/behaviours", timeout=5).json()
        assert (options["tidy"], options["cpo_window_seconds"]) == (True, 5.0)
        configure(server, {"tidy": False}, method="PATCH")
        assert_hbs_answered(post(server, body(SessionID="c2688855-7f00-0002-6d8e-48d883f6abb6")), "400")
    finally:
        server.shutdown()
        server.server_close()


# ---- HBS's CPO window: 310 Partner did not respond (DIGEST §3)


def test_an_answer_later_than_the_cpo_window_is_310_at_the_window(sim: SimulatorServer) -> None:
    configure(sim, {"cpo_window_seconds": 0.3, "default": {"action": "accept", "delay_seconds": 30}})

    started = time.monotonic()
    response = post(sim, SAMPLE)
    took = time.monotonic() - started

    assert 0.3 <= took < 3
    ack = assert_hbs_answered(response, "310")
    assert ack["SessionID"] == SESSION_ID
    assert received(sim)[-1]["hbs_answer"] == "310: the CPO did not answer within 0.3 s"


@pytest.mark.parametrize(
    "behaviour", [{"action": "no_answer"}, {"action": "reject", "code": "501", "delay_seconds": 5}]
)
def test_no_answer_and_late_rejections_become_310(sim: SimulatorServer, behaviour: dict[str, Any]) -> None:
    configure(sim, {"cpo_window_seconds": 0.2, "default": behaviour})
    assert_hbs_answered(post(sim, SAMPLE), "310")


def test_a_behaviour_can_have_its_own_window_and_answers_inside_it_are_unchanged(sim: SimulatorServer) -> None:
    configure(
        sim,
        {
            "evses": {
                "DE*SLO*E1": {"action": "accept", "delay_seconds": 5, "cpo_window_seconds": 0.2},
                "DE*SLO*E2": {"action": "accept", "delay_seconds": 0.3},
            }
        },
    )
    assert_hbs_answered(post(sim, body(EvseID="DE*SLO*E1")), "310")
    assert post(sim, body(EvseID="DE*SLO*E2")).json()["Result"] is True  # well inside the default 60 s


def test_a_hanging_no_answer_ignores_the_window(sim: SimulatorServer) -> None:
    configure(sim, {"cpo_window_seconds": 0.1, "default": {"action": "no_answer", "hang": True, "delay_seconds": 0.6}})

    started = time.monotonic()
    with pytest.raises(requests.ConnectionError):
        post(sim, SAMPLE, timeout=5)

    assert time.monotonic() - started >= 0.6
    time.sleep(0.05)
    assert received(sim)[-1]["outcome"] == "no_answer"


def test_the_default_window_is_hubjects_60_seconds() -> None:
    table = BehaviourTable.from_json(DEMO_BEHAVIOURS)
    assert table.cpo_window_seconds == 60
    late = table.lookup("DE*LAT*E1")[0]
    assert late["delay_seconds"] > late["cpo_window_seconds"] == 60
    assert table.lookup("DE*DWN*E1")[0]["hang"] is True  # the demo CPO that never answers still does not


def test_a_cpo_that_accepts_after_the_window_still_ends_the_session(cpo_sim: SimulatorServer, portal: Receiver) -> None:
    configure(cpo_sim, {"cpo_window_seconds": 0.2, "default": {"action": "accept", "delay_seconds": 0.6}})
    requests.post(f"{cpo_sim.url}/_sim/sessions", json=[demo_session()], timeout=5)
    answered = time.monotonic()
    assert_hbs_answered(post(cpo_sim, stop_body()), "310")

    [end] = portal.wait_for("End", SESSION_ID)
    portal.wait_for("CDR", SESSION_ID)
    assert end["at"] - answered >= 0.4 + 0.2  # the CPO's late acceptance, then its push delay


# ---- demo CPOs and message variants


def session_pushes(cpo_sim: SimulatorServer, portal: Receiver, evse_id: str) -> dict[str, dict[str, Any]]:
    """Run one session to its CDR (Start, Progress, accepted stop, End, CDR): the last push of each kind."""
    requests.post(f"{cpo_sim.url}/_sim/sessions", json=[demo_session(evse_id=evse_id)], timeout=5).raise_for_status()
    portal.wait_for("Progress", SESSION_ID)
    assert post(cpo_sim, stop_body(evse_id=evse_id)).json()["Result"] is True
    portal.wait_for("CDR", SESSION_ID)
    return {kind: portal.of(kind, SESSION_ID)[-1] for kind in ("Start", "Progress", "End", "CDR")}


@pytest.fixture
def quirky_sim(portal: Receiver) -> Iterator[SimulatorServer]:
    server = start_cpo_sim(portal.url, progress_interval_seconds=0.1)
    yield server
    server.shutdown()
    server.server_close()


def with_quirks(sim: SimulatorServer, *quirks: str, **keys: Any) -> None:
    configure(sim, {"operators": {"DE*QRK": {"action": "accept", "quirks": list(quirks), **keys}}})


def test_cable_stuck_ends_charging_then_only_the_stop_brings_the_cdr(
    cpo_sim: SimulatorServer, portal: Receiver
) -> None:
    configure(cpo_sim, {"operators": {"DE*CBL": {"action": "accept", "cable_stuck_after_seconds": 0.2}}})
    requests.post(f"{cpo_sim.url}/_sim/sessions", json=[demo_session(evse_id="DE*CBL*E0001*1")], timeout=5)

    [end] = portal.wait_for("End", SESSION_ID)
    time.sleep(0.5)  # well past the CDR delay: the car is still plugged in
    assert portal.of("CDR", SESSION_ID) == []
    [session] = requests.get(f"{cpo_sim.url}/_sim/sessions", timeout=5).json()
    assert session["state"] == "PLUGGED"
    assert_valid_oicp(end)
    assert (
        requests.get(f"{cpo_sim.url}/_sim/pushed", params={"kind": "End"}, timeout=5).json()[0]["reason"]
        == "charging_finished"
    )

    assert post(cpo_sim, stop_body(evse_id="DE*CBL*E0001*1")).json()["Result"] is True
    [cdr] = portal.wait_for("CDR", SESSION_ID)
    time.sleep(0.3)

    assert len(portal.of("End", SESSION_ID)) == 1  # no second End
    assert_valid_oicp(cdr)
    assert cdr["body"]["ChargingEnd"] == end["body"]["ChargingEnd"]
    assert cdr["body"]["ConsumedEnergy"] == end["body"]["ConsumedEnergy"]
    assert cdr["at"] > end["at"] + 0.5
    assert_hbs_answered(post(cpo_sim, stop_body(evse_id="DE*CBL*E0001*1")), "400")  # now closed


def test_error_notifications_use_each_error_type_in_turn(cpo_sim: SimulatorServer, portal: Receiver) -> None:
    types = ["ConnectorError", "CriticalError", "Connector Error"]
    configure(
        cpo_sim, {"operators": {"DE*FLT": {"action": "accept", "error_types": types, "error_after_seconds": 0.1}}}
    )
    ids = [f"{n}2688855-7f00-0002-6d8e-48d883f6abb6" for n in "abc"]
    requests.post(
        f"{cpo_sim.url}/_sim/sessions",
        timeout=5,
        json=[demo_session(session_id, evse_id=f"DE*FLT*E000{n}*1") for n, session_id in enumerate(ids)],
    )

    errors = portal.wait_for("Error", count=3)

    assert sorted(e["body"]["ErrorType"] for e in errors) == sorted(types)
    for error in errors:
        assert error["path"] == NOTIFICATIONS
        assert {"Type", "SessionID", "EvseID", "OperatorID", "ErrorType", "ErrorAdditionalInfo"} <= set(error["body"])
        assert error["body"]["OperatorID"] == "DE*FLT" and len(error["body"]["ErrorAdditionalInfo"]) <= 250
    [sample] = [e for e in errors if e["body"]["ErrorType"] == "Connector Error"]
    assert sample["body"]["ErrorAdditionalInfo"] == "Plug was not connected, EVSEID timed out reached"
    assert post(cpo_sim, stop_body(ids[0], "DE*FLT*E0000*1")).json()["Result"] is True  # stops still work


def test_eichrecht_cdrs_carry_signed_values_and_verification_info(
    quirky_sim: SimulatorServer, portal: Receiver
) -> None:
    with_quirks(quirky_sim, "eichrecht")
    cdr = session_pushes(quirky_sim, portal, "DE*QRK*E0001*1")["CDR"]["body"]

    values = cdr["SignedMeteringValues"]
    assert 2 <= len(values) <= 10
    assert [v["MeteringStatus"] for v in values] == ["Start"] + ["Progress"] * (len(values) - 2) + ["End"]
    assert all(v["SignedMeteringValue"].startswith("OCMF|") and len(v["SignedMeteringValue"]) <= 3000 for v in values)
    info = cdr["CalibrationLawVerificationInfo"]
    limits = {
        "CalibrationLawCertificateID": 100,
        "PublicKey": 1000,
        "MeteringSignatureUrl": 200,
        "MeteringSignatureEncodingFormat": 50,
        "SignedMeteringValuesVerificationInstruction": 400,
    }
    assert set(info) == set(limits) and all(0 < len(info[k]) <= limit for k, limit in limits.items())


def test_eichrecht_over_10_sends_more_signed_values_than_the_spec_allows(
    quirky_sim: SimulatorServer, portal: Receiver
) -> None:
    with_quirks(quirky_sim, "eichrecht_over_10")
    cdr = session_pushes(quirky_sim, portal, "DE*QRK*E0001*1")["CDR"]["body"]
    assert len(cdr["SignedMeteringValues"]) > 10


def test_float_noise_in_kwh_values(quirky_sim: SimulatorServer, portal: Receiver) -> None:
    with_quirks(quirky_sim, "float_noise")
    pushes = session_pushes(quirky_sim, portal, "DE*QRK*E0001*1")

    for kind in ("Start", "End", "CDR"):
        raw = pushes[kind]["raw"].decode()
        value = re.search(r'"MeterValueStart": (\d+\.\d+)', raw).group(1)
        assert len(value.split(".")[1]) > 3, value  # e.g. 1234.5000000000002
        assert abs(float(value) - round(float(value), 3)) < 1e-9  # noise, not a different reading


def test_four_decimals_in_kwh_values(quirky_sim: SimulatorServer, portal: Receiver) -> None:
    with_quirks(quirky_sim, "four_decimals")
    raw = session_pushes(quirky_sim, portal, "DE*QRK*E0001*1")["CDR"]["raw"].decode()
    for name in ("MeterValueStart", "MeterValueEnd", "ConsumedEnergy"):
        assert re.search(rf'"{name}": \d+\.\d{{4}}[,}}]', raw), (name, raw)


def test_float_charging_duration(quirky_sim: SimulatorServer, portal: Receiver) -> None:
    with_quirks(quirky_sim, "float_duration")
    progress = session_pushes(quirky_sim, portal, "DE*QRK*E0001*1")["Progress"]
    assert re.search(r'"ChargingDuration": \d+\.0[,}]', progress["raw"].decode())


def test_explicit_nulls_for_optional_fields(quirky_sim: SimulatorServer, portal: Receiver) -> None:
    with_quirks(quirky_sim, "explicit_nulls")
    pushes = session_pushes(quirky_sim, portal, "DE*QRK*E0001*1")

    for kind in ("Start", "Progress", "End", "CDR"):
        assert "PartnerProductID" in pushes[kind]["body"] and pushes[kind]["body"]["PartnerProductID"] is None
    cdr = pushes["CDR"]["body"]
    assert cdr["HubOperatorID"] is None and cdr["SignedMeteringValues"] is None
    assert cdr["SessionID"] == SESSION_ID and cdr["ConsumedEnergy"] is not None  # mandatory ones stay


def test_long_product_id(quirky_sim: SimulatorServer, portal: Receiver) -> None:
    with_quirks(quirky_sim, "long_product_id")
    pushes = session_pushes(quirky_sim, portal, "DE*QRK*E0001*1")
    for kind in ("Start", "End", "CDR"):
        assert 50 < len(pushes[kind]["body"]["PartnerProductID"]) <= 100


def test_notifications_without_operator_id(quirky_sim: SimulatorServer, portal: Receiver) -> None:
    with_quirks(quirky_sim, "no_operator_id")
    pushes = session_pushes(quirky_sim, portal, "DE*QRK*E0001*1")
    for kind in ("Start", "Progress", "End"):
        assert "OperatorID" not in pushes[kind]["body"]
    assert pushes["CDR"]["path"].endswith("/operators/DE*QRK/charge-detail-record")


def test_a_hub_operator_sends_cdrs_on_its_own_path(quirky_sim: SimulatorServer, portal: Receiver) -> None:
    with_quirks(quirky_sim, hub_operator_id="DE*HUB")
    pushes = session_pushes(quirky_sim, portal, "DE*QRK*E0001*1")

    cdr = pushes["CDR"]
    assert cdr["path"] == "/api/oicp/cdrmgmt/v22/operators/DE*HUB/charge-detail-record"
    assert cdr["body"]["HubOperatorID"] == "DE*HUB" and cdr["body"]["EvseID"] == "DE*QRK*E0001*1"
    assert pushes["End"]["body"]["OperatorID"] == "DE*HUB"  # as in Hubject's samples


def test_upper_case_session_ids_must_come_back_exactly(quirky_sim: SimulatorServer, portal: Receiver) -> None:
    with_quirks(quirky_sim, "upper_case_session_ids")
    answer = requests.post(f"{quirky_sim.url}/_sim/sessions", json=[{"EvseID": "DE*QRK*E0001*1"}], timeout=5).json()
    [session_id] = answer["issued"]
    assert session_id == session_id.upper() and re.search("[A-F]", session_id)
    [start] = portal.wait_for("Start", session_id)

    assert_hbs_answered(post(quirky_sim, stop_body(session_id.lower(), "DE*QRK*E0001*1")), "400")
    assert post(quirky_sim, stop_body(session_id, "DE*QRK*E0001*1")).json()["Result"] is True
    [cdr] = portal.wait_for("CDR", session_id)
    assert start["body"]["SessionID"] == cdr["body"]["SessionID"] == session_id


def test_without_quirks_messages_stay_tidy(quirky_sim: SimulatorServer, portal: Receiver) -> None:
    pushes = session_pushes(quirky_sim, portal, "DE*ACC*E0001*1")
    for push in pushes.values():
        assert_valid_oicp(push)
        assert None not in push["body"].values()
    assert isinstance(pushes["Progress"]["body"]["ChargingDuration"], int)
    assert "SignedMeteringValues" not in pushes["CDR"]["body"] and "PartnerProductID" not in pushes["CDR"]["body"]


@pytest.mark.parametrize(
    "behaviour",
    [
        {"action": "accept", "quirks": ["sparkles"]},
        {"action": "accept", "quirks": "float_noise"},
        {"action": "accept", "hang": True},
        {"action": "no_answer", "hang": "yes"},
        {"action": "accept", "error_types": ["Kaputt"]},
        {"action": "accept", "error_types": []},
        {"action": "accept", "error_after_seconds": 3},
        {"action": "accept", "hub_operator_id": "DE-HUB"},
        {"action": "accept", "cable_stuck_after_seconds": -1},
        {"action": "accept", "cpo_window_seconds": 0},
    ],
)
def test_bad_new_behaviour_keys_are_refused(behaviour: dict[str, Any]) -> None:
    with pytest.raises(BehaviourError):
        BehaviourTable.from_json({"default": behaviour})


@pytest.mark.parametrize("table", [{"tidy": "yes"}, {"cpo_window_seconds": -5}, {"cpo_window_seconds": "60"}])
def test_bad_table_options_are_refused(sim: SimulatorServer, table: dict[str, Any]) -> None:
    assert configure(sim, table).status_code == 400


def test_demo_has_cable_stuck_erroring_and_messy_cpos_and_keeps_the_old_ones() -> None:
    by_id = {op["operator_id"]: op for op in DEMO_OPERATORS}
    original = ["DE*ACC", "NL*FST", "DE*SLO", "DE*OFF", "AT*RJX", "DE*DWN", "FR*ERR", "DE*NCF"]
    assert list(by_id)[:8] == original
    for operator_id in original:  # integration tests use these: tidy messages
        assert not {"quirks", "hub_operator_id", "error_types", "cable_stuck_after_seconds"} & set(
            by_id[operator_id]["behaviour"]
        )
    assert by_id["DE*CBL"]["behaviour"]["cable_stuck_after_seconds"] > 0
    assert set(by_id["DE*FLT"]["behaviour"]["error_types"]) == {"ConnectorError", "CriticalError", "Connector Error"}
    quirks = {q for op in DEMO_OPERATORS for q in op["behaviour"].get("quirks", ())}
    from sessions.oicp.simulator import QUIRKS

    assert quirks == set(QUIRKS)  # the demo shows every variant
    assert any(op["behaviour"].get("hub_operator_id") for op in DEMO_OPERATORS)
    for op in DEMO_OPERATORS:
        assert op["summary"] and len(op["name"]) <= 22  # load_demo prints names in 22 columns
        assert re.fullmatch(r"[A-Z]{2}\*[A-Z0-9]{3}", op["operator_id"])
