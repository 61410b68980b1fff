"""The domain: charging sessions, the remote-stop requests agents make, and the audit trail.

Models hold data, constraints and values derived from their own fields only; every write goes
through `sessions.services`, every read used by a screen through the selectors of its part (`sessions.<part>.selectors`).

One module per part of the job; everything is importable from here.
"""

from .audit import (
    AuditChainHead,
    AuditCheckpoint,
    AuditExport,
    AuditRecord,
    AuditVerification,
    LegalHold,
    checkpoint_payload,
)
from .charging import ChargingSession
from .directory import EvsePullRun, EvseRecord, Operator, PlaceWord
from .inbound import CdrPullRun, ChargeDetailRecord, InboundMessage, InboundRefusalCount
from .stops import RemoteStopRequest, StopReason

__all__ = [
    "EvsePullRun",
    "EvseRecord",
    "Operator",
    "PlaceWord",
    "AuditChainHead",
    "AuditCheckpoint",
    "AuditExport",
    "AuditRecord",
    "AuditVerification",
    "CdrPullRun",
    "ChargeDetailRecord",
    "ChargingSession",
    "InboundMessage",
    "InboundRefusalCount",
    "LegalHold",
    "RemoteStopRequest",
    "StopReason",
    "checkpoint_payload",
]
