"""The place search: one box for a station's name, street, postal code or city, typos forgiven, at
Hubject's scale (500,000 EVSEs, p95 < 100 ms on SQLite and PostgreSQL: bench/directory.py).

A query word matches a stored word (of EvseRecord.search_text, folded the same way) when it is its
start ("haupt"), when the stored word of 5+ letters is the query word's start ("hauptstr" stored,
"hauptstrasse" typed), or, for words of 4+ letters, within one edit (a letter missing, extra or
wrong); numbers (postal codes, house numbers) are never "corrected". Only the stations matching
the most query words are listed, those matching more of them without a correction first.

How, without ever scanning the EVSE table:
1. corrections come from the vocabulary (PlaceWord, every stored word): a word with one typo keeps
   its first or its second half intact, so its candidates are the stored words that start with the
   first half or end with the second (two index ranges: `word`, and `drow`, the word reversed);
2. each query word becomes a group of full-text terms (itself as a prefix, its starts of 5+ letters,
   its corrections) and the full-text index finds the EVSEs matching every group: SQLite FTS5,
   PostgreSQL a GIN index on to_tsvector (migration 0019), at most PLACE_CANDIDATES of them;
3. when none match every group, the groups that match nothing are dropped, then subsets of the
   rest, largest first (at most SUBSET_QUERIES queries): the best rank any EVSE reaches.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import combinations

from django.db import connection, transaction
from django.db.models import Q

from ..index_queries import prefix_q
from ..models import ChargingSession, EvseRecord, Operator, PlaceWord
from ..oicp import ids
from .search_text import fold, words

OPEN = (ChargingSession.Status.ACTIVE, ChargingSession.Status.CHARGING_ENDED)
PLACE_CANDIDATES = 200  # EVSEs read per full-text query, then ranked: 10 stations need at most 80
PLACE_STATIONS = 10
SUBSET_QUERIES = 16
HEAVY_FIELDS = ("raw", "plugs", "facilities", "authentication_modes", "opening_times")
VOCABULARY_READ = 5000  # stored words read to correct a query (a 2-letter half can start many)
FTS_TABLE = "charging_sessions_evse_place_fts"
# The expression of the PostgreSQL index (migration 0019): a query must use this very text to use it.
PG_WORDS = "to_tsvector('simple'::regconfig, regexp_replace(search_text, '[^a-z0-9]+', ' ', 'g'))"
# PostgreSQL plans `… @@ query LIMIT n` from how many EVSEs it expects to match. When it expects many
# (a common prefix such as "schlo:*" or "munch:*"), a sequential scan looks as if it found n rows soon,
# and then computes to_tsvector for every EVSE when few or none match: 6.5 s at 500,000 EVSEs for a
# misspelt street nothing matches, 160 ms for "München" (bench/directory.py). The full-text index
# (read by a bitmap scan; GIN has no other) is the one sensible plan for these queries, so for them
# the planner is left only that: no sequential scan and no plain index scan, for this transaction.
PG_FULL_TEXT_PLANS = "SELECT set_config('enable_seqscan', 'off', true), set_config('enable_indexscan', 'off', true)"


def place_words(query: str) -> list[str]:
    """The query's words as the place search compares them (folded, punctuation dropped, 2+ characters)."""
    return [word for word in words(fold(query)) if len(word) >= 2][:8]


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


def map_url(latitude: Decimal | None, longitude: Decimal | None) -> str:
    if latitude is None or longitude is None:
        return ""
    return f"https://www.openstreetmap.org/?mlat={latitude}&mlon={longitude}#map=18/{latitude}/{longitude}"


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


# --- stations ----------------------------------------------------------------------------------


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


def _station_key(record) -> tuple:
    """The station an EVSE belongs to (an EvseRecord, or a row of RANK_FIELDS)."""
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


# --- the query's terms ---------------------------------------------------------------------------


def _corrections(query_words: list[str]) -> dict[str, set[str]]:
    """Each query word (4+ letters, not a number) → the stored words one edit away."""
    fuzzy = [word for word in query_words if len(word) >= 4 and not word.isdigit()]
    if not fuzzy:
        return {}
    near = Q()
    for word in fuzzy:
        middle = len(word) // 2
        near |= prefix_q("word", word[:middle]) | prefix_q("drow", word[middle:][::-1])
    stored = list(PlaceWord.objects.filter(near).values_list("word", flat=True)[:VOCABULARY_READ])
    return {word: {other for other in stored if _one_edit(word, other)} for word in fuzzy}


@dataclass(frozen=True)
class _Group:
    """The full-text terms of one query word: `prefix` as a prefix, the `exact` ones as they are."""

    prefix: str
    exact: frozenset[str]

    def fts5(self) -> str:
        return " OR ".join([f'"{self.prefix}"*', *(f'"{term}"' for term in sorted(self.exact))])

    def tsquery(self) -> str:
        return " | ".join([f"{self.prefix}:*", *sorted(self.exact)])


def _groups(query_words: list[str]) -> list[_Group]:
    corrections = _corrections(query_words)
    return [
        _Group(word, frozenset({word[:end] for end in range(5, len(word))} | corrections.get(word, set())))
        for word in query_words
    ]


# --- the full-text index -------------------------------------------------------------------------


def _ids(groups: tuple[_Group, ...] | list[_Group], limit: int = PLACE_CANDIDATES) -> list[int]:
    """Ids of EVSEs matching every group (terms are [a-z0-9]+: nothing to escape in either syntax)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            query = " & ".join(f"({group.tsquery()})" for group in groups)
            cursor.execute(
                f"SELECT id FROM {EvseRecord._meta.db_table} "
                f"WHERE {PG_WORDS} @@ to_tsquery('simple'::regconfig, %s) LIMIT %s",
                [query, limit],
            )
        else:
            query = " AND ".join(f"({group.fts5()})" for group in groups)
            cursor.execute(f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH %s LIMIT %s", [query, limit])
        return [row[0] for row in cursor.fetchall()]


@contextmanager
def _full_text_plans() -> Iterator[None]:
    """PostgreSQL: the full-text queries inside are planned through the index only (PG_FULL_TEXT_PLANS).
    They only read, so the transaction (or savepoint) is rolled back: that also undoes the settings,
    which therefore never reach another query, even when the caller is inside a transaction."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(PG_FULL_TEXT_PLANS)
        yield
        transaction.set_rollback(True)


def _matching_ids(groups: list[_Group]) -> set[int]:
    """The EVSEs matching every group; when there are none, those matching the most groups."""
    with _full_text_plans():
        return _matching_ids_planned(groups)


def _matching_ids_planned(groups: list[_Group]) -> set[int]:
    found = set(_ids(groups))
    if found or len(groups) == 1:
        return found
    useful = [group for group in groups if _ids([group], limit=1)]
    budget = SUBSET_QUERIES
    for size in range(len(useful) - (len(useful) == len(groups)), 0, -1):
        for subset in combinations(useful, size):
            if budget == 0:
                return found
            budget -= 1
            found.update(_ids(subset))
        if found:
            return found
    return found


# What ranking and grouping the candidates reads of each (`_station_key`'s fields): plain values, no model
# instances; only the EVSEs of the stations listed are then loaded whole.
RANK_FIELDS = (
    "pk",
    "evse_id",
    "search_text",
    "operator_id",
    "charging_station_id",
    "station_name",
    "street",
    "house_number",
    "postal_code",
    "city",
)


def _listed(rows: list, limit: int) -> list:
    """The rows of the first `limit` stations, in their order (what `_group` keeps of them)."""
    keys: set[tuple] = set()
    kept = []
    for row in rows:
        key = _station_key(row)
        if key not in keys:
            if len(keys) >= limit:
                continue
            keys.add(key)
        kept.append(row)
    return kept


def search_places(query: str, *, limit: int = PLACE_STATIONS) -> list[Station]:
    """Stations whose name, street, postal code or city match the query's words, typos forgiven; only
    those matching the most words, each with its EVSEs and their open sessions (a bounded number of queries)."""
    query_words = place_words(query)
    if not query_words:
        return []
    found = _matching_ids(_groups(query_words))
    if not found:
        return []
    ranked = []
    # The candidates as plain values (up to PLACE_CANDIDATES rows: building model instances with their
    # operators for all of them cost more than the search itself, bench/directory.py).
    for row in EvseRecord.objects.filter(pk__in=found).order_by().values_list(*RANK_FIELDS, named=True):
        text_words = words(row.search_text)
        matched = sum(1 for word in query_words if word_matches(word, text_words))
        plain = sum(1 for word in query_words if any(text.startswith(word) for text in text_words))
        if matched:
            ranked.append((-matched, -plain, row.evse_id, row))
    if not ranked:
        return []
    ranked.sort(key=lambda row: row[:3])
    best = ranked[0][0]
    listed = _listed([row[-1] for row in ranked if row[0] == best], limit)
    # Without Hubject's whole record and lists (decoding them cost more than the search).
    records = EvseRecord.objects.select_related("operator").defer(*HEAVY_FIELDS).in_bulk([row.pk for row in listed])
    stations = _group([records[row.pk] for row in listed if row.pk in records], limit)
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
