"""The live progress of one stop request: the step indicator, the headline and detail, the times
and the card the agent sees while the session page polls it (`stop_progress`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from ...models import ChargingSession, RemoteStopRequest
from ...oicp.status_codes import describe, describe_failure
from .. import selectors
from .cards import Advice, advise
from .facts import HBS_CPO_WINDOW_SECONDS, StopFacts, stop_facts
from .times import Moment, clock, duration
from .tones import TONE_MARKS

State = RemoteStopRequest.State
Status = ChargingSession.Status

# Part of the detail line in every state once an attempt left without an answer coming back
# (a read timeout, a broken connection, a worker that died during the call: outcome_unknown).
OUTCOME_UNKNOWN_NOTE = (
    "The outcome of one attempt is unknown: the stop left for Hubject but no answer came back, "
    "so it may or may not have reached the CPO."
)


@dataclass(frozen=True)
class StopStep:
    label: str
    status: str  # "done", "current", "failed", "todo"


@dataclass(frozen=True)
class TimeRow:
    label: str
    moment: Moment
    note: str = ""


@dataclass(frozen=True)
class StopProgress:
    stop_request: RemoteStopRequest
    facts: StopFacts
    steps: list[StopStep]
    headline: str
    detail: str
    tone: str
    is_final: bool  # the stop is settled: the portal sends nothing more for it
    is_success: bool
    card: Advice | None
    times: list[TimeRow]
    elapsed: str  # since the request, ticking in the browser while `ticking`
    ticking: bool
    poll_seconds: int | None
    fingerprint: str  # what the page has seen; a change refreshes the parts that depend on it

    @property
    def mark(self) -> str:
        return TONE_MARKS[self.tone]


def stop_progress(
    *, stop_request: RemoteStopRequest, can_stop: bool = False, now: datetime | None = None
) -> StopProgress:
    """The step indicator, the times and the card the agent sees for one stop request.

    Queued → Sent to Hubject (attempt n of N) → Accepted by the CPO → Session ended (End or CDR). The
    indicator never goes back: a retry stays on "Sent to Hubject" with its attempt number. `can_stop`:
    the agent may request stops (the card offers a new one only when the rules allow it too).
    """
    now = now or timezone.now()
    may_send = can_stop and selectors.stop_block(charging_session=stop_request.charging_session) is None
    facts = stop_facts(stop_request=stop_request, may_send_new_stop=may_send)
    state = stop_request.state
    situation = facts.situation
    card = advise(facts.subject, facts)
    attempt_label = f"attempt {max(facts.attempts, 1)} of {facts.max_attempts}"
    steps = ["Queued", "Sent to Hubject", "Accepted by the CPO", "Session ended"]
    times = [TimeRow("Requested", clock(stop_request.requested_at))]
    tone = card.tone if card else "info"
    if state == State.CONFIRMED:
        marks = ["done", "done", "done", "done"]
        if facts.situation == "confirmed_cdr":
            headline = (
                f"Session ended, confirmed by the CDR (received {clock(facts.cdr_received_at).text})"
                if (facts.cdr_received_at)
                else "Session ended, confirmed by the CDR"
            )
        else:
            headline = "Charging stopped, confirmed by the CPO's End notification"
        steps[3] = "Session ended (CDR)" if facts.situation == "confirmed_cdr" else "Charging stopped (End)"
        detail = f"Stop to confirmation: {duration(stop_request.time_to_confirmation)}."
        if stop_request.confirmed_at:
            times.append(
                TimeRow(
                    "Confirmed",
                    clock(stop_request.confirmed_at),
                    "by the CDR" if facts.confirmed_by == "CDR" else "by the End notification",
                )
            )
    elif state == State.ACCEPTED:
        marks = ["done", "done", "done", "current"]
        if situation == "session_ended":
            headline = "Accepted, and the session has ended (CDR received)"
        elif facts.sent_after_end:
            headline = "Accepted: waiting for the CPO's CDR to confirm the session ended"
        else:
            headline = "Accepted: waiting for the CPO to end the session"
        detail = ""
        if facts.accepted_at:
            times.append(TimeRow("Accepted", clock(facts.accepted_at)))
            confirm_by = facts.accepted_at + timedelta(minutes=settings.STOP_CONFIRMATION_MINUTES)
            times.append(
                TimeRow(
                    "Confirmation expected",
                    clock(confirm_by),
                    "usually within minutes; flagged as not confirmed after this",
                )
            )
    elif state == State.UNCONFIRMED:
        marks = ["done", "done", "done", "failed"]
        steps[3] = "Not confirmed"
        headline = f"Accepted, but the CPO has not confirmed the end after {settings.STOP_CONFIRMATION_MINUTES} min"
        detail = "The session may still be running. It is on the supervisors' stuck-sessions queue."
        if facts.accepted_at:
            times.append(TimeRow("Accepted", clock(facts.accepted_at)))
    elif state in (State.REJECTED, State.FAILED):
        sent = facts.attempts > 0
        marks = ["done", "done", "failed", "todo"] if sent else ["done", "failed", "todo", "todo"]
        if sent:
            steps[1] = f"Sent to Hubject ({facts.attempts} attempt{'' if facts.attempts == 1 else 's'})"
            steps[2] = "Rejected" if state == State.REJECTED else "Failed"
        if situation == "session_ended":
            marks[3], steps[3] = "done", "Session ended (CDR)"
        headline = ("Rejected: " if state == State.REJECTED else "Failed: ") + _answer(stop_request, facts)
        detail = "" if card else stop_request.last_error  # the card says the rest
        if state == State.FAILED and facts.outcome_unknown and situation != "session_ended":
            detail = "It waits on the stuck-sessions queue until the CPO's End or CDR shows whether the session ended."
        if stop_request.finished_at:
            times.append(
                TimeRow(
                    "Answered" if stop_request.answered_at else "Given up",
                    clock(stop_request.finished_at),
                    f"{duration(stop_request.finished_at - stop_request.requested_at)} after the request",
                )
            )
    elif state == State.SENDING:
        marks = ["done", "current", "todo", "todo"]
        steps[1] = f"Sent to Hubject · {attempt_label}"
        sent_at = stop_request.last_sent_at or stop_request.requested_at
        window_end = sent_at + timedelta(seconds=HBS_CPO_WINDOW_SECONDS)
        give_up = sent_at + timedelta(seconds=settings.OICP_TIMEOUT_SECONDS)
        headline = f"Sent to Hubject ({attempt_label}), waiting for the CPO's answer"
        if now <= window_end:
            detail = f"Hubject gives the CPO {HBS_CPO_WINDOW_SECONDS} s: the answer is due by {clock(window_end).text}."
        else:
            detail = (
                f"Hubject's {HBS_CPO_WINDOW_SECONDS}-s window for the CPO ended at {clock(window_end).text}: "
                f"its answer (usually 310 Partner did not respond) is overdue. The portal waits until "
                f"{clock(give_up).text}, then "
                + (
                    f"tries again (attempt {facts.attempts + 1} of {facts.max_attempts})."
                    if facts.attempts < facts.max_attempts
                    else "gives up and says what to do."
                )
            )
        times.append(TimeRow(f"Sent ({attempt_label})", clock(sent_at)))
        times.append(TimeRow("Hubject must answer by", clock(window_end), f"its {HBS_CPO_WINDOW_SECONDS}-s CPO window"))
        times.append(
            TimeRow(
                "Outcome known by",
                clock(_worst_case_end(facts, give_up)),
                "at the latest, if every attempt left waits its full time",
            )
        )
    else:  # PENDING: first queueing, or waiting for a retry
        if facts.attempts and facts.retry_at:
            marks = ["done", "current", "todo", "todo"]
            next_label = f"attempt {facts.attempts + 1} of {facts.max_attempts}"
            steps[1] = f"Sent to Hubject · {next_label}"
            seconds = int((facts.retry_at - now).total_seconds())
            when = (
                f"in {seconds} s"
                if seconds >= 0
                else ("now" if seconds > -10 else "as soon as the worker is reachable (it is overdue; nothing is lost)")
            )
            headline = (
                f"{_problem(stop_request, facts)}; retrying ({facts.attempts + 1} of {facts.max_attempts}) {when}"
            )
            detail = ""  # the card says what failed and when the next attempt starts
            times.append(TimeRow(f"Next try ({next_label})", clock(facts.retry_at)))
            times.append(
                TimeRow(
                    "Outcome known by",
                    clock(_worst_case_end(facts, facts.retry_at, pending=True)),
                    "at the latest, if every attempt left waits its full time",
                )
            )
        elif facts.attempts:  # a retry the sweeper re-queued (a lost worker, a deferred attempt)
            marks = ["done", "current", "todo", "todo"]
            steps[1] = f"Sent to Hubject · attempt {facts.attempts + 1} of {facts.max_attempts}"
            headline = f"{_problem(stop_request, facts)}; sending again ({facts.attempts + 1} of {facts.max_attempts})"
            detail = ""
        else:
            marks = ["current", "todo", "todo", "todo"]
            if now - stop_request.requested_at > timedelta(seconds=10):
                headline = "Queued: the stop is saved and will be sent as soon as the worker is reachable"
                detail = "Nothing is lost; you do not need to click again."
                tone = "warn"
            else:
                headline = "Queued: waiting for the worker to send the stop"
                detail = ""
    if facts.outcome_unknown and OUTCOME_UNKNOWN_NOTE not in detail:
        # Whatever happened since, the agent must know one call may or may not have reached the CPO.
        detail = f"{OUTCOME_UNKNOWN_NOTE} {detail}".strip()
    # Nothing more can change the card once the session is over at the portal.
    settled_for_good = situation in ("session_ended", "confirmed_cdr", "closed_by_hand") or (
        facts.session_status == Status.CLOSED
    )
    open_request = state in RemoteStopRequest.OPEN_STATES
    return StopProgress(
        stop_request=stop_request,
        facts=facts,
        steps=[StopStep(label, mark) for label, mark in zip(steps, marks, strict=True)],
        headline=headline,
        detail=detail.strip(),
        tone=tone,
        is_final=state in RemoteStopRequest.SETTLED_STATES,
        is_success=state in (State.ACCEPTED, State.CONFIRMED),
        card=card,
        times=times,
        elapsed=duration(now - stop_request.requested_at),
        ticking=open_request or state == State.ACCEPTED,
        # While the stop is on its way: every second. Afterwards the card still follows the session
        # (an End or a CDR changes what it says) until nothing more can change it.
        poll_seconds=None if settled_for_good else 1 if open_request else 3 if state == State.ACCEPTED else 5,
        fingerprint=f"{state}.{facts.session_status}",
    )


def _answer(stop_request: RemoteStopRequest, facts: StopFacts) -> str:
    """The last answer, as the headline names it: the code, the HTTP status, or the kind of failure."""
    if facts.code:
        return f"{facts.code} {stop_request.oicp_description or describe(facts.code).description}".strip()
    error_status = facts.http_status if facts.http_status and facts.http_status != 200 else None
    if error_status and facts.failure_kind == "http_error":
        said = stop_request.oicp_description.strip().rstrip(".")
        return f"Hubject answered HTTP {error_status}" + (f": {said}" if said else "")
    words = stop_request.oicp_description or describe_failure(facts.failure_kind).description
    if error_status:
        return f"{words.rstrip('.')} (HTTP {error_status})"
    return words


def _problem(stop_request: RemoteStopRequest, facts: StopFacts) -> str:
    """What went wrong with the last attempt, in the words of a retry's headline."""
    kind = facts.failure_kind
    if kind == "worker_lost":
        return "The worker stopped during the call"
    if facts.code:
        return f"Hubject answered {_answer(stop_request, facts).rstrip('.')}"
    if facts.http_status and facts.http_status != 200:
        return _answer(stop_request, facts).rstrip(".")
    if kind == "timeout":
        return f"No answer from Hubject within {duration(timedelta(seconds=settings.OICP_TIMEOUT_SECONDS))}"
    if kind == "unreadable":
        return "Hubject's answer was unreadable"
    if kind == "connection" and facts.outcome_unknown:
        return "The connection broke after the stop was sent"
    if facts.outcome_unknown:
        return "No answer came back from Hubject"
    return "Hubject could not be reached"


def _worst_case_end(facts: StopFacts, start: datetime, pending: bool = False) -> datetime:
    """When the portal knows the outcome at the latest: each attempt left waits its full connect and read
    timeouts, with the longest backoff before it."""
    per_attempt = settings.OICP_CONNECT_TIMEOUT_SECONDS + settings.OICP_TIMEOUT_SECONDS
    end = start + timedelta(seconds=per_attempt if pending else 0)
    for attempt in range(max(facts.attempts, 1) + (1 if pending else 0), facts.max_attempts):
        end += timedelta(seconds=settings.OICP_RETRY_BACKOFF_SECONDS * (2 ** (attempt - 1) + 1) + per_attempt)
    return end
