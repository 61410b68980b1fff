"""Whether a remote stop may be requested now: the eligibility rule, as a typed verdict.

Pure: it decides over a session and the stops that could stand in the way (read by
`selectors.stop_block`, in one query), at a given time. It writes nothing and holds no words: the
agent's and the admin's words for each code are the presenter's (`stops.presenters.blockers`).

A session may be stopped while Hubject still has it open: until its CDR arrives (active, charging
ended, learned late, after an Error), unless a stop is open or one was accepted within the
confirmation window.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..models import ChargingSession, RemoteStopRequest

State = RemoteStopRequest.State


class StopBlockCode(enum.StrEnum):
    """Why a stop cannot be requested now."""

    SESSION_CLOSED = "SESSION_CLOSED"  # the session is over at the portal (its CDR arrived, or closed by hand)
    STOP_OPEN = "STOP_OPEN"  # a stop for the session is queued, waiting for its next attempt or being sent
    STOP_ACCEPTED = "STOP_ACCEPTED"  # the CPO accepted a stop within the confirmation window: give it time


@dataclass(frozen=True)
class StopBlock:
    """The rule's verdict when a stop may not be requested: the code and the facts behind it."""

    code: StopBlockCode
    charging_session: ChargingSession
    stop_request: RemoteStopRequest | None = None  # STOP_OPEN: the open one; STOP_ACCEPTED: the accepted one
    until: datetime | None = None  # STOP_ACCEPTED: a new stop is allowed from then on

    @property
    def since(self) -> datetime | None:
        """When the blocking stop was requested (STOP_OPEN) or accepted (STOP_ACCEPTED)."""
        if self.stop_request is None:
            return None
        return self.stop_request.requested_at if self.code == StopBlockCode.STOP_OPEN else self.stop_request.finished_at

    def age(self, now: datetime) -> timedelta | None:
        """How long the blocking stop has been open (STOP_OPEN) or accepted (STOP_ACCEPTED) at `now`."""
        return now - self.since if self.since else None


def stop_block(
    *,
    charging_session: ChargingSession,
    recent_stops: Iterable[RemoteStopRequest],
    now: datetime,
    confirmation_window: timedelta,
) -> StopBlock | None:
    """The verdict: why a stop cannot be requested now, None when it can.

    `recent_stops`: the session's stops that are open or were accepted within `confirmation_window`
    before `now` (others are ignored), newest first.
    """
    if charging_session.status == ChargingSession.Status.CLOSED:
        return StopBlock(StopBlockCode.SESSION_CLOSED, charging_session)
    # Charging ended (End) is not the end of the session: "the vehicle is blocking the charging
    # station … the session is still active" (OICP, End). A locked cable is exactly that case, so
    # every session without its CDR may be stopped.
    recent = list(recent_stops)
    open_request = next((r for r in recent if r.state in RemoteStopRequest.OPEN_STATES), None)
    if open_request is not None:
        return StopBlock(StopBlockCode.STOP_OPEN, charging_session, open_request)
    # A second stop right after an accepted one only confuses the CPO: give it time to act.
    accepted = max(
        (
            r
            for r in recent
            if r.state == State.ACCEPTED and r.finished_at and r.finished_at >= now - confirmation_window
        ),
        key=lambda r: r.finished_at,
        default=None,
    )
    if accepted is not None:
        return StopBlock(
            StopBlockCode.STOP_ACCEPTED, charging_session, accepted, until=accepted.finished_at + confirmation_window
        )
    return None
