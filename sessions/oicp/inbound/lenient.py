"""Lenient field rules for pushed messages: an odd but usable value is accepted and noted, an unusable one raises."""

# A lenient check takes the value and `note(code, text)`: it accepts an odd but usable value and says
# what it did with it; the text follows the field's name ("12.3456 stored as 12.346"). A FieldError
# means the value is unusable (the reader refuses the message or ignores the field, see `reading`).

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from ..fields import MAX_DEPTH, FieldError, check_storable, clip, json_type, kwh_rounded, show, string

MAX_METER_VALUES_IN_BETWEEN = 1000
MAX_SIGNED_METERING_VALUES = 10  # asciidoc: list of at most 10 (more are kept and flagged)
MAX_SIGNED_METERING_VALUE = 3000
PARTNER_PRODUCT_ID_MAX = 50  # the message schemas; Hubject's ProductID pattern allows 100, CPOs send that
ERROR_ADDITIONAL_INFO_MAX = 250  # ChargingSession.last_error_info keeps this much; the message keeps all
ERROR_TYPE_MAX = 30  # ChargingSession.last_error_type

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
            note(
                "over_long",
                f"[{index}].SignedMeteringValue has {len(signed)} characters "
                f"(OICP allows {MAX_SIGNED_METERING_VALUE}); kept",
            )
        if status is not None and status not in METERING_STATUSES:
            note(
                "unknown_value",
                f"[{index}].MeteringStatus {show(status)} is not one of {', '.join(METERING_STATUSES)}; kept as sent",
            )
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
        note(
            "over_long",
            f"has {len(text)} characters (the message schema allows {PARTNER_PRODUCT_ID_MAX}, "
            "Hubject's product IDs up to 100); kept",
        )
    return text


def error_additional_info(value: Any, note: Note) -> str:
    text = string(10_000)(value)
    if len(text) > ERROR_ADDITIONAL_INFO_MAX:
        note(
            "over_long",
            f"has {len(text)} characters (OICP allows {ERROR_ADDITIONAL_INFO_MAX}); "
            f"the message keeps all of it, the session its first {ERROR_ADDITIONAL_INFO_MAX}",
        )
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
