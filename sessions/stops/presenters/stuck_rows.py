"""The stuck queue's rows as the page prints them: every value of a row computed once per request.

Why (bench/NOTES.md, "Pages at full size again"): the page shows up to 100 rows. Rendered through
three includes a row, each row reversing three URLs and checking two permissions, the template
took ~25 ms of a request's CPU. Here each URL is reversed once per page and the id formatted in,
the permissions are checked once per page, and a row holds plain values the template only prints
(`sessions/_stuck_rows.html`), for the page and for the one row "Send stop again" refreshes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.urls import reverse
from django.utils import timezone

from ...models import ChargingSession, RemoteStopRequest
from .follow_up import Badge, StuckLine, last_stop_badge, stuck_session_line, stuck_stop_line

RESEND_STOP = "charging_sessions.request_remote_stop"
CLOSE_SESSION = "charging_sessions.close_session_manually"


@dataclass(frozen=True, slots=True)
class RowActions:
    """What the viewer may do from a row (the same for every row of a page)."""

    resend: bool
    close: bool


def row_actions(user) -> RowActions:
    return RowActions(resend=user.has_perm(RESEND_STOP), close=user.has_perm(CLOSE_SESSION))


@dataclass(frozen=True, slots=True)
class StuckRow:
    """One row of the queue: a stuck stop (`is_stop`) or a silent session."""

    dom_id: str  # "stuck-stop-12" / "stuck-session-7": htmx swaps a stop's row by it
    where: str  # "stop" | "session"
    line: StuckLine
    session_pk: int
    session_id: str
    evse_id: str
    operator_id: str
    cpo_name: str | None
    cpo_hotline: str | None
    detail_url: str
    close_url: str
    close_field_id: str  # "close-reason-stop-7": a session on both lists gets ids of its own in each
    resend_url: str = ""  # a stop's "Send stop again" (and, with ?row=1, its row while re-sent)
    requested_by: str = ""  # a stop's agent, or "system"
    case_reference: str = ""
    badge: Badge | None = None  # a session's last stop

    @property
    def is_stop(self) -> bool:
        return self.where == "stop"

    @property
    def cpo_label(self) -> str:
        """Whom the hotline link calls: the CPO's name, else its OperatorID."""
        return self.cpo_name or self.operator_id


def id_url(viewname: str) -> Callable[[int], str]:
    """The URL of `viewname` (one integer id argument) for any id, reversed once: reverse() costs
    tens of µs, and a page of 100 rows needed three each."""
    marker = 987654321987654321
    head, tail = reverse(viewname, args=[marker]).split(str(marker))
    return lambda pk: f"{head}{int(pk)}{tail}"


class _Urls:
    def __init__(self) -> None:
        self.detail = id_url("charging_sessions:session-detail")
        self.close = id_url("charging_sessions:close-session")
        self.resend = id_url("charging_sessions:resend-stop")

    def session_fields(self, cs: ChargingSession, *, where: str, cpo) -> dict:
        """What a row shows of its session, whichever list it is in (`cpo`: what carries the CPO's
        name and hotline, the stop or the session as the selector annotated it)."""
        return {
            "where": where,
            "session_pk": cs.pk,
            "session_id": cs.session_id,
            "evse_id": cs.evse_id,
            "operator_id": cs.operator_id,
            "cpo_name": cpo.cpo_name,
            "cpo_hotline": cpo.cpo_hotline,
            "detail_url": self.detail(cs.pk),
            "close_url": self.close(cs.pk),
            "close_field_id": f"close-reason-{where}-{cs.pk}",
        }


def stuck_stop_rows(stops: list[RemoteStopRequest], *, now: datetime | None = None) -> list[StuckRow]:
    """Stops of selectors.stuck_queue / stuck_stop (session, agent, newest stop and CPO contact read)."""
    now, urls = now or timezone.now(), _Urls()
    rows = []
    for stop in stops:
        cs = stop.charging_session
        rows.append(
            StuckRow(
                dom_id=f"stuck-stop-{stop.pk}",
                line=stuck_stop_line(stop, now=now),
                **urls.session_fields(cs, where="stop", cpo=stop),
                resend_url=urls.resend(stop.pk),
                requested_by=str(stop.requested_by) if stop.requested_by_id else "system",
                case_reference=stop.case_reference,
            )
        )
    return rows


def stuck_session_rows(sessions: list[ChargingSession], *, now: datetime | None = None) -> list[StuckRow]:
    """Silent sessions of selectors.stuck_queue (with their last stop and CPO contact)."""
    now, urls = now or timezone.now(), _Urls()
    return [
        StuckRow(
            dom_id=f"stuck-session-{cs.pk}",
            line=stuck_session_line(cs, now=now),
            **urls.session_fields(cs, where="session", cpo=cs),
            badge=last_stop_badge(
                state=cs.last_stop_state, outcome_unknown=cs.last_stop_outcome_unknown, code=cs.last_stop_code or ""
            ),
        )
        for cs in sessions
    ]
