"""A batch of inbound messages applied set-based: read up front in a few statements, written at the end in a few.

Applied one by one, every message cost its own round trips: lock its session, update it, update
the message row (about 3 statements and 4 ms a message on PostgreSQL, most of it the ORM and the
wait for each answer). A worker's batch (whole sessions' groups, in one transaction) instead runs
the same services with a `SessionBatch` current (`steps.batched`): the batch's sessions are read and
locked in one statement, so are the facts the rules need (which sessions have stop requests or a
CDR), each message's rules run on those rows in memory, in arrival order, and what they change is
written once, last: the new sessions and CDRs in one INSERT each, the changed sessions and the
applied message rows in one UPDATE each (the audit records by the caller, in one write).

Anything a batch does not do on its own raises `NotBatchable`: a CDR for a session that already has
one (the stored record must be compared). Any failure, that one or an integrity error when writing
(another process created one of the sessions meanwhile), rolls the batch back, and it is applied
again message by message, each in its own savepoint (applying.py): the rare case stays correct and
the common one is fast.
"""

from __future__ import annotations

from collections.abc import Iterable

from ...models import ChargeDetailRecord, ChargingSession, InboundMessage, RemoteStopRequest
from ...oicp import ids
from ...row_updates import update_rows
from .keeping import APPLIED_MESSAGE_FIELDS


class NotBatchable(Exception):
    """This message needs the careful path: apply the batch message by message."""


class SessionBatch:
    """The sessions of one transaction's messages, locked, and the writes their messages make."""

    def __init__(self, sessions: Iterable[ChargingSession], *, with_stops: set[int], with_cdr: set[int]):
        self._sessions = {charging_session.session_key: charging_session for charging_session in sessions}
        self._with_stops = with_stops
        self._with_cdr = with_cdr
        self._new_sessions: list[ChargingSession] = []
        self._changed: dict[int, tuple[ChargingSession, set[str]]] = {}
        self._new_cdrs: dict[int, ChargeDetailRecord] = {}
        self._messages: list[InboundMessage] = []

    @classmethod
    def load(cls, session_keys: Iterable[str], *, with_cdrs: bool) -> SessionBatch:
        """Lock the sessions with these keys (those that exist), and read what the rules ask of them."""
        keys = sorted({key for key in session_keys if key})
        sessions = list(ChargingSession.objects.select_for_update().filter(session_key__in=keys).order_by("pk"))
        pks = [charging_session.pk for charging_session in sessions]
        # A stop request is only ever created with its session locked: none appears while this batch runs.
        with_stops = set(
            RemoteStopRequest.objects.filter(charging_session_id__in=pks)
            .order_by()
            .values_list("charging_session_id", flat=True)
            .distinct()
        )
        with_cdr = set()
        if with_cdrs and pks:
            with_cdr = set(
                ChargeDetailRecord.objects.filter(charging_session_id__in=pks).values_list(
                    "charging_session_id", flat=True
                )
            )
        return cls(sessions, with_stops=with_stops, with_cdr=with_cdr)

    # Read: what the rules ask.

    def session(self, session_id: str) -> ChargingSession | None:
        """The batch's session with this SessionID (any case), locked or created in this batch."""
        return self._sessions.get(ids.session_key(session_id))

    def may_have_stops(self, charging_session: ChargingSession) -> bool:
        return charging_session.pk is not None and charging_session.pk in self._with_stops

    # Written at the end.

    def add_session(self, charging_session: ChargingSession) -> None:
        self._sessions[ids.session_key(charging_session.session_id)] = charging_session
        self._new_sessions.append(charging_session)

    def session_changed(self, charging_session: ChargingSession, fields: Iterable[str]) -> None:
        if charging_session.pk is None:
            return  # created in this batch: inserted with what it has then
        _, changed = self._changed.setdefault(id(charging_session), (charging_session, set()))
        changed.update(fields)

    def add_cdr(self, cdr: ChargeDetailRecord) -> None:
        charging_session = cdr.charging_session
        if charging_session.pk in self._with_cdr or id(charging_session) in self._new_cdrs:
            raise NotBatchable(f"a repeated CDR for session {charging_session.session_id}")
        self._new_cdrs[id(charging_session)] = cdr

    def message_applied(self, message: InboundMessage) -> None:
        self._messages.append(message)

    def write(self) -> None:
        """Everything the batch's messages changed, in a few statements (inside the caller's transaction)."""
        if self._new_sessions:
            ChargingSession.objects.bulk_create(self._new_sessions)
        if self._changed:
            rows = [charging_session for charging_session, _ in self._changed.values()]
            fields = sorted(set().union(*(fields for _, fields in self._changed.values())))
            # Every row is locked and was read in this transaction: writing a field a row did not
            # change writes back the value it has.
            update_rows(ChargingSession, rows, fields)
        if self._new_cdrs:
            ChargeDetailRecord.objects.bulk_create(self._new_cdrs.values())
        if self._messages:
            update_rows(InboundMessage, self._messages, APPLIED_MESSAGE_FIELDS)
