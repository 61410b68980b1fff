"""The words: each subject's (an OICP code or a failure kind) meaning, what to tell the driver and
what to do next (`ADVICE`), with the situations where they differ; the words that depend on the
situation alone (`SITUATION_WORDS`); the line of facts each card shows (`CONTEXT`).

Every sentence of the advice card is written here, once (tests/test_stop_advice.py checks it).
"""

from __future__ import annotations

from dataclasses import dataclass, field


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


# Whom to call, in "call {cpo_hotline}": the CPO by name and number when Hubject's directory knows them
# (sessions.directory.selectors.cpo_contact), else the words used before the directory existed.
CPO_NAMED = "{name} at {hotline}"
CPO_NUMBER = "the CPO's hotline at {hotline}"
CPO_NAME = "{name}'s hotline"
CPO_UNKNOWN = "the CPO's hotline"

# Phrases several rows share (written once here, so the advice stays consistent).
_END_AT_STATION = (
    "We could not stop the charge remotely. Please end it at the charging station or from your "
    "car and unplug the cable."
)
_NOT_YOUR_FAULT = (
    "We have a technical problem on our side, it is not your fault. Please end the charge at the "
    "station or from your car and unplug; we are fixing it."
)
_CHECK_STATION = (
    "Please look at the station: has charging stopped? If not, end it at the station or from your car and unplug."
)
_TRYING_AGAIN = "We are trying again; please stay on the line for a minute."
_RETRY_NEXT = (
    "Nothing to do yet: attempt {next_attempt} of {max_attempts} starts at {retry_at}. If it fails "
    "too, this card says what to do next."
)
_UNEXPECTED_FOR_STOP = (
    "Escalate to the CPO with the correlation id and the code: their system gave an answer "
    "that does not fit a remote stop. Ask the driver to end the charge at the station meanwhile."
)
_SYSTEM_ERROR_NEXT = (
    "{final_note} Send a new stop in a few minutes; if it fails the same way, escalate to IT "
    "with the correlation id (a Hubject outage is possible)."
)


def _unexpected(meaning: str) -> Row:
    return Row(Words(meaning, _END_AT_STATION, _UNEXPECTED_FOR_STOP), call_cpo=True)


def _system_error(meaning: str) -> Row:
    return Row(
        Words(meaning, _END_AT_STATION, _SYSTEM_ERROR_NEXT), Words(tell_driver=_TRYING_AGAIN), new_stop_helps=True
    )


ADVICE: dict[str, Row] = {
    "000": Row(
        Words(
            "Hubject forwarded the stop and the CPO accepted it; the station is stopping the charge.",
            "The stop has been accepted; charging stops in a moment.",
            "Nothing more to send; the CPO's End notification or CDR will confirm the end on this page.",
        )
    ),
    "001": _system_error("Hubject's platform had an internal error and did not process the stop."),
    "002": _system_error("Hubject's database failed while handling the stop, so it was not processed."),
    "009": _system_error("A data transaction inside Hubject failed, so the stop was not processed."),
    "017": Row(
        Words(
            "Hubject refused our request because our ProviderID does not match our TLS client certificate (wrong, "
            "expired or replaced certificate).",
            _NOT_YOUR_FAULT,
            "Escalate to the portal's operators (IT): certificate or ProviderID configuration. No remote stop works "
            "until it is fixed.",
        )
    ),
    "018": Row(
        Words(
            "Hubject says the EvseID we sent does not match the charge point of this session.",
            _END_AT_STATION,
            "Compare the EvseID on this page with the station number the driver reads out; escalate to IT with the "
            "correlation id.",
        )
    ),
    "019": Row(
        Words(
            "Hubject found the contract ID (EvcoID) of this session inconsistent and did not forward the stop.",
            _END_AT_STATION,
            "Escalate to IT with the correlation id; check the driver's contract ID on this page.",
        )
    ),
    "021": _system_error("A system error at Hubject or the CPO prevented the stop from being processed."),
    "022": Row(
        Words(
            "Hubject could not use the data in our request (mostly a bad request, e.g. a malformed ID).",
            _NOT_YOUR_FAULT,
            "Escalate to IT with the correlation id; sending the same stop again will not help.",
        )
    ),
    "101": _unexpected(
        "The stop was answered with a QR-code authentication failure, which does not apply to a "
        "remote stop; it was not performed."
    ),
    "102": _unexpected(
        "The stop was answered with an RFID 'invalid UID' failure, which does not apply to a remote "
        "stop; it was not performed."
    ),
    "103": _unexpected(
        "The stop was answered with an RFID 'card not readable' failure, which does not apply to a "
        "remote stop; it was not performed."
    ),
    "105": _unexpected("The stop was answered with a Plug&Charge 'invalid EvcoID' failure; it was not performed."),
    "106": Row(
        Words(
            "The CPO or Hubject gave no positive authorisation for this stop, so it was not performed.",
            _END_AT_STATION,
            "Check on this page that the session belongs to our contract; escalate to the CPO with the correlation id.",
        ),
        call_cpo=True,
    ),
    "110": _unexpected(
        "The stop was answered with a QR-code app time-out, which does not apply to a remote stop; "
        "it was not performed."
    ),
    "120": _unexpected(
        "The stop was answered with a Plug&Charge 'invalid underlying EvcoID' failure; it was not performed."
    ),
    "121": _unexpected("The stop was answered with a Plug&Charge 'invalid certificate' failure; it was not performed."),
    "122": _unexpected("The stop was answered with a Plug&Charge time-out; it was not performed."),
    "200": Row(
        Words(
            "The driver's contract ID (EvcoID) is locked, so the stop was refused.",
            _END_AT_STATION,
            "Check the contract's status in our customer system; escalate to the CPO with the correlation id if the "
            "contract is active.",
        ),
        call_cpo=True,
    ),
    "210": Row(
        Words(
            "Hubject found no valid roaming contract between us and this station's operator, so it did not forward "
            "the stop.",
            _END_AT_STATION,
            "Escalate to the roaming/partner team (contract with this CPO at Hubject); the driver cannot fix this.",
        )
    ),
    "300": Row(
        Words(
            "Hubject could not find the partner, usually because an ID in our request (EvseID or ProviderID) is wrong.",
            _END_AT_STATION,
            "Check the EvseID on this page against the station; escalate to IT with the correlation id.",
        )
    ),
    "310": Row(
        Words(
            "The CPO's system did not answer Hubject within its 60-second window, so we do not know whether the "
            "station got the stop.",
            _CHECK_STATION,
            "{final_note} Ask the driver whether charging stopped: if it did, wait for the End notification or "
            "CDR on this page; if not, send a new stop, and if that fails too, call {cpo_hotline}.",
        ),
        Words(tell_driver="We are trying again; please check whether the station has stopped charging."),
        new_stop_helps=True,
        call_cpo=True,
    ),
    "320": Row(
        Words(
            "The CPO's remote-stop service is currently not available at Hubject.",
            _END_AT_STATION,
            "{final_note} Call {cpo_hotline} with the EvseID; send a new stop later, once their service is back.",
        ),
        Words(tell_driver=_TRYING_AGAIN),
        new_stop_helps=True,
        call_cpo=True,
    ),
    "400": Row(
        Words(
            "Hubject does not know this session, or has already closed it at its end (Hubject closes a session "
            "when the CPO sends its CDR), while no CDR has reached the portal.",
            "We could not stop the charge remotely yet. Please check whether the station is still charging; if "
            "it is, end it at the station or from your car and unplug.",
            "Check that the SessionID on this page is the one Hubject issued for this charge: a wrong or mixed-up "
            "SessionID gets 400 too (then escalate to IT with the correlation id). If it is right, the CDR is "
            "probably late: this page updates when it arrives. If the driver is still charging or cannot unplug, "
            "call {cpo_hotline} with the EvseID and the correlation id.",
        ),
        when={
            "final_unknown": Words(
                "An earlier attempt may have reached the CPO and stopped the session: Hubject now answers 400, as it "
                "does once it has closed a session. The CDR has not reached the portal yet.",
                "We have probably stopped the charge. Please check the station: if charging has stopped, you can "
                "unplug; if it is still charging, end it at the station or from your car.",
                "Wait for the CDR on this page: it confirms the end. If the driver says it is still charging, call "
                "{cpo_hotline} with the EvseID and the correlation id.",
            ),
            "final_after_end": Words(
                "Charging stopped at {end_at} (End notification) and Hubject answers 400: it has most likely closed "
                "the session already. The CDR has not reached the portal yet.",
                "Charging has stopped. If you still cannot unplug the cable, we will contact the station's operator "
                "for you.",
                "Wait for the CDR on this page. If the driver cannot unplug, call {cpo_hotline} (cable locked) "
                "with the EvseID and the correlation id.",
            ),
        },
        call_cpo=True,
    ),
    "501": Row(
        Words(
            "The CPO could not reach the charge point: the station is offline for its operator.",
            "The station cannot be reached remotely. Please end the charge at the station or from your car and unplug.",
            "Escalate to {cpo_hotline} (station offline) with the EvseID and correlation id.",
        ),
        call_cpo=True,
    ),
    "510": Row(
        Words(
            "The CPO reports that no vehicle is connected to the charge point, so charging has already stopped there.",
            "The station reports that no car is connected, so charging has stopped. Is the cable still plugged in?",
            "Wait for the CDR on this page. If the driver is still connected and charging, check the EvseID (maybe a "
            "different charge point) and call {cpo_hotline}.",
        ),
        call_cpo=True,
    ),
    "601": _unexpected(
        "The CPO says the charge point is reserved, an answer that does not fit a stop; it was not performed."
    ),
    "602": Row(
        Words(
            "The CPO says the charge point is used by another session or token, so our stop did not match it.",
            "Please read me the station number printed on the charger.",
            "Compare the station number with the EvseID on this page; if they differ the driver is on another charge "
            "point, otherwise escalate to {cpo_hotline}.",
        ),
        call_cpo=True,
    ),
    "603": Row(
        Words(
            "Hubject does not know this EvseID (it is not in the CPO's uploaded station data).",
            _END_AT_STATION,
            "Check the EvseID on this page; escalate to the CPO (station data) and to IT with the correlation id.",
        ),
        call_cpo=True,
    ),
    "604": Row(
        Words(
            "The CPO marked this charge point as not Hubject compatible, so Hubject does not forward remote commands "
            "to it.",
            _END_AT_STATION,
            "Escalate to {cpo_hotline}; this station cannot be stopped through Hubject.",
        ),
        call_cpo=True,
    ),
    "700": Row(
        Words(
            "The CPO reports that the charge point is out of service and could not execute the stop.",
            "The station is out of service. Please end the charge at the station or from your car and unplug; if the "
            "cable is locked, call the number on the charger.",
            "Escalate to {cpo_hotline} with the EvseID and correlation id.",
        ),
        call_cpo=True,
    ),
    # --- outcomes without an OICP code (FAILURE_KINDS) ---
    "timeout": Row(
        Words(
            "Hubject did not answer within the portal's {timeout} limit, so we do not know whether the stop "
            "reached the CPO.",
            _CHECK_STATION,
            "{final_note} The stop waits on the stuck-sessions queue until an End notification or CDR settles "
            "it. Ask the driver whether charging stopped; if not, send a new stop (a repeated stop is harmless), "
            "and if that fails too, call {cpo_hotline}.",
        ),
        Words(
            tell_driver="We have sent the stop and are waiting for confirmation; please check whether the station "
            "has stopped."
        ),
        new_stop_helps=True,
        call_cpo=True,
    ),
    "connection": Row(
        Words(
            "The portal could not reach Hubject (network, DNS or connection problem).",
            _END_AT_STATION,
            "{final_note} Escalate to the portal's operators (network or Hubject outage); send a new stop once "
            "Hubject is reachable again.",
        ),
        Words(tell_driver=_TRYING_AGAIN),
        new_stop_helps=True,
    ),
    "http_error": Row(
        Words(
            "Hubject answered {http} instead of an acknowledgement, so the stop is not confirmed.",
            "We have a technical problem reaching the roaming network. Please end the charge at the station or "
            "from your car and unplug.",
            "{final_note} Send a new stop in a few minutes; if Hubject keeps answering with an error, escalate "
            "to IT with the correlation id and the HTTP status.",
        ),
        Words(tell_driver=_TRYING_AGAIN),
        new_stop_helps=True,
    ),
    "unreadable": Row(
        Words(
            "Hubject's answer was not a valid eRoamingAcknowledgement, so we do not know whether the stop was "
            "performed.",
            _CHECK_STATION,
            "{final_note} Ask the driver whether charging stopped; if not, send a new stop (harmless). If the "
            "answers stay unreadable, escalate to IT with the correlation id.",
        ),
        Words(tell_driver="We are checking whether the stop went through; please see whether the station has stopped."),
        new_stop_helps=True,
    ),
    "tls": Row(
        Words(
            "The TLS connection to Hubject failed (client certificate, key or CA chain), so the stop was not sent.",
            _NOT_YOUR_FAULT,
            "Escalate to the portal's operators: check the client certificate, key and Hubject CA bundle. Sending again "
            "will not help until it is fixed.",
        )
    ),
    "validation": Row(
        Words(
            "Hubject rejected our request as invalid (HTTP 400), usually because an ID has the wrong format.",
            _NOT_YOUR_FAULT,
            "Check the SessionID and EvseID on this page; escalate to IT with the correlation id and the fields named "
            "in the error.",
        )
    ),
    "unauthorized": Row(
        Words(
            "Hubject refused the call as not authorised (HTTP 401/403): certificate, ProviderID or IP whitelisting on "
            "our side.",
            _NOT_YOUR_FAULT,
            "Escalate to the portal's operators (Hubject access configuration); no remote stop works until fixed.",
        )
    ),
    "session_ended": Row(
        Words(
            "The portal did not send this stop: the CPO's CDR for the session arrived before it left the queue, and "
            "Hubject would only have answered 400 Session is invalid.",
            "Please check the station: its operator has sent the final record of this charge.",
            "Check the CDR on this page; nothing to send.",
        )
    ),
    "worker_lost": Row(
        Words(
            "The background worker stopped while waiting for Hubject, so we do not know whether the stop reached "
            "the CPO.",
            _CHECK_STATION,
            "{final_note} Check this page for an End notification or CDR; if none comes and the driver is still "
            "charging, send a new stop (harmless). If it stays unconfirmed, call {cpo_hotline}.",
        ),
        Words(tell_driver="We are checking whether the stop went through; please see whether the station has stopped."),
        new_stop_helps=True,
        call_cpo=True,
    ),
    "unknown": Row(
        Words(
            "The answer carried a status code or outcome the portal does not know, so the stop is not confirmed.",
            _END_AT_STATION,
            "Escalate to IT with the correlation id and the code shown; do not promise the driver a stop.",
        ),
        call_cpo=True,
    ),
}

# Words that depend on the situation alone (the code does not change them): success, the session's end.
SITUATION_WORDS: dict[str, Words] = {
    "accepted": Words(
        "Hubject forwarded the stop and the CPO accepted it at {accepted_at}; the station is stopping the charge.",
        "The stop has been accepted; charging stops in a moment, then you can unplug.",
        "Nothing more to send. The CPO confirms the end with its End notification or CDR, usually within minutes; "
        "if neither has come by {confirm_by}, the stop is flagged as not confirmed and you can send it again.",
    ),
    "accepted_after_end": Words(
        "Hubject forwarded the stop and the CPO accepted it at {accepted_at}. Charging had already stopped "
        "({end_at}), so only the CPO's CDR can show that the session is over.",
        "The stop has been accepted. Can you unplug the cable now?",
        "Nothing more to send. Wait for the CDR on this page (usually within minutes; flagged as not confirmed at "
        "{confirm_by}). If the cable stays locked, call {cpo_hotline}.",
    ),
    "confirmed_end": Words(
        "The CPO's End notification ({confirmed_at}) confirms that charging stopped; its CDR will close the session.",
        "Charging has stopped; you can unplug now.",
        "Nothing more to do. The CDR with the final energy will appear on this page.",
    ),
    "confirmed_cdr": Words(
        "The CPO's CDR (received {cdr_at}) confirms that the session ended.",
        "Your session has ended; you can unplug.",
        "Nothing more to do; the CDR on this page holds the final energy.",
    ),
    "unconfirmed": Words(
        "The CPO accepted the stop at {accepted_at}, but neither an End notification nor a CDR has come since "
        "({confirm_minutes} min): the session may still be running.",
        "Is the car still charging? Please look at the station's display.",
        "If it is still charging, send a new stop and call {cpo_hotline}; if it stopped, nothing to send: the "
        "CDR will confirm it. The stop is on the supervisors' stuck-sessions queue.",
    ),
    "session_ended": Words(
        "Whatever Hubject answered to the stop, the CPO's CDR arrived at {cdr_at}: the session is over at the CPO "
        "and at Hubject.",
        "Your session has ended; you can unplug.",
        "Check the CDR on this page (end time and energy). Nothing to send.",
    ),
    "closed_by_hand": Words(
        "A supervisor closed this session by hand in the portal at {ended_at}; the CPO has not confirmed its end, "
        "and no stop can be sent any more.",
        _CHECK_STATION,
        "Nothing can be sent any more. If the driver is still charging or cannot unplug, call {cpo_hotline} "
        "with the EvseID and the correlation id.",
    ),
    # The stop failed after the CPO's End: the energy flow had stopped; the cable may still be locked.
    "final_after_end": Words(
        tell_driver="Charging has stopped (its operator reported it at {end_at}), but our stop did not go "
        "through. If the cable is still locked, please try the station's unlock option; we will "
        "contact the operator if that does not work."
    ),
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
