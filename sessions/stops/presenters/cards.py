"""The advice card: one resolver, `advise(subject, facts)`, picks the table's words for the
situation the facts describe, puts the facts in, and adds the buttons the portal can offer."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

from django.conf import settings
from django.urls import reverse
from django.utils.http import urlencode

from ...models import ChargingSession, RemoteStopRequest
from ...oicp.status_codes import HUBJECT_DESCRIPTIONS, StatusCodeInfo, describe, describe_failure
from .facts import FINAL_FAILURE_SITUATIONS, StopFacts
from .table import (
    _FINAL_NOTE_ANSWER,
    _FINAL_NOTE_GAVE_UP,
    _RETRY_NEXT,
    _TRYING_AGAIN,
    ADVICE,
    CONTEXT,
    CPO_NAME,
    CPO_NAMED,
    CPO_NUMBER,
    CPO_UNKNOWN,
    SITUATION_WORDS,
    Row,
    Words,
)
from .times import clock, duration
from .tones import TONE_MARKS

State = RemoteStopRequest.State
Status = ChargingSession.Status

# The card's look: ok = green ✓ (the stop worked or the session is over), warn = amber ⚠ (wait or check),
# bad = red ✕ (the stop failed and the session is still open).
_TONES = {
    "retrying": "warn",
    "final": "bad",
    "final_unknown": "bad",
    "final_after_end": "bad",
    "session_ended": "ok",
    "closed_by_hand": "warn",
    "accepted": "ok",
    "accepted_after_end": "ok",
    "confirmed_end": "ok",
    "confirmed_cdr": "ok",
    "unconfirmed": "warn",
}


@dataclass(frozen=True)
class Action:
    """A next step the portal can do for the agent: a button on the card."""

    kind: str  # "new_stop" (opens the stop dialog), "cpo" (a link), "cdr" (a link), "copy" (the driver text)
    label: str
    url: str = ""


@dataclass(frozen=True)
class Advice:
    """The card: what the answer means here, what to tell the driver, what to do, and how."""

    subject: str
    situation: str
    code_line: str  # "OICP 400 · Session is invalid." / "HTTP 503 · Hubject answered with an HTTP error."
    context: str
    meaning: str
    tell_driver: str
    next_step: str
    actions: tuple[Action, ...]
    tone: str

    @property
    def mark(self) -> str:
        return TONE_MARKS[self.tone]


def code_words(subject: str) -> Words:
    """A subject's state-free words (its row after the last attempt), for pages that show a code without
    the facts of its stop. The stop's own page uses `advise`."""
    return _fill(ADVICE.get(subject) or ADVICE["unknown"], "final", StopFacts(state=State.REJECTED), base_only=True)


@dataclass(frozen=True)
class CodeMeaning:
    """A status-code entry with its state-free words, for pages that show a code without its stop."""

    code: str
    description: str
    meaning: str
    tell_driver: str
    next_step: str


def code_meaning(info: StatusCodeInfo) -> CodeMeaning:
    """The words for a protocol entry (`oicp.status_codes.describe` or `describe_failure`)."""
    words = code_words(info.kind or info.code)
    return CodeMeaning(info.code, info.description, words.meaning, words.tell_driver, words.next_step)


def advise(subject: str, facts: StopFacts) -> Advice | None:
    """The one advice resolver: the card for `subject` (an OICP code or a failure kind) in the situation the
    facts describe. None only while the stop is still on its way (the progress says everything then)."""
    situation = facts.situation
    if situation == "waiting":
        return None
    row = ADVICE.get(subject) or ADVICE["unknown"]
    words = _fill(row, situation, facts)
    actions = [Action("copy", "Copy the text for the driver")]
    if (
        situation in (*FINAL_FAILURE_SITUATIONS, "unconfirmed")
        and facts.may_send_new_stop
        and (row.new_stop_helps or situation in ("final_unknown", "unconfirmed"))
    ):
        actions.insert(0, Action("new_stop", "Send a new stop…"))
    if situation in ("session_ended", "confirmed_cdr"):
        actions.insert(0, Action("cdr", "Show the CDR on this page", "#session-head"))
    names_the_cpo = situation in (
        "final_unknown",
        "final_after_end",
        "unconfirmed",
        "accepted_after_end",
        "closed_by_hand",
    ) or (situation == "final" and row.call_cpo)
    if facts.operator_id and names_the_cpo:
        query = urlencode({"operator": facts.operator_id, "status": ""})
        actions.append(
            Action(
                "cpo",
                f"Open CPO {facts.operator_id}: its sessions",
                f"{reverse('charging_sessions:session-list')}?{query}",
            )
        )
    return Advice(
        subject=subject,
        situation=situation,
        code_line=_code_line(subject, facts),
        context=CONTEXT.get(situation, "").format_map(_values(facts)),
        meaning=words.meaning,
        tell_driver=words.tell_driver,
        next_step=words.next_step,
        actions=tuple(actions),
        tone=_TONES[situation],
    )


def _fill(row: Row, situation: str, facts: StopFacts, base_only: bool = False) -> Words:
    """The row's words for the situation, most specific first, with the facts put in."""
    layers = [row.final]
    if not base_only:
        if situation == "retrying":
            layers.append(row.retrying)
            layers.append(Words(tell_driver=row.retrying.tell_driver or _TRYING_AGAIN, next_step=_RETRY_NEXT))
        if situation in SITUATION_WORDS:
            layers.append(SITUATION_WORDS[situation])
        if situation in row.when:
            layers.append(row.when[situation])
    words = Words()
    for layer in layers:
        words = replace(words, **{name: value for name, value in vars(layer).items() if value})
    values = _values(facts, state_free=base_only)
    return Words(
        *(" ".join(text.format_map(values).split()) for text in (words.meaning, words.tell_driver, words.next_step))
    )


def _code_line(subject: str, facts: StopFacts) -> str:
    if subject in HUBJECT_DESCRIPTIONS:
        return f"OICP {subject} · {HUBJECT_DESCRIPTIONS[subject]}"
    if facts.code:  # a code outside the OICP 2.3 table
        return f"OICP {facts.code} · {describe(facts.code).description}"
    info = describe_failure(subject)
    if facts.http_status and facts.http_status != 200 and subject in ("http_error", "unauthorized", "validation"):
        return f"HTTP {facts.http_status} · {info.description}"
    return info.description


def _values(facts: StopFacts, state_free: bool = False) -> dict[str, str]:
    confirm_by = (
        facts.accepted_at + timedelta(minutes=settings.STOP_CONFIRMATION_MINUTES) if facts.accepted_at else None
    )
    made = max(facts.attempts, 1)
    gave_up = facts.state == State.FAILED or (facts.attempts >= facts.max_attempts)
    return {
        "attempt": str(facts.attempts),
        "attempts": str(made),
        "attempts_s": "" if made == 1 else "s",
        "next_attempt": str(facts.attempts + 1),
        "max_attempts": str(facts.max_attempts),
        "retry_at": clock(facts.retry_at).text if facts.retry_at else "shortly",
        "final_note": ""
        if state_free
        else (_FINAL_NOTE_GAVE_UP if gave_up else _FINAL_NOTE_ANSWER).format(
            attempts=made, attempts_s="" if made == 1 else "s"
        ),
        "status": Status(facts.session_status).label.lower() if facts.session_status in Status.values else "open",
        "end_at": clock(facts.charging_ended_at).text if facts.charging_ended_at else "an earlier time",
        "cdr_at": clock(facts.cdr_received_at).text if facts.cdr_received_at else "an earlier time",
        "ended_at": clock(facts.ended_at).text if facts.ended_at else "an earlier time",
        "accepted_at": clock(facts.accepted_at).text if facts.accepted_at else "the time shown",
        "confirmed_at": clock(facts.confirmed_at).text if facts.confirmed_at else "the time shown",
        "confirm_by": clock(confirm_by).text if confirm_by else f"{settings.STOP_CONFIRMATION_MINUTES} min after it",
        "confirm_minutes": str(settings.STOP_CONFIRMATION_MINUTES),
        "timeout": duration(timedelta(seconds=settings.OICP_TIMEOUT_SECONDS)),
        "http": f"HTTP {facts.http_status}" if facts.http_status else "with an HTTP error",
        "cpo_hotline": _cpo_hotline(facts),
    }


def _cpo_hotline(facts: StopFacts) -> str:
    """Whom the advice tells the agent to call: the CPO by name and number when the directory knows them."""
    name, number = facts.operator_name.strip(), facts.operator_hotline.strip()
    if name and number:
        return CPO_NAMED.format(name=name, hotline=number)
    if number:
        return CPO_NUMBER.format(hotline=number)
    if name:
        return CPO_NAME.format(name=name)
    return CPO_UNKNOWN
