"""Remote stops: the agent's request, the worker's call to Hubject, and their outcomes.

One module per idea: `request` (the agent's request and its refusals, the supervisor's resend),
`dispatch` (handing a request to the broker, bounded), `sending` (the worker's call to Hubject and
its outcome), `confirmation` (the CPO's proof that the session stopped, and its absence), `sweeper`
(nothing lost when the broker or a worker was down) and `manual_close` (bookkeeping, nothing sent).
"""

from .confirmation import SETTLED_BY_PROOF, confirm_remote_stops, confirm_stops_for_session_end, mark_unconfirmed_stops
from .dispatch import dispatch_remote_stop
from .manual_close import close_session_manually
from .request import (
    StopNotAllowed,
    StopRequested,
    request_remote_stop,
    resend_remote_stop,
)
from .sending import SendOutcome, mark_remote_stop_failed, send_remote_stop
from .sweeper import recover_lost_attempt, sweep_stop_requests

__all__ = [
    "SETTLED_BY_PROOF",
    "SendOutcome",
    "StopNotAllowed",
    "StopRequested",
    "close_session_manually",
    "confirm_remote_stops",
    "confirm_stops_for_session_end",
    "dispatch_remote_stop",
    "mark_remote_stop_failed",
    "mark_unconfirmed_stops",
    "recover_lost_attempt",
    "request_remote_stop",
    "resend_remote_stop",
    "send_remote_stop",
    "sweep_stop_requests",
]
