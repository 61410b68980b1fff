"""The supervisors' pages at full size (bench/RESULTS.md, "Pages"): the stop history counts no
further than it needs, and the stuck queue finds its stops through the open sessions' indexes, in
one pass that also counts them, then reads one page of them whole."""

import html
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from sessions import listing, roles
from sessions.charging import selectors
from sessions.models import ChargingSession, RemoteStopRequest
from sessions.models.charging import OPEN_SESSION_Q
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory, UserFactory

pytestmark = pytest.mark.usefixtures("no_broker")
HISTORY = reverse("charging_sessions:stop-history")
State = RemoteStopRequest.State


def text_of(response) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())).split())


@pytest.fixture
def admin_client(client, db):
    client.force_login(UserFactory(username="admin-p", role=roles.ADMIN))
    return client


# --- the stop history's count ------------------------------------------------------------------------


@pytest.fixture
def five_stops(db, monkeypatch):
    """Five stops, pages of two, counted exactly up to three."""
    monkeypatch.setattr("sessions.stops.views.PAGE_SIZE", 2)
    monkeypatch.setattr(listing, "COUNT_LIMIT", 3)
    now = timezone.now()
    return [RemoteStopRequestFactory(requested_at=now - timedelta(minutes=n)) for n in range(5)]


def test_past_its_limit_the_history_says_more_than(admin_client, five_stops):
    response = admin_client.get(HISTORY)
    words = text_of(response)
    assert "More than 3 stop requests · page 1 of more than 1" in words
    assert "Page 1 of more than 1" in words and 'href="?page=2"' in response.content.decode()
    paginator = response.context["page"].paginator
    assert paginator.capped and paginator.count == 4  # counted to the limit and one more, no further


def test_a_page_past_the_limit_counts_that_far_and_is_exact_at_the_end(admin_client, five_stops):
    response = admin_client.get(HISTORY, {"page": 3})
    assert "5 stop requests · page 3 of 3" in text_of(response)
    assert not response.context["page"].paginator.capped
    assert [row[0].pk for row in response.context["rows"]] == [five_stops[4].pk]


@pytest.mark.parametrize("page", ["0", "-3"])
def test_a_page_below_one_shows_the_first_page_not_a_made_up_last_one(admin_client, five_stops, page):
    response = admin_client.get(HISTORY, {"page": page})
    assert "More than 3 stop requests · page 1 of more than 1" in text_of(response)
    assert [row[0].pk for row in response.context["rows"]] == [five_stops[0].pk, five_stops[1].pk]


def test_under_its_limit_the_history_counts_exactly_in_one_query(admin_client, five_stops, monkeypatch):
    monkeypatch.setattr(listing, "COUNT_LIMIT", 10)
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(HISTORY, {"page": "not-a-number"})
    assert "5 stop requests · page 1 of 3" in text_of(response)
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"] and "remotestoprequest" in q["sql"]]
    assert len(counts) == 1 and "LIMIT 11" in counts[0], counts


# --- the stuck queue -----------------------------------------------------------------------------------


@pytest.fixture
def stuck_world(db, settings):
    """Three stuck stops of open sessions at three CPOs, one of a closed session (stays UNCONFIRMED for
    ever, not stuck), one taken over by a later stop, and a failed one whose outcome is known."""
    settings.STUCK_SESSION_HOURS = 4
    now = timezone.now()

    def stuck(operator, minutes, **extra):
        session = ChargingSessionFactory(operator_id=operator, evse_id=f"{operator}*E{minutes}*1")
        return RemoteStopRequestFactory(
            charging_session=session,
            state=extra.pop("state", State.UNCONFIRMED),
            finished_at=now - timedelta(minutes=minutes),
            **extra,
        )

    world = {
        "b_oldest": stuck("DE*BBB", 90),
        "a_middle": stuck("DE*AAA", 60, state=State.FAILED, outcome_unknown=True),
        "c_newest": stuck("DE*CCC", 30),
    }
    closed = ChargingSessionFactory(status=ChargingSession.Status.CLOSED)
    RemoteStopRequestFactory(charging_session=closed, state=State.UNCONFIRMED, finished_at=now - timedelta(hours=9))
    taken_over = stuck("DE*DDD", 120)
    RemoteStopRequestFactory(charging_session=taken_over.charging_session, state=State.ACCEPTED)
    stuck("DE*EEE", 100, state=State.FAILED, outcome_unknown=False)
    return world


@pytest.mark.parametrize(
    "sort, expected",
    [
        ("age", ["b_oldest", "a_middle"]),
        ("-age", ["c_newest", "a_middle"]),
        ("cpo", ["a_middle", "b_oldest"]),
        ("-cpo", ["c_newest", "b_oldest"]),
    ],
)
def test_the_queue_shows_one_page_of_stuck_stops_in_order_and_counts_them_all(stuck_world, sort, expected):
    with CaptureQueriesContext(connection) as queries:
        queue = selectors.stuck_queue(sort=sort, limit=2)
    assert len(queries) == 4  # the page's stop ids with their total, those stops, the silent sessions, their count
    assert [stop.pk for stop in queue.unconfirmed] == [stuck_world[name].pk for name in expected]
    assert queue.unconfirmed_count == 3
    first = queue.unconfirmed[0]  # read whole: its session, its newest stop, its CPO's contact
    assert first.charging_session.evse_id and first.latest_stop_pk == first.pk and first.cpo_name is None


def test_the_queue_by_kind_and_cpo(stuck_world):
    unknown = selectors.stuck_queue(kind=selectors.UNKNOWN)
    assert [stop.pk for stop in unknown.unconfirmed] == [stuck_world["a_middle"].pk] and unknown.unconfirmed_count == 1
    one_cpo = selectors.stuck_queue(operator_id="de*ccc")
    assert [stop.pk for stop in one_cpo.unconfirmed] == [stuck_world["c_newest"].pk]
    silent_only = selectors.stuck_queue(kind=selectors.STALE)
    assert silent_only.unconfirmed == [] and silent_only.unconfirmed_count == 0


STOP_QUERIES = (
    'SELECT "charging_sessions_remotestoprequest".',
    'SELECT COUNT(*) AS "__count" FROM "charging_sessions_remotestoprequest"',
)


def test_the_open_sessions_are_every_status_but_closed():
    # OPEN_SESSION_Q is a fixed list (a partial index's condition): a new status must be added there.
    assert set(OPEN_SESSION_Q.children[0][1]) == set(ChargingSession.Status.values) - {ChargingSession.Status.CLOSED}


def _plans(queue_call) -> list[str]:
    """The plan of each query the call makes for stop requests (PostgreSQL: seq scans off, as the
    test tables are tiny and a scan would always be cheapest)."""
    with CaptureQueriesContext(connection) as queries:
        queue_call()
    plans = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")
        for query in queries.captured_queries:
            if query["sql"].startswith(STOP_QUERIES):
                prefix = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
                cursor.execute(prefix + query["sql"])
                plans.append("\n".join(str(row[-1]) for row in cursor.fetchall()))
    return plans


def test_the_queue_finds_its_stops_through_the_open_sessions(stuck_world):
    # bench/RESULTS.md: reading every stop in the stuck states (most of them of closed sessions)
    # made the queue grow with the history.
    found, read = _plans(lambda: selectors.stuck_queue())  # the page's ids and total, then its stops
    if connection.vendor == "sqlite":
        assert "stop_state_session_at_idx (state=? AND charging_session_id=?)" in found, found
        assert "SCAN charging_sessions_remotestoprequest" not in read, read
    else:
        assert "stop_stuck_session_idx" in found, found
        assert "Seq Scan on charging_sessions_remotestoprequest" not in read, read
