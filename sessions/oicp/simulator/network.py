"""The simulated charging network: operators and stations, each one a pure function of (seed, number).

Nothing here is stored per EVSE: a station is computed from its number when asked (`station()`), and
an EVSE's OICP record from its station and its position in it (`evse_record()`). `directory` adds
time: which version of an EVSE is current, its status, the EVSEs of sessions the CPOs learned.

Operators are the demo CPOs (`demo.DEMO_OPERATORS`, names as there) and more, each with its
country and hotline; an operator's stations are in its country.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

from .demo import DEMO_OPERATORS
from .places import COUNTRIES, HARDWARE_MANUFACTURERS, VENUE_KINDS, City, Country, Venue

T = TypeVar("T")

_MASK = (1 << 64) - 1


def mix(*numbers: int) -> int:
    """A well-spread 64-bit hash of integers (splitmix64 steps): cheap, stable across runs and platforms."""
    state = 0x9E3779B97F4A7C15
    for number in numbers:
        z = (state ^ (number & _MASK)) + 0x9E3779B97F4A7C15 & _MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        state = z ^ (z >> 31)
    return state


class Draws:
    """A cheap stream of pseudo-random draws from one hash (random.Random costs 10 µs to seed)."""

    __slots__ = ("state",)

    def __init__(self, seed: int) -> None:
        self.state = seed

    def next(self) -> int:
        self.state = z = (self.state + 0x9E3779B97F4A7C15) & _MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def random(self) -> float:
        return (self.next() >> 11) / 9007199254740992.0

    def choice(self, items: Sequence[T]) -> T:
        return items[self.next() % len(items)]

    def randint(self, low: int, high: int) -> int:
        return low + self.next() % (high - low + 1)

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.random()


# ---- operators


@dataclass(frozen=True)
class Operator:
    operator_id: str
    name: str
    country: Country
    hotline: str  # OICP PhoneNumberType: ^\+[0-9]{5,15}$
    weight: int  # its share of the generated stations
    hub_operator_id: str | None = None  # a sub-operator's hub (HubOperatorID, SubOperatorName)


def hotline_for(operator_id: str, country: Country) -> str:
    """The operator's (free-phone) hotline: +<country code>800<7 digits from the OperatorID>."""
    return f"+{country.dial}800{zlib.crc32(operator_id.encode()) % 10_000_000:07d}"


def _country_of(operator_id: str) -> Country:
    return COUNTRIES.get(operator_id[:2].upper(), COUNTRIES["DE"])


def _operator(operator_id: str, name: str, weight: int, hub: str | None = None) -> Operator:
    country = _country_of(operator_id)
    return Operator(operator_id, name, country, hotline_for(operator_id, country), weight, hub)


# The demo CPOs: a few stations each, so agents find their sessions' stations; then the rest of Europe.
OPERATORS: tuple[Operator, ...] = tuple(
    _operator(op["operator_id"], op["name"], 2, op["behaviour"].get("hub_operator_id")) for op in DEMO_OPERATORS
) + (
    _operator("DE*SWK", "Stadtwerke Köln Ladenetz", 8),
    _operator("DE*AHL", "Autohof Schnellladen", 6),
    _operator("DE*SMK", "Supermarkt Strom GmbH", 10),
    _operator("DE*BYL", "Bayernladen", 7),
    _operator("DE*NRD", "Nordlicht Mobilität", 5),
    _operator("AT*DON", "Donau Strom Laden", 5),
    _operator("AT*TIR", "Tiroler Ladenetz", 3),
    _operator("FR*VLT", "Voltaire Recharge", 7),
    _operator("FR*BRN", "Borne Express", 5),
    _operator("NL*GRN", "Groene Laadpalen", 6),
    _operator("NL*AMS", "Amstel Laden", 4),
    _operator("BE*FLA", "Flanders Charge", 4),
    _operator("CH*ALP", "Alpstrom Laden", 3),
    _operator("IT*RIC", "Ricarica Veloce", 3),
)
OPERATORS_BY_ID: dict[str, Operator] = {op.operator_id: op for op in OPERATORS}
_WEIGHTS = [op.weight for op in OPERATORS]
_TOTAL_WEIGHT = sum(_WEIGHTS)


def operator(operator_id: str) -> Operator:
    """A network operator, or one made up for an OperatorID the network does not have (a test's DE*XYZ)."""
    operator_id = normal_operator_id(operator_id)
    found = OPERATORS_BY_ID.get(operator_id)
    if found is not None:
        return found
    return _operator(operator_id, f"{operator_id} Charging", 0)


def station_operator(seed: int, number: int) -> Operator:
    """Station `number`'s operator: the first stations go to the demo CPOs in turn, the rest by weight."""
    if number < len(DEMO_OPERATORS):
        return OPERATORS[number]
    point = mix(seed, 1, number) % _TOTAL_WEIGHT
    for op in OPERATORS:
        if point < op.weight:
            return op
        point -= op.weight
    return OPERATORS[-1]  # unreachable


# ---- stations

SIZES = (1, 2, 2, 2, 2, 2, 2, 3, 4, 4, 4, 4, 4, 6, 6, 6, 8, 8)  # EVSEs per station, 1 to 8, mostly 2 or 4


def station_size(seed: int, number: int) -> int:
    return SIZES[mix(seed, 2, number) % len(SIZES)]


@dataclass(frozen=True)
class Station:
    number: int  # the generated station's index; a virtual station (an unknown EVSE's) has a large one
    operator: Operator
    station_id: str  # ChargingStationID
    city: City
    postal_code: str
    street: str
    house_number: str
    venue: Venue
    latitude: float
    longitude: float
    fast: bool  # DC fast charging
    power_kw: int  # per EVSE
    chademo: bool  # a DC station's even EVSEs have CHAdeMO
    manufacturer: str
    authentication_modes: tuple[str, ...]
    payment_options: tuple[str, ...]
    value_added_services: tuple[str, ...]
    renewable: bool
    hubject_compatible: bool

    @property
    def country(self) -> Country:
        return self.operator.country

    @property
    def address_line(self) -> str:
        """ "Hauptstraße 12" or, where the house number comes first, "12 Rue de la République"."""
        if self.country.house_first:
            return f"{self.house_number} {self.street}"
        return f"{self.street} {self.house_number}"

    @property
    def name(self) -> str:
        """What a driver reads on the station and an agent searches for: "Lidl Parkplatz, Hauptstraße 12, 50667 Köln"."""
        return f"{self.venue.name}, {self.address_line}, {self.postal_code} {self.city.name}"

    @property
    def open_24_hours(self) -> bool:
        return not VENUE_KINDS[self.venue.kind].hours


@lru_cache(maxsize=8192)
def station(seed: int, number: int, operator_id: str | None = None) -> Station:
    """Station `number` of the network seeded `seed`; `operator_id` forces its operator (virtual stations)."""
    op = operator(operator_id) if operator_id else station_operator(seed, number)
    rng = Draws(mix(seed, 3, number))
    country = op.country
    city = rng.choice(country.cities)
    venue = rng.choice(country.venues)
    kind = VENUE_KINDS[venue.kind]
    fast = rng.random() < kind.fast
    house = str(rng.randint(1, 180)) + ("a" if rng.random() < 0.08 else "")
    return Station(
        number=number,
        operator=op,
        station_id=f"{op.operator_id.replace('*', '')}-S{number + 1:06d}",
        city=city,
        postal_code=rng.choice(city.postal_codes),
        street=rng.choice(country.streets),
        house_number=house,
        venue=venue,
        # Within about 6 km of the centre.
        latitude=round(city.latitude + rng.uniform(-0.055, 0.055), 6),
        longitude=round(city.longitude + rng.uniform(-0.08, 0.08), 6),
        fast=fast,
        power_kw=rng.choice((150, 150, 300, 50)) if fast else rng.choice((22, 22, 11)),
        chademo=fast and rng.random() < 0.3,
        manufacturer=rng.choice(HARDWARE_MANUFACTURERS),
        authentication_modes=("NFC RFID Classic", "REMOTE")
        + (("PnC",) if fast and rng.random() < 0.5 else ())
        + (("Direct Payment",) if rng.random() < 0.3 else ()),
        payment_options=("Contract", "Direct") if rng.random() < 0.6 else ("Contract",),
        value_added_services=("Reservation",) if rng.random() < 0.2 else ("None",),
        renewable=rng.random() < 0.6,
        hubject_compatible=number < len(DEMO_OPERATORS) or operator_id is not None or rng.random() < 0.97,
    )


# ---- one EVSE's OICP record (PullEvseDataRecordType)

GEO_FORMATS = ("Google", "DecimalDegree", "DegreeMinuteSeconds")


def geo_coordinates(latitude: float, longitude: float, response_format: str) -> dict[str, Any]:
    """GeoCoordinatesType in the format the request asked for (GeoCoordinatesResponseFormat)."""
    if response_format == "DecimalDegree":
        return {"DecimalDegree": {"Latitude": f"{latitude:.6f}", "Longitude": f"{longitude:.6f}"}}
    if response_format == "DegreeMinuteSeconds":
        return {"DegreeMinuteSeconds": {"Latitude": _dms(latitude), "Longitude": _dms(longitude)}}
    return {"Google": {"Coordinates": f"{latitude:.6f} {longitude:.6f}"}}


def _dms(value: float) -> str:
    sign = "-" if value < 0 else ""
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = (value - degrees - minutes / 60) * 3600
    return f"{sign}{degrees}°{minutes}'{seconds:.2f}''"


def evse_record(
    st: Station, position: int, evse_id: str, version: int, last_update: str, response_format: str = "Google"
) -> dict[str, Any]:
    """The PullEvseDataRecord of the EVSE at `position` (1-based) of station `st`, as of `version`.

    A new version is what a CPO's update looks like from outside: the power changes (a firmware
    limit lifted or set) and the record says so in AdditionalInfo.
    """
    country = st.country
    kind = VENUE_KINDS[st.venue.kind]
    chademo = st.chademo and position % 2 == 0
    power = st.power_kw if version % 2 == 0 else (st.power_kw // 2 if st.fast else 11)
    if chademo:
        plugs = ["CHAdeMO"]
        facility: dict[str, Any] = {"PowerType": "DC", "Power": 50, "ChargingModes": ["CHAdeMO"]}
    elif st.fast:
        plugs = ["CCS Combo 2 Plug (Cable Attached)"]
        facility = {"PowerType": "DC", "Power": power, "Voltage": 920, "ChargingModes": ["Mode_4"]}
    else:
        plugs = ["Type 2 Outlet"]
        amperage = 32 if power >= 22 else 16
        facility = {"PowerType": "AC_3_PHASE", "Power": power, "Voltage": 230, "Amperage": amperage}
        facility["ChargingModes"] = ["Mode_3"]
    record: dict[str, Any] = {
        "EvseID": evse_id,
        "ChargingStationID": st.station_id,
        "ChargingStationNames": [{"lang": country.lang, "value": st.name}],
        "HardwareManufacturer": st.manufacturer,
        "Address": {
            "Country": country.alpha3,
            "City": st.city.name,
            "Street": st.street,
            "PostalCode": st.postal_code,
            "HouseNum": st.house_number,
            "Region": st.city.region,
            "TimeZone": country.time_zone,
            "ParkingFacility": kind.parking_facility,
        },
        "GeoCoordinates": geo_coordinates(st.latitude, st.longitude, response_format),
        "Plugs": plugs,
        "ChargingFacilities": [facility],
        "DynamicPowerLevel": st.fast,
        "RenewableEnergy": st.renewable,
        "CalibrationLawDataAvailability": "Local" if country.alpha2 == "DE" else "Not Available",
        "AuthenticationModes": list(st.authentication_modes),
        "PaymentOptions": list(st.payment_options),
        "ValueAddedServices": list(st.value_added_services),
        "Accessibility": kind.accessibility,
        "AccessibilityLocation": kind.location,
        "HotlinePhoneNumber": st.operator.hotline,
        "IsOpen24Hours": not kind.hours,
        "IsHubjectCompatible": st.hubject_compatible,
        "DynamicInfoAvailable": "true",
        "OperatorID": st.operator.operator_id,
        "OperatorName": st.operator.name,
        "lastUpdate": last_update,
    }
    if kind.hours:
        record["OpeningTimes"] = [{"Period": [{"begin": b, "end": e}], "on": on} for on, b, e in kind.hours]
    if version:
        note = f"Leistung angepasst auf {power} kW" if country.lang == "de" else f"Power set to {power} kW"
        record["AdditionalInfo"] = [{"lang": country.lang, "value": note}]
    if st.operator.hub_operator_id:
        record["HubOperatorID"] = st.operator.hub_operator_id
        record["SubOperatorName"] = st.operator.name
    return record


_ISO_OPERATOR_WITHOUT_STAR = re.compile(r"^([A-Z]{2})([A-Z0-9]{3})$")


def normal_operator_id(value: str) -> str:
    """ "deabc" and "DE*ABC" are one operator: upper case, with the ISO separator."""
    value = value.upper()
    match = _ISO_OPERATOR_WITHOUT_STAR.fullmatch(value)
    return f"{match[1]}*{match[2]}" if match else value
