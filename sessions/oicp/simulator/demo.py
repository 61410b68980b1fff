"""The demo's CPOs: one per situation an agent must recognise, from tidy to the messy real world.

The portal's demo data (load_demo) and the simulator's --demo use these OperatorIDs; each summary is
what a trainer tells agents about that CPO. DE*CBL (cable stuck), DE*FLT (errors), DE*MSY, DE*SUB
and FR*MAJ (message quirks) and DE*LAT (310 after HBS's window) show what the spec's samples do not.
"""

from __future__ import annotations

from typing import Any

from .session import ERROR_TYPES

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
        '"Connector Error" as Hubject\'s own sample spells it) about 20 s after the session starts. '
        "Stops work (000).",
    },
    {
        "operator_id": "DE*MSY",
        "name": "Messy Mobility",
        "behaviour": {
            "action": "accept",
            "quirks": ["float_noise", "float_duration", "explicit_nulls", "long_product_id", "eichrecht_over_10"],
        },
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
