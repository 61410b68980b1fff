"""Audit-log export formats: CSV, JSON Lines and XLSX, written in constant memory.

No database writes here: `sessions.services.audit_exports` owns the AuditExport rows and the
audit record of each export; this module turns a queryset into bytes (streamed) or a file.

Rows are read with `values_list(...).iterator(chunk_size=...)` (a server-side cursor on
PostgreSQL), never as model instances, and written through a small buffer.

The checksum (SHA-256) covers the data rows exactly as written:
- CSV: every line that does not start with `#`, i.e. the header row and the data rows
  (UTF-8, CRLF line ends): `grep -v '^#' export.csv | sha256sum`.
- JSON Lines: the data lines (each starts with `{"id":`), UTF-8, LF line ends:
  `grep '^{"id":' export.jsonl | sha256sum`.
- XLSX: the same rows written as CSV (the value a CSV export of the same selection carries).
Files carry the checksum in their header (CSV `# sha256:` comment line, the JSONL metadata line,
the XLSX "Export" sheet); a response streamed to the browser cannot, so it ends with a trailer
(`# sha256: …` for CSV, a `{"_trailer": {...}}` line for JSONL, which stays valid JSON Lines).

Spreadsheet formula injection: in CSV and XLSX, text cells starting with =, +, -, @, a tab or a
carriage return are prefixed with a single quote.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.db.models import QuerySet

COLUMNS = [
    "id",
    "occurred_at",
    "event_type",
    "actor",
    "session_id",
    "evse_id",
    "operator_id",
    "stop_request_id",
    "correlation_id",
    "data",
    "prev_hash",
    "record_hash",
]
_VALUES = (
    "id",
    "occurred_at",
    "event_type",
    "actor__username",
    "charging_session__session_id",
    "charging_session__evse_id",
    "charging_session__operator_id",
    "stop_request_id",
    "correlation_id",
    "data",
    "prev_hash",
    "record_hash",
)
READ_CHUNK_SIZE = 2000
ROWS_PER_WRITE = 500
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
XLSX_MAX_CELL = 32_767


def neutralise(value: Any) -> Any:
    """Make a cell inert in a spreadsheet: text that could start a formula gets a leading quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


@dataclass
class ExportInfo:
    """What every export says about itself."""

    export_id: int | None
    format: str
    filter_summary: str
    filters: dict[str, Any]
    row_count: int
    generated_by: str
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def pairs(self, sha256: str | None) -> list[tuple[str, str]]:
        covers = {
            "csv": "every line not starting with # (header row and data rows), UTF-8, CRLF",
            "jsonl": 'the data lines (those starting with {"id":), UTF-8, LF',
            "xlsx": "the rows of the 'Audit log' sheet written as CSV (UTF-8, CRLF), as in a CSV export",
        }[self.format]
        return [
            ("export", "EMP support portal audit log"),
            ("export_id", "" if self.export_id is None else str(self.export_id)),
            ("generated_at", self.generated_at.astimezone(UTC).isoformat(timespec="seconds")),
            ("generated_by", self.generated_by),
            ("filters", self.filter_summary),
            ("filters_json", json.dumps(self.filters, sort_keys=True, separators=(",", ":"))),
            ("rows", str(self.row_count)),
            ("sha256", sha256 or "in the last line of this file"),
            ("sha256_covers", covers),
            ("columns", ",".join(COLUMNS)),
        ]


@dataclass
class ExportResult:
    """Filled in while an export is written: the running checksum and the rows written."""

    rows: int = 0
    _hash: Any = field(default_factory=hashlib.sha256, repr=False)

    def add(self, chunk: bytes) -> bytes:
        self._hash.update(chunk)
        return chunk

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


def export_rows(records: QuerySet) -> Iterator[tuple]:
    """The selected records as plain tuples in COLUMNS order (data still a dict)."""
    for row in records.values_list(*_VALUES).iterator(chunk_size=READ_CHUNK_SIZE):
        (record_id, occurred_at, event_type, actor, session_id, evse_id, operator_id, stop_id, correlation_id,
         data, prev_hash, record_hash) = row
        yield (
            record_id,
            occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
            event_type,
            actor or "",
            session_id or "",
            evse_id or "",
            operator_id or "",
            stop_id,
            str(correlation_id) if correlation_id else "",
            data,
            prev_hash,
            record_hash,
        )


def _flat(row: tuple) -> list[Any]:
    values = list(row)
    values[9] = json.dumps(values[9], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return [neutralise(value) for value in values]


def _one_line(value: str) -> str:
    return " ".join(str(value).split())


# --- CSV -----------------------------------------------------------------------------------------


def _csv_header(info: ExportInfo, sha256: str | None) -> bytes:
    return "".join(f"# {key}: {_one_line(value)}\r\n" for key, value in info.pairs(sha256)).encode()


def _csv_data(rows: Iterable[tuple], result: ExportResult, progress: Callable[[int], None] | None = None) -> Iterator[bytes]:
    """The header row and the data rows, a few hundred rows per chunk, hashed as they go."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(_flat(row))
        result.rows += 1
        if result.rows % ROWS_PER_WRITE == 0:
            yield result.add(buffer.getvalue().encode())
            buffer.seek(0)
            buffer.truncate()
            if progress:
                progress(result.rows)
    yield result.add(buffer.getvalue().encode())


def stream_csv(info: ExportInfo, rows: Iterable[tuple], result: ExportResult) -> Iterator[bytes]:
    yield _csv_header(info, None)
    yield from _csv_data(rows, result)
    yield f"# rows_written: {result.rows}\r\n# sha256: {result.sha256}\r\n".encode()


# --- JSON Lines ----------------------------------------------------------------------------------


def _jsonl_meta(info: ExportInfo, sha256: str | None) -> bytes:
    meta = dict(info.pairs(sha256))
    meta["filters_json"] = info.filters
    meta["rows"] = info.row_count
    meta["sha256"] = sha256
    return (json.dumps({"_meta": meta}, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def _jsonl_data(rows: Iterable[tuple], result: ExportResult, progress: Callable[[int], None] | None = None) -> Iterator[bytes]:
    lines: list[str] = []
    for row in rows:
        lines.append(json.dumps(dict(zip(COLUMNS, row)), ensure_ascii=False, separators=(",", ":")))
        result.rows += 1
        if len(lines) >= ROWS_PER_WRITE:
            yield result.add(("\n".join(lines) + "\n").encode())
            lines = []
            if progress:
                progress(result.rows)
    if lines:
        yield result.add(("\n".join(lines) + "\n").encode())


def stream_jsonl(info: ExportInfo, rows: Iterable[tuple], result: ExportResult) -> Iterator[bytes]:
    yield _jsonl_meta(info, None)
    yield from _jsonl_data(rows, result)
    trailer = {"_trailer": {"rows_written": result.rows, "sha256": result.sha256}}
    yield (json.dumps(trailer, separators=(",", ":")) + "\n").encode()


STREAMERS = {"csv": stream_csv, "jsonl": stream_jsonl}


# --- files (background jobs, the command, XLSX) --------------------------------------------------


def write_file(path: Path, info: ExportInfo, rows: Iterable[tuple],
               progress: Callable[[int], None] | None = None) -> ExportResult:
    """Write a complete export file with its checksum in the header; constant memory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    result = ExportResult()
    if info.format == "xlsx":
        _write_xlsx(path, info, rows, result, progress)
        return result
    data_part = path.with_name(path.name + ".part")
    try:
        # The data first (hashing it), then the header that carries the checksum, then the data.
        with open(data_part, "wb") as out:
            chunks = _csv_data(rows, result, progress) if info.format == "csv" else _jsonl_data(rows, result, progress)
            for chunk in chunks:
                out.write(chunk)
        info.row_count = result.rows
        header = _csv_header(info, result.sha256) if info.format == "csv" else _jsonl_meta(info, result.sha256)
        with open(path, "wb") as out, open(data_part, "rb") as data:
            out.write(header)
            shutil.copyfileobj(data, out, 1024 * 1024)
    finally:
        if data_part.exists():
            os.unlink(data_part)
    return result


def _xlsx_text(value: Any) -> Any:
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    if isinstance(value, str):
        value = ILLEGAL_CHARACTERS_RE.sub("", value)
        if len(value) > XLSX_MAX_CELL:
            value = value[: XLSX_MAX_CELL - 40] + " …[cut: see the CSV or JSONL export]"
    return value


def _write_xlsx(path: Path, info: ExportInfo, rows: Iterable[tuple], result: ExportResult,
                progress: Callable[[int], None] | None) -> None:
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    meta_sheet = workbook.create_sheet("Export")
    data_sheet = workbook.create_sheet("Audit log")
    data_sheet.append(COLUMNS)
    # The checksum is that of the same rows as CSV, computed as they are written.
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for row in rows:
        flat = _flat(row)
        writer.writerow(flat)
        data_sheet.append([_xlsx_text(value) for value in flat])
        result.rows += 1
        if result.rows % ROWS_PER_WRITE == 0:
            result.add(buffer.getvalue().encode())
            buffer.seek(0)
            buffer.truncate()
            if progress:
                progress(result.rows)
    result.add(buffer.getvalue().encode())
    info.row_count = result.rows
    for key, value in info.pairs(result.sha256):
        meta_sheet.append([key, neutralise(_xlsx_text(value))])
    part = path.with_name(path.name + ".part")
    try:
        workbook.save(part)
        os.replace(part, path)
    finally:
        if part.exists():
            os.unlink(part)
