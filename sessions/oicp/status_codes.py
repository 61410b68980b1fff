"""The complete OICP 2.3 StatusCode table (CodeType), with what each code means for a support agent.

Codes are 3-character strings with leading zeros ("000"); backends must evaluate the code, not
Hubject's description (DIGEST §2).
"""

from dataclasses import dataclass

# code -> Hubject's description, exactly as in the OICP 2.3 CodeType table.
HUBJECT_DESCRIPTIONS: dict[str, str] = {
    "000": "Success.",
    "001": "Hubject system error.",
    "002": "Hubject database error.",
    "009": "Data transaction error.",
    "017": "Unauthorized Access.",
    "018": "Inconsistent EvseID.",
    "019": "Inconsistent EvcoID.",
    "021": "System error.",
    "022": "Data error.",
    "101": "QR Code Authentication failed – Invalid Credentials.",
    "102": "RFID Authentication failed – invalid UID.",
    "103": "RFID Authentication failed – card not readable.",
    "105": "PLC Authentication failed - invalid EvcoID.",
    "106": "No positive authentication response.",
    "110": "QR Code App Authentication failed – time out error.",
    "120": "PLC (ISO/ IEC 15118) Authentication failed – invalid underlying EvcoID.",
    "121": "PLC (ISO/ IEC 15118) Authentication failed – invalid certificate.",
    "122": "PLC (ISO/ IEC 15118) Authentication failed – time out error.",
    "200": "EvcoID locked.",
    "210": "No valid contract.",
    "300": "Partner not found.",
    "310": "Partner did not respond.",
    "320": "Service not available.",
    "400": "Session is invalid.",
    "501": "Communication to EVSE failed.",
    "510": "No EV connected to EVSE.",
    "601": "EVSE already reserved.",
    "602": "EVSE already in use/ wrong token.",
    "603": "Unknown EVSE ID.",
    "604": "EVSE ID is not Hubject compatible.",
    "700": "EVSE out of service.",
}


@dataclass(frozen=True)
class StatusCodeInfo:
    """What an answer to a remote STOP means, and what the support agent says and does."""

    code: str  # OICP code ("000"); "" for outcomes that are not an OICP answer
    description: str  # Hubject's wording, or a short title for non-OICP outcomes
    area: str  # "Area of usage" from the CodeType table
    meaning: str  # one sentence: what this answer to our stop means
    tell_driver: str  # what to say to the driver on the phone
    next_step: str  # what the agent does next
    transient: bool  # True: sending the same stop again is safe and may succeed


# Phrases shared by many entries, so the advice stays consistent.
_END_AT_STATION = (
    "We could not stop the charge remotely. Please end it at the charging station or from your car "
    "and unplug the cable."
)
_NOT_YOUR_FAULT = (
    "We have a technical problem on our side, it is not your fault. Please end the charge at the "
    "station or from your car and unplug; we are fixing it."
)
_TRYING_AGAIN = "We are trying again; please stay on the line for a minute."
_RETRY_THEN_CPO = (
    "Nothing: the portal retries automatically. If the stop stays unconfirmed, ask the driver to end "
    "the charge at the station and call the CPO's hotline."
)
_UNEXPECTED_FOR_STOP = (
    "Escalate to the CPO with the correlation id and the code: their system gave an answer that does not "
    "fit a remote stop. Ask the driver to end the charge at the station meanwhile."
)


def _entry(
    code: str, area: str, meaning: str, tell_driver: str, next_step: str, transient: bool = False
) -> StatusCodeInfo:
    return StatusCodeInfo(code, HUBJECT_DESCRIPTIONS[code], area, meaning, tell_driver, next_step, transient)


_GENERAL, _INTERNAL, _AUTH, _SESSION, _EVSE = (
    "General codes", "Internal system codes", "Authentication codes", "Session codes", "EVSE codes"
)

STATUS_CODES: dict[str, StatusCodeInfo] = {
    info.code: info
    for info in (
        _entry("000", _GENERAL,
               "Hubject forwarded the stop and the CPO accepted it; the station is stopping the charge.",
               "The stop has been accepted; the charging stops in a moment and you can then unplug.",
               "Nothing more to send; the session closes when the CPO's CDR arrives on the session page."),
        _entry("001", _INTERNAL,
               "Hubject's platform had an internal error and did not process the stop.",
               _TRYING_AGAIN, _RETRY_THEN_CPO, transient=True),
        _entry("002", _INTERNAL,
               "Hubject's database failed while handling the stop, so it was not processed.",
               _TRYING_AGAIN, _RETRY_THEN_CPO, transient=True),
        _entry("009", _INTERNAL,
               "A data transaction inside Hubject failed, so the stop was not processed.",
               _TRYING_AGAIN, _RETRY_THEN_CPO, transient=True),
        _entry("017", _INTERNAL,
               "Hubject refused our request because our ProviderID does not match our TLS client certificate "
               "(wrong, expired or replaced certificate).",
               _NOT_YOUR_FAULT,
               "Escalate to the portal's operators (IT): certificate or ProviderID configuration. No remote stop "
               "works until it is fixed."),
        _entry("018", _INTERNAL,
               "Hubject says the EvseID we sent does not match the charge point of this session.",
               _END_AT_STATION,
               "Compare the EvseID on the session page with the station number the driver reads out; escalate "
               "to IT with the correlation id."),
        _entry("019", _INTERNAL,
               "Hubject found the contract ID (EvcoID) of this session inconsistent and did not forward the stop.",
               _END_AT_STATION,
               "Escalate to IT with the correlation id; check the driver's contract ID on the session page."),
        _entry("021", _GENERAL,
               "A system error at Hubject or the CPO prevented the stop from being processed.",
               _TRYING_AGAIN, _RETRY_THEN_CPO, transient=True),
        _entry("022", _GENERAL,
               "Hubject could not use the data in our request (mostly a bad request, e.g. a malformed ID).",
               _NOT_YOUR_FAULT,
               "Escalate to IT with the correlation id; sending the same stop again will not help."),
        _entry("101", _AUTH,
               "The stop was answered with a QR-code authentication failure, which does not apply to a remote "
               "stop; it was not performed.",
               _END_AT_STATION, _UNEXPECTED_FOR_STOP),
        _entry("102", _AUTH,
               "The stop was answered with an RFID 'invalid UID' failure, which does not apply to a remote stop; "
               "it was not performed.",
               _END_AT_STATION, _UNEXPECTED_FOR_STOP),
        _entry("103", _AUTH,
               "The stop was answered with an RFID 'card not readable' failure, which does not apply to a remote "
               "stop; it was not performed.",
               _END_AT_STATION, _UNEXPECTED_FOR_STOP),
        _entry("105", _AUTH,
               "The stop was answered with a Plug&Charge 'invalid EvcoID' failure; it was not performed.",
               _END_AT_STATION, _UNEXPECTED_FOR_STOP),
        _entry("106", _AUTH,
               "The CPO or Hubject gave no positive authorisation for this stop, so it was not performed.",
               _END_AT_STATION,
               "Check on the session page that the session belongs to our contract; escalate to the CPO with the "
               "correlation id."),
        _entry("110", _AUTH,
               "The stop was answered with a QR-code app time-out, which does not apply to a remote stop; it was "
               "not performed.",
               _END_AT_STATION, _UNEXPECTED_FOR_STOP),
        _entry("120", _AUTH,
               "The stop was answered with a Plug&Charge 'invalid underlying EvcoID' failure; it was not "
               "performed.",
               _END_AT_STATION, _UNEXPECTED_FOR_STOP),
        _entry("121", _AUTH,
               "The stop was answered with a Plug&Charge 'invalid certificate' failure; it was not performed.",
               _END_AT_STATION, _UNEXPECTED_FOR_STOP),
        _entry("122", _AUTH,
               "The stop was answered with a Plug&Charge time-out; it was not performed.",
               _END_AT_STATION, _UNEXPECTED_FOR_STOP),
        _entry("200", _AUTH,
               "The driver's contract ID (EvcoID) is locked, so the stop was refused.",
               _END_AT_STATION,
               "Check the contract's status in our customer system; escalate to the CPO with the correlation id "
               "if the contract is active."),
        _entry("210", _SESSION,
               "Hubject found no valid roaming contract between us and this station's operator, so it did not "
               "forward the stop.",
               _END_AT_STATION,
               "Escalate to the roaming/partner team (contract with this CPO at Hubject); the driver cannot fix "
               "this."),
        _entry("300", _SESSION,
               "Hubject could not find the partner, usually because an ID in our request (EvseID or ProviderID) "
               "is wrong.",
               _END_AT_STATION,
               "Check the EvseID on the session page against the station; escalate to IT with the correlation id."),
        _entry("310", _SESSION,
               "The CPO's system did not answer Hubject within 60 seconds, so we do not know whether the station "
               "got the stop.",
               "We are trying again; please check whether the station has stopped charging.",
               _RETRY_THEN_CPO, transient=True),
        _entry("320", _SESSION,
               "The CPO's remote-stop service is currently not available at Hubject.",
               _TRYING_AGAIN, _RETRY_THEN_CPO, transient=True),
        _entry("400", _SESSION,
               "The session has already ended at Hubject, usually because the CPO's charge detail record (CDR) "
               "arrived.",
               "Your session has ended.",
               "Check the CDR on the session page; do not send the stop again. If the driver says it is still "
               "charging, call the CPO's hotline."),
        _entry("501", _EVSE,
               "The CPO could not reach the charge point: the station is offline for its operator.",
               "The station cannot be reached remotely. Please end the charge at the station or from your car "
               "and unplug.",
               "Escalate to the CPO's hotline (station offline) with the EvseID and correlation id."),
        _entry("510", _EVSE,
               "The CPO reports that no vehicle is connected to the charge point, so charging has already stopped.",
               "The station reports that no car is connected, so charging has stopped. Is the cable still "
               "plugged in?",
               "Wait for the CDR on the session page. If the driver is still connected and charging, check the "
               "EvseID (maybe a different charge point) and call the CPO's hotline."),
        _entry("601", _EVSE,
               "The CPO says the charge point is reserved, an answer that does not fit a stop; it was not "
               "performed.",
               _END_AT_STATION, _UNEXPECTED_FOR_STOP),
        _entry("602", _EVSE,
               "The CPO says the charge point is used by another session or token, so our stop did not match it.",
               "Please read me the station number printed on the charger.",
               "Compare the station number with the EvseID on the session page; if they differ the driver is on "
               "another charge point, otherwise escalate to the CPO's hotline."),
        _entry("603", _EVSE,
               "Hubject does not know this EvseID (it is not in the CPO's uploaded station data).",
               _END_AT_STATION,
               "Check the EvseID on the session page; escalate to the CPO (station data) and to IT with the "
               "correlation id."),
        _entry("604", _EVSE,
               "The CPO marked this charge point as not Hubject compatible, so Hubject does not forward remote "
               "commands to it.",
               _END_AT_STATION,
               "Escalate to the CPO's hotline; this station cannot be stopped through Hubject."),
        _entry("700", _EVSE,
               "The CPO reports that the charge point is out of service and could not execute the stop.",
               "The station is out of service. Please end the charge at the station or from your car and "
               "unplug; if the cable is locked, call the number on the charger.",
               "Escalate to the CPO's hotline with the EvseID and correlation id."),
    )
}


def describe(code: str | None) -> StatusCodeInfo:
    """The table entry for `code`; a generic "unknown code" entry (never an exception) otherwise."""
    if isinstance(code, str) and code in STATUS_CODES:
        return STATUS_CODES[code]
    return StatusCodeInfo(
        code=code if isinstance(code, str) else "",
        description="Unknown status code.",
        area="Unknown",
        meaning="The answer carried a status code that is not in the OICP 2.3 table, so the stop is not confirmed.",
        tell_driver=_END_AT_STATION,
        next_step="Escalate to IT with the correlation id and the code shown; do not promise the driver a stop.",
        transient=False,
    )


def _failure(description: str, meaning: str, tell_driver: str, next_step: str, transient: bool) -> StatusCodeInfo:
    return StatusCodeInfo("", description, "Portal / transport", meaning, tell_driver, next_step, transient)


# Outcomes where no OICP status code came back, keyed by RemoteStopResult.failure_kind. `transient`
# here is advice for the agent; whether the portal retries is decided per answer (RemoteStopResult.outcome).
FAILURE_PLAYBOOK: dict[str, StatusCodeInfo] = {
    "timeout": _failure(
        "No answer in time.",
        "Hubject did not answer within our time limit, so we do not know whether the stop reached the CPO.",
        "We have sent the stop and are waiting for confirmation; please check whether the station has stopped.",
        "The portal retries automatically (a repeated stop is harmless). Watch the session page for an End "
        "notification or CDR; if it stays unconfirmed, call the CPO's hotline.",
        True,
    ),
    "connection": _failure(
        "Hubject not reachable.",
        "The portal could not reach Hubject (network, DNS or connection problem).",
        _TRYING_AGAIN,
        "The portal retries automatically. If every attempt fails, escalate to the portal's operators "
        "(network or Hubject outage) and ask the driver to end the charge at the station.",
        True,
    ),
    "http_error": _failure(
        "Hubject answered with an HTTP error.",
        "Hubject answered with an HTTP error status instead of an acknowledgement, so the stop is not confirmed.",
        "We have a technical problem reaching the roaming network; we are working on it.",
        "Temporary errors (5xx, 408, 429) are retried automatically; otherwise escalate to IT with the "
        "correlation id and HTTP status.",
        True,
    ),
    "unreadable": _failure(
        "Unreadable answer.",
        "Hubject's answer was not a valid eRoamingAcknowledgement, so we do not know whether the stop was "
        "performed.",
        "We are checking whether the stop went through; please see whether the station has stopped.",
        "The portal retries automatically (harmless). If it persists, escalate to IT with the correlation id.",
        True,
    ),
    "tls": _failure(
        "Secure connection failed.",
        "The TLS connection to Hubject failed (client certificate, key or CA chain), so the stop was not sent.",
        _NOT_YOUR_FAULT,
        "Escalate to the portal's operators: check the client certificate, key and Hubject CA bundle. Retrying "
        "will not help.",
        False,
    ),
    "validation": _failure(
        "Request rejected as invalid.",
        "Hubject rejected our request as invalid (HTTP 400), usually because an ID has the wrong format.",
        _NOT_YOUR_FAULT,
        "Check the SessionID and EvseID on the session page; escalate to IT with the correlation id and the "
        "fields named in the error.",
        False,
    ),
    "unauthorized": _failure(
        "Not authorised at Hubject.",
        "Hubject refused the call as not authorised (HTTP 401/403): certificate, ProviderID or IP whitelisting "
        "on our side.",
        _NOT_YOUR_FAULT,
        "Escalate to the portal's operators (Hubject access configuration); no remote stop works until fixed.",
        False,
    ),
    "session_ended": _failure(
        "Session already ended.",
        "The CPO's charge detail record arrived before the stop was sent, so the portal did not send it: "
        "Hubject would only answer 400 Session is invalid.",
        "Your session has ended; you can unplug.",
        "Nothing to send. Check the CDR on the session page for the final energy.",
        False,
    ),
    "worker_lost": _failure(
        "Worker stopped while waiting.",
        "The background worker stopped while waiting for Hubject, so we do not know whether the stop reached "
        "the CPO.",
        "We are checking whether the stop went through; please see whether the station has stopped.",
        "Check the session page for an End notification or CDR; if there is none, send the stop again "
        "(harmless). If it stays unconfirmed, call the CPO's hotline.",
        True,
    ),
}


def describe_failure(kind: str | None) -> StatusCodeInfo:
    """The playbook entry for a non-OICP outcome; a generic entry (never an exception) for unknown kinds."""
    if isinstance(kind, str) and kind in FAILURE_PLAYBOOK:
        return FAILURE_PLAYBOOK[kind]
    return _failure(
        "Unknown failure.",
        "The stop could not be confirmed for a reason the portal does not recognise.",
        _END_AT_STATION,
        "Escalate to IT with the correlation id; check the session page for an End notification or CDR.",
        False,
    )
