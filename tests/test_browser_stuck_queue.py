"""The stuck queue's "Send stop again" in Chromium, against the live server, a real Celery worker, Redis
and the Hubject simulator: the session page's confirmation (reason required, errors beside the field,
Esc cancels and gives focus back), then the row follows the new request until the CPO accepts it, with
no reload. The queue and the sessions list pass axe at 1366 and 390 px.

PORTAL_SCREENSHOTS=/some/dir also saves the pages at 1366 and 390 px wide, for a look.
"""

import os
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from sessions import roles
from sessions.audit.records import record_audit
from sessions.models import AuditRecord, RemoteStopRequest, StopReason
from tests.axe import assert_no_violations
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory, UserFactory
from tests.screens import axe_at_both_widths, shoot

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop beside the live server
pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]
State = RemoteStopRequest.State


def log_in(page, live_server, username, role):
    UserFactory(username=username, role=role)
    page.set_default_timeout(15_000)
    page.set_viewport_size({"width": 1366, "height": 850})
    page.goto(live_server.url + "/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Charging sessions").wait_for()
    return page


@pytest.fixture
def queue(live):
    """A stop the slow CPO accepted 25 min ago and never confirmed, a failed one with unknown outcome, and
    a session whose charging ended 6 h ago without a CDR."""
    now = timezone.now()
    stuck = RemoteStopRequestFactory(
        state=State.UNCONFIRMED,
        oicp_code="000",
        http_status=200,
        attempt_count=1,
        reason=StopReason.CABLE_LOCKED,
        case_reference="CASE-77",
        requested_at=now - timedelta(minutes=26),
        finished_at=now - timedelta(minutes=25),
        charging_session=ChargingSessionFactory(evse_id="DE*SLW*E0009*1", operator_id="DE*SLW"),
    )
    live.add_sessions(stuck.charging_session)
    RemoteStopRequestFactory(
        state=State.FAILED,
        outcome_unknown=True,
        attempt_count=2,
        requested_at=now - timedelta(hours=2),
        finished_at=now - timedelta(hours=2),
        charging_session=ChargingSessionFactory(evse_id="DE*OFF*E0002*1", operator_id="DE*OFF"),
    )
    ChargingSessionFactory(
        evse_id="DE*CBL*E0003*1",
        operator_id="DE*CBL",
        status="CHARGING_ENDED",
        charging_ended_at=now - timedelta(hours=6),
        last_update_at=now - timedelta(hours=6),
    )
    return stuck


def test_a_stuck_queue_resend_with_its_confirmation(page, live_server, live, queue):
    page = log_in(page, live_server, "browser-sup", roles.SUPERVISOR)
    page.goto(live_server.url + "/stuck/")
    page.get_by_role("heading", name="Stuck sessions").wait_for()
    row = page.locator(f"#stuck-stop-{queue.pk}")
    assert "Accepted 25 min ago, no End or CDR since" in row.inner_text()
    assert "Failed with an unknown outcome" in page.locator("table.stuck").first.inner_text()
    assert "charging ended 6 h ago" in page.inner_text("main")
    axe_at_both_widths(page, "the stuck queue")
    shoot(page, "stuck-queue")
    page.evaluate("window.__noReload = true")  # gone if the page reloads instead of answering in place

    # "Send stop again…" opens the session page's confirmation, the reason focused; Esc cancels.
    button = row.get_by_role("button", name="Send stop again…")
    button.click()
    dialog = page.get_by_role("dialog", name="Send the stop again?")
    dialog.wait_for()
    expect(page.locator("#id_reason")).to_be_focused()
    description = dialog.locator("#stop-dialog-desc").inner_text()
    assert "DE*SLW*E0009*1" in description and "CASE-77" in description
    assert_no_violations(page, what="the re-send dialog")
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    expect(button).to_be_focused()  # focus goes back to the button that opened the dialog

    # Without a reason nothing is sent: the error is said beside the field, the dialog stays open.
    button.click()
    dialog.wait_for()
    dialog.get_by_role("button", name="Send stop to Hubject").click()
    error = dialog.locator("#reason-error")
    error.wait_for()
    assert error.inner_text() == "Choose a reason for the stop."
    assert dialog.is_visible()
    expect(page.locator("#id_reason")).to_be_focused()
    assert RemoteStopRequest.objects.count() == 2

    # With a reason and a note it is sent; the dialog closes, the answer is said and focused, and the row
    # follows the new request to the CPO's acceptance.
    dialog.get_by_label("Reason").select_option(label="Driver asked to stop")
    dialog.get_by_label("Note").fill("Driver says it is still charging")
    dialog.get_by_role("button", name="Send stop to Hubject").click()
    dialog.wait_for(state="hidden")
    new = RemoteStopRequest.objects.exclude(pk=queue.pk).filter(charging_session=queue.charging_session).get()
    notice = page.locator("#stuck-announce .notice")
    notice.wait_for()
    assert notice.inner_text().endswith(f"Stop sent again as request #{new.pk} for DE*SLW*E0009*1.")
    page.wait_for_function("document.activeElement && document.activeElement.closest('#stuck-announce') !== null")
    row.get_by_text(re.compile(rf"Re-sent as request #{new.pk}, now: ")).wait_for()
    row.get_by_text(f"Re-sent as request #{new.pk}, now: Accepted by the CPO").wait_for(timeout=20_000)
    new.refresh_from_db()
    assert (new.state, new.reason, new.case_reference) == (State.ACCEPTED, StopReason.DRIVER_ASKED, "CASE-77")
    assert new.note.startswith("Driver says it is still charging") and f"#{queue.pk}" in new.note
    assert len(live.received(session_id=queue.charging_session.session_id)) == 1
    assert page.evaluate("window.__noReload === true"), "the page reloaded instead of answering in place"

    # Reloaded, the queue no longer lists the stop the new request took over.
    page.reload()
    assert page.locator(f"#stuck-stop-{queue.pk}").count() == 0


def test_the_sessions_list_with_the_last_stop_session_ids_and_sorting(page, live_server, live, queue):
    page = log_in(page, live_server, "browser-agent-list", roles.AGENT)
    page.goto(live_server.url + "/?status=")
    header = page.get_by_role("columnheader", name=re.compile("^EvseID"))
    header.get_by_role("link").focus()
    page.keyboard.press("Enter")  # sortable from the keyboard
    page.wait_for_url(re.compile(r"sort=evse"))
    assert page.get_by_role("columnheader", name=re.compile("^EvseID")).get_attribute("aria-sort") == "ascending"
    text = page.inner_text("table.sessions")
    assert "Stop not confirmed" in text and "Stop failed · outcome unknown" in text
    # The SessionID stays on one line, shortened on a phone; the copy button and tooltip hold all of it.
    page.set_viewport_size({"width": 390, "height": 850})
    cell = page.locator("table.sessions .session-id code").first
    full = cell.get_attribute("title")
    assert len(full) == 36 and cell.inner_text() == full
    box = cell.bounding_box()
    assert box["height"] < 30 and box["width"] < 160  # one line, shortened
    assert page.locator("table.sessions .session-id button.copy").first.get_attribute("data-copy") == full
    axe_at_both_widths(page, "the sessions list")
    shoot(page, "sessions-list")

    # The session page's timeline: Progress folded into one line, someone else's stop without its note.
    charging_session = queue.charging_session
    for minute in range(40):  # written in order: audit records are never back-dated (PostgreSQL refuses it)
        record_audit(
            event_type=AuditRecord.EventType.NOTIFICATION_RECEIVED,
            charging_session=charging_session,
            data={"kind": "PROGRESS", "message": {"Type": "Progress", "ConsumedEnergyProgress": f"{minute * 0.3:.3f}"}},
        )
    record_audit(
        event_type=AuditRecord.EventType.STOP_REQUESTED,
        stop_request=queue,
        actor=queue.requested_by,
        data={"reason": queue.reason, "note": "a private note", "case_reference": "CASE-77"},
    )
    page.set_viewport_size({"width": 1366, "height": 850})
    page.goto(f"{live_server.url}/sessions/{charging_session.pk}/")
    timeline = page.locator("#timeline")
    fold = timeline.locator("summary", has_text="40 Progress notifications, latest 11.7 kWh at")
    fold.wait_for()
    assert "a private note" not in timeline.inner_text() and "CASE-77" not in page.content()
    assert "Stop requested" in timeline.inner_text()
    fold.click()  # it opens with the keyboard's Enter as well: a <summary>
    timeline.get_by_text("The latest message as received").wait_for()
    axe_at_both_widths(page, "the session page with its timeline")
    shoot(page, "session-timeline")
