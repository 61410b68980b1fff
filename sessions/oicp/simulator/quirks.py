"""Messages as real CPOs send them: the tidy message, then the quirks its CPO's behaviour asks for.

HBS forwards them unchanged, so the EMP sees them as sent (DIGEST §8, §9): float noise, four
decimals, explicit nulls, long product IDs, a hub operator's ID, Eichrecht signed meter values.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sessions.oicp.inbound.lenient import MAX_SIGNED_METERING_VALUES

from .session import SimSession

# A behaviour picks them with "quirks": [...].
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

KWH_FIELDS = ("MeterValueStart", "MeterValueEnd", "ConsumedEnergy", "ConsumedEnergyProgress")
# Optional fields a CPO with "explicit_nulls" sends as null when it has no value for them.
OPTIONAL_FIELDS = ("CPOPartnerSessionID", "EMPPartnerSessionID", "PartnerProductID")
OPTIONAL_FIELDS_BY_KIND = {
    "End": ("PenaltyTimeStart",),
    "CDR": ("HubOperatorID", "HubProviderID", "SignedMeteringValues", "CalibrationLawVerificationInfo"),
}
# A tariff name as some CPOs send it: 82 characters, over the spec's PARTNER_PRODUCT_ID_MAX (50).
LONG_PRODUCT_ID = "AC 22 kW Ad-hoc Roaming Tarif inkl. Blockiergebuehr ab 240 Minuten (Standort Nord)"
SIGNED_VALUES_OVER_10 = MAX_SIGNED_METERING_VALUES + 5


def shape_message(kind: str, body: dict[str, Any], session: SimSession, behaviour: Mapping[str, Any]) -> dict:
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


def eichrecht_fields(session: SimSession, count: int | None = None) -> dict[str, Any]:
    """SignedMeteringValues (Start, Progress..., End) and CalibrationLawVerificationInfo of a CDR.

    `count` None: one Progress value per meter reading in between, at most the spec's 10 values in all.
    The signatures are not real (the EMP stores and shows them, it does not verify them).
    """
    start, end = session.charging_start, session.charging_end or datetime.now(UTC)
    start_wh, end_wh = session.meter_start_wh, session.meter_start_wh + session.energy_wh(end)
    if count is None:
        count = min(MAX_SIGNED_METERING_VALUES, 2 + len(session.meter_values_wh))
    values = []
    for index in range(count):
        share = index / (count - 1)
        status = "Start" if index == 0 else "End" if index == count - 1 else "Progress"
        reading_wh = start_wh + round((end_wh - start_wh) * share)
        values.append(
            {
                "SignedMeteringValue": _ocmf(session, index, status, reading_wh, start + (end - start) * share),
                "MeteringStatus": status,
            }
        )
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


def _ocmf(session: SimSession, index: int, status: str, reading_wh: int, when: datetime) -> str:
    """One signed meter value in the Open Charge Metering Format most German meters use."""
    stamp = when.astimezone(session.zone).strftime("%Y-%m-%dT%H:%M:%S,000%z") + " S"
    payload = {
        "FV": "1.0",
        "GI": "SIM EICHRECHT METER",
        "GS": session.evse_id,
        "PG": f"T{index + 1}",
        "IS": True,
        "IT": "ISO14443",
        "ID": session.evco_id,
        "RD": [
            {
                "TM": stamp,
                "TX": {"Start": "B", "Progress": "T", "End": "E"}[status],
                "RV": reading_wh / 1000,
                "RI": "1-b:1.8.0",
                "RU": "kWh",
                "ST": "G",
            }
        ],
    }
    data = json.dumps(payload, separators=(",", ":"))
    signature = hashlib.sha256(data.encode()).hexdigest().upper()
    return f"OCMF|{data}|" + json.dumps({"SA": "ECDSA-secp256r1-SHA256", "SD": signature}, separators=(",", ":"))
