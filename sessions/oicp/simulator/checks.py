"""The checks HBS makes on a request before anything else happens, each problem naming its field.

Transport (Content-Type, UTF-8 JSON), the ProviderID against the path, and the control API's session
entries. The rules of the remote-stop message itself are `sessions.oicp.ids.remote_stop_violations`,
shared with the portal; those of the CDR pull are in `cdr_pull`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sessions.oicp import fields
from sessions.oicp.ids import PARTNER_SESSION_ID_MAX, is_evse_id, is_operator_id, is_provider_id, is_session_id

SESSION_FIELDS = {"SessionID", "EvseID", "OperatorID", "EMPPartnerSessionID", "CPOPartnerSessionID", "ChargingStart"}


def parse_oicp_datetime(value: object) -> datetime | None:
    """An aware datetime for an OICP Date/Time string with offset (DIGEST §8.16); None for anything else."""
    try:
        return fields.timestamp(value)
    except fields.FieldError:
        return None


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
        return (
            raw.decode("utf-8", errors="replace"),
            None,
            [f"body: not valid UTF-8 ({exc.reason} at byte {exc.start})"],
        )
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


def provider_id_violations(provider_id: str, body: Mapping[str, Any]) -> list[str]:
    """The pulls' ProviderID: mandatory, a ProviderID, and the one in the path (HBS compares them)."""
    provider = body.get("ProviderID")
    if provider is None:
        return ["ProviderID: missing (mandatory)"]
    if not is_provider_id(provider):
        return [f"ProviderID: {provider!r} is not a ProviderID such as DE-ABC"]
    if provider.upper() != provider_id.upper():
        return [f"ProviderID: {provider!r} does not match the providerID {provider_id!r} in the path"]
    return []


def session_violations(index: int, raw: object) -> list[str]:
    """What is wrong with one entry of POST /_sim/sessions (or the demo sessions file)."""
    where = f"sessions[{index}]"
    if not isinstance(raw, Mapping):
        return [f"{where}: must be an object with SessionID, EvseID, OperatorID"]
    problems = [f"{where}.{name}: not a known field" for name in sorted(set(raw) - SESSION_FIELDS)]
    session_id = raw.get("SessionID")  # absent: the CPO issues one
    if session_id is not None and not is_session_id(session_id):
        problems.append(f"{where}.SessionID: {session_id!r} is not a GUID-shaped SessionID")
    if not is_evse_id(raw.get("EvseID")):
        problems.append(f"{where}.EvseID: {raw.get('EvseID')!r} is not an EvseID")
    operator = raw.get("OperatorID")
    if operator is not None and not is_operator_id(operator):
        problems.append(f"{where}.OperatorID: {operator!r} is not an OperatorID")
    for name in ("EMPPartnerSessionID", "CPOPartnerSessionID"):
        value = raw.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > PARTNER_SESSION_ID_MAX):
            problems.append(f"{where}.{name}: must be a string of at most {PARTNER_SESSION_ID_MAX} characters")
    start = raw.get("ChargingStart")
    if start is not None and parse_oicp_datetime(start) is None:
        problems.append(f"{where}.ChargingStart: {start!r} is not a date-time with offset")
    return problems
