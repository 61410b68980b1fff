"""Every write of the domain. Each state change writes its AuditRecord in the same transaction.

Functions are verb-first and keyword-only. Rule violations raise domain exceptions (such as
`StopNotAllowed`) that the interfaces (views, admin, commands) turn into messages. Callers import
from this package, never from its modules, so the modules can be reorganised freely.
"""

from ..audit.export_jobs import (
    prepare_audit_export,
    queue_audit_export,
    record_export_download,
    stream_audit_export,
    write_audit_export,
)
from ..audit.records import (
    ChainHead,
    anchor_audit_chain,
    anchor_audit_chain_periodically,
    record_audit,
    request_audit_verification,
    run_requested_verification,
    verify_audit_chain,
)
from ..audit.retention import (
    PurgePlan,
    PurgeRefused,
    purge_audit_records,
    release_legal_hold,
    set_legal_hold,
)
from ..charging.services import create_charging_session
from ..directory.services import (
    EvsePullReport,
    change_operator_contact,
    pull_evse_data,
    pull_evse_data_periodically,
)
from ..inbound.queue import (
    Received,
    apply_inbound_messages,
    kick_inbound_worker,
    receive_cdr,
    receive_charging_notification,
)
from ..inbound.reconciliation import ReconciliationReport, pull_charge_detail_records, pull_recent_charge_detail_records
from ..inbound.services import (
    RecordOutcome,
    count_inbound_refusal,
    record_cdr,
    record_charging_notification,
    report_inbound_refusals,
)
from ..stops.services import (
    SendOutcome,
    StopNotAllowed,
    StopRequested,
    close_session_manually,
    confirm_remote_stops,
    dispatch_remote_stop,
    mark_remote_stop_failed,
    mark_unconfirmed_stops,
    recover_lost_attempt,
    request_remote_stop,
    resend_remote_stop,
    send_remote_stop,
    sweep_stop_requests,
)

__all__ = [
    "EvsePullReport",
    "change_operator_contact",
    "pull_evse_data",
    "pull_evse_data_periodically",
    "ChainHead",
    "anchor_audit_chain",
    "anchor_audit_chain_periodically",
    "ReconciliationReport",
    "pull_charge_detail_records",
    "pull_recent_charge_detail_records",
    "PurgePlan",
    "PurgeRefused",
    "prepare_audit_export",
    "purge_audit_records",
    "queue_audit_export",
    "record_export_download",
    "release_legal_hold",
    "set_legal_hold",
    "stream_audit_export",
    "verify_audit_chain",
    "request_audit_verification",
    "run_requested_verification",
    "write_audit_export",
    "RecordOutcome",
    "Received",
    "apply_inbound_messages",
    "kick_inbound_worker",
    "receive_cdr",
    "receive_charging_notification",
    "record_cdr",
    "record_charging_notification",
    "count_inbound_refusal",
    "report_inbound_refusals",
    "SendOutcome",
    "StopNotAllowed",
    "StopRequested",
    "close_session_manually",
    "confirm_remote_stops",
    "create_charging_session",
    "dispatch_remote_stop",
    "mark_remote_stop_failed",
    "mark_unconfirmed_stops",
    "record_audit",
    "recover_lost_attempt",
    "request_remote_stop",
    "resend_remote_stop",
    "send_remote_stop",
    "sweep_stop_requests",
]
