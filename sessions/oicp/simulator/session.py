"""A charging session a simulated CPO runs, and the tidy messages it produces (DIGEST §5.2, §5.3).

Start, Progress, End and Error notifications and the CDR, as the spec's samples show them; the
quirks real CPOs add are applied afterwards (`quirks.shape_message`).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sessions.oicp.inbound import lenient

MAX_METER_VALUES_IN_BETWEEN = 20
MAX_ENERGY_WH = 80_000  # a full battery: energy stops growing here
POWERS_W = (3_700, 7_400, 11_000, 22_000, 50_000)
# A charge point sends its local offset; the demo CPOs are in these countries.
COUNTRY_ZONES = {"DE": "Europe/Berlin", "NL": "Europe/Amsterdam", "AT": "Europe/Vienna", "FR": "Europe/Paris"}
# ErrorType values CPOs send: the enum, and the spelling of Hubject's own published sample (DIGEST §8.11).
ERROR_TYPES = (*lenient.ERROR_TYPES, "Connector Error")
ERROR_INFO = {
    "ConnectorError": "Connector 1: the plug lock did not release",
    "CriticalError": "Charging station restarted after a residual current fault",
    "Connector Error": "Plug was not connected, EVSEID timed out reached",  # Hubject's sample text
}


def zone_for(operator_id: str) -> Any:
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(COUNTRY_ZONES.get(operator_id[:2].upper(), "UTC"))
    except Exception:  # noqa: BLE001 - no tz database: UTC still has an offset
        return UTC


def kwh(wh: int) -> float:
    """kWh with at most 3 decimals, as a JSON number (Decimal(,3) in OICP)."""
    return wh / 1000


def evco_id_for(provider_id: str, key: str) -> str:
    """A contract ID of the EMP's customer (ISO form, e.g. DE-EMP-C1A2B3C4D-7), stable per key."""
    match = re.fullmatch(r"([A-Za-z]{2})[\*|-]?([A-Za-z0-9]{3})", provider_id or "")
    country, party = (match.group(1), match.group(2)) if match else ("DE", "EMP")
    instance = uuid.uuid5(uuid.NAMESPACE_URL, key).hex[:8].upper()
    check = sum(ord(c) for c in instance) % 10
    return f"{country.upper()}-{party.upper()}-C{instance}-{check}"


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
        return zone_for(self.operator_id)

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
            "MeterValueStart": kwh(self.meter_start_wh),
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
            "ConsumedEnergyProgress": kwh(energy),
            "MeterValueStart": kwh(self.meter_start_wh),
            "MeterValueInBetween": {"meterValues": [kwh(v) for v in self.meter_values_wh]},
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
            "ConsumedEnergy": kwh(energy),
            "MeterValueStart": kwh(self.meter_start_wh),
            "MeterValueEnd": kwh(self.meter_start_wh + energy),
            "MeterValueInBetween": {"meterValues": [kwh(v) for v in self.meter_values_wh]},
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
            "MeterValueStart": kwh(self.meter_start_wh),
            "MeterValueEnd": kwh(self.meter_start_wh + energy),
            "MeterValueInBetween": {"meterValues": [kwh(v) for v in self.meter_values_wh]},
            "ConsumedEnergy": kwh(energy),
        }

    def to_json(self) -> dict[str, Any]:
        now = datetime.now(UTC)
        return {
            "SessionID": self.session_id,
            "EvseID": self.evse_id,
            "OperatorID": self.operator_id,
            "EMPPartnerSessionID": self.emp_partner_session_id,
            "CPOPartnerSessionID": self.cpo_partner_session_id,
            "ChargingStart": self.ts(self.charging_start),
            "ChargingEnd": self.ts(self.charging_end) if self.charging_end else None,
            "ConsumedEnergy": kwh(self.energy_wh(self.charging_end or now)),
            "state": self.state,
            "learned_from": self.learned_from,
        }
