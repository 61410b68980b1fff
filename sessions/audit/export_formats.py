"""Audit-log export formats: CSV, JSON Lines and XLSX, written in constant memory.

No database writes here: `sessions.services.audit_exports` owns the AuditExport rows and the
audit record of each export; this module turns a queryset into bytes (streamed) or a file.

CSV (and the XLSX sheet, read back from the same lines) is rendered by the database:
`exports_sql` compiles the filtered queryset into one SELECT whose single column is the whole CSV
line, and Python only joins the lines, hashes and writes them, a batch at a time (a Python loop
over ORM rows was 6-12x the database's own CSV dump). JSON Lines reads rows with
`values_list(...).iterator(chunk_size=...)` (a server-side cursor on PostgreSQL), never as model
instances. Either way nothing holds more than one batch.

The checksum (SHA-256) covers the data rows exactly as written:
- CSV: every line that does not start with `#`, i.e. the header row and the data rows
  (UTF-8, CRLF line ends): `grep -v '^#' export.csv | sha256sum`.
- JSON Lines: the data lines (each starts with `{"id":`), UTF-8, LF line ends:
  `grep '^{"id":' export.jsonl | sha256sum`.
- XLSX: the same selection written as CSV (the value a CSV export of the same selection carries).
Files carry the checksum in their header (CSV `# sha256:` comment line, the JSONL metadata line,
the XLSX "Export" sheet); a response streamed to the browser cannot, so it ends with a trailer
(`# sha256: …` for CSV, a `{"_trailer": {...}}` line for JSONL, which stays valid JSON Lines).
A file is written as `NAME.part` and renamed once complete: it never appears half written.

Spreadsheet formula injection: in CSV and XLSX, text cells starting with =, +, -, @, a tab or a
carriage return (also after leading spaces, and in the full-width forms ＝ ＋ － ＠) are prefixed with a
single quote (in SQL for CSV and XLSX, see `exports_sql`). The CSV's `#` comment lines and the JSON
Lines metadata are written so that no cell a spreadsheet may cut them into starts like a formula
(`inert_line`, `inert_json`); the XLSX metadata sheet's cells are neutralised like data cells.
CSV cells: free text and `data` always in double quotes (RFC 4180); `data` is the stored JSON text.

`outcome`, beside `data`, is the record's outcome in plain words, from `audit_outcomes.RULES` (read in
Python for JSON Lines, compiled into the SQL of the CSV lines, and so of the XLSX rows).
XLSX cells are typed: the record and stop request ids as numbers, `occurred_at` as an Excel
date-time in the portal's time zone (Excel has no zones: the header names it, "Occurred at
(Europe/Berlin)"), everything else as text (SessionID, EvseID, OperatorID, hashes are identifiers).
CSV and JSON Lines keep UTC with its offset.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import queue
import re
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from . import export_columns
from . import export_sql as exports_sql
from .outcomes import outcome_text

COLUMNS = export_columns.NAMES
_VALUES = export_columns.READ_PATHS
READ_CHUNK_SIZE = 2000
# Rows per chunk written (and per batch of CSV lines fetched): a few MB, then hashed and written.
ROWS_PER_WRITE = 5000
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
# What a spreadsheet may read as the start of a formula: also in their full-width forms (Excel and
# LibreOffice accept ＝ ＋ － ＠), and after leading spaces (they skip them).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
XLSX_MAX_CELL = 32_767
# Where a spreadsheet may cut a comment or metadata line into cells: "," and, in German and other
# locales, ";". A cell that starts there (after spaces and an opening quote) must not be a formula.
_CELL_BREAK = re.compile('([,;])(\\s*"?\\s*)(?=[' + "".join(re.escape(c) for c in FORMULA_STARTS) + "])")


def starts_like_formula(text: str) -> bool:
    return text.lstrip(" ").startswith(FORMULA_STARTS)


def neutralise(value: Any) -> Any:
    """Make a cell inert in a spreadsheet: text that could start a formula gets a leading quote."""
    if isinstance(value, str) and starts_like_formula(value):
        return "'" + value
    return value


def inert_line(line: str) -> str:
    """A comment or metadata line that no spreadsheet can turn into a formula, wherever it cuts it
    into cells: a quote goes before each piece that would start like one (the text stays readable)."""
    line = "'" + line if starts_like_formula(line) else line
    return _CELL_BREAK.sub(lambda match: match.group(1) + "'" + match.group(2), line)


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
    # The audit chain's head when the export began (also written as a signed anchor outside the
    # database): a later verification shows whether the trail still reaches it.
    chain_head: str = ""

    def pairs(self, sha256: str | None) -> list[tuple[str, str]]:
        covers = {
            "csv": "every line not starting with # (header row and data rows), UTF-8, CRLF",
            "jsonl": 'the data lines (those starting with {"id":), UTF-8, LF',
            "xlsx": "the same records exported as CSV: its header row and data rows (UTF-8, CRLF); "
            "the 'Audit log' sheet holds the same values, typed",
        }[self.format]
        zone = timezone.get_default_timezone_name()
        times = {
            "xlsx": f"'Occurred at' is local time in {zone} (Excel date-times carry no offset; the CSV and "
            "JSON Lines exports give UTC); the filters' days are days in " + zone,
        }.get(self.format, f"occurred_at is UTC (ISO 8601); the filters' days are days in {zone}")
        return [
            ("export", "EMP support portal audit log"),
            ("export_id", "" if self.export_id is None else str(self.export_id)),
            ("generated_at", self.generated_at.astimezone(UTC).isoformat(timespec="seconds")),
            ("generated_by", self.generated_by),
            ("filters", self.filter_summary),
            ("filters_json", json.dumps(self.filters, sort_keys=True, separators=(",", ":"))),
            ("rows", str(self.row_count)),
            ("audit_chain_head", self.chain_head),
            ("sha256", sha256 or "in the last line of this file"),
            ("sha256_covers", covers),
            ("columns", ",".join(COLUMNS)),
            ("times", times),
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
        (
            record_id,
            occurred_at,
            event_type,
            actor,
            session_id,
            evse_id,
            operator_id,
            stop_id,
            correlation_id,
            data,
            prev_hash,
            record_hash,
        ) = row
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
            outcome_text(event_type, data),
            data,
            prev_hash,
            record_hash,
        )


def _one_line(value: str) -> str:
    return " ".join(str(value).split())


# --- CSV -----------------------------------------------------------------------------------------


def _csv_header(info: ExportInfo, sha256: str | None) -> bytes:
    return "".join(inert_line(f"# {key}: {_one_line(value)}") + "\r\n" for key, value in info.pairs(sha256)).encode()


_HEADER_ROW = (",".join(COLUMNS) + "\r\n").encode()  # what csv.writer writes for these names


def _csv_chunks(records: QuerySet, result: ExportResult) -> Iterator[tuple[bytes, bytes]]:
    """(data lines, bytes to write) per chunk of ROWS_PER_WRITE rows, the lines rendered by the
    database; the header row goes before the first chunk. Hashed and counted as they go."""
    header = _HEADER_ROW
    for count, lines in exports_sql.line_chunks(records, ROWS_PER_WRITE):
        result.rows += count
        yield lines, result.add(header + lines if header else lines)
        header = b""
    if header:  # no rows: the header row alone
        yield b"", result.add(header)


def _csv_data(
    records: QuerySet, result: ExportResult, progress: Callable[[int], None] | None = None
) -> Iterator[bytes]:
    for lines, chunk in _csv_chunks(records, result):
        yield chunk
        if progress and lines:
            progress(result.rows)


def stream_csv(info: ExportInfo, records: QuerySet, result: ExportResult) -> Iterator[bytes]:
    yield _csv_header(info, None)
    yield from _csv_data(records, result)
    yield f"# rows_written: {result.rows}\r\n# sha256: {result.sha256}\r\n".encode()


# --- JSON Lines ----------------------------------------------------------------------------------


def _jsonl_meta(info: ExportInfo, sha256: str | None) -> bytes:
    meta = dict(info.pairs(sha256))
    meta["filters_json"] = info.filters
    meta["rows"] = info.row_count
    meta["sha256"] = sha256
    return (inert_json({"_meta": meta}) + "\n").encode()


_COMMA_STANDIN, _SEMICOLON_STANDIN = "\ue000", "\ue001"  # private-use characters, escaped by json.dumps


def inert_json(value: Any) -> str:
    """JSON text (one line) in which no spreadsheet finds a cell break inside a string: commas and
    semicolons in strings are written as the JSON escapes \\u002c and \\u003b (the same values for
    every JSON reader), and a string that starts like a formula gets a leading quote."""

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return neutralise(item).replace(",", _COMMA_STANDIN).replace(";", _SEMICOLON_STANDIN)
        if isinstance(item, dict):
            return {key: walk(member) for key, member in item.items()}
        if isinstance(item, (list, tuple)):
            return [walk(member) for member in item]
        return item

    text = json.dumps(walk(value), ensure_ascii=True, separators=(",", ":"))
    return text.replace("\\ue000", "\\u002c").replace("\\ue001", "\\u003b")


def _jsonl_data(
    rows: Iterable[tuple], result: ExportResult, progress: Callable[[int], None] | None = None
) -> Iterator[bytes]:
    lines: list[str] = []
    for row in rows:
        lines.append(json.dumps(dict(zip(COLUMNS, row, strict=True)), ensure_ascii=False, separators=(",", ":")))
        result.rows += 1
        if len(lines) >= ROWS_PER_WRITE:
            yield result.add(("\n".join(lines) + "\n").encode())
            lines = []
            if progress:
                progress(result.rows)
    if lines:
        yield result.add(("\n".join(lines) + "\n").encode())


def stream_jsonl(info: ExportInfo, records: QuerySet, result: ExportResult) -> Iterator[bytes]:
    yield _jsonl_meta(info, None)
    yield from _jsonl_data(export_rows(records), result)
    trailer = {"_trailer": {"rows_written": result.rows, "sha256": result.sha256}}
    yield (json.dumps(trailer, separators=(",", ":")) + "\n").encode()


STREAMERS = {"csv": stream_csv, "jsonl": stream_jsonl}


# --- files (background jobs, the command, XLSX) --------------------------------------------------


def write_file(
    path: Path, info: ExportInfo, records: QuerySet, progress: Callable[[int], None] | None = None
) -> ExportResult:
    """Write a complete export file with its checksum in the header; constant memory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    result = ExportResult()
    if info.format == "xlsx":
        _write_xlsx(path, info, records, result, progress)
        return result
    header_for = _csv_header if info.format == "csv" else _jsonl_meta
    part = path.with_name(path.name + ".part")
    try:
        with open(part, "wb") as out:
            # The header first, with a stand-in checksum, then the data (hashed as it goes), then the
            # real header over the stand-in: the same length unless the row count changed its
            # number of digits since the export was prepared (then the data is copied once).
            stand_in = header_for(info, "0" * 64)
            out.write(stand_in)
            _write_behind(
                out,
                _csv_data(records, result, progress)
                if info.format == "csv"
                else _jsonl_data(export_rows(records), result, progress),
            )
            info.row_count = result.rows
            header = header_for(info, result.sha256)
            if len(header) == len(stand_in):
                out.seek(0)
                out.write(header)
        if len(header) != len(stand_in):
            _rewrite_header(part, len(stand_in), header)
        os.replace(part, path)
    finally:
        if part.exists():
            os.unlink(part)
    return result


def _write_behind(out, chunks: Iterable[bytes]) -> None:
    """Write the chunks in order from a second thread: the disk write (which releases the GIL)
    overlaps the database producing the next chunk (SQLite releases it while stepping)."""
    pending: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
    failed: list[BaseException] = []

    def writer() -> None:
        while (chunk := pending.get()) is not None:
            if not failed:
                try:
                    out.write(chunk)
                except BaseException as error:  # noqa: BLE001 - handed to the producing thread
                    failed.append(error)

    thread = threading.Thread(target=writer, name="audit-export-writer", daemon=True)
    thread.start()
    try:
        for chunk in chunks:
            if failed:
                break
            pending.put(chunk)
    finally:
        pending.put(None)
        thread.join()
        if close := getattr(chunks, "close", None):
            close()  # a write failed: end the query now (PostgreSQL: its own connection), not at GC
    if failed:
        raise failed[0]


def _rewrite_header(path: Path, old_length: int, header: bytes) -> None:
    moved = path.with_name(path.name + ".data")
    os.replace(path, moved)
    try:
        with open(moved, "rb") as data, open(path, "wb") as out:
            out.write(header)
            data.seek(old_length)
            shutil.copyfileobj(data, out, 1024 * 1024)
    finally:
        os.unlink(moved)


def _xlsx_text(value: Any) -> Any:
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    if isinstance(value, str):
        value = ILLEGAL_CHARACTERS_RE.sub("", value)
        if len(value) > XLSX_MAX_CELL:
            value = value[: XLSX_MAX_CELL - 40] + " …[cut: see the CSV or JSONL export]"
    return value


# The sheet's header: what each column holds, the time zone of the times named (Excel has none).
def xlsx_headers() -> list[str]:
    return export_columns.xlsx_headers(timezone.get_default_timezone_name())


_XLSX_WIDTHS = export_columns.XLSX_WIDTHS
_XLSX_TIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
_ID, _OCCURRED, _STOP_ID = COLUMNS.index("id"), COLUMNS.index("occurred_at"), COLUMNS.index("stop_request_id")


def _xlsx_rows(sheet, lines: bytes, zone) -> Iterator[list[Any]]:
    """CSV lines read back as the sheet's rows, typed: the record and stop request ids as numbers,
    the time as an Excel date-time in `zone` (naive: Excel has no zones), every other cell as text
    (SessionID, EvseID, OperatorID, correlation id and hashes are identifiers, never numbers)."""
    from openpyxl.cell import WriteOnlyCell

    for cells in csv.reader(io.StringIO(lines.decode(), newline="")):
        row: list[Any] = [_xlsx_text(cell) for cell in cells]
        row[_ID] = int(cells[_ID])
        row[_STOP_ID] = int(cells[_STOP_ID]) if cells[_STOP_ID] else None
        occurred = WriteOnlyCell(
            sheet, value=datetime.fromisoformat(cells[_OCCURRED]).astimezone(zone).replace(tzinfo=None)
        )
        occurred.number_format = _XLSX_TIME_FORMAT
        row[_OCCURRED] = occurred
        yield row


def _write_xlsx(
    path: Path, info: ExportInfo, records: QuerySet, result: ExportResult, progress: Callable[[int], None] | None
) -> None:
    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter

    workbook = Workbook(write_only=True)
    meta_sheet = workbook.create_sheet("Export")
    data_sheet = workbook.create_sheet("Audit log")
    data_sheet.freeze_panes = "A2"
    for number, width in enumerate(_XLSX_WIDTHS, 1):
        data_sheet.column_dimensions[get_column_letter(number)].width = width
    data_sheet.append(xlsx_headers())
    zone = timezone.get_default_timezone()
    # The cells are the CSV export's lines read back, so the checksum is that of the same records
    # as CSV, and the neutralisation is the same.
    for lines, _chunk in _csv_chunks(records, result):
        for row in _xlsx_rows(data_sheet, lines, zone):
            data_sheet.append(row)
        if progress and lines:
            progress(result.rows)
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
