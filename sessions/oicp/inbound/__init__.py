"""What Hubject pushes to the EMP (notifications and CDRs), checked and read leniently: the entry points."""

# A message becomes a frozen dataclass with its oddities attached as `Anomaly`s, or `InboundError` lists
# every problem, each naming its field ("EvseID: 'XX' is not an EvseID"). The rules are in `reading`
# (what is refused, what is flagged) and `lenient` (each field's rule); the body checks are in `body`.

from .body import decode_body
from .cdrs import ChargeDetailRecord, charge_detail_record_from_dict, parse_charge_detail_record
from .lenient import ERROR_ADDITIONAL_INFO_MAX
from .notifications import ChargingNotification, charging_notification_from_dict, parse_charging_notification
from .refusal import InboundError

__all__ = [
    "ERROR_ADDITIONAL_INFO_MAX",
    "ChargeDetailRecord",
    "ChargingNotification",
    "InboundError",
    "charge_detail_record_from_dict",
    "charging_notification_from_dict",
    "decode_body",
    "parse_charge_detail_record",
    "parse_charging_notification",
]
