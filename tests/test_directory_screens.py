"""Hubject's EVSE directory on the agent's screens (issue 15, items 2 and 3): the session page's station
and CPO with its hotline, the EVSE's live status loaded after the page, the playbook naming the CPO, the
stuck queue's hotlines, and the place search that forgives typos."""

from datetime import timedelta

import pytest
import requests
import responses
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from sessions import roles
from sessions.directory import selectors as directory
from sessions.models import RemoteStopRequest
from sessions.oicp.paths import PULL_EVSE_STATUS_BY_ID
from sessions.stops import presenters
from tests.factories import (
    ChargingSessionFactory,
    EvseRecordFactory,
    OperatorFactory,
    RemoteStopRequestFactory,
    UserFactory,
)

pytestmark = pytest.mark.usefixtures("no_broker")
State = RemoteStopRequest.State
STATUS_URL = "http://127.0.0.1:9" + PULL_EVSE_STATUS_BY_ID.format(provider_id="DE-EMP")


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def offgrid(db):
    return OperatorFactory(
        operator_id="DE*ACC",
        name="Offgrid Ladestationen",
        hotline="+49 30 9876543",
        hotline_hours="Mon–Fri 8–20",
        escalation_email="noc@offgrid.example",
        internal_note="Ask for the night desk after 20:00.",
    )


def status_answer(evse_id, status):
    return {"EVSEStatusRecords": {"EvseStatusRecord": [{"EvseID": evse_id, "EvseStatus": status}]}}


# --- the session page ------------------------------------------------------------------------


def test_session_page_shows_station_address_map_and_the_cpo_beside_supports_values(agent_client, offgrid):
    EvseRecordFactory(evse_id="DE*ACC*E100*1", operator=offgrid, station_name="Lidl Köln-Ehrenfeld")
    # The session names its operator without the "*" and its EVSE in another spelling.
    cs = ChargingSessionFactory(evse_id="DEACCE100*1", operator_id="DEACC")
    page = agent_client.get(reverse("charging_sessions:session-detail", args=[cs.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Lidl Köln-Ehrenfeld" in html and "Hauptstraße 12, 50823 Köln" in html
    assert "https://www.openstreetmap.org/?mlat=50.949300&amp;mlon=6.918200#map=18/50.949300/6.918200" in html
    assert "Offgrid Ladestationen" in html
    assert 'href="tel:+49309876543"' in html and 'data-copy="+49 30 9876543"' in html
    # Support's values beside Hubject's, each under its own heading.
    assert "CPO, from Hubject" in html and "Added by support" in html
    assert "Mon–Fri 8–20" in html and 'href="mailto:noc@offgrid.example"' in html and "night desk" in html
    # The live status is not part of the page: it loads afterwards.
    assert 'hx-get="{}"'.format(reverse("charging_sessions:evse-status", args=[cs.pk])) in html
    assert 'hx-trigger="load"' in html
    assert "not in Hubject's directory" not in html


def test_the_evses_own_hotline_wins_over_the_operators(agent_client, offgrid):
    EvseRecordFactory(evse_id="DE*ACC*E101*1", operator=offgrid, hotline="+49 221 555")
    cs = ChargingSessionFactory(evse_id="DE*ACC*E101*1")
    html = agent_client.get(reverse("charging_sessions:session-detail", args=[cs.pk])).content.decode()
    assert 'href="tel:+49221555"' in html


def test_session_page_without_a_directory_entry_says_so(agent_client, db):
    cs = ChargingSessionFactory(evse_id="DE*XYZ*E1*1", operator_id="DE*XYZ")
    page = agent_client.get(reverse("charging_sessions:session-detail", args=[cs.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert (
        "This EVSE is not in Hubject&#x27;s directory yet" in html
        or "This EVSE is not in Hubject's directory yet" in html
    )
    assert "is not in Hubject" in html and "tel:" not in html


def test_session_page_with_the_operator_known_but_not_the_evse(agent_client, offgrid):
    cs = ChargingSessionFactory(evse_id="DE*ACC*E999*1")
    html = agent_client.get(reverse("charging_sessions:session-detail", args=[cs.pk])).content.decode()
    assert "This EVSE is not in Hubject" in html
    assert 'href="tel:+49309876543"' in html


# --- the live status ---------------------------------------------------------------------------


def test_live_status_shows_hubjects_answer_with_its_age(agent_client, offgrid):
    cs = ChargingSessionFactory(evse_id="DE*ACC*E200*1")
    url = reverse("charging_sessions:evse-status", args=[cs.pk])
    with responses.RequestsMock() as hbs:
        hbs.add(responses.POST, STATUS_URL, json=status_answer("DE*ACC*E200*1", "Occupied"))
        html = agent_client.get(url).content.decode()
        sent = hbs.calls[0].request
    assert b'"EvseID": ["DE*ACC*E200*1"]' in sent.body and b'"ProviderID": "DE-EMP"' in sent.body
    assert "<strong>Occupied</strong> · " in html and "s ago</time>" in html


def test_live_status_is_cached_a_minute(agent_client, db):
    cs = ChargingSessionFactory(evse_id="DE*ACC*E201*1")
    url = reverse("charging_sessions:evse-status", args=[cs.pk])
    with responses.RequestsMock() as hbs:
        hbs.add(responses.POST, STATUS_URL, json=status_answer("DE*ACC*E201*1", "OutOfService"))
        first = agent_client.get(url).content.decode()
        second = agent_client.get(url).content.decode()
        assert len(hbs.calls) == 1  # the second look did not ask Hubject
    assert "Out of service" in first and "Out of service" in second


def test_a_slow_hubject_gives_unknown_fast(agent_client, db):
    cs = ChargingSessionFactory(evse_id="DE*ACC*E202*1")
    url = reverse("charging_sessions:evse-status", args=[cs.pk])
    with responses.RequestsMock() as hbs:
        hbs.add(responses.POST, STATUS_URL, body=requests.exceptions.ReadTimeout("read timed out (3 s)"))
        html = agent_client.get(url).content.decode()
        # The timeout asked of requests is the short one of a screen, never the stop's 75 s.
        assert hbs.calls[0].request.req_kwargs["timeout"] == (
            directory.EVSE_STATUS_TIMEOUT_SECONDS,
            directory.EVSE_STATUS_TIMEOUT_SECONDS,
        )
    assert "<strong>unknown</strong>" in html


@pytest.mark.parametrize(
    "answer",
    [
        {"status": 500, "json": {"message": "oops"}},
        {"status": 200, "body": "not json"},
        {"status": 200, "json": {"EVSEStatusRecords": {"EvseStatusRecord": []}}},
        {"status": 200, "json": {"StatusCode": {"Code": "021"}}},
        {"body": requests.exceptions.ConnectionError("refused")},
    ],
    ids=["http-500", "not-json", "no-record", "no-list", "connection-refused"],
)
def test_no_answer_or_an_error_gives_unknown(agent_client, db, answer):
    cs = ChargingSessionFactory(evse_id="DE*ACC*E203*1")
    with responses.RequestsMock() as hbs:
        hbs.add(responses.POST, STATUS_URL, **answer)
        html = agent_client.get(reverse("charging_sessions:evse-status", args=[cs.pk])).content.decode()
    assert "<strong>unknown</strong>" in html


# --- the playbook names the CPO -------------------------------------------------------------------


def _failed_501(evse_id):
    cs = ChargingSessionFactory(evse_id=evse_id)
    return RemoteStopRequestFactory(
        charging_session=cs, state=State.REJECTED, oicp_code="501", attempt_count=1, finished_at=timezone.now()
    )


def test_playbook_names_the_operator_and_its_hotline(db, offgrid):
    stop = _failed_501("DE*ACC*E300*1")
    facts = presenters.stop_facts(stop_request=stop)
    card = presenters.advise(facts.subject, facts)
    assert "Escalate to Offgrid Ladestationen at +49 30 9876543 (station offline)" in card.next_step
    assert "the CPO's hotline" not in card.next_step


def test_playbook_keeps_todays_words_when_the_cpo_is_unknown(db):
    stop = _failed_501("DE*XYZ*E300*1")
    facts = presenters.stop_facts(stop_request=stop)
    card = presenters.advise(facts.subject, facts)
    assert "Escalate to the CPO's hotline (station offline) with the EvseID and correlation id." in card.next_step


def test_playbook_on_the_session_page_names_the_cpo(agent_client, offgrid):
    stop = _failed_501("DE*ACC*E301*1")
    html = agent_client.get(reverse("charging_sessions:session-detail", args=[stop.charging_session.pk]))
    assert "Escalate to Offgrid Ladestationen at +49 30 9876543" in html.content.decode()


def test_playbook_facts_cost_one_query(db, offgrid, django_assert_num_queries):
    stop = _failed_501("DE*ACC*E302*1")
    with django_assert_num_queries(1):
        contact = directory.cpo_contact(operator_id="DEACC", evse_id="DE ACC E302 1")
    assert contact == directory.CpoContact(name="Offgrid Ladestationen", hotline="+49 30 9876543")
    assert stop


# --- the stuck queue --------------------------------------------------------------------------


def test_stuck_queue_shows_each_rows_hotline_without_a_query_per_row(client, offgrid, django_assert_max_num_queries):
    client.force_login(UserFactory(username="sup", role=roles.SUPERVISOR))
    other = OperatorFactory(operator_id="DE*OTH", name="Other CPO", hotline="+49 40 111")
    now = timezone.now()
    for n in range(6):
        RemoteStopRequestFactory(
            charging_session=ChargingSessionFactory(evse_id=f"DE*ACC*E4{n:02d}*1", operator_id="DEACC"),
            state=State.UNCONFIRMED,
            finished_at=now - timedelta(minutes=20 + n),
            oicp_code="000",
        )
        ChargingSessionFactory(evse_id=f"DE*OTH*E4{n:02d}*1", last_update_at=now - timedelta(hours=30))
    ChargingSessionFactory(evse_id="DE*NON*E1*1", last_update_at=now - timedelta(hours=30))
    url = reverse("charging_sessions:stuck-sessions")
    client.get(url)  # warm up: session, permissions
    with django_assert_max_num_queries(12) as captured:
        html = client.get(url).content.decode()
    fewer_rows = len(captured.captured_queries)
    assert html.count('href="tel:+49309876543"') == 6 and html.count('href="tel:+4940111"') == 6
    assert other.name in html
    # The same number of queries with a single row: none per row.
    RemoteStopRequest.objects.exclude(pk=RemoteStopRequest.objects.order_by("pk").first().pk).delete()
    with django_assert_max_num_queries(fewer_rows):
        client.get(url)


# --- the place search -------------------------------------------------------------------------


@pytest.fixture
def places(offgrid):
    lidl = [
        EvseRecordFactory(evse_id=f"DE*ACC*E5{n}*1", operator=offgrid, charging_station_id="LIDL-KOELN-1")
        for n in range(2)
    ]
    EvseRecordFactory(
        evse_id="DE*ACC*E600*1",
        operator=offgrid,
        station_name="Aldi Süd",
        street="Hauptstraße",
        city="Bonn",
        postal_code="53111",
    )
    EvseRecordFactory(
        evse_id="DE*ACC*E700*1",
        operator=offgrid,
        station_name="Rewe",
        street="Venloer Straße",
        house_number="3",
        postal_code="50825",
        city="Köln",
    )
    return lidl


def test_place_search_forgives_typos(places):
    found = directory.search_places("Haupstrasse Koln")
    assert [station.name for station in found] == ["Lidl Köln-Ehrenfeld"]
    assert sorted(evse.record.evse_id for evse in found[0].evses) == ["DE*ACC*E50*1", "DE*ACC*E51*1"]
    assert [s.name for s in directory.search_places("Lidl Hauptstraße Köln")] == ["Lidl Köln-Ehrenfeld"]
    assert {s.name for s in directory.search_places("hauptstrase")} == {"Lidl Köln-Ehrenfeld", "Aldi Süd"}
    assert [s.name for s in directory.search_places("50823")] == ["Lidl Köln-Ehrenfeld"]
    assert [s.name for s in directory.search_places("Venloer Strasse 3 Koeln")] == ["Rewe"]
    assert directory.search_places("Zugspitze") == []


def test_place_search_ranks_by_matched_words(places):
    # "Köln" alone names two stations; with "Lidl" only the one matching both is listed.
    assert {s.name for s in directory.search_places("Koln")} == {"Lidl Köln-Ehrenfeld", "Rewe"}
    assert [s.name for s in directory.search_places("Lidl Koln")] == ["Lidl Köln-Ehrenfeld"]


@pytest.mark.parametrize("query", ["Haupstrasse Koln", "Venloer Strasse 3 Koeln", "Lidl Bonn", "50823"])
def test_the_place_search_reads_indexes_and_never_scans_the_evse_table(places, query):
    # Every statement the search sends, explained on the database the suite runs on (PostgreSQL with
    # enable_seqscan off: its test tables are tiny); the full-text query goes through its own index.
    with CaptureQueriesContext(connection) as captured:
        assert directory.search_places(query)
    statements = [q["sql"] for q in captured.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")]
    plans = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET enable_seqscan = off")
        for sql in statements:
            cursor.execute(("EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN ") + sql)
            plans.append("\n".join(" ".join(str(cell) for cell in row) for row in cursor.fetchall()))
        if connection.vendor == "postgresql":
            cursor.execute("SET enable_seqscan = on")
    text = "\n\n".join(plans)
    if connection.vendor == "sqlite":
        assert "VIRTUAL TABLE INDEX" in text and "SCAN charging_sessions_evserecord" not in text, text
        assert "SCAN charging_sessions_placeword" not in text, text
    else:
        assert "evse_place_words_idx" in text and "Seq Scan on charging_sessions_evserecord" not in text, text
        assert "Seq Scan on charging_sessions_placeword" not in text, text


def test_place_search_corrects_a_typo_in_any_half_of_a_word(places):
    assert [s.name for s in directory.search_places("Venlor Koln")] == ["Rewe"]  # second half
    assert [s.name for s in directory.search_places("Wenloer Koln")] == ["Rewe"]  # first half
    # No station has both words: those matching one of them.
    assert {s.name for s in directory.search_places("Lidl Bonn")} == {"Lidl Köln-Ehrenfeld", "Aldi Süd"}
    assert directory.search_places("50824") == []  # numbers are never corrected


def test_the_search_box_lists_places_with_their_open_sessions(agent_client, places):
    open_session = ChargingSessionFactory(evse_id="DE*ACC*E51*1")
    ChargingSessionFactory(evse_id="DE*ACC*E50*1", status="CLOSED")
    page = agent_client.get(reverse("charging_sessions:session-list"), {"q": "Haupstrasse Koln", "status": ""})
    assert page.status_code == 200
    html = page.content.decode()
    assert "Places" in html and "Lidl Köln-Ehrenfeld" in html
    assert reverse("charging_sessions:session-detail", args=[open_session.pk]) in html
    assert html.count("Open session, started") == 1
    station = reverse("charging_sessions:station-detail", args=[places[0].pk])
    assert station in html
    # The station's page lists its EVSEs with their open sessions and the hotline.
    html = agent_client.get(station).content.decode()
    assert "DE*ACC*E50*1" in html and "DE*ACC*E51*1" in html
    assert reverse("charging_sessions:session-detail", args=[open_session.pk]) in html
    assert 'href="tel:+49309876543"' in html


def test_an_id_search_lists_no_places_and_still_opens_the_one_session(agent_client, places):
    cs = ChargingSessionFactory(evse_id="DE*ACC*E51*1")
    page = agent_client.get(reverse("charging_sessions:session-list"), {"q": "DE ACC E51 1"})
    assert page.status_code == 302 and page.url == reverse("charging_sessions:session-detail", args=[cs.pk])
    assert not directory.looks_like_place("DE*ACC*E51*1") and not directory.looks_like_place("1df4fad6")
    assert directory.looks_like_place("Lidl Hauptstraße Köln") and directory.looks_like_place("50823")


# --- who may see it ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", [roles.AGENT, roles.AUDITOR, roles.SUPERVISOR, roles.ADMIN])
def test_every_role_that_sees_sessions_uses_the_directory(client, places, role):
    client.force_login(UserFactory(username="someone", role=role))
    cs = ChargingSessionFactory(evse_id="DE*ACC*E50*1")
    with responses.RequestsMock() as hbs:
        hbs.add(responses.POST, STATUS_URL, json=status_answer("DE*ACC*E50*1", "Available"))
        assert client.get(reverse("charging_sessions:evse-status", args=[cs.pk])).status_code == 200
    assert client.get(reverse("charging_sessions:session-detail", args=[cs.pk])).status_code == 200
    assert client.get(reverse("charging_sessions:station-detail", args=[places[0].pk])).status_code == 200
    assert client.get(reverse("charging_sessions:session-list"), {"q": "Lidl"}).status_code == 200


def test_the_directory_screens_need_a_login_and_a_known_row(agent_client, db):
    cs = ChargingSessionFactory()
    client = Client()  # not logged in
    assert client.get(reverse("charging_sessions:evse-status", args=[cs.pk])).status_code == 302
    assert client.get(reverse("charging_sessions:station-detail", args=[1])).status_code == 302
    assert agent_client.get(reverse("charging_sessions:station-detail", args=[99999])).status_code == 404
    assert agent_client.get(reverse("charging_sessions:evse-status", args=[99999])).status_code == 404
