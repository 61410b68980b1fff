"""Temporary: screenshots of the agent's card (helper 6). Not part of the suite."""
import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from sessions import roles
from sessions.models import AuditRecord, ChargingSession, RemoteStopRequest
from sessions.services.audit import record_audit
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory, UserFactory

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
E = AuditRecord.EventType
S = RemoteStopRequest.State
DOCS = Path(__file__).resolve().parent.parent / "docs"


def events(stop, *rows):
    for event, data in rows:
        record_audit(event_type=event, stop_request=stop, data=data)


def scenario(name):
    now = timezone.now()
    agent = UserFactory(username="screens-agent", role=roles.AGENT)
    if name == "failed":
        cs = ChargingSessionFactory(evse_id="DE*SLW*E0042*1", operator_id="DE*SLW",
                                    started_at=now - timedelta(minutes=50))
        stop = RemoteStopRequestFactory(charging_session=cs, requested_by=agent, state=S.FAILED, attempt_count=3,
                                        oicp_code="310", oicp_description="Partner did not respond.", http_status=200,
                                        requested_at=now - timedelta(seconds=241), first_sent_at=now - timedelta(seconds=240),
                                        last_sent_at=now - timedelta(seconds=62), answered_at=now - timedelta(seconds=1),
                                        finished_at=now - timedelta(seconds=1), case_reference="CASE-4711",
                                        process_id="b1f2c3d4-0000-4a5b-9c8d-ffee00112233")
        events(stop, (E.STOP_REQUESTED, {"reason": "CABLE_LOCKED", "case_reference": "CASE-4711"}),
               (E.STOP_SENDING, {"attempt": 1}), (E.STOP_ATTEMPT_FAILED, {"attempt": 1, "failure_kind": ""}),
               (E.STOP_SENDING, {"attempt": 2}), (E.STOP_ATTEMPT_FAILED, {"attempt": 2, "failure_kind": ""}),
               (E.STOP_SENDING, {"attempt": 3}), (E.STOP_FAILED, {"attempt": 3, "failure_kind": ""}))
    elif name == "400-open":
        cs = ChargingSessionFactory(evse_id="DE*ACC*E7260*4", operator_id="DE*ACC",
                                    started_at=now - timedelta(hours=2))
        stop = RemoteStopRequestFactory(charging_session=cs, requested_by=agent, state=S.REJECTED, attempt_count=1,
                                        oicp_code="400", oicp_description="Session is invalid.", http_status=200,
                                        requested_at=now - timedelta(seconds=40), first_sent_at=now - timedelta(seconds=39),
                                        last_sent_at=now - timedelta(seconds=39), answered_at=now - timedelta(seconds=37),
                                        finished_at=now - timedelta(seconds=37))
        events(stop, (E.STOP_REQUESTED, {"reason": "DRIVER_ASKED"}), (E.STOP_SENDING, {"attempt": 1}),
               (E.STOP_REJECTED, {"attempt": 1, "failure_kind": ""}))
    elif name == "confirmed":
        cs = ChargingSessionFactory(evse_id="DE*ACC*E0001*1", operator_id="DE*ACC", status=ChargingSession.Status.CLOSED,
                                    started_at=now - timedelta(hours=1), cdr_received_at=now - timedelta(seconds=30),
                                    ended_at=now - timedelta(seconds=30), charging_ended_at=now - timedelta(seconds=80))
        stop = RemoteStopRequestFactory(charging_session=cs, requested_by=agent, state=S.CONFIRMED, attempt_count=1,
                                        oicp_code="000", http_status=200, requested_at=now - timedelta(seconds=100),
                                        first_sent_at=now - timedelta(seconds=99), answered_at=now - timedelta(seconds=95),
                                        finished_at=now - timedelta(seconds=95), confirmed_at=now - timedelta(seconds=30),
                                        confirmed_by="CDR", time_to_confirmation=timedelta(seconds=70))
    elif name == "accepted":
        cs = ChargingSessionFactory(evse_id="DE*ACC*E0002*1", operator_id="DE*ACC", started_at=now - timedelta(hours=1))
        stop = RemoteStopRequestFactory(charging_session=cs, requested_by=agent, state=S.ACCEPTED, attempt_count=1,
                                        oicp_code="000", http_status=200, requested_at=now - timedelta(seconds=20),
                                        first_sent_at=now - timedelta(seconds=19), answered_at=now - timedelta(seconds=15),
                                        finished_at=now - timedelta(seconds=15))
    else:  # retrying
        cs = ChargingSessionFactory(evse_id="FR*ERR*E0007*2", operator_id="FR*ERR",
                                    started_at=now - timedelta(minutes=20))
        stop = RemoteStopRequestFactory(charging_session=cs, requested_by=agent, state=S.PENDING, attempt_count=1,
                                        http_status=503, requested_at=now - timedelta(seconds=12),
                                        first_sent_at=now - timedelta(seconds=11), last_sent_at=now - timedelta(seconds=11),
                                        answered_at=now - timedelta(seconds=10), next_attempt_at=now + timedelta(seconds=58))
        events(stop, (E.STOP_REQUESTED, {"reason": "DRIVER_ASKED"}), (E.STOP_SENDING, {"attempt": 1}),
               (E.STOP_ATTEMPT_FAILED, {"attempt": 1, "failure_kind": "http_error", "http_status": 503}))
    return cs


@pytest.mark.parametrize("name", ["failed", "400-open", "retrying", "confirmed", "accepted"])
@pytest.mark.parametrize("width", [1366, 390])
def test_screens(name, width, page, live_server):
    cs = scenario(name)
    page.set_viewport_size({"width": width, "height": 850})
    page.goto(live_server.url + "/login/")
    page.get_by_label("Username").fill("screens-agent")
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Charging sessions").wait_for()
    page.goto(f"{live_server.url}/sessions/{cs.pk}/")
    page.wait_for_selector("#stop-status")
    page.wait_for_timeout(1200)
    page.locator("#stop-area").scroll_into_view_if_needed()
    suffix = "" if width == 1366 else "-390"
    if name in ("failed", "400-open", "retrying"):
        page.screenshot(path=str(DOCS / f"agent-card-{name}{suffix}.png"), full_page=True)
    page.locator("#stop-area").screenshot(path=f"/tmp/helper6/area-{name}{suffix}.png")
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    print(f"\n{name} {width}: horizontal overflow {overflow}px")
