"""A Hubject HBS simulator for eRoamingAuthorizeRemoteStop_V2.1 (OICP 2.3), on loopback only.

Used for the demo, for agents' training (sandbox mode) and as the test double of the integration
tests. It answers the remote-stop path the way HBS does (DIGEST §1-§3): acknowledgements with
HTTP 200, FaultBody / OicpERoamingFault JSON for HTTP errors, nginx HTML pages for gateway errors,
plus the network failures a real HBS connection can show (no answer, connection reset).

Run:  python -m sessions.oicp.simulator [--host 127.0.0.1] [--port 8090] [--config FILE.json] [--demo]

Stdlib only, and deliberately no Django: it must start without settings, in its own process.

Control API (JSON), for tests and trainers:
    GET    /_sim/health                      {"ok": true}
    GET    /_sim/behaviours                  the behaviour table
    PUT    /_sim/behaviours                  replace it   {"default": {...}, "operators": {...}, "evses": {...}}
    PATCH  /_sim/behaviours                  merge into it (a null entry removes that operator/EVSE)
    GET    /_sim/received[?evse_id=&session_id=]   requests received outside /_sim/, oldest first
    DELETE /_sim/received                    clear that log
"""

from __future__ import annotations

import argparse
import collections
import copy
import ipaddress
import json
import re
import select
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

from sessions.oicp.ids import (
    is_evse_id,
    is_operator_id,
    operator_id_from_evse_id,
    remote_stop_violations,
)
from sessions.oicp.status_codes import HUBJECT_DESCRIPTIONS

Behaviour = dict[str, Any]

REMOTE_STOP_PATH = re.compile(r"^/api/oicp/charging/v21/providers/(?P<external_id>[^/]+)/authorize-remote/stop$")
CONTROL_PREFIX = "/_sim/"
MAX_BODY_BYTES = 64 * 1024
MAX_CONTROL_BODY_BYTES = 1024 * 1024  # behaviour tables for many EVSEs are bigger than OICP messages
MAX_DRAIN_BYTES = 1024 * 1024  # read (and drop) an oversized body up to this, so the client sees our 413
MAX_RECEIVED = 10_000
DEFAULT_NO_ANSWER_SECONDS = 600.0
MAX_DELAY_SECONDS = 3600.0
JSON_TYPE = "application/json;charset=UTF-8"

ACTIONS = ("accept", "reject", "http_error", "html_error", "non_json", "wrong_shape", "no_answer", "reset")
# Codes a stop can come back with from HBS or the CPO (DIGEST §2); any other CodeType entry is allowed too.
TYPICAL_REJECT_CODES = ("400", "310", "501", "510", "022", "017")
# HTTP errors HBS (or its nginx) is documented or observed to give on this path (DIGEST §3).
HTTP_ERROR_STATUSES = (400, 401, 403, 404, 500, 502, 503, 504)
DEFAULT_HTTP_ERROR_STATUS = 503
DEFAULT_HTML_ERROR_STATUS = 502
DEFAULT_REJECT_CODE = "400"
BEHAVIOUR_KEYS = {"action", "code", "delay_seconds", "http_status", "additional_info"}


class BehaviourError(ValueError):
    """A behaviour table or behaviour that cannot be used; the message says which part and why."""


# --------------------------------------------------------------------------------------------------
# Behaviours


def normalise_behaviour(raw: object, where: str = "behaviour") -> Behaviour:
    """Validate one behaviour and return it with defaults filled in, so GET shows what will happen."""
    if not isinstance(raw, Mapping):
        raise BehaviourError(f"{where}: must be an object such as {{\"action\": \"accept\"}}")
    unknown = sorted(set(raw) - BEHAVIOUR_KEYS)
    if unknown:
        raise BehaviourError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(BEHAVIOUR_KEYS)}")
    action = raw.get("action")
    if action not in ACTIONS:
        raise BehaviourError(f"{where}: action {action!r} is not one of {list(ACTIONS)}")
    result: Behaviour = {"action": action, "delay_seconds": _delay(raw, action, where)}
    _code(raw, action, where, result)
    _http_status(raw, action, where, result)
    info = raw.get("additional_info")
    if info is not None:
        if not isinstance(info, str) or len(info) > 1000:
            raise BehaviourError(f"{where}: additional_info must be a string of at most 1000 characters")
        if action not in ("accept", "reject"):
            raise BehaviourError(f"{where}: additional_info only applies to accept and reject")
        result["additional_info"] = info
    return result


def _delay(raw: Mapping[str, Any], action: str, where: str) -> float:
    default = DEFAULT_NO_ANSWER_SECONDS if action == "no_answer" else 0.0
    value = raw.get("delay_seconds", default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_DELAY_SECONDS:
        raise BehaviourError(f"{where}: delay_seconds must be a number between 0 and {MAX_DELAY_SECONDS:g}")
    return float(value)


def _code(raw: Mapping[str, Any], action: str, where: str, result: Behaviour) -> None:
    code = raw.get("code")
    if action == "accept":
        if code not in (None, "000"):
            raise BehaviourError(f"{where}: accept always answers code \"000\"; use action reject for {code!r}")
        result["code"] = "000"
    elif action == "reject":
        code = DEFAULT_REJECT_CODE if code is None else code
        # Codes are 3-character strings with leading zeros (DIGEST §8.2): reject 400 or "22".
        if not isinstance(code, str) or code not in HUBJECT_DESCRIPTIONS or code == "000":
            raise BehaviourError(
                f"{where}: code {code!r} is not an OICP 2.3 error code (a string such as "
                f"{', '.join(repr(c) for c in TYPICAL_REJECT_CODES)})"
            )
        result["code"] = code
    elif code is not None:
        raise BehaviourError(f"{where}: code only applies to accept and reject, not {action}")


def _http_status(raw: Mapping[str, Any], action: str, where: str, result: Behaviour) -> None:
    status = raw.get("http_status")
    if action == "http_error":
        status = DEFAULT_HTTP_ERROR_STATUS if status is None else status
        if status not in HTTP_ERROR_STATUSES or isinstance(status, bool):
            raise BehaviourError(f"{where}: http_status {status!r} for http_error must be one of {list(HTTP_ERROR_STATUSES)}")
        result["http_status"] = status
    elif action == "html_error":
        status = DEFAULT_HTML_ERROR_STATUS if status is None else status
        if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
            raise BehaviourError(f"{where}: http_status {status!r} for html_error must be an integer 200-599")
        result["http_status"] = status
    elif status is not None:
        raise BehaviourError(f"{where}: http_status only applies to http_error and html_error, not {action}")


def _operator_key(operator_id: str) -> str:
    """Lookup key for an OperatorID: ISO "DE*ABC" and "DEABC" are the same CPO (the `*` is optional)."""
    upper = operator_id.upper()
    return upper.replace("*", "") if re.fullmatch(r"[A-Z]{2}\*?[A-Z0-9]{3}", upper) else upper


@dataclass
class BehaviourTable:
    """Which behaviour answers a request: exact EvseID, then the EVSE's OperatorID, then the default."""

    default: Behaviour = field(default_factory=lambda: {"action": "accept", "delay_seconds": 0.0, "code": "000"})
    operators: dict[str, Behaviour] = field(default_factory=dict)
    evses: dict[str, Behaviour] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: object) -> "BehaviourTable":
        """Build from the PUT format; raises BehaviourError with a readable message."""
        return cls().merged(data, replace=True)

    def to_json(self) -> dict[str, Any]:
        return copy.deepcopy({"default": self.default, "operators": self.operators, "evses": self.evses})

    def merged(self, data: object, replace: bool = False) -> "BehaviourTable":
        """A new table: `data` replaces (PUT) or is merged into (PATCH) this one."""
        if not isinstance(data, Mapping):
            raise BehaviourError("behaviour table: must be a JSON object with default, operators, evses")
        unknown = sorted(set(data) - {"default", "operators", "evses"})
        if unknown:
            raise BehaviourError(f"behaviour table: unknown key(s) {unknown}; allowed: default, operators, evses")
        base = BehaviourTable() if replace else BehaviourTable(**self._copy_fields())
        if data.get("default") is not None:
            base.default = normalise_behaviour(data["default"], "default")
        _merge_map(base.operators, data.get("operators"), "operators", is_operator_id, "an OperatorID such as DE*ABC")
        _merge_map(base.evses, data.get("evses"), "evses", is_evse_id, "an EvseID such as DE*ABC*E123")
        return base

    def _copy_fields(self) -> dict[str, Any]:
        return {"default": dict(self.default), "operators": dict(self.operators), "evses": dict(self.evses)}

    def lookup(self, evse_id: str | None) -> tuple[Behaviour, str]:
        """The behaviour for an EvseID and what matched ("evse:…", "operator:…" or "default")."""
        if evse_id:
            key = evse_id.upper()
            if key in self.evses:
                return dict(self.evses[key]), f"evse:{key}"
            try:
                operator = _operator_key(operator_id_from_evse_id(evse_id))
            except ValueError:
                operator = None
            for configured, behaviour in self.operators.items():
                if operator is not None and _operator_key(configured) == operator:
                    return dict(behaviour), f"operator:{configured}"
        return dict(self.default), "default"


def _merge_map(target: dict[str, Behaviour], entries: object, name: str, valid: Any, expected: str) -> None:
    if entries is None:
        return
    if not isinstance(entries, Mapping):
        raise BehaviourError(f"{name}: must be an object mapping IDs to behaviours")
    for raw_key, raw in entries.items():
        if not valid(raw_key):
            raise BehaviourError(f"{name}: key {raw_key!r} is not {expected}")
        key = raw_key.upper()
        if raw is None:  # PATCH with null removes the entry
            target.pop(key, None)
        else:
            target[key] = normalise_behaviour(raw, f"{name}[{raw_key!r}]")


# --------------------------------------------------------------------------------------------------
# Demo data: one CPO per situation an agent must recognise. The portal's demo data uses these IDs.

DEMO_OPERATORS: list[dict[str, Any]] = [
    {
        "operator_id": "DE*ACC",
        "name": "Accel Charging",
        "behaviour": {"action": "accept"},
        "summary": "Stops work: Hubject confirms at once (code 000).",
    },
    {
        "operator_id": "NL*FST",
        "name": "Fastlane Laadpunten",
        "behaviour": {"action": "accept"},
        "summary": "Stops work: Hubject confirms at once (code 000).",
    },
    {
        "operator_id": "DE*SLO",
        "name": "Schneckenstrom",
        "behaviour": {"action": "accept", "delay_seconds": 8},
        "summary": "Stops work, but Hubject takes about 8 seconds to confirm: wait, do not retry.",
    },
    {
        "operator_id": "DE*OFF",
        "name": "Offgrid Ladestationen",
        "behaviour": {"action": "reject", "code": "501"},
        "summary": "Stops are refused: the operator cannot reach its charger (code 501).",
    },
    {
        "operator_id": "AT*RJX",
        "name": "Alpen Rejex Laden",
        "behaviour": {"action": "reject", "code": "400"},
        "summary": "Stops are refused: Hubject says the session is no longer valid (code 400), "
        "usually because it already ended.",
    },
    {
        "operator_id": "DE*DWN",
        "name": "Downtime Energie",
        "behaviour": {"action": "no_answer"},
        "summary": "Hubject never answers: the stop times out and its outcome is unknown.",
    },
    {
        "operator_id": "FR*ERR",
        "name": "Erreur Recharge",
        "behaviour": {"action": "http_error", "http_status": 503},
        "summary": "Hubject is unavailable (HTTP 503): the stop was not sent to the operator.",
    },
]

DEMO_BEHAVIOURS: dict[str, Any] = {
    "default": {"action": "accept"},
    "operators": {op["operator_id"]: op["behaviour"] for op in DEMO_OPERATORS},
    "evses": {},
}


# --------------------------------------------------------------------------------------------------
# Shared state: behaviour table and received log


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class SimulatorState:
    """Behaviour table and received log, shared by the handler threads; every access holds the lock."""

    def __init__(self, behaviours: BehaviourTable | None = None, max_received: int = MAX_RECEIVED) -> None:
        self.lock = threading.Lock()
        self.behaviours = behaviours or BehaviourTable()
        self.received: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_received)
        self._seq = 0

    def get_behaviours(self) -> dict[str, Any]:
        with self.lock:
            return self.behaviours.to_json()

    def replace_behaviours(self, data: object) -> dict[str, Any]:
        table = BehaviourTable.from_json(data)  # validate outside the lock
        with self.lock:
            self.behaviours = table
            return table.to_json()

    def patch_behaviours(self, data: object) -> dict[str, Any]:
        with self.lock:  # merge under the lock so concurrent PATCHes do not lose each other's entries
            self.behaviours = self.behaviours.merged(data)
            return self.behaviours.to_json()

    def lookup(self, evse_id: str | None) -> tuple[Behaviour, str]:
        with self.lock:
            return self.behaviours.lookup(evse_id)

    def record(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append an entry (its seq assigned here) and return it; the handler updates it later."""
        with self.lock:
            self._seq += 1
            entry["seq"] = self._seq
            self.received.append(entry)
            return entry

    def update(self, entry: dict[str, Any], **changes: Any) -> None:
        with self.lock:
            entry.update(changes)

    def received_list(self, evse_id: str | None = None, session_id: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            entries = [copy.deepcopy(e) for e in self.received if _matches(e, evse_id, session_id)]
        return entries

    def clear_received(self) -> int:
        with self.lock:
            count = len(self.received)
            self.received.clear()
            return count


def _matches(entry: dict[str, Any], evse_id: str | None, session_id: str | None) -> bool:
    body = entry.get("body") if isinstance(entry.get("body"), dict) else {}
    for wanted, key in ((evse_id, "EvseID"), (session_id, "SessionID")):
        if wanted is not None and str(body.get(key, "")).upper() != wanted.upper():
            return False
    return True


# --------------------------------------------------------------------------------------------------
# Answer bodies, as HBS and its nginx produce them (DIGEST §1, §3)

_NGINX_TITLES = {
    400: "400 Bad Request",
    404: "404 Not Found",
    411: "411 Length Required",
    413: "413 Request Entity Too Large",
    502: "502 Bad Gateway",
    503: "503 Service Temporarily Unavailable",
    504: "504 Gateway Time-out",
}


def nginx_page(status: int, detail: str | None = None) -> str:
    """The HTML error page nginx (in front of HBS) serves; clients must not expect JSON."""
    if status == 200:  # e.g. a maintenance page served with 200 by a misconfigured proxy
        heading = "Hubject - Scheduled maintenance"
    else:
        heading = _NGINX_TITLES.get(status) or f"{status} {_reason(status)}"
    # nginx puts the detail into the title ("400 The SSL certificate error") and under the heading.
    title = f"{status} {detail}" if detail else heading
    extra = f"<center>{detail}</center>\r\n" if detail else ""
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{heading}</h1></center>\r\n"
        f"{extra}<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def status_code(code: str, additional_info: str | None = None) -> dict[str, Any]:
    return {"Code": code, "Description": HUBJECT_DESCRIPTIONS.get(code), "AdditionalInfo": additional_info}


def acknowledgement(request: Mapping[str, Any], result: bool, code: str, info: str | None) -> dict[str, Any]:
    """eRoamingAcknowledgement; HBS echoes the session fields with explicit nulls when absent."""
    return {
        "Result": result,
        "StatusCode": status_code(code, info),
        "SessionID": request.get("SessionID"),
        "CPOPartnerSessionID": request.get("CPOPartnerSessionID"),
        "EMPPartnerSessionID": request.get("EMPPartnerSessionID"),
    }


def fault_body(message: str, extended_info: str | None, violations: Sequence[str] = ()) -> dict[str, Any]:
    """FaultBody (2020 Swagger): HBS's answer to validation errors (400) and processing errors (500)."""
    return {
        "message": message,
        "extendedInfo": extended_info,
        "validationErrors": [_validation_error(v) for v in violations],
    }


def _validation_error(violation: str) -> dict[str, str]:
    field_ref, _, message = violation.partition(": ")
    return {"fieldReference": field_ref, "errorMessage": message or violation}


def oicp_fault(code: str, message: str) -> dict[str, Any]:
    """OicpERoamingFault (2020 Swagger): HBS's answer for 401 and 404."""
    return {"StatusCode": status_code(code), "message": message}


# --------------------------------------------------------------------------------------------------
# Request validation


def content_type_violations(content_type: str | None) -> list[str]:
    media, *params = [p.strip() for p in (content_type or "").split(";")]
    if media.lower() != "application/json":
        return [f"Content-Type: {content_type!r} is not application/json"]
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return [f"Content-Type: charset {value.strip()!r} is not UTF-8 (mandatory)"]
    return []


def parse_body(raw: bytes) -> tuple[str, Any, list[str]]:
    """(text for the log, parsed JSON or None, violations); UTF-8 is mandatory in OICP."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return raw.decode("utf-8", errors="replace"), None, [f"body: not valid UTF-8 ({exc.reason} at byte {exc.start})"]
    try:
        return text, json.loads(text), []
    except json.JSONDecodeError as exc:
        return text, None, [f"body: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"]


def provider_violations(external_id: str, body: Any) -> list[str]:
    """HBS compares the path's externalID with the body's ProviderID (DIGEST §1, §8.1)."""
    provider = body.get("ProviderID") if isinstance(body, dict) else None
    if isinstance(provider, str) and provider.upper() != external_id.upper():
        return [f"ProviderID: {provider!r} does not match the externalID {external_id!r} in the path"]
    return []


# --------------------------------------------------------------------------------------------------
# HTTP server


class SimulatorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive like HBS; every answer carries Content-Length
    server_version = "nginx"  # what HBS's front proxy announces
    timeout = 120  # an idle keep-alive connection must not hold a thread forever
    server: "SimulatorServer"

    def version_string(self) -> str:
        return self.server_version

    def handle_one_request(self) -> None:
        # Per request, not per connection: keep-alive connections carry several requests.
        self._process_id = str(uuid.uuid4())
        self._entry: dict[str, Any] | None = None  # the received-log entry of an OICP request
        super().handle_one_request()

    # ---- plumbing

    def send_response(self, code: int, message: str | None = None) -> None:
        # Every HBS answer carries a Process-ID; a fresh one per request, also for send_error.
        super().send_response(code, message)
        self.send_header("Process-ID", self._process_id)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        if self.server.log_requests:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    def _send(self, status: int, body: bytes, content_type: str | None, close: bool = False) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        if self._entry is not None:
            # Log before the client can read the answer, so a test reading /_sim/received right after sees it.
            self.server.state.update(self._entry, outcome="answered", answered_status=status, answered_at=_now_iso())
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, payload: Any, close: bool = False) -> None:
        self._send(status, json.dumps(payload, separators=(",", ":")).encode("utf-8"), JSON_TYPE, close)

    def _send_html(self, status: int, detail: str | None = None, close: bool = False) -> None:
        self._send(status, nginx_page(status, detail).encode("utf-8"), "text/html", close)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        try:
            if urlsplit(self.path).path.startswith(CONTROL_PREFIX):
                self._control()
            else:
                self._oicp()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # ---- body reading

    def _content_length(self) -> int | None:
        """Declared body length; None when the header is unusable (then we answer 400 and close)."""
        raw = self.headers.get("Content-Length")
        if raw is None:
            return 0
        try:
            length = int(raw)
        except ValueError:
            return None
        return length if length >= 0 else None

    def _drain(self, length: int) -> bytes:
        """Read up to MAX_DRAIN_BYTES: closing with unread data would make the kernel send RST instead of our answer."""
        return self.rfile.read(min(length, MAX_DRAIN_BYTES))

    # ---- OICP path

    def _oicp(self) -> None:
        entry = self._entry = self.server.state.record(self._new_entry())
        try:
            outcome = self._oicp_answer(entry)
        except OSError:  # broken pipe, reset, or a body that never arrived (socket timeout)
            outcome = "client_gone"
            self.close_connection = True
        if outcome != "answered":  # answered ones were logged by _send
            self.server.state.update(entry, outcome=outcome)

    def _new_entry(self) -> dict[str, Any]:
        return {
            "seq": None,
            "received_at": _now_iso(),
            "process_id": self._process_id,
            "method": self.command,
            "path": self.path,
            "headers": {
                "content-type": self.headers.get("Content-Type"),
                "x-correlation-id": self.headers.get("X-Correlation-ID"),
            },
            "body_text": None,
            "body": None,
            "violations": [],
            "behaviour": None,
            "matched_by": None,
            "outcome": None,
            "answered_status": None,
            "answered_at": None,
        }

    def _oicp_answer(self, entry: dict[str, Any]) -> str:
        """Validate like HBS, then answer with the configured behaviour; returns the outcome."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._reject_transport(entry, 411, "body: chunked transfer encoding is not supported, send Content-Length")
            return "answered"
        length = self._content_length()
        if length is None:
            self._reject_transport(entry, 400, f"Content-Length: {self.headers.get('Content-Length')!r} is not valid")
            return "answered"
        if length > MAX_BODY_BYTES:
            raw = self._drain(length)
            self.server.state.update(entry, body_text=raw[:MAX_BODY_BYTES].decode("utf-8", errors="replace"))
            self._reject_transport(entry, 413, f"body: {length} bytes exceed the limit of {MAX_BODY_BYTES} bytes")
            return "answered"
        raw = self.rfile.read(length)
        match = REMOTE_STOP_PATH.fullmatch(urlsplit(self.path).path)
        if match is None:
            self._unknown_path(entry, raw)
            return "answered"
        if self.command != "POST":
            self.server.state.update(entry, violations=[f"method: {self.command} is not allowed, use POST"])
            self._send_json(405, fault_body("Method not allowed", f"Request method '{self.command}' not supported"))
            return "answered"
        return self._remote_stop(entry, unquote(match["external_id"]), raw)

    def _reject_transport(self, entry: dict[str, Any], status: int, violation: str) -> None:
        # nginx refuses these before HBS sees them, hence HTML and a closed connection.
        self.server.state.update(entry, violations=[violation])
        self._send_html(status, close=True)

    def _unknown_path(self, entry: dict[str, Any], raw: bytes) -> None:
        text, body, _ = parse_body(raw)
        path = urlsplit(self.path).path
        self.server.state.update(entry, body_text=text, body=body, violations=[f"path: {path!r} is not an OICP remote-stop path"])
        self._send_json(404, oicp_fault("300", "Data not found"))

    def _remote_stop(self, entry: dict[str, Any], external_id: str, raw: bytes) -> str:
        text, body, parse_errors = parse_body(raw)
        violations = content_type_violations(self.headers.get("Content-Type")) + parse_errors
        if not parse_errors:  # field rules only make sense for a parsed body
            violations += remote_stop_violations(body) + provider_violations(external_id, body)
        self.server.state.update(entry, body_text=text, body=body, violations=violations)
        if violations:
            extended = "eRoamingAuthorizeRemoteStop_V2.1 request does not conform to OICP 2.3"
            self._send_json(400, fault_body("Validation error", extended, violations))
            return "answered"
        behaviour, matched_by = self.server.state.lookup(body["EvseID"])
        self.server.state.update(entry, behaviour=behaviour, matched_by=matched_by)
        return self._behave(behaviour, body)

    # ---- behaviours

    def _behave(self, behaviour: Behaviour, request: dict[str, Any]) -> str:
        action = behaviour["action"]
        outcome = self._hold(behaviour["delay_seconds"])  # for no_answer, the time the connection is held
        if action == "no_answer" or outcome != "elapsed":
            self.close_connection = True  # close without any answer
            return "no_answer" if outcome == "elapsed" else outcome
        if action == "reset":
            self._reset()
            return "reset"
        self._answer(action, behaviour, request)
        return "answered"

    def _answer(self, action: str, behaviour: Behaviour, request: dict[str, Any]) -> None:
        info = behaviour.get("additional_info")
        if action == "accept":
            self._send_json(200, acknowledgement(request, True, "000", info))
        elif action == "reject":
            self._send_json(200, acknowledgement(request, False, behaviour["code"], info))
        elif action == "http_error":
            self._http_error(behaviour["http_status"])
        elif action == "html_error":
            self._send_html(behaviour["http_status"])
        elif action == "non_json":
            self._send(200, b"Result=true;StatusCode=000\n", "text/plain;charset=UTF-8")
        elif action == "wrong_shape":
            self._send_json(200, {"status": "ok"})
        else:  # pragma: no cover - normalise_behaviour only lets known actions through
            raise AssertionError(action)

    def _http_error(self, status: int) -> None:
        """The body type HBS documents for each HTTP error (DIGEST §3)."""
        if status == 500:
            self._send_json(500, fault_body("Processing error", "Internal error while processing the request"))
        elif status == 401:
            self._send_json(401, oicp_fault("017", "Call not authorized"))
        elif status == 404:
            self._send_json(404, oicp_fault("300", "Data not found"))
        elif status == 403:
            self._send(403, b"", None)
        elif status == 400:  # nginx refusing the TLS client certificate (DIGEST §3), not OICP JSON
            self._send_html(400, "The SSL certificate error")
        else:
            self._send_html(status)

    def _hold(self, seconds: float) -> str:
        """Wait `seconds` without answering: "elapsed", "client_gone" or "shutdown".

        Polls so a disconnecting client or a server shutdown ends the wait promptly.
        """
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "elapsed"
            if self.server.stopping.is_set():
                return "shutdown"
            if self._client_gone(min(remaining, 0.05)):
                return "client_gone"

    def _client_gone(self, wait: float) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], wait)
            if not readable:
                return False
            data = self.connection.recv(4096)  # a pipelined request or stray bytes: dropped
            return not data
        except (OSError, ValueError):
            return True

    def _reset(self) -> None:
        """Close with SO_LINGER 0: the kernel sends RST, so the client sees a connection reset."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()  # the fd really closes when finish() closes rfile

    # ---- control API

    def _control(self) -> None:
        url = urlsplit(self.path)
        route = (self.command, url.path.rstrip("/"))
        state = self.server.state
        if route == ("GET", "/_sim/health"):
            self._send_json(200, {"ok": True})
        elif route == ("GET", "/_sim/behaviours"):
            self._send_json(200, state.get_behaviours())
        elif route in (("PUT", "/_sim/behaviours"), ("PATCH", "/_sim/behaviours")):
            self._control_behaviours(state.replace_behaviours if self.command == "PUT" else state.patch_behaviours)
        elif route == ("GET", "/_sim/received"):
            query = parse_qs(url.query)
            self._send_json(
                200,
                state.received_list(
                    evse_id=query.get("evse_id", [None])[0],
                    session_id=query.get("session_id", [None])[0],
                ),
            )
        elif route == ("DELETE", "/_sim/received"):
            self._send_json(200, {"cleared": state.clear_received()})
        elif url.path.rstrip("/") in ("/_sim/health", "/_sim/behaviours", "/_sim/received"):
            self._drain_control_body()
            self._send_json(405, {"error": f"{self.command} is not allowed on {url.path}"})
        else:
            self._drain_control_body()
            self._send_json(404, {"error": f"unknown control path {url.path}"})

    def _drain_control_body(self) -> None:
        length = self._content_length() or 0
        if length:
            self._drain(length)

    def _control_behaviours(self, apply: Callable[[object], dict[str, Any]]) -> None:
        length = self._content_length()
        if length is None or length > MAX_CONTROL_BODY_BYTES:
            self._send_json(400, {"error": "Content-Length missing, invalid or above 1 MiB"}, close=True)
            return
        try:
            data = json.loads(self.rfile.read(length).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._send_json(400, {"error": f"body is not UTF-8 JSON: {exc}"})
            return
        try:
            self._send_json(200, apply(data))
        except BehaviourError as exc:
            self._send_json(400, {"error": str(exc)})


class SimulatorServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with the simulator's state; handler threads are daemons so delays never block exit."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, state: SimulatorState, log_requests: bool = False) -> None:
        self.state = state
        self.log_requests = log_requests
        self.stopping = threading.Event()  # tells delayed/held requests to give up on shutdown
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), SimulatorHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall; we do not need it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in str(host) else f"http://{host}:{port}"

    def shutdown(self) -> None:
        self.stopping.set()
        super().shutdown()


def make_server(
    host: str = "127.0.0.1",
    port: int = 0,
    behaviours: BehaviourTable | Mapping[str, Any] | None = None,
    log_requests: bool = False,
) -> SimulatorServer:
    """A bound, not yet serving simulator; port 0 picks a free port (see `.url`)."""
    if behaviours is not None and not isinstance(behaviours, BehaviourTable):
        behaviours = BehaviourTable.from_json(behaviours)
    return SimulatorServer(host, port, SimulatorState(behaviours), log_requests=log_requests)


def serve_in_thread(server: SimulatorServer) -> threading.Thread:
    """Serve in a daemon thread; stop with server.shutdown() then server.server_close()."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="hubject-simulator", daemon=True)
    thread.start()
    return thread


# --------------------------------------------------------------------------------------------------
# CLI


def is_loopback(host: str) -> bool:
    """True when every address `host` resolves to is loopback (0.0.0.0 and "" are not)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sessions.oicp.simulator", description="Hubject HBS simulator (OICP 2.3 remote stop)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--config", help="behaviour table JSON (PUT format); with --demo it is merged over the demo")
    parser.add_argument("--demo", action="store_true", help="load DEMO_BEHAVIOURS (the portal's demo CPOs)")
    parser.add_argument("--allow-non-loopback", action="store_true", help="allow binding to a non-loopback address")
    parser.add_argument("--quiet", action="store_true", help="do not log requests to stderr")
    return parser.parse_args(argv)


def _load_table(args: argparse.Namespace) -> BehaviourTable:
    table = BehaviourTable.from_json(DEMO_BEHAVIOURS) if args.demo else BehaviourTable()
    if args.config:
        with open(args.config, encoding="utf-8") as fh:
            data = json.load(fh)
        table = table.merged(data) if args.demo else BehaviourTable.from_json(data)
    return table


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if not args.allow_non_loopback and not is_loopback(args.host):
        print(f"refusing to listen on non-loopback host {args.host!r} (use --allow-non-loopback)", file=sys.stderr)
        return 2
    try:
        table = _load_table(args)
    except (OSError, json.JSONDecodeError, BehaviourError) as exc:
        print(f"cannot load behaviours: {exc}", file=sys.stderr)
        return 2
    server = make_server(args.host, args.port, table, log_requests=not args.quiet)
    stop = threading.Event()
    # Signal handlers only set a flag: shutdown() must not run on the thread that serves.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    thread = serve_in_thread(server)
    print(f"Hubject simulator listening on {server.url}", flush=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
    print("Hubject simulator stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
