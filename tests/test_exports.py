"""The audit-log export: what it selects, what each format contains, checksums, its own audit record."""

import csv
import hashlib
import io
import json
import time
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from unittest import mock

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from openpyxl import load_workbook

from sessions import roles, services, tasks
from sessions.audit import export_formats as exports
from sessions.audit.outcomes import outcome_text
from sessions.audit.selectors import AuditLogFilters, audit_log
from sessions.models import AuditExport, AuditRecord
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory, UserFactory

Event = AuditRecord.EventType
START = reverse("charging_sessions:audit-export-start")
PAGE = reverse("charging_sessions:audit-export")
OUTCOME, DATA = exports.COLUMNS.index("outcome"), exports.COLUMNS.index("data")


@pytest.fixture(autouse=True)
def export_dir(settings, tmp_path):
    settings.AUDIT_EXPORT_DIR = tmp_path / "exports"
    return settings.AUDIT_EXPORT_DIR


@pytest.fixture
def supervisor(db):
    return UserFactory(username="supervisor-x", role=roles.SUPERVISOR)


@pytest.fixture
def sup_client(client, supervisor):
    client.force_login(supervisor)
    return client


def local(day: date, hour=10):
    return timezone.make_aware(datetime.combine(day, datetime.min.time()) + timedelta(hours=hour))


def record(event=Event.SESSION_UPDATED, *, at=None, actor=None, charging_session=None, stop_request=None, **data):
    with mock.patch("django.utils.timezone.now", return_value=at or timezone.now()), transaction.atomic():
        return services.record_audit(
            event_type=event, actor=actor, charging_session=charging_session, stop_request=stop_request, data=data
        )


@pytest.fixture
def trail(db):
    """A small, varied audit trail over three days and two CPOs."""
    agent = UserFactory(username="agent-e", role=roles.AGENT)
    acc = ChargingSessionFactory(evse_id="DE*ACC*E100*1")
    fst = ChargingSessionFactory(evse_id="NL*FST*E200*1")
    stop = RemoteStopRequestFactory(charging_session=acc, requested_by=agent, case_reference="T-42")
    d1, d2, d3 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)
    records = {
        "created_acc": record(Event.SESSION_CREATED, at=local(d1, 0), charging_session=acc, note="first"),
        "created_fst": record(Event.SESSION_CREATED, at=local(d1, 23), charging_session=fst),
        "requested": record(Event.STOP_REQUESTED, at=local(d2), actor=agent, stop_request=stop, reason="CABLE_LOCKED"),
        "rejected": record(
            Event.STOP_REJECTED,
            at=local(d2, 11),
            stop_request=stop,
            oicp_code="501",
            request={"json": {"EvseID": acc.evse_id}},
            response={"status": 200},
        ),
        "updated_fst": record(Event.SESSION_UPDATED, at=local(d3, 23), charging_session=fst, text="naïve ✓"),
    }
    return {"agent": agent, "acc": acc, "fst": fst, "stop": stop, "days": (d1, d2, d3), **records}


def ids(queryset):
    return list(queryset.values_list("id", flat=True))


# --- what gets selected ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filters, expected",
    [
        ({}, ["created_acc", "created_fst", "requested", "rejected", "updated_fst"]),
        ({"date_from": 0, "date_to": 0}, ["created_acc", "created_fst"]),  # both ends of the local day
        ({"date_from": 1}, ["requested", "rejected", "updated_fst"]),
        ({"date_to": 1}, ["created_acc", "created_fst", "requested", "rejected"]),
        ({"event_type": Event.SESSION_CREATED}, ["created_acc", "created_fst"]),
        ({"actor": "agent-e"}, ["requested"]),
        ({"actor": "system"}, ["created_acc", "created_fst", "rejected", "updated_fst"]),
        ({"operator_id": "nl*fst"}, ["created_fst", "updated_fst"]),
        ({"q": "T-42"}, ["requested", "rejected"]),
        ({"q": "de*acc*e100"}, ["created_acc", "requested", "rejected"]),
        ({"q": "session"}, []),
    ],
)
def test_filters_select_exactly_the_matching_records(trail, filters, expected):
    days = trail["days"]
    values = {k: days[v] if k.startswith("date_") else v for k, v in filters.items()}
    assert ids(audit_log(filters=AuditLogFilters(**values))) == [trail[name].pk for name in expected]


def test_search_by_correlation_id_and_session_id(trail):
    by_correlation = AuditLogFilters(q=str(trail["stop"].correlation_id))
    assert ids(audit_log(filters=by_correlation)) == [trail["requested"].pk, trail["rejected"].pk]
    by_session = AuditLogFilters(q=trail["fst"].session_id.upper())
    assert ids(audit_log(filters=by_session)) == [trail["created_fst"].pk, trail["updated_fst"].pk]


def test_the_page_shows_what_will_be_exported_before_it_starts(sup_client, trail):
    page = sup_client.get(PAGE, {"date_from": "2026-03-02", "date_to": "2026-03-02", "event_type": "STOP_REJECTED"})
    content = page.content.decode()
    assert page.context["row_count"] == 1
    assert "from 2026-03-02 to 2026-03-02" in content and "Stop rejected (STOP_REJECTED)" in content
    assert "Export 1 record" in content and 'value="STOP_REJECTED"' in content
    assert not AuditExport.objects.exists()


def test_bad_dates_are_said_next_to_the_field(sup_client, trail):
    content = sup_client.get(PAGE, {"date_from": "2026-03-03", "date_to": "2026-03-01"}).content.decode()
    assert "“To” is before “From”." in content and 'aria-invalid="true"' in content


# --- formats, read back ---------------------------------------------------------------------------


def start(client, fmt, **filters):
    response = client.post(START, {"format": fmt, **filters})
    assert response.status_code == 200, response.content[:500]
    body = b"".join(response.streaming_content) if response.streaming else b"".join(response)
    return response, body


def expected_rows(trail, names):
    return [AuditRecord.objects.select_related("actor", "charging_session").get(pk=trail[n].pk) for n in names]


def test_csv_read_back(sup_client, trail, supervisor):
    response, body = start(sup_client, "csv", date_to="2026-03-02")
    assert response["Content-Type"].startswith("text/csv") and "attachment" in response["Content-Disposition"]
    text = body.decode()
    lines = text.splitlines(keepends=True)
    meta = dict(line[2:].strip().split(": ", 1) for line in lines if line.startswith("#"))
    data_lines = [line for line in lines if not line.startswith("#")]
    rows = list(csv.reader(io.StringIO("".join(data_lines))))
    assert rows[0] == exports.COLUMNS
    wanted = expected_rows(trail, ["created_acc", "created_fst", "requested", "rejected"])
    assert [int(row[0]) for row in rows[1:]] == [r.pk for r in wanted]
    for row, rec in zip(rows[1:], wanted, strict=True):
        assert row[1] == rec.occurred_at.astimezone(UTC).isoformat(timespec="microseconds")
        assert row[2] == rec.event_type and row[3] == (rec.actor.username if rec.actor else "")
        assert row[4] == rec.charging_session.session_id and row[5] == rec.charging_session.evse_id
        assert row[OUTCOME] == outcome_text(rec.event_type, rec.data)
        assert json.loads(row[DATA]) == rec.data and (row[11], row[12]) == (rec.prev_hash, rec.record_hash)
    export = AuditExport.objects.get()
    checksum = hashlib.sha256("".join(data_lines).encode()).hexdigest()
    assert meta["sha256"] == checksum == export.sha256  # the trailer line
    assert meta["rows"] == "4" and meta["rows_written"] == "4" and meta["generated_by"] == supervisor.username
    assert "up to 2026-03-02" in meta["filters"] and json.loads(meta["filters_json"])["date_to"] == "2026-03-02"
    assert lines[-1].startswith("# sha256: ")
    assert (export.state, export.row_count, export.format) == (AuditExport.State.DONE, 4, "csv")


def test_jsonl_read_back(sup_client, trail):
    _, body = start(sup_client, "jsonl", operator="NL*FST")
    lines = body.decode().splitlines(keepends=True)
    meta, trailer = json.loads(lines[0])["_meta"], json.loads(lines[-1])["_trailer"]
    records = [json.loads(line) for line in lines[1:-1]]
    wanted = expected_rows(trail, ["created_fst", "updated_fst"])
    assert [r["id"] for r in records] == [w.pk for w in wanted]
    assert list(records[0]) == exports.COLUMNS
    assert records[1]["data"] == {"text": "naïve ✓"} and records[1]["operator_id"] == "NL*FST"
    assert records[1]["record_hash"] == wanted[1].record_hash
    checksum = hashlib.sha256("".join(lines[1:-1]).encode()).hexdigest()
    assert trailer == {"rows_written": 2, "sha256": checksum}
    assert meta["rows"] == 2 and meta["sha256"] is None and meta["filters_json"]["operator_id"] == "NL*FST"
    assert AuditExport.objects.get().sha256 == checksum


def test_xlsx_read_back_and_its_checksum_is_that_of_the_same_rows_as_csv(sup_client, trail):
    filters = {"event_type": Event.SESSION_CREATED}
    response, body = start(sup_client, "xlsx", **filters)
    assert response["Content-Type"] == exports.CONTENT_TYPES["xlsx"]
    workbook = load_workbook(io.BytesIO(body), read_only=True)
    assert workbook.sheetnames == ["Export", "Audit log"]
    meta = {row[0]: row[1] for row in workbook["Export"].iter_rows(values_only=True)}
    rows = list(workbook["Audit log"].iter_rows(values_only=True))
    assert list(rows[0]) == exports.xlsx_headers() and rows[0][1] == "Occurred at (Europe/Berlin)"
    assert [row[0] for row in rows[1:]] == [trail["created_acc"].pk, trail["created_fst"].pk]
    assert json.loads(rows[1][DATA]) == {"note": "first"}
    assert "Europe/Berlin" in meta["times"]
    xlsx_export = AuditExport.objects.get()
    assert meta["sha256"] == xlsx_export.sha256 and meta["rows"] == "2" and meta["generated_by"] == "supervisor-x"
    start(sup_client, "csv", **filters)
    assert AuditExport.objects.latest("pk").sha256 == xlsx_export.sha256


def test_xlsx_cells_are_typed_numbers_times_and_identifiers_as_text(sup_client, trail):
    """Numbers as numbers, times as Excel date-times in the portal's zone (named in the header),
    identifiers as text even when they look like numbers."""
    numeric = ChargingSessionFactory(evse_id="DE*123*E1*1", operator_id="DE*123")
    berlin_summer = datetime(2026, 7, 1, 21, 30, 5, 250000, tzinfo=UTC)  # 23:30:05.25 in Berlin
    special = record(
        Event.STOP_FAILED,
        at=berlin_summer,
        stop_request=trail["stop"],
        charging_session=numeric,
        attempt=3,
        oicp_code="310",
    )
    _, body = start(sup_client, "xlsx", q=str(trail["stop"].correlation_id))
    sheet = load_workbook(io.BytesIO(body))["Audit log"]
    header = [cell.value for cell in sheet[1]]
    rows = {row[0].value: row for row in sheet.iter_rows(min_row=2)}
    row = rows[special.pk]
    cell = dict(zip(exports.COLUMNS, row, strict=True))
    assert cell["id"].data_type == "n" and cell["id"].value == special.pk
    assert cell["stop_request_id"].data_type == "n" and cell["stop_request_id"].value == trail["stop"].pk
    assert cell["occurred_at"].is_date and cell["occurred_at"].value == datetime(2026, 7, 1, 23, 30, 5, 250000)
    assert cell["occurred_at"].number_format == "yyyy-mm-dd hh:mm:ss"
    assert header[1] == "Occurred at (Europe/Berlin)"
    for name in (
        "event_type",
        "session_id",
        "evse_id",
        "operator_id",
        "correlation_id",
        "outcome",
        "data",
        "prev_hash",
        "record_hash",
    ):
        assert cell[name].data_type == "s", name
    assert cell["outcome"].value == "Stop failed: 310 Partner did not respond (attempt 3 of 3)"
    assert cell["correlation_id"].value == str(trail["stop"].correlation_id)
    winter = rows[trail["requested"].pk]
    assert winter[1].value == datetime(2026, 3, 2, 10, 0)  # local 10:00 (UTC+01:00) as the trail was written
    assert sheet.freeze_panes == "A2"


def test_formula_injection_is_neutralised_in_csv_and_xlsx(sup_client, db):
    for prefix in ("=", "+", "-", "@", "\t", "\r"):
        assert exports.neutralise(prefix + "1+1") == "'" + prefix + "1+1"
    assert exports.neutralise("DE*ACC") == "DE*ACC" and exports.neutralise(7) == 7 and exports.neutralise(None) is None
    evil = {
        '=HYPERLINK("http://x")': ChargingSessionFactory(evse_id="\tDE*ACC*E1*1"),
        "+1": ChargingSessionFactory(evse_id="\rDE*ACC*E2*1"),
        "-2": None,
        "@SUM(A1)": None,
    }
    for username, cs in evil.items():
        record(actor=UserFactory(username=username), charging_session=cs)
    _, body = start(sup_client, "csv", event_type=Event.SESSION_UPDATED)
    rows = list(
        csv.reader(io.StringIO("".join(line for line in body.decode().splitlines(True) if not line.startswith("#"))))
    )
    assert [row[3] for row in rows[1:]] == ["'" + name for name in evil]
    assert [row[5] for row in rows[1:3]] == ["'\tDE*ACC*E1*1", "'\rDE*ACC*E2*1"]
    _, xlsx = start(sup_client, "xlsx", event_type=Event.SESSION_UPDATED)
    sheet = list(load_workbook(io.BytesIO(xlsx))["Audit log"].iter_rows(values_only=True))
    assert [row[3] for row in sheet[1:]] == ["'" + name for name in evil]
    assert not any(str(cell).startswith("=") for row in sheet for cell in row if cell is not None)


# --- CSV lines rendered by the database: the same cells as the Python writer wrote ----------------


def csv_rows(body: bytes) -> list[list[str]]:
    """The header row and data rows of a CSV export, read back as a spreadsheet would."""
    data = "".join(line for line in body.decode().splitlines(keepends=True) if not line.startswith("#"))
    return list(csv.reader(io.StringIO(data, newline="")))


def data_lines(body: bytes) -> bytes:
    return b"".join(line for line in body.splitlines(keepends=True) if not line.startswith(b"#"))


def reference_cells(rec: AuditRecord) -> list[str]:
    """What the export wrote before the database rendered it: csv.writer over the ORM's values,
    every text cell neutralised (`data` compared parsed: it is written as stored)."""
    cs = rec.charging_session
    values = [
        rec.pk,
        rec.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        rec.event_type,
        rec.actor.username if rec.actor else "",
        cs.session_id if cs else "",
        cs.evse_id if cs else "",
        cs.operator_id if cs else "",
        rec.stop_request_id or "",
        str(rec.correlation_id) if rec.correlation_id else "",
        outcome_text(rec.event_type, rec.data),
        None,
        rec.prev_hash,
        rec.record_hash,
    ]
    return [str(exports.neutralise(value)) if value is not None else None for value in values]


def assert_rows_match(rows: list[list[str]], records: list[AuditRecord]) -> None:
    assert rows[0] == exports.COLUMNS
    assert len(rows) == len(records) + 1
    for row, rec in zip(rows[1:], records, strict=True):
        expected = reference_cells(rec)
        assert row[:DATA] + row[DATA + 1 :] == expected[:DATA] + expected[DATA + 1 :], rec.pk
        assert json.loads(row[DATA].removeprefix("'")) == rec.data


def stream_export(filters: AuditLogFilters, fmt="csv", user=None) -> bytes:
    export = services.prepare_audit_export(
        filters=filters, export_format=fmt, acting_user=user or UserFactory(username="exporter")
    )
    return b"".join(services.stream_audit_export(export=export))


def all_records() -> list[AuditRecord]:
    return list(AuditRecord.objects.select_related("actor", "charging_session").order_by("id"))


DANGEROUS_STARTS = ("=", "+", "-", "@", "\t", "\r")


@pytest.mark.parametrize("first", DANGEROUS_STARTS)
def test_each_free_text_cell_is_neutralised_for_each_dangerous_first_character(db, first):
    cs = ChargingSessionFactory(session_id=f"{first}sid", evse_id=f"{first}DE*X*E1*1", operator_id=f"{first}DE*X")
    record(actor=UserFactory(username=f"{first}user"), charging_session=cs, note=f"{first}not the first")
    AuditRecord.objects.create(event_type=Event.SESSION_UPDATED, occurred_at=timezone.now(), data=-1)  # JSON text "-1"
    safe = record(charging_session=ChargingSessionFactory(evse_id="DE*OK*E1*1"), note="=inside")
    records = all_records()
    rows = csv_rows(stream_export(AuditLogFilters(max_id=safe.pk)))
    assert rows[1][3:7] == [f"'{first}user", f"'{first}sid", f"'{first}DE*X*E1*1", f"'{first}DE*X"]
    assert json.loads(rows[1][DATA]) == {"note": f"{first}not the first"}  # JSON starts with {
    assert rows[2][DATA] == "'-1"
    assert rows[3][5] == "DE*OK*E1*1" and not rows[3][3].startswith("'")
    assert_rows_match(rows, records)


AWKWARD = [
    'comma, "quoted" and ""doubled""',
    "line\nfeed and\r\ncrlf and lone\rcr",
    "tab\there, back\\slash, \\n not a newline, \\\\ two",
    "naïve ✓ Ünïcødé 東京 🚗 \u2028 end",
    "trailing space ",
    "",
]


def test_quotes_commas_newlines_backslashes_and_unicode_round_trip(db):
    for n, text in enumerate(AWKWARD):
        cs = ChargingSessionFactory(evse_id=f"DE*{n}{text[:30]}", operator_id=text[:10])
        record(
            actor=UserFactory(username=text[:150] or "blank-name"),
            charging_session=cs,
            text=text,
            nested={"list": [text, 1, None, True], "ctl": "\x01\x1f"},
        )
    records = all_records()
    body = stream_export(AuditLogFilters())
    rows = csv_rows(body)
    assert_rows_match(rows, records)
    assert rows[2][DATA] and json.loads(rows[2][DATA])["text"] == AWKWARD[1]
    assert rows[3][5] == "DE*2" + AWKWARD[2][:30]
    # Records end in CRLF; the LF and CR inside quoted cells stay as they were.
    lines = data_lines(body)
    assert lines.startswith((",".join(exports.COLUMNS) + "\r\n").encode()) and lines.endswith(b"\r\n")


def test_times_in_utc_with_microseconds_and_correlation_ids_with_dashes(db):
    stop = RemoteStopRequestFactory()
    whole_second = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    first = record(Event.STOP_REQUESTED, at=whole_second, stop_request=stop)
    second = record(at=datetime(2026, 7, 1, 23, 59, 59, 120, tzinfo=UTC).astimezone(timezone.get_current_timezone()))
    rows = csv_rows(stream_export(AuditLogFilters(max_id=second.pk)))
    assert rows[1][1] == "2026-01-02T03:04:05.000000+00:00"
    assert rows[2][1] == "2026-07-01T23:59:59.000120+00:00"
    assert rows[1][7] == str(stop.pk) and rows[1][8] == str(stop.correlation_id) and "-" in rows[1][8]
    assert rows[2][7] == rows[2][8] == ""
    assert_rows_match(rows, [AuditRecord.objects.get(pk=first.pk), AuditRecord.objects.get(pk=second.pk)])


@pytest.mark.parametrize(
    "filters, expected",
    [
        ({"date_from": 0, "date_to": 0}, ["created_acc", "created_fst"]),
        ({"date_to": 1}, ["created_acc", "created_fst", "requested", "rejected"]),
        ({"event_type": Event.SESSION_CREATED}, ["created_acc", "created_fst"]),
        ({"actor": "agent-e"}, ["requested"]),
        ({"actor": "system"}, ["created_acc", "created_fst", "rejected", "updated_fst"]),
        ({"operator_id": "nl*fst"}, ["created_fst", "updated_fst"]),
        ({"q": "T-42"}, ["requested", "rejected"]),
        ({"q": "de*acc*e100"}, ["created_acc", "requested", "rejected"]),
        ({"q": "session"}, []),
    ],
)
def test_the_csv_lines_apply_the_filters(trail, supervisor, filters, expected):
    days = trail["days"]
    values = {k: days[v] if k.startswith("date_") else v for k, v in filters.items()}
    rows = csv_rows(stream_export(AuditLogFilters(**values), user=supervisor))
    assert_rows_match(rows, expected_rows(trail, expected))


def test_the_csv_lines_are_built_by_the_database_not_by_a_python_csv_writer(trail, supervisor):
    with (
        mock.patch("csv.writer", side_effect=AssertionError("a Python CSV loop")),
        mock.patch.object(exports, "neutralise", side_effect=AssertionError("a Python cell loop")),
    ):
        body = stream_export(AuditLogFilters(), user=supervisor)
    assert_rows_match(
        csv_rows(body), expected_rows(trail, ["created_acc", "created_fst", "requested", "rejected", "updated_fst"])
    )


@pytest.mark.parametrize("count", [0, 1, 4, 5])
def test_chunks_of_lines_add_up_whatever_the_chunk_boundaries(db, count):
    for n in range(count):
        record(n=n, text=f"row {n}\nsecond line")
    with mock.patch.object(exports, "ROWS_PER_WRITE", 2):
        body = stream_export(AuditLogFilters())
    rows = csv_rows(body)
    assert [json.loads(row[DATA])["n"] for row in rows[1:]] == list(range(count))
    trailer = dict(line[2:].split(": ", 1) for line in body.decode().splitlines()[-2:])
    assert trailer == {"rows_written": str(count), "sha256": hashlib.sha256(data_lines(body)).hexdigest()}


def test_streamed_and_file_exports_carry_the_same_lines_and_checksum(trail, supervisor, tmp_path):
    streamed = stream_export(AuditLogFilters(date_from=trail["days"][1], date_to=trail["days"][2]), user=supervisor)
    call_command("export_audit", "--from", "2026-03-02", "--to", "2026-03-03", "--output", str(tmp_path / "a.csv"))
    written = (tmp_path / "a.csv").read_bytes()
    assert data_lines(written) == data_lines(streamed)
    header = dict(line[2:].split(": ", 1) for line in written.decode().splitlines() if line.startswith("# "))
    assert header["sha256"] == hashlib.sha256(data_lines(written)).hexdigest()
    assert header["rows"] == "3" and header["generated_by"] == "system"


def test_a_file_appears_only_when_complete_and_a_changed_row_count_still_gets_a_true_header(trail, tmp_path):
    path = tmp_path / "out.csv"
    seen = []
    original = exports.exports_sql.line_chunks

    def watching(records, rows):
        for chunk in original(records, rows):
            seen.append(path.exists())
            yield chunk

    # The header is sized for 9 rows (one digit); 5 are written... and for 10 000, a digit more.
    for claimed in (9, 10_000):
        path.unlink(missing_ok=True)
        info = exports.ExportInfo(
            export_id=1, format="csv", filter_summary="all", filters={}, row_count=claimed, generated_by="test"
        )
        with mock.patch.object(exports.exports_sql, "line_chunks", watching):
            result = exports.write_file(path, info, audit_log(filters=AuditLogFilters()))
        body = path.read_bytes()
        header = dict(line[2:].split(": ", 1) for line in body.decode().splitlines() if line.startswith("# "))
        assert header["rows"] == "5" and header["sha256"] == result.sha256
        assert result.sha256 == hashlib.sha256(data_lines(body)).hexdigest()
        assert len(csv_rows(body)) == 6 and not list(tmp_path.glob("*.part*"))
    assert seen and not any(seen)


def test_a_failed_write_stops_the_query_and_leaves_no_file(trail, tmp_path):
    closed = []

    def chunks():
        try:
            yield from (b"one", b"two", b"three", b"four")
        finally:
            closed.append(True)

    class FullDisk:
        def write(self, chunk):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        exports._write_behind(FullDisk(), chunks())
    assert closed == [True]
    info = exports.ExportInfo(
        export_id=1, format="csv", filter_summary="all", filters={}, row_count=5, generated_by="test"
    )
    with mock.patch.object(exports, "_write_behind", side_effect=OSError("disk full")), pytest.raises(OSError):
        exports.write_file(tmp_path / "x.csv", info, audit_log(filters=AuditLogFilters()))
    assert list(tmp_path.iterdir()) == []


# --- every export is itself on the record ---------------------------------------------------------


def test_each_export_is_an_audit_record(sup_client, trail, supervisor):
    start(sup_client, "jsonl", event_type=Event.STOP_REQUESTED, actor="agent-e")
    export = AuditExport.objects.get()
    audit = AuditRecord.objects.get(event_type=Event.AUDIT_EXPORTED)
    assert audit.actor == supervisor
    assert audit.data["export_id"] == export.pk and audit.data["format"] == "jsonl"
    assert audit.data["row_count"] == 1 and audit.data["sha256"] == export.sha256 and audit.data["completed"] is True
    assert audit.data["filters"]["actor"] == "agent-e" and audit.data["filters"]["event_types"] == ["STOP_REQUESTED"]
    assert "actor agent-e" in audit.data["filter_summary"]
    assert services.verify_audit_chain().ok  # the export's record is chained like any other


def test_an_interrupted_download_is_recorded_as_such(trail, supervisor):
    export = services.prepare_audit_export(filters=AuditLogFilters(), export_format="csv", acting_user=supervisor)
    with mock.patch.object(exports, "ROWS_PER_WRITE", 2):
        stream = services.stream_audit_export(export=export)
        next(stream), next(stream)  # the header, then the first two rows
        stream.close()  # the browser went away
    export.refresh_from_db()
    assert export.state == AuditExport.State.FAILED and "stopped after 2 rows" in export.error
    audit = AuditRecord.objects.get(event_type=Event.AUDIT_EXPORTED)
    assert audit.data["completed"] is False and audit.data["row_count"] == 2 and audit.data["sha256"] is None
    with pytest.raises(ValueError):
        next(services.stream_audit_export(export=export))  # an export runs once


# --- large exports: a background job with progress, then a download -------------------------------


def test_a_large_export_runs_in_the_background(
    sup_client, trail, settings, supervisor, django_capture_on_commit_callbacks
):
    settings.AUDIT_EXPORT_SYNC_MAX_ROWS = 3
    with (
        mock.patch("sessions.tasks.export_audit_log.apply_async") as apply_async,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = sup_client.post(START, {"format": "csv"})
    export = AuditExport.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "charging_sessions:audit-export-detail", args=[export.pk]
    )
    apply_async.assert_called_once_with(args=[export.pk], retry=False)
    detail = reverse("charging_sessions:audit-export-detail", args=[export.pk])
    queued = sup_client.get(detail, HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 2s"' in queued and "<html" not in queued
    AuditExport.objects.filter(pk=export.pk).update(state=AuditExport.State.RUNNING, rows_done=2)
    running = sup_client.get(detail, HTTP_HX_REQUEST="true").content.decode()
    assert "2 of 5 records written" in running and 'value="40"' in running
    AuditExport.objects.filter(pk=export.pk).update(state=AuditExport.State.QUEUED, rows_done=0)

    with (
        mock.patch("sessions.audit.export_jobs.PROGRESS_EVERY_ROWS", 2),
        mock.patch.object(exports, "ROWS_PER_WRITE", 2),
        mock.patch(
            "sessions.audit.export_jobs.AuditExport.objects.filter", wraps=AuditExport.objects.filter
        ) as progress_updates,
    ):
        tasks.export_audit_log(export.pk)  # what the worker runs
    assert progress_updates.call_count >= 3  # the claim and at least two progress updates
    export.refresh_from_db()
    assert (export.state, export.row_count, export.rows_done) == (AuditExport.State.DONE, 5, 5)
    path = settings.AUDIT_EXPORT_DIR / export.file_name
    lines = path.read_bytes().decode().splitlines(keepends=True)
    header = dict(line[2:].strip().split(": ", 1) for line in lines if line.startswith("#"))
    assert (
        header["sha256"]
        == export.sha256
        == hashlib.sha256("".join(line for line in lines if not line.startswith("#")).encode()).hexdigest()
    )
    assert not lines[-1].startswith("#")  # a file carries its checksum in the header, no trailer

    done = sup_client.get(detail).content.decode()
    assert export.sha256 in done and "every 2s" not in done and "Download" in done
    download = sup_client.get(reverse("charging_sessions:audit-export-download", args=[export.pk]))
    assert download.status_code == 200 and b"".join(download.streaming_content) == path.read_bytes()
    deliveries = list(
        AuditRecord.objects.filter(event_type=Event.AUDIT_EXPORTED)
        .order_by("id")
        .values_list("data__delivery", flat=True)
    )
    assert deliveries == ["file", "file downloaded"]
    tasks.export_audit_log(export.pk)  # a redelivered message changes nothing
    assert AuditRecord.objects.filter(event_type=Event.AUDIT_EXPORTED).count() == 2


def test_a_failed_job_says_why(trail, supervisor, settings):
    export = services.prepare_audit_export(filters=AuditLogFilters(), export_format="jsonl", acting_user=supervisor)
    with (
        mock.patch("sessions.audit.export_formats.write_file", side_effect=OSError("disk full")),
        pytest.raises(OSError),
    ):
        services.write_audit_export(export_id=export.pk)
    export.refresh_from_db()
    assert export.state == AuditExport.State.FAILED and "disk full" in export.error


def test_queueing_without_a_broker_marks_the_export_failed(trail, supervisor, django_capture_on_commit_callbacks):
    export = services.prepare_audit_export(filters=AuditLogFilters(), export_format="csv", acting_user=supervisor)
    with (
        mock.patch("sessions.tasks.export_audit_log.apply_async", side_effect=ConnectionError("no redis")),
        django_capture_on_commit_callbacks(execute=True),
    ):
        services.queue_audit_export(export=export)
    export.refresh_from_db()
    assert export.state == AuditExport.State.FAILED and "no redis" in export.error


def test_export_command_writes_the_same_file(trail, tmp_path):
    out = tmp_path / "march.jsonl"
    call_command(
        "export_audit",
        "--from",
        "2026-03-01",
        "--to",
        "2026-03-01",
        "--format",
        "jsonl",
        "--output",
        str(out),
        "--user",
        "agent-e",
    )
    lines = out.read_text().splitlines(keepends=True)
    meta = json.loads(lines[0])["_meta"]
    assert [json.loads(line)["id"] for line in lines[1:]] == [trail["created_acc"].pk, trail["created_fst"].pk]
    assert meta["sha256"] == hashlib.sha256("".join(lines[1:]).encode()).hexdigest() == AuditExport.objects.get().sha256
    assert meta["generated_by"] == "agent-e" and meta["rows"] == 2
    audit = AuditRecord.objects.get(event_type=Event.AUDIT_EXPORTED)
    assert audit.data["delivery"] == "command" and audit.data["output"] == str(out) and audit.actor == trail["agent"]


def test_export_command_refuses_bad_dates(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="not a date"):
        call_command("export_audit", "--from", "March", "--to", "2026-03-01")


# --- 200,000 rows: memory and queries stay bounded ------------------------------------------------


def _bulk_records(count):
    """Rows straight into the table with executemany (no chain: this test does not verify it)."""
    occurred = connection.ops.adapt_datetimefield_value(timezone.now())
    sql = (
        f"INSERT INTO {AuditRecord._meta.db_table} (event_type, occurred_at, data, prev_hash, record_hash, key_id) "
        f"VALUES (%s, %s, %s, '', '', '')"
    )  # data: canonical JSON text, as the portal stores it
    note = "x" * 40
    with connection.cursor() as cursor:
        for start in range(0, count, 20_000):
            cursor.executemany(
                sql,
                [
                    (Event.SESSION_UPDATED, occurred, f'{{"n":{n},"note":"{note}"}}')
                    for n in range(start, min(start + 20_000, count))
                ],
            )


def _stream(client, **filters):
    """Consume the streamed export chunk by chunk, keeping only a running checksum."""
    response = client.post(START, {"format": "csv", **filters})
    digest, size = hashlib.sha256(), 0
    for chunk in response.streaming_content:
        digest.update(chunk)
        size += len(chunk)
    return size


@pytest.mark.slow
def test_an_export_of_200000_rows_streams_in_bounded_memory_and_queries(sup_client, settings):
    settings.AUDIT_EXPORT_SYNC_MAX_ROWS = 1_000_000
    rows = 200_000
    _bulk_records(rows)
    record(Event.STOP_REQUESTED, note="the small selection")
    _stream(sup_client, event_type=Event.STOP_REQUESTED)  # the session's first request does more

    with CaptureQueriesContext(connection) as small_queries:
        _stream(sup_client, event_type=Event.STOP_REQUESTED)

    started = time.monotonic()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        with CaptureQueriesContext(connection) as big_queries:
            size = _stream(sup_client, event_type=Event.SESSION_UPDATED)
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    export = AuditExport.objects.latest("pk")
    assert (export.state, export.row_count) == (AuditExport.State.DONE, rows)
    assert size > rows * 100  # the data really went through
    assert peak < 50 * 1024 * 1024, f"peak memory growth {peak / 1e6:.1f} MB"
    assert len(big_queries) == len(small_queries), [q["sql"][:80] for q in big_queries.captured_queries]
    assert time.monotonic() - started < 60


@pytest.mark.django_db(transaction=True)
def test_an_export_outside_a_transaction_reports_progress_while_it_reads(tmp_path):
    """In autocommit (the worker, the command) PostgreSQL's COPY runs on a connection of its own,
    so the progress UPDATE between chunks has the portal's connection to itself."""
    supervisor = UserFactory(username="supervisor-t", role=roles.SUPERVISOR)
    for n in range(7):
        record(n=n, text=f"row {n}, \\ \t\n")
    export = services.prepare_audit_export(filters=AuditLogFilters(), export_format="csv", acting_user=supervisor)
    seen_progress = []
    real_filter = AuditExport.objects.filter

    def progress_filter(*args, **kwargs):
        queryset = real_filter(*args, **kwargs)
        seen_progress.append(AuditExport.objects.values_list("rows_done", flat=True).get(pk=export.pk))
        return queryset

    with (
        mock.patch("sessions.audit.export_jobs.PROGRESS_EVERY_ROWS", 2),
        mock.patch.object(exports, "ROWS_PER_WRITE", 2),
        mock.patch.object(exports.exports_sql, "_copy_pages", side_effect=AssertionError("paged")),
        mock.patch("sessions.audit.export_jobs.AuditExport.objects.filter", side_effect=progress_filter),
    ):
        services.write_audit_export(export_id=export.pk, output=tmp_path / "t.csv")
    export.refresh_from_db()
    assert (export.state, export.row_count, export.rows_done) == (AuditExport.State.DONE, 7, 7)
    assert seen_progress[1:4] == [0, 2, 4]  # after the claim: each UPDATE saw the one before it
    body = (tmp_path / "t.csv").read_bytes()
    rows = csv_rows(body)
    assert [json.loads(row[DATA]) for row in rows[1:]] == [{"n": n, "text": f"row {n}, \\ \t\n"} for n in range(7)]
    assert export.sha256 == hashlib.sha256(data_lines(body)).hexdigest()


@pytest.mark.django_db(transaction=True)
def test_a_download_stopped_mid_export_outside_a_transaction_leaves_no_connection_behind():
    supervisor = UserFactory(username="supervisor-u", role=roles.SUPERVISOR)
    for n in range(9):
        record(n=n)

    def connections_open():
        if connection.vendor != "postgresql":
            return 0
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
            return cursor.fetchone()[0]

    before = connections_open()
    export = services.prepare_audit_export(filters=AuditLogFilters(), export_format="csv", acting_user=supervisor)
    with mock.patch.object(exports, "ROWS_PER_WRITE", 2):
        stream = services.stream_audit_export(export=export)
        next(stream), next(stream)  # the header, then the first two rows, while the COPY is running
        stream.close()
    export.refresh_from_db()
    assert export.state == AuditExport.State.FAILED and "stopped after 2 rows" in export.error
    assert AuditRecord.objects.get(event_type=Event.AUDIT_EXPORTED).data["row_count"] == 2
    assert connections_open() == before


# --- what the supervisor asks for: several event types, a period, one known CPO ---------------------


FAILED_STOPS = [Event.STOP_FAILED, Event.STOP_REJECTED]


def test_several_event_types_at_once(trail, sup_client):
    failed = record(
        Event.STOP_FAILED, at=local(trail["days"][1], 12), stop_request=trail["stop"], attempt=3, oicp_code="310"
    )
    page = sup_client.get(PAGE, {"event_type": FAILED_STOPS})
    assert page.status_code == 200 and page.context["row_count"] == 2
    content = page.content.decode()
    assert "Stop failed (STOP_FAILED)" in content and "Stop rejected (STOP_REJECTED)" in content
    _, body = start(sup_client, "csv", event_type=FAILED_STOPS)
    rows = csv_rows(body)
    assert [int(row[0]) for row in rows[1:]] == [trail["rejected"].pk, failed.pk]
    assert rows[2][OUTCOME] == "Stop failed: 310 Partner did not respond (attempt 3 of 3)"
    assert AuditExport.objects.get().filters["event_types"] == FAILED_STOPS


def test_links_made_with_the_single_choice_form_still_work(trail, sup_client):
    any_event = sup_client.get(
        PAGE,
        {"date_from": "2026-03-02", "date_to": "2026-03-02", "event_type": "", "actor": "", "operator": "", "q": ""},
    )
    assert any_event.status_code == 200 and any_event.context["row_count"] == 2
    one_event = sup_client.get(PAGE, {"event_type": "STOP_REJECTED"})
    assert one_event.context["row_count"] == 1


def test_an_old_single_type_export_is_still_readable(trail):
    old = {
        "date_from": None,
        "date_to": "2026-03-02",
        "event_type": "STOP_REJECTED",
        "actor": "",
        "operator_id": "",
        "q": "",
        "max_id": None,
    }
    filters = AuditLogFilters.from_json(old)
    assert filters.event_types == ("STOP_REJECTED",)
    assert ids(audit_log(filters=filters)) == [trail["rejected"].pk]
    assert "Stop rejected (STOP_REJECTED)" in filters.summary()
    assert AuditLogFilters(event_type="STOP_REJECTED").event_types == ("STOP_REJECTED",)  # the command's way


def test_the_operator_is_chosen_from_the_known_ones(trail, sup_client):
    page = sup_client.get(PAGE)
    content = page.content.decode()
    assert '<select id="id_operator" name="operator"' in content
    assert '<option value="DE*ACC"' in content and '<option value="NL*FST"' in content
    typo = sup_client.get(PAGE, {"operator": "DE*AC"})
    assert typo.status_code == 200 and "DE*AC is not an OperatorID the portal knows" in typo.content.decode()
    assert typo.context["row_count"] is None and 'name="format"' not in typo.content.decode()
    response = sup_client.post(START, {"format": "csv", "operator": "DE*AC"})
    assert response.status_code == 400 and not AuditExport.objects.exists()
    assert "DE*AC is not an OperatorID the portal knows" in response.content.decode()


@pytest.mark.parametrize(
    "params, field, message",
    [
        ({"date_from": "2026-03-03", "date_to": "2026-03-01"}, "date_to", "“To” is before “From”."),
        ({"date_to": "9999-12-31"}, "date_to", "Choose a day between"),
        ({"date_from": "0001-01-01"}, "date_from", "Choose a day between"),
        ({"date_from": "March"}, "date_from", "Enter a valid date."),
        ({"period": "last_year"}, "period", "Select a valid choice."),
        ({"event_type": ["STOP_FAILED", "NOT_AN_EVENT"]}, "event_type", "Select a valid choice."),
    ],
)
def test_an_impossible_selection_is_said_next_to_the_field_and_exports_nothing(
    trail, sup_client, params, field, message
):
    page = sup_client.get(PAGE, params)
    content = page.content.decode()
    assert page.status_code == 200 and message in content
    assert f'id="{field}-error"' in content
    assert page.context["row_count"] is None and 'name="format"' not in content  # no export offered
    response = sup_client.post(START, {"format": "csv", **params})
    assert response.status_code == 400 and message in response.content.decode()
    assert not AuditExport.objects.exists() and not AuditRecord.objects.filter(event_type=Event.AUDIT_EXPORTED).exists()


def _today_is(day):
    return mock.patch("django.utils.timezone.now", return_value=local(day, 12))


@pytest.mark.parametrize(
    "period, today, first, last",
    [
        ("today", date(2026, 3, 3), date(2026, 3, 3), date(2026, 3, 3)),
        ("last7", date(2026, 3, 3), date(2026, 2, 25), date(2026, 3, 3)),
        ("last_month", date(2026, 3, 3), date(2026, 2, 1), date(2026, 2, 28)),
        ("last_month", date(2026, 1, 15), date(2025, 12, 1), date(2025, 12, 31)),
    ],
)
def test_date_presets_resolve_to_days_in_the_portals_zone(trail, sup_client, period, today, first, last):
    with _today_is(today):
        page = sup_client.get(PAGE, {"period": period, "date_from": "2020-01-01"})  # a preset wins over dates
    filters = page.context["filters"]
    assert (filters.date_from, filters.date_to, filters.period) == (first, last, period)
    content = page.content.decode()
    assert f"from {first:%Y-%m-%d} to {last:%Y-%m-%d}" in content and "Europe/Berlin" in content


def test_the_preset_is_in_the_exports_metadata(trail, sup_client):
    with _today_is(date(2026, 3, 3)):
        _, body = start(sup_client, "csv", period="last7", event_type=FAILED_STOPS)
    meta = dict(line[2:].strip().split(": ", 1) for line in body.decode().splitlines() if line.startswith("# "))
    assert "last 7 days, from 2026-02-25 to 2026-03-03" in meta["filters"]
    assert json.loads(meta["filters_json"])["period"] == "last7"
    export = AuditExport.objects.get()
    assert "last 7 days" in export.filter_summary and export.filters["date_from"] == "2026-02-25"


# --- formula injection in every line of every file (issue 13: found in the CSV's `# filters:` lines) ---

FORMULA_FORMS = [
    '=HYPERLINK("http://evil.example","x")',
    "+1+1",
    "-2+3",
    "@SUM(A1)",
    " =1+1",
    "  +cmd",
    "\uff1dHYPERLINK(1)",
    "\uff0b1",
    "\uff0d1",
    "\uff20SUM(1)",
    '"=1+1"',
]


def _cells(line: str, delimiter: str) -> list[str]:
    return next(csv.reader([line], delimiter=delimiter))


def _assert_no_cell_starts_like_a_formula(lines: list[str]) -> None:
    for line in lines:
        for delimiter in (",", ";", "\t"):  # the separators spreadsheets guess, by locale
            for cell in _cells(line, delimiter):
                assert not exports.starts_like_formula(cell), (delimiter, cell, line)


@pytest.mark.parametrize("form", FORMULA_FORMS)
def test_no_line_of_a_csv_export_can_start_a_formula_in_any_cell(sup_client, db, form):
    """As found: the `# filters:` comment lines were not quoted, so a comma in the search or actor
    filter started a new cell such as =HYPERLINK(…). Every line now, comments included."""
    record(actor=UserFactory(username=form.strip('"')[:150]), charging_session=ChargingSessionFactory())

    _, body = start(sup_client, "csv", q=f"x, {form}; {form}", actor=f"a,{form}")

    lines = body.decode().splitlines()
    assert any(line.startswith("# filters:") for line in lines)
    _assert_no_cell_starts_like_a_formula(lines)


@pytest.mark.parametrize("form", FORMULA_FORMS)
def test_no_cell_of_the_jsonl_metadata_or_the_xlsx_sheets_can_start_a_formula(sup_client, db, form):
    record(charging_session=ChargingSessionFactory())
    filters = {"q": f"x, {form}; {form}", "actor": f"a,{form}"}

    _, jsonl = start(sup_client, "jsonl", **filters)
    meta_line = jsonl.decode().splitlines()[0]
    assert json.loads(meta_line)["_meta"]["filters"]  # still JSON, same values for a JSON reader
    _assert_no_cell_starts_like_a_formula([meta_line])

    _, xlsx = start(sup_client, "xlsx", **filters)
    book = load_workbook(io.BytesIO(xlsx))
    for sheet in book.worksheets:
        for row in sheet.iter_rows(values_only=True):
            for cell in row:
                assert not (isinstance(cell, str) and exports.starts_like_formula(cell)), (sheet.title, cell)


@pytest.mark.parametrize("form", FORMULA_FORMS)
def test_a_data_cell_after_leading_spaces_or_in_full_width_is_neutralised(db, form):
    record(actor=UserFactory(username=form[:150]), charging_session=ChargingSessionFactory())

    rows = csv_rows(stream_export(AuditLogFilters()))

    actor_cells = [row[3] for row in rows[1:]]
    assert any(cell.lstrip("'") == form for cell in actor_cells)
    assert not any(exports.starts_like_formula(cell) for row in rows for cell in row)
