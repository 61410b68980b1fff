"""The stop dialog in Chromium: every submit answers in place, whatever the form or the broker does.

- A field error stays in the dialog, next to its field, with focus on it; the dialog stays open and
  both its submit button and the page's "Stop session…" button keep working afterwards.
- A refusal ("a stop … is still open") and the broker's warning are said in the stop area, where the
  agent is looking, not in a flash message the swap throws away.
- A broker that accepts connections and never answers (a stalled Redis) cannot hold the click: the
  stop is saved first and the agent reads that it will be sent, within 3 s.
- Keyboard: `s` opens the dialog, `?` lists the shortcuts; neither fires while typing.

No worker runs here: the broker is a closed port, or a listener that never answers.
"""

import os
import re
import time

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from sessions import roles
from sessions.models import RemoteStopRequest
from tests import servers
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory, UserFactory
from tests.test_recovery import stalled_broker

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop beside the live server
pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]
State = RemoteStopRequest.State


@pytest.fixture
def agent_page(page, live_server):
    UserFactory(username="dialog-agent", role=roles.AGENT)
    page.set_default_timeout(10_000)
    page.goto(live_server.url + "/")
    page.get_by_label("Username").fill("dialog-agent")
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Charging sessions").wait_for()
    return page


@pytest.fixture
def refused_broker():
    """Nothing listens on the broker's port: publishing fails at once (the test settings' default)."""
    with servers.celery_publisher(f"redis://127.0.0.1:{servers.free_port()}/0"):
        yield


def open_session(page, live_server, charging_session):
    page.goto(f"{live_server.url}/sessions/{charging_session.pk}/")
    page.get_by_role("heading", name=re.compile("Session at")).wait_for()
    page.evaluate("window.__noReload = true")  # gone if the page reloads instead of updating in place


def test_a_field_error_is_said_in_the_dialog_and_every_button_works_after_it(agent_page, live_server, refused_broker):
    page = agent_page
    charging_session = ChargingSessionFactory()
    open_session(page, live_server, charging_session)

    page.get_by_role("button", name="Stop session…").click()
    dialog = page.get_by_role("dialog", name="Stop this session?")
    dialog.get_by_label("Reason").select_option(label="Other (explain in the note)")
    dialog.get_by_role("button", name="Send stop to Hubject").click()

    # The answer comes back into the open dialog: the error next to the note, focus on it.
    error = dialog.locator("#note-error")
    error.wait_for()
    assert error.inner_text() == "Explain the reason when you choose “Other”."
    assert dialog.is_visible()
    note = dialog.get_by_label("Note")
    assert note.get_attribute("aria-invalid") == "true"
    assert "note-error" in note.get_attribute("aria-describedby")
    # The focus moves after the swap (the page's script): wait for it, as the agent's eye would.
    expect(page.locator("#id_note")).to_be_focused()
    # What the agent chose is kept, and nothing was saved.
    assert dialog.get_by_label("Reason").input_value() == "OTHER"
    assert not RemoteStopRequest.objects.exists()
    assert dialog.get_by_role("button", name="Send stop to Hubject").is_enabled()

    # Esc cancels; the page's button still opens the dialog (it did nothing until a reload before).
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")  # closing is an event away
    page.get_by_role("button", name="Stop session…").click()
    assert dialog.is_visible()
    assert page.evaluate("document.activeElement.id") == "id_note"  # the first error, still shown

    # Corrected, the same dialog sends: the stop area answers (the broker is down: saved, will be sent).
    note.fill("Driver is in a hurry")
    dialog.get_by_role("button", name="Send stop to Hubject").click()
    warning = page.locator("#stop-area [role=alert], #stop-area [role=status]").filter(has_text="saved")
    warning.first.wait_for()
    dialog.wait_for(state="hidden")  # closing is an event away
    assert RemoteStopRequest.objects.get().note == "Driver is in a hurry"
    page.wait_for_selector("#stop-status[data-state=PENDING]")
    assert page.locator("#stop-button").is_disabled()
    assert page.evaluate("window.__noReload === true"), "the page reloaded instead of answering in place"


def test_a_refusal_is_said_in_the_stop_area_and_the_page_follows_the_open_stop(agent_page, live_server, refused_broker):
    page = agent_page
    charging_session = ChargingSessionFactory()
    open_session(page, live_server, charging_session)
    page.get_by_role("button", name="Stop session…").click()
    dialog = page.get_by_role("dialog", name="Stop this session?")
    dialog.get_by_label("Reason").select_option(label="Driver asked to stop")
    # Another agent's stop arrives while this dialog is open.
    RemoteStopRequestFactory(
        charging_session=charging_session,
        state=State.SENDING,
        attempt_count=1,
        first_sent_at=timezone.now(),
        last_sent_at=timezone.now(),
    )
    dialog.get_by_role("button", name="Send stop to Hubject").click()

    refusal = page.locator("#stop-refusal")
    refusal.wait_for()
    assert refusal.inner_text() == (
        "✕ The stop was not sent: A stop requested just now is still open (waiting for Hubject's answer)."
    )
    assert refusal.get_attribute("role") == "alert"
    dialog.wait_for(state="hidden")  # closing is an event away
    assert page.locator("#stop-button").is_disabled()
    page.wait_for_selector("#stop-status[data-state=SENDING]")  # the other agent's stop, followed live
    assert RemoteStopRequest.objects.count() == 1
    assert page.evaluate("window.__noReload === true")


def test_a_stalled_broker_cannot_hold_the_click_the_agent_reads_saved_within_3_s(agent_page, live_server):
    page = agent_page
    charging_session = ChargingSessionFactory()
    open_session(page, live_server, charging_session)
    with stalled_broker() as broker_url, servers.celery_publisher(broker_url):
        page.get_by_role("button", name="Stop session…").click()
        dialog = page.get_by_role("dialog", name="Stop this session?")
        dialog.get_by_label("Reason").select_option(label="Cable locked / cannot unplug")
        started = time.monotonic()
        dialog.get_by_role("button", name="Send stop to Hubject").click()
        page.locator("#stop-queued").wait_for(timeout=10_000)
        took = time.monotonic() - started
    assert took < 3, f"the click answered after {took:.1f} s"
    text = page.locator("#stop-queued").inner_text()
    assert "saved" in text and "will be sent" in text
    stop = RemoteStopRequest.objects.get()
    assert (stop.state, stop.attempt_count) == (State.PENDING, 0)
    page.wait_for_selector("#stop-status[data-state=PENDING]")


def test_shortcuts_s_opens_the_stop_dialog_and_question_mark_lists_them_never_while_typing(
    agent_page, live_server, refused_broker
):
    page = agent_page
    charging_session = ChargingSessionFactory()
    open_session(page, live_server, charging_session)
    stop_dialog = page.get_by_role("dialog", name="Stop this session?")

    # Typing an "s" into the search box types it; it opens nothing.
    page.locator("#global-search").focus()
    page.keyboard.type("s")
    assert page.locator("#global-search").input_value() == "s"
    assert stop_dialog.is_hidden()
    page.locator("#global-search").fill("")
    page.locator("#session-title").click()  # leave the field

    # A modifier key makes it someone else's shortcut.
    page.keyboard.press("Alt+s")
    assert stop_dialog.is_hidden()

    page.keyboard.press("?")
    help_dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    help_dialog.wait_for()
    assert "Open the stop dialog" in help_dialog.inner_text()
    page.keyboard.press("Escape")
    help_dialog.wait_for(state="hidden")

    page.keyboard.press("s")
    assert stop_dialog.is_visible()
    assert page.evaluate("document.activeElement.id") == "id_reason"
    # In the dialog's fields the keys type text.
    stop_dialog.get_by_label("Note").focus()
    page.keyboard.type("s?")
    assert stop_dialog.get_by_label("Note").input_value() == "s?"
    assert help_dialog.is_hidden()
    page.keyboard.press("Escape")
    stop_dialog.wait_for(state="hidden")
    expect(page.locator("#stop-button")).to_be_focused()  # the close event is queued
