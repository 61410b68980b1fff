"""axe-core on every page of every role, in Debian's Chromium (issue 12: 0 violations, the admin included).

One test per role (agent, support admin, supervisor, auditor), each in its own browser context: log in
through the login page (checked first, with no second factor in the sandbox: TWO_FACTOR_REQUIRED_ROLES
is empty there, tests/test_two_factor.py), then every page the permission matrix
(tests/test_permissions_matrix.py) lets that role open, with the data each needs: sessions with a stop
in every state, the stuck queue, a flagged message, an export, the team, the Django admin's index,
lists and a change page for the staff roles; the 403 page of URLs the role may not open, and a 404.
No Celery worker: every page renders from the database alone.

Each violation is printed with its rule id, the selector of each element and the rule's help.
PORTAL_SCREENSHOTS=/some/dir also saves each portal page at 1366 and 390 px wide.
"""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from sessions import roles, services
from sessions.audit.selectors import AuditLogFilters
from sessions.models import AuditRecord, ChargingSession, InboundMessage, RemoteStopRequest
from tests.axe import violations
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory, UserFactory
from tests.screens import shoot

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop beside the live server
pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

State = RemoteStopRequest.State
AGENT, ADMIN, SUPERVISOR, AUDITOR = roles.AGENT, roles.ADMIN, roles.SUPERVISOR, roles.AUDITOR
STAFF = (ADMIN, SUPERVISOR, AUDITOR)  # as in the matrix and the demo: everyone but agents works in the admin
SEES_ALL = (ADMIN, SUPERVISOR, AUDITOR)
EXPORTERS = (SUPERVISOR, AUDITOR)
STUCK = (ADMIN, SUPERVISOR)
TEAM = (ADMIN,)
ADMIN_LISTS = (
    "chargingsession",
    "remotestoprequest",
    "auditrecord",
    "inboundmessage",
    "chargedetailrecord",
    "auditexport",
    "auditverification",
    "auditcheckpoint",
    "legalhold",
)


def _stop(agent, state, **fields):
    """A stop request in `state`, with the times and answers a real one in that state has."""
    now = timezone.now()
    started = now - timedelta(minutes=30)
    charging_session = ChargingSessionFactory(started_at=started - timedelta(hours=1), last_update_at=started)
    values = {"requested_at": started, "case_reference": f"CASE-{state.lower()}", "attempt_count": 1}
    if state != State.PENDING:
        values |= {
            "first_sent_at": started + timedelta(seconds=1),
            "last_sent_at": started + timedelta(seconds=1),
            "process_id": str(uuid.uuid4()),
        }
    if state in (State.ACCEPTED, State.CONFIRMED, State.UNCONFIRMED):
        values |= {
            "answered_at": started + timedelta(seconds=3),
            "finished_at": started + timedelta(seconds=3),
            "http_status": 200,
            "oicp_code": "000",
            "oicp_description": "Success",
        }
    if state == State.CONFIRMED:
        values |= {
            "confirmed_at": started + timedelta(seconds=40),
            "confirmed_by": RemoteStopRequest.ConfirmedBy.END,
            "time_to_confirmation": timedelta(seconds=40),
        }
        charging_session.status = ChargingSession.Status.CHARGING_ENDED
        charging_session.save()
    if state == State.REJECTED:
        values |= {
            "answered_at": started + timedelta(seconds=3),
            "finished_at": started + timedelta(seconds=3),
            "http_status": 200,
            "oicp_code": "501",
            "oicp_description": "Communication to EVSE failed!",
        }
    if state == State.FAILED:
        values |= {
            "finished_at": started + timedelta(seconds=90),
            "attempt_count": 3,
            "outcome_unknown": True,
            "last_error": "Hubject did not answer within 60 s (read timeout)",
        }
    stop = RemoteStopRequestFactory(
        charging_session=charging_session, requested_by=agent, state=state, **(values | fields)
    )
    services.record_audit(
        event_type=AuditRecord.EventType.STOP_REQUESTED,
        actor=agent,
        charging_session=charging_session,
        stop_request=stop,
        data={"reason": stop.reason, "case_reference": stop.case_reference},
    )
    return stop


@pytest.fixture
def world(settings, tmp_path):
    settings.AUDIT_EXPORT_DIR = tmp_path
    users = {}
    for role in (AGENT, ADMIN, SUPERVISOR, AUDITOR):
        user = UserFactory(username=f"axe-{role.lower().replace(' ', '-')}", role=role)
        user.is_staff = role in STAFF
        user.save()
        users[role] = user
    agent = users[AGENT]
    stops = {state: _stop(agent, state) for state in State.values}
    quiet = ChargingSessionFactory(last_update_at=timezone.now() - timedelta(hours=30))  # on the stuck queue
    closed = ChargingSessionFactory(status=ChargingSession.Status.CLOSED)
    export = services.prepare_audit_export(
        filters=AuditLogFilters(), export_format="csv", acting_user=users[SUPERVISOR]
    )
    services.write_audit_export(export_id=export.pk)
    flagged = InboundMessage.objects.create(
        kind=InboundMessage.Kind.CDR,
        session_id="refused",
        received_at=timezone.now(),
        raw='{"SessionID": "x"}',
        apply_error="Refused by the CDR pull: EvseID missing",
        flagged=True,
        anomalies=[{"code": "refused", "field": "EvseID", "text": "EvseID missing"}],
    )
    held = InboundMessage.objects.create(
        kind=InboundMessage.Kind.END,
        session_id=stops[State.CONFIRMED].charging_session.session_id,
        charging_session=stops[State.CONFIRMED].charging_session,
        operator_id="DE*ACC",
        received_at=timezone.now(),
        raw='{"Type": "End"}',
        flagged=True,
        held_back=True,
        anomalies=[{"code": "evse_mismatch", "field": "EvseID", "text": "names another EVSE"}],
    )
    return {
        "users": users,
        "stops": stops,
        "quiet": quiet,
        "closed": closed,
        "export": export,
        "flagged": [flagged, held],
    }


def pages_for(role: str, world: dict) -> list[tuple[str, str, int]]:
    """(what, URL, expected status) for every page `role` may open, and a few it may not (403)."""
    stops, url = world["stops"], reverse
    pages = [
        ("session list", url("charging_sessions:session-list"), 200),
        ("session list, a search", url("charging_sessions:session-list") + "?q=DE*ACC", 200),
        ("session list, nothing found", url("charging_sessions:session-list") + "?q=NOTHING-LIKE-THIS", 200),
        *[
            (
                f"session page, stop {state.lower()}",
                url("charging_sessions:session-detail", args=[stop.charging_session.pk]),
                200,
            )
            for state, stop in stops.items()
        ],
        (
            "session page, no stop (stuck, quiet)",
            url("charging_sessions:session-detail", args=[world["quiet"].pk]),
            200,
        ),
        ("session page, closed", url("charging_sessions:session-detail", args=[world["closed"].pk]), 200),
        ("stop history", url("charging_sessions:stop-history"), 200),
        ("stop history, filtered to nothing", url("charging_sessions:stop-history") + "?q=NOTHING-LIKE-THIS", 200),
        ("stop history, sorted by state", url("charging_sessions:stop-history") + "?sort=state", 200),
        *[
            (f"stop timeline, {state.lower()}", url("charging_sessions:stop-timeline", args=[stop.pk]), 200)
            for state, stop in stops.items()
        ],
        ("password change", url("charging_sessions:password-change"), 200),
        ("two-factor", url("charging_sessions:two-factor"), 200),
        ("two-factor setup", url("charging_sessions:two-factor-setup"), 200),
        ("404 page", "/no-such-page/", 404),
    ]
    refused = []
    if role in STUCK:
        pages.append(("stuck queue", url("charging_sessions:stuck-sessions"), 200))
    else:
        refused.append(("403: stuck queue", url("charging_sessions:stuck-sessions"), 403))
    if role in SEES_ALL:
        pages += [
            ("message anomalies", url("charging_sessions:anomalies"), 200),
            *[
                (f"flagged message #{i}", url("charging_sessions:anomaly-message", args=[message.pk]), 200)
                for i, message in enumerate(world["flagged"], 1)
            ],
        ]
    else:
        refused.append(("403: message anomalies", url("charging_sessions:anomalies"), 403))
    if role in EXPORTERS:
        pages += [
            ("audit export", url("charging_sessions:audit-export"), 200),
            ("audit export, filtered", url("charging_sessions:audit-export") + "?event_type=STOP_REQUESTED", 200),
            ("audit export's page", url("charging_sessions:audit-export-detail", args=[world["export"].pk]), 200),
        ]
    else:
        refused.append(("403: audit export", url("charging_sessions:audit-export"), 403))
    if role in TEAM:
        member = world["users"][AGENT]
        pages += [
            ("team", url("charging_sessions:team"), 200),
            ("team: new member", url("charging_sessions:team-member-new"), 200),
            ("team member", url("charging_sessions:team-member", args=[member.pk]), 200),
        ]
    else:
        refused.append(("403: team", url("charging_sessions:team"), 403))
    if role in STAFF:
        pages += [
            ("admin index", url("admin:index"), 200),
            *[
                (f"admin list {model}", url(f"admin:charging_sessions_{model}_changelist"), 200)
                for model in ADMIN_LISTS
            ],
            (
                "admin stop request",
                url("admin:charging_sessions_remotestoprequest_change", args=[stops[State.REJECTED].pk]),
                200,
            ),
            (
                "admin session",
                url("admin:charging_sessions_chargingsession_change", args=[stops[State.ACCEPTED].charging_session.pk]),
                200,
            ),
        ]
    return pages + refused


def describe(found: list[dict]) -> list[str]:
    lines = []
    for violation in found:
        for node in violation["nodes"]:
            lines.append(f"  {violation['id']} ({violation.get('impact')}) {node['target']}: {violation['help']}")
    return lines


@pytest.mark.parametrize("role", [AGENT, ADMIN, SUPERVISOR, AUDITOR])
def test_axe_finds_no_violation_on_any_page_of_the_role(browser, live_server, world, role):
    context = browser.new_context(viewport={"width": 1366, "height": 850})
    page = context.new_page()
    page.set_default_timeout(15_000)
    failures: list[str] = []
    visited: list[str] = []

    def check(what: str) -> None:
        found = violations(page)
        visited.append(what)
        if found:
            failures.append(f"{what} ({page.url}):")
            failures.extend(describe(found))

    # The login page, then in.
    page.goto(live_server.url + reverse("login"))
    check("login page")
    user = world["users"][role]
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Charging sessions").wait_for()  # no second factor in the sandbox

    for what, path, status in pages_for(role, world):
        response = page.goto(live_server.url + path)
        assert response.status == status, f"{what} as {role}: HTTP {response.status}, expected {status}"
        page.wait_for_load_state("load")
        check(what)
        if role in (AGENT, SUPERVISOR):
            shoot(page, f"{role.lower().replace(' ', '-')}-{what.replace(' ', '-').replace(':', '').replace(',', '')}")

    context.close()
    assert not failures, (
        f"axe: violations as {role} on {sum(1 for f in failures if not f.startswith('  '))} of "
        f"{len(visited)} pages:\n" + "\n".join(failures)
    )
    print(f"{role}: {len(visited)} pages, 0 violations")
