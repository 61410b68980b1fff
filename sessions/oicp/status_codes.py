"""The complete OICP 2.3 StatusCode table (CodeType): each code's description, area and whether it is
transient, and the kinds of outcome that carry no code (timeouts, HTTP errors, …). Pure protocol: what
the agent reads about an answer is in `sessions.stops.presenters`.

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
    """What the protocol says about an answer to a remote STOP: the code, Hubject's wording, its area,
    and whether sending the same stop again is safe and may succeed. What it means for the agent and the
    driver is in `sessions.stops.presenters` (`advise` for a stop, `code_meaning` for a bare code)."""

    code: str  # OICP code ("000"); "" for outcomes that are not an OICP answer
    description: str  # Hubject's wording, or a short title for non-OICP outcomes
    area: str  # "Area of usage" from the CodeType table
    transient: bool  # True: sending the same stop again is safe and may succeed
    kind: str = ""  # the failure kind for non-OICP outcomes (a key of FAILURE_KINDS)


_GENERAL, _INTERNAL, _AUTH, _SESSION, _EVSE = (
    "General codes",
    "Internal system codes",
    "Authentication codes",
    "Session codes",
    "EVSE codes",
)
_AREAS = {
    "000": _GENERAL,
    "001": _INTERNAL,
    "002": _INTERNAL,
    "009": _INTERNAL,
    "017": _INTERNAL,
    "018": _INTERNAL,
    "019": _INTERNAL,
    "021": _GENERAL,
    "022": _GENERAL,
    "101": _AUTH,
    "102": _AUTH,
    "103": _AUTH,
    "105": _AUTH,
    "106": _AUTH,
    "110": _AUTH,
    "120": _AUTH,
    "121": _AUTH,
    "122": _AUTH,
    "200": _AUTH,
    "210": _SESSION,
    "300": _SESSION,
    "310": _SESSION,
    "320": _SESSION,
    "400": _SESSION,
    "501": _EVSE,
    "510": _EVSE,
    "601": _EVSE,
    "602": _EVSE,
    "603": _EVSE,
    "604": _EVSE,
    "700": _EVSE,
}
# System codes: Hubject or the CPO could not process the stop this time; sending it again is safe.
# Every other code is a business answer and final (DESIGN §4: never retry a rejection such as 400).
TRANSIENT_CODES = frozenset({"001", "002", "009", "021", "310", "320"})

STATUS_CODES: dict[str, StatusCodeInfo] = {
    code: StatusCodeInfo(code, description, _AREAS[code], code in TRANSIENT_CODES)
    for code, description in HUBJECT_DESCRIPTIONS.items()
}


def describe(code: str | None) -> StatusCodeInfo:
    """The table entry for `code`; a generic "unknown code" entry (never an exception) otherwise."""
    if isinstance(code, str) and code in STATUS_CODES:
        return STATUS_CODES[code]
    return StatusCodeInfo(
        code=code if isinstance(code, str) else "", description="Unknown status code.", area="Unknown", transient=False
    )


def _failure(kind: str, description: str, transient: bool) -> StatusCodeInfo:
    return StatusCodeInfo("", description, "Portal / transport", transient, kind)


# Outcomes where no OICP status code came back, keyed by RemoteStopResult.failure_kind. `transient`
# here is advice for the agent; whether the portal retries is decided per answer (RemoteStopResult.outcome).
FAILURE_KINDS: dict[str, StatusCodeInfo] = {
    info.kind: info
    for info in (
        _failure("timeout", "No answer in time.", True),
        _failure("connection", "Hubject not reachable.", True),
        _failure("http_error", "Hubject answered with an HTTP error.", True),
        _failure("unreadable", "Unreadable answer.", True),
        _failure("tls", "Secure connection failed.", False),
        _failure("validation", "Request rejected as invalid.", False),
        _failure("unauthorized", "Not authorised at Hubject.", False),
        _failure("session_ended", "Session already ended.", False),
        _failure("worker_lost", "Worker stopped while waiting.", True),
    )
}
FAILURE_PLAYBOOK = FAILURE_KINDS  # the former name (sessions.audit.outcomes reads the descriptions)


def describe_failure(kind: str | None) -> StatusCodeInfo:
    """The entry for a non-OICP outcome; a generic entry (never an exception) for unknown kinds."""
    if isinstance(kind, str) and kind in FAILURE_KINDS:
        return FAILURE_KINDS[kind]
    return _failure("unknown", "Unknown failure.", False)
