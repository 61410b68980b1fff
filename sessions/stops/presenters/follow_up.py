"""The follow-up lists: the sessions list's last-stop badge, the stuck queue's lines, the resend
dialog's words, and what the session's timeline says about someone else's stop."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from ...charging import selectors
from ...models import ChargingSession, RemoteStopRequest
from ...oicp.status_codes import describe
from .facts import HBS_CPO_WINDOW_SECONDS
from .times import Moment, age, ago, clock
from .tones import TONE_MARKS

State = RemoteStopRequest.State
Status = ChargingSession.Status

# A stop's state as a row names it ("re-sent, now: Sent to Hubject"); the step indicator's words.
STATE_WORDS = {
    State.PENDING: "Queued",
    State.SENDING: "Sent to Hubject",
    State.ACCEPTED: "Accepted by the CPO",
    State.CONFIRMED: "Session ended (confirmed)",
    State.REJECTED: "Rejected",
    State.FAILED: "Failed",
    State.UNCONFIRMED: "Not confirmed",
}

# The sessions list's "Last stop" column, every state: its words and tone (the mark says it without colour).
_LAST_STOP = {
    State.PENDING: ("Stop queued", "info"),
    State.SENDING: ("Stop sent", "info"),
    State.ACCEPTED: ("Stop accepted", "ok"),
    State.CONFIRMED: ("Stop confirmed", "ok"),
    State.REJECTED: ("Stop rejected", "bad"),
    State.FAILED: ("Stop failed", "bad"),
    State.UNCONFIRMED: ("Stop not confirmed", "warn"),
}
OUTCOME_UNKNOWN_FLAG = "outcome unknown"
OUTCOME_UNKNOWN_TITLE = "An attempt left for Hubject and no answer came back: the stop may have reached the CPO."


@dataclass(frozen=True)
class Badge:
    text: str
    tone: str
    title: str = ""
    flag: str = ""  # "outcome unknown", shown beside the text

    @property
    def mark(self) -> str:
        return TONE_MARKS[self.tone]


def last_stop_badge(*, state: str | None, outcome_unknown: bool = False, code: str = "") -> Badge | None:
    """The last stop's outcome as the sessions list shows it; None when the session has no stop."""
    if not state:
        return None
    text, tone = _LAST_STOP.get(state, (f"Stop {state.lower()}", "info"))
    if code and state in (State.REJECTED, State.FAILED):
        text = f"{text} · {code}"
    title = f"{STATE_WORDS.get(state, state)}" + (f" (OICP {code} · {describe(code).description})" if code else "")
    if outcome_unknown and state not in (State.CONFIRMED,):
        return Badge(
            text, "warn" if tone == "info" else tone, f"{title}. {OUTCOME_UNKNOWN_TITLE}", OUTCOME_UNKNOWN_FLAG
        )
    return Badge(text, tone, title)


@dataclass(frozen=True)
class StuckLine:
    """Why a row is on the stuck queue, in plain words, how long, and what to do."""

    kind: str  # selectors.UNCONFIRMED / UNKNOWN / STALE
    reason: str
    next_step: str
    since: Moment
    age: str
    resent: str = ""  # "Re-sent as request #12, now: Sent to Hubject"
    resent_tone: str = ""
    resent_open: bool = False  # the new request is still on its way: the row follows it

    @property
    def resent_mark(self) -> str:
        return TONE_MARKS.get(self.resent_tone, "")


_STUCK_NEXT = {
    selectors.UNCONFIRMED: "Call the CPO's hotline: has the session ended? If the driver is still charging, send "
    "the stop again; if it stopped, nothing to send: the CDR will confirm it.",
    selectors.UNKNOWN: "Ask the driver or the CPO whether charging stopped. If not, send the stop again (a repeated "
    "stop is harmless); if it did, wait for the End or CDR to settle it.",
    selectors.STALE: "Ask the CPO's hotline whether the session is still running. Close the record by hand only "
    "once the CPO confirms it ended (nothing is sent to Hubject).",
}
STUCK_KIND_LABELS = {
    selectors.UNCONFIRMED: "Accepted, never confirmed",
    selectors.UNKNOWN: "Failed, outcome unknown",
    selectors.STALE: "Open session without updates",
}


def stuck_stop_line(stop_request: RemoteStopRequest, *, now: datetime | None = None) -> StuckLine:
    """A stuck stop's row (from selectors.stuck_queue: with latest_stop_pk / latest_stop_state)."""
    now = now or timezone.now()
    since = stop_request.finished_at or stop_request.requested_at
    if stop_request.state == State.UNCONFIRMED:
        kind, reason = selectors.UNCONFIRMED, f"Accepted {age(now - since)} ago, no End or CDR since"
    else:
        kind = selectors.UNKNOWN
        reason = "Failed with an unknown outcome: the stop may have reached the CPO"
    resent, tone, still_open = "", "", False
    latest_pk = getattr(stop_request, "latest_stop_pk", None)
    if latest_pk and latest_pk != stop_request.pk:
        state = stop_request.latest_stop_state
        code = getattr(stop_request, "latest_stop_code", "") or ""
        resent = f"Re-sent as request #{latest_pk}, now: {STATE_WORDS.get(state, state)}" + (
            f" ({code})" if code and state in (State.REJECTED, State.FAILED) else ""
        )
        tone = _LAST_STOP.get(state, ("", "info"))[1]
        still_open = state in RemoteStopRequest.OPEN_STATES
    return StuckLine(kind, reason, _STUCK_NEXT[kind], clock(since), age(now - since), resent, tone, still_open)


def stuck_session_line(charging_session: ChargingSession, *, now: datetime | None = None) -> StuckLine:
    """An open session without updates for over STUCK_SESSION_HOURS."""
    now = now or timezone.now()
    since = charging_session.last_update_at
    reason = f"No update for {age(now - since)}"
    if charging_session.status == Status.CHARGING_ENDED:
        ended = charging_session.charging_ended_at
        reason += (f"; charging ended {age(now - ended)} ago" if ended else "; charging ended") + ", no CDR since"
    return StuckLine(selectors.STALE, reason, _STUCK_NEXT[selectors.STALE], clock(since), age(now - since))


# "Send stop again" from the queue: the session page's confirmation, with these words.
RESEND_TITLE = "Send the stop again?"


def resend_description(stop_request: RemoteStopRequest) -> str:
    charging_session = stop_request.charging_session
    previous = (
        f"Accepted {ago(stop_request.finished_at or stop_request.requested_at)}, never confirmed"
        if stop_request.state == State.UNCONFIRMED
        else f"{STATE_WORDS.get(stop_request.state, stop_request.state)}"
        + (" with an unknown outcome" if stop_request.outcome_unknown else "")
    )
    text = (
        f"Hubject will be asked again to stop the session at {charging_session.evse_id} (CPO "
        f"{charging_session.operator_id}) for the driver, as a new, audited request. The CPO decides; Hubject "
        f"gives it {HBS_CPO_WINDOW_SECONDS} seconds to answer. The previous stop #{stop_request.pk} "
        f"({previous}) stays in the record."
    )
    if stop_request.case_reference:
        text += f" Its case reference {stop_request.case_reference} is kept unless you enter another."
    return text


RESENT = "Stop sent again as request #{pk} for {evse_id}."
RESEND_REFUSED = "Not sent again: {reason}"

# The session's timeline, for an agent looking at someone else's stop.
WITHHELD = (
    "Note, case reference and the exact request and response are visible to the agent who sent the stop, "
    "supervisors, support admins and auditors."
)
