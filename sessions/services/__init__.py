"""Every write of the domain. Each state change writes its AuditRecord in the same transaction.

Functions are verb-first and keyword-only. Rule violations raise domain exceptions (such as
`StopNotAllowed`) that the interfaces (views, admin, commands) turn into messages. Callers import
from this package, never from its modules, so the modules can be reorganised freely.
"""

from .audit import record_audit
from .charging_sessions import create_charging_session
from .stops import (
    SendOutcome,
    StopNotAllowed,
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
    "SendOutcome",
    "StopNotAllowed",
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
