"""OICP 2.3 identifier formats (DIGEST §6) and the rules of the remote-stop message (§1).

Hubject's OpenAPI accepts lower case where the text spec shows upper case; HBS upper-cases such
IDs, so we accept both and store upper case.
"""

import re

EVSE_ID = re.compile(
    r"^(([A-Za-z]{2}\*?[A-Za-z0-9]{3}\*?E[A-Za-z0-9\*]{1,30})|(\+?[0-9]{1,3}\*[0-9]{3}\*[0-9\*]{1,32}))$"
)
PROVIDER_ID = re.compile(r"^([A-Za-z]{2}\-?[A-Za-z0-9]{3}|[A-Za-z]{2}[\*|-]?[A-Za-z0-9]{3})$")
OPERATOR_ID = re.compile(r"^(([A-Za-z]{2}\*?[A-Za-z0-9]{3})|(\+?[0-9]{1,3}\*[0-9]{3}))$")
SESSION_ID = re.compile(r"^[A-Za-z0-9]{8}(-[A-Za-z0-9]{4}){3}-[A-Za-z0-9]{12}$")
PARTNER_SESSION_ID_MAX = 250

# The operator part of an EvseID: ISO "DE*ABC" / "DEABC" before the "E", DIN "+49*810".
_ISO_OPERATOR = re.compile(r"^([A-Za-z]{2})(\*?)([A-Za-z0-9]{3})\*?E")
_DIN_OPERATOR = re.compile(r"^(\+?[0-9]{1,3}\*[0-9]{3})\*")


def is_evse_id(value: object) -> bool:
    return isinstance(value, str) and bool(EVSE_ID.fullmatch(value))


def is_provider_id(value: object) -> bool:
    return isinstance(value, str) and bool(PROVIDER_ID.fullmatch(value))


def is_operator_id(value: object) -> bool:
    return isinstance(value, str) and bool(OPERATOR_ID.fullmatch(value))


def is_session_id(value: object) -> bool:
    return isinstance(value, str) and bool(SESSION_ID.fullmatch(value))


def session_key(session_id: str) -> str:
    """The form every lookup uses: SessionIDs are GUIDs, and a GUID's case carries no meaning,
    but Hubject compares them as given, so the SessionID itself is kept and sent as received."""
    return session_id.lower()


def operator_id_from_evse_id(evse_id: str) -> str:
    """The CPO's OperatorID as HBS derives it from an EvseID, upper case ("DE*ABC", "+49*810").

    Raises ValueError for a string that is not an EvseID.
    """
    if not is_evse_id(evse_id):
        raise ValueError(f"{evse_id!r} is not an OICP EvseID")
    din = _DIN_OPERATOR.match(evse_id)
    if din:
        return din.group(1)
    iso = _ISO_OPERATOR.match(evse_id)
    assert iso is not None  # guaranteed by the EvseID pattern
    country, star, operator = iso.groups()
    return f"{country}{star}{operator}".upper()


def remote_stop_violations(body: object) -> list[str]:
    """Every rule of eRoamingAuthorizeRemoteStop_V2.1 that `body` breaks; empty when valid.

    Each entry names the field, so the simulator and the portal can report it.
    """
    if not isinstance(body, dict):
        return ["body: must be a JSON object"]
    problems: list[str] = []
    rules = {
        "SessionID": (True, is_session_id, "a GUID-shaped SessionID"),
        "ProviderID": (True, is_provider_id, "a ProviderID such as DE-ABC"),
        "EvseID": (True, is_evse_id, "an EvseID such as DE*ABC*E123"),
    }
    for field, (mandatory, check, expected) in rules.items():
        if field not in body or body[field] is None:
            if mandatory:
                problems.append(f"{field}: missing (mandatory)")
        elif not check(body[field]):
            problems.append(f"{field}: {body[field]!r} is not {expected}")
    for field in ("CPOPartnerSessionID", "EMPPartnerSessionID"):
        value = body.get(field)
        if value is None:
            continue
        if not isinstance(value, str):
            problems.append(f"{field}: must be a string")
        elif len(value) > PARTNER_SESSION_ID_MAX:
            problems.append(f"{field}: longer than {PARTNER_SESSION_ID_MAX} characters")
    allowed = set(rules) | {"CPOPartnerSessionID", "EMPPartnerSessionID"}
    problems += [f"{field}: not a field of eRoamingAuthorizeRemoteStop" for field in sorted(set(body) - allowed)]
    return problems
