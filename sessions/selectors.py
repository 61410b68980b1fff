"""Every read used by the screens, the admin and the commands."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from django.utils.timesince import timesince

from .models import AuditRecord, ChargingSession, RemoteStopRequest
from .oicp import ids
from .oicp.status_codes import StatusCodeInfo, describe, describe_failure

State = RemoteStopRequest.State


def _open_stop_state() -> Subquery:
    return Subquery(
        RemoteStopRequest.objects.filter(
            charging_session=OuterRef("pk"), state__in=RemoteStopRequest.OPEN_STATES
        ).values("state")[:1]
    )


def search_charging_sessions(
    *,
    query: str = "",
    operator_id: str = "",
    status: str = "",
    stale_hours: int | None = None,
) -> QuerySet[ChargingSession]:
    """Sessions matching the agent's search, newest update first, with the open stop's state.

    The query is whatever the driver said (`session_lookups`); the sessions any lookup finds match.
    """
    sessions = ChargingSession.objects.annotate(open_stop_state=_open_stop_state())
    lookups = list(session_lookups(query).values())
    if lookups:
        # One indexed lookup per kind of ID, joined by UNION (bench/RESULTS.md: an OR across these
        # columns and the stop requests' join, with DISTINCT, scanned every session on each search).
        sessions = sessions.filter(pk__in=lookups[0].union(*lookups[1:]))
    if operator_id:
        sessions = sessions.filter(operator_id=operator_id.upper())
    if status == "OPEN":  # every session without its CDR: charging, or charging ended and still plugged
        sessions = sessions.filter(status__in=[ChargingSession.Status.ACTIVE, ChargingSession.Status.CHARGING_ENDED])
    elif status:
        sessions = sessions.filter(status=status)
    if stale_hours:
        sessions = sessions.filter(last_update_at__lt=timezone.now() - timedelta(hours=stale_hours))
    return sessions.order_by("-last_update_at", "-pk")


def session_lookups(query: str) -> dict[str, QuerySet]:
    """Search as drivers speak: each way the query may name a session → the pks it finds.

    Every lookup is one equality or prefix on an indexed key the database computes from the stored
    value (ChargingSession's GeneratedFields), the query normalised the same way (`ids`):
    an EvseID in any spacing, separator or case, or its start ("DE ACC E7260 4", "DEACCE72604");
    the start of a SessionID (8 characters or more, any case); a partner session ID in any case;
    the contract ID (EvcoID) in any spelling, or without its check digit; the card's UID or printed
    number in any spacing or case; a stop's case reference (as typed). A query that cannot be a
    kind of ID makes no lookup of that kind. Empty for an empty query.
    """
    query = query.strip()
    if not query:
        return {}
    sessions = ChargingSession.objects.order_by()
    lookups: dict[str, QuerySet] = {}
    session_prefix = ids.session_id_prefix(query)
    if session_prefix:
        lookups["session_id"] = sessions.filter(prefix_q("session_key", session_prefix))
    key = ids.id_search_key(query)
    if key:
        lookups["evse_id"] = sessions.filter(prefix_q("evse_key", key))
    partner = ids.partner_search_key(query)
    lookups["emp_partner_session_id"] = sessions.filter(emp_partner_key=partner)
    lookups["cpo_partner_session_id"] = sessions.filter(cpo_partner_key=partner)
    if key:
        lookups["contract_id"] = sessions.filter(
            prefix_q("contract_key", key) if len(key) >= ids.CONTRACT_PREFIX_MIN else Q(contract_key=key))
        lookups["card_uid"] = sessions.filter(card_uid_key=key)
        lookups["printed_number"] = sessions.filter(printed_number_key=key)
    lookups = {kind: lookup.values("pk") for kind, lookup in lookups.items()}
    lookups["case_reference"] = RemoteStopRequest.objects.filter(case_reference=query).order_by().values(
        "charging_session_id")
    return lookups


def prefix_q(field_name: str, prefix: str) -> Q:
    """`field_name` starts with `prefix`, in the form that field's index serves on each database.

    PostgreSQL: LIKE 'prefix%' (Django's `*_like` index). SQLite's LIKE is case-insensitive and
    never uses an index, so there a range over the (binary-ordered) index: prefix <= value <
    prefix + U+10FFFF selects exactly the values that start with prefix.
    """
    if connection.vendor == "sqlite":
        return Q(**{f"{field_name}__gte": prefix, f"{field_name}__lt": prefix + "\U0010ffff"})
    return Q(**{f"{field_name}__startswith": prefix})


def distinct_values(model, field_name: str, *, skip_empty: bool = False) -> list[str]:
    """SELECT DISTINCT of an indexed column, ascending, as a loose index scan.

    One index seek per distinct value (a recursive CTE, the same SQL on SQLite and PostgreSQL),
    instead of reading every row's entry: the filter lists' DISTINCT over all sessions and stop
    requests grew with the data (bench/RESULTS.md).
    """
    quote = connection.ops.quote_name
    table, column = quote(model._meta.db_table), quote(model._meta.get_field(field_name).column)
    first = f"SELECT MIN({column}) FROM {table}" + (f" WHERE {column} > ''" if skip_empty else "")
    sql = (
        f"WITH RECURSIVE found(value) AS ({first} UNION ALL "
        f"SELECT (SELECT MIN({column}) FROM {table} WHERE {column} > found.value) FROM found "
        "WHERE found.value IS NOT NULL) SELECT value FROM found WHERE value IS NOT NULL"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return [row[0] for row in cursor.fetchall()]


def operator_ids() -> list[str]:
    return distinct_values(ChargingSession, "operator_id")


def get_charging_session(*, pk: int) -> ChargingSession | None:
    return ChargingSession.objects.filter(pk=pk).first()


def open_stop_request(*, charging_session: ChargingSession) -> RemoteStopRequest | None:
    return (
        charging_session.stop_requests.filter(state__in=RemoteStopRequest.OPEN_STATES)
        .select_related("requested_by")
        .first()
    )


def latest_stop_request(*, charging_session: ChargingSession) -> RemoteStopRequest | None:
    return charging_session.stop_requests.select_related("requested_by").order_by("-requested_at", "-pk").first()


def stop_blocker(*, charging_session: ChargingSession) -> str:
    """Why a stop cannot be requested now, in the agent's words; empty when it can.

    A session may be stopped while Hubject still has it open: until its CDR arrives (active,
    charging ended, learned late, after an Error), unless a stop is open or one was accepted
    within the confirmation window.
    """
    if charging_session.status == ChargingSession.Status.CLOSED:
        when = timezone.localtime(charging_session.ended_at).strftime("%H:%M") if charging_session.ended_at else ""
        return f"The session has ended: its charge detail record arrived {when}".strip() + "."
    # Charging ended (End) is not the end of the session: "the vehicle is blocking the charging
    # station … the session is still active" (OICP, End). A locked cable is exactly that case, so
    # every session without its CDR may be stopped.
    # One query for both rules below: an open stop, or one accepted within the confirmation window.
    window = timedelta(minutes=settings.STOP_CONFIRMATION_MINUTES)
    recent = list(
        charging_session.stop_requests.filter(
            Q(state__in=RemoteStopRequest.OPEN_STATES) | Q(state=State.ACCEPTED, finished_at__gte=timezone.now() - window)
        ).order_by("-requested_at", "-pk")[:5]
    )
    open_request = next((r for r in recent if r.state in RemoteStopRequest.OPEN_STATES), None)
    if open_request is not None:
        return (f"A stop requested {_ago(open_request.requested_at)} is still open "
                f"({open_request.get_state_display().lower()}).")
    # A second stop right after an accepted one only confuses the CPO: give it time to act.
    accepted = max(recent, key=lambda r: r.finished_at, default=None)
    if accepted is not None:
        until = timezone.localtime(accepted.finished_at + window).strftime("%H:%M")
        return (
            f"A stop was accepted {_ago(accepted.finished_at)}; the CPO is ending the session. "
            f"If it is still running at {until}, you can send the stop again."
        )
    return ""


def _ago(moment) -> str:
    return "just now" if timezone.now() - moment < timedelta(minutes=1) else f"{timesince(moment)} ago"


def get_stop_request(*, pk: int) -> RemoteStopRequest | None:
    return RemoteStopRequest.objects.select_related("charging_session", "requested_by").filter(pk=pk).first()


def session_timeline(*, charging_session: ChargingSession, limit: int = 200) -> list[AuditRecord]:
    """The session's audit records, newest first."""
    return list(
        AuditRecord.objects.filter(charging_session=charging_session)
        .select_related("actor", "stop_request")
        .order_by("-occurred_at", "-pk")[:limit]
    )


# --- the live status of one stop request, as the agent's page shows it -----------------------

# Shown (as a message) when the broker did not take the stop: it is saved, the sweeper sends it.
QUEUED_WHILE_WORKER_UNREACHABLE = (
    "Stop saved and queued. The background service that sends stops to Hubject cannot be reached "
    "right now; the stop is sent automatically as soon as it is back. Nothing is lost: do not click again."
)
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
class StopProgress:
    stop_request: RemoteStopRequest
    steps: list[StopStep]
    headline: str
    detail: str
    is_final: bool
    is_success: bool
    playbook: StatusCodeInfo | None


def _playbook(stop_request: RemoteStopRequest) -> StatusCodeInfo | None:
    if stop_request.oicp_code:
        return describe(stop_request.oicp_code)
    last = stop_request.audit_records.filter(
        event_type__in=[AuditRecord.EventType.STOP_FAILED, AuditRecord.EventType.STOP_REJECTED,
                        AuditRecord.EventType.STOP_ATTEMPT_FAILED]
    ).order_by("-occurred_at", "-pk").first()
    kind = (last.data or {}).get("failure_kind", "") if last else ""
    return describe_failure(kind or "connection") if stop_request.state != State.ACCEPTED else None


def stop_progress(*, stop_request: RemoteStopRequest) -> StopProgress:
    """The step indicator and the words the agent sees for one stop request.

    Queued → Sent to Hubject → Accepted by the CPO → Session ended (End notification or CDR).
    The page keeps polling until nothing more can happen (`is_final`).
    """
    state = stop_request.state
    charging_session = stop_request.charging_session
    sent = stop_request.attempt_count > 0
    steps = ["Queued", "Sent to Hubject", "Accepted by the CPO", "Session ended"]
    playbook = None
    is_final = state in (State.REJECTED, State.FAILED, State.UNCONFIRMED)
    if state == State.CONFIRMED:
        marks = ["done", "done", "done", "done"]
        if charging_session.cdr_received_at:
            received = timezone.localtime(charging_session.cdr_received_at).strftime("%H:%M")
            headline = f"Session ended, confirmed by the CDR (received {received})"
            is_final = True
        else:
            headline = "Charging stopped, confirmed by the CPO's End notification"
        detail = (
            f"Stop to confirmation: {_seconds(stop_request.time_to_confirmation)}. "
            + ("Tell the driver the session has ended; the CDR on this page holds the final energy."
               if is_final else "The charge detail record (CDR) will close the session.")
        )
        playbook = None if is_final else describe("000")
    elif state == State.ACCEPTED:
        marks = ["done", "done", "done", "current"]
        if _sent_after_charging_ended(stop_request):
            # End already came (charging stopped, the cable may still be locked): only the CDR can
            # show that the session is over.
            headline = "Accepted: waiting for the CPO's CDR to confirm the session ended"
            detail = (
                "Hubject forwarded the stop and the CPO accepted it. Charging had already stopped, so the "
                "CPO's charge detail record (CDR) confirms the end (usually within minutes; flagged after "
                f"{settings.STOP_CONFIRMATION_MINUTES} min). Ask the driver whether the cable is released."
            )
        else:
            headline = "Accepted: waiting for the CPO to end the session"
            detail = (
                "Hubject forwarded the stop and the CPO accepted it. The session ends when the CPO sends its "
                f"End notification or CDR (usually within minutes; flagged after {settings.STOP_CONFIRMATION_MINUTES} min)."
            )
        playbook = describe(stop_request.oicp_code or "000")
    elif state == State.UNCONFIRMED:
        marks = ["done", "done", "done", "failed"]
        steps[3] = "Not confirmed"
        headline = f"Accepted, but the CPO has not confirmed the end after {settings.STOP_CONFIRMATION_MINUTES} min"
        detail = ("The session may still be running. It is on the supervisors' stuck-sessions queue; "
                  "ask the driver whether charging stopped.")
    elif state in (State.REJECTED, State.FAILED):
        marks = ["done", "done", "failed", "todo"] if sent else ["done", "failed", "todo", "todo"]
        if sent:
            steps[2] = "Rejected" if state == State.REJECTED else "Failed"
        playbook = _playbook(stop_request)
        code = f"{stop_request.oicp_code} " if stop_request.oicp_code else ""
        headline = ("Rejected: " if state == State.REJECTED else "Failed: ") + (
            f"{code}{stop_request.oicp_description}".strip() or (playbook.description if playbook else "")
        )
        detail = playbook.meaning if playbook else stop_request.last_error
        if state == State.FAILED and stop_request.outcome_unknown:
            detail = (f"{detail} It waits on the stuck-sessions queue until the CPO's End or CDR "
                      "shows whether the session ended.").strip()
    elif state == State.SENDING:
        marks = ["done", "current", "todo", "todo"]
        headline = "Sent to Hubject, waiting for the CPO's answer"
        detail = "The CPO usually answers within a minute."
    else:  # PENDING: first queueing, or waiting for a retry
        marks = ["current", "todo", "todo", "todo"]
        if sent and stop_request.next_attempt_at:
            seconds = max(0, int((stop_request.next_attempt_at - timezone.now()).total_seconds()))
            problem = ("The worker stopped during the call" if stop_request.outcome_unknown
                       else "Hubject did not answer")
            headline = (
                f"{problem}; retrying ({stop_request.attempt_count + 1} of "
                f"{settings.OICP_MAX_ATTEMPTS}) in {seconds} s"
            )
            detail = stop_request.last_error
        elif timezone.now() - stop_request.requested_at > timedelta(seconds=10):
            headline = "Queued: the stop is saved and will be sent as soon as the worker is reachable"
            detail = "Nothing is lost; you do not need to click again."
        else:
            headline = "Queued: waiting for the worker to send the stop"
            detail = ""
    if stop_request.outcome_unknown and OUTCOME_UNKNOWN_NOTE not in detail:
        # Whatever happened since, the agent must know one call may or may not have reached the CPO.
        detail = f"{OUTCOME_UNKNOWN_NOTE} {detail}".strip()
    return StopProgress(
        stop_request=stop_request,
        steps=[StopStep(label, mark) for label, mark in zip(steps, marks)],
        headline=headline,
        detail=detail,
        is_final=is_final,
        is_success=state in (State.ACCEPTED, State.CONFIRMED),
        playbook=playbook,
    )


def _sent_after_charging_ended(stop_request: RemoteStopRequest) -> bool:
    ended = stop_request.charging_session.charging_ended_at
    sent = stop_request.first_sent_at or stop_request.requested_at
    return stop_request.charging_session.status == ChargingSession.Status.CHARGING_ENDED or (
        ended is not None and sent is not None and ended <= sent)


def _seconds(duration) -> str:
    if duration is None:
        return "—"
    total = int(duration.total_seconds())
    return f"{total // 60} min {total % 60:02d} s" if total >= 60 else f"{total} s"


# --- the stuck-sessions queue --------------------------------------------------------------------


@dataclass(frozen=True)
class StuckQueue:
    unconfirmed: list[RemoteStopRequest]
    unconfirmed_count: int
    stale: list[ChargingSession]
    stale_count: int
    stale_hours: int


def stuck_queue(*, limit: int = 50) -> StuckQueue:
    """Unconfirmed stops (and failed ones whose outcome is unknown) and silent active sessions,
    oldest first (a constant number of queries)."""
    # Driven by the few sessions not yet closed (index stop_state_session_idx): unconfirmed stops of
    # closed sessions stay UNCONFIRMED for ever, and walking all of them grew with the history.
    open_sessions = ChargingSession.objects.filter(
        status__in=[value for value in ChargingSession.Status.values if value != ChargingSession.Status.CLOSED]
    ).order_by().values("pk")
    # A failed stop whose last attempt may have reached the CPO (a timeout, a broken connection)
    # waits here too, until the End or CDR settles it.
    unconfirmed = (
        RemoteStopRequest.objects.filter(Q(state=State.UNCONFIRMED) | Q(state=State.FAILED, outcome_unknown=True),
                                         charging_session_id__in=open_sessions)
        .select_related("charging_session", "requested_by")
        .order_by("finished_at", "pk")
    )
    cutoff = timezone.now() - timedelta(hours=settings.STUCK_SESSION_HOURS)
    latest_stop = RemoteStopRequest.objects.filter(charging_session=OuterRef("pk")).order_by("-requested_at", "-pk")
    stale = (
        ChargingSession.objects.filter(status=ChargingSession.Status.ACTIVE, last_update_at__lt=cutoff)
        .annotate(
            last_oicp_code=Subquery(latest_stop.values("oicp_code")[:1]),
            last_stop_state=Subquery(latest_stop.values("state")[:1]),
        )
        .order_by("last_update_at", "pk")
    )
    return StuckQueue(
        unconfirmed=list(unconfirmed[:limit]),
        unconfirmed_count=unconfirmed.count(),
        stale=list(stale[:limit]),
        stale_count=stale.count(),
        stale_hours=settings.STUCK_SESSION_HOURS,
    )
