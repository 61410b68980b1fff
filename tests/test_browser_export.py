"""The supervisor's export question in Chromium ("failed stops for one CPO last week"): two event types,
a preset period and a CPO chosen from the list, the CSV downloaded with its outcome column; then
"Verify now", run by a real Celery worker, followed on the page to its result. Against the live
server, Redis and a worker; screenshots at 1366 and 390 px in /tmp."""

import csv
import io
import os
import re
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from django.db import transaction
from django.utils import timezone

from sessions import roles, services
from sessions.models import AuditRecord, AuditVerification
from tests.axe import assert_no_violations
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory, UserFactory

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop beside the live server
pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]
Event = AuditRecord.EventType
SHOTS = Path(os.environ.get("PORTAL_SCREENSHOT_DIR", "/tmp/portal-screens"))


def audit(event, *, days_ago, stop=None, charging_session=None, **data):
    with (
        mock.patch("django.utils.timezone.now", return_value=timezone.now() - timedelta(days=days_ago)),
        transaction.atomic(),
    ):
        return services.record_audit(event_type=event, stop_request=stop, charging_session=charging_session, data=data)


@pytest.fixture
def trail(db):
    acc = ChargingSessionFactory(evse_id="DE*ACC*E0001*1", operator_id="DE*ACC")
    fst = ChargingSessionFactory(evse_id="NL*FST*E0002*1", operator_id="NL*FST")
    acc_stop = RemoteStopRequestFactory(charging_session=acc)
    fst_stop = RemoteStopRequestFactory(charging_session=fst)
    return {
        "created": audit(Event.SESSION_CREATED, days_ago=3, charging_session=acc, source="NOTIFICATION_START"),
        "failed": audit(
            Event.STOP_FAILED, days_ago=2, stop=acc_stop, attempt=3, oicp_code="310", failure_kind="", http_status=200
        ),
        "rejected": audit(Event.STOP_REJECTED, days_ago=1, stop=acc_stop, attempt=1, oicp_code="501"),
        "other_cpo": audit(Event.STOP_FAILED, days_ago=1, stop=fst_stop, attempt=3, oicp_code="310"),
        "too_old": audit(Event.STOP_FAILED, days_ago=20, stop=acc_stop, attempt=3, oicp_code="310"),
    }


def shoot(page, name):
    """The whole page, and (for a look at real size) its first screens one by one."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    width, height = page.viewport_size["width"], page.viewport_size["height"]
    total = page.evaluate("document.documentElement.scrollHeight")
    for number, top in enumerate(range(0, min(total, 4 * height), height)):
        page.screenshot(
            path=str(SHOTS / f"{name}-part{number}.png"),
            full_page=True,
            clip={"x": 0, "y": top, "width": width, "height": min(height, total - top)},
        )


def test_a_supervisor_exports_failed_stops_for_one_cpo_last_week_and_verifies_the_trail(
    page, live_server, live, trail, settings
):
    settings.TWO_FACTOR_REQUIRED_ROLES = []
    UserFactory(username="browser-supervisor", role=roles.SUPERVISOR)
    page.set_default_timeout(15_000)
    page.set_viewport_size({"width": 1366, "height": 850})
    page.goto(live_server.url + "/")
    page.get_by_label("Username").fill("browser-supervisor")
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Exports").click()
    page.get_by_role("heading", name="Audit-log export").wait_for()
    assert "Europe/Berlin" in page.get_by_role("group", name="Period").inner_text()  # the zone of the days

    # Two event types (one of them with the keyboard), a preset, a CPO from the list.
    page.get_by_role("checkbox", name="Stop failed").check()
    rejected = page.get_by_role("checkbox", name="Stop rejected")
    rejected.focus()
    page.keyboard.press("Space")
    assert rejected.is_checked()
    page.get_by_role("radio", name="Last 7 days").check()
    page.get_by_label("CPO (OperatorID)").select_option("DE*ACC")
    page.get_by_role("button", name="Show what will be exported").click()
    preview = page.locator(".export-preview")
    preview.get_by_text("2 records", exact=True).wait_for()
    summary = preview.locator(".summary").inner_text()
    assert "last 7 days" in summary and "OperatorID DE*ACC" in summary
    assert "Stop failed (STOP_FAILED)" in summary and "Stop rejected (STOP_REJECTED)" in summary
    assert page.get_by_role("checkbox", name="Stop failed").is_checked()  # the choices stay as made
    assert page.get_by_label("CPO (OperatorID)").input_value() == "DE*ACC"
    assert_no_violations(page, what="audit export page")
    shoot(page, "export-1366")

    with page.expect_download() as download:
        page.get_by_role("button", name="Export 2 records").click()
    body = Path(download.value.path()).read_text(encoding="utf-8")
    rows = list(
        csv.DictReader(
            io.StringIO("".join(line for line in body.splitlines(True) if not line.startswith("#")), newline="")
        )
    )
    assert [int(row["id"]) for row in rows] == [trail["failed"].pk, trail["rejected"].pk]
    assert [row["outcome"] for row in rows] == [
        "Stop failed: 310 Partner did not respond (attempt 3 of 3)",
        "Stop rejected: 501 Communication to EVSE failed",
    ]

    # Verify now: queued, run by the worker, the result on the page without a reload.
    page.evaluate("window.__noReload = true")
    page.get_by_role("button", name="Verify now").click()
    status = page.locator("#chain-status")
    page.wait_for_selector("#chain-status[data-state=INTACT]", timeout=30_000)
    text = status.inner_text()
    assert "Audit trail intact" in text and "on request of browser-supervisor" in text
    assert page.evaluate("window.__noReload === true")
    verification = AuditVerification.objects.get()
    assert verification.state == AuditVerification.State.DONE and verification.ok
    assert AuditRecord.objects.filter(event_type=Event.AUDIT_VERIFIED, actor__username="browser-supervisor").exists()
    shoot(page, "export-verified-1366")

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    page.get_by_role("heading", name="Audit-log export").wait_for()
    shoot(page, "export-390")
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    too_wide = page.evaluate("""[...document.querySelectorAll('main *')]
        .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
        .slice(0, 8).map(e => e.tagName + '.' + e.className)""")
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px at 390 px: {too_wide}"


def test_an_impossible_range_is_said_next_to_the_field_in_the_browser(page, live_server, trail, settings):
    settings.TWO_FACTOR_REQUIRED_ROLES = []
    UserFactory(username="browser-auditor", role=roles.AUDITOR)
    page.set_default_timeout(10_000)
    page.goto(live_server.url + "/")
    page.get_by_label("Username").fill("browser-auditor")
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()
    page.goto(live_server.url + "/audit/export/?date_from=2026-03-03&date_to=2026-03-01&period=custom")
    to = page.get_by_label("To", exact=True)
    assert to.get_attribute("aria-invalid") == "true"
    assert "“To” is before “From”." in page.locator("#date_to-error").inner_text()
    assert page.get_by_role("alert").is_visible()
    assert page.get_by_role("button", name=re.compile(r"^(Export \d|Prepare the export)")).count() == 0
    assert_no_violations(page, what="audit export page with errors")
    shoot(page, "export-errors-1366")
