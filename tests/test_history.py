"""The stop history and a stop request's timeline: who sees what, filters, sorting, paging, queries."""

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from sessions import roles, services
from sessions.models import AuditRecord, ChargeDetailRecord, InboundMessage, RemoteStopRequest, StopReason
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory, UserFactory

HISTORY = reverse("charging_sessions:stop-history")
State = RemoteStopRequest.State


def timeline_url(stop):
    return reverse("charging_sessions:stop-timeline", args=[stop.pk])


def at(day, hour=12):
    return timezone.make_aware(datetime.combine(day, datetime.min.time()) + timedelta(hours=hour))


@pytest.fixture
def people(db):
    return {
        "agent": UserFactory(username="agent-h", role=roles.AGENT),
        "other": UserFactory(username="agent-i", role=roles.AGENT),
        "admin": UserFactory(username="admin-h", role=roles.ADMIN),
    }


@pytest.fixture
def stops(people):
    """Four stops by two agents, at two CPOs, with different outcomes and days."""
    acc = ChargingSessionFactory(evse_id="DE*ACC*E1*1")
    off = ChargingSessionFactory(evse_id="DE*OFF*E2*1")
    fst = ChargingSessionFactory(evse_id="NL*FST*E3*1")
    requested = at(date(2026, 4, 1))
    return {
        "confirmed": RemoteStopRequestFactory(
            charging_session=acc,
            requested_by=people["agent"],
            requested_at=requested,
            state=State.CONFIRMED,
            reason=StopReason.CABLE_LOCKED,
            case_reference="CASE-1",
            oicp_code="000",
            attempt_count=1,
            first_sent_at=requested + timedelta(seconds=1),
            answered_at=requested + timedelta(seconds=3),
            finished_at=requested + timedelta(seconds=3),
            confirmed_at=requested + timedelta(seconds=95),
            time_to_confirmation=timedelta(seconds=95),
            confirmed_by="END",
        ),
        "rejected": RemoteStopRequestFactory(
            charging_session=off,
            requested_by=people["agent"],
            requested_at=at(date(2026, 4, 2)),
            state=State.REJECTED,
            reason=StopReason.DRIVER_ASKED,
            oicp_code="501",
            attempt_count=1,
        ),
        "failed": RemoteStopRequestFactory(
            charging_session=fst,
            requested_by=people["other"],
            requested_at=at(date(2026, 4, 3)),
            state=State.FAILED,
            reason=StopReason.DRIVER_ASKED,
            attempt_count=3,
            http_status=503,
            case_reference="CASE-2",
        ),
        "pending": RemoteStopRequestFactory(
            charging_session=ChargingSessionFactory(evse_id="DE*ACC*E9*1"),
            requested_by=people["other"],
            requested_at=at(date(2026, 4, 3), 18),
            reason=StopReason.BILLING_DISPUTE,
        ),
    }


def listed(response):
    return [stop.pk for stop, _ in response.context["rows"]]


def login(client, user):
    client.force_login(user)
    return client


# --- who sees what ---------------------------------------------------------------------------------


def test_admin_sees_every_stop_with_its_facts(client, people, stops):
    response = login(client, people["admin"]).get(HISTORY)
    assert response.status_code == 200
    assert listed(response) == [stops[k].pk for k in ("pending", "failed", "rejected", "confirmed")]
    content = response.content.decode()
    assert "4 stop requests" in content
    for text in (
        "agent-h",
        "agent-i",
        "DE*OFF*E2*1",
        stops["rejected"].charging_session.session_id,
        "CASE-1",
        "Cable locked",
        "Rejected",
        "501",
        "Communication to EVSE failed",
        "HTTP 503",
        "+1.0 s",
        "+1 min 35 s",
    ):
        assert text in content, text
    assert 'datetime="2026-04-01T12:00:00+02:00"' in content and "UTC+02:00" in content  # times keep their offset
    assert 'class="copy" data-copy="CASE-1"' in content  # IDs come with a copy button


def test_an_agent_sees_only_their_own_stops(client, people, stops):
    response = login(client, people["agent"]).get(HISTORY)
    assert listed(response) == [stops["rejected"].pk, stops["confirmed"].pk]
    assert b'name="agent"' not in response.content  # no agent filter for someone who sees only their own
    # Filtering by another agent cannot widen the view.
    assert listed(client.get(HISTORY, {"agent": people["other"].pk})) == [stops["rejected"].pk, stops["confirmed"].pk]


# --- filters, search, sort, pages ------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"date_from": "2026-04-02", "date_to": "2026-04-02"}, ["rejected"]),
        ({"date_from": "2026-04-03"}, ["pending", "failed"]),
        ({"date_to": "2026-04-01"}, ["confirmed"]),
        ({"agent": "AGENT"}, ["rejected", "confirmed"]),
        ({"operator": "de*acc"}, ["pending", "confirmed"]),
        ({"state": "FAILED"}, ["failed"]),
        ({"code": "501"}, ["rejected"]),
        ({"reason": "DRIVER_ASKED"}, ["failed", "rejected"]),
        ({"q": "CASE-2"}, ["failed"]),
        ({"q": "de*acc*e"}, ["pending", "confirmed"]),
        ({"q": "NL*FST*E3*1", "state": "FAILED", "reason": "DRIVER_ASKED"}, ["failed"]),
        ({"q": "nothing-like-this"}, []),
    ],
)
def test_filters_live_in_the_url_and_select_exactly(client, people, stops, params, expected):
    if params.get("agent") == "AGENT":
        params = {**params, "agent": people["agent"].pk}
    response = login(client, people["admin"]).get(HISTORY, params)
    assert listed(response) == [stops[name].pk for name in expected]
    assert response.context["page"].paginator.count == len(expected)


def test_search_by_session_id(client, people, stops):
    session_id = stops["failed"].charging_session.session_id
    assert listed(login(client, people["admin"]).get(HISTORY, {"q": session_id.upper()})) == [stops["failed"].pk]


@pytest.mark.parametrize(
    "sort, expected",
    [
        ("requested", ["confirmed", "rejected", "failed", "pending"]),
        ("-attempts", ["failed", "rejected", "confirmed", "pending"]),  # ties: newest first
        ("state", ["confirmed", "failed", "pending", "rejected"]),
        ("-confirmation", ["confirmed", "pending", "failed", "rejected"]),  # never confirmed: last
        ("agent", ["rejected", "confirmed", "pending", "failed"]),
        ("password", ["pending", "failed", "rejected", "confirmed"]),  # not whitelisted: the default order
    ],
)
def test_sorting_is_whitelisted(client, people, stops, sort, expected):
    response = login(client, people["admin"]).get(HISTORY, {"sort": sort})
    assert listed(response) == [stops[name].pk for name in expected]


def test_sort_links_keep_the_filters_and_say_the_order(client, people, stops):
    content = login(client, people["admin"]).get(HISTORY, {"state": "FAILED", "sort": "-requested"}).content.decode()
    assert 'aria-sort="descending"><a href="?state=FAILED&amp;sort=requested"' in content
    assert 'href="?state=FAILED&amp;sort=agent"' in content


def test_pages_keep_the_filters_and_queries_stay_constant(client, people, django_assert_max_num_queries):
    def make(n):
        for _ in range(n):
            RemoteStopRequestFactory(
                requested_by=people["agent"], state=State.REJECTED, oicp_code="400", attempt_count=1
            )

    login(client, people["admin"])
    make(3)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        client.get(HISTORY, {"state": "REJECTED"})
    make(60)
    with CaptureQueriesContext(connection) as many:
        response = client.get(HISTORY, {"state": "REJECTED"})
    assert len(many) == len(few)
    assert response.context["page"].paginator.count == 63 and len(listed(response)) == 50
    assert 'href="?state=REJECTED&amp;page=2"' in response.content.decode()
    second = client.get(HISTORY, {"state": "REJECTED", "page": 2})
    assert len(listed(second)) == 13
    assert client.get(HISTORY, {"page": "zz", "date_from": "not-a-date"}).status_code == 200


# --- the timeline of one request -------------------------------------------------------------------


def test_timeline_shows_every_audit_record_exchange_notifications_and_cdr(client, people):
    charging_session = ChargingSessionFactory(evse_id="DE*ACC*E5*1")
    stop = RemoteStopRequestFactory(
        charging_session=charging_session,
        requested_by=people["agent"],
        state=State.CONFIRMED,
        oicp_code="000",
        attempt_count=1,
        case_reference="T-7",
    )
    with transaction.atomic():
        services.record_audit(
            event_type=AuditRecord.EventType.STOP_REQUESTED,
            actor=people["agent"],
            stop_request=stop,
            data={"reason": "CABLE_LOCKED", "case_reference": "T-7"},
        )
        services.record_audit(
            event_type=AuditRecord.EventType.STOP_ACCEPTED,
            stop_request=stop,
            data={
                "attempt": 1,
                "oicp_code": "000",
                "request": {
                    "method": "POST",
                    "json": {"SessionID": charging_session.session_id, "EvseID": "DE*ACC*E5*1"},
                },
                "response": {"status": 200, "body": {"Result": True, "StatusCode": {"Code": "000"}}},
            },
        )
    now = timezone.now()
    InboundMessage.objects.create(
        kind=InboundMessage.Kind.END,
        charging_session=charging_session,
        session_id=charging_session.session_id,
        operator_id="DE*ACC",
        received_at=now,
        raw='{"Type": "End", "marker": "end-raw"}',
        parsed={},
    )
    ChargeDetailRecord.objects.create(
        charging_session=charging_session,
        session_id=charging_session.session_id,
        evse_id="DE*ACC*E5*1",
        charging_start=now,
        charging_end=now,
        session_start=now,
        session_end=now,
        consumed_energy_kwh=Decimal("7.250"),
        source="PUSH",
        received_at=now + timedelta(seconds=1),
        data={"marker": "cdr-data"},
    )
    other_session_message = InboundMessage.objects.create(
        kind=InboundMessage.Kind.START, session_id="x", received_at=now, raw="elsewhere", parsed={}
    )

    response = login(client, people["agent"]).get(timeline_url(stop))
    content = response.content.decode()
    assert response.status_code == 200
    kinds = [entry.kind for entry in response.context["timeline"].entries]
    assert kinds == ["audit", "audit", "inbound", "cdr"]
    assert "Stop requested" in content and "Stop accepted" in content and "T-7" in content
    assert "<details><summary>Exact request sent</summary>" in content
    assert "<details><summary>Exact response received</summary>" in content
    assert "&quot;EvseID&quot;: &quot;DE*ACC*E5*1&quot;" in content and "&quot;Result&quot;: true" in content
    assert "End notification received" in content and "end-raw" in content
    assert "Charge detail record" in content and "7.250 kWh" in content and "cdr-data" in content
    assert other_session_message.raw not in content
    assert "OICP 000" in content and "What it means" in content  # the playbook card for the code


def test_timeline_queries_do_not_grow_with_the_records(client, people, django_assert_max_num_queries):
    stop = RemoteStopRequestFactory(requested_by=people["agent"])
    login(client, people["agent"])
    for _ in range(30):
        with transaction.atomic():
            services.record_audit(
                event_type=AuditRecord.EventType.STOP_SENDING,
                actor=people["other"],
                stop_request=stop,
                data={"attempt": 1},
            )
    with django_assert_max_num_queries(12):
        assert client.get(timeline_url(stop)).status_code == 200


def test_an_agent_cannot_open_another_agents_stop(client, people, stops):
    login(client, people["agent"])
    assert client.get(timeline_url(stops["failed"])).status_code == 404
    assert client.get(timeline_url(stops["rejected"])).status_code == 200
    assert login(client, people["admin"]).get(timeline_url(stops["failed"])).status_code == 200
    assert client.get(reverse("charging_sessions:stop-timeline", args=[9999])).status_code == 404


def test_nav_links_follow_the_permissions(client, people, db):
    supervisor = UserFactory(username="sup-h", role=roles.SUPERVISOR)
    auditor = UserFactory(username="aud-h", role=roles.AUDITOR)
    for user, history, exports in (
        (people["agent"], True, False),
        (people["admin"], True, False),
        (supervisor, True, True),
        (auditor, True, True),
    ):
        content = login(client, user).get(reverse("charging_sessions:session-list")).content.decode()
        assert (f'href="{HISTORY}"' in content) is history
        assert (f'href="{reverse("charging_sessions:audit-export")}"' in content) is exports


# --- dates a user can type: never a 500, always an error next to the field ---------------------------


@pytest.mark.parametrize(
    "params, field",
    [
        ({"date_to": "9999-12-31"}, "date_to"),
        ({"date_from": "9999-12-31"}, "date_from"),
        ({"date_from": "0001-01-01"}, "date_from"),
        ({"date_from": "2026-04-03", "date_to": "2026-04-01"}, "date_to"),
        ({"date_from": "yesterday"}, "date_from"),
        ({"date_to": "2026-02-30"}, "date_to"),
    ],
)
def test_impossible_dates_are_said_next_to_the_field_and_never_answer_500(client, people, stops, params, field):
    response = login(client, people["admin"]).get(HISTORY, params)
    assert response.status_code == 200
    content = response.content.decode()
    assert f'id="{field}-error"' in content and f'aria-describedby="{field}-error"' in content
    assert response.context["form"].errors[field]
