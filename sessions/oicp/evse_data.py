"""One record of eRoamingEVSEData (OpenAPI PullEvseDataRecord), read leniently into what the portal keeps.

Hubject forwards what CPOs upload, and its own sample already differs from the schema ("OperatorId"
for "OperatorID"). A record is refused only when it cannot be used at all: no EvseID or no
OperatorID. Everything else is taken as far as it goes (a text too long is clipped, coordinates
that cannot be read are left empty) and the whole record is kept as sent (`raw`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

DELTA_TYPES = ("insert", "update", "delete")
EVSE_ID_MAX = 64
OPERATOR_ID_MAX = 20
_GOOGLE = re.compile(r"^\s*(-?\d{1,3}(?:\.\d+)?)\s*,?\s+(-?\d{1,3}(?:\.\d+)?)\s*$")
_DMS = re.compile(r"^\s*(-?)(\d{1,3})°\s*(\d{1,2})'\s*(\d{1,2}(?:\.\d+)?)(?:''|\")\s*$")
_SIX_PLACES = Decimal("0.000001")


class RecordRefused(ValueError):
    """The record cannot be used: the reason, and its EvseID when it has one."""

    def __init__(self, reason: str, evse_id: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.evse_id = evse_id


@dataclass(frozen=True)
class EvseDataRecord:
    """The fields of one EVSE record the portal models; `raw` is the record as sent."""

    evse_id: str
    operator_id: str
    operator_name: str = ""
    delta_type: str = ""  # "insert", "update", "delete"; "" in a full pull
    charging_station_id: str = ""
    station_name: str = ""
    street: str = ""
    house_number: str = ""
    postal_code: str = ""
    city: str = ""
    country: str = ""
    latitude: Decimal | None = None
    longitude: Decimal | None = None
    hotline: str = ""
    plugs: list[Any] = field(default_factory=list)
    facilities: list[Any] = field(default_factory=list)
    authentication_modes: list[Any] = field(default_factory=list)
    accessibility: str = ""
    is_open_24_hours: bool | None = None
    opening_times: list[Any] = field(default_factory=list)
    is_hubject_compatible: bool | None = None
    last_update: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def deleted(self) -> bool:
        return self.delta_type == "delete"


def _text(value: Any, limit: int) -> str:
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, (int, float, Decimal)):
        value = str(value)
    return value.strip()[:limit] if isinstance(value, str) else ""


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    return None


def _first_name(value: Any) -> str:
    for item in _list(value):
        if isinstance(item, dict):
            name = _text(item.get("value"), 300)
            if name:
                return name
    return ""


def _degrees(value: Any, limit: int) -> Decimal | None:
    if isinstance(value, str):
        match = _DMS.fullmatch(value)
        if match:
            degrees = Decimal(match[2]) + Decimal(match[3]) / 60 + Decimal(match[4]) / 3600
            value = -degrees if match[1] else degrees
    try:
        number = Decimal(str(value)) if isinstance(value, (str, int, float, Decimal)) else None
    except InvalidOperation:
        return None
    if number is None or not number.is_finite() or abs(number) > limit:
        return None
    return number.quantize(_SIX_PLACES)


def coordinates(geo: Any) -> tuple[Decimal | None, Decimal | None]:
    """(latitude, longitude) from GeoCoordinatesType in any of its three formats; (None, None) if unreadable."""
    if not isinstance(geo, dict):
        return None, None
    google = geo.get("Google")
    if isinstance(google, dict) and isinstance(google.get("Coordinates"), str):
        match = _GOOGLE.fullmatch(google["Coordinates"])
        if match:
            lat, lon = _degrees(match[1], 90), _degrees(match[2], 180)
            if lat is not None and lon is not None:
                return lat, lon
    for name in ("DecimalDegree", "DegreeMinuteSeconds"):
        pair = geo.get(name)
        if isinstance(pair, dict):
            lat, lon = _degrees(pair.get("Latitude"), 90), _degrees(pair.get("Longitude"), 180)
            if lat is not None and lon is not None:
                return lat, lon
    return None, None


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None and parsed.utcoffset() is not None else None


def read_evse_record(record: Any) -> EvseDataRecord:
    """The record's fields; raises RecordRefused when it has no usable EvseID or OperatorID."""
    if not isinstance(record, dict):
        raise RecordRefused("not a JSON object")
    evse_id = record.get("EvseID", record.get("EvseId"))
    if not isinstance(evse_id, str) or not evse_id.strip():
        raise RecordRefused("no EvseID")
    evse_id = evse_id.strip()
    if len(evse_id) > EVSE_ID_MAX:
        raise RecordRefused(f"EvseID longer than {EVSE_ID_MAX} characters", evse_id[:EVSE_ID_MAX])
    # Hubject's own sample writes "OperatorId"; the schema says "OperatorID".
    operator_id = record.get("OperatorID", record.get("OperatorId"))
    if not isinstance(operator_id, str) or not operator_id.strip():
        raise RecordRefused("no OperatorID", evse_id)
    operator_id = operator_id.strip()
    if len(operator_id) > OPERATOR_ID_MAX:
        raise RecordRefused(f"OperatorID longer than {OPERATOR_ID_MAX} characters", evse_id)
    delta_type = record.get("deltaType")
    delta_type = delta_type.strip().lower() if isinstance(delta_type, str) else ""
    if delta_type and delta_type not in DELTA_TYPES:
        raise RecordRefused(f"unknown deltaType {delta_type[:20]!r}", evse_id)
    address = record.get("Address") if isinstance(record.get("Address"), dict) else {}
    latitude, longitude = coordinates(record.get("GeoCoordinates"))
    return EvseDataRecord(
        evse_id=evse_id,
        operator_id=operator_id,
        operator_name=_text(record.get("OperatorName"), 250),
        delta_type=delta_type,
        charging_station_id=_text(record.get("ChargingStationID", record.get("ChargingStationId")), 100),
        station_name=_first_name(record.get("ChargingStationNames")),
        street=_text(address.get("Street"), 200),
        house_number=_text(address.get("HouseNum"), 20),
        postal_code=_text(address.get("PostalCode"), 20),
        city=_text(address.get("City"), 100),
        country=_text(address.get("Country"), 3).upper(),
        latitude=latitude,
        longitude=longitude,
        hotline=_text(record.get("HotlinePhoneNumber"), 40),
        plugs=_list(record.get("Plugs")),
        facilities=_list(record.get("ChargingFacilities")),
        authentication_modes=_list(record.get("AuthenticationModes")),
        accessibility=_text(record.get("Accessibility"), 60),
        is_open_24_hours=_flag(record.get("IsOpen24Hours")),
        opening_times=_list(record.get("OpeningTimes")),
        is_hubject_compatible=_flag(record.get("IsHubjectCompatible")),
        last_update=_timestamp(record.get("lastUpdate")),
        raw=record,
    )
