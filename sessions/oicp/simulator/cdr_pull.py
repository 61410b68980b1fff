"""eRoamingGetChargeDetailRecords_V2.2 as HBS serves it (DIGEST §5.4): its rules, then one page of CDRs.

The CDRs are those HBS holds (`CdrStore`), forwarded to the EMP or not; the answer is Spring's Page
shape, as HBS sends it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from sessions.oicp.ids import is_operator_id, is_session_id
from sessions.oicp.paths import DEFAULT_CDR_PAGE_SIZE, MAX_CDR_PAGE_SIZE

from .answers import fault_body
from .checks import content_type_violations, parse_body, parse_oicp_datetime, provider_id_violations
from .paging import page_answer, page_query

if TYPE_CHECKING:
    from .handler import SimulatorHandler

GET_CDRS_FIELDS = {"ProviderID", "From", "To", "SessionID", "OperatorID", "CDRForwarded", "CDRForwarder"}


def answer_get_cdrs(handler: SimulatorHandler, provider_id: str, raw: bytes) -> str:
    """Validate like HBS, then answer one page of the CDRs selected by the body; returns the outcome."""
    text, body, parse_errors = parse_body(raw)
    query = parse_qs(urlsplit(handler.path).query)
    violations = content_type_violations(handler.headers.get("Content-Type")) + parse_errors
    page, size = 0, DEFAULT_CDR_PAGE_SIZE
    if not parse_errors:
        problems, page, size = get_cdrs_violations(provider_id, query, body)
        violations += problems
    handler.note(body_text=text, body=body, violations=violations)
    if violations:
        extended = "eRoamingGetChargeDetailRecords_V2.2 request does not conform to OICP 2.3"
        handler.answer_json(400, fault_body("Validation error", extended, violations))
        return "answered"
    handler.answer_json(200, cdr_page(handler.server.cdrs.select(body), page, size))
    return "answered"


def get_cdrs_violations(provider_id: str, query: Mapping[str, list[str]], body: Any) -> tuple[list[str], int, int]:
    """Rules of eRoamingGetChargeDetailRecords_V2.2 (DIGEST §5.4); returns (violations, page, size)."""
    problems, page, size = page_query(query, DEFAULT_CDR_PAGE_SIZE, MAX_CDR_PAGE_SIZE)
    if not isinstance(body, dict):
        return problems + ["body: must be a JSON object"], page, size
    problems += provider_id_violations(provider_id, body)
    bounds = {}
    for name in ("From", "To"):
        if body.get(name) is None:
            problems.append(f"{name}: missing (mandatory)")
        elif (bounds.setdefault(name, parse_oicp_datetime(body[name]))) is None:
            problems.append(f"{name}: {body[name]!r} is not a date-time with offset (YYYY-MM-DDThh:mm:ss±hh:mm)")
    if bounds.get("From") and bounds.get("To") and bounds["From"] > bounds["To"]:
        problems.append("From: must not be after To")
    sessions = body.get("SessionID")
    if sessions is not None and (not isinstance(sessions, list) or not all(is_session_id(s) for s in sessions)):
        problems.append("SessionID: must be a list of SessionIDs")
    operator = body.get("OperatorID")
    operators = operator if isinstance(operator, list) else [operator]  # the published snippet sends a list
    if operator is not None and not all(is_operator_id(o) for o in operators):
        problems.append(f"OperatorID: {operator!r} is not an OperatorID")
    for name in ("CDRForwarded", "CDRForwarder"):
        if body.get(name) is not None and not isinstance(body[name], bool):
            problems.append(f"{name}: must be true or false")
    problems += [
        f"{name}: not a field of eRoamingGetChargeDetailRecords" for name in sorted(set(body) - GET_CDRS_FIELDS)
    ]
    return problems, page, size


def cdr_page(entries: Sequence[Mapping[str, Any]], page: int, size: int) -> dict[str, Any]:
    """The paged eRoamingChargeDetailRecords answer (Spring's Page shape, as HBS sends it)."""
    content = [copy.deepcopy(e["cdr"]) for e in entries[page * size : (page + 1) * size]]
    return page_answer(content, page, size, len(entries))
