"""Field checks shared by what Hubject pushes (`inbound`) and the EMP's session feed (`services.imports`).

No ORM, no Django. Each check takes a value decoded from JSON and returns it normalised, or raises
`FieldError` whose message follows "Field: " ("'XX' is not an EvseID"). `load_json` decodes text
with the guards both readers need: Decimal numbers, no NaN/Infinity, no repeated keys, nesting at
most `MAX_DEPTH` levels (counted by a linear scan before `json.loads`, so 100,000 nested lists cost
a few microseconds and never reach the parser's recursion).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from . import ids

MAX_DEPTH = 20
# ChargingSession.energy_kwh and ChargeDetailRecord.consumed_energy_kwh: 12 digits, 3 decimals.
MAX_KWH = Decimal("999999999.999")

# YYYY-MM-DDThh:mm:ss[.fraction](Z|±hh:mm) — the offset is mandatory (DIGEST §4, §8 #16); the
# pattern lets it be missing only to say so.
_TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:?\d{2})?$")
_EARLIEST_YEAR, _LATEST_YEAR = 1970, 2199
_SPECIAL = re.compile(r'[\[\]{}"\\]')
_THOUSANDTH = Decimal("0.001")


class FieldError(Exception):
    """One field's problem; the message follows "Field: "."""


# --- JSON text -------------------------------------------------------------------------------


class DuplicateKey(FieldError):
    """A key repeated in one JSON object; the message names the key as the field."""

    def __init__(self, key: str):
        self.key = key
        super().__init__(f"{clip(key)}: appears more than once in one object")


def reject_constant(name: str):
    raise ValueError(f"{name} is not a number OICP allows")


def _pairs_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKey(key)
        result[key] = value
    return result


def nesting_exceeds(text: str, limit: int = MAX_DEPTH) -> bool:
    """True when arrays/objects in `text` nest deeper than `limit`; one linear pass, no recursion.

    Brackets inside JSON strings do not count. For text that is not JSON the answer is only an
    estimate, which is fine: such text is refused either way.
    """
    if text.count("[") + text.count("{") <= limit:
        return False  # cannot nest deeper than it opens (every message Hubject sends: a C count, no walk)
    depth = 0
    in_string = False
    skip = -1
    for match in _SPECIAL.finditer(text):
        position = match.start()
        if position == skip:
            continue
        char = match.group()
        if in_string:
            if char == "\\":
                skip = position + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def load_json(text: str) -> Any:
    """`text` decoded (numbers with a fraction as Decimal). DuplicateKey for a repeated key;
    FieldError "JSON nested deeper than …" or "not valid JSON (…)" (NaN and Infinity included)."""
    if nesting_exceeds(text):
        raise FieldError(f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(
            text,
            parse_float=Decimal,
            parse_constant=reject_constant,
            object_pairs_hook=_pairs_without_duplicates,
        )
    except RecursionError:
        raise FieldError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, integers too long to convert
        raise FieldError(f"not valid JSON ({clip(str(exc), 120)})") from None


# --- values ----------------------------------------------------------------------------------


def clip(value: str, limit: int = 40) -> str:
    return value if len(value) <= limit else value[:limit] + "…"


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, Decimal, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def show(value: Any) -> str:
    """A value for a message: a string quoted (and clipped), anything else by its JSON type."""
    if isinstance(value, str):
        return repr(clip(value))
    return json_type(value)


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_storable(value: str) -> str:
    # PostgreSQL text and jsonb cannot hold NUL; lone surrogates cannot be encoded as UTF-8.
    if "\x00" in value:
        raise FieldError("contains a NUL character")
    # isascii() and the regex run in C: a loop over the characters was a few % of an acknowledgement.
    if not value.isascii() and _SURROGATE.search(value):
        raise FieldError("contains an unpaired surrogate")
    return value


def string(max_length: int) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise FieldError(f"must be a string, not {json_type(value)}")
        if len(value) > max_length:
            raise FieldError(f"longer than {max_length} characters ({len(value)})")
        return check_storable(value)

    return parse


def enum(allowed: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise FieldError(f"{show(value)} is not one of {', '.join(allowed)}")
        return value

    return parse


def identifier(check: Callable[[object], bool], what: str, *, keep_case: bool = False) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise FieldError(f"must be a string, not {json_type(value)}")
        normalised = value if keep_case else value.upper()
        if not check(normalised):
            raise FieldError(f"{show(value)} is not {what}")
        return normalised

    return parse


# EvseID, OperatorID and ProviderID upper case, as HBS stores them. The SessionID exactly as sent:
# Hubject compares it as given, so it is echoed and sent back unchanged (and looked up by
# ChargingSession.session_key, its lower-case form).
session_id = identifier(ids.is_session_id, "a SessionID (GUID shape)", keep_case=True)
evse_id = identifier(ids.is_evse_id, "an EvseID")
operator_id = identifier(ids.is_operator_id, "an OperatorID")
provider_id = identifier(ids.is_provider_id, "a ProviderID")
partner_session_id = string(ids.PARTNER_SESSION_ID_MAX)


def timestamp(value: Any) -> datetime:
    """ISO 8601 with a UTC offset, as OICP requires; the offset is kept."""
    if not isinstance(value, str):
        raise FieldError(f"must be a string, not {json_type(value)}")
    match = _TIMESTAMP.fullmatch(value)
    if not match:
        raise FieldError(
            f"{show(value)} is not an ISO 8601 date and time with a UTC offset (e.g. 2020-09-23T14:17:53+02:00)"
        )
    date, time, fraction, offset = match.groups()
    if offset is None:
        raise FieldError(f"{show(value)} has no UTC offset (add one, e.g. +01:00 or Z)")
    fraction = (fraction or "")[:7]  # datetime keeps microseconds
    offset = "+00:00" if offset in "Zz" else offset
    try:
        parsed = datetime.fromisoformat(f"{date}T{time}{fraction}{offset}")
    except ValueError:
        raise FieldError(f"{show(value)} is not a valid date and time") from None
    # Checked before any conversion to UTC, which would overflow near year 1 or 9999.
    if not _EARLIEST_YEAR <= parsed.year <= _LATEST_YEAR:
        raise FieldError(f"{show(value)} is outside {_EARLIEST_YEAR}–{_LATEST_YEAR}")
    return parsed


def kwh_rounded(value: Any) -> tuple[Decimal, bool]:
    """A non-negative amount of kWh, at most MAX_KWH, rounded half-up to Decimal(,3) (the columns'
    precision), and whether rounding changed it. JSON numbers only (never a boolean or a string):
    float noise from a CPO's serialiser (1234.5000000000002) is usable, text is not."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise FieldError(f"must be a number of kWh, not {json_type(value)}")
    amount = Decimal(value)
    if not amount.is_finite() or amount < 0 or amount > MAX_KWH:
        raise FieldError(f"{clip(str(value))} is not between 0 and {MAX_KWH} kWh")
    try:
        rounded = amount.quantize(_THOUSANDTH, rounding=ROUND_HALF_UP)
    except InvalidOperation:
        raise FieldError(f"{clip(str(value))} is not a valid amount") from None
    return rounded, rounded != amount


def kwh(value: Any) -> Decimal:
    """A non-negative Decimal(,3) in kWh, at most MAX_KWH, with at most 3 decimal places (strict:
    for the EMP's own session feed; what Hubject forwards is read with `kwh_rounded`)."""
    rounded, changed = kwh_rounded(value)
    if changed:
        raise FieldError(f"{clip(str(value))} has more than 3 decimal places")
    return rounded
