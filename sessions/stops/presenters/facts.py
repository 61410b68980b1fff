"""The facts a card is chosen from: the state of one stop request and its session (`StopFacts`), the
situation they describe (`SITUATIONS`), and how they are read from a stop request (`stop_facts`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from ...directory import selectors as directory
from ...models import ChargingSession, RemoteStopRequest
from .. import selectors

State = RemoteStopRequest.State
Status = ChargingSession.Status

# Hubject gives the CPO this long to answer a forwarded stop, then answers itself (DIGEST §3).
HBS_CPO_WINDOW_SECONDS = 60


@dataclass(frozen=True)
class StopFacts:
    """The state of one stop request and its session, as far as the agent's advice depends on it."""

    state: str
    code: str = ""  # the OICP code of the last answer ("" when none came back)
    failure_kind: str = ""  # the kind of the last failure when there is no code (FAILURE_KINDS)
    http_status: int | None = None
    attempts: int = 0
    max_attempts: int = 3
    retry_at: datetime | None = None  # PENDING after a failed attempt: when the next one starts
    outcome_unknown: bool = False  # an attempt left and no answer came back: it may have reached the CPO
    session_status: str = Status.ACTIVE
    closed_manually: bool = False
    charging_ended_at: datetime | None = None  # the CPO's End notification
    cdr_received_at: datetime | None = None
    ended_at: datetime | None = None
    sent_after_end: bool = False  # the stop left after the End: only the CDR can confirm it
    accepted_at: datetime | None = None
    confirmed_at: datetime | None = None
    confirmed_by: str = ""
    may_send_new_stop: bool = False  # the agent may, and the rules allow a new stop now (stop_block)
    operator_id: str = ""
    evse_id: str = ""
    # From Hubject's EVSE directory when it lists the CPO ("" when not): the advice names whom to call.
    operator_name: str = ""
    operator_hotline: str = ""

    @property
    def subject(self) -> str:
        """The row of the table: the code, else the failure kind, else success for accepted stops."""
        if self.code:
            return self.code
        if self.state in (State.ACCEPTED, State.UNCONFIRMED):
            return "000"
        if self.failure_kind:
            return self.failure_kind  # a CONFIRMED one too: it failed, then the End or CDR settled it
        return "000" if self.state == State.CONFIRMED else "unknown"

    @property
    def situation(self) -> str:
        closed = self.session_status == Status.CLOSED
        if self.state == State.CONFIRMED:
            return (
                "confirmed_cdr" if self.confirmed_by == "CDR" or (closed and self.cdr_received_at) else "confirmed_end"
            )
        if closed and not self.closed_manually:
            return "session_ended"  # the CDR arrived: the session is over, whatever the stop was told
        if self.state == State.ACCEPTED:
            return "accepted_after_end" if self.sent_after_end else "accepted"
        if self.state == State.UNCONFIRMED:
            return "unconfirmed"
        if self.state == State.PENDING and self.attempts and self.retry_at:
            return "retrying"
        if self.state in (State.PENDING, State.SENDING):
            return "waiting"
        if closed:
            return "closed_by_hand"
        if self.outcome_unknown:
            return "final_unknown"
        if self.charging_ended_at or self.session_status == Status.CHARGING_ENDED:
            return "final_after_end"
        return "final"


# Every situation a card can be in, for the advice test (code × situation) and the README.
SITUATIONS = (
    "waiting",
    "retrying",
    "final",
    "final_unknown",
    "final_after_end",
    "session_ended",
    "closed_by_hand",
    "accepted",
    "accepted_after_end",
    "confirmed_end",
    "confirmed_cdr",
    "unconfirmed",
)
# The situations after the portal has stopped sending: the card's "what next" is the agent's.
FINAL_FAILURE_SITUATIONS = ("final", "final_unknown", "final_after_end")


def stop_facts(*, stop_request: RemoteStopRequest, may_send_new_stop: bool = False) -> StopFacts:
    charging_session = stop_request.charging_session
    ended = charging_session.charging_ended_at
    sent = stop_request.first_sent_at or stop_request.requested_at
    failure_kind = ""
    if not stop_request.oicp_code and (
        stop_request.attempt_count or stop_request.state in (State.REJECTED, State.FAILED)
    ):
        failure_kind = selectors.last_failure_kind(stop_request=stop_request)
        if not failure_kind and stop_request.state in (State.REJECTED, State.FAILED):
            failure_kind = "connection"
    accepted_at = None
    if stop_request.state in (State.ACCEPTED, State.UNCONFIRMED):
        accepted_at = stop_request.answered_at or stop_request.finished_at
    elif stop_request.state == State.CONFIRMED and stop_request.oicp_code == "000":
        accepted_at = stop_request.answered_at
    contact = directory.cpo_contact(operator_id=charging_session.operator_id, evse_id=charging_session.evse_id)
    return StopFacts(
        state=stop_request.state,
        code=stop_request.oicp_code,
        failure_kind=failure_kind,
        http_status=stop_request.http_status,
        attempts=stop_request.attempt_count,
        max_attempts=max(settings.OICP_MAX_ATTEMPTS, stop_request.attempt_count),
        retry_at=stop_request.next_attempt_at,
        outcome_unknown=stop_request.outcome_unknown,
        session_status=charging_session.status,
        closed_manually=charging_session.closed_manually,
        charging_ended_at=ended,
        cdr_received_at=charging_session.cdr_received_at,
        ended_at=charging_session.ended_at,
        sent_after_end=charging_session.status == Status.CHARGING_ENDED
        or (ended is not None and sent is not None and ended <= sent),
        accepted_at=accepted_at,
        confirmed_at=stop_request.confirmed_at,
        confirmed_by=stop_request.confirmed_by,
        may_send_new_stop=may_send_new_stop,
        operator_id=charging_session.operator_id,
        evse_id=charging_session.evse_id,
        operator_name=contact.name,
        operator_hotline=contact.hotline,
    )
