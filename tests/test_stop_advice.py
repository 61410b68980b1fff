"""The agent's stop card: every status code (and every failure without one) in every state, read
with the facts, rendered as the agent sees it.

The card must never promise a retry that will not happen, never tell the driver the session ended
while the portal shows it open, always offer a next action (a button where the portal can do it,
"Send a new stop…" only where the rules allow one), and say what `400 Session is invalid` really
means while the session is still open at the portal. The words are written once, in
sessions/stops/presenters/table.py.
"""

from __future__ import annotations

import html
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from sessions.audit.records import record_audit
from sessions.models import AuditRecord, ChargingSession, RemoteStopRequest
from sessions.oicp.status_codes import FAILURE_KINDS, HUBJECT_DESCRIPTIONS, TRANSIENT_CODES
from sessions.stops import presenters as stop_advice
from sessions.stops.presenters import SITUATIONS, StopFacts, advise
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory

State = RemoteStopRequest.State
Status = ChargingSession.Status

# Every subject a card can be about: the 31 OICP codes, every failure kind, and a code nobody knows.
SUBJECTS = [*HUBJECT_DESCRIPTIONS, *FAILURE_KINDS, "999"]
TRANSIENT_KINDS = {kind for kind, info in FAILURE_KINDS.items() if info.transient}
RETRY_PROMISE = re.compile(r"trying again|retr(y|ies|ying)|will be sent again|attempt \d+ of \d+ starts", re.I)
SESSION_ENDED_CLAIM = re.compile(r"(session|charge) (has )?(ended|is over)", re.I)
CLOSED_AT_THE_PORTAL = {"session_ended", "confirmed_cdr"}


def is_transient(subject: str) -> bool:
    return subject in TRANSIENT_CODES or subject in TRANSIENT_KINDS


def facts_for(situation: str, subject: str, *, may_send_new_stop: bool = True) -> StopFacts:
    """The facts of a stop and its session in `situation`, its last answer being `subject`."""
    now = timezone.now()
    code = subject if subject.isdigit() else ""
    kind = "" if code else subject
    http_status = {"http_error": 503, "unauthorized": 403, "validation": 400}.get(kind, 200 if code else None)
    base = dict(
        code=code,
        failure_kind=kind,
        http_status=http_status,
        max_attempts=3,
        operator_id="DE*ACC",
        evse_id="DE*ACC*E1*1",
        may_send_new_stop=may_send_new_stop,
    )
    final_state = State.FAILED if is_transient(subject) else State.REJECTED
    final_attempts = 3 if is_transient(subject) else 1
    accepted = dict(
        base, code="000", failure_kind="", http_status=200, attempts=1, accepted_at=now - timedelta(minutes=2)
    )
    facts = {
        "waiting": dict(base, state=State.SENDING, attempts=1),
        "retrying": dict(base, state=State.PENDING, attempts=1, retry_at=now + timedelta(seconds=8)),
        "final": dict(base, state=final_state, attempts=final_attempts),
        "final_unknown": dict(base, state=final_state, attempts=final_attempts, outcome_unknown=True),
        "final_after_end": dict(
            base,
            state=final_state,
            attempts=final_attempts,
            session_status=Status.CHARGING_ENDED,
            charging_ended_at=now - timedelta(minutes=5),
        ),
        "session_ended": dict(
            base,
            state=final_state,
            attempts=final_attempts,
            session_status=Status.CLOSED,
            cdr_received_at=now,
            ended_at=now,
        ),
        "closed_by_hand": dict(
            base,
            state=final_state,
            attempts=final_attempts,
            session_status=Status.CLOSED,
            closed_manually=True,
            ended_at=now,
        ),
        "accepted": dict(accepted, state=State.ACCEPTED),
        "accepted_after_end": dict(
            accepted,
            state=State.ACCEPTED,
            sent_after_end=True,
            session_status=Status.CHARGING_ENDED,
            charging_ended_at=now - timedelta(minutes=5),
        ),
        "confirmed_end": dict(accepted, state=State.CONFIRMED, confirmed_by="END", confirmed_at=now),
        "confirmed_cdr": dict(
            accepted,
            state=State.CONFIRMED,
            confirmed_by="CDR",
            confirmed_at=now,
            session_status=Status.CLOSED,
            cdr_received_at=now,
            ended_at=now,
        ),
        "unconfirmed": dict(accepted, state=State.UNCONFIRMED),
    }[situation]
    if situation in ("confirmed_end", "confirmed_cdr"):
        # A stop that failed with `subject` (it may have reached the CPO), then settled by the End or CDR.
        facts.update(code=code, failure_kind=kind, http_status=http_status)
    return StopFacts(**facts)


def check_card(card, facts: StopFacts, situation: str, subject: str) -> None:
    """What holds for every card, whatever the code and the state."""
    assert card is not None
    assert card.situation == situation
    texts = (card.code_line, card.meaning, card.tell_driver, card.next_step)
    for text in (*texts, card.context):
        assert "{" not in text and "}" not in text and "  " not in text, text
    assert all(text.strip() for text in texts)
    # Never a promise the portal will not keep.
    for text in (card.meaning, card.tell_driver, card.next_step, card.context):
        if situation != "retrying":
            assert not RETRY_PROMISE.search(text), (subject, situation, text)
    if situation == "retrying":
        assert f"attempt 2 of 3 starts at {stop_advice.clock(facts.retry_at).text}" in card.next_step
    # Never "your session has ended" to the driver while the portal shows the session open.
    if situation not in CLOSED_AT_THE_PORTAL:
        assert not SESSION_ENDED_CLAIM.search(card.tell_driver), (subject, situation, card.tell_driver)
    # Always a next action the agent can take with one click: at least the text for the driver.
    kinds = [action.kind for action in card.actions]
    assert "copy" in kinds
    if "new_stop" in kinds:
        assert facts.may_send_new_stop and situation in ("final", "final_unknown", "final_after_end", "unconfirmed")
    if "CPO's hotline" in card.next_step and situation != "retrying":
        assert "cpo" in kinds, (subject, situation)
        cpo = next(action for action in card.actions if action.kind == "cpo")
        assert cpo.url.endswith("?operator=DE%2AACC&status=") and "DE*ACC" in cpo.label
    # Colour follows the facts: green ✓ only when the stop worked or the session is over; red only for
    # failures with the session still open; amber for waiting and checking.
    assert card.tone == {
        "session_ended": "ok",
        "accepted": "ok",
        "accepted_after_end": "ok",
        "confirmed_end": "ok",
        "confirmed_cdr": "ok",
        "retrying": "warn",
        "unconfirmed": "warn",
        "closed_by_hand": "warn",
    }.get(situation, "bad")
    assert card.mark == {"ok": "✓", "warn": "⚠", "bad": "✕"}[card.tone]
    # The code line names the answer: Hubject's code and wording, or the HTTP status it answered.
    if situation in ("accepted", "accepted_after_end", "unconfirmed"):
        assert card.code_line == "OICP 000 · Success."
    elif subject in HUBJECT_DESCRIPTIONS:
        assert card.code_line == f"OICP {subject} · {HUBJECT_DESCRIPTIONS[subject]}"
    elif subject == "999":
        assert card.code_line == "OICP 999 · Unknown status code."
    elif subject == "http_error":
        assert card.code_line == "HTTP 503 · Hubject answered with an HTTP error."


@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize("situation", SITUATIONS)
@pytest.mark.parametrize("may_send_new_stop", [True, False], ids=["new-stop-allowed", "new-stop-not-allowed"])
def test_every_code_in_every_state_gets_advice_that_follows_the_facts(subject, situation, may_send_new_stop):
    facts = facts_for(situation, subject, may_send_new_stop=may_send_new_stop)
    assert facts.situation == situation  # the facts describe the situation they are meant to
    card = advise(facts.subject, facts)
    if situation == "waiting":
        assert card is None  # while the stop is on its way the progress says it all (times, attempt n of N)
        return
    check_card(card, facts, situation, subject)
    new_stop = "new_stop" in [action.kind for action in card.actions]
    if situation in ("final", "final_unknown", "final_after_end") and is_transient(subject):
        assert new_stop is may_send_new_stop  # the stop may succeed next time: the dialog is one click away
        assert "The portal has stopped trying after 3 attempts." in card.next_step
    if situation == "unconfirmed":
        assert new_stop is may_send_new_stop


def test_400_with_the_session_still_open_says_what_it_really_means_and_how_to_escalate():
    card = advise("400", facts_for("final", "400"))
    assert card.meaning.startswith("Hubject does not know this session, or has already closed it")
    assert card.meaning.endswith("while no CDR has reached the portal.")
    assert card.context == "The portal still shows the session active: no End notification and no CDR yet."
    assert "Check that the SessionID on this page is the one Hubject issued" in card.next_step
    assert "the CDR is probably late" in card.next_step
    assert "escalate to IT with the correlation id" in card.next_step
    assert "call the CPO's hotline with the EvseID and the correlation id" in card.next_step
    assert card.tell_driver.startswith("We could not stop the charge remotely yet.")
    assert [action.kind for action in card.actions] == ["copy", "cpo"]  # sending the same stop again will not help
    # With the CDR in, the same code means the session is over.
    ended = advise("400", facts_for("session_ended", "400"))
    assert ended.tell_driver == "Your session has ended; you can unplug."
    assert [action.kind for action in ended.actions] == ["cdr", "copy"]
    # After an attempt whose outcome is unknown, 400 most likely means the first one worked.
    unknown = advise("400", facts_for("final_unknown", "400"))
    assert unknown.meaning.startswith("An earlier attempt may have reached the CPO and stopped the session")
    after_end = advise("400", facts_for("final_after_end", "400"))
    assert after_end.tell_driver.startswith("Charging has stopped.")


def test_a_retry_is_promised_only_while_one_is_scheduled():
    for subject in ("310", "timeout", "http_error", "connection", "unreadable", "worker_lost", "001"):
        retrying = advise(subject, facts_for("retrying", subject))
        assert RETRY_PROMISE.search(retrying.tell_driver + " " + retrying.next_step)
        final = advise(subject, facts_for("final", subject))
        assert not RETRY_PROMISE.search(final.tell_driver + " " + final.next_step)
    assert advise("http_error", facts_for("retrying", "http_error")).meaning.startswith(
        "Hubject answered HTTP 503 instead of an acknowledgement"
    )


def test_each_text_is_written_once_in_the_presenter():
    """No advice sentence lives anywhere else in the code (the status-code table is protocol only)."""
    texts = set()
    for row in stop_advice.ADVICE.values():
        for words in (row.final, row.retrying, *row.when.values()):
            texts.update(text for text in vars(words).values() if text)
    texts.update(text for words in stop_advice.SITUATION_WORDS.values() for text in vars(words).values() if text)
    texts.update(stop_advice.CONTEXT.values())
    table = Path(stop_advice.table.__file__).resolve()  # the one module that holds the words
    root = Path(__file__).resolve().parents[1]  # the project
    sources = {
        path: path.read_text()
        for folder in ("sessions", "templates")
        for path in (root / folder).rglob("*")
        if path.suffix in (".py", ".html") and path != table
    }
    assert len(sources) > 50  # the scan finds the code and the templates
    for text in texts:
        probe = max(re.split(r"\{[a-z_]+\}", text), key=len)[:60]  # the longest run without a placeholder
        assert len(probe) >= 15, text
        assert not [path for path, source in sources.items() if probe in source], probe


# --- rendered: the status fragment the session page polls, for every code in every state ---------------


def make_stop(situation: str, subject: str) -> RemoteStopRequest:
    """A stop request and its session in the database, in `situation` with `subject` as its last answer."""
    facts = facts_for(situation, subject)
    now = timezone.now()
    charging_session = ChargingSessionFactory(
        evse_id=f"DE*ACC*E{abs(hash((situation, subject))) % 10**5:05d}*1",
        operator_id="DE*ACC",
        status=facts.session_status,
        closed_manually=facts.closed_manually,
        charging_ended_at=facts.charging_ended_at,
        cdr_received_at=facts.cdr_received_at,
        ended_at=facts.ended_at,
    )
    stop = RemoteStopRequestFactory(
        charging_session=charging_session,
        state=facts.state,
        attempt_count=facts.attempts,
        oicp_code=facts.code if facts.code != "999" else "999",
        http_status=facts.http_status,
        outcome_unknown=facts.outcome_unknown,
        next_attempt_at=facts.retry_at,
        requested_at=now - timedelta(minutes=3),
        first_sent_at=now - timedelta(minutes=3),
        last_sent_at=now - timedelta(seconds=20),
        answered_at=facts.accepted_at,
        finished_at=facts.accepted_at or (now if facts.state in RemoteStopRequest.FINAL_STATES else None),
        confirmed_at=facts.confirmed_at,
        confirmed_by=facts.confirmed_by,
        time_to_confirmation=timedelta(minutes=1) if facts.confirmed_at else None,
    )
    if facts.failure_kind:
        record_audit(
            event_type=AuditRecord.EventType.STOP_ATTEMPT_FAILED,
            stop_request=stop,
            data={"failure_kind": facts.failure_kind, "attempt": 1},
        )
    return stop


@pytest.mark.parametrize("subject", SUBJECTS)
def test_the_agent_reads_every_code_in_every_state_on_the_page(subject, agent_client):
    for situation in SITUATIONS:
        stop = make_stop(situation, subject)
        response = agent_client.get(reverse("charging_sessions:stop-status", args=[stop.pk]))
        assert response.status_code == 200
        page = html.unescape(response.content.decode())
        progress = stop_advice.stop_progress(stop_request=stop, can_stop=True)
        card = progress.card
        assert progress.facts.situation == situation, (subject, situation)
        assert f'data-state="{stop.state}"' in page
        # The step indicator never goes back to "Queued" once the stop left, and counts the attempts.
        marks = [step.status for step in progress.steps]
        if stop.attempt_count:
            assert marks[0] == "done", (subject, situation, marks)
        if situation in ("waiting", "retrying"):
            assert progress.steps[1].label.startswith("Sent to Hubject · attempt ")
            assert " of 3" in progress.steps[1].label and marks[1] == "current"
        # Time on screen: the elapsed time, the request's time with its UTC offset.
        assert "since the request" in page and re.search(r"\d\d:\d\d:\d\d UTC[+-]\d\d:\d\d", page)
        if situation == "waiting":
            assert card is None
            assert "Hubject must answer by" in page and "its 60-s CPO window" in page
            continue
        check_card(card, card_facts := progress.facts, situation, card.subject)
        # The rules (stop_block) allow a new stop unless the session is closed, a stop is open, or one was
        # accepted within STOP_CONFIRMATION_MINUTES.
        assert card_facts.may_send_new_stop is (
            situation
            not in ("session_ended", "closed_by_hand", "confirmed_cdr", "retrying", "accepted", "accepted_after_end")
        )
        for text in (card.code_line, card.meaning, card.tell_driver, card.next_step, card.context):
            assert text in page, (subject, situation, text)
        assert f'class="playbook tone-{card.tone}"' in page
        assert f'data-copy="{card.tell_driver}"' in page  # the driver's text, one click to copy
        assert ('data-dialog-open="stop-dialog">Send a new stop…</button>' in page) is (
            "new_stop" in [action.kind for action in card.actions]
        )
        if situation != "retrying":
            assert not RETRY_PROMISE.search(page.split('class="playbook')[1]), (subject, situation)
        if situation not in CLOSED_AT_THE_PORTAL:
            assert "Your session has ended" not in page
        if situation == "retrying":
            assert "retrying (2 of 3) in " in progress.headline
            if card_facts.code or card_facts.failure_kind == "http_error":  # Hubject answered: never "did not"
                assert "did not answer" not in page.replace("The CPO's system did not answer Hubject", "")
                assert progress.headline.startswith("Hubject answered ")
