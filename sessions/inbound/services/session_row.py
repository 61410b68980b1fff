"""The session an inbound message belongs to: found by its SessionID key and locked, or created when unknown."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError

from ...audit.records import AuditEntry
from ...charging.services import insert_charging_session, new_charging_session
from ...models import ChargingSession
from ...oicp import ids
from ...stops.services import confirm_stops_for_session_end
from .steps import current_batch, message_step


def _provider_id(hub_provider_id: str | None) -> str:
    """Sessions learned from inbound messages belong to us: settings.OICP_PROVIDER_ID."""
    for candidate in (settings.OICP_PROVIDER_ID, hub_provider_id or ""):
        if ids.is_provider_id(candidate):
            return candidate
    raise ImproperlyConfigured("OICP_PROVIDER_ID must be set to record sessions pushed by Hubject")


def _locked_session(session_id: str) -> ChargingSession | None:
    # By the lower-case key: Hubject's SessionIDs are GUIDs, whatever case a CPO writes them in.
    # order_by(): the key is unique, and compiling the model's default ordering costs more than the query.
    query = ChargingSession.objects.select_for_update().filter(session_key=ids.session_key(session_id)).order_by()
    return next(iter(query), None)


def _lock_or_create_session(
    *,
    session_id: str,
    evse_id: str,
    started_at,
    emp_partner_session_id: str,
    cpo_partner_session_id: str,
    learned_late: bool,
    status: str,
    now,
    hub_provider_id: str | None = None,
    **more,
) -> tuple[ChargingSession, bool]:
    """The session row, locked for this transaction; INSERTed (with `more` fields) if unknown.

    The caller writes the SESSION_CREATED audit record when `created` is True. In a batch
    (`steps.batched`) the row comes from the batch, and a new one is inserted with the batch's.
    """
    fields = {
        "session_id": session_id,
        "evse_id": evse_id,
        "started_at": started_at,
        "emp_partner_session_id": emp_partner_session_id,
        "cpo_partner_session_id": cpo_partner_session_id,
        "learned_late": learned_late,
        "status": status,
        "last_update_at": more.pop("last_update_at", now),
        **more,
    }
    batch = current_batch()
    if batch is not None:
        charging_session = batch.session(session_id)
        if charging_session is None:
            charging_session = new_charging_session(provider_id=_provider_id(hub_provider_id), **fields)
            batch.add_session(charging_session)
            return charging_session, True
        return charging_session, False
    charging_session = _locked_session(session_id)
    if charging_session is not None:
        return charging_session, False
    try:
        with message_step():  # a savepoint: losing the race below leaves our transaction usable
            charging_session = insert_charging_session(provider_id=_provider_id(hub_provider_id), **fields)
        return charging_session, True
    except IntegrityError:
        # Another message for the same unknown session created it first (unique session_id).
        charging_session = _locked_session(session_id)
        if charging_session is None:
            raise
        return charging_session, False


def _save_session(charging_session: ChargingSession, changes: dict) -> None:
    """Set the message's changes on its session and save them (in a batch: written with the batch's)."""
    for name, value in changes.items():
        setattr(charging_session, name, value)
    batch = current_batch()
    if batch is not None:
        batch.session_changed(charging_session, changes)
    else:
        charging_session.save(update_fields=sorted(changes))


def _confirm_stops(charging_session: ChargingSession, *, confirmed_by: str, at) -> list[AuditEntry]:
    """The session's stops this End or CDR confirms (their audit entries); a batch knows which of
    its sessions have stop requests at all (most have none), so it looks only at those."""
    batch = current_batch()
    if batch is not None and not batch.may_have_stops(charging_session):
        return []
    return confirm_stops_for_session_end(charging_session=charging_session, confirmed_by=confirmed_by, at=at)
