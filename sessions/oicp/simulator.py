"""A Hubject HBS simulator (OICP 2.3), with the CPOs behind it, on loopback only.

Used for the demo, for agents' training (sandbox mode) and as the test double of the integration
tests. It answers the remote-stop path the way HBS does (DIGEST §1-§3): acknowledgements with
HTTP 200, FaultBody / OicpERoamingFault JSON for HTTP errors, nginx HTML pages for gateway errors,
plus the network failures a real HBS connection can show (no answer, connection reset).

It plays the real world by default:
- HBS answers `400 Session is invalid` (HTTP 200, Result false) to an "accept" stop whose SessionID
  it never issued or whose CDR it already has (the session is closed). SessionIDs are compared
  exactly as given, case included. Issued = learned via POST /_sim/sessions, the demo sessions
  file, or started by the simulated CPOs themselves. The other actions model failures that happen
  whatever the SessionID, so they answer as configured. `--tidy` (or "tidy": true in the table)
  turns the check off: every SessionID is accepted, as in the simulator's first versions.
- HBS waits `cpo_window_seconds` (60 s, like HBS) for the CPO: an accept, reject or no_answer
  whose delay_seconds is longer gets `310 Partner did not respond` (HTTP 200, Result false) when
  the window ends. A CPO that accepts that late still ends the session afterwards (End, CDR).
  A no_answer with "hang": true holds the connection for its whole delay (HBS itself silent).

It also plays the CPOs (DIGEST §5.2-§5.4): with --portal-url it pushes ChargingNotifications
(Start and Progress for the sessions it runs; End after an accepted stop) and then the CDR to the
portal's inbound endpoints, and it answers eRoamingGetChargeDetailRecords_V2.2 (paged) over every
CDR it made, pushed or not. A behaviour with "confirm": false accepts stops but never ends the
session (no End, no CDR). Pushes run in background threads, are retried twice on transport errors
and 5xx, then dropped and logged: a portal that is down never stops the simulator. Messages are
tidy unless a behaviour asks for the quirks real CPOs show (see below).

Run:  python -m sessions.oicp.simulator [--host 127.0.0.1] [--port 8090] [--config FILE.json] [--demo]
          [--tidy] [--cpo-window 60]
          [--portal-url http://127.0.0.1:8000] [--push-delay 3] [--cdr-delay 1] [--progress-interval 60]
          [--demo-sessions-file var/demo-sessions.json] [--new-session-interval 0]

Stdlib only, and deliberately no Django: it must start without settings, in its own process.

Behaviour table (PUT format; `--config` file, /_sim/behaviours):
    {"default": {...}, "operators": {"DE*ABC": {...}}, "evses": {"DE*ABC*E1": {...}},
     "tidy": false, "cpo_window_seconds": 60}
  A PUT without "tidy"/"cpo_window_seconds" goes back to the values the simulator started with
  (--tidy, --cpo-window); a PATCH keeps the current ones. A behaviour (exact EvseID, then the
  EVSE's OperatorID, then default) has these keys:
    action            accept | reject | http_error | html_error | non_json | wrong_shape | no_answer | reset
    delay_seconds     wait before answering (no_answer: how long the connection is held, default 600)
    code              reject: the OICP code ("400", "501", ...)
    http_status       http_error / html_error: the HTTP status
    additional_info   accept / reject: StatusCode.AdditionalInfo
    confirm           accept: false = the CPO never ends the session (no End, no CDR)
    hang              no_answer: true = hold for delay_seconds even past the CPO window (no 310)
    cpo_window_seconds  this CPO's window, instead of the table's
  and keys shaping what the CPO pushes, whatever the action:
    cable_stuck_after_seconds  charging ends by itself this long after the session starts: End is
                      pushed, the cable stays locked (no CDR) until a stop is accepted; then the CDR
                      alone follows (no second End)
    error_types       Error notifications to push, one per session, cycling through the list:
                      "ConnectorError", "CriticalError", "Connector Error" (Hubject's sample spelling)
    error_after_seconds  when, after the session starts (default 10)
    hub_operator_id   a hub operator (e.g. "DE*HUB") sending for this CPO: notifications carry its
                      OperatorID, CDRs carry HubOperatorID and are pushed to /operators/{hub}/...
    quirks            a list of: eichrecht, eichrecht_over_10, float_noise, four_decimals,
                      float_duration, explicit_nulls, upper_case_session_ids, long_product_id,
                      no_operator_id (QUIRKS describes each)

Control API (JSON), for tests and trainers:
    GET    /_sim/health                      {"ok": true}
    GET    /_sim/behaviours                  the behaviour table
    PUT    /_sim/behaviours                  replace it (format above)
    PATCH  /_sim/behaviours                  merge into it (a null entry removes that operator/EVSE)
    GET    /_sim/received[?evse_id=&session_id=]   requests received outside /_sim/, oldest first
                                             ("hbs_answer" says when HBS answered 400 or 310 itself)
    DELETE /_sim/received                    clear that log
    GET    /_sim/sessions                    sessions the CPOs run, with their state and energy
    POST   /_sim/sessions                    add sessions (JSON list; Start + Progress are pushed);
                                             an entry without SessionID gets one issued by its CPO,
                                             returned in "issued"
    GET    /_sim/cdrs                        every CDR HBS holds (generated or added), with "forwarded"
    POST   /_sim/cdrs                        add CDRs that were never pushed (JSON list; need ChargingEnd)
    DELETE /_sim/cdrs                        forget them
    GET    /_sim/pushed[?session_id=&kind=]  what was pushed to the portal: url, status, body, answer
    DELETE /_sim/pushed                      clear that log
"""

from __future__ import annotations

import argparse
import collections
import copy
import hashlib
import heapq
import ipaddress
import json
import math
import random
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
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

from sessions.oicp.ids import SESSION_ID as SESSION_ID_PATTERN
from sessions.oicp.ids import (
    is_evse_id,
    is_operator_id,
    is_provider_id,
    operator_id_from_evse_id,
    remote_stop_violations,
)
from sessions.oicp.status_codes import HUBJECT_DESCRIPTIONS

Behaviour = dict[str, Any]

REMOTE_STOP_PATH = re.compile(r"^/api/oicp/charging/v21/providers/(?P<external_id>[^/]+)/authorize-remote/stop$")
CONTROL_PREFIX = "/_sim/"
CONTROL_PATHS = ("/_sim/health", "/_sim/behaviours", "/_sim/received", "/_sim/sessions", "/_sim/cdrs", "/_sim/pushed")
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
# HBS gives the CPO 60 s to answer a forwarded stop, then answers 310 itself (DIGEST §3).
DEFAULT_CPO_WINDOW_SECONDS = 60.0
# Answers that come from the CPO, so they are subject to that window; the other actions are HBS's own.
CPO_ACTIONS = ("accept", "reject", "no_answer")
# ErrorType values CPOs send: the enum, and the spelling of Hubject's own published sample (DIGEST §8.11).
ERROR_TYPES = ("ConnectorError", "CriticalError", "Connector Error")
DEFAULT_ERROR_AFTER_SECONDS = 10.0
# Messages as real CPOs send them (DIGEST §8, §9); a behaviour picks them with "quirks": [...].
QUIRKS = {
    "eichrecht": "CDRs carry SignedMeteringValues (Start, Progress..., End; at most 10) and "
    "CalibrationLawVerificationInfo (German calibration law)",
    "eichrecht_over_10": "as eichrecht, with 15 SignedMeteringValues (the spec allows 10)",
    "float_noise": "kWh values with binary float noise, e.g. 1234.5000000000002",
    "four_decimals": "kWh values with 4 decimals, e.g. 12.3456 (the spec has 3)",
    "float_duration": "ChargingDuration as a float, e.g. 48000.0 (the spec has an integer)",
    "explicit_nulls": "optional fields sent as JSON null instead of left out",
    "upper_case_session_ids": "the sessions this CPO starts have upper-case GUIDs as SessionIDs",
    "long_product_id": "a PartnerProductID longer than 50 characters (the spec's limit)",
    "no_operator_id": "notifications without OperatorID",
}
BEHAVIOUR_KEYS = {
    "action", "code", "delay_seconds", "http_status", "additional_info", "confirm", "hang", "cpo_window_seconds",
    # what the CPO pushes, whatever the action
    "quirks", "hub_operator_id", "cable_stuck_after_seconds", "error_types", "error_after_seconds",
}
TABLE_KEYS = {"default", "operators", "evses", "tidy", "cpo_window_seconds"}


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
    confirm = raw.get("confirm")
    if confirm is not None and not isinstance(confirm, bool):
        raise BehaviourError(f"{where}: confirm must be true or false")
    if action == "accept":
        # After an accepted stop the CPO ends the session: End notification, then the CDR.
        # false: a CPO that accepts stops but never confirms them (no End, no CDR, ever).
        result["confirm"] = True if confirm is None else confirm
    elif confirm is not None:
        raise BehaviourError(f"{where}: confirm only applies to accept, not {action}")
    _hang(raw, action, where, result)
    if raw.get("cpo_window_seconds") is not None:
        result["cpo_window_seconds"] = _cpo_window(raw["cpo_window_seconds"], f"{where}: cpo_window_seconds")
    _cpo_messages(raw, where, result)
    return result


def _hang(raw: Mapping[str, Any], action: str, where: str, result: Behaviour) -> None:
    hang = raw.get("hang")
    if hang is None:
        return
    if not isinstance(hang, bool):
        raise BehaviourError(f"{where}: hang must be true or false")
    if action != "no_answer":
        raise BehaviourError(f"{where}: hang only applies to no_answer, not {action}")
    result["hang"] = hang


def _cpo_window(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_DELAY_SECONDS:
        raise BehaviourError(f"{where} must be a number above 0 and at most {MAX_DELAY_SECONDS:g}")
    return float(value)


def _seconds_key(raw: Mapping[str, Any], key: str, where: str, default: float = 0.0) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_DELAY_SECONDS:
        raise BehaviourError(f"{where}: {key} must be a number between 0 and {MAX_DELAY_SECONDS:g}")
    return float(value)


def _cpo_messages(raw: Mapping[str, Any], where: str, result: Behaviour) -> None:
    """Keys that shape what the CPO pushes; they combine with any action."""
    quirks = raw.get("quirks")
    if quirks is not None:
        if not isinstance(quirks, list) or not all(isinstance(q, str) and q in QUIRKS for q in quirks):
            raise BehaviourError(f"{where}: quirks must be a list of {sorted(QUIRKS)}")
        result["quirks"] = list(dict.fromkeys(quirks))  # each once, in the given order
    hub = raw.get("hub_operator_id")
    if hub is not None:
        if not is_operator_id(hub):
            raise BehaviourError(f"{where}: hub_operator_id {hub!r} is not an OperatorID such as DE*ABC")
        result["hub_operator_id"] = hub.upper()
    if raw.get("cable_stuck_after_seconds") is not None:
        result["cable_stuck_after_seconds"] = _seconds_key(raw, "cable_stuck_after_seconds", where)
    errors = raw.get("error_types")
    if errors is not None:
        if not isinstance(errors, list) or not errors or not all(e in ERROR_TYPES for e in errors):
            raise BehaviourError(f"{where}: error_types must be a non-empty list of {list(ERROR_TYPES)}")
        result["error_types"] = list(errors)
        result["error_after_seconds"] = _seconds_key(raw, "error_after_seconds", where, DEFAULT_ERROR_AFTER_SECONDS)
    elif raw.get("error_after_seconds") is not None:
        raise BehaviourError(f"{where}: error_after_seconds only applies with error_types")


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
    """Which behaviour answers a request: exact EvseID, then the EVSE's OperatorID, then the default.

    Two table-wide options: `tidy` (accept stops for any SessionID) and `cpo_window_seconds`.
    """

    default: Behaviour = field(
        default_factory=lambda: {"action": "accept", "delay_seconds": 0.0, "code": "000", "confirm": True}
    )
    operators: dict[str, Behaviour] = field(default_factory=dict)
    evses: dict[str, Behaviour] = field(default_factory=dict)
    tidy: bool = False
    cpo_window_seconds: float = DEFAULT_CPO_WINDOW_SECONDS

    @classmethod
    def from_json(cls, data: object, **options: Any) -> "BehaviourTable":
        """Build from the PUT format; `options` (tidy, cpo_window_seconds) apply where `data` has none.

        Raises BehaviourError with a readable message.
        """
        return cls(**options).merged(data)

    def to_json(self) -> dict[str, Any]:
        return copy.deepcopy({"default": self.default, "operators": self.operators, "evses": self.evses,
                              **self.options()})

    def options(self) -> dict[str, Any]:
        return {"tidy": self.tidy, "cpo_window_seconds": self.cpo_window_seconds}

    def merged(self, data: object) -> "BehaviourTable":
        """A new table with `data` merged into this one (PATCH; PUT merges into an empty table)."""
        if not isinstance(data, Mapping):
            raise BehaviourError("behaviour table: must be a JSON object with default, operators, evses")
        unknown = sorted(set(data) - TABLE_KEYS)
        if unknown:
            raise BehaviourError(f"behaviour table: unknown key(s) {unknown}; allowed: {sorted(TABLE_KEYS)}")
        base = BehaviourTable(**self._copy_fields())
        if data.get("default") is not None:
            base.default = normalise_behaviour(data["default"], "default")
        _merge_map(base.operators, data.get("operators"), "operators", is_operator_id, "an OperatorID such as DE*ABC")
        _merge_map(base.evses, data.get("evses"), "evses", is_evse_id, "an EvseID such as DE*ABC*E123")
        if data.get("tidy") is not None:
            if not isinstance(data["tidy"], bool):
                raise BehaviourError("behaviour table: tidy must be true or false")
            base.tidy = data["tidy"]
        if data.get("cpo_window_seconds") is not None:
            base.cpo_window_seconds = _cpo_window(data["cpo_window_seconds"], "behaviour table: cpo_window_seconds")
        return base

    def _copy_fields(self) -> dict[str, Any]:
        return {"default": dict(self.default), "operators": dict(self.operators), "evses": dict(self.evses),
                **self.options()}

    def lookup(self, evse_id: str | None) -> tuple[Behaviour, str]:
        """The behaviour for an EvseID and what matched ("evse:…", "operator:…" or "default").

        The behaviour comes with the CPO window that applies to it filled in.
        """
        behaviour, matched_by = self._match(evse_id)
        behaviour.setdefault("cpo_window_seconds", self.cpo_window_seconds)
        return behaviour, matched_by

    def _match(self, evse_id: str | None) -> tuple[Behaviour, str]:
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
        # hang: HBS itself is silent, so no 310 after the CPO window (DE*LAT shows that one).
        "behaviour": {"action": "no_answer", "hang": True},
        "summary": "Hubject never answers: the stop times out and its outcome is unknown.",
    },
    {
        "operator_id": "FR*ERR",
        "name": "Erreur Recharge",
        "behaviour": {"action": "http_error", "http_status": 503},
        "summary": "Hubject is unavailable (HTTP 503): the stop was not sent to the operator.",
    },
    {
        "operator_id": "DE*NCF",
        "name": "Nie-Confirm Strom",
        "behaviour": {"action": "accept", "confirm": False},
        "summary": "Stops are accepted (code 000), but the operator never confirms them: no End "
        "notification and no charge detail record arrive, so the stop becomes unconfirmed.",
    },
    {
        "operator_id": "DE*LAT",
        "name": "Lahm Laden",
        "behaviour": {"action": "accept", "delay_seconds": 90},
        "summary": "The operator answers after 90 s, too late: Hubject gives up after 60 s with 310 (partner "
        "did not respond). The operator still stops the session: End and CDR arrive about 30 s after "
        "the 310. Look for them before you retry.",
    },
    {
        "operator_id": "DE*CBL",
        "name": "Kabelklemme Laden",
        "behaviour": {"action": "accept", "cable_stuck_after_seconds": 30},
        "summary": "Cable stuck: charging ends by itself (End notification about 30 s after the session "
        "starts) but the car stays plugged in, with no charge detail record, until you send a stop. "
        "The operator accepts it (000) and then sends the CDR.",
    },
    {
        "operator_id": "DE*FLT",
        "name": "Fehlerstrom Technik",
        "behaviour": {"action": "accept", "error_types": list(ERROR_TYPES), "error_after_seconds": 20},
        "summary": "Chargers report faults: an Error notification (ConnectorError, CriticalError, or "
        "\"Connector Error\" as Hubject's own sample spells it) about 20 s after the session starts. "
        "Stops work (000).",
    },
    {
        "operator_id": "DE*MSY",
        "name": "Messy Mobility",
        "behaviour": {"action": "accept",
                      "quirks": ["float_noise", "float_duration", "explicit_nulls", "long_product_id",
                                 "eichrecht_over_10"]},
        "summary": "Stops work (000). Untidy messages, as many real CPOs send them: kWh values with float "
        "noise (1234.5000000000002), ChargingDuration as 48000.0, explicit nulls, a product ID over 50 "
        "characters, and CDRs with 15 signed meter values (Eichrecht).",
    },
    {
        "operator_id": "DE*SUB",
        "name": "Subnetz Strom",
        "behaviour": {"action": "accept", "hub_operator_id": "DE*HUB", "quirks": ["four_decimals", "eichrecht"]},
        "summary": "Stops work (000). A sub-operator of the hub DE*HUB: its notifications carry OperatorID "
        "DE*HUB and its CDRs (HubOperatorID DE*HUB, Eichrecht signed values) come on the hub's path; "
        "kWh values have 4 decimals (12.3456).",
    },
    {
        "operator_id": "FR*MAJ",
        "name": "Majuscule Recharge",
        "behaviour": {"action": "accept", "quirks": ["upper_case_session_ids", "no_operator_id"]},
        "summary": "Stops work (000) if they carry the SessionID exactly as sent: the operator's new sessions "
        "have upper-case SessionIDs, and Hubject answers 400 (session is invalid) to any other spelling. "
        "Its notifications carry no OperatorID.",
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
        # A PUT that names no option goes back to these: what the simulator was started with (CLI).
        self.startup_options = self.behaviours.options()
        self.received: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_received)
        self._seq = 0

    def get_behaviours(self) -> dict[str, Any]:
        with self.lock:
            return self.behaviours.to_json()

    def replace_behaviours(self, data: object) -> dict[str, Any]:
        table = BehaviourTable.from_json(data, **self.startup_options)  # validate outside the lock
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

    def tidy(self) -> bool:
        with self.lock:
            return self.behaviours.tidy

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
# The CPO behind HBS: sessions it runs, the notifications and CDRs it pushes (via HBS) to the EMP,
# and the CDR store that eRoamingGetChargeDetailRecords pages through (DIGEST §5.2-§5.4).

NOTIFICATION_PATH = "/api/oicp/notificationmgmt/v11/charging-notifications"
CDR_PUSH_PATH = "/api/oicp/cdrmgmt/v22/operators/{operator_id}/charge-detail-record"
CDR_PULL_PATH = re.compile(
    r"^/api/oicp/cdrmgmt/v22/providers/(?P<provider_id>[^/]+)/get-charge-detail-records-request$"
)
DEFAULT_PAGE_SIZE = 20  # HBS's default page size
MAX_PAGE_SIZE = 2000  # HBS's maximum page size
MAX_PUSHED = 10_000
MAX_CDRS = 100_000
MAX_METER_VALUES_IN_BETWEEN = 20
MAX_ENERGY_WH = 80_000  # a full battery: energy stops growing here
POWERS_W = (3_700, 7_400, 11_000, 22_000, 50_000)
PARTNER_ID_MAX = 250
# EvcoID (DIGEST §6), ISO or DIN.
EVCO_ID = re.compile(
    r"^(([A-Za-z]{2}\-?[A-Za-z0-9]{3}\-?C[A-Za-z0-9]{8}\-?[\d|A-Za-z])|"
    r"([A-Za-z]{2}[\*|\-]?[A-Za-z0-9]{3}[\*|\-]?[A-Za-z0-9]{6}[\*|\-]?[\d|X]))$"
)
# OICP Date/Time: ISO 8601 with an offset (or Z); HBS does not normalise values without one (DIGEST §8.16).
OICP_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
# A charge point sends its local offset; the demo CPOs are in these countries.
COUNTRY_ZONES = {"DE": "Europe/Berlin", "NL": "Europe/Amsterdam", "AT": "Europe/Vienna", "FR": "Europe/Paris"}
SESSION_FIELDS = {"SessionID", "EvseID", "OperatorID", "EMPPartnerSessionID", "CPOPartnerSessionID", "ChargingStart"}
GET_CDRS_FIELDS = {"ProviderID", "From", "To", "SessionID", "OperatorID", "CDRForwarded", "CDRForwarder"}


def parse_oicp_datetime(value: object) -> datetime | None:
    """An aware datetime for an OICP Date/Time string with offset; None for anything else."""
    if not isinstance(value, str) or not OICP_DATETIME.fullmatch(value):
        return None
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    text = re.sub(r"\.(\d{6})\d+", r".\1", text)  # fromisoformat takes at most microseconds
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _zone_for(operator_id: str) -> Any:
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(COUNTRY_ZONES.get(operator_id[:2].upper(), "UTC"))
    except Exception:  # noqa: BLE001 - no tz database: UTC still has an offset
        return timezone.utc


def _kwh(wh: int) -> float:
    """kWh with at most 3 decimals, as a JSON number (Decimal(,3) in OICP)."""
    return wh / 1000


def evco_id_for(provider_id: str, key: str) -> str:
    """A contract ID of the EMP's customer (ISO form, e.g. DE-EMP-C1A2B3C4D-7), stable per key."""
    match = re.fullmatch(r"([A-Za-z]{2})[\*|-]?([A-Za-z0-9]{3})", provider_id or "")
    country, party = (match.group(1), match.group(2)) if match else ("DE", "EMP")
    instance = uuid.uuid5(uuid.NAMESPACE_URL, key).hex[:8].upper()
    check = sum(ord(c) for c in instance) % 10
    return f"{country.upper()}-{party.upper()}-C{instance}-{check}"


# --------------------------------------------------------------------------------------------------
# Messages as real CPOs send them: the tidy message, then the quirks its CPO's behaviour asks for
# (DIGEST §8, §9). HBS forwards them unchanged, so the EMP sees them as sent.

KWH_FIELDS = ("MeterValueStart", "MeterValueEnd", "ConsumedEnergy", "ConsumedEnergyProgress")
# Optional fields a CPO with "explicit_nulls" sends as null when it has no value for them.
OPTIONAL_FIELDS = ("CPOPartnerSessionID", "EMPPartnerSessionID", "PartnerProductID")
OPTIONAL_FIELDS_BY_KIND = {
    "End": ("PenaltyTimeStart",),
    "CDR": ("HubOperatorID", "HubProviderID", "SignedMeteringValues", "CalibrationLawVerificationInfo"),
}
# A tariff name as some CPOs send it; OICP's ProductIDType allows 50 characters.
LONG_PRODUCT_ID = "AC 22 kW Ad-hoc Roaming Tarif inkl. Blockiergebuehr ab 240 Minuten (Standort Nord)"
ERROR_INFO = {
    "ConnectorError": "Connector 1: the plug lock did not release",
    "CriticalError": "Charging station restarted after a residual current fault",
    "Connector Error": "Plug was not connected, EVSEID timed out reached",  # Hubject's sample text
}
SIGNED_VALUES_OVER_10 = 15
MAX_SIGNED_VALUES = 10  # the spec's limit


def shape_message(kind: str, body: dict[str, Any], session: "SimSession", behaviour: Mapping[str, Any]) -> dict:
    """`body` (a tidy Start/Progress/End/Error notification or CDR) as this CPO sends it."""
    quirks = behaviour.get("quirks") or ()
    hub = behaviour.get("hub_operator_id")
    if "long_product_id" in quirks:
        body["PartnerProductID"] = LONG_PRODUCT_ID
    if kind == "CDR":
        if hub:
            body["HubOperatorID"] = hub
        if "eichrecht" in quirks or "eichrecht_over_10" in quirks:
            count = SIGNED_VALUES_OVER_10 if "eichrecht_over_10" in quirks else None
            body.update(eichrecht_fields(session, count))
    elif hub:
        body["OperatorID"] = hub  # a hub sends for its sub-operators under its own ID (Hubject's samples)
    if "no_operator_id" in quirks:
        body.pop("OperatorID", None)
    if "four_decimals" in quirks:
        # A meter reading 0.1 Wh: e.g. 12.345 → 12.3456.
        _map_kwh(body, lambda kwh: round(kwh + 0.0006, 4))
    if "float_noise" in quirks:
        # What a serialiser prints after float arithmetic: the next float up, e.g. 1234.5000000000002.
        _map_kwh(body, lambda kwh: math.nextafter(kwh, math.inf) if kwh else kwh)
    if "float_duration" in quirks and isinstance(body.get("ChargingDuration"), int):
        body["ChargingDuration"] = float(body["ChargingDuration"])
    if "explicit_nulls" in quirks:
        for name in OPTIONAL_FIELDS + OPTIONAL_FIELDS_BY_KIND.get(kind, ()):
            body.setdefault(name, None)
    return body


def _map_kwh(body: dict[str, Any], change: Callable[[float], float]) -> None:
    for name in KWH_FIELDS:
        if isinstance(body.get(name), (int, float)):
            body[name] = change(body[name])
    between = body.get("MeterValueInBetween")
    if isinstance(between, dict) and isinstance(between.get("meterValues"), list):
        between["meterValues"] = [change(v) for v in between["meterValues"]]


def eichrecht_fields(session: "SimSession", count: int | None = None) -> dict[str, Any]:
    """SignedMeteringValues (Start, Progress..., End) and CalibrationLawVerificationInfo of a CDR.

    `count` None: one Progress value per meter reading in between, at most 10 values in all.
    The signatures are not real (the EMP stores and shows them, it does not verify them).
    """
    start, end = session.charging_start, session.charging_end or datetime.now(timezone.utc)
    start_wh, end_wh = session.meter_start_wh, session.meter_start_wh + session.energy_wh(end)
    if count is None:
        count = min(MAX_SIGNED_VALUES, 2 + len(session.meter_values_wh))
    values = []
    for index in range(count):
        share = index / (count - 1)
        status = "Start" if index == 0 else "End" if index == count - 1 else "Progress"
        reading_wh = start_wh + round((end_wh - start_wh) * share)
        values.append({"SignedMeteringValue": _ocmf(session, index, status, reading_wh, start + (end - start) * share),
                       "MeteringStatus": status})
    key = hashlib.sha256(session.operator_id.encode()).hexdigest().upper()
    return {
        "SignedMeteringValues": values,
        "CalibrationLawVerificationInfo": {
            "CalibrationLawCertificateID": f"PTB-SIM-{session.operator_id.replace('*', '')}-0001",
            "PublicKey": "3059301306072A8648CE3D020106082A8648CE3D030107034200" + "04" + key + key[::-1],
            "MeteringSignatureUrl": "https://www.safe-ev.de/de/transparenzsoftware.php",
            "MeteringSignatureEncodingFormat": "OCMF",
            "SignedMeteringValuesVerificationInstruction": "Open the signed values with the public key in the "
            "S.A.F.E. Transparenzsoftware.",
        },
    }


def _ocmf(session: "SimSession", index: int, status: str, reading_wh: int, when: datetime) -> str:
    """One signed meter value in the Open Charge Metering Format most German meters use."""
    stamp = when.astimezone(session.zone).strftime("%Y-%m-%dT%H:%M:%S,000%z") + " S"
    payload = {
        "FV": "1.0", "GI": "SIM EICHRECHT METER", "GS": session.evse_id, "PG": f"T{index + 1}",
        "IS": True, "IT": "ISO14443", "ID": session.evco_id,
        "RD": [{"TM": stamp, "TX": {"Start": "B", "Progress": "T", "End": "E"}[status],
                "RV": reading_wh / 1000, "RI": "1-b:1.8.0", "RU": "kWh", "ST": "G"}],
    }
    data = json.dumps(payload, separators=(",", ":"))
    signature = hashlib.sha256(data.encode()).hexdigest().upper()
    return f"OCMF|{data}|" + json.dumps({"SA": "ECDSA-secp256r1-SHA256", "SD": signature}, separators=(",", ":"))


@dataclass
class SimSession:
    """A charging session the simulated CPO is running (or has ended)."""

    session_id: str
    evse_id: str
    operator_id: str
    charging_start: datetime
    evco_id: str
    power_w: int
    meter_start_wh: int
    emp_partner_session_id: str | None = None
    cpo_partner_session_id: str | None = None
    # CHARGING → ENDING (stop accepted) → ENDED (End sent) → CLOSED (CDR made); a stuck cable:
    # CHARGING → PLUGGED (End sent by itself, no CDR) → ENDED (stop accepted) → CLOSED (CDR made).
    state: str = "CHARGING"
    meter_values_wh: list[int] = field(default_factory=list)
    charging_end: datetime | None = None
    learned_from: str = "sessions"

    @property
    def zone(self) -> Any:
        return _zone_for(self.operator_id)

    def ts(self, when: datetime) -> str:
        """OICP Date/Time in the charge point's local offset, e.g. 2026-01-05T14:03:12+01:00."""
        return when.astimezone(self.zone).isoformat(timespec="seconds")

    def energy_wh(self, at: datetime) -> int:
        hours = max(0.0, (at - self.charging_start).total_seconds() / 3600)
        return min(MAX_ENERGY_WH, int(self.power_w * hours))

    def common(self) -> dict[str, Any]:
        body: dict[str, Any] = {"SessionID": self.session_id}
        if self.cpo_partner_session_id:
            body["CPOPartnerSessionID"] = self.cpo_partner_session_id
        if self.emp_partner_session_id:
            body["EMPPartnerSessionID"] = self.emp_partner_session_id
        body["Identification"] = {"RemoteIdentification": {"EvcoID": self.evco_id}}
        body["EvseID"] = self.evse_id
        return body

    def start_notification(self) -> dict[str, Any]:
        return {
            "Type": "Start",
            **self.common(),
            "ChargingStart": self.ts(self.charging_start),
            "SessionStart": self.ts(self.charging_start),
            "MeterValueStart": _kwh(self.meter_start_wh),
            "OperatorID": self.operator_id,
        }

    def progress_notification(self, now: datetime) -> dict[str, Any]:
        energy = self.energy_wh(now)
        self.meter_values_wh = (self.meter_values_wh + [self.meter_start_wh + energy])[-MAX_METER_VALUES_IN_BETWEEN:]
        return {
            "Type": "Progress",
            **self.common(),
            "ChargingStart": self.ts(self.charging_start),
            "EventOccurred": self.ts(now),
            "ChargingDuration": max(0, int((now - self.charging_start).total_seconds() * 1000)),
            "SessionStart": self.ts(self.charging_start),
            "ConsumedEnergyProgress": _kwh(energy),
            "MeterValueStart": _kwh(self.meter_start_wh),
            "MeterValueInBetween": {"meterValues": [_kwh(v) for v in self.meter_values_wh]},
            "OperatorID": self.operator_id,
        }

    def end_notification(self, now: datetime) -> dict[str, Any]:
        self.charging_end = now
        energy = self.energy_wh(now)
        return {
            "Type": "End",
            **self.common(),
            "ChargingStart": self.ts(self.charging_start),
            "ChargingEnd": self.ts(now),
            "SessionStart": self.ts(self.charging_start),
            "SessionEnd": self.ts(now),
            "ConsumedEnergy": _kwh(energy),
            "MeterValueStart": _kwh(self.meter_start_wh),
            "MeterValueEnd": _kwh(self.meter_start_wh + energy),
            "MeterValueInBetween": {"meterValues": [_kwh(v) for v in self.meter_values_wh]},
            "OperatorID": self.operator_id,
        }

    def error_notification(self, error_type: str) -> dict[str, Any]:
        return {
            "Type": "Error",
            **self.common(),
            "ErrorType": error_type,
            "ErrorAdditionalInfo": ERROR_INFO[error_type],
            "OperatorID": self.operator_id,
        }

    def charge_detail_record(self, now: datetime) -> dict[str, Any]:
        """eRoamingChargeDetailRecord_V2.2: the car was unplugged (SessionEnd) after charging ended."""
        charging_end = self.charging_end or now
        energy = self.energy_wh(charging_end)
        return {
            **self.common(),
            "ChargingStart": self.ts(self.charging_start),
            "ChargingEnd": self.ts(charging_end),
            "SessionStart": self.ts(self.charging_start),
            "SessionEnd": self.ts(max(now, charging_end)),
            "MeterValueStart": _kwh(self.meter_start_wh),
            "MeterValueEnd": _kwh(self.meter_start_wh + energy),
            "MeterValueInBetween": {"meterValues": [_kwh(v) for v in self.meter_values_wh]},
            "ConsumedEnergy": _kwh(energy),
        }

    def to_json(self) -> dict[str, Any]:
        now = datetime.now(timezone.utc)
        return {
            "SessionID": self.session_id,
            "EvseID": self.evse_id,
            "OperatorID": self.operator_id,
            "EMPPartnerSessionID": self.emp_partner_session_id,
            "CPOPartnerSessionID": self.cpo_partner_session_id,
            "ChargingStart": self.ts(self.charging_start),
            "ChargingEnd": self.ts(self.charging_end) if self.charging_end else None,
            "ConsumedEnergy": _kwh(self.energy_wh(self.charging_end or now)),
            "state": self.state,
            "learned_from": self.learned_from,
        }


def session_violations(index: int, raw: object) -> list[str]:
    """What is wrong with one entry of POST /_sim/sessions (or the demo sessions file)."""
    where = f"sessions[{index}]"
    if not isinstance(raw, Mapping):
        return [f"{where}: must be an object with SessionID, EvseID, OperatorID"]
    problems = [f"{where}.{name}: not a known field" for name in sorted(set(raw) - SESSION_FIELDS)]
    session_id = raw.get("SessionID")  # absent: the CPO issues one
    if session_id is not None and (not isinstance(session_id, str) or not SESSION_ID_PATTERN.fullmatch(session_id)):
        problems.append(f"{where}.SessionID: {session_id!r} is not a GUID-shaped SessionID")
    if not is_evse_id(raw.get("EvseID")):
        problems.append(f"{where}.EvseID: {raw.get('EvseID')!r} is not an EvseID")
    operator = raw.get("OperatorID")
    if operator is not None and not is_operator_id(operator):
        problems.append(f"{where}.OperatorID: {operator!r} is not an OperatorID")
    for name in ("EMPPartnerSessionID", "CPOPartnerSessionID"):
        value = raw.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > PARTNER_ID_MAX):
            problems.append(f"{where}.{name}: must be a string of at most {PARTNER_ID_MAX} characters")
    start = raw.get("ChargingStart")
    if start is not None and parse_oicp_datetime(start) is None:
        problems.append(f"{where}.ChargingStart: {start!r} is not a date-time with offset")
    return problems


def get_cdrs_violations(provider_id: str, query: Mapping[str, list[str]], body: Any) -> tuple[list[str], int, int]:
    """Rules of eRoamingGetChargeDetailRecords_V2.2 (DIGEST §5.4); returns (violations, page, size)."""
    problems: list[str] = []
    page, size = 0, DEFAULT_PAGE_SIZE
    for name, low, high in (("page", 0, None), ("size", 1, MAX_PAGE_SIZE)):
        values = query.get(name)
        if not values:
            continue
        try:
            number = int(values[-1])
        except ValueError:
            problems.append(f"{name}: {values[-1]!r} is not an integer")
            continue
        if number < low or (high is not None and number > high):
            limit = f"between {low} and {high}" if high is not None else f"at least {low}"
            problems.append(f"{name}: {number} must be {limit}")
        elif name == "page":
            page = number
        else:
            size = number
    if not isinstance(body, dict):
        return problems + ["body: must be a JSON object"], page, size
    provider = body.get("ProviderID")
    if provider is None:
        problems.append("ProviderID: missing (mandatory)")
    elif not is_provider_id(provider):
        problems.append(f"ProviderID: {provider!r} is not a ProviderID such as DE-ABC")
    elif provider.upper() != provider_id.upper():
        problems.append(f"ProviderID: {provider!r} does not match the providerID {provider_id!r} in the path")
    bounds = {}
    for name in ("From", "To"):
        if body.get(name) is None:
            problems.append(f"{name}: missing (mandatory)")
        elif (bounds.setdefault(name, parse_oicp_datetime(body[name]))) is None:
            problems.append(f"{name}: {body[name]!r} is not a date-time with offset (YYYY-MM-DDThh:mm:ss±hh:mm)")
    if bounds.get("From") and bounds.get("To") and bounds["From"] > bounds["To"]:
        problems.append("From: must not be after To")
    sessions = body.get("SessionID")
    if sessions is not None and (
        not isinstance(sessions, list) or not all(isinstance(s, str) and SESSION_ID_PATTERN.fullmatch(s) for s in sessions)
    ):
        problems.append("SessionID: must be a list of SessionIDs")
    operator = body.get("OperatorID")
    operators = operator if isinstance(operator, list) else [operator]  # the published snippet sends a list
    if operator is not None and not all(is_operator_id(o) for o in operators):
        problems.append(f"OperatorID: {operator!r} is not an OperatorID")
    for name in ("CDRForwarded", "CDRForwarder"):
        if body.get(name) is not None and not isinstance(body[name], bool):
            problems.append(f"{name}: must be true or false")
    problems += [f"{name}: not a field of eRoamingGetChargeDetailRecords" for name in sorted(set(body) - GET_CDRS_FIELDS)]
    return problems, page, size


def cdr_page(entries: Sequence[Mapping[str, Any]], page: int, size: int) -> dict[str, Any]:
    """The paged eRoamingChargeDetailRecords answer (Spring's Page shape, as HBS sends it)."""
    total = len(entries)
    content = [copy.deepcopy(e["cdr"]) for e in entries[page * size : (page + 1) * size]]
    total_pages = (total + size - 1) // size
    sort = {"sorted": False, "empty": True, "unsorted": True}
    return {
        "content": content,
        "pageable": {"sort": sort, "pageSize": size, "pageNumber": page, "offset": page * size, "paged": True,
                     "unpaged": False},
        "last": page >= total_pages - 1,
        "totalPages": total_pages,
        "totalElements": total,
        "first": page == 0,
        "size": size,
        "number": page,
        "numberOfElements": len(content),
        "sort": dict(sort),
        "empty": not content,
        # No "AdditionalInfo": null here: the OpenAPI's StatusCode does not allow it to be null.
        "StatusCode": {"Code": "000", "Description": HUBJECT_DESCRIPTIONS.get("000")},
    }


def http_post_json(url: str, body: Any, timeout: float) -> tuple[int | None, str, str | None]:
    """POST JSON with urllib: (HTTP status or None, answer text, error or None). Never raises."""
    import urllib.error
    import urllib.request

    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(
        url, data=data, method="POST",
        headers={"Content-Type": "application/json; charset=UTF-8", "Accept": "application/json",
                 "User-Agent": "hubject-simulator"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the portal's URL
            return response.status, response.read(64 * 1024).decode("utf-8", errors="replace"), None
    except urllib.error.HTTPError as exc:
        try:
            text = exc.read(64 * 1024).decode("utf-8", errors="replace")
        except Exception:  # noqa: BLE001
            text = ""
        return exc.code, text, None
    except Exception as exc:  # noqa: BLE001 - connection refused, timeout, bad URL: logged, never fatal
        return None, "", f"{type(exc).__name__}: {exc}"


class Scheduler:
    """One daemon thread running callables at their due time; each runs in its own daemon thread."""

    def __init__(self, stopping: threading.Event, max_running: int = 8) -> None:
        self._stopping = stopping
        self._cv = threading.Condition()
        self._heap: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = 0
        self._thread: threading.Thread | None = None
        self._slots = threading.BoundedSemaphore(max_running)

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        with self._cv:
            if self._stopping.is_set():
                return
            self._seq += 1
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), self._seq, fn, args))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sim-scheduler", daemon=True)
                self._thread.start()
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stopping.is_set():
                    wait = self._heap[0][0] - time.monotonic() if self._heap else 0.5
                    if self._heap and wait <= 0:
                        break
                    self._cv.wait(timeout=min(max(wait, 0.001), 0.5))
                if self._stopping.is_set():
                    return
                _, _, fn, args = heapq.heappop(self._heap)
            self._slots.acquire()
            threading.Thread(target=self._call, args=(fn, args), name="sim-push", daemon=True).start()

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - a bug in one push must not stop the others
            sys.stderr.write(f"simulator: background job {getattr(fn, '__name__', fn)} failed: {exc!r}\n")
        finally:
            self._slots.release()

    def wake(self) -> None:
        with self._cv:
            self._cv.notify_all()


class ChargePointOperators:
    """The CPO side: runs sessions, ends them after accepted stops, pushes to the portal, stores CDRs."""

    def __init__(
        self,
        *,
        stopping: threading.Event,
        portal_url: str | None = None,
        push_delay_seconds: float = 3.0,
        cdr_delay_seconds: float = 1.0,
        progress_interval_seconds: float = 60.0,
        new_session_interval_seconds: float = 0.0,
        max_sessions: int = 60,
        provider_id: str = "DE-EMP",
        push_timeout_seconds: float = 10.0,
        push_attempts: int = 3,
        push_backoff_seconds: float = 1.0,
        seed: int | None = None,
        behaviour_lookup: Callable[[str], tuple[Behaviour, str]] | None = None,
    ) -> None:
        self.behaviour_lookup = behaviour_lookup
        self.portal_url = portal_url.rstrip("/") if portal_url else None
        self.push_delay = push_delay_seconds
        self.cdr_delay = cdr_delay_seconds
        self.progress_interval = progress_interval_seconds
        self.new_session_interval = new_session_interval_seconds
        self.max_sessions = max_sessions
        self.provider_id = provider_id
        self.push_timeout = push_timeout_seconds
        self.push_attempts = max(1, push_attempts)
        self.push_backoff = push_backoff_seconds
        self.stopping = stopping
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        # Keyed by the SessionID exactly as issued: HBS compares IDs as given, case included.
        self.sessions: dict[str, SimSession] = {}
        self.cdrs: list[dict[str, Any]] = []
        self.cdr_session_ids: set[str] = set()  # sessions HBS holds a CDR for: closed
        self.errors_reported: collections.Counter[str] = collections.Counter()  # per operator, to cycle types
        self.pushed: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_PUSHED)
        self._seq = 0
        self.scheduler = Scheduler(stopping)

    def start(self) -> None:
        """Begin the periodic work (new demo sessions); sessions' own pushes schedule themselves."""
        if self.new_session_interval > 0:
            self.scheduler.call_later(self.new_session_interval, self._new_session_tick)

    # ---- sessions

    def add_sessions(self, entries: object, source: str = "sessions") -> dict[str, Any]:
        """Validate and add sessions (POST /_sim/sessions format); raises BehaviourError listing every problem.

        These count as sessions HBS issued. An entry without SessionID gets one from its CPO ("issued").
        """
        if not isinstance(entries, list):
            raise BehaviourError("sessions: must be a JSON list of {SessionID, EvseID, OperatorID, ...}")
        problems = [p for index, raw in enumerate(entries) for p in session_violations(index, raw)]
        if problems:
            raise BehaviourError("; ".join(problems[:50]))
        now = datetime.now(timezone.utc)
        issued = []
        prepared = []
        for raw in entries:  # outside the lock: issuing an ID looks up the CPO's behaviour
            session_id = raw.get("SessionID")
            if session_id is None:
                session_id = self._issue_session_id(raw["EvseID"])
                issued.append(session_id)
            prepared.append(self._new_sim_session(
                session_id=session_id,
                evse_id=raw["EvseID"].upper(),
                operator_id=(raw.get("OperatorID") or operator_id_from_evse_id(raw["EvseID"])).upper(),
                charging_start=parse_oicp_datetime(raw.get("ChargingStart")) or now,
                emp_partner_session_id=raw.get("EMPPartnerSessionID") or None,
                cpo_partner_session_id=raw.get("CPOPartnerSessionID") or None,
                learned_from=source,
            ))
        added, known = [], 0
        with self.lock:
            for session in prepared:
                if session.session_id in self.sessions:
                    known += 1
                    continue
                self.sessions[session.session_id] = session
                added.append(session)
        for index, session in enumerate(added):
            self._started(session, stagger=index * 0.05)
        return {"added": len(added), "already_known": known, "issued": issued}

    def _issue_session_id(self, evse_id: str) -> str:
        """A new GUID SessionID; upper case for a CPO whose behaviour has the upper_case_session_ids quirk."""
        session_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        return session_id.upper() if "upper_case_session_ids" in self._quirks(evse_id) else session_id

    def _behaviour(self, evse_id: str) -> Behaviour:
        return self.behaviour_lookup(evse_id)[0] if self.behaviour_lookup else {}

    def _quirks(self, evse_id: str) -> Sequence[str]:
        return self._behaviour(evse_id).get("quirks") or ()

    def _shaped(self, kind: str, session: SimSession, body: dict[str, Any]) -> dict[str, Any]:
        """The message as the session's CPO sends it (quirks, hub operator); call without holding the lock."""
        return shape_message(kind, body, session, self._behaviour(session.evse_id))

    def session_invalid(self, session_id: str) -> str | None:
        """Why HBS would answer "400 Session is invalid" to a stop: "never issued", "closed", or None (open).

        Compared exactly as given: HBS does not fold the case of SessionIDs.
        """
        with self.lock:
            session = self.sessions.get(session_id)
            if session_id in self.cdr_session_ids or (session is not None and session.state == "CLOSED"):
                return "closed"  # its CDR closed the HBS session (DIGEST §2, §8.5)
            return None if session is not None else "never issued"

    def _new_sim_session(self, **values: Any) -> SimSession:
        return SimSession(
            evco_id=evco_id_for(self.provider_id, values["session_id"]),
            power_w=self.rng.choice(POWERS_W),
            meter_start_wh=self.rng.randint(1_000_000, 9_000_000),
            **values,
        )

    def _started(self, session: SimSession, stagger: float = 0.0) -> None:
        """Push Start, then Progress every progress interval (spread out so they do not arrive at once).

        A cable-stuck CPO ends charging by itself later, and a faulty one reports an error; these
        change the session's state, so they are scheduled with or without a portal to push to.
        """
        behaviour = self._behaviour(session.evse_id)
        if behaviour.get("cable_stuck_after_seconds") is not None:
            self.scheduler.call_later(stagger + behaviour["cable_stuck_after_seconds"], self._charging_finished,
                                      session.session_id)
        if behaviour.get("error_types") and self.portal_url:
            self.scheduler.call_later(stagger + behaviour["error_after_seconds"], self._report_error,
                                      session.session_id)
        if not self.portal_url:
            return
        self.scheduler.call_later(stagger, self._push, "Start", session.session_id, NOTIFICATION_PATH,
                                  self._shaped("Start", session, session.start_notification()))
        if self.progress_interval > 0:
            first = self.progress_interval * (0.2 + 0.8 * self.rng.random())
            self.scheduler.call_later(first, self._progress_tick, session.session_id)

    def _progress_tick(self, session_id: str) -> None:
        with self.lock:
            session = self.sessions.get(session_id)
            if session is None or session.state != "CHARGING":
                return
            body = session.progress_notification(datetime.now(timezone.utc))
        self._push("Progress", session.session_id, NOTIFICATION_PATH, self._shaped("Progress", session, body))
        self.scheduler.call_later(self.progress_interval, self._progress_tick, session_id)

    def _charging_finished(self, session_id: str) -> None:
        """Cable stuck: charging ends (End pushed) but the car stays plugged in, without CDR, until a stop."""
        with self.lock:
            session = self.sessions.get(session_id)
            if session is None or session.state != "CHARGING":
                return
            session.state = "PLUGGED"
            body = session.end_notification(datetime.now(timezone.utc))
        if self.portal_url:
            self._push("End", session.session_id, NOTIFICATION_PATH, self._shaped("End", session, body),
                       reason="charging_finished")

    def _report_error(self, session_id: str) -> None:
        """An Error notification; the CPO's sessions take its error_types in turn, so all of them show."""
        with self.lock:
            session = self.sessions.get(session_id)
            if session is None or session.state not in ("CHARGING", "PLUGGED"):
                return
        types = self._behaviour(session.evse_id).get("error_types")
        if not types:  # the behaviour changed since the session started
            return
        with self.lock:
            error_type = types[self.errors_reported[session.operator_id] % len(types)]
            self.errors_reported[session.operator_id] += 1
        body = self._shaped("Error", session, session.error_notification(error_type))
        self._push("Error", session.session_id, NOTIFICATION_PATH, body, error_type=error_type)

    def _new_session_tick(self) -> None:
        """Demo: a driver plugs in at a random demo EVSE (Start pushed); at the cap, the oldest one finishes."""
        self.scheduler.call_later(self.new_session_interval, self._new_session_tick)
        with self.lock:
            charging = [s for s in self.sessions.values() if s.state == "CHARGING"]
        if len(charging) >= self.max_sessions:
            finishing = [s for s in charging if self._confirms(s.evse_id)]
            if finishing:
                self._end_session(min(finishing, key=lambda s: s.charging_start).session_id, reason="finished")
        operator = self.rng.choice(DEMO_OPERATORS)["operator_id"]
        entry = {  # no SessionID: the CPO issues it (as its quirks say)
            "EvseID": f"{operator}*E{self.rng.randint(1, 9999):04d}*{self.rng.randint(1, 4)}",
            "OperatorID": operator,
            "EMPPartnerSessionID": f"EMP-{self.rng.randint(100000, 999999)}",
            "CPOPartnerSessionID": f"CPO-{self.rng.randint(100000, 999999)}",
            "ChargingStart": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self.add_sessions([entry], source="new_session")

    def _confirms(self, evse_id: str) -> bool:
        return self._behaviour(evse_id).get("confirm", True) is not False

    def sessions_list(self) -> list[dict[str, Any]]:
        with self.lock:
            return [s.to_json() for s in self.sessions.values()]

    # ---- a stop was accepted: End notification, then the CDR

    def stop_accepted(self, request: Mapping[str, Any], behaviour: Behaviour) -> None:
        """The CPO ends the session after an accepted stop, unless its behaviour says confirm: false.

        Charging: End, then the CDR. A stuck cable (End already sent): the CDR alone.
        """
        if behaviour.get("confirm") is False:
            return
        with self.lock:
            session = self._find(str(request["SessionID"]))
            if session is None:  # tidy: a session the portal knows but we were never told about
                session = self._learn_from_stop(request)
            if session.state == "PLUGGED":
                session.state = "ENDED"
                next_step: tuple[Any, ...] = (self._charge_detail_record, session.session_id)
            elif session.state == "CHARGING":
                session.state = "ENDING"
                next_step = (self._end_session, session.session_id, "remote_stop")
            else:
                return  # already ending: one End and one CDR per session
        self.scheduler.call_later(self.push_delay, *next_step)

    def stop_accepted_later(self, delay: float, request: Mapping[str, Any], behaviour: Behaviour) -> None:
        """The CPO answered after HBS gave up (310), but it did act on the stop."""
        self.scheduler.call_later(delay, self.stop_accepted, dict(request), behaviour)

    def _find(self, session_id: str) -> SimSession | None:
        """Caller holds the lock. Exact ID first; then any case (only tidy stops get this far unknown)."""
        session = self.sessions.get(session_id)
        if session is None:
            folded = session_id.lower()
            session = next((s for key, s in self.sessions.items() if key.lower() == folded), None)
        return session

    def _learn_from_stop(self, request: Mapping[str, Any]) -> SimSession:
        """Caller holds the lock."""
        self.sessions[request["SessionID"]] = session = self._new_sim_session(
            session_id=request["SessionID"],
            evse_id=request["EvseID"].upper(),
            operator_id=operator_id_from_evse_id(request["EvseID"]),
            charging_start=datetime.now(timezone.utc) - timedelta(minutes=self.rng.randint(10, 120)),
            emp_partner_session_id=request.get("EMPPartnerSessionID") or None,
            cpo_partner_session_id=request.get("CPOPartnerSessionID") or None,
            learned_from="remote_stop",
        )
        return session

    def _end_session(self, session_id: str, reason: str) -> None:
        with self.lock:
            session = self.sessions.get(session_id)
            if session is None or session.state not in ("CHARGING", "ENDING"):
                return
            session.state = "ENDED"
            body = session.end_notification(datetime.now(timezone.utc))
        if self.portal_url:
            self._push("End", session.session_id, NOTIFICATION_PATH, self._shaped("End", session, body), reason=reason)
        self.scheduler.call_later(self.cdr_delay, self._charge_detail_record, session.session_id)

    def _charge_detail_record(self, session_id: str) -> None:
        behaviour = self._behaviour_of(session_id)
        with self.lock:
            session = self.sessions.get(session_id)
            if session is None or session.state == "CLOSED":
                return
            session.state = "CLOSED"
            cdr = shape_message("CDR", session.charge_detail_record(datetime.now(timezone.utc)), session, behaviour)
            entry = self._store_cdr(cdr, source="generated")
        if self.portal_url:
            # A hub operator's CDRs come on its own path, not the EvseID's operator's (DIGEST §9).
            operator_id = behaviour.get("hub_operator_id") or session.operator_id
            pushed = self._push("CDR", session.session_id, CDR_PUSH_PATH.format(operator_id=operator_id), cdr)
            with self.lock:
                entry["forwarded"] = bool(pushed.get("acknowledged"))

    def _behaviour_of(self, session_id: str) -> Behaviour:
        with self.lock:
            session = self.sessions.get(session_id)
        return self._behaviour(session.evse_id) if session is not None else {}

    # ---- the CDR store (what HBS keeps, pushed or not)

    def _store_cdr(self, cdr: dict[str, Any], source: str) -> dict[str, Any]:
        """Caller holds the lock."""
        self._seq += 1
        entry = {"seq": self._seq, "cdr": cdr, "charging_end": parse_oicp_datetime(cdr.get("ChargingEnd")),
                 "forwarded": False, "source": source}
        self.cdrs.append(entry)
        if isinstance(cdr.get("SessionID"), str):
            self.cdr_session_ids.add(cdr["SessionID"])
        del self.cdrs[:-MAX_CDRS]
        return entry

    def add_cdrs(self, cdrs: object) -> dict[str, Any]:
        """Control API: CDRs HBS holds that were never pushed. Only ChargingEnd (for the window) is required."""
        if not isinstance(cdrs, list):
            raise BehaviourError("cdrs: must be a JSON list of eRoamingChargeDetailRecord objects")
        problems = [
            f"cdrs[{index}]: must be an object with a ChargingEnd date-time with offset"
            for index, cdr in enumerate(cdrs)
            if not isinstance(cdr, dict) or parse_oicp_datetime(cdr.get("ChargingEnd")) is None
        ]
        if problems:
            raise BehaviourError("; ".join(problems[:50]))
        with self.lock:
            for cdr in cdrs:
                self._store_cdr(copy.deepcopy(cdr), source="control")
        return {"added": len(cdrs)}

    def cdrs_list(self) -> list[dict[str, Any]]:
        with self.lock:
            return [{"seq": e["seq"], "forwarded": e["forwarded"], "source": e["source"], "cdr": copy.deepcopy(e["cdr"])}
                    for e in self.cdrs]

    def clear_cdrs(self) -> int:
        with self.lock:
            count = len(self.cdrs)
            self.cdrs.clear()
            self.cdr_session_ids.clear()
            return count

    def select_cdrs(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        """CDRs whose ChargingEnd lies in [From, To], filtered like HBS, in a stable order for paging."""
        date_from, date_to = parse_oicp_datetime(body["From"]), parse_oicp_datetime(body["To"])
        sessions = {s.lower() for s in body.get("SessionID") or []}
        operators = body.get("OperatorID")
        operators = {_operator_key(o) for o in (operators if isinstance(operators, list) else [operators]) if o}
        forwarded = body.get("CDRForwarded", body.get("CDRForwarder"))
        with self.lock:
            selected = []
            for entry in self.cdrs:
                cdr = entry["cdr"]
                if not (date_from <= entry["charging_end"] <= date_to):
                    continue
                if sessions and str(cdr.get("SessionID", "")).lower() not in sessions:
                    continue
                if operators:
                    try:
                        operator = _operator_key(operator_id_from_evse_id(str(cdr.get("EvseID", ""))))
                    except ValueError:
                        continue
                    if operator not in operators:
                        continue
                if forwarded is not None and entry["forwarded"] != forwarded:
                    continue
                selected.append(entry)
        return sorted(selected, key=lambda e: (e["charging_end"], e["seq"]))

    # ---- pushing to the portal

    def _push(self, kind: str, session_id: str, path: str, body: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """POST to the portal (in the calling background thread), retrying transport failures and 5xx."""
        url = self.portal_url + path
        status, text, error, attempts = None, "", None, 0
        for attempts in range(1, self.push_attempts + 1):
            status, text, error = http_post_json(url, body, self.push_timeout)
            if status is not None and status < 500 and status not in (408, 429):
                break
            if attempts < self.push_attempts and self.stopping.wait(self.push_backoff * 2 ** (attempts - 1)):
                break
        acknowledged = None
        try:
            answer = json.loads(text) if text else None
            if isinstance(answer, dict) and isinstance(answer.get("Result"), bool):
                acknowledged = answer["Result"] and status == 200
        except ValueError:
            pass
        entry = {
            "seq": None, "kind": kind, "session_id": session_id, "url": url, "body": body, "status": status,
            "response": text[:2000], "acknowledged": acknowledged, "error": error, "attempts": attempts,
            "at": _now_iso(), **extra,
        }
        with self.lock:
            self._seq += 1
            entry["seq"] = self._seq
            self.pushed.append(entry)
        if status is None or status >= 300:
            sys.stderr.write(f"simulator: push {kind} {session_id} to {url} failed after {attempts} attempt(s): "
                             f"{error or f'HTTP {status}'}\n")
        return entry

    def pushed_list(self, session_id: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                copy.deepcopy(e) for e in self.pushed
                if (session_id is None or e["session_id"].lower() == session_id.lower())
                and (kind is None or e["kind"].lower() == kind.lower())
            ]

    def clear_pushed(self) -> int:
        with self.lock:
            count = len(self.pushed)
            self.pushed.clear()
            return count


def load_sessions_file(path: str) -> list[Any]:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if isinstance(data, dict) and "sessions" in data:
        data = data["sessions"]
    return data


# --------------------------------------------------------------------------------------------------
# HTTP server


def _cpo_too_late(behaviour: Behaviour) -> bool:
    """The CPO's answer comes after HBS's window (a hanging no_answer is HBS itself: no window)."""
    if behaviour["action"] not in CPO_ACTIONS or behaviour.get("hang"):
        return False
    return behaviour["delay_seconds"] > behaviour.get("cpo_window_seconds", DEFAULT_CPO_WINDOW_SECONDS)


class SimulatorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive like HBS; every answer carries Content-Length
    # Headers and body leave in separate writes; on a kept-alive connection Nagle's algorithm would
    # hold the body until the client's delayed ACK (40 ms on Linux), so every reused connection
    # answered 40 ms late (measured: 44 ms against 1.1 ms on a fresh connection).
    disable_nagle_algorithm = True
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
            "received_ts": time.time(),  # epoch seconds, for latency measurements
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
            "hbs_answer": None,  # HBS answered itself: "400 ..." (session) or "310 ..." (CPO window)
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
        path = urlsplit(self.path).path
        match = REMOTE_STOP_PATH.fullmatch(path)
        pull = CDR_PULL_PATH.fullmatch(path)
        if match is None and pull is None:
            self._unknown_path(entry, raw)
            return "answered"
        if pull is not None:
            if self.command != "POST":
                self.server.state.update(entry, violations=[f"method: {self.command} is not allowed, use POST"])
                self._send_json(405, fault_body("Method not allowed", f"Request method '{self.command}' not supported"))
                return "answered"
            return self._get_cdrs(entry, unquote(pull["provider_id"]), raw)
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
        self.server.state.update(entry, body_text=text, body=body, violations=[f"path: {path!r} is not an OICP path the simulator serves"])
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

    def _get_cdrs(self, entry: dict[str, Any], provider_id: str, raw: bytes) -> str:
        """eRoamingGetChargeDetailRecords_V2.2: one page of the CDRs HBS holds (DIGEST §5.4)."""
        text, body, parse_errors = parse_body(raw)
        query = parse_qs(urlsplit(self.path).query)
        violations = content_type_violations(self.headers.get("Content-Type")) + parse_errors
        page, size = 0, DEFAULT_PAGE_SIZE
        if not parse_errors:
            problems, page, size = get_cdrs_violations(provider_id, query, body)
            violations += problems
        self.server.state.update(entry, body_text=text, body=body, violations=violations)
        if violations:
            extended = "eRoamingGetChargeDetailRecords_V2.2 request does not conform to OICP 2.3"
            self._send_json(400, fault_body("Validation error", extended, violations))
            return "answered"
        selected = self.server.cpo.select_cdrs(body)
        self._send_json(200, cdr_page(selected, page, size))
        return "answered"

    # ---- behaviours

    def _behave(self, behaviour: Behaviour, request: dict[str, Any]) -> str:
        action = behaviour["action"]
        if action == "accept" and not self.server.state.tidy():
            # HBS checks the session before it forwards the stop to the CPO (DIGEST §2).
            invalid = self.server.cpo.session_invalid(request["SessionID"])
            if invalid:
                return self._hbs_answers(request, "400", f"session {invalid}")
        if _cpo_too_late(behaviour):
            return self._partner_did_not_respond(behaviour, request)
        outcome = self._hold(behaviour["delay_seconds"])  # for no_answer, the time the connection is held
        if action == "no_answer" or outcome != "elapsed":
            self.close_connection = True  # close without any answer
            return "no_answer" if outcome == "elapsed" else outcome
        if action == "reset":
            self._reset()
            return "reset"
        self._answer(action, behaviour, request)
        return "answered"

    def _hbs_answers(self, request: dict[str, Any], code: str, why: str, info: str | None = None) -> str:
        """A negative acknowledgement from HBS itself (HTTP 200); the received log says why."""
        if self._entry is not None:
            self.server.state.update(self._entry, hbs_answer=f"{code}: {why}")
        self._send_json(200, acknowledgement(request, False, code, info))
        return "answered"

    def _partner_did_not_respond(self, behaviour: Behaviour, request: dict[str, Any]) -> str:
        """HBS stops waiting for the CPO at the end of its window and answers 310 (DIGEST §3)."""
        window = behaviour.get("cpo_window_seconds", DEFAULT_CPO_WINDOW_SECONDS)
        outcome = self._hold(window)
        if outcome != "elapsed":  # the client hung up first: as with any held answer, nothing happens
            self.close_connection = True
            return outcome
        # The wording is ours; HBS is documented to say that the partner could not be reached.
        self._hbs_answers(request, "310", f"the CPO did not answer within {window:g} s",
                          f"No response from the partner within {window:g} seconds")
        if behaviour["action"] == "accept":
            # The CPO did get the stop and acts on it late: the session still ends after the 310.
            self.server.cpo.stop_accepted_later(behaviour["delay_seconds"] - window, request, behaviour)
        return "answered"

    def _answer(self, action: str, behaviour: Behaviour, request: dict[str, Any]) -> None:
        info = behaviour.get("additional_info")
        if action == "accept":
            self._send_json(200, acknowledgement(request, True, "000", info))
            self.server.cpo.stop_accepted(request, behaviour)
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
        elif route == ("GET", "/_sim/sessions"):
            self._send_json(200, self.server.cpo.sessions_list())
        elif route == ("POST", "/_sim/sessions"):
            self._control_behaviours(self.server.cpo.add_sessions)
        elif route == ("GET", "/_sim/cdrs"):
            self._send_json(200, self.server.cpo.cdrs_list())
        elif route == ("POST", "/_sim/cdrs"):
            self._control_behaviours(self.server.cpo.add_cdrs)
        elif route == ("DELETE", "/_sim/cdrs"):
            self._send_json(200, {"cleared": self.server.cpo.clear_cdrs()})
        elif route == ("GET", "/_sim/pushed"):
            query = parse_qs(url.query)
            self._send_json(200, self.server.cpo.pushed_list(
                session_id=query.get("session_id", [None])[0], kind=query.get("kind", [None])[0]))
        elif route == ("DELETE", "/_sim/pushed"):
            self._send_json(200, {"cleared": self.server.cpo.clear_pushed()})
        elif url.path.rstrip("/") in CONTROL_PATHS:
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

    def __init__(
        self, host: str, port: int, state: SimulatorState, log_requests: bool = False, **cpo_options: Any
    ) -> None:
        self.state = state
        self.log_requests = log_requests
        self.stopping = threading.Event()  # tells delayed/held requests and pending pushes to give up on shutdown
        self.cpo = ChargePointOperators(stopping=self.stopping, behaviour_lookup=state.lookup, **cpo_options)
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

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self.cpo.start()
        super().serve_forever(poll_interval)

    def shutdown(self) -> None:
        self.stopping.set()
        self.cpo.scheduler.wake()
        super().shutdown()


def make_server(
    host: str = "127.0.0.1",
    port: int = 0,
    behaviours: BehaviourTable | Mapping[str, Any] | None = None,
    log_requests: bool = False,
    portal_url: str | None = None,
    push_delay_seconds: float = 3.0,
    cdr_delay_seconds: float = 1.0,
    progress_interval_seconds: float = 60.0,
    new_session_interval_seconds: float = 0.0,
    max_sessions: int = 60,
    provider_id: str = "DE-EMP",
    push_timeout_seconds: float = 10.0,
    push_attempts: int = 3,
    push_backoff_seconds: float = 1.0,
    seed: int | None = None,
) -> SimulatorServer:
    """A bound, not yet serving simulator; port 0 picks a free port (see `.url`).

    With `portal_url` the simulated CPOs push (via "HBS") to the portal's inbound endpoints: Start and
    Progress for the sessions they run, and End then the CDR after each accepted stop. Sessions are
    added with `server.cpo.add_sessions([...])` or POST /_sim/sessions.
    """
    if behaviours is not None and not isinstance(behaviours, BehaviourTable):
        behaviours = BehaviourTable.from_json(behaviours)
    return SimulatorServer(
        host, port, SimulatorState(behaviours), log_requests=log_requests,
        portal_url=portal_url, push_delay_seconds=push_delay_seconds, cdr_delay_seconds=cdr_delay_seconds,
        progress_interval_seconds=progress_interval_seconds,
        new_session_interval_seconds=new_session_interval_seconds, max_sessions=max_sessions,
        provider_id=provider_id, push_timeout_seconds=push_timeout_seconds, push_attempts=push_attempts,
        push_backoff_seconds=push_backoff_seconds, seed=seed,
    )


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
    parser.add_argument("--tidy", action="store_true",
                        help="accept stops for any SessionID: no 400 Session is invalid for sessions HBS never "
                        "issued or already closed (for tests about something else); \"tidy\" in the table")
    parser.add_argument("--cpo-window", type=_window_seconds, default=None,
                        help="seconds HBS waits for the CPO's answer before answering 310 Partner did not "
                        f"respond (default {DEFAULT_CPO_WINDOW_SECONDS:g}); \"cpo_window_seconds\" in the table")
    parser.add_argument("--allow-non-loopback", action="store_true", help="allow binding to a non-loopback address")
    parser.add_argument("--quiet", action="store_true", help="do not log requests to stderr")
    cpo = parser.add_argument_group("the CPOs behind HBS: pushes to the portal and CDRs to pull")
    cpo.add_argument("--portal-url", help="base URL of the portal's inbound OICP endpoints, e.g. http://127.0.0.1:8000; "
                     "without it nothing is pushed (CDRs are still kept for GetChargeDetailRecords)")
    cpo.add_argument("--push-delay", type=_seconds, default=3.0,
                     help="seconds from an accepted stop to the End notification (default 3)")
    cpo.add_argument("--cdr-delay", type=_seconds, default=1.0, help="seconds from End to the CDR (default 1)")
    cpo.add_argument("--progress-interval", type=_seconds, default=60.0,
                     help="seconds between Progress notifications of a session; 0: none (default 60)")
    cpo.add_argument("--demo-sessions-file", help="JSON list of sessions the CPOs are running "
                     "({SessionID, EvseID, OperatorID, EMPPartnerSessionID?, CPOPartnerSessionID?, ChargingStart?})")
    cpo.add_argument("--new-session-interval", type=_seconds, default=0.0,
                     help="demo: start a new session at a random demo EVSE this often (seconds); 0: never")
    cpo.add_argument("--max-sessions", type=int, default=60,
                     help="demo: above this many charging sessions the oldest one finishes when a new one starts")
    cpo.add_argument("--provider-id", default="DE-EMP", help="the EMP whose contracts (EvcoIDs) the sessions use")
    cpo.add_argument("--seed", type=int, default=None, help="random seed, for repeatable demo data")
    return parser.parse_args(argv)


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 86_400:
        raise argparse.ArgumentTypeError("must be between 0 and 86400 seconds")
    return value


def _window_seconds(text: str) -> float:
    try:
        return _cpo_window(float(text), "--cpo-window")
    except (ValueError, BehaviourError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _load_table(args: argparse.Namespace) -> BehaviourTable:
    table = BehaviourTable.from_json(DEMO_BEHAVIOURS) if args.demo else BehaviourTable()
    if args.config:
        with open(args.config, encoding="utf-8") as fh:
            data = json.load(fh)
        table = table.merged(data) if args.demo else BehaviourTable.from_json(data)
    # The command line wins over the config file; these are also what a later PUT falls back to.
    if args.tidy:
        table.tidy = True
    if args.cpo_window is not None:
        table.cpo_window_seconds = args.cpo_window
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
    if args.portal_url and urlsplit(args.portal_url).scheme not in ("http", "https"):
        print(f"--portal-url {args.portal_url!r} is not an http(s) URL", file=sys.stderr)
        return 2
    demo_sessions: list[Any] = []
    if args.demo_sessions_file:
        try:
            demo_sessions = load_sessions_file(args.demo_sessions_file)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            print(f"cannot read {args.demo_sessions_file}: {exc}", file=sys.stderr)
            return 2
    server = make_server(
        args.host, args.port, table, log_requests=not args.quiet, portal_url=args.portal_url,
        push_delay_seconds=args.push_delay, cdr_delay_seconds=args.cdr_delay,
        progress_interval_seconds=args.progress_interval, new_session_interval_seconds=args.new_session_interval,
        max_sessions=args.max_sessions, provider_id=args.provider_id, seed=args.seed,
    )
    if demo_sessions:
        try:
            added = server.cpo.add_sessions(demo_sessions, source="demo_sessions_file")
        except BehaviourError as exc:
            server.server_close()
            print(f"cannot load {args.demo_sessions_file}: {exc}", file=sys.stderr)
            return 2
        print(f"{added['added']} sessions loaded from {args.demo_sessions_file}", file=sys.stderr, flush=True)
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
