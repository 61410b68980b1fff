"""The support admin's bulk stop in a real browser (Debian's Chromium through Playwright), against the
live server, a real Celery worker, Redis and the Hubject simulator: the environment badge on every
admin page, local times, IDs that never wrap, the destructive confirmation naming the environment,
then the link from "N stops queued" to the stop history of exactly those requests and their outcomes.
Every page on the way is checked with axe-core (tests/axe.py).

PORTAL_SCREENSHOTS=/some/dir also saves each page at 1366 and 390 px wide, for a look.
"""

import os
import re
import time

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from sessions import roles
from sessions.models import ChargingSession, InboundMessage, RemoteStopRequest
from tests.axe import assert_no_violations
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory, UserFactory
from tests.screens import shoot

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop beside the live server
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LOCAL_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d$")
PRODUCTION_RED = "rgb(180, 35, 24)"  # #b42318, the portal's PRODUCTION badge


def log_in_to_the_admin(page, live_server, username="browser-admin"):
    user = UserFactory(username=username, role=roles.ADMIN)
    user.is_staff = True
    user.save()
    page.set_default_timeout(15_000)
    page.set_viewport_size({"width": 1366, "height": 850})
    page.goto(live_server.url + "/admin/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Site administration").wait_for()
    return page


def badge(page):
    return page.locator("#header .env")


def choose_sessions_and_stop(page, live_server, charging_sessions):
    page.goto(live_server.url + "/admin/charging_sessions/chargingsession/")
    for charging_session in charging_sessions:
        page.locator(f'input[name="_selected_action"][value="{charging_session.pk}"]').check()
    page.locator("select[name=action]").select_option("stop_selected_sessions")
    page.get_by_role("button", name="Go").click()
    page.get_by_role("heading", name="Stop these charging sessions?").wait_for()


@pytest.mark.integration
def test_admin_bulk_stop_shows_the_badge_and_links_to_the_outcomes(page, live_server, live, settings):
    environment = settings.PORTAL_ENVIRONMENT
    first = ChargingSessionFactory(evse_id="DE*ACC*E8101*1", operator_id="DE*ACC")
    second = ChargingSessionFactory(evse_id="DE*ACC*E8102*1", operator_id="DE*ACC")
    ended = ChargingSessionFactory(evse_id="DE*ACC*E8103*1", operator_id="DE*ACC", status=ChargingSession.Status.CLOSED)
    earlier = RemoteStopRequestFactory(state=RemoteStopRequest.State.FAILED)  # not part of this bulk stop
    live.add_sessions(first, second)
    log_in_to_the_admin(page, live_server)
    assert badge(page).inner_text() == environment
    assert_no_violations(page, what="the admin's index")

    # The session list: the badge, local times with their offset, IDs on one line in monospace.
    page.goto(live_server.url + "/admin/charging_sessions/chargingsession/")
    assert badge(page).is_visible() and badge(page).inner_text() == environment
    started = page.locator("#result_list td.field-started_at_local time").first.inner_text()
    assert LOCAL_TIME.match(started), started
    id_cell = page.locator("#result_list .field-session_id").first
    style = id_cell.evaluate("cell => { const s = getComputedStyle(cell); return [s.whiteSpace, s.fontFamily]; }")
    assert style[0] == "nowrap" and "mono" in style[1].lower(), style
    page.set_viewport_size({"width": 390, "height": 850})
    height = id_cell.evaluate("cell => cell.getBoundingClientRect().height")
    line = id_cell.evaluate("cell => parseFloat(getComputedStyle(cell).lineHeight) || 20")
    assert height < 2 * line + 12, "a SessionID wrapped at 390 px"
    page.set_viewport_size({"width": 1366, "height": 850})
    assert_no_violations(page, what="the admin's session list")
    shoot(page, "admin-session-list")

    # The confirmation: destructive, names the environment, says which cannot be stopped and why.
    choose_sessions_and_stop(page, live_server, [first, second, ended])
    assert badge(page).inner_text() == environment
    send = page.get_by_role("button", name=f"Send 2 stops to Hubject {environment}")
    assert send.evaluate("b => getComputedStyle(b).backgroundColor") == PRODUCTION_RED
    # The reason is asked first (autofocus: Chromium applies it in a task after the page is parsed).
    # (expect polls without eval: a string predicate would be eval'ed in the page, which the CSP forbids)
    expect(page.locator("#id_reason")).to_be_focused(timeout=5_000)
    blocked = page.locator("tr", has_text=ended.evse_id)
    assert "Will not be sent" in blocked.inner_text() and "The session has ended" in blocked.inner_text()
    assert "1 session cannot be stopped" in page.locator("#bulk-stop-count").inner_text()
    assert_no_violations(page, what="the bulk stop confirmation")
    shoot(page, "admin-bulk-confirmation")

    send.click()  # no reason yet: the browser refuses, as in the agent's dialog
    assert page.get_by_role("heading", name="Stop these charging sessions?").is_visible()
    assert not RemoteStopRequest.objects.exclude(pk=earlier.pk).exists()
    page.get_by_label("Reason").select_option(label="Driver asked to stop")
    page.get_by_label("Case reference").fill("BULK-1")
    send.click()

    # "2 stops queued", linking to exactly those requests in the stop history.
    message = page.locator(".messagelist li.success")
    message.wait_for()
    assert f"2 stops queued for Hubject {environment}" in message.inner_text()
    assert badge(page).is_visible()
    assert_no_violations(page, what="the session list after the bulk stop")
    shoot(page, "admin-bulk-queued")
    message.get_by_role("link", name="Follow their outcomes in the stop history").click()
    page.get_by_role("heading", name="Stop history").wait_for()
    assert page.locator(".chip").inner_text().startswith("2 selected requests")

    rows = page.locator("table.history tbody tr")
    deadline = time.monotonic() + 30
    while True:  # the history page does not refresh itself: reload until the worker has the answers
        texts = [rows.nth(i).inner_text() for i in range(rows.count())]
        if all("Accepted" in text for text in texts) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
        page.reload()
    assert len(texts) == 2, texts
    assert any(first.evse_id in text for text in texts) and any(second.evse_id in text for text in texts)
    assert not any(ended.evse_id in text or earlier.charging_session.evse_id in text for text in texts)
    assert all("Accepted" in text for text in texts), texts
    assert set(RemoteStopRequest.objects.filter(case_reference="BULK-1").values_list("state", flat=True)) == {
        RemoteStopRequest.State.ACCEPTED
    }
    assert_no_violations(page, what="the stop history of the bulk stop")
    shoot(page, "history-selected-requests")

    # The chip removes the selection.
    page.locator(".chip-remove").click()
    page.get_by_role("heading", name="Stop history").wait_for()
    assert "ids=" not in page.url and page.locator(".chip").count() == 0


def test_production_is_unmistakable_on_every_admin_page(page, live_server, settings):
    settings.PORTAL_ENVIRONMENT = "PRODUCTION"
    charging_session = ChargingSessionFactory(evse_id="DE*ACC*E8201*1")
    ChargingSessionFactory(evse_id="NL*FST*E8202*1", status=ChargingSession.Status.CLOSED)
    stop = RemoteStopRequestFactory(charging_session=ChargingSessionFactory(evse_id="DE*SLW*E8203*1"))
    # No OperatorID: its filter link needs a name (axe link-name).
    InboundMessage.objects.create(
        kind=InboundMessage.Kind.END, session_id="no-operator", operator_id="", received_at=timezone.now(), raw="{}"
    )
    page.set_viewport_size({"width": 1366, "height": 850})
    page.goto(live_server.url + "/admin/login/")
    assert badge(page).inner_text() == "PRODUCTION"
    assert_no_violations(page, what="the admin's login page")
    log_in_to_the_admin(page, live_server, username="browser-admin-prod")
    pages = [
        "/admin/",
        "/admin/charging_sessions/",
        "/admin/charging_sessions/chargingsession/",
        f"/admin/charging_sessions/chargingsession/{charging_session.pk}/change/",
        "/admin/charging_sessions/remotestoprequest/",
        f"/admin/charging_sessions/remotestoprequest/{stop.pk}/change/",
        "/admin/charging_sessions/auditrecord/",
        "/admin/charging_sessions/inboundmessage/",
        "/admin/charging_sessions/chargedetailrecord/",
        "/admin/charging_sessions/legalhold/",
    ]
    for path in pages:
        page.goto(live_server.url + path)
        assert badge(page).inner_text() == "PRODUCTION", path
        assert badge(page).evaluate("b => getComputedStyle(b).backgroundColor") == PRODUCTION_RED, path
        band = page.locator("#header").evaluate("h => getComputedStyle(h).borderBottomColor")
        assert band == PRODUCTION_RED, path
        for time_text in page.locator("time.admin-time").all_inner_texts():
            assert LOCAL_TIME.match(time_text), (path, time_text)
        assert_no_violations(page, what=path)

    choose_sessions_and_stop(page, live_server, list(ChargingSession.objects.exclude(pk=stop.charging_session_id)))
    assert page.get_by_role("button", name="Send 1 stop to Hubject PRODUCTION").is_enabled()
    assert_no_violations(page, what="the bulk stop confirmation in PRODUCTION")
    shoot(page, "admin-bulk-confirmation-production")
    folder = os.environ.get("PORTAL_SCREENSHOTS")
    if folder:
        page.set_viewport_size({"width": 1366, "height": 850})
        page.screenshot(path=f"{folder}/admin-bulk-stop.png", full_page=True)
