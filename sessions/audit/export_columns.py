"""The columns of an audit-log export, once: their names, what each reads, how SQL renders it, and
the XLSX header. The CSV and JSON Lines writers, the SQL that renders CSV lines and the XLSX sheet
all take them from here, so adding a column is a change in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str  # the CSV header and JSON Lines key
    path: str  # the ORM path read ("outcome": worded from event_type and data, not read)
    kind: str  # how the database renders it in a CSV line (sessions/audit/export_sql.py)
    label: str  # the XLSX header; "{zone}" is the portal's time zone
    width: int  # the XLSX column's width (characters)


SPEC = (
    Column("id", "id", "id", "Record id", 10),
    Column("occurred_at", "occurred_at", "datetime", "Occurred at ({zone})", 20),
    Column("event_type", "event_type", "plain", "Event type", 22),
    Column("actor", "actor__username", "text", "Actor", 14),
    Column("session_id", "charging_session__session_id", "text", "SessionID", 38),
    Column("evse_id", "charging_session__evse_id", "text", "EvseID", 22),
    Column("operator_id", "charging_session__operator_id", "text", "OperatorID", 11),
    Column("stop_request_id", "stop_request_id", "int", "Stop request id", 10),
    Column("correlation_id", "correlation_id", "uuid", "Correlation id", 38),
    Column("outcome", "outcome", "outcome", "Outcome", 56),
    Column("data", "data", "json", "Data (JSON)", 60),
    Column("prev_hash", "prev_hash", "plain", "Previous hash", 20),
    Column("record_hash", "record_hash", "plain", "Record hash", 20),
)
NAMES = [column.name for column in SPEC]
# What is read from the database, in SPEC order without the worded outcome.
READ_PATHS = tuple(column.path for column in SPEC if column.kind != "outcome")
# (cell kind, field path) in SPEC order, for the SQL rendering.
CELLS = tuple((column.kind, column.path) for column in SPEC)


XLSX_WIDTHS = [column.width for column in SPEC]


def xlsx_headers(zone: str) -> list[str]:
    return [column.label.format(zone=zone) for column in SPEC]
