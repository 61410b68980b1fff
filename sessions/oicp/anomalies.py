"""What was odd about a message Hubject forwarded, and was accepted anyway (DIGEST §9).

Hubject forwards what CPOs send after its own checks; a refused message is lost to the portal.
So the readers accept what they can use, normalise a value only where a typed column needs it,
and record each oddity as an `Anomaly` on the message. Supervisors see them on the anomalies list,
agents on the session's timeline. No ORM, no Django.

Each kind of anomaly is one code below, with the words its count is shown under.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# code -> what a count of them is called on the supervisors' list
KINDS: dict[str, str] = {
    "rounded": "value rounded to the stored precision",
    "number_form": "number in an unusual form",
    "spelling": "value spelled differently, mapped",
    "unknown_value": "value not in OICP's list, kept as sent",
    "derived": "missing field derived",
    "operator_differs": "OperatorID differs from the EvseID's operator",
    "path_operator": "CDR posted for another operator",
    "over_long": "text longer than OICP allows, kept",
    "too_many": "list longer than OICP allows, kept",
    "ignored": "unusable optional field ignored (kept in the raw message)",
    "missing": "mandatory field missing, not needed here",
    "evse_mismatch": "not for this session's EVSE: held back",
    "cdr_conflict": "second CDR that differs from the first: held back",
    "refused": "refused: could not be used",
}
# These mean the message did not change its session: it was kept and set aside.
HELD_BACK = frozenset({"evse_mismatch", "cdr_conflict"})


@dataclass(frozen=True)
class Anomaly:
    code: str  # a key of KINDS
    field: str  # the OICP field it concerns ("" for the message as a whole)
    text: str  # one sentence for people: what came, what the portal did with it

    def __post_init__(self) -> None:
        if self.code not in KINDS:
            raise ValueError(f"unknown anomaly code {self.code!r}")

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "field": self.field, "text": self.text}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Anomaly:
        return cls(code=data["code"], field=data.get("field", ""), text=data.get("text", ""))


class Anomalies:
    """Collects the anomalies of one message while it is read; each (code, field) once."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], Anomaly] = {}

    def add(self, code: str, field: str, text: str) -> None:
        self._items.setdefault((code, field), Anomaly(code, field, text))

    def __bool__(self) -> bool:
        return bool(self._items)

    def items(self) -> tuple[Anomaly, ...]:
        return tuple(self._items.values())
