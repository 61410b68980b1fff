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


# --- search as drivers speak (issue 12) ---------------------------------------------------------
#
# A driver reads an EvseID, a contract ID (EvcoID), a card's UID or its printed number aloud, with
# spaces, dashes, dots or stars, in any case: "DE ACC E7260 4", "de-emp-c12345678-x", "04:a2:3b:c1".
# Each such ID is searched by one key: its text in upper case without these separators. The
# database computes the same key from the stored value (ChargingSession's GeneratedFields build their
# expression from ID_SEPARATORS), so a search is one indexed equality or prefix. IDs are ASCII by
# their formats (DIGEST §6); SQLite upper-cases ASCII letters only, so the query side does too.

# "*" and "+" of EvseIDs (ISO "DE*ACC*E1*1", DIN "+49*810*000*438"), "-" and "*" of EvcoIDs, and
# what people add when they read or write an ID: spaces, dots, colons (card readers), slashes.
ID_SEPARATORS = " *+-.:/"
_DROP_FROM_QUERY = str.maketrans("", "", ID_SEPARATORS)
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

SESSION_ID_PREFIX_MIN = 8  # "1df4fad6": the first group of a SessionID
_SESSION_ID_PART = re.compile(r"^[A-Za-z0-9-]+$")
# An EvcoID without its check digit still names one contract: DIN has 11 characters before it
# (DE 8EO Aet5e4), ISO 14 (DE 8EO CAet5e4XY). Shorter prefixes would list a provider's contracts.
CONTRACT_PREFIX_MIN = 11

# What the session keeps of a message's Identification (DIGEST §6, OICP IdentificationType).
CONTRACT_ID_MAX = 50  # EvcoIDs have 15–18 characters; room for a CPO's odd spelling
CARD_UID_MAX = 50  # UID: "field length 50"
PRINTED_NUMBER_MAX = 150  # RFIDIdentification.PrintedNumber: 150
IDENTIFICATION_MAX = {"contract_id": CONTRACT_ID_MAX, "card_uid": CARD_UID_MAX, "printed_number": PRINTED_NUMBER_MAX}
# Where each value is found, in the order OICP lists the kinds. Usually one kind is sent; Hubject's
# own samples send several, with the same EvcoID in each.
IDENTIFICATION_SOURCES = {
    "contract_id": (
        ("RFIDIdentification", "EvcoID"),
        ("QRCodeIdentification", "EvcoID"),
        ("PlugAndChargeIdentification", "EvcoID"),
        ("RemoteIdentification", "EvcoID"),
    ),
    "card_uid": (("RFIDMifareFamilyIdentification", "UID"), ("RFIDIdentification", "UID")),
    "printed_number": (("RFIDIdentification", "PrintedNumber"),),
}


def id_search_key(value: str) -> str:
    """An EvseID, EvcoID, card UID or printed number as searched: upper case, without separators
    or white space. "DE ACC E7260 4", "de-acc-e7260-4" and "DE*ACC*E7260*4" are all "DEACCE72604"."""
    return "".join(value.translate(_DROP_FROM_QUERY).split()).translate(_ASCII_UPPER)


def partner_search_key(value: str) -> str:
    """A partner session ID as searched: free text (OICP gives it no format), found in any case."""
    return value.strip().translate(_ASCII_LOWER)


def session_id_prefix(query: str) -> str | None:
    """The lower-case start of a SessionID the query may be (8 characters or more), else None."""
    query = query.strip()
    if len(query) < SESSION_ID_PREFIX_MIN or not _SESSION_ID_PART.fullmatch(query):
        return None
    return session_key(query)


def identification_values(identification: object) -> dict[str, list[str]]:
    """The contract ID, card UID and printed number an OICP Identification carries: for each, the
    usable values in IDENTIFICATION_SOURCES order, one per search key (the same contract spelled
    twice is one value). A value that is not a string, is blank or too long for the session is
    left out (the raw message keeps it)."""
    found: dict[str, list[str]] = {name: [] for name in IDENTIFICATION_SOURCES}
    if not isinstance(identification, dict):
        return found
    for name, places in IDENTIFICATION_SOURCES.items():
        keys = set()
        for kind, field in places:
            part = identification.get(kind)
            value = part.get(field) if isinstance(part, dict) else None
            if not isinstance(value, str) or not value.strip() or len(value.strip()) > IDENTIFICATION_MAX[name]:
                continue
            value = value.strip()
            key = id_search_key(value)
            if key and key not in keys:
                keys.add(key)
                found[name].append(value)
    return found


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


def operator_key(operator_id: str) -> str:
    """One key per CPO: "DE*ABC" and "DEABC" are one operator (the `*` is optional), "+49*810" and
    "49*810" too (so is the `+`); case carries no meaning."""
    return operator_id.upper().lstrip("+").replace("*", "")


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
