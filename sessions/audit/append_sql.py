"""The audit append's statements as plain SQL, built once per database (and size of an append).

They run under the chain's lock on every audited change (`records.record_audits`), where the ORM's
query compilation cost more than the statements themselves (bench/NOTES.md, issue 16 dispatch).
"""

from __future__ import annotations

import functools

from django.db import connection

from ..models import AuditChainHead, AuditRecord
from ..row_updates import recordset, rows_json


@functools.cache
def head_sql(vendor: str) -> tuple[str, str]:
    table = connection.ops.quote_name(AuditChainHead._meta.db_table)
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""  # SQLite: BEGIN IMMEDIATE
    return (
        f"SELECT last_hash FROM {table} WHERE id = %s{lock}",
        f"UPDATE {table} SET last_hash = %s, last_record_id = %s WHERE id = %s",
    )


# The columns an append writes, in the order of `row_values`; the id comes from the INSERT's RETURNING.
COLUMNS = (
    "event_type",
    "occurred_at",
    "actor",
    "charging_session",
    "stop_request",
    "correlation_id",
    "data",
    "prev_hash",
    "record_hash",
    "key_id",
)


@functools.lru_cache(maxsize=64)
def insert_sql(vendor: str, rows: int) -> str:
    """The append's INSERT of `rows` records, built once per size: plain SQL for the same reason.

    On PostgreSQL the rows travel as one JSON parameter (`insert_params`): the same short statement
    for any number of records. It also moves the head (a data-modifying CTE), one round trip fewer
    while the chain is locked. A placeholder per value cost more than that under the lock: psycopg
    splits a statement longer than 4 KB or with more than 50 placeholders with a regular expression,
    in Python, on every call (5 ms for 200 records), and quotes each value as a literal (bench/NOTES.md,
    issue 16, eighth pass). SQLite binds in C, in process: VALUES rows there.
    """
    quote = connection.ops.quote_name
    fields = _prep_fields()
    columns = ", ".join(quote(field.column) for field in fields)
    table = quote(AuditRecord._meta.db_table)
    if vendor != "postgresql":
        values = ", ".join(["(" + ", ".join(["%s"] * len(fields)) + ")"] * rows)
        return f"INSERT INTO {table} ({columns}) VALUES {values} RETURNING id"
    source, selected = recordset(fields)
    head = quote(AuditChainHead._meta.db_table)
    # The ids follow the list's order (ORDER BY n): the caller pairs them with its records.
    insert = (
        f"INSERT INTO {table} ({columns}) SELECT {', '.join(selected)} FROM {source} ORDER BY new_values.n RETURNING id"
    )
    return (
        f"WITH appended AS ({insert}), "
        f"moved AS (UPDATE {head} SET last_hash = %s, last_record_id = (SELECT MAX(id) FROM appended) WHERE id = %s) "
        "SELECT id FROM appended ORDER BY id"
    )


def insert_params(vendor: str, rows: list[list], head_hash: str, head_pk: int) -> list:
    """The parameters of `insert_sql` for these rows (each `row_values`), and on PostgreSQL the head's."""
    if vendor != "postgresql":
        return [value for row in rows for value in row]
    return [rows_json(rows), head_hash, head_pk]


@functools.cache
def _prep_fields() -> tuple:
    return tuple(AuditRecord._meta.get_field(name) for name in COLUMNS)


def row_values(record: AuditRecord) -> list:
    """The record's column values as the database takes them (what bulk_create would send)."""
    return [field.get_db_prep_save(getattr(record, field.attname), connection) for field in _prep_fields()]
