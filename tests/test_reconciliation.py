"""CDR reconciliation: paging through GetChargeDetailRecords, de-duplication, closing sessions, audit."""

import json
import uuid
from datetime import UTC, datetime, timedelta
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
WINDOW_FROM = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
WINDOW_TO = datetime(2026, 1, 6, 0, 0, tzinfo=UTC)
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
        content = records[page * size : (page + 1) * size]
        pages = (len(records) + size - 1) // size
        return (
            200,
            {"Process-ID": f"p-{page}"},
            json.dumps(
                {
                    "content": content,
                    "number": page,
                    "size": size,
                    "totalElements": len(records),
                    "totalPages": pages,
                    "first": page == 0,
                    "last": page >= pages - 1,
                    "numberOfElements": len(content),
                    "empty": not content,
                    "pageable": {"pageNumber": page, "pageSize": size},
                    "StatusCode": {"Code": "000"},
                }
            ),
        )

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
        "ProviderID": "DE-EMP",
        "From": "2026-01-05T00:00:00+00:00",
        "To": "2026-01-06T00:00:00+00:00",
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
    stop = RemoteStopRequestFactory(
        charging_session=charging_session, state=RemoteStopRequest.State.ACCEPTED, finished_at=datetime.now(UTC)
    )
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

    assert (report.seen, report.new, report.refused) == (5, 1, 4)
    assert report.complete and not report.ok  # nothing refused is lost silently: the run says so
    reasons = [item.reason for item in report.refused_cdrs]
    assert any("EvseID: 'XX' is not an EvseID" in reason for reason in reasons)
    assert any("ConsumedEnergy: missing" in reason for reason in reasons)
    assert any("ChargingEnd" in reason and "offset" in reason for reason in reasons)
    assert any("must be a JSON object" in reason for reason in reasons)
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
    assert {
        k: audit.data[k]
        for k in (
            "pages",
            "seen",
            "new",
            "duplicates",
            "refused",
            "sessions_closed",
            "sessions_created",
            "errors",
            "complete",
        )
    } == {
        "pages": 1,
        "seen": 3,
        "new": 1,
        "duplicates": 1,
        "refused": 1,
        "sessions_closed": 0,
        "sessions_created": 1,
        "errors": 0,
        "complete": True,
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

    with mock.patch("sessions.inbound.cdr_pull_page.record_cdr", side_effect=flaky):
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
    with mock.patch("sessions.inbound.reconciliation.pull_charge_detail_records") as service:
        pull_charge_detail_records.run()
    window = service.call_args.kwargs
    assert window["date_to"] - window["date_from"] == timedelta(hours=6)
    assert abs((window["date_to"] - datetime.now(UTC)).total_seconds()) < 60


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
        ManagementUtility(
            ["manage.py", "pull_cdrs", "--from", "2026-01-05T00:00:00Z", "--to", "2026-01-06T00:00:00Z"]
        ).execute()
    assert exit_info.value.code == 1


# --- refused CDRs: kept, flagged, named; the run is not ok and the command fails --------------

REFUSED = "Refused by the CDR pull: "


def refused_rows():
    return InboundMessage.objects.filter(kind=InboundMessage.Kind.CDR, apply_error__startswith=REFUSED)


def keys(*records):
    return [record["SessionID"].lower() for record in records]


def test_a_refused_cdr_is_kept_flagged_and_named_and_the_valid_ones_are_stored(hbs, caplog):
    good = [cdr(), cdr()]
    bad = cdr(evse_id="XX")
    paged(hbs, [good[0], bad, good[1]], page_size=2000)

    report = run()

    assert (report.seen, report.new, report.refused, report.errors) == (3, 2, 1, 0)
    assert report.complete and not report.ok
    assert ChargeDetailRecord.objects.filter(charging_session__session_key__in=keys(*good)).count() == 2
    kept = refused_rows().get()
    reason = kept.apply_error.removeprefix(REFUSED)
    assert "EvseID: 'XX' is not an EvseID" in reason
    assert (kept.session_id, kept.operator_id, kept.charging_session) == (bad["SessionID"].lower(), "", None)
    assert kept.flagged and kept.applied_at is None and kept.parsed == {} and not kept.held_back
    assert kept.anomalies == [{"code": "refused", "field": "EvseID", "text": reason}]
    assert json.loads(kept.raw) == bad
    # Not in the apply queue: nothing will try to apply it to a session.
    assert not InboundMessage.objects.filter(applied_at__isnull=True, apply_error="").exists()
    [named] = report.refused_cdrs
    assert (named.session_id, named.reason, named.inbound_message_id, named.already_kept) == (
        bad["SessionID"],
        reason,
        kept.pk,
        False,
    )
    audit = AuditRecord.objects.get(event_type=Event.RECONCILIATION_RUN)
    assert audit.data["refused"] == 1
    assert [(e["session_id"], e["reason"], e["inbound_message_id"]) for e in audit.data["refused_cdrs"]] == [
        (bad["SessionID"], reason, kept.pk)
    ]
    assert audit.data["refused_cdrs_not_listed"] == 0
    assert any(
        r.levelname == "WARNING" and bad["SessionID"] in r.getMessage() and "XX" in r.getMessage()
        for r in caplog.records
    )


def test_a_refused_cdr_of_a_known_session_is_linked_to_it_and_does_not_change_it(hbs):
    charging_session = ChargingSessionFactory(evse_id="DE*ACC*E0042*1", operator_id="DE*ACC")
    bad = cdr(charging_session.session_id.upper(), evse_id="DE*ACC*E0042*1", ChargingEnd="2026-01-05T11:00:00")
    paged(hbs, [bad], page_size=2000)

    report = run()

    kept = refused_rows().get()
    assert kept.charging_session == charging_session
    assert (kept.session_id, kept.operator_id) == (charging_session.session_id.lower(), "DE*ACC")
    assert kept.anomalies[0]["field"] == "ChargingEnd"
    assert report.refused_cdrs[0].session_id == bad["SessionID"]  # named as Hubject sent it
    charging_session.refresh_from_db()
    assert charging_session.status == ChargingSession.Status.ACTIVE


def test_a_record_that_is_not_a_cdr_object_is_kept_too(hbs):
    paged(hbs, ["not an object", {"SessionID": 12, "EvseID": "DE*ACC*E0001*1"}], page_size=2000)

    report = run()

    assert report.refused == 2
    rows = {row.raw: row for row in refused_rows()}
    assert set(rows) == {'"not an object"', '{"SessionID":12,"EvseID":"DE*ACC*E0001*1"}'}
    text = rows['"not an object"']
    assert (text.session_id, text.operator_id, text.anomalies[0]["field"]) == ("", "", "body")
    number = rows['{"SessionID":12,"EvseID":"DE*ACC*E0001*1"}']
    assert (number.session_id, number.operator_id, number.anomalies[0]["field"]) == ("", "DE*ACC", "SessionID")
    assert all(row.flagged for row in rows.values())


def test_the_command_prints_every_refused_cdr_and_fails_naming_them(hbs):
    bad = cdr(evse_id="XX")
    no_energy = cdr(energy=None, MeterValueEnd=None)
    paged(hbs, [cdr(), bad, no_energy], page_size=2000)
    out = StringIO()

    with pytest.raises(CommandError, match=bad["SessionID"]) as error:
        call_command("pull_cdrs", "--from", "2026-01-05T00:00:00Z", "--to", "2026-01-06T00:00:00Z", stdout=out)

    assert no_energy["SessionID"] in str(error.value) and "2 CDR(s) refused" in str(error.value)
    printed = out.getvalue()
    assert "1 new" in printed and "2 refused" in printed
    assert f"SessionID {bad['SessionID']}: EvseID: 'XX' is not an EvseID" in printed
    assert f"SessionID {no_energy['SessionID']}: " in printed and "ConsumedEnergy: missing" in printed
    assert ChargeDetailRecord.objects.count() == 1


def test_an_overlapping_run_does_not_keep_the_same_refused_cdr_again(hbs):
    bad = cdr(evse_id="XX")
    paged(hbs, [bad, cdr(), bad], page_size=2)  # also repeated within the run

    first = run(page_size=2)
    second = run(page_size=2)

    kept = refused_rows().get()
    assert (first.refused, second.refused) == (2, 2)
    assert not second.ok
    assert [item.inbound_message_id for item in first.refused_cdrs + second.refused_cdrs] == [kept.pk] * 4
    assert [item.already_kept for item in second.refused_cdrs] == [True, True]
    assert f"already kept as #{kept.pk}" in second.refused_cdrs[0].describe()
    audit = AuditRecord.objects.filter(event_type=Event.RECONCILIATION_RUN).order_by("-id").first()
    assert [e["already_kept"] for e in audit.data["refused_cdrs"]] == [True, True]


def test_the_audit_record_lists_every_refused_cdr_up_to_a_cap(hbs):
    bad = [cdr(evse_id="XX") for _ in range(25)]
    paged(hbs, bad, page_size=2000)

    with mock.patch("sessions.inbound.cdr_pull_page.MAX_REFUSED_LISTED", 22):
        report = run()

    assert report.refused == 25 and refused_rows().count() == 25
    audit = AuditRecord.objects.get(event_type=Event.RECONCILIATION_RUN)
    assert [e["session_id"] for e in audit.data["refused_cdrs"]] == [b["SessionID"] for b in bad[:22]]
    assert audit.data["refused_cdrs_not_listed"] == 3
    assert (len(report.refused_cdrs), report.refused_not_listed) == (22, 3)


# --- held back CDRs ----------------------------------------------------------------------------


def test_a_held_back_cdr_is_counted_and_named_and_not_kept_again_by_the_next_run(hbs):
    record = cdr()
    paged(hbs, [record], page_size=2000)

    def holding_back(*, cdr, raw, source, **kwargs):
        # What record_cdr does with a CDR that does not match its session: kept, not applied.
        kept = InboundMessage.objects.create(
            kind="CDR",
            session_id=cdr.session_id.lower(),
            received_at=WINDOW_TO,
            raw=raw,
            applied_at=WINDOW_TO,
            held_back=True,
            flagged=True,
        )
        return mock.Mock(
            held_back=True,
            duplicate=False,
            session_created=False,
            stops_confirmed=0,
            inbound_message=kept,
            charging_session=None,
        )

    with mock.patch("sessions.inbound.cdr_pull_page.record_cdr", side_effect=holding_back) as recorder:
        first = run()
        second = run()

    assert (first.seen, first.new, first.held_back, first.refused, first.errors) == (1, 0, 1, 0, 0)
    assert first.ok and "1 held back" in first.summary()
    assert any(record["SessionID"] in note and "held back" in note for note in first.notes)
    assert (second.seen, second.new, second.held_back, second.already_seen) == (1, 0, 0, 1)
    assert "1 already seen" in second.summary()
    assert recorder.call_count == 1
    assert InboundMessage.objects.filter(held_back=True).count() == 1


@pytest.mark.skipif(
    "held_back" not in services.RecordOutcome.__dataclass_fields__, reason="record_cdr does not hold back CDRs yet"
)
def test_a_cdr_of_another_evse_is_held_back_once(hbs):
    charging_session = ChargingSessionFactory(evse_id="DE*ACC*E0042*1", operator_id="DE*ACC")
    paged(hbs, [cdr(charging_session.session_id, evse_id="DE*XYZ*E0001*1")], page_size=2000)

    first = run()
    second = run()

    assert (first.held_back, first.new, second.already_seen, second.held_back) == (1, 0, 1, 0)
    assert InboundMessage.objects.filter(held_back=True).count() == 1
    charging_session.refresh_from_db()
    assert charging_session.status == ChargingSession.Status.ACTIVE


# --- where each run starts: catch-up after downtime --------------------------------------------


@pytest.fixture
def now():
    return datetime.now(UTC).replace(microsecond=0)  # OICP timestamps are sent to the second


def windows(hbs) -> list[tuple[str, str]]:
    return [(body["From"], body["To"]) for body in (json.loads(call.request.body) for call in hbs.calls)]


def answer_empty(hbs, fail: bool = False):
    hbs.reset()
    paged(hbs, [], page_size=2000, fail_page=0 if fail else None)


def test_the_first_run_starts_the_window_setting_ago_and_the_next_where_it_ended(hbs, settings, now):
    settings.OICP_CDR_PULL_WINDOW_HOURS = 24
    settings.OICP_CDR_PULL_OVERLAP_MINUTES = 60
    answer_empty(hbs)

    services.pull_recent_charge_detail_records(now=now)
    services.pull_recent_charge_detail_records(now=now + timedelta(minutes=15))

    assert windows(hbs) == [
        ((now - timedelta(hours=24)).isoformat(), now.isoformat()),
        ((now - timedelta(minutes=60)).isoformat(), (now + timedelta(minutes=15)).isoformat()),
    ]


def test_a_portal_down_for_days_pulls_the_whole_gap(hbs, settings, now):
    settings.OICP_CDR_PULL_WINDOW_HOURS = 24  # the overlap is left at its default: 60 minutes
    answer_empty(hbs)
    services.pull_recent_charge_detail_records(now=now - timedelta(days=5))  # the last run before the outage

    hbs.reset()
    records = [cdr() for _ in range(3)]
    paged(hbs, records, page_size=2000)
    report = services.pull_recent_charge_detail_records(now=now)

    assert windows(hbs) == [((now - timedelta(days=5, minutes=60)).isoformat(), now.isoformat())]
    assert report.ok and report.new == 3


def test_a_failed_run_does_not_move_the_start(hbs, settings, now):
    settings.OICP_CDR_PULL_WINDOW_HOURS = 24
    answer_empty(hbs)
    services.pull_recent_charge_detail_records(now=now - timedelta(days=5))
    answer_empty(hbs, fail=True)
    failed = services.pull_recent_charge_detail_records(now=now - timedelta(days=1))
    answer_empty(hbs)

    services.pull_recent_charge_detail_records(now=now)

    assert not failed.complete
    assert windows(hbs) == [((now - timedelta(days=5, minutes=60)).isoformat(), now.isoformat())]


def test_a_cdr_that_could_not_be_stored_does_not_move_the_start(hbs, settings, now):
    answer_empty(hbs)
    services.pull_recent_charge_detail_records(now=now - timedelta(days=5))
    hbs.reset()
    paged(hbs, [cdr()], page_size=2000)
    with mock.patch("sessions.inbound.cdr_pull_page.record_cdr", side_effect=RuntimeError("disk full")):
        lossy = services.pull_recent_charge_detail_records(now=now - timedelta(days=1))
    answer_empty(hbs)

    services.pull_recent_charge_detail_records(now=now)

    assert lossy.complete and lossy.errors == 1
    assert windows(hbs)[-1] == ((now - timedelta(days=5, minutes=60)).isoformat(), now.isoformat())


def test_a_run_with_refused_cdrs_moves_the_start(hbs, settings, now):
    """They are kept, so nothing is lost by moving on (and one bad CDR cannot pin the start)."""
    paged(hbs, [cdr(evse_id="XX")], page_size=2000)
    refused = services.pull_recent_charge_detail_records(now=now - timedelta(days=1))
    answer_empty(hbs)

    services.pull_recent_charge_detail_records(now=now)

    assert refused.refused == 1 and not refused.ok
    assert windows(hbs) == [((now - timedelta(days=1, minutes=60)).isoformat(), now.isoformat())]


def test_pull_cdrs_without_from_starts_where_the_periodic_job_would(hbs, now):
    answer_empty(hbs)
    services.pull_recent_charge_detail_records(now=now - timedelta(days=5))
    answer_empty(hbs)

    call_command("pull_cdrs", stdout=StringIO())

    [(date_from, date_to)] = windows(hbs)
    assert date_from == (now - timedelta(days=5, minutes=60)).isoformat()
    assert datetime.fromisoformat(date_to) >= now


def test_a_manual_window_counts_only_when_it_contains_the_next_start(hbs, now):
    from sessions.inbound.reconciliation import next_pull_start

    answer_empty(hbs)
    services.pull_recent_charge_detail_records(now=now - timedelta(days=5))
    expected = now - timedelta(days=5, minutes=60)
    assert next_pull_start(now=now) == expected

    def manual(date_from, date_to):
        call_command("pull_cdrs", "--from", date_from.isoformat(), "--to", date_to.isoformat(), stdout=StringIO())

    manual(now - timedelta(days=2), now - timedelta(days=1))  # leaves days 5 to 2 unpulled: does not count
    assert next_pull_start(now=now) == expected
    manual(now - timedelta(days=6), now - timedelta(days=3))  # contains the start: covered up to day 3
    assert next_pull_start(now=now) == now - timedelta(days=3, minutes=60)

    services.pull_recent_charge_detail_records(now=now)
    assert windows(hbs)[-1] == ((now - timedelta(days=3, minutes=60)).isoformat(), now.isoformat())


def test_every_run_is_kept_with_its_window_and_counts(hbs, now):
    from sessions.models import CdrPullRun

    paged(hbs, [cdr(), cdr(evse_id="XX")], page_size=2000)

    report = services.pull_recent_charge_detail_records(now=now)

    row = CdrPullRun.objects.get()
    assert (row.trigger, row.date_from, row.date_to) == ("PERIODIC", now - timedelta(hours=24), now)
    assert (row.complete, row.ok, row.covered_to, row.audit_record_id) == (True, False, now, report.audit_record_id)
    assert (row.seen, row.new, row.refused, row.errors) == (2, 1, 1, 0)
    assert row.finished_at is not None
