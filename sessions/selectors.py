"""Every read used by the screens, the admin and the commands."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from .models import AuditRecord, ChargingSession, RemoteStopRequest
from .oicp import ids

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


@dataclass(frozen=True)
class StopBlock:
    """Why a stop cannot be requested now (the rule's typed result; the words are in stop_advice)."""

    kind: str  # ENDED: the CDR closed the session (or it was closed by hand); OPEN: a stop is still being
    #            sent; ACCEPTED: one was accepted within STOP_CONFIRMATION_MINUTES
    charging_session: ChargingSession
    stop_request: RemoteStopRequest | None = None
    until: datetime | None = None  # ACCEPTED: a new stop is allowed from then on

    ENDED, OPEN, ACCEPTED = "ENDED", "OPEN", "ACCEPTED"


def stop_block(*, charging_session: ChargingSession) -> StopBlock | None:
    """Why a stop cannot be requested now; None when it can.

    A session may be stopped while Hubject still has it open: until its CDR arrives (active,
    charging ended, learned late, after an Error), unless a stop is open or one was accepted
    within the confirmation window.
    """
    if charging_session.status == ChargingSession.Status.CLOSED:
        return StopBlock(StopBlock.ENDED, charging_session)
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
        return StopBlock(StopBlock.OPEN, charging_session, open_request)
    # A second stop right after an accepted one only confuses the CPO: give it time to act.
    accepted = max(recent, key=lambda r: r.finished_at, default=None)
    if accepted is not None:
        return StopBlock(StopBlock.ACCEPTED, charging_session, accepted, until=accepted.finished_at + window)
    return None


def stop_blocker(*, charging_session: ChargingSession) -> str:
    """`stop_block` in the agent's words (the services' refusal, the admin's list); empty when a stop
    may be requested."""
    from . import stop_advice  # the words live with the screens' presenter, which reads through here

    return stop_advice.blocker_text(stop_block(charging_session=charging_session))


def get_stop_request(*, pk: int) -> RemoteStopRequest | None:
    return RemoteStopRequest.objects.select_related("charging_session", "requested_by").filter(pk=pk).first()


def session_timeline(*, charging_session: ChargingSession, limit: int = 200) -> list[AuditRecord]:
    """The session's audit records, newest first."""
    return list(
        AuditRecord.objects.filter(charging_session=charging_session)
        .select_related("actor", "stop_request")
        .order_by("-occurred_at", "-pk")[:limit]
    )


# --- what the agent's stop card is chosen from (the words: stop_advice) --------------------------


def last_failure_kind(*, stop_request: RemoteStopRequest) -> str:
    """The failure kind of the request's last unsuccessful attempt (a key of FAILURE_KINDS), "" if none."""
    last = stop_request.audit_records.filter(
        event_type__in=[AuditRecord.EventType.STOP_FAILED, AuditRecord.EventType.STOP_REJECTED,
                        AuditRecord.EventType.STOP_ATTEMPT_FAILED]
    ).order_by("-occurred_at", "-pk").first()
    return ((last.data or {}).get("failure_kind", "") if last else "") or ""


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
