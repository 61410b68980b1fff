"""eRoamingChargeDetailRecord_V2.2 (DIGEST §5.3), pushed by HBS or pulled, read leniently and flagged."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from .. import ids
from ..anomalies import Anomalies, Anomaly
from ..fields import FieldError, evse_id, operator_id, provider_id, session_id, show, timestamp
from .body import decode_body
from .lenient import calibration_law_verification_info, energy, identification, signed_metering_values
from .reading import IN_BETWEEN, METER_END, METER_START, PARTNER_FIELDS, PRODUCT, Field, read, to_json
from .refusal import InboundError, echo_ids

_CDR_FIELDS = (
    Field("SessionID", "session_id", session_id, True),
    *PARTNER_FIELDS,
    PRODUCT,
    Field("EvseID", "evse_id", evse_id, True),
    Field("Identification", "identification", identification, True, needed=False),
    # The four times and the energy are the ChargeDetailRecord's columns: needed.
    Field("ChargingStart", "charging_start", timestamp, True),
    Field("ChargingEnd", "charging_end", timestamp, True),
    Field("SessionStart", "session_start", timestamp, True),
    Field("SessionEnd", "session_end", timestamp, True),
    METER_START,
    METER_END,
    IN_BETWEEN,
    Field("ConsumedEnergy", "consumed_energy", energy, True, lenient=True),
    Field("SignedMeteringValues", "signed_metering_values", signed_metering_values, needed=False, lenient=True),
    Field(
        "CalibrationLawVerificationInfo",
        "calibration_law_verification_info",
        calibration_law_verification_info,
        needed=False,
        lenient=True,
    ),
    Field("HubOperatorID", "hub_operator_id", operator_id, needed=False),
    Field("HubProviderID", "hub_provider_id", provider_id, needed=False),
)


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
        return to_json(self, _CDR_FIELDS)


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
            anomalies.add(
                "ignored",
                "HubProviderId",
                f"HubProviderId {show(data['HubProviderId'])} differs from HubProviderID "
                f"{show(data['HubProviderID'])}; HubProviderID used",
            )
    values = read(data, _CDR_FIELDS, problems, anomalies)
    if problems:
        raise InboundError(problems, echo=echo_ids(data))
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
        anomalies.add(
            "path_operator",
            "operatorID",
            f"CDR pushed for operator {path_operator}; its EvseID belongs to {values['operator_id']}",
        )


def parse_charge_detail_record(
    body: bytes | str, *, path_operator_id: str | None = None
) -> tuple[str, ChargeDetailRecord]:
    text, data = decode_body(body)
    return text, charge_detail_record_from_dict(data, path_operator_id=path_operator_id)
