"""The audit append's statements as plain SQL, built once per database (and size of an append).

They run under the chain's lock on every audited change (`records.record_audits`), where the ORM's
query compilation cost more than the statements themselves (bench/NOTES.md, issue 16 dispatch).
"""

from __future__ import annotations

import functools

from django.db import connection

from ..models import AuditChainHead, AuditRecord


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

    On PostgreSQL it also moves the head in the same statement (a data-modifying CTE), one round
    trip fewer while the chain is locked; SQLite (in process, no round trip) moves it separately.
    """
    quote = connection.ops.quote_name
    fields = [AuditRecord._meta.get_field(name) for name in COLUMNS]
    columns = ", ".join(quote(field.column) for field in fields)
    values = ", ".join(["(" + ", ".join(["%s"] * len(fields)) + ")"] * rows)
    insert = f"INSERT INTO {quote(AuditRecord._meta.db_table)} ({columns}) VALUES {values} RETURNING id"
    if vendor != "postgresql":
        return insert
    head = quote(AuditChainHead._meta.db_table)
    return (
        f"WITH appended AS ({insert}), "
        f"moved AS (UPDATE {head} SET last_hash = %s, last_record_id = (SELECT MAX(id) FROM appended) WHERE id = %s) "
        "SELECT id FROM appended ORDER BY id"
    )


@functools.cache
def _prep_fields() -> tuple:
    return tuple(AuditRecord._meta.get_field(name) for name in COLUMNS)


def row_values(record: AuditRecord) -> list:
    """The record's column values as the database takes them (what bulk_create would send)."""
    return [field.get_db_prep_save(getattr(record, field.attname), connection) for field in _prep_fields()]
