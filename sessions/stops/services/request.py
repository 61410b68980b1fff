"""The agent's stop request: the one open request for a session, or a refusal that says why.

Also the supervisor's resend from the stuck-sessions queue, which is a new request of the same kind.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from ...audit.records import record_audit
from ...models import AuditRecord, ChargingSession, RemoteStopRequest, StopReason
from .. import selectors
from ..rules import StopBlock, StopBlockCode
from .dispatch import dispatch_remote_stop

logger = logging.getLogger(__name__)
State = RemoteStopRequest.State
Event = AuditRecord.EventType


class StopNotAllowed(Exception):
    """The portal refuses the stop.

    A refusal by the eligibility rule carries its verdict and no words of its own: `block` (a
    `stop_rules.StopBlock`: the code and the facts) and `code`. The interfaces turn it into the
    presenter's words (`presenters.refusal_text`); str() gives the same words, for logs and tests.
    Other refusals (a bad reason, an unknown session) carry their message as before.
    """

    def __init__(self, message: str = "", *, block: StopBlock | None = None):
        super().__init__(message)
        self.block = block

    @property
    def code(self) -> StopBlockCode | None:
        return self.block.code if self.block is not None else None

    def __str__(self) -> str:
        if self.block is not None:
            from ..presenters.blockers import blocker_text  # the words are the presenter's, not the service's

            return blocker_text(self.block)
        return super().__str__()


@dataclass(frozen=True)
class StopRequested:
    """A new stop request, and whether the broker took it (the agent's answer says so)."""

    stop_request: RemoteStopRequest
    # True: the broker took it. False: it did not in time; the row waits as PENDING for the sweeper,
    # nothing is lost. None: not published yet (the caller's transaction is still open; it goes on commit).
    queued: bool | None


@functools.cache
def _locked_session_sql(vendor: str) -> str:
    """The session row, locked, and whether any stop could stand in the way of a new one (an open
    stop, or one accepted within the confirmation window: what `selectors.stop_block` reads), in
    one statement, written once (compiling the ORM's two queries cost more than running them).
    NOWAIT: an answer read before a wait for the lock would be stale (`_create_stop`)."""
    quote = connection.ops.quote_name
    session, stop = quote(ChargingSession._meta.db_table), quote(RemoteStopRequest._meta.db_table)
    lock = " FOR UPDATE NOWAIT" if connection.features.has_select_for_update_nowait else ""
    return (
        f"SELECT s.*, EXISTS (SELECT 1 FROM {stop} r WHERE r.charging_session_id = s.id AND "
        f"(r.state IN (%s, %s) OR (r.state = %s AND r.finished_at >= %s))) AS stop_in_way "
        f"FROM {session} s WHERE s.id = %s{lock}"
    )


def _locked_session(charging_session_id: int, *, now) -> ChargingSession | None:
    window_start = now - timedelta(minutes=settings.STOP_CONFIRMATION_MINUTES)
    params = [State.PENDING, State.SENDING, State.ACCEPTED]
    params += [connection.ops.adapt_datetimefield_value(window_start), charging_session_id]
    try:
        found = list(ChargingSession.objects.raw(_locked_session_sql(connection.vendor), params))
    except OperationalError as error:
        if getattr(error.__cause__, "sqlstate", None) != "55P03":  # PostgreSQL's lock_not_available
            raise
        raise _SessionBusy from None  # leaving the transaction rolls it back
    return found[0] if found else None


def request_remote_stop(
    *,
    charging_session_id: int,
    acting_user,
    reason: str,
    note: str = "",
    case_reference: str = "",
) -> StopRequested:
    """Create the one open stop request for a session and queue it for the worker: the request, and
    whether the broker took the message (`StopRequested`).

    Raises StopNotAllowed when the session cannot be stopped now.
    """
    if reason not in StopReason.values:
        raise StopNotAllowed("Choose a reason for the stop.")
    if reason == StopReason.OTHER and not note.strip():
        raise StopNotAllowed("Explain the reason in the note when you choose “Other”.")
    # First without waiting for the session's lock (one statement reads and locks it); when another
    # transaction holds it, again the careful way: wait, then read the stops (see `_create_stop`).
    for wait in (False, True):
        try:
            stop_request, charging_session, published = _request(
                charging_session_id, acting_user, wait=wait, reason=reason, note=note, case_reference=case_reference
            )
            break
        except _SessionBusy:
            continue
        except _AnotherStopOpen:
            # Another agent's stop was committed since this one read the stops: the rule's verdict,
            # read afresh (the constraint refused the INSERT; the transaction was rolled back).
            block = selectors.stop_block(charging_session=ChargingSession.objects.get(pk=charging_session_id))
            if block is not None:
                raise StopNotAllowed(block=block) from None
            raise StopNotAllowed("Another stop for this session is already open.") from None
    logger.info("stop request %s queued for %s", stop_request.pk, charging_session.session_id)
    return StopRequested(stop_request=stop_request, queued=published[0] if published else None)


class _SessionBusy(Exception):
    """Another transaction holds the session's row lock (PostgreSQL; the transaction is rolled back)."""


class _AnotherStopOpen(Exception):
    """The one-open-stop constraint refused the INSERT (the transaction is rolled back)."""


def _request(charging_session_id: int, acting_user, *, wait: bool, reason: str, note: str, case_reference: str):
    """The request's one transaction: the stop, its audit record, its publish on commit."""
    with transaction.atomic():
        stop_request, charging_session = _create_stop(
            charging_session_id, acting_user, wait=wait, reason=reason, note=note, case_reference=case_reference
        )
        record_audit(
            event_type=Event.STOP_REQUESTED,
            actor=acting_user,
            stop_request=stop_request,
            data={
                "reason": reason,
                "note": stop_request.note,
                "case_reference": stop_request.case_reference,
                "session_id": charging_session.session_id,
                "evse_id": charging_session.evse_id,
            },
        )

        published: list[bool] = []

        def queue() -> None:
            # Tells the caller (the agent's view) whether the broker took the message right away.
            published.append(dispatch_remote_stop(stop_request_id=stop_request.pk))

        transaction.on_commit(queue)
    return stop_request, charging_session, published


def _create_stop(
    charging_session_id: int, acting_user, *, wait: bool, reason: str, note: str, case_reference: str
) -> tuple[RemoteStopRequest, ChargingSession]:
    """The new PENDING request, in the caller's transaction, or StopNotAllowed (or _SessionBusy,
    _AnotherStopOpen).

    The row lock serialises two agents on one session (on SQLite the transaction's write lock does);
    the unique constraint is the guard that holds even where the lock would not. Without `wait`, one
    statement locks the session and says whether any stop stands in the way; it must not wait for
    the lock: on PostgreSQL a statement that waited still answers from before the wait, and would
    miss a stop committed (or accepted) meanwhile. With `wait`, as before: lock, then read the stops.
    """
    if wait:
        charging_session = ChargingSession.objects.select_for_update().filter(pk=charging_session_id).first()
        now, recent = timezone.now(), None
    else:
        now = timezone.now()
        charging_session = _locked_session(charging_session_id, now=now)
        # The rule reads the stops only when some stand in the way (for its verdict's facts).
        recent = None if charging_session is not None and charging_session.stop_in_way else ()
    if charging_session is None:
        raise StopNotAllowed("This charging session does not exist.")
    block = selectors.stop_block(charging_session=charging_session, now=now, recent_stops=recent)  # stop_rules
    if block is not None:
        raise StopNotAllowed(block=block)
    try:
        # No savepoint (two statements fewer): a failed INSERT leaves the transaction, rolled back whole.
        stop_request = RemoteStopRequest.objects.create(
            charging_session=charging_session,
            operator_id=charging_session.operator_id,  # the CPO pages read it from the stop
            requested_by=acting_user,
            reason=reason,
            note=note.strip(),
            case_reference=case_reference.strip(),
            requested_at=now,
        )
    except IntegrityError:
        raise _AnotherStopOpen from None
    return stop_request, charging_session


def resend_remote_stop(
    *, stop_request_id: int, acting_user, reason: str = "", note: str = "", case_reference: str = ""
) -> RemoteStopRequest:
    """Send an unconfirmed (or failed) stop again, as a new audited request.

    The reason and note are the ones confirmed in the dialog (the previous request's reason when none
    is given); the note ends with which request this re-sends; an empty case reference keeps the
    previous one (the case goes on).
    """
    previous = RemoteStopRequest.objects.select_related("charging_session").filter(pk=stop_request_id).first()
    if previous is None:
        raise StopNotAllowed("This stop request does not exist.")
    if previous.state not in (State.UNCONFIRMED, State.FAILED, State.REJECTED):
        raise StopNotAllowed("Only an unconfirmed, failed or rejected stop can be sent again.")
    marker = f"Sent again from the stuck-sessions queue (previous request #{previous.pk})."
    note = note.strip()
    return request_remote_stop(
        charging_session_id=previous.charging_session_id,
        acting_user=acting_user,
        reason=reason or previous.reason,
        note=(f"{note}\n{marker}" if note else marker)[:2000],
        case_reference=case_reference.strip() or previous.case_reference,
    ).stop_request
