"""What Hubject pushes to the EMP, parsed and validated: no ORM, no Django.

- eRoamingChargingNotifications_V1.1 (DIGEST §5.2): Type Start, Progress, End or Error.
- eRoamingChargeDetailRecord_V2.2 (DIGEST §5.3), pushed by HBS or pulled (GetChargeDetailRecords).

A message becomes a frozen dataclass, or `InboundError` lists every problem, each naming its field
("EvseID: 'XX' is not an EvseID"). Strict on what the portal uses (mandatory fields, JSON types,
OICP ID formats, lengths, Decimal(,3) kWh values, ISO 8601 timestamps WITH an offset, enums);
lenient on fields it does not know, because HBS may add some. Explicit JSON nulls count as absent
(HBS sends them). IDs are stored as HBS stores them: EvseID, OperatorID and ProviderID upper case,
the SessionID lower case as everywhere else in the portal.

The body is checked before it is parsed: it must be UTF-8 JSON, an object, nested at most
`MAX_DEPTH` levels (counted by a linear scan before `json.loads`, so 100,000 nested lists cost a
few microseconds and never reach the parser's recursion), without NaN/Infinity or repeated keys.
The field and JSON checks themselves live in `fields`, shared with the session feed import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from . import ids
from .fields import (
    MAX_DEPTH,
    DuplicateKey,
    FieldError,
    check_storable,
    clip,
    enum,
    evse_id,
    json_type,
    kwh,
    load_json,
    nesting_exceeds,  # noqa: F401 (inbound.nesting_exceeds, for callers)
    operator_id,
    partner_session_id,
    provider_id,
    session_id,
    string,
    timestamp,
)

MAX_METER_VALUES_IN_BETWEEN = 1000
MAX_SIGNED_METERING_VALUES = 10  # asciidoc: list of at most 10
ADDITIONAL_INFO_MAX = 1000  # StatusCode.AdditionalInfo of the acknowledgement

NOTIFICATION_TYPES = ("Start", "Progress", "End", "Error")
ERROR_TYPES = ("ConnectorError", "CriticalError")
METERING_STATUSES = ("Start", "Progress", "End")
IDENTIFICATION_KINDS = (
    "RFIDMifareFamilyIdentification",
    "RFIDIdentification",
    "QRCodeIdentification",
    "PlugAndChargeIdentification",
    "RemoteIdentification",
)
CALIBRATION_LAW_LENGTHS = {
    "CalibrationLawCertificateID": 100,
    "PublicKey": 1000,
    "MeteringSignatureUrl": 200,
    "MeteringSignatureEncodingFormat": 50,
    "SignedMeteringValuesVerificationInstruction": 400,
}


class InboundError(ValueError):
    """The message is refused (OICP 022 Data error); `problems` name the fields."""

    def __init__(self, problems: list[str], echo: dict[str, str] | None = None):
        self.problems = problems or ["body: invalid"]
        # SessionID and partner session IDs that were valid, for the acknowledgement.
        self.echo = echo or {}
        super().__init__(self.summary)

    @property
    def summary(self) -> str:
        text = "; ".join(self.problems)
        return text if len(text) <= ADDITIONAL_INFO_MAX else text[: ADDITIONAL_INFO_MAX - 1] + "…"


# --- the body --------------------------------------------------------------------------------


def decode_body(body: bytes | str) -> tuple[str, dict[str, Any]]:
    """The body as text and as a JSON object; InboundError when it is neither."""
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InboundError([f"body: not UTF-8 (byte 0x{body[exc.start]:02x} at position {exc.start})"]) from None
    else:
        text = body
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise InboundError(["body: empty; a JSON object is expected"])
    try:
        data = load_json(text)
    except DuplicateKey as exc:
        raise InboundError([str(exc)]) from None
    except FieldError as exc:
        raise InboundError([f"body: {exc}"]) from None
    if not isinstance(data, dict):
        raise InboundError([f"body: must be a JSON object, not {json_type(data)}"])
    return text, data


# --- field checks ----------------------------------------------------------------------------


def milliseconds(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(f"must be an integer, not {json_type(value)}")
    if not 0 <= value <= 10**12:
        raise FieldError(f"must be between 0 and 10^12 ms ({clip(str(value))})")
    return value


def _json_value(value: Any, depth: int = 0) -> Any:
    """A JSON value we store as it came (strings checked for storability, numbers as strings)."""
    if depth > MAX_DEPTH:
        raise FieldError("nested too deeply")
    if isinstance(value, str):
        return check_storable(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise FieldError("must be a finite number")
        return str(value)
    if isinstance(value, list):
        return [_json_value(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {check_storable(key): _json_value(item, depth + 1) for key, item in value.items()}
    return value


def identification(value: Any) -> dict[str, Any]:
    """IdentificationType: an object whose known kinds are objects. Their contents are kept as they
    came: the portal does not use them, and Hubject's own samples break the UID pattern (§8 #11)."""
    if not isinstance(value, dict):
        raise FieldError(f"must be an object, not {json_type(value)}")
    for kind in IDENTIFICATION_KINDS:
        if value.get(kind) is not None and not isinstance(value[kind], dict):
            raise FieldError(f"{kind} must be an object, not {json_type(value[kind])}")
    return _json_value(value)


def meter_values_in_between(value: Any) -> tuple[Decimal, ...]:
    """`{"meterValues": [...]}` (OpenAPI and samples, §8 #15), not a bare list."""
    if not isinstance(value, dict):
        raise FieldError(f'must be an object {{"meterValues": [...]}}, not {json_type(value)}')
    values = value.get("meterValues")
    if values is None:
        return ()
    if not isinstance(values, list):
        raise FieldError(f"meterValues must be a list, not {json_type(values)}")
    if len(values) > MAX_METER_VALUES_IN_BETWEEN:
        raise FieldError(f"more than {MAX_METER_VALUES_IN_BETWEEN} meterValues")
    parsed = []
    for index, item in enumerate(values):
        try:
            parsed.append(kwh(item))
        except FieldError as exc:
            raise FieldError(f"meterValues[{index}]: {exc}") from None
    return tuple(parsed)


def signed_metering_values(value: Any) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list):
        raise FieldError(f"must be a list, not {json_type(value)}")
    if len(value) > MAX_SIGNED_METERING_VALUES:
        raise FieldError(f"more than {MAX_SIGNED_METERING_VALUES} entries")
    parsed = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise FieldError(f"[{index}] must be an object, not {json_type(item)}")
        entry = {}
        for name, check in (("SignedMeteringValue", string(3000)), ("MeteringStatus", enum(METERING_STATUSES))):
            if item.get(name) is not None:
                try:
                    entry[name] = check(item[name])
                except FieldError as exc:
                    raise FieldError(f"[{index}].{name}: {exc}") from None
        parsed.append(entry)
    return tuple(parsed)


def calibration_law_verification_info(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise FieldError(f"must be an object, not {json_type(value)}")
    parsed = {}
    for name, max_length in CALIBRATION_LAW_LENGTHS.items():
        if value.get(name) is not None:
            try:
                parsed[name] = string(max_length)(value[name])
            except FieldError as exc:
                raise FieldError(f"{name}: {exc}") from None
    return parsed


# --- messages --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    name: str  # the OICP field name
    attr: str  # the dataclass attribute
    parse: Callable[[Any], Any]
    required: bool = False


_PARTNER_FIELDS = (
    _Field("CPOPartnerSessionID", "cpo_partner_session_id", partner_session_id),
    _Field("EMPPartnerSessionID", "emp_partner_session_id", partner_session_id),
)
_NOTIFICATION_COMMON = (
    _Field("Type", "type", enum(NOTIFICATION_TYPES), True),
    _Field("SessionID", "session_id", session_id, True),
    *_PARTNER_FIELDS,
    _Field("Identification", "identification", identification),
    _Field("EvseID", "evse_id", evse_id, True),
    # Optional in the EMP asciidoc, mandatory in the CPO asciidoc and both OpenAPIs (§5.2, §8 #13).
    _Field("OperatorID", "operator_id", operator_id, True),
)
_PRODUCT = _Field("PartnerProductID", "partner_product_id", string(50))
_METER_START = _Field("MeterValueStart", "meter_value_start", kwh)
_METER_END = _Field("MeterValueEnd", "meter_value_end", kwh)
_IN_BETWEEN = _Field("MeterValueInBetween", "meter_values_in_between", meter_values_in_between)
_SESSION_START = _Field("SessionStart", "session_start", timestamp)
_NOTIFICATION_FIELDS = {
    "Start": (
        _Field("ChargingStart", "charging_start", timestamp, True),
        _SESSION_START,
        _METER_START,
        _PRODUCT,
    ),
    "Progress": (
        _Field("ChargingStart", "charging_start", timestamp, True),
        _Field("EventOccurred", "event_occurred", timestamp, True),
        # The text says "either ChargingDuration or ConsumedEnergyProgress"; the OpenAPI requires
        # neither, so a Progress with neither is accepted (it still updates last_update_at).
        _Field("ChargingDuration", "charging_duration_ms", milliseconds),
        _Field("ConsumedEnergyProgress", "consumed_energy_progress", kwh),
        _SESSION_START,
        _METER_START,
        _IN_BETWEEN,
        _PRODUCT,
    ),
    "End": (
        _Field("ChargingEnd", "charging_end", timestamp, True),
        _Field("ChargingStart", "charging_start", timestamp),
        _SESSION_START,
        _Field("SessionEnd", "session_end", timestamp),
        _Field("ConsumedEnergy", "consumed_energy", kwh),
        _METER_START,
        _METER_END,
        _IN_BETWEEN,
        _PRODUCT,
        _Field("PenaltyTimeStart", "penalty_time_start", timestamp),
    ),
    "Error": (
        _Field("ErrorType", "error_type", enum(ERROR_TYPES), True),
        _Field("ErrorAdditionalInfo", "error_additional_info", string(250)),
    ),
}
_CDR_FIELDS = (
    _Field("SessionID", "session_id", session_id, True),
    *_PARTNER_FIELDS,
    _PRODUCT,
    _Field("EvseID", "evse_id", evse_id, True),
    _Field("Identification", "identification", identification, True),
    _Field("ChargingStart", "charging_start", timestamp, True),
    _Field("ChargingEnd", "charging_end", timestamp, True),
    _Field("SessionStart", "session_start", timestamp, True),
    _Field("SessionEnd", "session_end", timestamp, True),
    _METER_START,
    _METER_END,
    _IN_BETWEEN,
    _Field("ConsumedEnergy", "consumed_energy", kwh, True),
    _Field("SignedMeteringValues", "signed_metering_values", signed_metering_values),
    _Field("CalibrationLawVerificationInfo", "calibration_law_verification_info", calibration_law_verification_info),
    _Field("HubOperatorID", "hub_operator_id", operator_id),
    _Field("HubProviderID", "hub_provider_id", provider_id),
)


def _read(data: dict[str, Any], fields: tuple[_Field, ...], problems: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for spec in fields:
        raw = data.get(spec.name)
        if raw is None:
            if spec.required:
                problems.append(f"{spec.name}: missing (mandatory)")
            continue
        try:
            values[spec.attr] = spec.parse(raw)
        except FieldError as exc:
            problems.append(f"{spec.name}: {exc}")
    return values


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_jsonable(item) for item in value]
    return value


def _to_json(message: Any, fields: tuple[_Field, ...]) -> dict[str, Any]:
    result = {
        spec.name: _jsonable(getattr(message, spec.attr))
        for spec in fields
        if getattr(message, spec.attr) is not None
    }
    if "MeterValueInBetween" in result:  # keep the OICP shape
        result["MeterValueInBetween"] = {"meterValues": result["MeterValueInBetween"]}
    return result


def _echo(data: dict[str, Any]) -> dict[str, str]:
    """The IDs worth repeating in a refusal's acknowledgement: only those that are valid."""
    echo = {}
    for name, parse in (
        ("SessionID", session_id),
        ("CPOPartnerSessionID", partner_session_id),
        ("EMPPartnerSessionID", partner_session_id),
    ):
        try:
            if data.get(name) is not None:
                echo[name] = parse(data[name])
        except FieldError:
            pass
    return echo


@dataclass(frozen=True)
class ChargingNotification:
    """One eRoamingChargingNotification; which optional fields are set depends on `type`."""

    type: str
    session_id: str
    evse_id: str
    operator_id: str
    cpo_partner_session_id: str | None = None
    emp_partner_session_id: str | None = None
    identification: dict[str, Any] | None = field(default=None, compare=False)
    partner_product_id: str | None = None
    charging_start: datetime | None = None
    charging_end: datetime | None = None
    session_start: datetime | None = None
    session_end: datetime | None = None
    event_occurred: datetime | None = None
    penalty_time_start: datetime | None = None
    charging_duration_ms: int | None = None
    consumed_energy: Decimal | None = None
    consumed_energy_progress: Decimal | None = None
    meter_value_start: Decimal | None = None
    meter_value_end: Decimal | None = None
    meter_values_in_between: tuple[Decimal, ...] | None = None
    error_type: str | None = None
    error_additional_info: str | None = None

    @property
    def kind(self) -> str:
        """START, PROGRESS, END or ERROR (the InboundMessage kinds)."""
        return self.type.upper()

    @property
    def energy_kwh(self) -> Decimal | None:
        """The energy charged so far that this notification reports, if any."""
        return self.consumed_energy if self.type == "End" else self.consumed_energy_progress

    def to_json(self) -> dict[str, Any]:
        """OICP field names, normalised values (IDs' case, Decimals as strings, offsets kept)."""
        return _to_json(self, _NOTIFICATION_COMMON + _NOTIFICATION_FIELDS[self.type])


@dataclass(frozen=True)
class ChargeDetailRecord:
    """One eRoamingChargeDetailRecord; `operator_id` is derived from the EvseID as HBS does."""

    session_id: str
    evse_id: str
    operator_id: str
    identification: dict[str, Any] = field(compare=False)
    charging_start: datetime
    charging_end: datetime
    session_start: datetime
    session_end: datetime
    consumed_energy: Decimal
    cpo_partner_session_id: str | None = None
    emp_partner_session_id: str | None = None
    partner_product_id: str | None = None
    meter_value_start: Decimal | None = None
    meter_value_end: Decimal | None = None
    meter_values_in_between: tuple[Decimal, ...] | None = None
    signed_metering_values: tuple[dict[str, str], ...] | None = field(default=None, compare=False)
    calibration_law_verification_info: dict[str, str] | None = field(default=None, compare=False)
    hub_operator_id: str | None = None
    hub_provider_id: str | None = None

    kind = "CDR"

    def to_json(self) -> dict[str, Any]:
        return _to_json(self, _CDR_FIELDS)


def charging_notification_from_dict(data: dict[str, Any]) -> ChargingNotification:
    problems: list[str] = []
    values = _read(data, _NOTIFICATION_COMMON, problems)
    kind = values.get("type")
    if kind is not None:
        values.update(_read(data, _NOTIFICATION_FIELDS[kind], problems))
    if problems:
        raise InboundError(problems, echo=_echo(data))
    return ChargingNotification(**values)


def charge_detail_record_from_dict(data: dict[str, Any], *, path_operator_id: str | None = None) -> ChargeDetailRecord:
    """`path_operator_id` is the {operatorID} of the push URL; it must be the EvseID's operator
    (or the CDR's HubOperatorID, for a hub operator sending for its sub-operators)."""
    problems: list[str] = []
    path_operator = None
    if path_operator_id is not None:
        try:
            path_operator = operator_id(path_operator_id)
        except FieldError as exc:
            problems.append(f"operatorID (URL): {exc}")
    # Hubject's EMP OpenAPI spells the field HubProviderId (§8 #10); accept both spellings.
    if data.get("HubProviderID") is None and data.get("HubProviderId") is not None:
        data = {**data, "HubProviderID": data["HubProviderId"]}
    elif None not in (data.get("HubProviderID"), data.get("HubProviderId")):
        if data["HubProviderID"] != data["HubProviderId"]:
            problems.append("HubProviderID: differs from HubProviderId in the same record")
    values = _read(data, _CDR_FIELDS, problems)
    if "evse_id" in values:
        values["operator_id"] = ids.operator_id_from_evse_id(values["evse_id"])
        if path_operator is not None:
            senders = {_canonical_operator(values["operator_id"])}
            if values.get("hub_operator_id"):
                senders.add(_canonical_operator(values["hub_operator_id"]))
            if _canonical_operator(path_operator) not in senders:
                problems.append(
                    f"EvseID: its operator {values['operator_id']} is not the operatorID {path_operator} of the URL"
                )
    if problems:
        raise InboundError(problems, echo=_echo(data))
    return ChargeDetailRecord(**values)


def _canonical_operator(value: str) -> str:
    """DE*ABC and DEABC are one operator, +49*810 and 49*810 too."""
    return value.upper().lstrip("+").replace("*", "")


def parse_charging_notification(body: bytes | str) -> tuple[str, ChargingNotification]:
    """The body's text and the notification; InboundError lists what is wrong."""
    text, data = decode_body(body)
    return text, charging_notification_from_dict(data)


def parse_charge_detail_record(body: bytes | str, *, path_operator_id: str | None = None) -> tuple[str, ChargeDetailRecord]:
    text, data = decode_body(body)
    return text, charge_detail_record_from_dict(data, path_operator_id=path_operator_id)
