"""CDR reconciliation: paging through GetChargeDetailRecords, de-duplication, closing sessions, audit."""

import json
import uuid
from datetime import datetime, timedelta, timezone
from io import StringIO
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sessions import services
from sessions.models import AuditRecord, ChargeDetailRecord, ChargingSession, InboundMessage, RemoteStopRequest
from sessions.oicp import inbound
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory

pytestmark = pytest.mark.django_db
BASE = "https://hbs.example"
URL = f"{BASE}/api/oicp/cdrmgmt/v22/providers/DE-EMP/get-charge-detail-records-request"
WINDOW_FROM = datetime(2026, 1, 5, 0, 0, tzinfo=timezone.utc)
WINDOW_TO = datetime(2026, 1, 6, 0, 0, tzinfo=timezone.utc)
Event = AuditRecord.EventType


@pytest.fixture(autouse=True)
def hubject(settings):
    settings.OICP_BASE_URL = BASE
    settings.OICP_PROVIDER_ID = "DE-EMP"


def cdr(session_id: str | None = None, evse_id: str = "DE*ACC*E0001*1", energy: float = 12.345, **overrides):
    body = {
        "SessionID": session_id or str(uuid.uuid4()),
        "EMPPartnerSessionID": "EMP-1",
        "EvseID": evse_id,
        "Identification": {"RemoteIdentification": {"EvcoID": "DE-EMP-C12345678-9"}},
        "ChargingStart": "2026-01-05T10:00:00+01:00",
        "ChargingEnd": "2026-01-05T11:00:00+01:00",
        "SessionStart": "2026-01-05T09:59:00+01:00",
        "SessionEnd": "2026-01-05T11:02:00+01:00",
        "MeterValueStart": 1000,
        "MeterValueEnd": None if energy is None else round(1000 + energy, 3),
        "MeterValueInBetween": {"meterValues": [1005.5]},
        "ConsumedEnergy": energy,
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def paged(hbs, records: list, page_size: int, fail_page: int | None = None, fail_status: int = 503):
    """Serve `records` in pages like HBS, reading page/size from the query; one page may fail."""

    def answer(request):
        query = parse_qs(urlsplit(request.url).query)
        page, size = int(query["page"][0]), int(query["size"][0])
        assert size == page_size
        if page == fail_page:
            return fail_status, {}, "<html><h1>503 Service Temporarily Unavailable</h1></html>"
        content = records[page * size:(page + 1) * size]
        pages = (len(records) + size - 1) // size
        return 200, {"Process-ID": f"p-{page}"}, json.dumps({
            "content": content, "number": page, "size": size, "totalElements": len(records), "totalPages": pages,
            "first": page == 0, "last": page >= pages - 1, "numberOfElements": len(content), "empty": not content,
            "pageable": {"pageNumber": page, "pageSize": size}, "StatusCode": {"Code": "000"},
        })

    hbs.add_callback(responses.POST, URL, callback=answer, content_type="application/json")


@pytest.fixture
def hbs():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock_:
        yield mock_


def run(page_size: int = 2000, **kwargs):
    return services.pull_charge_detail_records(date_from=WINDOW_FROM, date_to=WINDOW_TO, page_size=page_size, **kwargs)


def store_pushed(record: dict) -> None:
    _, parsed = inbound.parse_charge_detail_record(json.dumps(record))
    services.record_cdr(cdr=parsed, raw=json.dumps(record), source="PUSH")


def test_pages_through_until_last_and_stores_every_new_cdr(hbs):
    records = [cdr() for _ in range(5)]
    paged(hbs, records, page_size=2)

    report = run(page_size=2)

    assert [parse_qs(urlsplit(c.request.url).query)["page"] for c in hbs.calls] == [["0"], ["1"], ["2"]]
    assert json.loads(hbs.calls[0].request.body) == {
        "ProviderID": "DE-EMP", "From": "2026-01-05T00:00:00+00:00", "To": "2026-01-06T00:00:00+00:00",
    }
    assert (report.pages, report.seen, report.new, report.duplicates, report.invalid) == (3, 5, 5, 0, 0)
    assert report.complete and report.ok and report.errors == 0
    assert ChargeDetailRecord.objects.filter(source="PULL").count() == 5
    stored = ChargeDetailRecord.objects.get(session_id=records[0]["SessionID"])
    assert str(stored.consumed_energy_kwh) == "12.345"  # exact: never through a float


def test_default_page_size_is_hubjects_maximum(hbs):
    paged(hbs, [cdr()], page_size=2000)

    assert run().new == 1
    assert parse_qs(urlsplit(hbs.calls[0].request.url).query)["size"] == ["2000"]


def test_cdrs_already_stored_are_skipped_with_one_query_per_page(hbs):
    pushed = [cdr() for _ in range(12)]
    for record in pushed:
        store_pushed(record)
    messages_before = InboundMessage.objects.count()
    audits_before = AuditRecord.objects.filter(event_type=Event.CDR_RECEIVED).count()
    paged(hbs, pushed, page_size=2000)

    with CaptureQueriesContext(connection) as queries:
        report = run()

    assert (report.seen, report.new, report.duplicates) == (12, 0, 12)
    # Nothing is written for a CDR we already have: no raw message, no CDR_RECEIVED record.
    assert InboundMessage.objects.count() == messages_before
    assert AuditRecord.objects.filter(event_type=Event.CDR_RECEIVED).count() == audits_before
    cdr_lookups = [q for q in queries.captured_queries if "charging_sessions_chargedetailrecord" in q["sql"]]
    assert len(cdr_lookups) == 1


def test_a_cdr_repeated_across_pages_is_stored_once(hbs):
    repeated = cdr()
    paged(hbs, [repeated, cdr(), repeated], page_size=2)

    report = run(page_size=2)

    assert (report.seen, report.new, report.duplicates) == (3, 2, 1)
    assert ChargeDetailRecord.objects.filter(session_id=repeated["SessionID"]).count() == 1


def test_a_session_whose_cdr_was_never_pushed_is_closed_and_its_stop_confirmed(hbs):
    charging_session = ChargingSessionFactory(evse_id="DE*ACC*E0042*1", operator_id="DE*ACC")
    stop = RemoteStopRequestFactory(charging_session=charging_session, state=RemoteStopRequest.State.ACCEPTED,
                                    finished_at=datetime.now(timezone.utc))
    paged(hbs, [cdr(charging_session.session_id, evse_id="DE*ACC*E0042*1")], page_size=2000)

    report = run()

    charging_session.refresh_from_db()
    stop.refresh_from_db()
    assert charging_session.status == ChargingSession.Status.CLOSED
    assert charging_session.cdr.source == ChargeDetailRecord.Source.PULL
    assert (stop.state, stop.confirmed_by) == (RemoteStopRequest.State.CONFIRMED, "CDR")
    assert (report.new, report.sessions_closed, report.sessions_created, report.stops_confirmed) == (1, 1, 0, 1)


def test_a_session_the_portal_never_knew_is_learned_from_its_cdr(hbs):
    record = cdr()
    paged(hbs, [record], page_size=2000)

    report = run()

    learned = ChargingSession.objects.get(session_id=record["SessionID"])
    assert learned.learned_late and learned.status == ChargingSession.Status.CLOSED
    assert (report.sessions_created, report.sessions_closed) == (1, 0)


def test_invalid_cdrs_are_counted_and_named_and_the_rest_is_stored(hbs):
    good = cdr()
    bad_evse = cdr(evse_id="XX")
    no_energy = cdr(energy=None, MeterValueEnd=None)
    paged(hbs, [bad_evse, good, no_energy, "not an object", cdr(ChargingEnd="2026-01-05T11:00:00")], page_size=2000)

    report = run()

    assert (report.seen, report.new, report.invalid) == (5, 1, 4)
    assert report.ok  # Hubject's bad data is reported, it is not the pull failing
    assert any("EvseID: 'XX' is not an EvseID" in note for note in report.notes)
    assert any("ConsumedEnergy: missing" in note for note in report.notes)
    assert any("ChargingEnd" in note and "offset" in note for note in report.notes)
    assert not ChargingSession.objects.filter(session_id=bad_evse["SessionID"]).exists()


def test_a_failed_page_stops_the_run_and_is_reported(hbs):
    records = [cdr() for _ in range(5)]
    paged(hbs, records, page_size=2, fail_page=1)

    report = run(page_size=2)

    assert len(hbs.calls) == 2  # nothing after the failed page
    assert (report.pages, report.new, report.errors, report.failed_page) == (1, 2, 1, 1)
    assert not report.complete and not report.ok and report.failure_transient
    assert "503" in report.failure
    assert "Stopped at page 1" in report.summary()
    audit = AuditRecord.objects.get(event_type=Event.RECONCILIATION_RUN)
    assert audit.data["complete"] is False and audit.data["failed_page"] == 1 and audit.data["errors"] == 1


def test_hubject_unreachable_is_reported_not_raised(hbs):
    import requests

    hbs.post(URL, body=requests.ConnectionError("refused"))

    report = run()

    assert (report.pages, report.errors, report.failed_page, report.failure_transient) == (0, 1, 0, True)
    assert "Could not reach Hubject" in report.failure


def test_one_audit_record_per_run_with_window_and_counts(hbs, agent):
    stored = cdr()
    store_pushed(stored)
    paged(hbs, [stored, cdr(), cdr(evse_id="XX")], page_size=2000)

    report = run(acting_user=agent)

    audit = AuditRecord.objects.get(event_type=Event.RECONCILIATION_RUN)
    assert audit.pk == report.audit_record_id and audit.actor == agent
    assert audit.data["from"] == "2026-01-05T00:00:00+00:00" and audit.data["to"] == "2026-01-06T00:00:00+00:00"
    assert {k: audit.data[k] for k in ("pages", "seen", "new", "duplicates", "invalid", "sessions_closed",
                                        "sessions_created", "errors", "complete")} == {
        "pages": 1, "seen": 3, "new": 1, "duplicates": 1, "invalid": 1, "sessions_closed": 0,
        "sessions_created": 1, "errors": 0, "complete": True,
    }


def test_an_empty_window_is_one_page_and_complete(hbs):
    paged(hbs, [], page_size=2000)

    report = run()

    assert (report.pages, report.seen, report.complete) == (1, 0, True)


def test_a_cdr_that_cannot_be_stored_is_an_error_and_the_others_are_kept(hbs):
    records = [cdr(), cdr()]
    paged(hbs, records, page_size=2000)
    real = services.record_cdr

    def flaky(**kwargs):
        if kwargs["cdr"].session_id == records[0]["SessionID"]:
            raise RuntimeError("disk full")
        return real(**kwargs)

    with mock.patch("sessions.services.reconciliation.record_cdr", side_effect=flaky):
        report = run()

    assert (report.new, report.errors, report.complete, report.ok) == (1, 1, True, False)
    assert "disk full" in report.notes[0]


@pytest.mark.parametrize(
    ("date_from", "date_to"),
    [(datetime(2026, 1, 5), WINDOW_TO), (WINDOW_TO, WINDOW_FROM), (WINDOW_FROM, WINDOW_FROM)],
)
def test_bad_window_is_refused(date_from, date_to):
    with pytest.raises(ValueError):
        services.pull_charge_detail_records(date_from=date_from, date_to=date_to)


# --- the periodic job and the command ---------------------------------------------------------


def test_task_pulls_the_sliding_window(settings):
    from sessions.tasks import pull_charge_detail_records

    settings.OICP_CDR_PULL_WINDOW_HOURS = 6
    with mock.patch("sessions.services.reconciliation.pull_charge_detail_records") as service:
        pull_charge_detail_records.run()
    window = service.call_args.kwargs
    assert window["date_to"] - window["date_from"] == timedelta(hours=6)
    assert abs((window["date_to"] - datetime.now(timezone.utc)).total_seconds()) < 60


def test_task_is_on_the_beat_schedule():
    from django.conf import settings

    entry = settings.CELERY_BEAT_SCHEDULE["pull-charge-detail-records"]
    assert entry["task"] == "charging_sessions.pull_charge_detail_records"
    assert entry["schedule"] == settings.OICP_CDR_PULL_INTERVAL_MINUTES * 60
    assert "mark-unconfirmed-stops" in settings.CELERY_BEAT_SCHEDULE  # others' entries are kept


def test_command_prints_the_report(hbs):
    paged(hbs, [cdr()], page_size=2000)
    out = StringIO()

    call_command("pull_cdrs", "--from", "2026-01-05T01:00:00+01:00", "--to", "2026-01-06T00:00:00Z", stdout=out)

    assert "1 new" in out.getvalue()
    assert json.loads(hbs.calls[0].request.body)["From"] == "2026-01-05T01:00:00+01:00"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "yesterday"], "not an ISO 8601"),
        (["--from", "2026-01-05T00:00:00", "--to", "2026-01-06T00:00:00Z"], "no UTC offset"),
        (["--from", "2026-01-06T00:00:00Z", "--to", "2026-01-05T00:00:00Z"], "must be before"),
        (["--from", "2026-02-30T00:00:00Z"], "not an ISO 8601"),
    ],
)
def test_command_refuses_bad_input(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("pull_cdrs", *args)
    assert not AuditRecord.objects.filter(event_type=Event.RECONCILIATION_RUN).exists()


def test_command_fails_when_a_page_fails(hbs):
    paged(hbs, [cdr(), cdr(), cdr()], page_size=2000, fail_page=0)
    out = StringIO()

    with pytest.raises(CommandError, match="did not finish cleanly"):
        call_command("pull_cdrs", "--from", "2026-01-05T00:00:00Z", "--to", "2026-01-06T00:00:00Z", stdout=out)
    assert "Stopped at page 0" in out.getvalue()


def test_command_exit_code_is_non_zero_on_failure(hbs):
    """What a cron job sees: exit status 1 and the reason on stderr."""
    paged(hbs, [], page_size=2000, fail_page=0)
    from django.core.management import ManagementUtility

    with pytest.raises(SystemExit) as exit_info:
        ManagementUtility(["manage.py", "pull_cdrs", "--from", "2026-01-05T00:00:00Z",
                           "--to", "2026-01-06T00:00:00Z"]).execute()
    assert exit_info.value.code == 1
