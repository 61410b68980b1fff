"""eRoamingChargingNotifications_V1.1 (DIGEST §5.2), read leniently: Type Start, Progress, End or Error."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from .. import ids
from ..anomalies import Anomalies, Anomaly
from ..fields import enum, evse_id, operator_id, session_id, timestamp
from .body import decode_body
from .lenient import energy, error_additional_info, error_type, identification, milliseconds
from .reading import IN_BETWEEN, METER_END, METER_START, PARTNER_FIELDS, PRODUCT, SESSION_START, Field, read, to_json
from .refusal import InboundError, echo_ids

NOTIFICATION_TYPES = ("Start", "Progress", "End", "Error")

_NOTIFICATION_COMMON = (
    Field("Type", "type", enum(NOTIFICATION_TYPES), True),
    Field("SessionID", "session_id", session_id, True),
    *PARTNER_FIELDS,
    Field("Identification", "identification", identification, needed=False),
    Field("EvseID", "evse_id", evse_id, True),
    # Optional in the EMP asciidoc, mandatory in the CPO asciidoc and both OpenAPIs (§5.2, §8 #13):
    # when missing or unusable it is taken from the EvseID (see charging_notification_from_dict).
    Field("OperatorID", "operator_id", operator_id, needed=False),
)
_NOTIFICATION_FIELDS = {
    "Start": (
        Field("ChargingStart", "charging_start", timestamp, True),
        SESSION_START,
        METER_START,
        PRODUCT,
    ),
    "Progress": (
        Field("ChargingStart", "charging_start", timestamp, True, needed=False),
        Field("EventOccurred", "event_occurred", timestamp, True, needed=False),
        # The text says "either ChargingDuration or ConsumedEnergyProgress"; the OpenAPI requires
        # neither, so a Progress with neither is accepted (it still updates last_update_at).
        Field("ChargingDuration", "charging_duration_ms", milliseconds, lenient=True),
        Field("ConsumedEnergyProgress", "consumed_energy_progress", energy, lenient=True),
        SESSION_START,
        METER_START,
        IN_BETWEEN,
        PRODUCT,
    ),
    "End": (
        Field("ChargingEnd", "charging_end", timestamp, True),
        Field("ChargingStart", "charging_start", timestamp, needed=False),
        SESSION_START,
        Field("SessionEnd", "session_end", timestamp, needed=False),
        Field("ConsumedEnergy", "consumed_energy", energy, lenient=True),
        METER_START,
        METER_END,
        IN_BETWEEN,
        PRODUCT,
        Field("PenaltyTimeStart", "penalty_time_start", timestamp, needed=False),
    ),
    "Error": (
        Field("ErrorType", "error_type", error_type, True, lenient=True),
        Field("ErrorAdditionalInfo", "error_additional_info", error_additional_info, needed=False, lenient=True),
    ),
}


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
        return to_json(self, _NOTIFICATION_COMMON + _NOTIFICATION_FIELDS[self.type])


def charging_notification_from_dict(data: dict[str, Any]) -> ChargingNotification:
    problems: list[str] = []
    anomalies = Anomalies()
    values = read(data, _NOTIFICATION_COMMON, problems, anomalies)
    kind = values.get("type")
    if kind is not None:
        values.update(read(data, _NOTIFICATION_FIELDS[kind], problems, anomalies))
    if problems:
        raise InboundError(problems, echo=echo_ids(data))
    evse_operator = ids.operator_id_from_evse_id(values["evse_id"])
    sent = values.get("operator_id")
    if sent is None:
        if data.get("OperatorID") is None:
            anomalies.add("derived", "OperatorID", f"OperatorID missing; taken from the EvseID: {evse_operator}")
        values["operator_id"] = evse_operator
    elif ids.operator_key(sent) != ids.operator_key(evse_operator):
        anomalies.add(
            "operator_differs",
            "OperatorID",
            f"OperatorID {sent} is not the EvseID's operator {evse_operator} "
            "(a hub operator sending for a sub-operator?)",
        )
    return ChargingNotification(**values, anomalies=anomalies.items())


def parse_charging_notification(body: bytes | str) -> tuple[str, ChargingNotification]:
    """The body's text and the notification; InboundError lists what is wrong."""
    text, data = decode_body(body)
    return text, charging_notification_from_dict(data)
