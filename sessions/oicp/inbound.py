"""What Hubject pushes to the EMP, parsed and validated: no ORM, no Django.

- eRoamingChargingNotifications_V1.1 (DIGEST §5.2): Type Start, Progress, End or Error.
- eRoamingChargeDetailRecord_V2.2 (DIGEST §5.3), pushed by HBS or pulled (GetChargeDetailRecords).

A message becomes a frozen dataclass, or `InboundError` lists every problem, each naming its field
("EvseID: 'XX' is not an EvseID"). What HBS forwards has passed Hubject's checks, and a refused
message is lost to the portal (DIGEST §9), so only what cannot be identified or applied is refused:
a missing or malformed SessionID, EvseID or Type, a timestamp the portal needs without an offset,
a value of the wrong kind where the portal stores it (text where an energy belongs). Everything
else is accepted; each oddity (kWh with float noise rounded to the column's 3 decimals, Hubject's
own "Connector Error" spelling, a missing OperatorID, an over-long product ID, eleven signed meter
values, a CDR posted to another operator's path, ...) becomes an `Anomaly` on the message, and an
optional field the portal does not need is ignored (and flagged) when it is unusable. Fields the
portal does not know are kept in the raw message. Explicit JSON nulls count as absent (HBS sends
them). EvseID, OperatorID and ProviderID are upper-cased, as HBS stores them; the SessionID is
kept exactly as sent.

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
from .anomalies import Anomalies, Anomaly
from .fields import (
    MAX_DEPTH,
    DuplicateKey,
    FieldError,
    check_storable,
    clip,
    enum,
    evse_id,
    json_type,
    kwh_rounded,
    load_json,
    nesting_exceeds,  # noqa: F401 (inbound.nesting_exceeds, for callers)
    show,
    operator_id,
    partner_session_id,
    provider_id,
    session_id,
    string,
    timestamp,
)

MAX_METER_VALUES_IN_BETWEEN = 1000
MAX_SIGNED_METERING_VALUES = 10  # asciidoc: list of at most 10 (more are kept and flagged)
MAX_SIGNED_METERING_VALUE = 3000
PARTNER_PRODUCT_ID_MAX = 50  # the message schemas; Hubject's ProductID pattern allows 100, CPOs send that
ERROR_ADDITIONAL_INFO_MAX = 250  # ChargingSession.last_error_info keeps this much; the message keeps all
ERROR_TYPE_MAX = 30  # ChargingSession.last_error_type
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


# A lenient check takes the value and `note(code, text)`: it accepts an odd but usable value and
# says what it did with it; the text follows the field's name ("12.3456 stored as 12.346").
Note = Callable[[str, str], None]


def energy(value: Any, note: Note) -> Decimal:
    """kWh rounded to the stored 3 decimals (float noise included); text or a negative is refused."""
    amount, changed = kwh_rounded(value)
    if changed:
        note("rounded", f"{clip(str(value))} stored as {amount}")
    return amount


def milliseconds(value: Any, note: Note) -> int:
    """ChargingDuration in ms: an integer, or a number such as 48000.0 read as one."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise FieldError(f"must be a number of milliseconds, not {json_type(value)}")
    if not Decimal(value).is_finite() or not 0 <= value <= 10**12:
        raise FieldError(f"must be between 0 and 10^12 ms ({clip(str(value))})")
    whole = int(Decimal(value).to_integral_value())
    if isinstance(value, Decimal):
        note("number_form", f"{clip(str(value))} read as {whole} ms")
    return whole


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


def meter_values_in_between(value: Any, note: Note) -> tuple[Decimal, ...]:
    """`{"meterValues": [...]}` (OpenAPI and samples, §8 #15); a bare list is read too."""
    if isinstance(value, list):
        note("spelling", 'a bare list, read as {"meterValues": [...]}')
        values = value
    elif isinstance(value, dict):
        values = value.get("meterValues")
    else:
        raise FieldError(f'must be an object {{"meterValues": [...]}}, not {json_type(value)}')
    if values is None:
        return ()
    if not isinstance(values, list):
        raise FieldError(f"meterValues must be a list, not {json_type(values)}")
    if len(values) > MAX_METER_VALUES_IN_BETWEEN:
        raise FieldError(f"more than {MAX_METER_VALUES_IN_BETWEEN} meterValues")
    parsed, rounded = [], 0
    for index, item in enumerate(values):
        try:
            amount, changed = kwh_rounded(item)
        except FieldError as exc:
            raise FieldError(f"meterValues[{index}]: {exc}") from None
        parsed.append(amount)
        rounded += changed
    if rounded:
        note("rounded", f"{rounded} of {len(values)} meter values had more than 3 decimals; stored rounded")
    return tuple(parsed)


def signed_metering_values(value: Any, note: Note) -> tuple[dict[str, Any], ...]:
    """Eichrecht values, kept as sent; more than ten, over-long or unknown statuses are flagged."""
    if not isinstance(value, list):
        raise FieldError(f"must be a list, not {json_type(value)}")
    if len(value) > MAX_SIGNED_METERING_VALUES:
        note("too_many", f"has {len(value)} entries (OICP allows {MAX_SIGNED_METERING_VALUES}); all kept")
    kept = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            note("ignored", f"[{index}] is {json_type(item)}, not an object; left in the raw message")
            continue
        signed, status = item.get("SignedMeteringValue"), item.get("MeteringStatus")
        if isinstance(signed, str) and len(signed) > MAX_SIGNED_METERING_VALUE:
            note("over_long", f"[{index}].SignedMeteringValue has {len(signed)} characters "
                              f"(OICP allows {MAX_SIGNED_METERING_VALUE}); kept")
        if status is not None and status not in METERING_STATUSES:
            note("unknown_value", f"[{index}].MeteringStatus {show(status)} is not one of "
                                  f"{', '.join(METERING_STATUSES)}; kept as sent")
        kept.append(_json_value(item))
    return tuple(kept)


def calibration_law_verification_info(value: Any, note: Note) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FieldError(f"must be an object, not {json_type(value)}")
    for name, max_length in CALIBRATION_LAW_LENGTHS.items():
        item = value.get(name)
        if isinstance(item, str) and len(item) > max_length:
            note("over_long", f"{name} has {len(item)} characters (OICP allows {max_length}); kept")
    return _json_value(value)


def partner_product_id(value: Any, note: Note) -> str:
    text = string(10_000)(value)
    if len(text) > PARTNER_PRODUCT_ID_MAX:
        note("over_long", f"has {len(text)} characters (the message schema allows {PARTNER_PRODUCT_ID_MAX}, "
                          "Hubject's product IDs up to 100); kept")
    return text


def error_additional_info(value: Any, note: Note) -> str:
    text = string(10_000)(value)
    if len(text) > ERROR_ADDITIONAL_INFO_MAX:
        note("over_long", f"has {len(text)} characters (OICP allows {ERROR_ADDITIONAL_INFO_MAX}); "
                          f"the message keeps all of it, the session its first {ERROR_ADDITIONAL_INFO_MAX}")
    return text


def _squashed(value: str) -> str:
    return "".join(char for char in value.lower() if char.isalnum())


def error_type(value: Any, note: Note) -> str:
    """ConnectorError or CriticalError; Hubject's own sample spells "Connector Error", and a type
    not in the list still tells the agent something, so it is kept as sent."""
    if not isinstance(value, str) or not value.strip():
        raise FieldError(f"must be a non-empty string, not {show(value)}")
    if value in ERROR_TYPES:
        return value
    for known in ERROR_TYPES:
        if _squashed(value) == _squashed(known):
            note("spelling", f"{show(value)} read as {known}")
            return known
    note("unknown_value", f"{show(value)} is not one of {', '.join(ERROR_TYPES)}; kept as sent")
    return check_storable(value.strip())[:ERROR_TYPE_MAX]


# --- messages --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    name: str  # the OICP field name
    attr: str  # the dataclass attribute
    parse: Callable[..., Any]
    required: bool = False  # mandatory in OICP
    # The portal needs it to apply the message: unusable, it refuses the message. A field it does
    # not need is ignored (and flagged) when unusable, and flagged when mandatory but missing.
    needed: bool = True
    lenient: bool = False  # parse(value, note): accepts odd values and notes them


_PARTNER_FIELDS = (
    # Sent back in the stop when valid; one that is not (over 250 characters) is left out of it.
    _Field("CPOPartnerSessionID", "cpo_partner_session_id", partner_session_id, needed=False),
    _Field("EMPPartnerSessionID", "emp_partner_session_id", partner_session_id, needed=False),
)
_NOTIFICATION_COMMON = (
    _Field("Type", "type", enum(NOTIFICATION_TYPES), True),
    _Field("SessionID", "session_id", session_id, True),
    *_PARTNER_FIELDS,
    _Field("Identification", "identification", identification, needed=False),
    _Field("EvseID", "evse_id", evse_id, True),
    # Optional in the EMP asciidoc, mandatory in the CPO asciidoc and both OpenAPIs (§5.2, §8 #13):
    # when missing or unusable it is taken from the EvseID (see charging_notification_from_dict).
    _Field("OperatorID", "operator_id", operator_id, needed=False),
)
_PRODUCT = _Field("PartnerProductID", "partner_product_id", partner_product_id, needed=False, lenient=True)
_METER_START = _Field("MeterValueStart", "meter_value_start", energy, needed=False, lenient=True)
_METER_END = _Field("MeterValueEnd", "meter_value_end", energy, needed=False, lenient=True)
_IN_BETWEEN = _Field("MeterValueInBetween", "meter_values_in_between", meter_values_in_between, needed=False,
                     lenient=True)
_SESSION_START = _Field("SessionStart", "session_start", timestamp, needed=False)
_NOTIFICATION_FIELDS = {
    "Start": (
        _Field("ChargingStart", "charging_start", timestamp, True),
        _SESSION_START,
        _METER_START,
        _PRODUCT,
    ),
    "Progress": (
        _Field("ChargingStart", "charging_start", timestamp, True, needed=False),
        _Field("EventOccurred", "event_occurred", timestamp, True, needed=False),
        # The text says "either ChargingDuration or ConsumedEnergyProgress"; the OpenAPI requires
        # neither, so a Progress with neither is accepted (it still updates last_update_at).
        _Field("ChargingDuration", "charging_duration_ms", milliseconds, lenient=True),
        _Field("ConsumedEnergyProgress", "consumed_energy_progress", energy, lenient=True),
        _SESSION_START,
        _METER_START,
        _IN_BETWEEN,
        _PRODUCT,
    ),
    "End": (
        _Field("ChargingEnd", "charging_end", timestamp, True),
        _Field("ChargingStart", "charging_start", timestamp, needed=False),
        _SESSION_START,
        _Field("SessionEnd", "session_end", timestamp, needed=False),
        _Field("ConsumedEnergy", "consumed_energy", energy, lenient=True),
        _METER_START,
        _METER_END,
        _IN_BETWEEN,
        _PRODUCT,
        _Field("PenaltyTimeStart", "penalty_time_start", timestamp, needed=False),
    ),
    "Error": (
        _Field("ErrorType", "error_type", error_type, True, lenient=True),
        _Field("ErrorAdditionalInfo", "error_additional_info", error_additional_info, needed=False, lenient=True),
    ),
}
_CDR_FIELDS = (
    _Field("SessionID", "session_id", session_id, True),
    *_PARTNER_FIELDS,
    _PRODUCT,
    _Field("EvseID", "evse_id", evse_id, True),
    _Field("Identification", "identification", identification, True, needed=False),
    # The four times and the energy are the ChargeDetailRecord's columns: needed.
    _Field("ChargingStart", "charging_start", timestamp, True),
    _Field("ChargingEnd", "charging_end", timestamp, True),
    _Field("SessionStart", "session_start", timestamp, True),
    _Field("SessionEnd", "session_end", timestamp, True),
    _METER_START,
    _METER_END,
    _IN_BETWEEN,
    _Field("ConsumedEnergy", "consumed_energy", energy, True, lenient=True),
    _Field("SignedMeteringValues", "signed_metering_values", signed_metering_values, needed=False, lenient=True),
    _Field("CalibrationLawVerificationInfo", "calibration_law_verification_info", calibration_law_verification_info,
           needed=False, lenient=True),
    _Field("HubOperatorID", "hub_operator_id", operator_id, needed=False),
    _Field("HubProviderID", "hub_provider_id", provider_id, needed=False),
)


def _read(data: dict[str, Any], fields: tuple[_Field, ...], problems: list[str], anomalies: Anomalies) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for spec in fields:
        raw = data.get(spec.name)
        if raw is None:
            if spec.required and spec.needed:
                problems.append(f"{spec.name}: missing (mandatory)")
            elif spec.required:
                anomalies.add("missing", spec.name, f"{spec.name} is missing (mandatory in OICP); "
                                                    "the portal does not need it")
            continue
        try:
            if spec.lenient:
                def note(code: str, text: str, name: str = spec.name) -> None:
                    anomalies.add(code, name, f"{name} {text}")

                values[spec.attr] = spec.parse(raw, note)
            else:
                values[spec.attr] = spec.parse(raw)
        except FieldError as exc:
            if spec.needed:
                problems.append(f"{spec.name}: {exc}")
            else:
                anomalies.add("ignored", spec.name, f"{spec.name} ignored: {exc} (kept in the raw message)")
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
    operator_id: str  # as sent, or the EvseID's operator when it was missing or unusable
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
    anomalies: tuple[Anomaly, ...] = field(default=(), compare=False)

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
    charging_start: datetime
    charging_end: datetime
    session_start: datetime
    session_end: datetime
    consumed_energy: Decimal
    identification: dict[str, Any] | None = field(default=None, compare=False)
    cpo_partner_session_id: str | None = None
    emp_partner_session_id: str | None = None
    partner_product_id: str | None = None
    meter_value_start: Decimal | None = None
    meter_value_end: Decimal | None = None
    meter_values_in_between: tuple[Decimal, ...] | None = None
    signed_metering_values: tuple[dict[str, Any], ...] | None = field(default=None, compare=False)
    calibration_law_verification_info: dict[str, Any] | None = field(default=None, compare=False)
    hub_operator_id: str | None = None
    hub_provider_id: str | None = None
    anomalies: tuple[Anomaly, ...] = field(default=(), compare=False)

    kind = "CDR"

    def to_json(self) -> dict[str, Any]:
        return _to_json(self, _CDR_FIELDS)


def charging_notification_from_dict(data: dict[str, Any]) -> ChargingNotification:
    problems: list[str] = []
    anomalies = Anomalies()
    values = _read(data, _NOTIFICATION_COMMON, problems, anomalies)
    kind = values.get("type")
    if kind is not None:
        values.update(_read(data, _NOTIFICATION_FIELDS[kind], problems, anomalies))
    if problems:
        raise InboundError(problems, echo=_echo(data))
    evse_operator = ids.operator_id_from_evse_id(values["evse_id"])
    sent = values.get("operator_id")
    if sent is None:
        if data.get("OperatorID") is None:
            anomalies.add("derived", "OperatorID", f"OperatorID missing; taken from the EvseID: {evse_operator}")
        values["operator_id"] = evse_operator
    elif ids.operator_key(sent) != ids.operator_key(evse_operator):
        anomalies.add("operator_differs", "OperatorID",
                      f"OperatorID {sent} is not the EvseID's operator {evse_operator} "
                      "(a hub operator sending for a sub-operator?)")
    return ChargingNotification(**values, anomalies=anomalies.items())


def charge_detail_record_from_dict(data: dict[str, Any], *, path_operator_id: str | None = None) -> ChargeDetailRecord:
    """`path_operator_id` is the {operatorID} of the push URL; when it is neither the EvseID's
    operator nor the CDR's HubOperatorID (a hub operator sending for its sub-operators), the CDR
    is still accepted, and flagged."""
    problems: list[str] = []
    anomalies = Anomalies()
    # Hubject's EMP OpenAPI spells the field HubProviderId (§8 #10); accept both spellings.
    if data.get("HubProviderID") is None and data.get("HubProviderId") is not None:
        data = {**data, "HubProviderID": data["HubProviderId"]}
    elif None not in (data.get("HubProviderID"), data.get("HubProviderId")):
        if data["HubProviderID"] != data["HubProviderId"]:
            anomalies.add("ignored", "HubProviderId",
                          f"HubProviderId {show(data['HubProviderId'])} differs from HubProviderID "
                          f"{show(data['HubProviderID'])}; HubProviderID used")
    values = _read(data, _CDR_FIELDS, problems, anomalies)
    if problems:
        raise InboundError(problems, echo=_echo(data))
    values["operator_id"] = ids.operator_id_from_evse_id(values["evse_id"])
    if path_operator_id is not None:
        _check_path_operator(path_operator_id, values, anomalies)
    return ChargeDetailRecord(**values, anomalies=anomalies.items())


def _check_path_operator(path_operator_id: str, values: dict[str, Any], anomalies: Anomalies) -> None:
    try:
        path_operator = operator_id(path_operator_id)
    except FieldError as exc:
        anomalies.add("path_operator", "operatorID", f"operatorID of the URL ignored: {exc}")
        return
    senders = {ids.operator_key(values["operator_id"])}
    if values.get("hub_operator_id"):
        senders.add(ids.operator_key(values["hub_operator_id"]))
    if ids.operator_key(path_operator) not in senders:
        anomalies.add("path_operator", "operatorID",
                      f"CDR pushed for operator {path_operator}; its EvseID belongs to {values['operator_id']}")


def parse_charging_notification(body: bytes | str) -> tuple[str, ChargingNotification]:
    """The body's text and the notification; InboundError lists what is wrong."""
    text, data = decode_body(body)
    return text, charging_notification_from_dict(data)


def parse_charge_detail_record(body: bytes | str, *, path_operator_id: str | None = None) -> tuple[str, ChargeDetailRecord]:
    text, data = decode_body(body)
    return text, charge_detail_record_from_dict(data, path_operator_id=path_operator_id)
