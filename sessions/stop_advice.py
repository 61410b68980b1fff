"""What the agent reads about a remote stop: the advice card, the live progress, why the button is
disabled, and the answer to a click. Every word of these is here, written once.

The card is chosen by one resolver, `advise(subject, facts)`: the subject is the OICP status code of
the last answer or, when none came back, the kind of failure (`oicp.status_codes.FAILURE_KINDS`);
the facts are the state of the request and the session (`StopFacts`: attempts left, End or CDR
arrived, outcome unknown, accepted or confirmed, whether a new stop may be sent). From the facts
comes one situation (`SITUATIONS`); the table `ADVICE` gives each subject's words, with rows for the
situations where they differ, and `SITUATION_WORDS` the words that depend on the situation alone.

Reads go through `selectors`; this module only turns facts into words (a presenter, DESIGN §2).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.timesince import timesince

from . import selectors
from .models import ChargingSession, RemoteStopRequest
from .oicp.status_codes import HUBJECT_DESCRIPTIONS, describe, describe_failure

State = RemoteStopRequest.State
Status = ChargingSession.Status

# Hubject gives the CPO this long to answer a forwarded stop, then answers itself (DIGEST §3).
HBS_CPO_WINDOW_SECONDS = 60

# --- the facts a card is chosen from -------------------------------------------------------------


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
            return "confirmed_cdr" if self.confirmed_by == "CDR" or (closed and self.cdr_received_at) else "confirmed_end"
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
SITUATIONS = ("waiting", "retrying", "final", "final_unknown", "final_after_end", "session_ended",
              "closed_by_hand", "accepted", "accepted_after_end", "confirmed_end", "confirmed_cdr", "unconfirmed")
# The situations after the portal has stopped sending: the card's "what next" is the agent's.
FINAL_FAILURE_SITUATIONS = ("final", "final_unknown", "final_after_end")


# --- the table: each subject's words, and the situations where they differ -------------------------


@dataclass(frozen=True)
class Words:
    meaning: str = ""
    tell_driver: str = ""
    next_step: str = ""


@dataclass(frozen=True)
class Row:
    """One subject (an OICP code or a failure kind): its words after the portal stopped sending
    (`final`), while it is retrying, and in situations that need their own words (`when`)."""

    final: Words
    retrying: Words = Words()
    when: dict[str, Words] = field(default_factory=dict)
    new_stop_helps: bool = False  # after the last attempt, a new stop may succeed: offer the button
    call_cpo: bool = False  # the next step names the CPO: offer its details


# Phrases several rows share (written once here, so the advice stays consistent).
_END_AT_STATION = ("We could not stop the charge remotely. Please end it at the charging station or from your "
                   "car and unplug the cable.")
_NOT_YOUR_FAULT = ("We have a technical problem on our side, it is not your fault. Please end the charge at the "
                   "station or from your car and unplug; we are fixing it.")
_CHECK_STATION = ("Please look at the station: has charging stopped? If not, end it at the station or from your "
                  "car and unplug.")
_TRYING_AGAIN = "We are trying again; please stay on the line for a minute."
_RETRY_NEXT = ("Nothing to do yet: attempt {next_attempt} of {max_attempts} starts at {retry_at}. If it fails "
               "too, this card says what to do next.")
_UNEXPECTED_FOR_STOP = ("Escalate to the CPO with the correlation id and the code: their system gave an answer "
                        "that does not fit a remote stop. Ask the driver to end the charge at the station meanwhile.")
_SYSTEM_ERROR_NEXT = ("{final_note} Send a new stop in a few minutes; if it fails the same way, escalate to IT "
                      "with the correlation id (a Hubject outage is possible).")


def _unexpected(meaning: str) -> Row:
    return Row(Words(meaning, _END_AT_STATION, _UNEXPECTED_FOR_STOP), call_cpo=True)


def _system_error(meaning: str) -> Row:
    return Row(Words(meaning, _END_AT_STATION, _SYSTEM_ERROR_NEXT), Words(tell_driver=_TRYING_AGAIN),
               new_stop_helps=True)


ADVICE: dict[str, Row] = {
    "000": Row(Words(
        "Hubject forwarded the stop and the CPO accepted it; the station is stopping the charge.",
        "The stop has been accepted; charging stops in a moment.",
        "Nothing more to send; the CPO's End notification or CDR will confirm the end on this page.")),
    "001": _system_error("Hubject's platform had an internal error and did not process the stop."),
    "002": _system_error("Hubject's database failed while handling the stop, so it was not processed."),
    "009": _system_error("A data transaction inside Hubject failed, so the stop was not processed."),
    "017": Row(Words(
        "Hubject refused our request because our ProviderID does not match our TLS client certificate (wrong, "
        "expired or replaced certificate).",
        _NOT_YOUR_FAULT,
        "Escalate to the portal's operators (IT): certificate or ProviderID configuration. No remote stop works "
        "until it is fixed.")),
    "018": Row(Words(
        "Hubject says the EvseID we sent does not match the charge point of this session.",
        _END_AT_STATION,
        "Compare the EvseID on this page with the station number the driver reads out; escalate to IT with the "
        "correlation id.")),
    "019": Row(Words(
        "Hubject found the contract ID (EvcoID) of this session inconsistent and did not forward the stop.",
        _END_AT_STATION,
        "Escalate to IT with the correlation id; check the driver's contract ID on this page.")),
    "021": _system_error("A system error at Hubject or the CPO prevented the stop from being processed."),
    "022": Row(Words(
        "Hubject could not use the data in our request (mostly a bad request, e.g. a malformed ID).",
        _NOT_YOUR_FAULT,
        "Escalate to IT with the correlation id; sending the same stop again will not help.")),
    "101": _unexpected("The stop was answered with a QR-code authentication failure, which does not apply to a "
                       "remote stop; it was not performed."),
    "102": _unexpected("The stop was answered with an RFID 'invalid UID' failure, which does not apply to a remote "
                       "stop; it was not performed."),
    "103": _unexpected("The stop was answered with an RFID 'card not readable' failure, which does not apply to a "
                       "remote stop; it was not performed."),
    "105": _unexpected("The stop was answered with a Plug&Charge 'invalid EvcoID' failure; it was not performed."),
    "106": Row(Words(
        "The CPO or Hubject gave no positive authorisation for this stop, so it was not performed.",
        _END_AT_STATION,
        "Check on this page that the session belongs to our contract; escalate to the CPO with the correlation "
        "id."), call_cpo=True),
    "110": _unexpected("The stop was answered with a QR-code app time-out, which does not apply to a remote stop; "
                       "it was not performed."),
    "120": _unexpected("The stop was answered with a Plug&Charge 'invalid underlying EvcoID' failure; it was not "
                       "performed."),
    "121": _unexpected("The stop was answered with a Plug&Charge 'invalid certificate' failure; it was not "
                       "performed."),
    "122": _unexpected("The stop was answered with a Plug&Charge time-out; it was not performed."),
    "200": Row(Words(
        "The driver's contract ID (EvcoID) is locked, so the stop was refused.",
        _END_AT_STATION,
        "Check the contract's status in our customer system; escalate to the CPO with the correlation id if the "
        "contract is active."), call_cpo=True),
    "210": Row(Words(
        "Hubject found no valid roaming contract between us and this station's operator, so it did not forward "
        "the stop.",
        _END_AT_STATION,
        "Escalate to the roaming/partner team (contract with this CPO at Hubject); the driver cannot fix this.")),
    "300": Row(Words(
        "Hubject could not find the partner, usually because an ID in our request (EvseID or ProviderID) is wrong.",
        _END_AT_STATION,
        "Check the EvseID on this page against the station; escalate to IT with the correlation id.")),
    "310": Row(
        Words("The CPO's system did not answer Hubject within its 60-second window, so we do not know whether the "
              "station got the stop.",
              _CHECK_STATION,
              "{final_note} Ask the driver whether charging stopped: if it did, wait for the End notification or "
              "CDR on this page; if not, send a new stop, and if that fails too, call the CPO's hotline."),
        Words(tell_driver="We are trying again; please check whether the station has stopped charging."),
        new_stop_helps=True, call_cpo=True),
    "320": Row(
        Words("The CPO's remote-stop service is currently not available at Hubject.",
              _END_AT_STATION,
              "{final_note} Call the CPO's hotline with the EvseID; send a new stop later, once their service is "
              "back."),
        Words(tell_driver=_TRYING_AGAIN), new_stop_helps=True, call_cpo=True),
    "400": Row(
        Words("Hubject does not know this session, or has already closed it at its end (Hubject closes a session "
              "when the CPO sends its CDR), while no CDR has reached the portal.",
              "We could not stop the charge remotely yet. Please check whether the station is still charging; if "
              "it is, end it at the station or from your car and unplug.",
              "Check that the SessionID on this page is the one Hubject issued for this charge: a wrong or mixed-up "
              "SessionID gets 400 too (then escalate to IT with the correlation id). If it is right, the CDR is "
              "probably late: this page updates when it arrives. If the driver is still charging or cannot unplug, "
              "call the CPO's hotline with the EvseID and the correlation id."),
        when={
            "final_unknown": Words(
                "An earlier attempt may have reached the CPO and stopped the session: Hubject now answers 400, as it "
                "does once it has closed a session. The CDR has not reached the portal yet.",
                "We have probably stopped the charge. Please check the station: if charging has stopped, you can "
                "unplug; if it is still charging, end it at the station or from your car.",
                "Wait for the CDR on this page: it confirms the end. If the driver says it is still charging, call "
                "the CPO's hotline with the EvseID and the correlation id."),
            "final_after_end": Words(
                "Charging stopped at {end_at} (End notification) and Hubject answers 400: it has most likely closed "
                "the session already. The CDR has not reached the portal yet.",
                "Charging has stopped. If you still cannot unplug the cable, we will contact the station's operator "
                "for you.",
                "Wait for the CDR on this page. If the driver cannot unplug, call the CPO's hotline (cable locked) "
                "with the EvseID and the correlation id."),
        },
        call_cpo=True),
    "501": Row(Words(
        "The CPO could not reach the charge point: the station is offline for its operator.",
        "The station cannot be reached remotely. Please end the charge at the station or from your car and unplug.",
        "Escalate to the CPO's hotline (station offline) with the EvseID and correlation id."), call_cpo=True),
    "510": Row(Words(
        "The CPO reports that no vehicle is connected to the charge point, so charging has already stopped there.",
        "The station reports that no car is connected, so charging has stopped. Is the cable still plugged in?",
        "Wait for the CDR on this page. If the driver is still connected and charging, check the EvseID (maybe a "
        "different charge point) and call the CPO's hotline."), call_cpo=True),
    "601": _unexpected("The CPO says the charge point is reserved, an answer that does not fit a stop; it was not "
                       "performed."),
    "602": Row(Words(
        "The CPO says the charge point is used by another session or token, so our stop did not match it.",
        "Please read me the station number printed on the charger.",
        "Compare the station number with the EvseID on this page; if they differ the driver is on another charge "
        "point, otherwise escalate to the CPO's hotline."), call_cpo=True),
    "603": Row(Words(
        "Hubject does not know this EvseID (it is not in the CPO's uploaded station data).",
        _END_AT_STATION,
        "Check the EvseID on this page; escalate to the CPO (station data) and to IT with the correlation id."),
        call_cpo=True),
    "604": Row(Words(
        "The CPO marked this charge point as not Hubject compatible, so Hubject does not forward remote commands "
        "to it.",
        _END_AT_STATION,
        "Escalate to the CPO's hotline; this station cannot be stopped through Hubject."), call_cpo=True),
    "700": Row(Words(
        "The CPO reports that the charge point is out of service and could not execute the stop.",
        "The station is out of service. Please end the charge at the station or from your car and unplug; if the "
        "cable is locked, call the number on the charger.",
        "Escalate to the CPO's hotline with the EvseID and correlation id."), call_cpo=True),
    # --- outcomes without an OICP code (FAILURE_KINDS) ---
    "timeout": Row(
        Words("Hubject did not answer within the portal's {timeout} limit, so we do not know whether the stop "
              "reached the CPO.",
              _CHECK_STATION,
              "{final_note} The stop waits on the stuck-sessions queue until an End notification or CDR settles "
              "it. Ask the driver whether charging stopped; if not, send a new stop (a repeated stop is harmless), "
              "and if that fails too, call the CPO's hotline."),
        Words(tell_driver="We have sent the stop and are waiting for confirmation; please check whether the station "
                          "has stopped."),
        new_stop_helps=True, call_cpo=True),
    "connection": Row(
        Words("The portal could not reach Hubject (network, DNS or connection problem).",
              _END_AT_STATION,
              "{final_note} Escalate to the portal's operators (network or Hubject outage); send a new stop once "
              "Hubject is reachable again."),
        Words(tell_driver=_TRYING_AGAIN), new_stop_helps=True),
    "http_error": Row(
        Words("Hubject answered {http} instead of an acknowledgement, so the stop is not confirmed.",
              "We have a technical problem reaching the roaming network. Please end the charge at the station or "
              "from your car and unplug.",
              "{final_note} Send a new stop in a few minutes; if Hubject keeps answering with an error, escalate "
              "to IT with the correlation id and the HTTP status."),
        Words(tell_driver=_TRYING_AGAIN), new_stop_helps=True),
    "unreadable": Row(
        Words("Hubject's answer was not a valid eRoamingAcknowledgement, so we do not know whether the stop was "
              "performed.",
              _CHECK_STATION,
              "{final_note} Ask the driver whether charging stopped; if not, send a new stop (harmless). If the "
              "answers stay unreadable, escalate to IT with the correlation id."),
        Words(tell_driver="We are checking whether the stop went through; please see whether the station has "
                          "stopped."),
        new_stop_helps=True),
    "tls": Row(Words(
        "The TLS connection to Hubject failed (client certificate, key or CA chain), so the stop was not sent.",
        _NOT_YOUR_FAULT,
        "Escalate to the portal's operators: check the client certificate, key and Hubject CA bundle. Sending again "
        "will not help until it is fixed.")),
    "validation": Row(Words(
        "Hubject rejected our request as invalid (HTTP 400), usually because an ID has the wrong format.",
        _NOT_YOUR_FAULT,
        "Check the SessionID and EvseID on this page; escalate to IT with the correlation id and the fields named "
        "in the error.")),
    "unauthorized": Row(Words(
        "Hubject refused the call as not authorised (HTTP 401/403): certificate, ProviderID or IP whitelisting on "
        "our side.",
        _NOT_YOUR_FAULT,
        "Escalate to the portal's operators (Hubject access configuration); no remote stop works until fixed.")),
    "session_ended": Row(Words(
        "The portal did not send this stop: the CPO's CDR for the session arrived before it left the queue, and "
        "Hubject would only have answered 400 Session is invalid.",
        "Please check the station: its operator has sent the final record of this charge.",
        "Check the CDR on this page; nothing to send.")),
    "worker_lost": Row(
        Words("The background worker stopped while waiting for Hubject, so we do not know whether the stop reached "
              "the CPO.",
              _CHECK_STATION,
              "{final_note} Check this page for an End notification or CDR; if none comes and the driver is still "
              "charging, send a new stop (harmless). If it stays unconfirmed, call the CPO's hotline."),
        Words(tell_driver="We are checking whether the stop went through; please see whether the station has "
                          "stopped."),
        new_stop_helps=True, call_cpo=True),
    "unknown": Row(Words(
        "The answer carried a status code or outcome the portal does not know, so the stop is not confirmed.",
        _END_AT_STATION,
        "Escalate to IT with the correlation id and the code shown; do not promise the driver a stop."),
        call_cpo=True),
}

# Words that depend on the situation alone (the code does not change them): success, the session's end.
SITUATION_WORDS: dict[str, Words] = {
    "accepted": Words(
        "Hubject forwarded the stop and the CPO accepted it at {accepted_at}; the station is stopping the charge.",
        "The stop has been accepted; charging stops in a moment, then you can unplug.",
        "Nothing more to send. The CPO confirms the end with its End notification or CDR, usually within minutes; "
        "if neither has come by {confirm_by}, the stop is flagged as not confirmed and you can send it again."),
    "accepted_after_end": Words(
        "Hubject forwarded the stop and the CPO accepted it at {accepted_at}. Charging had already stopped "
        "({end_at}), so only the CPO's CDR can show that the session is over.",
        "The stop has been accepted. Can you unplug the cable now?",
        "Nothing more to send. Wait for the CDR on this page (usually within minutes; flagged as not confirmed at "
        "{confirm_by}). If the cable stays locked, call the CPO's hotline."),
    "confirmed_end": Words(
        "The CPO's End notification ({confirmed_at}) confirms that charging stopped; its CDR will close the session.",
        "Charging has stopped; you can unplug now.",
        "Nothing more to do. The CDR with the final energy will appear on this page."),
    "confirmed_cdr": Words(
        "The CPO's CDR (received {cdr_at}) confirms that the session ended.",
        "Your session has ended; you can unplug.",
        "Nothing more to do; the CDR on this page holds the final energy."),
    "unconfirmed": Words(
        "The CPO accepted the stop at {accepted_at}, but neither an End notification nor a CDR has come since "
        "({confirm_minutes} min): the session may still be running.",
        "Is the car still charging? Please look at the station's display.",
        "If it is still charging, send a new stop and call the CPO's hotline; if it stopped, nothing to send: the "
        "CDR will confirm it. The stop is on the supervisors' stuck-sessions queue."),
    "session_ended": Words(
        "Whatever Hubject answered to the stop, the CPO's CDR arrived at {cdr_at}: the session is over at the CPO "
        "and at Hubject.",
        "Your session has ended; you can unplug.",
        "Check the CDR on this page (end time and energy). Nothing to send."),
    "closed_by_hand": Words(
        "A supervisor closed this session by hand in the portal at {ended_at}; the CPO has not confirmed its end, "
        "and no stop can be sent any more.",
        _CHECK_STATION,
        "Nothing can be sent any more. If the driver is still charging or cannot unplug, call the CPO's hotline "
        "with the EvseID and the correlation id."),
    # The stop failed after the CPO's End: the energy flow had stopped; the cable may still be locked.
    "final_after_end": Words(
        tell_driver="Charging has stopped (its operator reported it at {end_at}), but our stop did not go "
                    "through. If the cable is still locked, please try the station's unlock option; we will "
                    "contact the operator if that does not work."),
}

# The line of facts a card was chosen from, so the agent can see why it says what it says.
CONTEXT: dict[str, str] = {
    "retrying": "Attempt {attempt} of {max_attempts} failed; the portal sends the next one by itself.",
    "final": "The portal still shows the session {status}: no End notification and no CDR yet.",
    "final_unknown": "The portal still shows the session {status}; one attempt's outcome is unknown (it may have "
                     "reached the CPO).",
    "final_after_end": "Charging stopped at {end_at} (End notification); no CDR yet, so the session is still open "
                       "at Hubject.",
    "session_ended": "The CPO's CDR arrived at {cdr_at}: the session is closed at the portal.",
    "closed_by_hand": "Closed by hand at {ended_at}.",
    "accepted": "Accepted at {accepted_at}; no End notification or CDR yet.",
    "accepted_after_end": "Accepted at {accepted_at}; charging had stopped at {end_at}; no CDR yet.",
    "confirmed_end": "End notification at {confirmed_at}; the CDR has not arrived yet.",
    "confirmed_cdr": "The CPO's CDR arrived at {cdr_at}; nothing more will change.",
    "unconfirmed": "Accepted at {accepted_at}; no End notification or CDR since.",
}
_FINAL_NOTE_GAVE_UP = "The portal has stopped trying after {attempts} attempt{attempts_s}."
_FINAL_NOTE_ANSWER = "This answer is final: the portal does not send the stop again by itself."

# The card's look: ok = green ✓ (the stop worked or the session is over), warn = amber ⚠ (wait or check),
# bad = red ✕ (the stop failed and the session is still open).
_TONES = {"retrying": "warn", "final": "bad", "final_unknown": "bad", "final_after_end": "bad",
          "session_ended": "ok", "closed_by_hand": "warn", "accepted": "ok", "accepted_after_end": "ok",
          "confirmed_end": "ok", "confirmed_cdr": "ok", "unconfirmed": "warn"}
TONE_MARKS = {"ok": "✓", "warn": "⚠", "bad": "✕", "info": "…"}


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


def advise(subject: str, facts: StopFacts) -> Advice | None:
    """The one advice resolver: the card for `subject` (an OICP code or a failure kind) in the situation the
    facts describe. None only while the stop is still on its way (the progress says everything then)."""
    situation = facts.situation
    if situation == "waiting":
        return None
    row = ADVICE.get(subject) or ADVICE["unknown"]
    words = _fill(row, situation, facts)
    actions = [Action("copy", "Copy the text for the driver")]
    if situation in (*FINAL_FAILURE_SITUATIONS, "unconfirmed") and facts.may_send_new_stop and (
            row.new_stop_helps or situation in ("final_unknown", "unconfirmed")):
        actions.insert(0, Action("new_stop", "Send a new stop…"))
    if situation in ("session_ended", "confirmed_cdr"):
        actions.insert(0, Action("cdr", "Show the CDR on this page", "#session-head"))
    names_the_cpo = situation in ("final_unknown", "final_after_end", "unconfirmed", "accepted_after_end",
                                  "closed_by_hand") or (situation == "final" and row.call_cpo)
    if facts.operator_id and names_the_cpo:
        query = urlencode({"operator": facts.operator_id, "status": ""})
        actions.append(Action("cpo", f"Open CPO {facts.operator_id}: its sessions",
                              f"{reverse('charging_sessions:session-list')}?{query}"))
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
    return Words(*(" ".join(text.format_map(values).split()) for text in
                   (words.meaning, words.tell_driver, words.next_step)))


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
    confirm_by = facts.accepted_at + timedelta(minutes=settings.STOP_CONFIRMATION_MINUTES) if facts.accepted_at else None
    made = max(facts.attempts, 1)
    gave_up = facts.state == State.FAILED or (facts.attempts >= facts.max_attempts)
    return {
        "attempt": str(facts.attempts),
        "attempts": str(made),
        "attempts_s": "" if made == 1 else "s",
        "next_attempt": str(facts.attempts + 1),
        "max_attempts": str(facts.max_attempts),
        "retry_at": clock(facts.retry_at).text if facts.retry_at else "shortly",
        "final_note": "" if state_free else (_FINAL_NOTE_GAVE_UP if gave_up else _FINAL_NOTE_ANSWER).format(
            attempts=made, attempts_s="" if made == 1 else "s"),
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
    }


# --- times, as the agent reads them ----------------------------------------------------------------


@dataclass(frozen=True)
class Moment:
    """A time in the agent's zone with its UTC offset; `iso` goes into <time datetime=...>."""

    iso: str
    text: str


def clock(at: datetime) -> Moment:
    local = timezone.localtime(at)
    offset = local.strftime("%z")
    text = f"{local:%H:%M:%S} UTC{offset[:3]}:{offset[3:]}"
    if local.date() != timezone.localdate():
        text = f"{local:%Y-%m-%d} {text}"
    return Moment(local.replace(microsecond=0).isoformat(), text)


def duration(span: timedelta | None) -> str:
    if span is None:
        return "—"
    total = max(0, int(span.total_seconds()))
    if total < 60:
        return f"{total} s"
    if total < 3600:
        return f"{total // 60} min {total % 60:02d} s"
    return f"{total // 3600} h {total % 3600 // 60:02d} min"


def ago(moment: datetime) -> str:
    return "just now" if timezone.now() - moment < timedelta(minutes=1) else f"{timesince(moment)} ago"


# --- why the button is disabled ----------------------------------------------------------------------


def blocker_text(block: selectors.StopBlock | None) -> str:
    """`selectors.stop_block` in the agent's words; empty when a stop may be requested."""
    if block is None:
        return ""
    charging_session = block.charging_session
    if block.kind == block.ENDED:
        if charging_session.closed_manually:
            when = clock(charging_session.ended_at).text if charging_session.ended_at else ""
            return f"The session has ended: it was closed by hand in the portal {when}".strip() + "."
        when = clock(charging_session.cdr_received_at or charging_session.ended_at).text if (
            charging_session.cdr_received_at or charging_session.ended_at) else ""
        return f"The session has ended: its charge detail record arrived {when}".strip() + "."
    stop_request = block.stop_request
    if block.kind == block.OPEN:
        where = "waiting for Hubject's answer" if stop_request.state == State.SENDING else (
            "waiting for its next attempt" if stop_request.attempt_count else "queued")
        return f"A stop requested {ago(stop_request.requested_at)} is still open ({where})."
    return (f"A stop was accepted {ago(stop_request.finished_at)}; the CPO is ending the session. "
            f"If it is still running at {clock(block.until).text}, you can send the stop again.")


def blocker_tone(block: selectors.StopBlock | None) -> str:
    """ok (✓) when the stop worked or the session is over, info (…) while one is on its way."""
    if block is None:
        return ""
    return "info" if block.kind == block.OPEN else "ok"


# --- the answer to a click on "Send stop to Hubject" -------------------------------------------------

# The broker (Redis) did not take the stop in time: it is saved; the sweeper sends it.
QUEUED_WHILE_WORKER_UNREACHABLE = (
    "Stop saved: it will be sent to Hubject as soon as the background service is reachable again (the portal "
    "checks every 30 s by itself). Nothing is lost: do not click again."
)
REQUESTED = "Stop requested: follow it below."
REFUSED = "The stop was not sent: {reason}"


@dataclass(frozen=True)
class Notice:
    """What the stop area says right after a submit (it replaces the flash message the swap lost)."""

    id: str  # "stop-queued", "stop-refusal", "stop-requested": tests and screen readers find it by id
    tone: str
    text: str
    role: str  # "alert" for what needs the agent's attention, "status" otherwise

    @property
    def mark(self) -> str:
        return TONE_MARKS[self.tone]


def stop_notice(*, refusal: str = "", queued: bool | None = None) -> Notice:
    if refusal:
        return Notice("stop-refusal", "bad", REFUSED.format(reason=refusal), "alert")
    if queued is False:
        return Notice("stop-queued", "warn", QUEUED_WHILE_WORKER_UNREACHABLE, "alert")
    return Notice("stop-requested", "info", REQUESTED, "status")


# --- the live progress of one stop request -----------------------------------------------------------

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


def stop_facts(*, stop_request: RemoteStopRequest, may_send_new_stop: bool = False) -> StopFacts:
    charging_session = stop_request.charging_session
    ended = charging_session.charging_ended_at
    sent = stop_request.first_sent_at or stop_request.requested_at
    failure_kind = ""
    if not stop_request.oicp_code and (stop_request.attempt_count or stop_request.state in (State.REJECTED,
                                                                                          State.FAILED)):
        failure_kind = selectors.last_failure_kind(stop_request=stop_request)
        if not failure_kind and stop_request.state in (State.REJECTED, State.FAILED):
            failure_kind = "connection"
    accepted_at = None
    if stop_request.state in (State.ACCEPTED, State.UNCONFIRMED):
        accepted_at = stop_request.answered_at or stop_request.finished_at
    elif stop_request.state == State.CONFIRMED and stop_request.oicp_code == "000":
        accepted_at = stop_request.answered_at
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
        sent_after_end=charging_session.status == Status.CHARGING_ENDED or (
            ended is not None and sent is not None and ended <= sent),
        accepted_at=accepted_at,
        confirmed_at=stop_request.confirmed_at,
        confirmed_by=stop_request.confirmed_by,
        may_send_new_stop=may_send_new_stop,
        operator_id=charging_session.operator_id,
        evse_id=charging_session.evse_id,
    )


def stop_progress(*, stop_request: RemoteStopRequest, can_stop: bool = False, now: datetime | None = None
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
            headline = f"Session ended, confirmed by the CDR (received {clock(facts.cdr_received_at).text})" if (
                facts.cdr_received_at) else "Session ended, confirmed by the CDR"
        else:
            headline = "Charging stopped, confirmed by the CPO's End notification"
        steps[3] = "Session ended (CDR)" if facts.situation == "confirmed_cdr" else "Charging stopped (End)"
        detail = f"Stop to confirmation: {duration(stop_request.time_to_confirmation)}."
        if stop_request.confirmed_at:
            times.append(TimeRow("Confirmed", clock(stop_request.confirmed_at),
                                 "by the CDR" if facts.confirmed_by == "CDR" else "by the End notification"))
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
            times.append(TimeRow("Confirmation expected", clock(confirm_by),
                                 "usually within minutes; flagged as not confirmed after this"))
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
            times.append(TimeRow("Answered" if stop_request.answered_at else "Given up", clock(stop_request.finished_at),
                                 f"{duration(stop_request.finished_at - stop_request.requested_at)} after the request"))
    elif state == State.SENDING:
        marks = ["done", "current", "todo", "todo"]
        steps[1] = f"Sent to Hubject · {attempt_label}"
        sent_at = stop_request.last_sent_at or stop_request.requested_at
        window_end = sent_at + timedelta(seconds=HBS_CPO_WINDOW_SECONDS)
        give_up = sent_at + timedelta(seconds=settings.OICP_TIMEOUT_SECONDS)
        headline = f"Sent to Hubject ({attempt_label}), waiting for the CPO's answer"
        if now <= window_end:
            detail = (f"Hubject gives the CPO {HBS_CPO_WINDOW_SECONDS} s: the answer is due by "
                      f"{clock(window_end).text}.")
        else:
            detail = (f"Hubject's {HBS_CPO_WINDOW_SECONDS}-s window for the CPO ended at {clock(window_end).text}: "
                      f"its answer (usually 310 Partner did not respond) is overdue. The portal waits until "
                      f"{clock(give_up).text}, then " + (
                          f"tries again (attempt {facts.attempts + 1} of {facts.max_attempts})."
                          if facts.attempts < facts.max_attempts else "gives up and says what to do."))
        times.append(TimeRow(f"Sent ({attempt_label})", clock(sent_at)))
        times.append(TimeRow("Hubject must answer by", clock(window_end), f"its {HBS_CPO_WINDOW_SECONDS}-s CPO window"))
        times.append(TimeRow("Outcome known by", clock(_worst_case_end(facts, give_up)),
                             "at the latest, if every attempt left waits its full time"))
    else:  # PENDING: first queueing, or waiting for a retry
        if facts.attempts and facts.retry_at:
            marks = ["done", "current", "todo", "todo"]
            next_label = f"attempt {facts.attempts + 1} of {facts.max_attempts}"
            steps[1] = f"Sent to Hubject · {next_label}"
            seconds = int((facts.retry_at - now).total_seconds())
            when = f"in {seconds} s" if seconds >= 0 else (
                "now" if seconds > -10 else "as soon as the worker is reachable (it is overdue; nothing is lost)")
            headline = f"{_problem(stop_request, facts)}; retrying ({facts.attempts + 1} of {facts.max_attempts}) {when}"
            detail = ""  # the card says what failed and when the next attempt starts
            times.append(TimeRow(f"Next try ({next_label})", clock(facts.retry_at)))
            times.append(TimeRow("Outcome known by", clock(_worst_case_end(facts, facts.retry_at, pending=True)),
                                 "at the latest, if every attempt left waits its full time"))
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
        facts.session_status == Status.CLOSED)
    open_request = state in RemoteStopRequest.OPEN_STATES
    return StopProgress(
        stop_request=stop_request,
        facts=facts,
        steps=[StopStep(label, mark) for label, mark in zip(steps, marks)],
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


# --- the follow-up lists: the stuck queue, the sessions list, the session's timeline -----------------

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
        return Badge(text, "warn" if tone == "info" else tone, f"{title}. {OUTCOME_UNKNOWN_TITLE}",
                     OUTCOME_UNKNOWN_FLAG)
    return Badge(text, tone, title)


def age(span: timedelta) -> str:
    """How long something has been stuck, at a glance: 40 s, 25 min, 2 h 05 min, 7 h, 3 d 4 h."""
    total = max(0, int(span.total_seconds()))
    if total < 60:
        return f"{total} s"
    minutes = total // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 3:
        return f"{hours} h {minutes:02d} min" if minutes else f"{hours} h"
    if hours < 48:
        return f"{hours} h"
    return f"{hours // 24} d {hours % 24} h" if hours % 24 else f"{hours // 24} d"


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
            f" ({code})" if code and state in (State.REJECTED, State.FAILED) else "")
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
    previous = (f"Accepted {ago(stop_request.finished_at or stop_request.requested_at)}, never confirmed" if stop_request.state == State.UNCONFIRMED
                else f"{STATE_WORDS.get(stop_request.state, stop_request.state)}"
                     + (" with an unknown outcome" if stop_request.outcome_unknown else ""))
    text = (f"Hubject will be asked again to stop the session at {charging_session.evse_id} (CPO "
            f"{charging_session.operator_id}) for the driver, as a new, audited request. The CPO decides; Hubject "
            f"gives it {HBS_CPO_WINDOW_SECONDS} seconds to answer. The previous stop #{stop_request.pk} "
            f"({previous}) stays in the record.")
    if stop_request.case_reference:
        text += f" Its case reference {stop_request.case_reference} is kept unless you enter another."
    return text


RESENT = "Stop sent again as request #{pk} for {evse_id}."
RESEND_REFUSED = "Not sent again: {reason}"

# The session's timeline, for an agent looking at someone else's stop.
WITHHELD = ("Note, case reference and the exact request and response are visible to the agent who sent the stop, "
            "supervisors, support admins and auditors.")
