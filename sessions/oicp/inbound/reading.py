"""How a pushed message's fields are read: refuse only what the portal cannot use, flag every other oddity."""

# What HBS forwards has passed Hubject's checks, and a refused message is lost to the portal (DIGEST §9),
# so only what cannot be identified or applied is refused: a missing or malformed SessionID, EvseID or
# Type, a timestamp the portal needs without an offset, a value of the wrong kind where the portal stores
# it (text where an energy belongs). Everything else is accepted; each oddity becomes an `Anomaly` on the
# message, and an optional field the portal does not need is ignored (and flagged) when it is unusable.
# Fields the portal does not know are kept in the raw message. Explicit JSON nulls count as absent (HBS
# sends them). EvseID, OperatorID and ProviderID are upper-cased, as HBS stores them; the SessionID is
# kept exactly as sent.

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..anomalies import Anomalies
from ..fields import FieldError, partner_session_id, timestamp
from .lenient import energy, meter_values_in_between, partner_product_id


@dataclass(frozen=True)
class Field:
    """One OICP field of a message: where it goes and how it is read."""

    name: str  # the OICP field name
    attr: str  # the dataclass attribute
    parse: Callable[..., Any]
    required: bool = False  # mandatory in OICP
    # The portal needs it to apply the message: unusable, it refuses the message. A field it does
    # not need is ignored (and flagged) when unusable, and flagged when mandatory but missing.
    needed: bool = True
    lenient: bool = False  # parse(value, note): accepts odd values and notes them


# Fields both kinds of message carry.
PARTNER_FIELDS = (
    # Sent back in the stop when valid; one that is not (over 250 characters) is left out of it.
    Field("CPOPartnerSessionID", "cpo_partner_session_id", partner_session_id, needed=False),
    Field("EMPPartnerSessionID", "emp_partner_session_id", partner_session_id, needed=False),
)
PRODUCT = Field("PartnerProductID", "partner_product_id", partner_product_id, needed=False, lenient=True)
METER_START = Field("MeterValueStart", "meter_value_start", energy, needed=False, lenient=True)
METER_END = Field("MeterValueEnd", "meter_value_end", energy, needed=False, lenient=True)
IN_BETWEEN = Field(
    "MeterValueInBetween", "meter_values_in_between", meter_values_in_between, needed=False, lenient=True
)
SESSION_START = Field("SessionStart", "session_start", timestamp, needed=False)


def read(data: dict[str, Any], fields: tuple[Field, ...], problems: list[str], anomalies: Anomalies) -> dict[str, Any]:
    """The fields' values; what is unusable goes to `problems` (refused) or `anomalies` (flagged)."""
    values: dict[str, Any] = {}
    for spec in fields:
        raw = data.get(spec.name)
        if raw is None:
            if spec.required and spec.needed:
                problems.append(f"{spec.name}: missing (mandatory)")
            elif spec.required:
                anomalies.add(
                    "missing", spec.name, f"{spec.name} is missing (mandatory in OICP); the portal does not need it"
                )
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


def to_json(message: Any, fields: tuple[Field, ...]) -> dict[str, Any]:
    """The message under its OICP field names, values normalised."""
    result = {
        spec.name: _jsonable(getattr(message, spec.attr)) for spec in fields if getattr(message, spec.attr) is not None
    }
    if "MeterValueInBetween" in result:  # keep the OICP shape
        result["MeterValueInBetween"] = {"meterValues": result["MeterValueInBetween"]}
    return result
