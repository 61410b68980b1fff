"""Reads of Hubject's EVSE directory for the screens: where a session's EVSE is and whom to call
(`session_place`, `cpo_contact`, `with_cpo_contact`), its live status (`live_evse_status`), and the
place search (`search_places`, `station`: sessions.directory.place_search, re-exported here).

Sessions name their operator "DE*ABC" or "DEABC" and their EVSE in any spelling: every match goes
through the keys of `sessions.oicp.ids` (operator_key, id_search_key), never the text as stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.core.cache import cache
from django.db.models import (
    Func,
    OuterRef,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Replace, Upper
from django.utils import timezone

from ..models import EvseRecord, Operator
from ..oicp import ids
from .place_search import (
    OPEN,
    PLACE_STATIONS,
    PlaceEvse,
    Station,
    looks_like_place,
    map_url,
    place_words,
    search_places,
    station,
    word_matches,
)

__all__ = [
    "OPEN",
    "PLACE_STATIONS",
    "CpoContact",
    "PlaceEvse",
    "SessionPlace",
    "Station",
    "cpo_contact",
    "live_evse_status",
    "looks_like_place",
    "map_url",
    "place_words",
    "search_places",
    "session_place",
    "station",
    "with_cpo_contact",
    "word_matches",
]

logger = logging.getLogger(__name__)


# --- whom to call --------------------------------------------------------------------------------


def _operator_key_of(expression) -> Func:
    """The database's `ids.operator_key`: upper case, without "*" and "+"."""
    return Replace(Replace(Upper(expression), Value("*"), Value("")), Value("+"), Value(""))


def with_cpo_contact(rows: QuerySet, *, operator_field: str = "operator_id") -> QuerySet:
    """Each row (sessions, or stops with operator_field="charging_session__operator_id") with its CPO's
    name and hotline from the directory (`cpo_name`, `cpo_hotline`; None when unknown), in the same query."""
    operator = Operator.objects.filter(operator_key=_operator_key_of(OuterRef(operator_field))).order_by()
    return rows.annotate(
        cpo_name=Subquery(operator.values("name")[:1]),
        cpo_hotline=Subquery(operator.values("hotline")[:1]),
    )


@dataclass(frozen=True)
class CpoContact:
    """What the advice says about whom to call: the CPO's name and hotline (each "" when unknown)."""

    name: str = ""
    hotline: str = ""


def cpo_contact(*, operator_id: str, evse_id: str = "") -> CpoContact:
    """The CPO's name and the hotline for this EVSE (its own, else its operator's), in one query."""
    if not operator_id:
        return CpoContact()
    evse_hotline = EvseRecord.objects.filter(evse_key=ids.id_search_key(evse_id), operator=OuterRef("pk")).exclude(
        hotline=""
    )
    row = (
        Operator.objects.filter(operator_key=ids.operator_key(operator_id))
        .annotate(evse_hotline=Subquery(evse_hotline.values("hotline")[:1]))
        .values("name", "hotline", "evse_hotline")
        .first()
    )
    if row is None:
        return CpoContact()
    return CpoContact(name=row["name"], hotline=row["evse_hotline"] or row["hotline"])


@dataclass(frozen=True)
class SessionPlace:
    """Where a session's EVSE is (None when the directory does not list it) and its operator (None when
    unknown too). Hubject's values and support's (hotline hours, e-mail, note) stay apart."""

    evse: EvseRecord | None
    operator: Operator | None

    @property
    def hotline(self) -> str:
        return (self.evse.hotline if self.evse else "") or (self.operator.hotline if self.operator else "")

    @property
    def map_url(self) -> str:
        return map_url(self.evse.latitude, self.evse.longitude) if self.evse else ""


def session_place(*, evse_id: str, operator_id: str) -> SessionPlace:
    evse = EvseRecord.objects.select_related("operator").filter(evse_key=ids.id_search_key(evse_id)).first()
    if evse is not None:
        return SessionPlace(evse=evse, operator=evse.operator)
    operator = Operator.objects.filter(operator_key=ids.operator_key(operator_id)).first() if operator_id else None
    return SessionPlace(evse=None, operator=operator)


# --- the live status -----------------------------------------------------------------------------

EVSE_STATUS_TIMEOUT_SECONDS = 3.0  # a screen's fragment: never wait long for Hubject
EVSE_STATUS_CACHE_SECONDS = 60
UNKNOWN_STATUS_CACHE_SECONDS = 15  # Hubject did not answer: ask again soon, not on every load
UNKNOWN = "unknown"


def live_evse_status(evse_id: str) -> tuple[str, datetime]:
    """The EVSE's status as Hubject gives it ("Occupied", …) and when Hubject said so; "unknown" when it
    did not answer within EVSE_STATUS_TIMEOUT_SECONDS or answered without a status. Cached a minute, so
    a second look (or a second agent) does not ask Hubject again."""
    key = f"evse-status:{ids.id_search_key(evse_id)}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    # Imported here: the client is only needed when the cache has no answer.
    from ..oicp.client import HubjectClient

    try:
        answer = HubjectClient.from_settings().pull_evse_status_by_id(
            evse_ids=[evse_id], timeout=EVSE_STATUS_TIMEOUT_SECONDS
        )
        statuses = answer.statuses if answer.ok else None
    except Exception:  # a screen's extra: whatever went wrong, the page shows "unknown"
        logger.exception("EVSE status pull failed for %s", evse_id)
        statuses = None
    status = ""
    for answered_id, answered_status in (statuses or {}).items():
        if ids.id_search_key(answered_id) == ids.id_search_key(evse_id):
            status = answered_status
    result = (status or UNKNOWN, timezone.now())
    cache.set(key, result, EVSE_STATUS_CACHE_SECONDS if status else UNKNOWN_STATUS_CACHE_SECONDS)
    return result
