"""The audit chain's verification, fast: no JSON, datetime or UUID parsing per record.

`sessions.audit.chain.canonical_bytes` is compact JSON with sorted keys. The audit record stores
`data` as exactly that text (`sessions.models.json_field.CanonicalJSONField`) and the other members are ids,
a UUID, a time and an event type, so each record's canonical text is put together from the stored
values as they are, and only hashed and compared:

- PostgreSQL assembles it in SQL (the server's work runs beside ours, in its own process);
- SQLite runs SQL inside our process, where its string functions cost more than Python's
  f-string, so it only reads the values (and checks their form) and Python assembles them.

A record whose text does not give its hash goes through the exact check of `audit_chain` (parse
the columns, re-serialise) before it counts as broken: records written before data was stored
canonically, and values not in the form assembled here (a time with an offset in SQLite, an event
type with a quote), still verify that way, and a real break is classified by `walk_chain`.

The assembled text is only trusted when it decodes unambiguously back into the columns: every
member but `data` is in a fixed form (digits or null, a 36-character UUID, a 26-character time,
an event type without a double quote), or the record takes the exact path, so `data` lies between
two known delimiters. Moving text from one column into another therefore cannot give the same
text, and so cannot keep a record's hash valid.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Iterator, Mapping

from django.db import connection

from ..models import AuditRecord
from .chain import CHAIN_FIELDS, ChainWalk, content_matches, walk_chain
from .keys import all_keys

# A page's rows checked against the chain: (rows, the hash they must start from, the keys' MACs).
Accepted = Callable[[list[tuple], str, Mapping[str, "hmac.HMAC"]], int]


def _macs(keys: Mapping[str, bytes]) -> dict[str, hmac.HMAC]:
    """One keyed MAC per key id, copied per record (the key's set-up is not repeated)."""
    return {key_id: hmac.new(key, digestmod=hashlib.sha256) for key_id, key in keys.items()}


# Rows per keyset page. SQLite: a small page is still in the CPU cache when it is checked (over a
# million records 500 rows took 1.6x the bare loop's time, 5000 rows 1.9x); PostgreSQL: fewer
# round trips.
PAGE_SIZE = {"postgresql": 5000, "sqlite": 500}
_BEFORE_ANY_ID = -(2**63)

# --- PostgreSQL: the text assembled in SQL ---------------------------------------------------------


def _postgres_sql(quote: Callable[[str], str]) -> str:
    """prev_hash + the canonical content, NULL when the event type has a quote."""

    def int_(column: str) -> str:
        return f"COALESCE({quote(column)}::text, 'null')"

    # `||` copies its whole left side: the short members are joined first, prev_hash and data once.
    before_data = " || ".join(
        [
            "'{\"actor_id\":'",
            int_("actor_id"),
            "',\"charging_session_id\":'",
            int_("charging_session_id"),
            "',\"correlation_id\":'",
            f"COALESCE('\"' || {quote('correlation_id')}::text || '\"', 'null')",
            "',\"data\":'",
        ]
    )
    after_data = " || ".join(
        [
            '\',"event_type":"\'',
            f"CASE WHEN strpos({quote('event_type')}, '\"') = 0 THEN {quote('event_type')} END",
            '\'","occurred_at":"\'',
            f"to_char({quote('occurred_at')} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')",
            '\'+00:00","stop_request_id":\'',
            int_("stop_request_id"),
            "'}'",
        ]
    )
    return f"{quote('prev_hash')} || ({before_data}) || {quote('data')} || ({after_data})"


def _accepted_assembled(page: Iterable[tuple], expected: str, macs: Mapping[str, hmac.HMAC]) -> int:
    """How many leading rows (id, prev_hash, record_hash, key_id, text) link on and carry their text's hash."""
    accepted = 0
    for _, prev_hash, record_hash, key_id, text in page:
        mac = macs.get(key_id)
        if prev_hash != expected or text is None or mac is None:
            break
        mac = mac.copy()
        mac.update(text.encode())
        if mac.hexdigest() != record_hash:
            break
        expected = record_hash
        accepted += 1
    return accepted


# --- SQLite: the values read as stored, the text assembled here -----------------------------------


def _sqlite_columns(quote: Callable[[str], str]) -> str:
    """actor, session, correlation, data (NULL when a member is not in the form assembled below),
    event type, occurred_at with its "T", stop request."""

    def int_(column: str) -> str:  # an integer or NULL (SQLite keeps non-numeric text even here)
        return f"{quote(column)} IS CAST({quote(column)} AS INTEGER)"

    correlation, event_type, occurred = quote("correlation_id"), quote("event_type"), quote("occurred_at")
    in_form = " AND ".join(
        [
            int_("actor_id"),
            int_("charging_session_id"),
            int_("stop_request_id"),
            f"typeof({event_type}) = 'text' AND instr({event_type}, '\"') = 0",
            # Django keeps a UUID as 32 hex digits, an aware datetime as naive UTC text
            # 'YYYY-MM-DD HH:MM:SS[.ffffff]' (no fraction when it is zero).
            f"({correlation} IS NULL OR typeof({correlation}) = 'text' AND length({correlation}) = 32)",
            f"length({occurred}) IN (19, 26)",
        ]
    )
    return ", ".join(
        [
            quote("actor_id"),
            quote("charging_session_id"),
            correlation,
            f"CASE WHEN {in_form} THEN {quote('data')} END",
            # Only the length of the time is checked: the canonical time has no space and its one "T"
            # where Django's text has its space (a "T" there reads the same), so nothing else renders as it.
            event_type,
            f"replace({occurred}, ' ', 'T')",
            quote("stop_request_id"),
        ]
    )


def _accepted_sqlite(page: list[tuple], expected: str, macs: Mapping[str, hmac.HMAC]) -> int:
    """How many leading rows link on and carry the hash of their canonical text, assembled here."""
    return _accepted_assembled(_sqlite_texts(page), expected, macs)


def _sqlite_texts(page: list[tuple]) -> Iterator[tuple]:
    """(id, prev_hash, record_hash, key_id, text) of each row; text None when a member is not in
    canonical form (the walk stops there). Lazy: nothing is assembled past the first broken row."""
    for row_id, prev_hash, record_hash, key_id, actor, session, correlation, data, event_type, occurred, stop in page:
        if data is None:
            yield row_id, prev_hash, record_hash, key_id, None
            return
        correlation = (
            "null"
            if correlation is None
            else (
                f'"{correlation[:8]}-{correlation[8:12]}-{correlation[12:16]}-{correlation[16:20]}-{correlation[20:]}"'
            )
        )
        if len(occurred) == 19:
            occurred += ".000000"
        # Exactly canonical_bytes: the keys sorted, no spaces.
        text = (
            f'{prev_hash}{{"actor_id":{"null" if actor is None else actor},'
            f'"charging_session_id":{"null" if session is None else session},'
            f'"correlation_id":{correlation},"data":{data},'
            f'"event_type":"{event_type}","occurred_at":"{occurred}+00:00",'
            f'"stop_request_id":{"null" if stop is None else stop}}}'
        )
        yield row_id, prev_hash, record_hash, key_id, text


# --- the walk --------------------------------------------------------------------------------------


def _page_query() -> tuple[str, Accepted]:
    """The page query (id, prev_hash, record_hash, key_id, …) and the check of its rows."""
    quote = connection.ops.quote_name
    if connection.vendor == "postgresql":
        rest, accepted = _postgres_sql(quote), _accepted_assembled
    else:  # sqlite
        rest, accepted = _sqlite_columns(quote), _accepted_sqlite
    sql = (
        f"SELECT {quote('id')}, {quote('prev_hash')}, {quote('record_hash')}, {quote('key_id')}, {rest} "
        f"FROM {quote(AuditRecord._meta.db_table)} WHERE {quote('id')} > %s ORDER BY {quote('id')} LIMIT %s"
    )
    return sql, accepted


def _walk_exactly(
    rows: list[tuple], walk: ChainWalk, accepted: Accepted, keys: Mapping[str, bytes], macs: Mapping[str, hmac.HMAC]
) -> ChainWalk:
    """Walk the rest of a page the exact way, reusing what the fast check accepts of it."""
    hashed = {row[0]: (row[1], row[2]) for row in rows if accepted([row], row[1], macs)}
    first, last = rows[0][0], rows[-1][0]
    exact_rows = list(AuditRecord.objects.filter(id__gte=first, id__lte=last).order_by("id").values_list(*CHAIN_FIELDS))

    def rows_and_the_next() -> Iterator[tuple]:
        yield from exact_rows
        if not walk.ok:  # walk_chain reads the record after a broken one to tell what happened
            following = AuditRecord.objects.filter(id__gt=last).order_by("id").values_list(*CHAIN_FIELDS).first()
            if following is not None:
                yield following

    def content_ok(row: tuple) -> bool:
        return hashed.get(row[0]) == (row[8], row[9]) or content_matches(row, keys)

    return walk_chain(rows_and_the_next(), keys=keys, start_hash=walk.last_hash, walk=walk, content_ok=content_ok)


def walk_chain_fast(
    *,
    start_hash: str = "",
    start_after_id: int | None = None,
    walk: ChainWalk | None = None,
    keys: Mapping[str, bytes] | None = None,
) -> ChainWalk:
    """Walk the stored chain after start_after_id (or continue `walk`); same outcome as walk_chain.

    `keys`: the chain keys by id (default: the portal's, sessions.audit.keys.all_keys)."""
    keys = all_keys() if keys is None else keys
    macs = _macs(keys)
    walk = walk or ChainWalk(last_id=start_after_id, last_hash=start_hash)
    page_size = PAGE_SIZE.get(connection.vendor)
    if page_size is None:  # a database the SQL here was not written for: the exact walk
        rows = AuditRecord.objects.order_by("id").values_list(*CHAIN_FIELDS)
        if walk.last_id is not None:
            rows = rows.filter(id__gt=walk.last_id)
        return walk_chain(rows.iterator(chunk_size=5000), keys=keys, start_hash=walk.last_hash, walk=walk)
    sql, accepted = _page_query()
    with connection.cursor() as cursor:
        while True:
            # Keyset pages: a bounded result per query, on both databases.
            cursor.execute(sql, [_BEFORE_ANY_ID if walk.last_id is None else walk.last_id, page_size])
            page = cursor.fetchall()
            if not page:
                return walk
            good = accepted(page, walk.last_hash, macs)
            if good:
                last = page[good - 1]
                walk.checked += good
                walk.last_id, walk.last_hash, walk.before_last = last[0], last[2], last[1]
            if good < len(page):
                walk = _walk_exactly(page[good:], walk, accepted, keys, macs)
                if not walk.ok:
                    return walk
            if len(page) < page_size:
                return walk
