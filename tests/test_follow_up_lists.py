"""The follow-up lists finish the job: the stuck queue (why each row is there, its age, filters and
sorting in the URL, a re-send behind the same confirmation as the session page), the sessions list
(the last stop's outcome in every state, a SessionID column, sortable columns) and the session
timeline (Progress notifications folded into one line; the stop events stay in view)."""

import html
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from sessions import roles
from sessions.audit.records import record_audit
from sessions.models import AuditRecord, ChargingSession, RemoteStopRequest, StopReason
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory, UserFactory

pytestmark = pytest.mark.usefixtures("no_broker")
State = RemoteStopRequest.State
Status = ChargingSession.Status
Event = AuditRecord.EventType
STUCK = reverse("charging_sessions:stuck-sessions")
LIST = reverse("charging_sessions:session-list")


def text_of(response) -> str:
    """The page as words: tags out, entities decoded, whitespace folded."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())).split())


def resend_url(stop):
    return reverse("charging_sessions:resend-stop", args=[stop.pk])


@pytest.fixture
def supervisor_client(client, db):
    client.force_login(UserFactory(username="sup", role=roles.SUPERVISOR))
    return client


@pytest.fixture
def queue_world(db, settings):
    """An accepted-never-confirmed stop, a failed one with unknown outcome, a failed one whose outcome is
    known (not stuck), and two silent sessions (one still charging, one with charging ended)."""
    settings.STUCK_SESSION_HOURS = 4
    settings.STOP_CONFIRMATION_MINUTES = 10
    now = timezone.now()
    unconfirmed = RemoteStopRequestFactory(
        state=State.UNCONFIRMED,
        oicp_code="000",
        oicp_description="Success",
        http_status=200,
        requested_at=now - timedelta(minutes=26),
        answered_at=now - timedelta(minutes=25),
        finished_at=now - timedelta(minutes=25),
        case_reference="C-7",
        reason=StopReason.CABLE_LOCKED,
        charging_session=ChargingSessionFactory(
            evse_id="DE*UNC*E1*1", session_id="aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa"
        ),
    )
    unknown = RemoteStopRequestFactory(
        state=State.FAILED,
        outcome_unknown=True,
        attempt_count=3,
        requested_at=now - timedelta(hours=2),
        finished_at=now - timedelta(hours=2) + timedelta(minutes=3),
        charging_session=ChargingSessionFactory(evse_id="DE*UNK*E1*1"),
    )
    known = RemoteStopRequestFactory(
        state=State.FAILED,
        outcome_unknown=False,
        attempt_count=3,
        finished_at=now - timedelta(hours=1),
        charging_session=ChargingSessionFactory(evse_id="DE*KNW*E1*1"),
    )
    silent = ChargingSessionFactory(
        evse_id="DE*SIL*E1*1", last_update_at=now - timedelta(hours=5), started_at=now - timedelta(hours=6)
    )
    ended = ChargingSessionFactory(
        evse_id="DE*CBL*E1*1",
        status=Status.CHARGING_ENDED,
        charging_ended_at=now - timedelta(hours=7),
        last_update_at=now - timedelta(hours=7),
    )
    ChargingSessionFactory(evse_id="DE*FRS*E1*1", last_update_at=now - timedelta(hours=1))
    return {"unconfirmed": unconfirmed, "unknown": unknown, "known": known, "silent": silent, "ended": ended}


# --- the stuck queue ------------------------------------------------------------------------------


def test_each_row_says_why_it_is_there_its_age_and_its_ids(supervisor_client, queue_world):
    response = supervisor_client.get(STUCK)
    assert response.status_code == 200
    text = text_of(response)
    assert "Accepted 25 min ago, no End or CDR since" in text
    assert "Failed with an unknown outcome: the stop may have reached the CPO" in text
    assert "No update for 5 h" in text and "No update for 7 h" in text
    assert "charging ended" in text.lower()  # the open session whose charging ended is there too
    assert "DE*CBL*E1*1" in text and "DE*FRS*E1*1" not in text
    assert "DE*KNW*E1*1" not in text  # a failure with a known outcome is not stuck
    # The words for a stuck stop are the portal's, not the "000 Success" code's.
    assert "the station is stopping the charge" not in text and "000 Success" not in text
    content = response.content.decode()
    session_id = queue_world["unconfirmed"].charging_session.session_id
    assert f'data-copy="{session_id}"' in content and f'title="{session_id}"' in content
    assert re.search(r"<strong><time datetime=[^>]+>25 min</time></strong>", content)  # the age, in bold


def test_the_queue_filters_by_kind_cpo_and_minimum_age_in_the_url(supervisor_client, queue_world):
    only_unknown = text_of(supervisor_client.get(STUCK, {"kind": "unknown"}))
    assert "DE*UNK*E1*1" in only_unknown and "DE*UNC*E1*1" not in only_unknown and "DE*SIL*E1*1" not in only_unknown
    stale = text_of(supervisor_client.get(STUCK, {"kind": "stale"}))
    assert "DE*SIL*E1*1" in stale and "DE*CBL*E1*1" in stale and "DE*UNC*E1*1" not in stale
    by_cpo = text_of(supervisor_client.get(STUCK, {"operator": "DE*SIL"}))
    assert "DE*SIL*E1*1" in by_cpo and "DE*UNC*E1*1" not in by_cpo
    older = text_of(supervisor_client.get(STUCK, {"min_age": "60"}))
    assert "DE*UNK*E1*1" in older and "DE*UNC*E1*1" not in older and "DE*SIL*E1*1" in older
    # The filters stay in the form, so the address is the one to share.
    assert 'value="unknown" selected' in supervisor_client.get(STUCK, {"kind": "unknown"}).content.decode()


@pytest.mark.parametrize(
    "params, field",
    [
        ({"kind": "bogus"}, "kind"),
        ({"min_age": "-5"}, "min_age"),
        ({"min_age": "abc"}, "min_age"),
        ({"sort": "pk;drop"}, "sort"),
        ({"operator": "X" * 50}, "operator"),
    ],
)
def test_bad_filter_values_are_said_next_to_their_field_never_a_500(supervisor_client, queue_world, params, field):
    response = supervisor_client.get(STUCK, params)
    assert response.status_code == 200
    content = response.content.decode()
    assert f'id="{field}-error"' in content
    assert "DE*UNC*E1*1" in content  # the rest of the queue is still there


def test_the_queue_sorts_oldest_first_and_by_cpo(supervisor_client, queue_world):
    def order(params):
        content = supervisor_client.get(STUCK, params).content.decode()
        return [evse for evse in re.findall(r"DE\*[A-Z]{3}\*E1\*1", content) if evse in ("DE*UNC*E1*1", "DE*UNK*E1*1")]

    assert order({})[:2] == ["DE*UNK*E1*1", "DE*UNC*E1*1"]  # oldest first by default
    assert order({"sort": "-age"})[:2] == ["DE*UNC*E1*1", "DE*UNK*E1*1"]
    assert order({"sort": "cpo"})[:2] == ["DE*UNC*E1*1", "DE*UNK*E1*1"]
    content = supervisor_client.get(STUCK, {"sort": "cpo"}).content.decode()
    assert 'aria-sort="ascending"' in content


def test_the_queue_reads_a_constant_number_of_queries(supervisor_client, queue_world, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        supervisor_client.get(STUCK)
    for n in range(15):
        RemoteStopRequestFactory(state=State.UNCONFIRMED, finished_at=timezone.now() - timedelta(minutes=30 + n))
        RemoteStopRequestFactory(
            state=State.FAILED, outcome_unknown=True, finished_at=timezone.now() - timedelta(minutes=30 + n)
        )
        ChargingSessionFactory(last_update_at=timezone.now() - timedelta(hours=6 + n))
    with django_assert_max_num_queries(len(few.captured_queries)):
        supervisor_client.get(STUCK)


# --- "Send stop again": the same confirmation, the row shows the new request ------------------------


def test_send_again_opens_the_stop_confirmation(supervisor_client, queue_world):
    stop = queue_world["unconfirmed"]
    page = supervisor_client.get(STUCK).content.decode()
    assert f'hx-get="{resend_url(stop)}"' in page and 'id="stop-dialog"' in page
    dialog = supervisor_client.get(resend_url(stop), HTTP_HX_REQUEST="true")
    content = html.unescape(dialog.content.decode())
    assert dialog.status_code == 200
    assert '<form id="stop-form"' in content and f'hx-post="{resend_url(stop)}"' in content
    assert 'id="id_reason"' in content and 'id="id_note"' in content and 'id="id_case_reference"' in content
    assert "DE*UNC*E1*1" in content and "C-7" in content  # what will happen, and the case reference kept
    assert dialog["HX-Trigger-After-Settle"] == "stop-dialog-open"
    # Without JavaScript the same confirmation is a page of its own.
    page = supervisor_client.get(resend_url(stop))
    assert page.status_code == 200 and '<form id="stop-form"' in page.content.decode()


def test_send_again_needs_a_reason_said_next_to_the_field(supervisor_client, queue_world):
    stop = queue_world["unconfirmed"]
    response = supervisor_client.post(resend_url(stop), {"reason": ""}, HTTP_HX_REQUEST="true")
    content = response.content.decode()
    assert response.status_code == 200 and "HX-Retarget" not in response  # the dialog stays open
    assert content.lstrip().startswith('<form id="stop-form"')
    assert '<p class="field-error" id="reason-error">Choose a reason for the stop.</p>' in content
    assert RemoteStopRequest.objects.filter(charging_session=stop.charging_session).count() == 1
    # Without htmx: the confirmation page again, with the error, nothing sent.
    plain = supervisor_client.post(resend_url(stop), {"reason": ""})
    assert plain.status_code == 200 and 'id="reason-error"' in plain.content.decode()
    assert RemoteStopRequest.objects.filter(charging_session=stop.charging_session).count() == 1


def test_send_again_answers_with_the_row_showing_the_new_request(supervisor_client, queue_world):
    stop = queue_world["unconfirmed"]
    response = supervisor_client.post(
        resend_url(stop), {"reason": StopReason.DRIVER_ASKED, "note": "still charging"}, HTTP_HX_REQUEST="true"
    )
    new = RemoteStopRequest.objects.exclude(pk=stop.pk).get(charging_session=stop.charging_session)
    assert (new.state, new.reason, new.case_reference) == (State.PENDING, StopReason.DRIVER_ASKED, "C-7")
    assert new.note.startswith("still charging") and f"#{stop.pk}" in new.note
    assert new.audit_records.get().actor.username == "sup"
    assert (response["HX-Retarget"], response["HX-Reswap"]) == (f"#stuck-stop-{stop.pk}", "outerHTML")
    assert response["HX-Trigger-After-Settle"] == "stop-dialog-done"
    text = text_of(response)
    assert f"Re-sent as request #{new.pk}, now: Queued" in text
    assert response.content.decode().lstrip().startswith(f'<tr id="stuck-stop-{stop.pk}"')
    # The row follows the new request, and the queue no longer lists the old one.
    RemoteStopRequest.objects.filter(pk=new.pk).update(state=State.SENDING, attempt_count=1)
    row = supervisor_client.get(resend_url(stop), {"row": "1"}, HTTP_HX_REQUEST="true")
    assert f"Re-sent as request #{new.pk}, now: Sent to Hubject" in text_of(row)
    assert "DE*UNC*E1*1" not in text_of(supervisor_client.get(STUCK))


def test_a_refused_resend_is_said_in_the_row(supervisor_client, queue_world):
    stop = queue_world["unconfirmed"]
    RemoteStopRequestFactory(charging_session=stop.charging_session, state=State.SENDING, attempt_count=1)
    response = supervisor_client.post(resend_url(stop), {"reason": StopReason.DRIVER_ASKED}, HTTP_HX_REQUEST="true")
    assert "Not sent again" in text_of(response) and "still open" in text_of(response)
    assert RemoteStopRequest.objects.filter(charging_session=stop.charging_session).count() == 2


# --- the sessions list ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state, extra, words",
    [
        (State.PENDING, {}, "Stop queued"),
        (State.SENDING, {"attempt_count": 1}, "Stop sent"),
        (State.ACCEPTED, {"oicp_code": "000"}, "Stop accepted"),
        (State.CONFIRMED, {"oicp_code": "000"}, "Stop confirmed"),
        (State.REJECTED, {"oicp_code": "501"}, "Stop rejected · 501"),
        (State.FAILED, {}, "Stop failed"),
        (State.FAILED, {"outcome_unknown": True}, "Stop failed · outcome unknown"),
        (State.UNCONFIRMED, {"oicp_code": "000"}, "Stop not confirmed"),
    ],
)
def test_the_list_shows_the_last_stops_outcome_in_every_state(agent_client, agent, state, extra, words):
    charging_session = ChargingSessionFactory()
    RemoteStopRequestFactory(
        charging_session=charging_session,
        state=State.REJECTED,
        oicp_code="400",
        requested_at=timezone.now() - timedelta(hours=1),
    )  # an older one: not shown
    RemoteStopRequestFactory(charging_session=charging_session, state=state, **extra)
    text = text_of(agent_client.get(LIST))
    assert words in text
    assert ("Stop rejected · 400" in text) is False


def test_the_list_has_a_session_id_column_with_copy(agent_client):
    charging_session = ChargingSessionFactory(session_id="0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9")
    content = agent_client.get(LIST).content.decode()
    assert '<th scope="col"' in content and "SessionID" in content
    assert f'title="{charging_session.session_id}"' in content
    assert f'data-copy="{charging_session.session_id}"' in content


def test_the_list_sorts_by_whitelisted_columns_newest_update_first_by_default(agent_client):
    now = timezone.now()
    ChargingSessionFactory(evse_id="DE*ACC*E3*1", last_update_at=now - timedelta(minutes=1), energy_kwh=Decimal("1"))
    ChargingSessionFactory(evse_id="DE*ACC*E1*1", last_update_at=now - timedelta(minutes=3), energy_kwh=Decimal("30"))
    ChargingSessionFactory(evse_id="DE*ACC*E2*1", last_update_at=now - timedelta(minutes=2), energy_kwh=None)

    def order(params):
        return re.findall(r"DE\*ACC\*E\d\*1", agent_client.get(LIST, params).content.decode())

    assert order({})[::2][:3] == order({"sort": "-updated"})[::2][:3]
    evses = lambda params: list(dict.fromkeys(order(params)))  # noqa: E731
    assert evses({}) == ["DE*ACC*E3*1", "DE*ACC*E2*1", "DE*ACC*E1*1"]
    assert evses({"sort": "evse"}) == ["DE*ACC*E1*1", "DE*ACC*E2*1", "DE*ACC*E3*1"]
    assert evses({"sort": "-energy"})[:2] == ["DE*ACC*E1*1", "DE*ACC*E3*1"]  # no energy yet: last
    assert evses({"sort": "nonsense; drop"}) == evses({})  # not in the list: the default order
    content = agent_client.get(LIST, {"sort": "evse", "status": "OPEN"}).content.decode()
    assert re.search(
        r'<th scope="col" aria-sort="ascending"><a href="\?[^"]*sort=-evse[^"]*" class="sort">EvseID', content
    )
    assert 'aria-sort="none"' in content


def test_the_list_reads_a_constant_number_of_queries(agent_client, agent, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    RemoteStopRequestFactory(state=State.REJECTED, oicp_code="501", requested_by=agent)
    with CaptureQueriesContext(connection) as few:
        agent_client.get(LIST)
    for state in [State.PENDING, State.ACCEPTED, State.UNCONFIRMED, State.FAILED, State.CONFIRMED] * 6:
        RemoteStopRequestFactory(state=state, requested_by=agent)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = agent_client.get(LIST)
    assert response.context["page"].paginator.count == 31


# --- the timeline -----------------------------------------------------------------------------------


def _progress(charging_session, energy):
    # Written in the order they happen (the chain's order is the timeline's): audit records are
    # append-only, never back-dated, and on PostgreSQL an UPDATE is refused.
    record_audit(
        event_type=Event.NOTIFICATION_RECEIVED,
        charging_session=charging_session,
        data={"kind": "PROGRESS", "message": {"Type": "Progress", "ConsumedEnergyProgress": energy}},
    )


def test_the_timeline_folds_progress_notifications_and_keeps_the_stop_in_view(agent_client, agent):
    charging_session = ChargingSessionFactory()
    start = timezone.now() - timedelta(hours=4)
    stop = RemoteStopRequestFactory(
        charging_session=charging_session,
        requested_by=agent,
        state=State.ACCEPTED,
        requested_at=start + timedelta(minutes=5),
    )
    record_audit(
        event_type=Event.STOP_ACCEPTED,
        stop_request=stop,
        data={"attempt": 1, "oicp_code": "000", "request": {"SessionID": "x"}, "response": {"body": {"Result": True}}},
    )
    for minute in range(230):  # one Progress a minute, for almost four hours
        _progress(charging_session, f"{minute / 10:.3f}")

    content = agent_client.get(reverse("charging_sessions:session-detail", args=[charging_session.pk])).content.decode()
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", content)).split())
    assert "230 Progress notifications, latest 22.9 kWh at" in text
    assert content.count("<summary") < 20  # not one line a minute
    assert "Stop accepted" in text  # the stop event stays in view
    assert "pprint" not in content and "{&#x27;" not in content and "&quot;Result&quot;: true" in content  # JSON
    # The fold sits where its latest notification is: above the (older) stop event.
    assert text.index("230 Progress notifications") < text.index("Stop accepted")
