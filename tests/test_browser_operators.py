"""A supervisor's look at the CPOs in Chromium: the overview ranks the CPOs, a click opens one CPO's page,
and its charts' numbers are read from their tables (opened with the keyboard). Both pages are checked
with axe and shot at 1366 and 390 px (PORTAL_SCREENSHOTS=/some/dir); every browser test also fails on a
Content-Security-Policy violation (tests/conftest.py), so the inline SVG charts prove they need no
inline style.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from sessions import roles
from sessions.models import RemoteStopRequest
from tests.factories import ChargingSessionFactory, OperatorFactory, RemoteStopRequestFactory, UserFactory
from tests.screens import axe_at_both_widths, shoot

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop beside the live server
pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

State = RemoteStopRequest.State


def _stop(operator_id: str, days_ago: float, state: str, *, seconds: float | None = None, code: str = ""):
    requested = timezone.now() - timedelta(days=days_ago)
    session = ChargingSessionFactory(operator_id=operator_id, evse_id=f"{operator_id}*E{int(days_ago * 100):05d}")
    fields = {"requested_at": requested, "state": state, "oicp_code": code}
    if seconds is not None:
        fields |= {
            "confirmed_at": requested + timedelta(seconds=seconds),
            "time_to_confirmation": timedelta(seconds=seconds),
        }
    return RemoteStopRequestFactory(charging_session=session, requested_by=None, **fields)


@pytest.fixture
def world():
    supervisor = UserFactory(username="cpo-supervisor", role=roles.SUPERVISOR)
    for days, seconds in ((1, 12), (2, 25), (9, 40), (10, 75), (16, 150), (23, 420)):
        _stop("DE*ABC", days, State.CONFIRMED, seconds=seconds, code="000")
    _stop("DE*ABC", 3, State.REJECTED, code="501")
    _stop("DE*ABC", 4, State.REJECTED, code="501")
    _stop("DE*ABC", 5, State.FAILED, code="310")
    _stop("DE*ABC", 0.01, State.ACCEPTED, code="000")
    _stop("DE*XYZ", 6, State.CONFIRMED, seconds=30, code="000")
    _stop("DE*XYZ", 7, State.UNCONFIRMED, code="000")
    for days in (8, 11, 12):
        _stop("NL*FLK", days, State.REJECTED, code="400")
    # In Hubject's EVSE directory: DE*ABC (with what support added) and DE*XYZ, spelled "DEXYZ" there;
    # NL*FLK is not in it.
    OperatorFactory(
        operator_id="DE*ABC",
        name="Abc Strom",
        hotline="+49 30 1234567",
        evse_count=42,
        hotline_hours="Mon–Fri 8–18",
        escalation_email="noc@abc-strom.example",
        internal_note="Ask for the second level.",
    )
    OperatorFactory(operator_id="DEXYZ", name="Xyz Laden", evse_count=7)
    return supervisor


def _fits_at_390(page) -> None:
    """Nothing wider than a 390-px phone: no scrolling sideways."""
    page.set_viewport_size({"width": 390, "height": 850})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.set_viewport_size({"width": 1366, "height": 850})


def test_supervisor_reads_the_overview_and_a_cpo_s_charts(browser, live_server, world):
    context = browser.new_context(viewport={"width": 1366, "height": 850})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(live_server.url + reverse("login"))
    page.get_by_label("Username").fill(world.username)
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Charging sessions").wait_for()

    # The overview from the main navigation: the CPOs ranked by failure rate, worst first.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="CPOs").click()
    page.get_by_role("heading", name="Stops per CPO").wait_for()
    rows = page.locator("table.operators tbody tr")
    assert rows.count() == 3
    first_cells = [rows.nth(i).locator("td").first.locator("a").inner_text().strip() for i in range(3)]
    assert first_cells == ["NL*FLK", "DE*XYZ", "DE*ABC"]  # 100 %, 50 %, 30 % failed
    # Each CPO's name and EVSE count from the directory; one it does not list says so.
    assert "not in the directory" in rows.nth(0).locator("td").first.inner_text()
    assert "Xyz Laden" in rows.nth(1).inner_text() and "Abc Strom" in rows.nth(2).inner_text()
    assert rows.nth(2).locator('td[data-label="EVSEs"]').inner_text().strip() == "42"
    assert "30.0 %" in rows.nth(2).inner_text()
    assert page.get_by_role("link", name="Export CSV").is_visible()
    axe_at_both_widths(page, "stops per CPO")
    _fits_at_390(page)
    shoot(page, "operators-overview")

    # Sorted by stops sent, largest first: one click on the header.
    page.get_by_role("link", name="Stops sent").click()
    page.wait_for_url("**sort=-sent**")
    assert page.locator("table.operators tbody tr").first.locator("td a").first.inner_text().strip() == "DE*ABC"

    # On to the CPO's page with the keyboard: its link focused, Enter.
    page.get_by_role("link", name="CPO DE*ABC (Abc Strom): open its page").focus()
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="CPO DE*ABC · Abc Strom").wait_for()
    # Whom to call: Hubject's hotline (tel:, with its copy button) beside what support added.
    contact = page.locator("#contact")
    assert (
        contact.get_by_role("link", name="Call Abc Strom at +49 30 1234567").get_attribute("href") == "tel:+49301234567"
    )
    assert contact.get_by_role("button", name="Copy +49 30 1234567").is_visible()
    assert (
        contact.get_by_role("link", name="noc@abc-strom.example").get_attribute("href")
        == "mailto:noc@abc-strom.example"
    )
    assert "Mon–Fri 8–18" in contact.inner_text() and "42" in contact.locator("#evse-count").inner_text()
    figures = page.locator("dl.figures")
    assert "10" in figures.locator("div", has_text="Stops sent").inner_text()
    assert "60.0 %" in figures.inner_text()  # 6 confirmed of 10

    # Each chart is an image with a summary for its name.
    weekly = page.get_by_role("img", name="Stops sent and confirmed per week at DE*ABC")
    assert weekly.is_visible()
    assert "10 sent, 6 confirmed" in page.locator("#weekly-title").text_content()
    # The histogram's numbers: open its table with the keyboard and read it.
    summary = page.locator("summary", has_text="The numbers per time span")
    summary.focus()
    page.keyboard.press("Enter")
    table = page.get_by_role("table", name="Confirmed stops at DE*ABC by the time from request to confirmation")
    table.wait_for()
    read = {
        row.locator("th").inner_text().strip(): row.locator("td").inner_text().strip()
        for row in table.locator("tbody tr").all()
    }
    assert read == {
        "< 30 s": "2",
        "30–60 s": "1",
        "1–2 min": "1",
        "2–5 min": "1",
        "5–15 min": "1",
        "≥ 15 min": "0",
    }
    # The outcome mix's table, opened by a click.
    page.locator("summary", has_text="The numbers").nth(1).click()
    mix = page.get_by_role("table", name="Outcomes of the stops at DE*ABC")
    assert "Rejected" in mix.inner_text() and "20 %" in mix.inner_text()
    # The most frequent refusal code with its meaning.
    codes = page.locator("table.codes")
    assert "501" in codes.inner_text() and "Communication to EVSE failed." in codes.inner_text()
    # Open every table for the screenshots and axe.
    for details in page.locator("details").all():
        details.evaluate("element => element.open = true")
    axe_at_both_widths(page, "a CPO's page")
    _fits_at_390(page)
    shoot(page, "operators-detail")

    # A bad day is said beside its field; the page still answers.
    page.get_by_label("From", exact=True).fill("2025-03-10")
    page.get_by_label("To", exact=True).fill("2025-03-01")
    page.get_by_role("button", name="Show these days").click()
    page.locator("#date_to-error").wait_for()
    assert "before" in page.locator("#date_to-error").inner_text()
    axe_at_both_widths(page, "a CPO's page with a bad period")
    context.close()
