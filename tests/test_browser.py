"""The agent's path in a real browser: Debian's Chromium driven by Playwright, against the live
server, a real Celery worker, Redis and the Hubject simulator."""

import os
import re

import pytest

from sessions import roles
from sessions.models import RemoteStopRequest
from tests.factories import ChargingSessionFactory, UserFactory

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop beside the live server
pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def log_in_as_agent(page, live_server, username="browser-agent"):
    UserFactory(username=username, role=roles.AGENT)
    page.set_default_timeout(15_000)
    page.goto(live_server.url + "/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Charging sessions").wait_for()
    return page


@pytest.fixture
def agent_page(page, live_server, live):
    return log_in_as_agent(page, live_server)


def open_session_by_search(page, evse_id):
    page.keyboard.press("/")  # the search box is one key away
    page.keyboard.type(evse_id)
    page.keyboard.press("Enter")
    page.get_by_role("heading", name=re.compile("Session at")).wait_for()


def submit_stop(page, reason="Cable locked / cannot unplug", case_reference=""):
    page.get_by_role("button", name="Stop session…").click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    dialog.get_by_label("Reason").select_option(label=reason)
    if case_reference:
        dialog.get_by_label("Case reference").fill(case_reference)
    # Mark the document: if the page reloads, the mark is gone.
    page.evaluate("window.__noReload = true")
    dialog.get_by_role("button", name="Send stop to Hubject").click()


def test_agent_stops_a_session_and_follows_it_live_to_accepted(agent_page, live):
    page = agent_page
    charging_session = ChargingSessionFactory(evse_id="DE*SLW*E0001*1", operator_id="DE*SLW")
    live.add_sessions(charging_session)
    open_session_by_search(page, charging_session.evse_id)

    # The dialog opens with the reason focused, and Esc cancels with focus back on the button.
    page.get_by_role("button", name="Stop session…").click()
    assert page.evaluate("document.activeElement.id") == "id_reason"
    page.keyboard.press("Escape")
    assert page.get_by_role("dialog").is_hidden()
    assert page.evaluate("document.activeElement.id") == "stop-button"

    submit_stop(page, case_reference="CASE-1")
    status = page.locator("#stop-status")
    # The slow CPO holds the answer, so the page shows the request waiting at Hubject first.
    page.wait_for_selector("#stop-status[data-state=SENDING]")
    page.wait_for_selector("#stop-status[data-state=ACCEPTED]")
    assert "Accepted" in status.inner_text()
    assert page.evaluate("window.__noReload === true"), "the page reloaded instead of updating live"
    # The button is now disabled, with the reason beside it.
    # The button area refreshes on the state change: disabled, with the reason beside it.
    page.locator("#stop-blocker", has_text="was accepted").wait_for()
    assert page.locator("#stop-button").is_disabled()
    stop = RemoteStopRequest.objects.get(charging_session=charging_session)
    assert (stop.state, stop.case_reference) == (RemoteStopRequest.State.ACCEPTED, "CASE-1")
    assert len(live.received(session_id=charging_session.session_id)) == 1


def test_rejected_stop_shows_the_codes_meaning_and_next_step(agent_page):
    page = agent_page
    charging_session = ChargingSessionFactory(evse_id="DE*OFF*E0007*1", operator_id="DE*OFF")
    open_session_by_search(page, charging_session.evse_id)
    submit_stop(page, reason="Driver asked to stop")
    page.wait_for_selector("#stop-status[data-state=REJECTED]")
    text = page.locator("#stop-status").inner_text()
    assert "OICP 501" in text
    assert "What it means" in text and "Tell the driver" in text and "Next step" in text
    assert "offline" in text.lower()
    assert page.evaluate("window.__noReload === true")
