"""Reads of Hubject's EVSE directory for the screens: where a session's EVSE is and whom to call
(`session_place`, `cpo_contact`, `with_cpo_contact`), its live status (`live_evse_status`), and the
place search (`search_places`, `station`).

Sessions name their operator "DE*ABC" or "DEABC" and their EVSE in any spelling: every match goes
through the keys of `sessions.oicp.ids` (operator_key, id_search_key), never the text as stored.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.core.cache import cache
from django.db import connection
from django.db.models import (
    BooleanField,
    Case,
    F,
    FloatField,
    Func,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Replace, Upper
from django.utils import timezone

from ..models import ChargingSession, EvseRecord, Operator
from ..oicp import ids
from .search_text import fold

logger = logging.getLogger(__name__)

OPEN = (ChargingSession.Status.ACTIVE, ChargingSession.Status.CHARGING_ENDED)


# --- text as the place search compares it (EvseRecord.search_text is folded the same way) --------

_WORD = re.compile(r"[a-z0-9]+")


def place_words(query: str) -> list[str]:
    """The query's words as the place search compares them (folded, punctuation dropped, 2+ characters)."""
    return [word for word in _WORD.findall(fold(query)) if len(word) >= 2][:8]


def looks_like_place(query: str) -> bool:
    """Words rather than an ID: a word of 3+ letters without digits ("Lidl", "Köln"), or a postal code,
    and not an EvseID, SessionID or OperatorID."""
    query = query.strip()
    if not query or ids.is_evse_id(query.replace(" ", "")) or ids.is_session_id(query):
        return False
    words = place_words(query)
    return any(word.isalpha() and len(word) >= 3 for word in words) or (
        len(words) == 1 and words[0].isdigit() and 4 <= len(words[0]) <= 5
    )


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


def map_url(latitude: Decimal | None, longitude: Decimal | None) -> str:
    if latitude is None or longitude is None:
        return ""
    return f"https://www.openstreetmap.org/?mlat={latitude}&mlon={longitude}#map=18/{latitude}/{longitude}"


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


# --- the place search ----------------------------------------------------------------------------
#
# One box for a station's name, street, postal code or city, typos forgiven; the stations found are
# ranked by how many of the query's words they match, and only the best-ranked are listed.
#
# PostgreSQL: pg_trgm's word similarity (`word <% search_text`, GIN trigram index of migration 0018),
# one condition per query word; without the extension, a substring match per word.
# SQLite (development and tests): a word with one typo (a missing, extra or wrong letter) keeps its
# first or its second half intact, so rows containing either half are the candidates, the rows
# containing most halves first (bounded: PLACE_CANDIDATES); Python then matches each query word to a
# word of the row within edit distance 1, or as the start of a word ("haupt") or a word as its start
# ("hauptstr" for "hauptstrasse"). Numbers (postal codes, house numbers) are never "corrected".

PLACE_CANDIDATES = 500
PLACE_STATIONS = 10


class _WordSimilar(Func):
    """`word <% text`: pg_trgm's word similarity above its threshold (uses the GIN trigram index)."""

    arg_joiner = " <%% "
    template = "(%(expressions)s)"
    output_field = BooleanField()


class _WordSimilarity(Func):
    function = "word_similarity"
    output_field = FloatField()


_trigram_available: bool | None = None


def _has_trigram() -> bool:
    global _trigram_available
    if _trigram_available is None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
            _trigram_available = cursor.fetchone() is not None
    return _trigram_available


def _matched_count(conditions: list) -> Func:
    total = None
    for condition in conditions:
        term = Case(When(condition, then=Value(1)), default=Value(0), output_field=IntegerField())
        total = term if total is None else total + term
    return total


def _candidates_postgres(words: list[str]) -> list[tuple[int, EvseRecord]]:
    records = EvseRecord.objects.select_related("operator").order_by()
    if _has_trigram():
        # Numbers (postal codes, house numbers) as typed: "50825" is another place than "50823".
        conditions = [
            Q(search_text__contains=word) if word.isdigit() else _WordSimilar(Value(word), F("search_text"))
            for word in words
        ]
        similarity = None
        for word in words:
            term = _WordSimilarity(Value(word), F("search_text"))
            similarity = term if similarity is None else similarity + term
        records = records.annotate(similarity=similarity)
        order = ["-matched", "-similarity", "evse_id"]
    else:
        conditions = [Q(search_text__contains=word) for word in words]
        order = ["-matched", "evse_id"]
    any_word = Q()
    for condition in conditions:
        any_word |= Q(condition)
    records = records.annotate(matched=_matched_count(conditions)).filter(any_word).order_by(*order)
    return [(record.matched, record) for record in records[:PLACE_CANDIDATES]]


def _halves(word: str) -> list[str]:
    if len(word) < 4:
        return [word]
    middle = len(word) // 2
    return [word[:middle], word[middle:]]


def _one_edit(a: str, b: str) -> bool:
    """Levenshtein distance of at most 1."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    for index in range(len(a)):
        if a[index] != b[index]:
            return a[index + 1 :] == b[index + 1 :] if len(a) == len(b) else a[index:] == b[index + 1 :]
    return True  # b is a with one letter added at the end


def word_matches(word: str, text_words: list[str]) -> bool:
    for text_word in text_words:
        if text_word.startswith(word) or (len(text_word) >= 5 and word.startswith(text_word)):
            return True
        if len(word) >= 4 and not word.isdigit() and _one_edit(word, text_word):
            return True
    return False


def _candidates_sqlite(words: list[str]) -> list[tuple[int, EvseRecord]]:
    pieces = sorted({piece for word in words for piece in _halves(word)})
    any_piece = Q()
    for piece in pieces:
        any_piece |= Q(search_text__contains=piece)
    records = (
        EvseRecord.objects.select_related("operator")
        .filter(any_piece)
        .annotate(pieces=_matched_count([Q(search_text__contains=piece) for piece in pieces]))
        .order_by("-pieces", "evse_id")[:PLACE_CANDIDATES]
    )
    ranked = []
    for record in records:
        text_words = _WORD.findall(record.search_text)
        matched = sum(1 for word in words if word_matches(word, text_words))
        if matched:
            ranked.append((matched, record))
    ranked.sort(key=lambda pair: -pair[0])  # stable: the database's order within a rank
    return ranked


@dataclass
class PlaceEvse:
    record: EvseRecord
    open_sessions: list[ChargingSession] = field(default_factory=list)


@dataclass
class Station:
    """A charging station as the place search lists it: its place, its operator, its EVSEs."""

    first: EvseRecord  # the EVSE whose page is the station's (`station-detail`)
    evses: list[PlaceEvse] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.first.station_name

    @property
    def operator(self) -> Operator:
        return self.first.operator

    @property
    def street_line(self) -> str:
        return " ".join(part for part in (self.first.street, self.first.house_number) if part)

    @property
    def city_line(self) -> str:
        return " ".join(part for part in (self.first.postal_code, self.first.city) if part)

    @property
    def address(self) -> str:
        return ", ".join(part for part in (self.street_line, self.city_line) if part)

    @property
    def map_url(self) -> str:
        return map_url(self.first.latitude, self.first.longitude)

    @property
    def open_session_count(self) -> int:
        return sum(len(evse.open_sessions) for evse in self.evses)


def _station_key(record: EvseRecord) -> tuple:
    if record.charging_station_id:
        return (record.operator_id, record.charging_station_id)
    return (
        record.operator_id,
        record.station_name,
        record.street,
        record.house_number,
        record.postal_code,
        record.city,
    )


def _attach_open_sessions(stations: list[Station]) -> None:
    """Each EVSE's open sessions, one query for all."""
    by_key = {ids.id_search_key(evse.record.evse_id): evse for station in stations for evse in station.evses}
    if not by_key:
        return
    sessions = ChargingSession.objects.filter(evse_key__in=list(by_key), status__in=OPEN).order_by("-started_at")
    for charging_session in sessions:
        evse = by_key.get(charging_session.evse_key)
        if evse is not None:
            evse.open_sessions.append(charging_session)


def _group(records: list[EvseRecord], limit: int) -> list[Station]:
    stations: dict[tuple, Station] = {}
    for record in records:
        key = _station_key(record)
        if key not in stations:
            if len(stations) >= limit:
                continue
            stations[key] = Station(first=record)
        stations[key].evses.append(PlaceEvse(record))
    return list(stations.values())


def search_places(query: str, *, limit: int = PLACE_STATIONS) -> list[Station]:
    """Stations whose name, street, postal code or city match the query's words, typos forgiven; only
    those matching the most words, each with its EVSEs and their open sessions (a bounded number of queries)."""
    words = place_words(query)
    if not words:
        return []
    if connection.vendor == "postgresql":
        ranked = _candidates_postgres(words)
    else:
        ranked = _candidates_sqlite(words)
    ranked = [pair for pair in ranked if pair[0] > 0]
    if not ranked:
        return []
    best = ranked[0][0]
    stations = _group([record for matched, record in ranked if matched == best], limit)
    _attach_open_sessions(stations)
    return stations


def station(*, pk: int) -> Station | None:
    """The station of one EVSE (`_station_key`): all its EVSEs with their open sessions."""
    record = EvseRecord.objects.select_related("operator").filter(pk=pk).first()
    if record is None:
        return None
    if record.charging_station_id:
        same = Q(charging_station_id=record.charging_station_id)
    else:
        same = Q(
            charging_station_id="",
            station_name=record.station_name,
            street=record.street,
            house_number=record.house_number,
            postal_code=record.postal_code,
            city=record.city,
        )
    siblings = EvseRecord.objects.select_related("operator").filter(same, operator_id=record.operator_id)
    found = Station(first=record, evses=[PlaceEvse(sibling) for sibling in siblings.order_by("evse_id")[:200]])
    _attach_open_sessions([found])
    return found
