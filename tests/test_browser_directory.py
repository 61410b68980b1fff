"""Hubject's EVSE directory in a real browser (Debian's Chromium through Playwright): an agent searches a
street as the driver says it (with a typo), finds the station, opens its session and sees whom to call,
with the EVSE's live status arriving after the page. axe and CSP clean at 1366 and 390 px.

No worker or simulator is needed: these screens only read; Hubject's status answer is mocked in-process
(the live server runs in this process)."""

import os
import re

import pytest
import responses

from sessions.oicp.paths import PULL_EVSE_STATUS_BY_ID
from tests.factories import ChargingSessionFactory, EvseRecordFactory, OperatorFactory
from tests.screens import axe_at_both_widths, shoot
from tests.test_browser import log_in_as_agent
from tests.test_browser_search import search_from_the_top_bar

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop beside the live server
pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

STATUS_URL = "http://127.0.0.1:9" + PULL_EVSE_STATUS_BY_ID.format(provider_id="DE-EMP")


@pytest.fixture
def hubject_status():
    from django.core.cache import cache

    cache.clear()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as hbs:
        hbs.add(
            responses.POST,
            STATUS_URL,
            json={"EVSEStatusRecords": {"EvseStatusRecord": [{"EvseID": "DE*ACC*E51*1", "EvseStatus": "Occupied"}]}},
        )
        yield hbs
    cache.clear()


def test_an_agent_finds_the_session_by_the_street_and_sees_whom_to_call(page, live_server, hubject_status):
    offgrid = OperatorFactory(
        operator_id="DE*ACC", name="Offgrid Ladestationen", hotline="+49 30 9876543", hotline_hours="Mon–Fri 8–20"
    )
    for n in range(2):
        EvseRecordFactory(evse_id=f"DE*ACC*E5{n}*1", operator=offgrid, charging_station_id="LIDL-KOELN-1")
    EvseRecordFactory(
        evse_id="DE*ACC*E600*1", operator=offgrid, station_name="Aldi Süd", city="Bonn", postal_code="53111"
    )
    driver = ChargingSessionFactory(evse_id="DE*ACC*E51*1")
    log_in_as_agent(page, live_server, username="place-agent")

    # Step 1: the street as the driver says it, with a typo, in the top bar's search box.
    search_from_the_top_bar(page, "Haupstrasse Koln")
    places = page.get_by_role("region", name=re.compile("Places"))
    places.wait_for()
    assert "Lidl Köln-Ehrenfeld" in places.inner_text() and "Aldi" not in places.inner_text()
    axe_at_both_widths(page, "the search with places")
    shoot(page, "directory-places")

    # Step 2: the open session on the station's EVSE.
    places.get_by_role("link", name=re.compile("Open session")).click()
    page.get_by_role("heading", name=re.compile("Session at")).wait_for()
    assert page.url.endswith(f"/sessions/{driver.pk}/")
    station = page.get_by_role("region", name="Station and CPO")
    assert "Hauptstraße 12, 50823 Köln" in station.inner_text()
    call = station.locator('a[href="tel:+49309876543"]')
    assert call.inner_text() == "+49 30 9876543" and call.is_visible()
    assert station.get_by_role("button", name="Copy +49 30 9876543").is_visible()
    assert (
        station.get_by_role("link", name=re.compile("Map"))
        .get_attribute("href")
        .startswith("https://www.openstreetmap.org/?mlat=50.949300&mlon=6.918200")
    )
    # The live status arrives after the page.
    page.locator("#evse-status strong", has_text="Occupied").wait_for()
    assert re.search(r"Occupied · \d+ s ago", page.locator("#evse-status").inner_text())
    axe_at_both_widths(page, "the session page with its station and CPO")
    shoot(page, "directory-session")

    # The station's page: every EVSE, the open session on one.
    station.get_by_role("link", name="Every EVSE at this station").click()
    page.get_by_role("heading", name="Lidl Köln-Ehrenfeld").wait_for()
    assert page.get_by_role("link", name=re.compile("Open session")).count() == 1
    axe_at_both_widths(page, "the station page")
    shoot(page, "directory-station")
