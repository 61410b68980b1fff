"""How each CPO (and HBS in front of it) answers: one behaviour per EVSE, operator or default.

A behaviour names an action (accept, reject, an HTTP or network failure, ...) and the keys that
shape what that CPO pushes (quirks, a hub operator, a stuck cable, errors). `BehaviourTable`
validates the PUT/PATCH format of /_sim/behaviours and looks up the behaviour for an EvseID.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sessions.oicp.ids import is_evse_id, is_operator_id, operator_id_from_evse_id, operator_key
from sessions.oicp.status_codes import HUBJECT_DESCRIPTIONS

from .quirks import QUIRKS
from .session import ERROR_TYPES

Behaviour = dict[str, Any]

ACTIONS = ("accept", "reject", "http_error", "html_error", "non_json", "wrong_shape", "no_answer", "reset")
# Codes a stop can come back with from HBS or the CPO (DIGEST §2); any other CodeType entry is allowed too.
TYPICAL_REJECT_CODES = ("400", "310", "501", "510", "022", "017")
# HTTP errors HBS (or its nginx) is documented or observed to give on this path (DIGEST §3).
HTTP_ERROR_STATUSES = (400, 401, 403, 404, 500, 502, 503, 504)
DEFAULT_HTTP_ERROR_STATUS = 503
DEFAULT_HTML_ERROR_STATUS = 502
DEFAULT_REJECT_CODE = "400"
DEFAULT_NO_ANSWER_SECONDS = 600.0
MAX_DELAY_SECONDS = 3600.0
# HBS gives the CPO 60 s to answer a forwarded stop, then answers 310 itself (DIGEST §3).
DEFAULT_CPO_WINDOW_SECONDS = 60.0
# Answers that come from the CPO, so they are subject to that window; the other actions are HBS's own.
CPO_ACTIONS = ("accept", "reject", "no_answer")
DEFAULT_ERROR_AFTER_SECONDS = 10.0
BEHAVIOUR_KEYS = {
    "action",
    "code",
    "delay_seconds",
    "http_status",
    "additional_info",
    "confirm",
    "hang",
    "cpo_window_seconds",
    # what the CPO pushes, whatever the action
    "quirks",
    "hub_operator_id",
    "cable_stuck_after_seconds",
    "error_types",
    "error_after_seconds",
}
TABLE_KEYS = {"default", "operators", "evses", "tidy", "cpo_window_seconds"}


class BehaviourError(ValueError):
    """A behaviour table or behaviour that cannot be used; the message says which part and why."""


def normalise_behaviour(raw: object, where: str = "behaviour") -> Behaviour:
    """Validate one behaviour and return it with defaults filled in, so GET shows what will happen."""
    if not isinstance(raw, Mapping):
        raise BehaviourError(f'{where}: must be an object such as {{"action": "accept"}}')
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
        result["cpo_window_seconds"] = cpo_window(raw["cpo_window_seconds"], f"{where}: cpo_window_seconds")
    _cpo_messages(raw, where, result)
    return result


def cpo_too_late(behaviour: Behaviour) -> bool:
    """The CPO's answer comes after HBS's window (a hanging no_answer is HBS itself: no window)."""
    if behaviour["action"] not in CPO_ACTIONS or behaviour.get("hang"):
        return False
    return behaviour["delay_seconds"] > behaviour.get("cpo_window_seconds", DEFAULT_CPO_WINDOW_SECONDS)


def cpo_window(value: object, where: str) -> float:
    """A CPO window in seconds (the table's, a behaviour's, --cpo-window); raises BehaviourError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_DELAY_SECONDS:
        raise BehaviourError(f"{where} must be a number above 0 and at most {MAX_DELAY_SECONDS:g}")
    return float(value)


def _hang(raw: Mapping[str, Any], action: str, where: str, result: Behaviour) -> None:
    hang = raw.get("hang")
    if hang is None:
        return
    if not isinstance(hang, bool):
        raise BehaviourError(f"{where}: hang must be true or false")
    if action != "no_answer":
        raise BehaviourError(f"{where}: hang only applies to no_answer, not {action}")
    result["hang"] = hang


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
            raise BehaviourError(f'{where}: accept always answers code "000"; use action reject for {code!r}')
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
            raise BehaviourError(
                f"{where}: http_status {status!r} for http_error must be one of {list(HTTP_ERROR_STATUSES)}"
            )
        result["http_status"] = status
    elif action == "html_error":
        status = DEFAULT_HTML_ERROR_STATUS if status is None else status
        if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
            raise BehaviourError(f"{where}: http_status {status!r} for html_error must be an integer 200-599")
        result["http_status"] = status
    elif status is not None:
        raise BehaviourError(f"{where}: http_status only applies to http_error and html_error, not {action}")


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
    def from_json(cls, data: object, **options: Any) -> BehaviourTable:
        """Build from the PUT format; `options` (tidy, cpo_window_seconds) apply where `data` has none.

        Raises BehaviourError with a readable message.
        """
        return cls(**options).merged(data)

    def to_json(self) -> dict[str, Any]:
        return copy.deepcopy(
            {"default": self.default, "operators": self.operators, "evses": self.evses, **self.options()}
        )

    def options(self) -> dict[str, Any]:
        return {"tidy": self.tidy, "cpo_window_seconds": self.cpo_window_seconds}

    def merged(self, data: object) -> BehaviourTable:
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
            base.cpo_window_seconds = cpo_window(data["cpo_window_seconds"], "behaviour table: cpo_window_seconds")
        return base

    def _copy_fields(self) -> dict[str, Any]:
        return {
            "default": dict(self.default),
            "operators": dict(self.operators),
            "evses": dict(self.evses),
            **self.options(),
        }

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
                operator = operator_key(operator_id_from_evse_id(evse_id))
            except ValueError:
                operator = None
            for configured, behaviour in self.operators.items():
                if operator is not None and operator_key(configured) == operator:
                    return dict(behaviour), f"operator:{configured}"
        return dict(self.default), "default"


def _merge_map(
    target: dict[str, Behaviour], entries: object, name: str, valid: Callable[[object], bool], expected: str
) -> None:
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
