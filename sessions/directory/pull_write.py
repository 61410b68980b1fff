"""How a pull's page reaches the database at Hubject's scale (500,000 EVSEs; bench/directory.py).

EVSE rows go in as `INSERT … ON CONFLICT (evse_id) DO UPDATE` (new and changed rows alike), each
row's values adapted once: the ORM's bulk_create spent more time preparing values field by field
(and, on PostgreSQL, quoting its UNNEST arrays of JSON) than everything else in a full pull.
PostgreSQL: COPY into a scratch table, then one INSERT … SELECT; SQLite: 500 rows per INSERT. What is compared to count a record as changed is read in one query per page.

The place search's vocabulary (PlaceWord) is kept here too: the words of every record a run sees;
a complete full run drops the words no EVSE uses any more.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.db import connection, models

from ..models import EvseRecord, PlaceWord
from .search_text import words

LOOKUP_BATCH = 900
SQLITE_BATCH = 500  # rows per INSERT: 500 × 22 values, below SQLite's 32,766 variables
WORD_MAX = 64  # PlaceWord.word's length; longer "words" (pasted IDs) are not corrected, only matched
JSON_FIELDS = frozenset({"plugs", "facilities", "authentication_modes", "opening_times", "raw"})


def existing_values(evse_ids: list[str], fields: Iterable[str]) -> dict[str, tuple]:
    """EvseID → the stored values of `fields` (in that order), for those of `evse_ids` already stored."""
    fields = list(fields)
    found: dict[str, tuple] = {}
    for start in range(0, len(evse_ids), LOOKUP_BATCH):
        batch = evse_ids[start : start + LOOKUP_BATCH]
        for row in EvseRecord.objects.filter(evse_id__in=batch).order_by().values_list("evse_id", *fields):
            found[row[0]] = row[1:]
    return found


def upsert_evses(rows: list[dict[str, Any]]) -> None:
    """Insert the rows (each: evse_id and every written field), or update the stored row of the same EvseID."""
    if not rows:
        return
    fields = list(rows[0])
    meta = EvseRecord._meta
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    columns = [quote(meta.get_field(name).column) for name in fields]
    names = ", ".join(columns)
    conflict = f"ON CONFLICT ({quote(meta.get_field('evse_id').column)}) DO UPDATE SET " + ", ".join(
        f"{column} = excluded.{column}" for name, column in zip(fields, columns, strict=True) if name != "evse_id"
    )
    adapters = [_adapter(name) for name in fields]
    values = ([adapt(value) for adapt, value in zip(adapters, row.values(), strict=True)] for row in rows)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # COPY into a scratch table, then one INSERT … SELECT: a statement with thousands of
            # placeholders cost more to build on the client than the database took to run it.
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS evse_upsert ON COMMIT DELETE ROWS AS "
                f"SELECT {names} FROM {table} WITH NO DATA"
            )
            cursor.execute("TRUNCATE evse_upsert")
            with cursor.cursor.copy(f"COPY evse_upsert ({names}) FROM STDIN") as copy:
                for row in values:
                    copy.write_row(row)
            cursor.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM evse_upsert {conflict}")
        else:
            # Many rows per statement: FTS5 (the place search's index, kept by triggers) writes its
            # pending terms out at every statement, so one statement per row cost twice as much.
            row_holders = "(" + ", ".join(["%s"] * len(fields)) + ")"
            values = list(values)
            for start in range(0, len(values), SQLITE_BATCH):
                batch = values[start : start + SQLITE_BATCH]
                cursor.execute(
                    f"INSERT INTO {table} ({names}) VALUES {', '.join([row_holders] * len(batch))} {conflict}",
                    [value for row in batch for value in row],
                )


def _adapter(name: str):
    if name in JSON_FIELDS:
        return json.dumps
    if isinstance(EvseRecord._meta.get_field(name), models.DateTimeField):
        return lambda value: value if value is None else connection.ops.adapt_datetimefield_value(value)
    return lambda value: value


def remember_words(texts: Iterable[str], known: set[str]) -> None:
    """Add the words of `texts` not in `known` (this run's) to the vocabulary; `known` grows with them."""
    new = {word for text in texts for word in words(text) if len(word) <= WORD_MAX} - known
    if not new:
        return
    known.update(new)
    PlaceWord.objects.bulk_create(
        [PlaceWord(word=word, drow=word[::-1]) for word in sorted(new)], batch_size=1000, ignore_conflicts=True
    )


def forget_other_words(known: set[str]) -> int:
    """After a complete full run: drop the words no EVSE it saw uses (`known`)."""
    gone = [
        pk for pk, word in PlaceWord.objects.values_list("pk", "word").iterator(chunk_size=10_000) if word not in known
    ]
    for start in range(0, len(gone), LOOKUP_BATCH):
        PlaceWord.objects.filter(pk__in=gone[start : start + LOOKUP_BATCH]).delete()
    return len(gone)


__all__ = ["existing_values", "forget_other_words", "remember_words", "upsert_evses"]
