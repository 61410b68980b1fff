"""What Hubject pushes (or the CDR pull brings): charging notifications and charge detail records.

Each accepted message is kept raw and parsed as an InboundMessage linked to its session and
written to the audit trail (NOTIFICATION_RECEIVED / CDR_RECEIVED) in the transaction that applies
it. The session row is locked while a message is applied; two messages creating the same unknown
session at once meet at the unique SessionID, and the loser applies its message to the winner's
row. Messages are validated before they get here (`sessions.oicp.inbound`).

Status only moves forward (ACTIVE → CHARGING_ENDED → CLOSED): a notification arriving after the
CDR is kept and audited but does not reopen the session or overwrite the CDR's energy.

A message never changes a session it does not match (DIGEST §9): one whose EvseID is not the
session's, or a second CDR that disagrees with the first, is kept, linked to the session for its
timeline and flagged, but held back: the session and its stops stay as they were. Every anomaly
the reader found (`sessions.oicp.anomalies`) is stored on the InboundMessage and in its audit record.

Sessions are found by `session_key` (the SessionID in lower case), so a CPO that upper-cases the
SessionID still reaches the session; the SessionID itself is kept as first received.

One module per idea: `notifications` and `cdrs` apply each kind of message; `session_row` finds (or
creates) the session a message belongs to, locked; `matching` compares a message with its session;
`keeping` stores the message with its flags; `refusals` counts and reports the calls the endpoints refused.
"""

from .cdrs import record_cdr
from .keeping import RecordOutcome
from .notifications import record_charging_notification
from .refusals import count_inbound_refusal, report_inbound_refusals

__all__ = [
    "RecordOutcome",
    "count_inbound_refusal",
    "record_cdr",
    "record_charging_notification",
    "report_inbound_refusals",
]
