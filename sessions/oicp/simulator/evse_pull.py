"""eRoamingPullEvseData_V2.3 and eRoamingPullEvseStatus_V2.1 as HBS serves them, over `directory`.

EVSE data: paged (?page=&size=, default 20), every record with OperatorID, OperatorName and
lastUpdate, coordinates in the GeoCoordinatesResponseFormat asked for; with LastCall only what
changed since then, each with its deltaType. LastCall cannot be combined with SearchCenter,
CountryCodes or OperatorIds (asciidoc); the other filters apply to both.

EVSE status: not paged; grouped by operator (EvseStatuses.OperatorEvseStatus) for all EVSEs or
those of OperatorIDs, or as EVSEStatusRecords for up to 100 EvseIDs (EvseNotFound for unknown ones).
The OpenAPI takes the three bodies on one path; the code snippets give ByID and ByOperatorID their
own paths: all are served.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from sessions.oicp.ids import is_evse_id, is_operator_id
from sessions.oicp.paths import DEFAULT_EVSE_PAGE_SIZE, MAX_EVSE_PAGE_SIZE, MAX_STATUS_BY_ID
from sessions.oicp.status_codes import HUBJECT_DESCRIPTIONS

from .answers import fault_body
from .checks import content_type_violations, parse_body, parse_oicp_datetime, provider_id_violations
from .directory import EvseDirectory
from .network import GEO_FORMATS, Station, normal_operator_id
from .paging import page_answer, page_query
from .places import VENUE_KINDS

if TYPE_CHECKING:
    from .handler import SimulatorHandler

AUTHENTICATION_MODES = (
    "NFC RFID Classic",
    "NFC RFID DESFire",
    "PnC",
    "REMOTE",
    "Direct Payment",
    "No Authentication Required",
)
ACCESSIBILITIES = ("Free publicly accessible", "Restricted access", "Paying publicly accessible", "Test Station")
CALIBRATION_LAW = ("Local", "External", "Not Available")
EVSE_STATUSES = ("Available", "Reserved", "Occupied", "OutOfService", "EvseNotFound", "Unknown")
PULL_DATA_FIELDS = {
    "ProviderID",
    "SearchCenter",
    "LastCall",
    "GeoCoordinatesResponseFormat",
    "CountryCodes",
    "OperatorIds",
    "AuthenticationModes",
    "Accessibility",
    "CalibrationLawDataAvailability",
    "RenewableEnergy",
    "IsHubjectCompatible",
    "IsOpen24Hours",
}
# "EVSEStatus" in the OpenAPI and the asciidoc, "EvseStatus" in Hubject's own sample request: both taken.
PULL_STATUS_FIELDS = {"ProviderID", "SearchCenter", "EVSEStatus", "EvseStatus"}
_GOOGLE = re.compile(r"^(-?1?\d{1,2}\.\d{1,6})\s*,?\s*(-?1?\d{1,2}\.\d{1,6})$")
_DECIMAL = re.compile(r"^-?1?\d{1,2}\.\d{1,6}$")
_DMS = re.compile(r"^(-?)(1?\d{1,2})°[ ]?(\d{1,2})'[ ]?(\d{1,2}\.\d+)''$")


@dataclass
class StationFilter:
    """The body's filters that select stations; `key` names them for the directory's cache."""

    tests: list[Callable[[Station], bool]] = field(default_factory=list)
    key: list[tuple[str, Any]] = field(default_factory=list)

    def add(self, name: str, value: Any, test: Callable[[Station], bool]) -> None:
        self.key.append((name, value))
        self.tests.append(test)

    def __call__(self, st: Station) -> bool:
        return all(test(st) for test in self.tests)


# ---- the shared request handling


def _answer(
    handler: SimulatorHandler,
    provider_id: str,
    raw: bytes,
    operation: str,
    rules: Callable[[str, Mapping[str, list[str]], Any], tuple[list[str], Any]],
    respond: Callable[[EvseDirectory, Any], dict[str, Any]],
) -> str:
    """Transport checks, the operation's rules, then its answer (400 FaultBody listing every problem)."""
    text, body, parse_errors = parse_body(raw)
    violations = content_type_violations(handler.headers.get("Content-Type")) + parse_errors
    request = None
    if not parse_errors:
        problems, request = rules(provider_id, parse_qs(urlsplit(handler.path).query), body)
        violations += problems
    handler.note(body_text=text, body=body, violations=violations)
    if violations:
        extended = f"{operation} request does not conform to OICP 2.3"
        handler.answer_json(400, fault_body("Validation error", extended, violations))
        return "answered"
    handler.answer_json(200, respond(handler.server.directory, request))
    return "answered"


def _status_code() -> dict[str, Any]:
    return {"Code": "000", "Description": HUBJECT_DESCRIPTIONS.get("000")}


def _list_of(body: Mapping[str, Any], name: str, valid: Callable[[Any], bool], what: str, problems: list[str]) -> Any:
    """The body's list `name` if every item is `valid`, else None (and the problem); absent: None."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(valid(item) for item in value):
        problems.append(f"{name}: must be a list of {what}")
        return None
    return value


def _search_center(body: Mapping[str, Any], problems: list[str]) -> tuple[float, float, float] | None:
    """(latitude, longitude, radius km) of SearchCenter; its GeoCoordinates in any of the three formats."""
    center = body.get("SearchCenter")
    if center is None:
        return None
    if not isinstance(center, dict):
        problems.append("SearchCenter: must be an object with GeoCoordinates and Radius")
        return None
    radius = center.get("Radius")
    if isinstance(radius, bool) or not isinstance(radius, (int, float)) or radius < 0:
        problems.append("SearchCenter.Radius: must be a number of km, at least 0 (mandatory)")
        return None
    point = _coordinates(center.get("GeoCoordinates"))
    if point is None:
        problems.append(
            "SearchCenter.GeoCoordinates: must hold Google, DecimalDegree or DegreeMinuteSeconds coordinates"
        )
        return None
    return point[0], point[1], float(radius)


def _coordinates(geo: object) -> tuple[float, float] | None:
    if not isinstance(geo, dict):
        return None
    google = geo.get("Google")
    if isinstance(google, dict) and isinstance(google.get("Coordinates"), str):
        match = _GOOGLE.fullmatch(google["Coordinates"].strip())
        return (float(match[1]), float(match[2])) if match else None
    decimal = geo.get("DecimalDegree")
    if isinstance(decimal, dict):
        lat, lon = decimal.get("Latitude"), decimal.get("Longitude")
        if isinstance(lat, str) and isinstance(lon, str) and _DECIMAL.fullmatch(lat) and _DECIMAL.fullmatch(lon):
            return float(lat), float(lon)
        return None
    dms = geo.get("DegreeMinuteSeconds")
    if isinstance(dms, dict):
        lat, lon = (_dms_value(dms.get(name)) for name in ("Latitude", "Longitude"))
        return (lat, lon) if lat is not None and lon is not None else None
    return None


def _dms_value(text: object) -> float | None:
    match = _DMS.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        return None
    value = int(match[2]) + int(match[3]) / 60 + float(match[4]) / 3600
    return -value if match[1] else value


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (air) distance, as Hubject's radial search uses."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 6371.0 * 2 * math.asin(math.sqrt(a))


def _near(center: tuple[float, float, float]) -> Callable[[Station], bool]:
    lat, lon, radius = center
    return lambda st: distance_km(lat, lon, st.latitude, st.longitude) <= radius


# ---- eRoamingPullEvseData_V2.3


@dataclass
class DataPull:
    page: int
    size: int
    response_format: str = "Google"
    last_call: float | None = None
    stations: StationFilter = field(default_factory=StationFilter)


def pull_data_violations(provider_id: str, query: Mapping[str, list[str]], body: Any) -> tuple[list[str], DataPull]:
    """Rules of eRoamingPullEVSEData (asciidoc, OpenAPI); returns (violations, the request)."""
    problems, page, size = page_query(query, DEFAULT_EVSE_PAGE_SIZE, MAX_EVSE_PAGE_SIZE)
    request = DataPull(page, size)
    if not isinstance(body, dict):
        return problems + ["body: must be a JSON object"], request
    problems += provider_id_violations(provider_id, body)
    response_format = body.get("GeoCoordinatesResponseFormat")
    if response_format is None:
        problems.append("GeoCoordinatesResponseFormat: missing (mandatory)")
    elif response_format not in GEO_FORMATS:
        problems.append(f"GeoCoordinatesResponseFormat: {response_format!r} is not one of {', '.join(GEO_FORMATS)}")
    else:
        request.response_format = response_format
    if body.get("LastCall") is not None:
        last_call = parse_oicp_datetime(body["LastCall"])
        if last_call is None:
            problems.append(
                f"LastCall: {body['LastCall']!r} is not a date-time with offset (YYYY-MM-DDThh:mm:ss±hh:mm)"
            )
        else:
            request.last_call = last_call.timestamp()
        combined = [name for name in ("SearchCenter", "CountryCodes", "OperatorIds") if body.get(name) is not None]
        if combined:
            problems.append(
                f"LastCall: cannot be combined with {', '.join(combined)} (delta pulls are never filtered so)"
            )
    stations = request.stations
    operators = _list_of(body, "OperatorIds", is_operator_id, "OperatorIDs", problems)
    if operators is not None:
        wanted = frozenset(normal_operator_id(o) for o in operators)
        stations.add("operators", tuple(sorted(wanted)), lambda st: st.operator.operator_id in wanted)
    countries = _list_of(
        body,
        "CountryCodes",
        lambda c: isinstance(c, str) and len(c) == 3 and c.isalpha(),
        "ISO 3166-1 alpha-3 codes",
        problems,
    )
    if countries is not None:
        codes = frozenset(c.upper() for c in countries)
        stations.add("countries", tuple(sorted(codes)), lambda st: st.country.alpha3 in codes)
    modes = _list_of(body, "AuthenticationModes", AUTHENTICATION_MODES.__contains__, "AuthenticationModes", problems)
    if modes is not None:
        wanted_modes = frozenset(modes)
        stations.add("modes", tuple(sorted(wanted_modes)), lambda st: bool(wanted_modes & set(st.authentication_modes)))
    access = _list_of(body, "Accessibility", ACCESSIBILITIES.__contains__, "Accessibility values", problems)
    if access is not None:
        wanted_access = frozenset(access)
        stations.add(
            "access", tuple(sorted(wanted_access)), lambda st: VENUE_KINDS[st.venue.kind].accessibility in wanted_access
        )
    calibration = _list_of(
        body, "CalibrationLawDataAvailability", CALIBRATION_LAW.__contains__, "Local, External, Not Available", problems
    )
    if calibration is not None:
        wanted_law = frozenset(calibration)
        stations.add(
            "calibration",
            tuple(sorted(wanted_law)),
            lambda st: ("Local" if st.country.alpha2 == "DE" else "Not Available") in wanted_law,
        )
    for name, attribute in (
        ("RenewableEnergy", "renewable"),
        ("IsHubjectCompatible", "hubject_compatible"),
        ("IsOpen24Hours", "open_24_hours"),
    ):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, bool):
            problems.append(f"{name}: must be true or false")
            continue
        stations.add(name, value, lambda st, attribute=attribute, value=value: getattr(st, attribute) == value)
    center = _search_center(body, problems)
    if center is not None:
        stations.add("near", center, _near(center))
    problems += [f"{name}: not a field of eRoamingPullEVSEData" for name in sorted(set(body) - PULL_DATA_FIELDS)]
    return problems, request


def evse_data_page(directory: EvseDirectory, request: DataPull) -> dict[str, Any]:
    """eRoamingEVSEData: one page of the directory now, or of its changes since LastCall."""
    directory.sync_sessions()
    now = directory.now()
    start, end = request.page * request.size, (request.page + 1) * request.size
    if request.last_call is not None:
        changes = directory.changes(request.last_call, now)
        if request.stations.tests:
            changes = [c for c in changes if request.stations(directory.station_for_slot(c.slot))]
        content = [directory.change_record(c, request.response_format) for c in changes[start:end]]
        return page_answer(content, request.page, request.size, len(changes))
    if request.stations.tests:
        slots: Any = directory.matching_slots(tuple(request.stations.key), request.stations)
        total = len(slots)
        page_slots: Iterable[int] = slots[start:end]
    else:
        total = directory.total()
        page_slots = (directory.slot_at(position) for position in range(start, min(end, total)))
    content = [
        directory.record(slot, version, request.response_format)
        for slot, version, _, _ in directory.current(page_slots, now)
    ]
    return page_answer(content, request.page, request.size, total)


def answer_pull_evse_data(handler: SimulatorHandler, provider_id: str, raw: bytes) -> str:
    return _answer(handler, provider_id, raw, "eRoamingPullEvseData_V2.3", pull_data_violations, evse_data_page)


# ---- eRoamingPullEvseStatus_V2.1 (all, ByID, ByOperatorID)


@dataclass
class StatusPull:
    kind: str  # all | by_id | by_operator
    evse_ids: list[str] = field(default_factory=list)
    operator_ids: tuple[str, ...] = ()
    status: str | None = None
    center: tuple[float, float, float] | None = None


def pull_status_violations(
    provider_id: str, query: Mapping[str, list[str]], body: Any, kind: str | None = None
) -> tuple[list[str], StatusPull]:
    """Rules of the three eRoamingPullEVSEStatus bodies; `kind` None: told apart by their fields."""
    if not isinstance(body, dict):
        return ["body: must be a JSON object"], StatusPull("all")
    if kind is None:
        kind = "by_id" if "EvseID" in body else "by_operator" if "OperatorID" in body else "all"
    request = StatusPull(kind)
    problems = provider_id_violations(provider_id, body)
    if kind == "by_id":
        evse_ids = _id_list(body, "EvseID", is_evse_id, problems, most=MAX_STATUS_BY_ID)
        if evse_ids is not None:
            request.evse_ids = evse_ids
        allowed = {"ProviderID", "EvseID"}
    elif kind == "by_operator":
        operators = _id_list(body, "OperatorID", is_operator_id, problems)
        if operators is not None:
            request.operator_ids = tuple(sorted({normal_operator_id(o) for o in operators}))
        allowed = {"ProviderID", "OperatorID"}
    else:
        for name in ("EVSEStatus", "EvseStatus"):
            value = body.get(name)
            if value is None:
                continue
            if value not in EVSE_STATUSES:
                problems.append(f"{name}: {value!r} is not one of {', '.join(EVSE_STATUSES)}")
            else:
                request.status = value
        request.center = _search_center(body, problems)
        allowed = PULL_STATUS_FIELDS
    name = {"by_id": "eRoamingPullEVSEStatusByID", "by_operator": "eRoamingPullEVSEStatusByOperatorID"}.get(
        kind, "eRoamingPullEVSEStatus"
    )
    problems += [f"{field_name}: not a field of {name}" for field_name in sorted(set(body) - allowed)]
    return problems, request


def _id_list(body: dict, name: str, valid, problems: list[str], most: int | None = None) -> list | None:
    """The mandatory list of IDs `name` (EvseID, OperatorID), or None with the problem noted."""
    ids = body.get(name)
    if ids is None:
        problems.append(f"{name}: missing (mandatory)")
    elif not isinstance(ids, list) or not ids or not all(valid(i) for i in ids):
        problems.append(f"{name}: must be a list of {name}s")
    elif most is not None and len(ids) > most:
        problems.append(f"{name}: {len(ids)} {name}s, at most {most} are allowed")
    else:
        return ids
    return None


def evse_statuses(directory: EvseDirectory, request: StatusPull) -> dict[str, Any]:
    """eRoamingEVSEStatus (grouped by operator) or eRoamingEVSEStatusByID."""
    sessions = directory.sync_sessions()
    now = directory.now()
    if request.kind == "by_id":
        records = []
        for evse_id in request.evse_ids:
            found = directory.find(evse_id, now)
            status = "EvseNotFound"
            if found is not None:
                slot, version = found
                status = directory.status(
                    slot, directory.evse_id(slot, version) if slot >= 0 else evse_id.upper(), now, sessions
                )
            records.append({"EvseID": evse_id, "EvseStatus": status})
        return {"EVSEStatusRecords": {"EvseStatusRecord": records}, "StatusCode": _status_code()}
    stations = StationFilter()
    if request.kind == "by_operator":
        wanted = frozenset(request.operator_ids)
        stations.add("operators", request.operator_ids, lambda st: st.operator.operator_id in wanted)
    if request.center is not None:
        stations.add("near", request.center, _near(request.center))
    if stations.tests:
        slots: Any = directory.matching_slots(tuple(stations.key), stations)
    else:
        slots = (directory.slot_at(position) for position in range(directory.total()))
    groups: dict[str, dict[str, Any]] = {}
    for slot, _, st, evse_id in directory.current(slots, now):
        status = directory.status(slot, evse_id, now, sessions, st)
        if request.status is not None and status != request.status:
            continue
        group = groups.get(st.operator.operator_id)
        if group is None:
            group = groups[st.operator.operator_id] = {
                "OperatorID": st.operator.operator_id,
                "OperatorName": st.operator.name,
                "EvseStatusRecord": [],
            }
        group["EvseStatusRecord"].append({"EvseID": evse_id, "EvseStatus": status})
    operators = [groups[operator_id] for operator_id in sorted(groups)]
    return {"EvseStatuses": {"OperatorEvseStatus": operators}, "StatusCode": _status_code()}


def _status_operation(kind: str | None, operation: str) -> Callable[[SimulatorHandler, str, bytes], str]:
    def rules(provider_id: str, query: Mapping[str, list[str]], body: Any) -> tuple[list[str], StatusPull]:
        return pull_status_violations(provider_id, query, body, kind)

    def answer(handler: SimulatorHandler, provider_id: str, raw: bytes) -> str:
        return _answer(handler, provider_id, raw, operation, rules, evse_statuses)

    return answer


answer_pull_evse_status = _status_operation(None, "eRoamingPullEvseStatus_V2.1")
answer_pull_evse_status_by_id = _status_operation("by_id", "eRoamingPullEvseStatusByID_V2.1")
answer_pull_evse_status_by_operator_id = _status_operation("by_operator", "eRoamingPullEvseStatusByOperatorID_V2.1")
