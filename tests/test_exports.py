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

from sessions import exports, roles, services, tasks
from sessions.models import AuditExport, AuditRecord
from sessions.selectors_history import AuditLogFilters, audit_log
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory, UserFactory

Event = AuditRecord.EventType
START = reverse("charging_sessions:audit-export-start")
PAGE = reverse("charging_sessions:audit-export")


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
        return services.record_audit(event_type=event, actor=actor, charging_session=charging_session,
                                     stop_request=stop_request, data=data)


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
        "rejected": record(Event.STOP_REJECTED, at=local(d2, 11), stop_request=stop, oicp_code="501",
                           request={"json": {"EvseID": acc.evse_id}}, response={"status": 200}),
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
    for row, rec in zip(rows[1:], wanted):
        assert row[1] == rec.occurred_at.astimezone(UTC).isoformat(timespec="microseconds")
        assert row[2] == rec.event_type and row[3] == (rec.actor.username if rec.actor else "")
        assert row[4] == rec.charging_session.session_id and row[5] == rec.charging_session.evse_id
        assert json.loads(row[9]) == rec.data and (row[10], row[11]) == (rec.prev_hash, rec.record_hash)
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
    assert list(rows[0]) == exports.COLUMNS
    assert [row[0] for row in rows[1:]] == [trail["created_acc"].pk, trail["created_fst"].pk]
    assert json.loads(rows[1][9]) == {"note": "first"}
    xlsx_export = AuditExport.objects.get()
    assert meta["sha256"] == xlsx_export.sha256 and meta["rows"] == "2" and meta["generated_by"] == "supervisor-x"
    start(sup_client, "csv", **filters)
    assert AuditExport.objects.latest("pk").sha256 == xlsx_export.sha256


def test_formula_injection_is_neutralised_in_csv_and_xlsx(sup_client, db):
    for prefix in ("=", "+", "-", "@", "\t", "\r"):
        assert exports.neutralise(prefix + "1+1") == "'" + prefix + "1+1"
    assert exports.neutralise("DE*ACC") == "DE*ACC" and exports.neutralise(7) == 7 and exports.neutralise(None) is None
    evil = {
        "=HYPERLINK(\"http://x\")": ChargingSessionFactory(evse_id="\tDE*ACC*E1*1"),
        "+1": ChargingSessionFactory(evse_id="\rDE*ACC*E2*1"),
        "-2": None,
        "@SUM(A1)": None,
    }
    for username, cs in evil.items():
        record(actor=UserFactory(username=username), charging_session=cs)
    _, body = start(sup_client, "csv", event_type=Event.SESSION_UPDATED)
    rows = list(csv.reader(io.StringIO("".join(l for l in body.decode().splitlines(True) if not l.startswith("#")))))
    assert [row[3] for row in rows[1:]] == ["'" + name for name in evil]
    assert [row[5] for row in rows[1:3]] == ["'\tDE*ACC*E1*1", "'\rDE*ACC*E2*1"]
    _, xlsx = start(sup_client, "xlsx", event_type=Event.SESSION_UPDATED)
    sheet = list(load_workbook(io.BytesIO(xlsx))["Audit log"].iter_rows(values_only=True))
    assert [row[3] for row in sheet[1:]] == ["'" + name for name in evil]
    assert not any(str(cell).startswith("=") for row in sheet for cell in row if cell is not None)


# --- every export is itself on the record ---------------------------------------------------------


def test_each_export_is_an_audit_record(sup_client, trail, supervisor):
    start(sup_client, "jsonl", event_type=Event.STOP_REQUESTED, actor="agent-e")
    export = AuditExport.objects.get()
    audit = AuditRecord.objects.get(event_type=Event.AUDIT_EXPORTED)
    assert audit.actor == supervisor
    assert audit.data["export_id"] == export.pk and audit.data["format"] == "jsonl"
    assert audit.data["row_count"] == 1 and audit.data["sha256"] == export.sha256 and audit.data["completed"] is True
    assert audit.data["filters"]["actor"] == "agent-e" and audit.data["filters"]["event_type"] == "STOP_REQUESTED"
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


def test_a_large_export_runs_in_the_background(sup_client, trail, settings, supervisor,
                                                django_capture_on_commit_callbacks):
    settings.AUDIT_EXPORT_SYNC_MAX_ROWS = 3
    with mock.patch("sessions.tasks.export_audit_log.apply_async") as apply_async, \
            django_capture_on_commit_callbacks(execute=True):
        response = sup_client.post(START, {"format": "csv"})
    export = AuditExport.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "charging_sessions:audit-export-detail", args=[export.pk])
    apply_async.assert_called_once_with(args=[export.pk], retry=False)
    detail = reverse("charging_sessions:audit-export-detail", args=[export.pk])
    queued = sup_client.get(detail, HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 2s"' in queued and "<html" not in queued
    AuditExport.objects.filter(pk=export.pk).update(state=AuditExport.State.RUNNING, rows_done=2)
    running = sup_client.get(detail, HTTP_HX_REQUEST="true").content.decode()
    assert "2 of 5 records written" in running and 'value="40"' in running
    AuditExport.objects.filter(pk=export.pk).update(state=AuditExport.State.QUEUED, rows_done=0)

    with mock.patch("sessions.services.audit_exports.PROGRESS_EVERY_ROWS", 2), \
            mock.patch.object(exports, "ROWS_PER_WRITE", 2), \
            mock.patch("sessions.services.audit_exports.AuditExport.objects.filter",
                       wraps=AuditExport.objects.filter) as progress_updates:
        tasks.export_audit_log(export.pk)  # what the worker runs
    assert progress_updates.call_count >= 3  # the claim and at least two progress updates
    export.refresh_from_db()
    assert (export.state, export.row_count, export.rows_done) == (AuditExport.State.DONE, 5, 5)
    path = settings.AUDIT_EXPORT_DIR / export.file_name
    lines = path.read_bytes().decode().splitlines(keepends=True)
    header = dict(line[2:].strip().split(": ", 1) for line in lines if line.startswith("#"))
    assert header["sha256"] == export.sha256 == hashlib.sha256(
        "".join(l for l in lines if not l.startswith("#")).encode()).hexdigest()
    assert not lines[-1].startswith("#")  # a file carries its checksum in the header, no trailer

    done = sup_client.get(detail).content.decode()
    assert export.sha256 in done and "every 2s" not in done and "Download" in done
    download = sup_client.get(reverse("charging_sessions:audit-export-download", args=[export.pk]))
    assert download.status_code == 200 and b"".join(download.streaming_content) == path.read_bytes()
    deliveries = list(AuditRecord.objects.filter(event_type=Event.AUDIT_EXPORTED).order_by("id")
                      .values_list("data__delivery", flat=True))
    assert deliveries == ["file", "file downloaded"]
    tasks.export_audit_log(export.pk)  # a redelivered message changes nothing
    assert AuditRecord.objects.filter(event_type=Event.AUDIT_EXPORTED).count() == 2


def test_a_failed_job_says_why(trail, supervisor, settings):
    export = services.prepare_audit_export(filters=AuditLogFilters(), export_format="jsonl", acting_user=supervisor)
    with mock.patch("sessions.exports.write_file", side_effect=OSError("disk full")), pytest.raises(OSError):
        services.write_audit_export(export_id=export.pk)
    export.refresh_from_db()
    assert export.state == AuditExport.State.FAILED and "disk full" in export.error


def test_queueing_without_a_broker_marks_the_export_failed(trail, supervisor, django_capture_on_commit_callbacks):
    export = services.prepare_audit_export(filters=AuditLogFilters(), export_format="csv", acting_user=supervisor)
    with mock.patch("sessions.tasks.export_audit_log.apply_async", side_effect=ConnectionError("no redis")), \
            django_capture_on_commit_callbacks(execute=True):
        services.queue_audit_export(export=export)
    export.refresh_from_db()
    assert export.state == AuditExport.State.FAILED and "no redis" in export.error


def test_export_command_writes_the_same_file(trail, tmp_path):
    out = tmp_path / "march.jsonl"
    call_command("export_audit", "--from", "2026-03-01", "--to", "2026-03-01", "--format", "jsonl",
                 "--output", str(out), "--user", "agent-e")
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
    cast = "::jsonb" if connection.vendor == "postgresql" else ""
    sql = (f"INSERT INTO {AuditRecord._meta.db_table} (event_type, occurred_at, data, prev_hash, record_hash) "
           f"VALUES (%s, %s, %s{cast}, '', '')")
    note = "x" * 40
    with connection.cursor() as cursor:
        for start in range(0, count, 20_000):
            cursor.executemany(sql, [(Event.SESSION_UPDATED, occurred, f'{{"n": {n}, "note": "{note}"}}')
                                     for n in range(start, min(start + 20_000, count))])


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
