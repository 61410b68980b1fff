"""The audit chain's verification, fast: each record's canonical content is assembled in SQL.

`sessions.audit_chain.canonical_bytes` is compact JSON with sorted keys. The audit record stores
`data` as exactly that text (`sessions.fields.CanonicalJSONField`), and the other members are plain
ids, a UUID, a time and an event type, so the database can write the whole canonical text by
string concatenation (in C). Per record Python then only hashes prev_hash + text and compares:
no JSON, datetime or UUID parsing.

A record whose text does not give its hash goes through the exact check of `audit_chain` (parse
the columns, re-serialise) before it counts as broken: records written before data was stored
canonically, and values the SQL does not render canonically (a time with an offset in SQLite, an
event type with a quote), still verify that way, and a real break is classified by `walk_chain`.

The assembled text is only trusted when it decodes unambiguously back into the columns: every
member is rendered in a fixed form (digits or null, a 36-character UUID, a 32-character time, an
event type without a double quote) and is NULL otherwise, so `data` is the one free-form member
and lies between two known delimiters. Moving text from one column into another therefore cannot
yield the same text, and so cannot keep a record's hash valid.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from django.db import connection

from ..audit_chain import CHAIN_FIELDS, ChainWalk, content_matches, walk_chain
from ..models import AuditRecord

PAGE_SIZE = 5000
_BEFORE_ANY_ID = -(2**63)

# Each template renders one member's value; NULL when the value is not in the canonical form.
_SQLITE = {
    "int": "CASE WHEN {c} IS NULL THEN 'null' WHEN typeof({c}) = 'integer' THEN {c} END",
    # Django keeps a UUID as 32 hex digits. Checking the length is enough for the text to decode
    # unambiguously (a per-character check costs more than the rest of the query).
    "uuid": (
        "CASE WHEN {c} IS NULL THEN 'null' WHEN length({c}) = 32 THEN "
        "'\"' || substr({c}, 1, 8) || '-' || substr({c}, 9, 4) || '-' || substr({c}, 13, 4) || '-' "
        "|| substr({c}, 17, 4) || '-' || substr({c}, 21) || '\"' END"
    ),
    # Django keeps an aware datetime as naive UTC text, without the fraction when it is zero. Only
    # the length is checked: the canonical time has no space and one "T" (where Django's text has
    # its space, and where a "T" reads the same), so other text cannot render as it.
    "time": (
        "CASE length({c}) WHEN 26 THEN replace({c}, ' ', 'T') "
        "WHEN 19 THEN replace({c}, ' ', 'T') || '.000000' END"
    ),
    "text": "CASE WHEN instr({c}, '\"') = 0 THEN {c} END",
}
_POSTGRES = {
    "int": "COALESCE({c}::text, 'null')",
    "uuid": "COALESCE('\"' || {c}::text || '\"', 'null')",
    "time": "to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')",
    "text": "CASE WHEN strpos({c}, '\"') = 0 THEN {c} END",
}


def _page_sql() -> str:
    """id, prev_hash, record_hash and prev_hash + canonical content text, one page in id order."""
    render = _POSTGRES if connection.vendor == "postgresql" else _SQLITE
    quote = connection.ops.quote_name

    def member(kind: str, column: str) -> str:
        return render[kind].replace("{c}", quote(column))

    # The keys in sorted order, as json.dumps(sort_keys=True) writes them. `||` copies its whole
    # left side: the short members are joined first, the long prev_hash and data only twice.
    before_data = " || ".join([
        "'{\"actor_id\":'", member("int", "actor_id"),
        "',\"charging_session_id\":'", member("int", "charging_session_id"),
        "',\"correlation_id\":'", member("uuid", "correlation_id"),
        "',\"data\":'",
    ])
    after_data = " || ".join([
        "',\"event_type\":\"'", member("text", "event_type"),
        "'\",\"occurred_at\":\"'", member("time", "occurred_at"),
        "'+00:00\",\"stop_request_id\":'", member("int", "stop_request_id"),
        "'}'",
    ])
    content = f"{quote('prev_hash')} || ({before_data}) || {quote('data')} || ({after_data})"
    return (
        f"SELECT {quote('id')}, {quote('prev_hash')}, {quote('record_hash')}, {content} "
        f"FROM {quote(AuditRecord._meta.db_table)} WHERE {quote('id')} > %s ORDER BY {quote('id')} LIMIT %s"
    )


def _walk_exactly(page: list[tuple], walk: ChainWalk) -> ChainWalk:
    """Walk the rest of a page the exact way, reusing what the fast check already accepted."""
    sha256 = hashlib.sha256
    accepted = {
        record_id: (prev_hash, record_hash)
        for record_id, prev_hash, record_hash, text in page
        if text is not None and sha256(text.encode()).hexdigest() == record_hash
    }
    first, last = page[0][0], page[-1][0]
    rows = list(
        AuditRecord.objects.filter(id__gte=first, id__lte=last).order_by("id").values_list(*CHAIN_FIELDS)
    )

    def rows_and_the_next() -> Iterator[tuple]:
        yield from rows
        if not walk.ok:  # walk_chain reads the record after a broken one to tell what happened
            following = AuditRecord.objects.filter(id__gt=last).order_by("id").values_list(*CHAIN_FIELDS).first()
            if following is not None:
                yield following

    def content_ok(row: tuple) -> bool:
        return accepted.get(row[0]) == (row[8], row[9]) or content_matches(row)

    return walk_chain(rows_and_the_next(), start_hash=walk.last_hash, walk=walk, content_ok=content_ok)


def _hashes(texts: tuple) -> list[str] | None:
    """sha256 hex of each text; None when a text is NULL (a member not in canonical form)."""
    sha256 = hashlib.sha256
    try:
        return [sha256(text.encode()).hexdigest() for text in texts]
    except AttributeError:
        return None


def walk_chain_fast(*, start_hash: str = "", start_after_id: int | None = None,
                    walk: ChainWalk | None = None) -> ChainWalk:
    """Walk the stored chain after start_after_id (or continue `walk`); same outcome as walk_chain."""
    walk = walk or ChainWalk(last_id=start_after_id, last_hash=start_hash)
    sql = _page_sql()
    with connection.cursor() as cursor:
        while True:
            # Keyset pages: a bounded result per query, on both databases.
            cursor.execute(sql, [_BEFORE_ANY_ID if walk.last_id is None else walk.last_id, PAGE_SIZE])
            page = cursor.fetchall()
            if not page:
                return walk
            # A whole page at once, compared as lists (in C): each record's hash matches its text,
            # and each one links to the one before.
            ids, prevs, hashes, texts = zip(*page)
            computed = _hashes(texts)
            if (computed is not None and prevs[0] == walk.last_hash and prevs[1:] == hashes[:-1]
                    and computed == list(hashes)):
                walk.checked += len(page)
                walk.last_id, walk.last_hash, walk.before_last = ids[-1], hashes[-1], prevs[-1]
            else:
                walk = _walk_page_from_first_failure(page, walk)
                if not walk.ok:
                    return walk
            if len(page) < PAGE_SIZE:
                return walk


def _walk_page_from_first_failure(page: list[tuple], walk: ChainWalk) -> ChainWalk:
    sha256 = hashlib.sha256
    expected, accepted = walk.last_hash, 0
    for _, prev_hash, record_hash, text in page:
        if prev_hash != expected or text is None or sha256(text.encode()).hexdigest() != record_hash:
            break
        expected = record_hash
        accepted += 1
    if accepted:
        walk.checked += accepted
        walk.last_id, walk.last_hash, walk.before_last = page[accepted - 1][0], expected, page[accepted - 1][1]
    return _walk_exactly(page[accepted:], walk)
