"""The control API under /_sim/ (JSON), for tests and trainers: one handler per (method, path).

GET    /_sim/health                      {"ok": true}
GET    /_sim/behaviours                  the behaviour table
PUT    /_sim/behaviours                  replace it (a PUT without "tidy"/"cpo_window_seconds" goes
                                         back to the values the simulator started with)
PATCH  /_sim/behaviours                  merge into it (a null entry removes that operator/EVSE)
GET    /_sim/received[?evse_id=&session_id=]   requests received outside /_sim/, oldest first
                                         ("hbs_answer" says when HBS answered 400 or 310 itself)
DELETE /_sim/received                    clear that log
GET    /_sim/sessions                    sessions the CPOs run, with their state and energy
POST   /_sim/sessions                    add sessions (JSON list; Start + Progress are pushed);
                                         an entry without SessionID gets one issued by its CPO,
                                         returned in "issued"
GET    /_sim/cdrs                        every CDR HBS holds (generated or added), with "forwarded"
POST   /_sim/cdrs                        add CDRs that were never pushed (JSON list; need ChargingEnd)
DELETE /_sim/cdrs                        forget them
GET    /_sim/pushed[?session_id=&kind=]  what was pushed to the portal: url, status, body, answer
DELETE /_sim/pushed                      clear that log
GET    /_sim/directory                   the EVSE directory: evse_count, stations, seed, churn, epoch
POST   /_sim/directory/churn             {"count": N}: update N EVSEs now (the next delta carries them)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from .behaviours import BehaviourError

if TYPE_CHECKING:
    from .handler import SimulatorHandler
    from .server import SimulatorServer

PREFIX = "/_sim/"
MAX_BODY_BYTES = 1024 * 1024  # behaviour tables for many EVSEs are bigger than OICP messages

Query = dict[str, list[str]]
Route = Callable[["SimulatorHandler", Query], None]


def _reply(answer: Callable[[SimulatorServer, Query], Any]) -> Route:
    """A route answering 200 with what `answer` returns."""
    return lambda handler, query: handler.answer_json(200, answer(handler.server, query))


def _cleared(clear: Callable[[SimulatorServer], int]) -> Route:
    """A route that empties a log or store and says how many entries it held."""
    return lambda handler, query: handler.answer_json(200, {"cleared": clear(handler.server)})


def _with_body(apply: Callable[[SimulatorServer], Callable[[object], Any]]) -> Route:
    """A route applying the JSON body; 400 with the reason when it is unreadable or refused."""

    def route(handler: SimulatorHandler, query: Query) -> None:
        length = handler.content_length()
        if length is None or length > MAX_BODY_BYTES:
            handler.answer_json(400, {"error": "Content-Length missing, invalid or above 1 MiB"}, close=True)
            return
        try:
            data = json.loads(handler.rfile.read(length).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            handler.answer_json(400, {"error": f"body is not UTF-8 JSON: {exc}"})
            return
        try:
            handler.answer_json(200, apply(handler.server)(data))
        except BehaviourError as exc:
            handler.answer_json(400, {"error": str(exc)})

    return route


def _churn(server: SimulatorServer, body: object) -> dict[str, int]:
    count = body.get("count") if isinstance(body, dict) else None
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= server.directory.evse_count:
        raise BehaviourError(f"count: a whole number of EVSEs from 0 to {server.directory.evse_count}")
    return {"churned": server.directory.churn(count)}


def _one(query: Query, name: str) -> str | None:
    return query.get(name, [None])[0]


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/_sim/health"): _reply(lambda server, query: {"ok": True}),
    ("GET", "/_sim/behaviours"): _reply(lambda server, query: server.state.get_behaviours()),
    ("PUT", "/_sim/behaviours"): _with_body(lambda server: server.state.replace_behaviours),
    ("PATCH", "/_sim/behaviours"): _with_body(lambda server: server.state.patch_behaviours),
    ("GET", "/_sim/received"): _reply(
        lambda server, query: server.state.received_list(
            evse_id=_one(query, "evse_id"), session_id=_one(query, "session_id")
        )
    ),
    ("DELETE", "/_sim/received"): _cleared(lambda server: server.state.clear_received()),
    ("GET", "/_sim/sessions"): _reply(lambda server, query: server.cpo.sessions_list()),
    ("POST", "/_sim/sessions"): _with_body(lambda server: server.cpo.add_sessions),
    ("GET", "/_sim/cdrs"): _reply(lambda server, query: server.cdrs.listed()),
    ("POST", "/_sim/cdrs"): _with_body(lambda server: server.cdrs.add_cdrs),
    ("DELETE", "/_sim/cdrs"): _cleared(lambda server: server.cdrs.clear()),
    ("GET", "/_sim/pushed"): _reply(
        lambda server, query: server.cpo.pusher.pushed_list(
            session_id=_one(query, "session_id"), kind=_one(query, "kind")
        )
    ),
    ("DELETE", "/_sim/pushed"): _cleared(lambda server: server.cpo.pusher.clear_pushed()),
    ("GET", "/_sim/directory"): _reply(lambda server, query: server.directory.summary()),
    ("POST", "/_sim/directory/churn"): _with_body(lambda server: lambda body: _churn(server, body)),
}
PATHS = frozenset(path for _, path in ROUTES)


def handle(handler: SimulatorHandler) -> None:
    url = urlsplit(handler.path)
    path = url.path.rstrip("/")
    route = ROUTES.get((handler.command, path))
    if route is not None:
        route(handler, parse_qs(url.query))
        return
    # Read the body we will not use: closing with unread data would reset the connection.
    length = handler.content_length() or 0
    if length:
        handler.drain(length)
    if path in PATHS:
        handler.answer_json(405, {"error": f"{handler.command} is not allowed on {url.path}"})
    else:
        handler.answer_json(404, {"error": f"unknown control path {url.path}"})
