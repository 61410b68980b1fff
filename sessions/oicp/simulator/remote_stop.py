"""eRoamingAuthorizeRemoteStop as HBS answers it: validate, check the session, then act as the CPO's behaviour says.

The real world by default (DIGEST §2, §3): HBS answers "400 Session is invalid" to an accepted stop
for a SessionID it never issued or already holds a CDR for (unless the table is tidy), and "310
Partner did not respond" when the CPO is slower than HBS's window. A CPO that accepts that late
still ends the session afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sessions.oicp.ids import remote_stop_violations

from .answers import acknowledgement, fault_body, oicp_fault
from .behaviours import DEFAULT_CPO_WINDOW_SECONDS, Behaviour, cpo_too_late
from .checks import content_type_violations, parse_body, provider_violations

if TYPE_CHECKING:
    from .handler import SimulatorHandler


def answer_remote_stop(handler: SimulatorHandler, external_id: str, raw: bytes) -> str:
    """Validate like HBS, then answer with the configured behaviour; returns the outcome."""
    text, body, parse_errors = parse_body(raw)
    violations = content_type_violations(handler.headers.get("Content-Type")) + parse_errors
    if not parse_errors:  # field rules only make sense for a parsed body
        violations += remote_stop_violations(body) + provider_violations(external_id, body)
    handler.note(body_text=text, body=body, violations=violations)
    if violations:
        extended = "eRoamingAuthorizeRemoteStop_V2.1 request does not conform to OICP 2.3"
        handler.answer_json(400, fault_body("Validation error", extended, violations))
        return "answered"
    behaviour, matched_by = handler.server.state.lookup(body["EvseID"])
    handler.note(behaviour=behaviour, matched_by=matched_by)
    return _behave(handler, behaviour, body)


def _behave(handler: SimulatorHandler, behaviour: Behaviour, request: dict[str, Any]) -> str:
    action = behaviour["action"]
    if action == "accept" and not handler.server.state.tidy():
        # HBS checks the session before it forwards the stop to the CPO (DIGEST §2).
        invalid = handler.server.cpo.session_invalid(request["SessionID"])
        if invalid:
            return _hbs_answers(handler, request, "400", f"session {invalid}")
    if cpo_too_late(behaviour):
        return _partner_did_not_respond(handler, behaviour, request)
    outcome = handler.hold(behaviour["delay_seconds"])  # for no_answer, the time the connection is held
    if action == "no_answer" or outcome != "elapsed":
        handler.close_connection = True  # close without any answer
        return "no_answer" if outcome == "elapsed" else outcome
    if action == "reset":
        handler.reset()
        return "reset"
    _answer(handler, action, behaviour, request)
    return "answered"


def _hbs_answers(
    handler: SimulatorHandler, request: dict[str, Any], code: str, why: str, info: str | None = None
) -> str:
    """A negative acknowledgement from HBS itself (HTTP 200); the received log says why."""
    handler.note(hbs_answer=f"{code}: {why}")
    handler.answer_json(200, acknowledgement(False, code, info, echo=request))
    return "answered"


def _partner_did_not_respond(handler: SimulatorHandler, behaviour: Behaviour, request: dict[str, Any]) -> str:
    """HBS stops waiting for the CPO at the end of its window and answers 310 (DIGEST §3)."""
    window = behaviour.get("cpo_window_seconds", DEFAULT_CPO_WINDOW_SECONDS)
    outcome = handler.hold(window)
    if outcome != "elapsed":  # the client hung up first: as with any held answer, nothing happens
        handler.close_connection = True
        return outcome
    # The wording is ours; HBS is documented to say that the partner could not be reached.
    _hbs_answers(
        handler,
        request,
        "310",
        f"the CPO did not answer within {window:g} s",
        f"No response from the partner within {window:g} seconds",
    )
    if behaviour["action"] == "accept":
        # The CPO did get the stop and acts on it late: the session still ends after the 310.
        handler.server.cpo.stop_accepted_later(behaviour["delay_seconds"] - window, request, behaviour)
    return "answered"


def _answer(handler: SimulatorHandler, action: str, behaviour: Behaviour, request: dict[str, Any]) -> None:
    info = behaviour.get("additional_info")
    if action == "accept":
        handler.answer_json(200, acknowledgement(True, "000", info, echo=request))
        handler.server.cpo.stop_accepted(request, behaviour)
    elif action == "reject":
        handler.answer_json(200, acknowledgement(False, behaviour["code"], info, echo=request))
    elif action == "http_error":
        _http_error(handler, behaviour["http_status"])
    elif action == "html_error":
        handler.answer_html(behaviour["http_status"])
    elif action == "non_json":
        handler.answer(200, b"Result=true;StatusCode=000\n", "text/plain;charset=UTF-8")
    elif action == "wrong_shape":
        handler.answer_json(200, {"status": "ok"})
    else:  # pragma: no cover - normalise_behaviour only lets known actions through
        raise AssertionError(action)


def _http_error(handler: SimulatorHandler, status: int) -> None:
    """The body type HBS documents for each HTTP error (DIGEST §3)."""
    if status == 500:
        handler.answer_json(500, fault_body("Processing error", "Internal error while processing the request"))
    elif status == 401:
        handler.answer_json(401, oicp_fault("017", "Call not authorized"))
    elif status == 404:
        handler.answer_json(404, oicp_fault("300", "Data not found"))
    elif status == 403:
        handler.answer(403, b"", None)
    elif status == 400:  # nginx refusing the TLS client certificate (DIGEST §3), not OICP JSON
        handler.answer_html(400, "The SSL certificate error")
    else:
        handler.answer_html(status)
