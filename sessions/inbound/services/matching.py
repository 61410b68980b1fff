"""How a message meets its session: the same EVSE or held back; identification filled in, never overwritten."""

from __future__ import annotations

from typing import Any

from ...models import ChargingSession
from ...oicp import ids
from ...oicp.anomalies import Anomaly


def _same_evse(first: str, second: str) -> bool:
    """DE*ABC*E123 and DEABCE123 are one EVSE (the separators are optional in the ID format)."""
    return first.replace("*", "").upper() == second.replace("*", "").upper()


def _evse_mismatch(charging_session: ChargingSession, evse_id: str, what: str) -> Anomaly | None:
    if _same_evse(charging_session.evse_id, evse_id):
        return None
    return Anomaly(
        "evse_mismatch",
        "EvseID",
        f"The {what} is for EVSE {evse_id}, but the session runs at {charging_session.evse_id}: "
        "kept, not applied to the session and not taken as a stop's confirmation",
    )


def _fill_in(charging_session: ChargingSession, message) -> dict[str, Any]:
    """What the session does not know yet (start time, partner session IDs, the driver's contract
    ID, card UID and printed card number); never overwrites: the first value stays, and a
    different later one goes to the message's audit record (`_identification_differs`)."""
    changes: dict[str, Any] = {}
    started_at = message.session_start or message.charging_start
    if charging_session.started_at is None and started_at is not None:
        changes["started_at"] = started_at
    for attr in ("emp_partner_session_id", "cpo_partner_session_id"):
        value = getattr(message, attr)
        if value and not getattr(charging_session, attr):
            changes[attr] = value
    for attr, value in _identification(message).items():
        if not getattr(charging_session, attr):
            changes[attr] = value
    return changes


def _identification(message) -> dict[str, str]:
    """The contract ID (EvcoID), card UID and printed number the message's Identification carries
    (the first usable one of each, `ids.identification_values`)."""
    values = ids.identification_values(message.identification)
    return {attr: found[0] for attr, found in values.items() if found}


def _identification_differs(charging_session: ChargingSession, message) -> list[dict[str, str]]:
    """Each identification value of the message that is not the session's (compared by search key,
    so "DE-EMP-C12345678-X" and "DEEMPC12345678X" are one contract): the session keeps its first
    value, never overwritten silently; the audit record says what came."""
    differs = []
    for attr, found in ids.identification_values(message.identification).items():
        kept = getattr(charging_session, attr) or (found[0] if found else "")
        differs += [
            {"field": attr, "kept": kept, "received": value}
            for value in found
            if ids.id_search_key(value) != ids.id_search_key(kept)
        ]
    return differs


def _differs_data(differs: list[dict[str, str]]) -> dict[str, Any]:
    return {"identification_differs": differs} if differs else {}
