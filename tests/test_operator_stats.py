"""Each CPO's stop record and the supervisors' overview (issue 15 item 4): every figure against a data
set built by hand (median and 90th percentile included, on SQLite and PostgreSQL), each CPO's name,
EVSE count and contact details from Hubject's EVSE directory (item 2), the queries bounded, who may see the pages, the CSV export (its content, formula-inert) and the period's errors
beside their fields (a bad day changes nothing and never answers 500).
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.urls import reverse

from sessions import roles
from sessions.models import RemoteStopRequest
from sessions.operators import charts, presenters, selectors
from sessions.operators.selectors import Period, percentile_cont
from sessions.operators.views import sort_records
from tests.factories import ChargingSessionFactory, OperatorFactory, RemoteStopRequestFactory, UserFactory

State = RemoteStopRequest.State
BERLIN = ZoneInfo("Europe/Berlin")
A, B = "DE*AAA", "DE*BBB"
PERIOD = Period(date(2025, 3, 3), date(2025, 3, 16))  # Monday 3 March to Sunday 16 March: two weeks
QUERY = "?date_from=2025-03-03&date_to=2025-03-16"


def at(day: int, hour: int = 12, minute: int = 0, month: int = 3) -> datetime:
    return datetime.combine(date(2025, month, day), time(hour, minute), tzinfo=BERLIN)


def stop(operator_id: str, requested_at: datetime, state: str, *, seconds: float | None = None, code: str = ""):
    """A stop request of `operator_id`'s session; `seconds`: its time from request to confirmation."""
    session = ChargingSessionFactory(operator_id=operator_id, evse_id=f"{operator_id}*E{requested_at:%d%H%M%S}")
    fields = {"requested_at": requested_at, "state": state, "oicp_code": code}
    if seconds is not None:
        fields |= {
            "confirmed_at": requested_at + timedelta(seconds=seconds),
            "time_to_confirmation": timedelta(seconds=seconds),
            "confirmed_by": RemoteStopRequest.ConfirmedBy.END,
        }
    return RemoteStopRequestFactory(charging_session=session, requested_by=None, **fields)


@pytest.fixture
def stops(db):
    """Operator A: 13 stops in the period, B: 3, and stops just outside it that must not count."""
    # A, week 1 (3-9 March): 3 confirmed, 1 open, 1 never confirmed, 3 rejected, 2 failed.
    stop(A, at(3), State.CONFIRMED, seconds=10, code="000")
    stop(A, at(4), State.CONFIRMED, seconds=100, code="000")
    stop(A, at(5), State.CONFIRMED, seconds=30, code="000")
    stop(A, at(6), State.ACCEPTED, code="000")
    stop(A, at(6, 13), State.UNCONFIRMED, code="000")
    stop(A, at(7), State.REJECTED, code="501")
    stop(A, at(7, 13), State.REJECTED, code="501")
    stop(A, at(8), State.REJECTED, code="400")
    stop(A, at(9), State.FAILED, code="310")
    stop(A, at(9, 13), State.FAILED)  # no answer at all: no code
    # A, week 2 (10-16 March): 2 confirmed, 1 still being sent.
    stop(A, at(10), State.CONFIRMED, seconds=40, code="000")
    stop(A, at(11), State.CONFIRMED, seconds=20, code="000")
    stop(A, at(12), State.PENDING)
    # B: 2 confirmed, 1 rejected late on the last day (22:30 UTC, still 16 March in Berlin).
    stop(B, at(4), State.CONFIRMED, seconds=90, code="000")
    stop(B, at(11), State.CONFIRMED, seconds=60, code="000")
    stop(B, at(16, 23, 30), State.REJECTED, code="310")
    # Outside the period: the day before, and half an hour after its end (17 March in Berlin).
    stop(A, at(2, 23, 59), State.CONFIRMED, seconds=1, code="000")
    stop(B, at(17, 0, 30), State.REJECTED, code="501")


def test_percentile_cont_interpolates_as_postgresql_does():
    values = [timedelta(seconds=s) for s in (10, 20, 30, 40, 100)]
    assert percentile_cont(values, 0.5) == timedelta(seconds=30)
    assert percentile_cont(values, 0.9) == timedelta(seconds=76)  # 40 + 0.6 × 60
    assert percentile_cont([timedelta(seconds=60), timedelta(seconds=90)], 0.5) == timedelta(seconds=75)
    assert percentile_cont([timedelta(seconds=7)], 0.9) == timedelta(seconds=7)
    assert percentile_cont([], 0.5) is None


def test_one_operator_s_record(stops, django_assert_max_num_queries):
    with django_assert_max_num_queries(2):  # 1 on PostgreSQL (percentile_cont in SQL), 2 on SQLite
        record = selectors.operator_record(operator_id=A, period=PERIOD)
    assert (record.sent, record.accepted, record.confirmed) == (13, 7, 5)
    assert (record.open, record.unconfirmed, record.rejected, record.failed, record.in_flight) == (1, 1, 3, 2, 1)
    assert record.sent == sum(value for _, _, value in record.outcomes())
    assert record.success_rate == pytest.approx(5 / 13)
    assert record.failure_rate == pytest.approx(6 / 13)
    assert record.median == timedelta(seconds=30)
    assert record.p90 == timedelta(seconds=76)
    # under 30 s: 10, 20; 30-60 s: 30, 40; 1-2 min: 100.
    assert record.buckets == [2, 2, 1, 0, 0, 0]
    assert presenters.record_cells(record) == {
        "success": "38.5 %",
        "failure": "46.2 %",
        "median": "30 s",
        "p90": "1 min 16 s",
    }


def test_the_other_operator_and_the_period_s_edges(stops):
    record = selectors.operator_record(operator_id=B, period=PERIOD)
    assert (record.sent, record.confirmed, record.rejected) == (3, 2, 1)
    assert record.median == timedelta(seconds=75)
    assert record.p90 == timedelta(seconds=87)  # 60 + 0.9 × 30
    assert record.buckets == [0, 0, 2, 0, 0, 0]
    nothing = selectors.operator_record(operator_id=B, period=Period(date(2025, 1, 1), date(2025, 1, 31)))
    assert (nothing.sent, nothing.median, nothing.p90, nothing.success_rate) == (0, None, None, None)


def test_refusal_codes_most_frequent_first(stops, django_assert_max_num_queries):
    with django_assert_max_num_queries(1):
        codes = selectors.refusal_codes(operator_id=A, period=PERIOD)
    assert codes == [("501", 2), ("310", 1), ("400", 1)]  # the failure without a code is not among them
    assert selectors.refusal_codes(operator_id=B, period=PERIOD) == [("310", 1)]


def test_weekly_trend(stops, django_assert_max_num_queries):
    with django_assert_max_num_queries(1):
        weeks = selectors.weekly_trend(operator_id=A, period=PERIOD)
    assert [(w.start, w.end, w.sent, w.confirmed) for w in weeks] == [
        (date(2025, 3, 3), date(2025, 3, 9), 10, 3),
        (date(2025, 3, 10), date(2025, 3, 16), 3, 2),
    ]
    # A period starting mid-week: the first and last weeks are cut to it, empty weeks listed.
    weeks = selectors.weekly_trend(operator_id=A, period=Period(date(2025, 3, 5), date(2025, 3, 25)))
    assert [(w.start, w.end, w.sent) for w in weeks] == [
        (date(2025, 3, 5), date(2025, 3, 9), 8),
        (date(2025, 3, 10), date(2025, 3, 16), 3),
        (date(2025, 3, 17), date(2025, 3, 23), 0),
        (date(2025, 3, 24), date(2025, 3, 25), 0),
    ]


def test_overview_every_operator_in_bounded_queries(stops, django_assert_max_num_queries):
    with django_assert_max_num_queries(3):  # + the directory
        records = selectors.operator_overview(period=PERIOD)
    by_id = {record.operator_id: record for record in records}
    assert set(by_id) == {A, B}
    a, b = by_id[A], by_id[B]
    assert (a.sent, a.confirmed, a.rejected, a.failed, a.unconfirmed, a.open) == (13, 5, 3, 2, 1, 1)
    assert (a.median, a.p90) == (timedelta(seconds=30), timedelta(seconds=76))
    assert (b.sent, b.confirmed, b.rejected) == (3, 2, 1)
    assert (b.median, b.p90) == (timedelta(seconds=75), timedelta(seconds=87))
    # Ranked by failure rate (A 6/13 = 46 %, B 1/3 = 33 %), then by stops sent.
    assert [r.operator_id for r in sort_records(records, "-failure")] == [A, B]
    assert [r.operator_id for r in sort_records(records, "failure")] == [B, A]
    assert [r.operator_id for r in sort_records(records, "-sent")] == [A, B]
    assert [r.operator_id for r in sort_records(records, "median")] == [A, B]


def test_the_queries_do_not_grow_with_the_stops(stops, django_assert_max_num_queries):
    for day in range(3, 17):
        stop(A, at(day, 15), State.CONFIRMED, seconds=day * 3, code="000")
        stop(f"DE*C{day:02d}", at(day, 15), State.REJECTED, code="501")
        OperatorFactory(operator_id=f"DE*C{day:02d}", name=f"Charger {day}", evse_count=day)
    with django_assert_max_num_queries(3):  # the directory: one query for every row
        records = selectors.operator_overview(period=PERIOD)
    assert len(records) == 2 + 14
    assert {(r.operator_id, r.name, r.evse_count) for r in records if r.in_directory} == {
        (f"DE*C{day:02d}", f"Charger {day}", day) for day in range(3, 17)
    }


def test_charts_geometry(stops):
    record = selectors.operator_record(operator_id=A, period=PERIOD)
    mix = charts.outcome_mix(record)
    assert [(s.key, s.value) for s in mix] == [
        ("confirmed", 5),
        ("open", 1),
        ("unconfirmed", 1),
        ("rejected", 3),
        ("failed", 2),
        ("in_flight", 1),
    ]
    assert sum(s.width for s in mix) == pytest.approx(charts.MIX_WIDTH, abs=0.05)
    histogram = charts.histogram(record)
    assert [bar.value for bar in histogram.bars] == [2, 2, 1, 0, 0, 0]
    tallest = max(histogram.bars, key=lambda bar: bar.height)
    assert tallest.height == pytest.approx(charts.PLOT_H)  # 2 of an axis topped at 2
    weekly = charts.weekly_chart(selectors.weekly_trend(operator_id=A, period=PERIOD))
    assert [(bar.css, bar.value) for bar in weekly.bars] == [
        ("bar-sent", 10),
        ("bar-confirmed", 3),
        ("bar-sent", 3),
        ("bar-confirmed", 2),
    ]
    assert [tick.text for tick in weekly.ticks] == ["0", "5", "10"]
    assert charts.nice_ceiling(0) == 1 and charts.nice_ceiling(13) == 20 and charts.nice_ceiling(51) == 100


# --- the pages ----------------------------------------------------------------------------------


@pytest.fixture
def supervisor_client(client, db):
    client.force_login(UserFactory(username="super-visor", role=roles.SUPERVISOR))
    return client


def test_operator_page_shows_every_figure(supervisor_client, stops, django_assert_max_num_queries):
    url = reverse("charging_sessions:operator-detail", kwargs={"operator_id": A}) + QUERY
    with django_assert_max_num_queries(15):
        response = supervisor_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    record = response.context["record"]
    assert (record.sent, record.confirmed, record.median) == (13, 5, timedelta(seconds=30))
    for text in ("38.5 %", "1 min 16 s", "30 s", "Communication to EVSE failed.", "is not in the directory"):
        assert text in html, text
    # Each chart: an SVG image with a summary as its name, and its numbers in a table with a caption.
    assert html.count('role="img"') == 3
    assert "Stops sent and confirmed per week at DE*AAA, 03 Mar 2025 to 16 Mar 2025: 13 sent, 5 confirmed" in html
    assert html.count("<caption") >= 4
    assert 'style="' not in html and "<style" not in html
    # The counts link to the stop history, filtered to the CPO, the period and the state.
    assert "/stops/?operator=DE%2AAAA&amp;date_from=2025-03-03&amp;date_to=2025-03-16&amp;state=REJECTED" in html
    assert "/stops/?operator=DE%2AAAA&amp;date_from=2025-03-03&amp;date_to=2025-03-16&amp;code=501" in html


def test_operator_page_queries_do_not_grow(supervisor_client, stops, django_assert_max_num_queries):
    for day in range(3, 17):
        stop(A, at(day, 15), State.REJECTED, code=f"{day:03d}")
    url = reverse("charging_sessions:operator-detail", kwargs={"operator_id": A}) + QUERY
    with django_assert_max_num_queries(15):
        assert supervisor_client.get(url).status_code == 200


@pytest.fixture
def directory(db):
    """A in the directory as "DE*AAA" (its sessions say "DE*AAA"), C as "DE*CCC" while its sessions say
    "DECCC"; B is not in the directory."""
    return {
        A: OperatorFactory(
            operator_id=A,
            name="Allgemeine Ladestrom GmbH",
            hotline="+49 221 555 0100",
            evse_count=42,
            hotline_hours="Mon–Fri 8–18",
            escalation_email="escalation@allgemeine.example",
            internal_note="Ask for the second level.\nNever before 8.",
        ),
        "DECCC": OperatorFactory(operator_id="DE*CCC", name="Cee Charge", hotline="", evse_count=7),
    }


def test_names_and_evse_counts_from_the_directory(stops, directory, django_assert_max_num_queries):
    stop("DECCC", at(5), State.CONFIRMED, seconds=20, code="000")  # named without the "*"
    with django_assert_max_num_queries(3):
        records = {r.operator_id: r for r in selectors.operator_overview(period=PERIOD)}
    assert (records[A].name, records[A].evse_count, records[A].in_directory) == ("Allgemeine Ladestrom GmbH", 42, True)
    assert (records["DECCC"].name, records["DECCC"].evse_count) == ("Cee Charge", 7)
    assert (records[B].name, records[B].evse_count, records[B].in_directory) == ("", None, False)
    # The EVSE count sorts, CPOs not in the directory last.
    assert [r.operator_id for r in sort_records(list(records.values()), "-evses")] == [A, "DECCC", B]
    assert [r.operator_id for r in sort_records(list(records.values()), "evses")] == ["DECCC", A, B]


def test_overview_page_names_the_cpos(supervisor_client, stops, directory, django_assert_max_num_queries):
    with django_assert_max_num_queries(11):
        response = supervisor_client.get(reverse("charging_sessions:operator-overview") + QUERY)
    html = response.content.decode()
    assert "Allgemeine Ladestrom GmbH" in html and 'data-label="EVSEs" class="num">42</td>' in html
    # B, unknown to the directory, is listed all the same, and says so.
    assert [row[0].operator_id for row in response.context["rows"]] == [A, B]
    assert html.count("not in the directory") == 1
    rows = _csv(supervisor_client.get(reverse("charging_sessions:operator-overview-csv") + QUERY))
    assert rows[1][:4] == ["OperatorID", "Name", "EVSEs", "Stops sent"]
    assert rows[2][:4] == [A, "Allgemeine Ladestrom GmbH", "42", "13"]
    assert rows[3][:4] == [B, "", "", "3"]


def test_operator_page_shows_the_contact(supervisor_client, stops, directory, django_assert_max_num_queries):
    url = reverse("charging_sessions:operator-detail", kwargs={"operator_id": A}) + QUERY
    with django_assert_max_num_queries(15):
        response = supervisor_client.get(url)
    html = response.content.decode()
    assert 'CPO <span class="mono">DE*AAA</span> · Allgemeine Ladestrom GmbH</h1>' in html
    # Hubject's values: the hotline to call (tel:) with a copy button, the EVSE count.
    assert 'href="tel:+492215550100"' in html
    assert 'data-copy="+49 221 555 0100"' in html
    assert '<dd id="evse-count">42</dd>' in html
    # Support's values beside them: hours, the escalation e-mail to write to, the note.
    assert "Mon–Fri 8–18" in html
    assert 'href="mailto:escalation@allgemeine.example"' in html
    assert "Ask for the second level.<br>Never before 8." in html
    assert "not in the directory" not in html
    # A supervisor may edit what support adds (change_operator_contact).
    assert reverse("admin:charging_sessions_operator_change", args=[directory[A].pk]) in html


def test_operator_page_of_a_cpo_named_without_the_star(supervisor_client, stops, directory):
    stop("DECCC", at(5), State.CONFIRMED, seconds=20, code="000")
    html = supervisor_client.get(reverse("charging_sessions:operator-detail", kwargs={"operator_id": "DECCC"})).content
    html = html.decode()
    assert "Cee Charge" in html and '<dd id="evse-count">7</dd>' in html
    assert "Nothing yet (hotline hours, escalation e-mail, note)." in html


def test_operator_page_of_a_cpo_not_in_the_directory(supervisor_client, stops, directory):
    html = supervisor_client.get(reverse("charging_sessions:operator-detail", kwargs={"operator_id": B}) + QUERY)
    html = html.content.decode()
    assert 'id="cpo-not-in-directory"' in html and "is not in the directory" in html
    assert "tel:" not in html and '<h1>CPO <span class="mono">DE*BBB</span></h1>' in html


def test_unknown_operator_is_404(supervisor_client, stops):
    response = supervisor_client.get(reverse("charging_sessions:operator-detail", kwargs={"operator_id": "XX*NOP"}))
    assert response.status_code == 404


def test_overview_page(supervisor_client, stops, django_assert_max_num_queries):
    with django_assert_max_num_queries(10):
        response = supervisor_client.get(reverse("charging_sessions:operator-overview") + QUERY)
    assert response.status_code == 200
    html = response.content.decode()
    assert [row[0].operator_id for row in response.context["rows"]] == [A, B]
    assert "46.2 %" in html and "33.3 %" in html
    # Each row links to the CPO's page (the period kept) and to its filtered stop history.
    assert "/operators/DE*AAA/?date_from=2025-03-03&amp;date_to=2025-03-16" in html
    assert "/stops/?operator=DE%2ABBB&amp;date_from=2025-03-03&amp;date_to=2025-03-16" in html
    sorted_page = supervisor_client.get(reverse("charging_sessions:operator-overview") + QUERY + "&sort=failure")
    assert [row[0].operator_id for row in sorted_page.context["rows"]] == [B, A]


def _csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode())))


def test_csv_export_content(supervisor_client, stops):
    response = supervisor_client.get(reverse("charging_sessions:operator-overview-csv") + QUERY)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="stops-per-cpo-20250303-20250316.csv"' in response["Content-Disposition"]
    rows = _csv(response)
    assert rows[0] == ["# Stops per CPO", " requested 2025-03-03 to 2025-03-16"]
    assert rows[1][:4] == ["OperatorID", "Name", "EVSEs", "Stops sent"]
    assert rows[2] == [A, "", "", "13", "7", "5", "1", "1", "3", "2", "1", "38.5", "46.2", "30.0", "76.0"]
    assert rows[3] == [B, "", "", "3", "2", "2", "0", "0", "1", "0", "0", "66.7", "33.3", "75.0", "87.0"]


def test_csv_export_is_formula_inert(supervisor_client, stops):
    stop("=1+2", at(5), State.REJECTED, code="501")
    stop("@SUM(A1)", at(5), State.FAILED)
    rows = _csv(supervisor_client.get(reverse("charging_sessions:operator-overview-csv") + QUERY))
    first_cells = {row[0] for row in rows[2:]}
    assert {"'=1+2", "'@SUM(A1)"} <= first_cells
    for row in rows:
        for cell in row:
            assert not cell.lstrip(' "').startswith(("=", "+", "-", "@")), row


# --- who may see them ---------------------------------------------------------------------------

PAGES = ("operator-overview", "operator-overview-csv", "operator-detail")


@pytest.mark.parametrize(
    "role, status",
    [(roles.AGENT, 403), (None, 403), (roles.ADMIN, 200), (roles.SUPERVISOR, 200), (roles.AUDITOR, 200)],
)
@pytest.mark.parametrize("name", PAGES)
def test_who_may_see_the_cpo_pages(client, stops, role, status, name):
    client.force_login(UserFactory(username=f"who-{role or 'nobody'}".replace(" ", "-"), role=role))
    kwargs = {"operator_id": A} if name == "operator-detail" else {}
    response = client.get(reverse(f"charging_sessions:{name}", kwargs=kwargs))
    assert response.status_code == status
    if status == 403:
        assert "403.html" in [t.name for t in response.templates]  # the portal's 403 page


def test_anonymous_goes_to_the_login(client, db):
    response = client.get(reverse("charging_sessions:operator-overview"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_the_nav_link_only_for_those_who_may(client, stops):
    client.force_login(UserFactory(username="nav-agent", role=roles.AGENT))
    assert reverse("charging_sessions:operator-overview") not in client.get("/").content.decode()
    client.force_login(UserFactory(username="nav-auditor", role=roles.AUDITOR))
    assert reverse("charging_sessions:operator-overview") in client.get("/").content.decode()


# --- the period ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, field, message",
    [
        ("?date_from=2025-13-01&date_to=2025-03-16", "date_from", "Enter a valid date."),
        ("?date_from=1999-01-01&date_to=2025-03-16", "date_from", "Choose a day between"),
        ("?date_from=2025-03-16&date_to=2025-03-03", "date_to", "“To” is before “From”."),
        ("?date_from=2025-03-03", "date_to", "Choose the last day of the period."),
        ("?date_to=2025-03-16", "date_from", "Choose the first day of the period."),
        ("?date_from=2020-01-01&date_to=2025-03-16", "date_to", "Choose at most 731 days"),
        ("?period=last1000", "period", "Select a valid choice."),
    ],
)
@pytest.mark.parametrize("name", ("operator-overview", "operator-detail"))
def test_a_bad_period_is_said_next_to_its_field_and_changes_nothing(
    supervisor_client, stops, query, field, message, name
):
    kwargs = {"operator_id": A} if name == "operator-detail" else {}
    response = supervisor_client.get(reverse(f"charging_sessions:{name}", kwargs=kwargs) + query)
    assert response.status_code == 200
    html = response.content.decode()
    assert message in html
    if field != "period":
        assert f'aria-describedby="{field}-error"' in html and f'id="{field}-error"' in html
    else:
        assert 'id="period-error"' in html
    # The default period (the last 30 days) is shown, and says so.
    assert response.context["period"].days == 30 and not response.context["period_as_asked"]
    assert "cannot be used" in html
    csv_response = supervisor_client.get(reverse("charging_sessions:operator-overview-csv") + query)
    assert csv_response.status_code == 200


def test_presets(supervisor_client, stops):
    for key, days in (("last7", 7), ("last30", 30), ("last90", 90)):
        response = supervisor_client.get(reverse("charging_sessions:operator-overview") + f"?period={key}")
        assert response.context["period"].days == days and response.context["period_as_asked"]
        assert (
            'aria-current="true">' + {"last7": "Last 7 days", "last30": "Last 30 days", "last90": "Last 90 days"}[key]
            in response.content.decode()
        )


def test_postgresql_computes_the_percentiles_in_sql(stops, django_assert_num_queries):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    with django_assert_num_queries(1) as captured:
        selectors.operator_record(operator_id=A, period=PERIOD)
    assert "PERCENTILE_CONT(0.5) WITHIN GROUP" in captured.captured_queries[0]["sql"]
