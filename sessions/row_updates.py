"""Many rows' columns written at once, each row its own values, in one statement.

Django's `bulk_update` builds a CASE WHEN expression per field and row: for the inbound appliers'
batches (50 sessions, 6 fields) compiling it cost more than applying the messages (8 of 13 s in a
profile of 2,000 messages). Here, on PostgreSQL one UPDATE … FROM json_to_recordset(…) joins the
rows' new values by primary key (one statement to parse and plan, not one per row); on SQLite, which
runs in process, one prepared UPDATE … WHERE pk = ? executed for each row (`executemany`).

`recordset` and `rows_json` are the PostgreSQL half on their own, for a multi-row INSERT … SELECT
(the audit append): the rows travel as one JSON parameter there too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from functools import lru_cache
from uuid import UUID

from django.db import connection
from django.db.models import Model
from psycopg.types.json import Json, Jsonb


def update_rows(model: type[Model], rows: Sequence[Model], field_names: Iterable[str]) -> None:
    """UPDATE these saved rows' `field_names` to the values the instances hold now.

    Values go through each field's `get_db_prep_save` as in `save()`; a foreign key is written from
    its related instance's pk (which an instance INSERTed in the same transaction has by now).
    """
    if not rows:
        return
    meta = model._meta
    field_names = tuple(field_names)
    fields = [meta.get_field(name) for name in field_names]
    # Django's check of related instances (unsaved, or saved since they were assigned) acts on
    # relations alone, but compares each of the model's fields with each field it is given, for
    # every row: given only the relations, an UPDATE of 100 sessions' 6 fields takes 2.2–2.8 ms of
    # CPU, not 6.0 (bench/NOTES.md, issue 16, ninth pass).
    relations = [field for field in fields if field.is_relation]
    values = []
    for row in rows:
        if relations:  # (an empty list would mean "every field" to Django)
            row._prepare_related_fields_for_save(operation_name="update_rows", fields=relations)
        values.append([row.pk, *(field.get_db_prep_save(getattr(row, field.attname), connection) for field in fields)])
    quote = connection.ops.quote_name
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(_recordset_update_sql(model, field_names), [rows_json(values, keyed=True)])
        else:
            sets = ", ".join(f"{quote(field.column)} = %s" for field in fields)
            cursor.executemany(
                f"UPDATE {table} SET {sets} WHERE {pk} = %s",
                [[*row_values[1:], row_values[0]] for row_values in values],
            )


@lru_cache(maxsize=32)
def _recordset_update_sql(model: type[Model], field_names: tuple[str, ...]) -> str:
    """UPDATE … FROM json_to_recordset(%s): the rows' new values come as one JSON parameter.

    One parameter, not one per value: psycopg splits and quotes a statement's placeholders in
    Python (a regex over the statement, a literal per value), which cost ~90 µs a message row (100
    rows of 6 columns: 9 ms of a batch); and the statement is the same for every batch, so it is
    parsed once per process. Each column is declared with its own type; a JSON column travels as
    its JSON text (written by the field's own encoder) and is cast back.
    """
    meta = model._meta
    quote = connection.ops.quote_name
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    fields = [meta.get_field(name) for name in field_names]
    source, columns = recordset(fields, key=meta.pk)
    sets = [f"{quote(field.column)} = {column}" for field, column in zip(fields, columns, strict=True)]
    return f"UPDATE {table} SET {', '.join(sets)} FROM {source} WHERE {table}.{pk} = new_values.pk"


def recordset(fields: Sequence, *, key=None) -> tuple[str, list[str]]:
    """PostgreSQL: the rows of `rows_json` (its one parameter) as a table `new_values`, and each
    field's value in it as an expression. Each column is declared with its field's own type (a JSON
    column as text, cast back: its JSON text is what the field's encoder wrote); `key`'s column
    first, as `pk`; `new_values.n` is the row's place in the list (WITH ORDINALITY)."""
    names, types, columns = (["pk"], [_db_type(key)], []) if key is not None else ([], [], [])
    for index, field in enumerate(fields):
        db_type = _db_type(field)
        is_json = db_type == "jsonb"
        names.append(f"c{index}")
        types.append("text" if is_json else db_type)
        columns.append(f"new_values.c{index}{'::jsonb' if is_json else ''}")
    declared = ", ".join(f"{name} {db_type}" for name, db_type in zip(names, types, strict=True))
    source = f"ROWS FROM (json_to_recordset(%s) AS ({declared})) WITH ORDINALITY AS new_values ({', '.join(names)}, n)"
    return source, columns


def rows_json(values: list[list], *, keyed: bool = False) -> str:
    """The one parameter of `recordset`: each row's prepared values (with `keyed`, its pk first)."""
    count = len(values[0]) - keyed if values else 0
    names = ["pk"] * keyed + [f"c{index}" for index in range(count)]
    return json.dumps([dict(zip(names, row, strict=True)) for row in values], default=_json_default)


def _json_default(value):
    """A prepared value as the text its column type reads (what psycopg would have sent)."""
    if isinstance(value, Jsonb | Json):
        return (value.dumps or json.dumps)(value.obj)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    raise TypeError(f"update_rows: no JSON form for {type(value).__name__}")


def _db_type(field) -> str:
    return (field.target_field if field.is_relation else field).db_type(connection)
