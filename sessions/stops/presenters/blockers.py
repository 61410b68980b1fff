"""Why the stop button is disabled, and why a stop was refused: the eligibility rule's verdict
(`stop_rules.StopBlock`, a code and its facts) in the agent's and the admin's words."""

from __future__ import annotations

from ...models import ChargingSession, RemoteStopRequest
from .. import selectors
from ..rules import StopBlock, StopBlockCode
from .times import ago, clock

State = RemoteStopRequest.State


def blocker_text(block: StopBlock | None) -> str:
    """The rule's verdict in the agent's words; empty when a stop may be requested."""
    if block is None:
        return ""
    charging_session = block.charging_session
    if block.code == StopBlockCode.SESSION_CLOSED:
        if charging_session.closed_manually:
            when = clock(charging_session.ended_at).text if charging_session.ended_at else ""
            return f"The session has ended: it was closed by hand in the portal {when}".strip() + "."
        when = (
            clock(charging_session.cdr_received_at or charging_session.ended_at).text
            if (charging_session.cdr_received_at or charging_session.ended_at)
            else ""
        )
        return f"The session has ended: its charge detail record arrived {when}".strip() + "."
    stop_request = block.stop_request
    if block.code == StopBlockCode.STOP_OPEN:
        where = (
            "waiting for Hubject's answer"
            if stop_request.state == State.SENDING
            else ("waiting for its next attempt" if stop_request.attempt_count else "queued")
        )
        return f"A stop requested {ago(stop_request.requested_at)} is still open ({where})."
    return (
        f"A stop was accepted {ago(stop_request.finished_at)}; the CPO is ending the session. "
        f"If it is still running at {clock(block.until).text}, you can send the stop again."
    )


def blocker_tone(block: StopBlock | None) -> str:
    """ok (✓) when the stop worked or the session is over, info (…) while one is on its way."""
    if block is None:
        return ""
    return "info" if block.code == StopBlockCode.STOP_OPEN else "ok"


def stop_blocker(*, charging_session: ChargingSession) -> str:
    """Why this session cannot be stopped now, in the agent's words (the admin's confirmation list);
    empty when a stop may be requested."""
    return blocker_text(selectors.stop_block(charging_session=charging_session))


def refusal_text(refusal: Exception) -> str:
    """A `services.StopNotAllowed` in the agent's words: the rule's verdict when it carries one
    (`refusal.block`), else the service's own message (a bad reason, an unknown session)."""
    block = getattr(refusal, "block", None)
    return blocker_text(block) if block is not None else str(refusal)
