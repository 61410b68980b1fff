"""Search as drivers speak, in a real browser (Debian's Chromium through Playwright): every way a
driver names the session opens it from the search box of any page; several matches are listed.

No worker or simulator is needed: searching only reads, so only the live server runs."""

import os
import re

import pytest

from tests.factories import ChargingSessionFactory
from tests.test_browser import log_in_as_agent

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop beside the live server
pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

DRIVER_SID = "1df4fad6-0c2b-4a8e-9f0e-3b6d2a9c41e7"

# What the driver reads out, and what it is.
SPOKEN = [
    ("DE ACC E7260 4", "EvseID with spaces"),
    ("DEACCE72604", "EvseID without separators"),
    ("de-acc-e7260-4", "EvseID with dashes, lower case"),
    ("1df4fad6", "SessionID prefix"),
    ("emp-abc-42", "EMP partner session ID in lower case"),
    ("CPO-XYZ-7", "CPO partner session ID in upper case"),
    ("DE-EMP-C12345678-X", "contract ID (EvcoID) as printed"),
    ("de emp c12345678 x", "contract ID spoken"),
    ("DEEMPC12345678", "contract ID without its check digit"),
    ("04:a2:3b:c1:d2:e3:f4", "card UID as a reader shows it"),
    ("9876655", "printed card number without its space"),
]


@pytest.fixture
def searching_page(page, live_server):
    ChargingSessionFactory(
        evse_id="DE*ACC*E7261*4", contract_id="DE-EMP-C87654321-Y", card_uid="04A1B2C3D4E5F6", printed_number="9876 656"
    )
    driver = ChargingSessionFactory(
        session_id=DRIVER_SID,
        evse_id="DE*ACC*E7260*4",
        emp_partner_session_id="EMP-Abc-42",
        cpo_partner_session_id="cpo-xyz-7",
        contract_id="DE-EMP-C12345678-X",
        card_uid="04A23BC1D2E3F4",
        printed_number="9876 655",
    )
    log_in_as_agent(page, live_server, username="search-agent")
    return page, driver


def search_from_the_top_bar(page, text):
    page.keyboard.press("Escape")
    page.locator("body").focus()
    page.keyboard.press("/")  # the search box is one key away, on every page
    assert page.evaluate("document.activeElement.id") == "global-search"
    page.keyboard.press("Control+A")
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def test_every_way_a_driver_names_the_session_opens_it(searching_page):
    page, driver = searching_page
    for text, what in SPOKEN:
        search_from_the_top_bar(page, text)
        page.get_by_role("heading", name=re.compile("Session at")).wait_for()
        assert page.url.endswith(f"/sessions/{driver.pk}/"), f"{what} ({text!r}) opened {page.url}"
        assert DRIVER_SID in page.locator("#session-head").inner_text(), what
    # The session page shows what the driver read out, each value with a copy button.
    facts = page.locator("dl.facts")
    for label, value in (
        ("Contract ID", "DE-EMP-C12345678-X"),
        ("Card UID", "04A23BC1D2E3F4"),
        ("Printed card number", "9876 655"),
    ):
        fact = facts.locator("div", has=page.locator("dt", has_text=label))
        assert value in fact.inner_text()
        assert fact.get_by_role("button").count() == 1


def test_the_search_hint_says_what_can_be_typed(searching_page):
    page, _ = searching_page
    hint = page.locator("#global-search").get_attribute("placeholder")
    for words in ("EvseID", "SessionID", "contract ID", "card"):
        assert words in hint


def test_several_matches_are_listed_and_one_opens(searching_page):
    page, driver = searching_page
    search_from_the_top_bar(page, "de acc e726")
    page.get_by_role("heading", name="Charging sessions").wait_for()
    assert page.locator("p.count").inner_text() == "2 sessions"
    page.get_by_role("link", name="DE*ACC*E7260*4").click()
    page.get_by_role("heading", name=re.compile("Session at")).wait_for()
    assert page.url.endswith(f"/sessions/{driver.pk}/")


def test_the_sessions_list_search_field_takes_the_same_words(searching_page):
    page, driver = searching_page
    page.get_by_label("Search", exact=True).fill("de emp c12345678 x")
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("heading", name=re.compile("Session at")).wait_for()
    assert page.url.endswith(f"/sessions/{driver.pk}/")
