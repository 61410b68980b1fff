"""The agent's stop request: the one open request for a session, or a refusal that says why.

Also the supervisor's resend from the stuck-sessions queue, which is a new request of the same kind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction
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
    with transaction.atomic():
        # The row lock serialises two agents on one session; the unique constraint below is
        # the guard that holds even where the lock does not (SQLite has no row locks).
        charging_session = ChargingSession.objects.select_for_update().filter(pk=charging_session_id).first()
        if charging_session is None:
            raise StopNotAllowed("This charging session does not exist.")
        block = selectors.stop_block(charging_session=charging_session)  # the eligibility rule (stop_rules)
        if block is not None:
            raise StopNotAllowed(block=block)
        try:
            with transaction.atomic():
                stop_request = RemoteStopRequest.objects.create(
                    charging_session=charging_session,
                    operator_id=charging_session.operator_id,  # the CPO pages read it from the stop
                    requested_by=acting_user,
                    reason=reason,
                    note=note.strip(),
                    case_reference=case_reference.strip(),
                    requested_at=timezone.now(),
                )
        except IntegrityError:
            raise StopNotAllowed("Another stop for this session is already open.") from None
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
    logger.info("stop request %s queued for %s", stop_request.pk, charging_session.session_id)
    return StopRequested(stop_request=stop_request, queued=published[0] if published else None)


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
