"""Every page and every export URL against every role, a user without a role, and an anonymous visitor.

The expected answer of each cell is written out, so a change of roles or views that widens (or
narrows) access fails here first.
"""

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.urls import reverse
from django.utils import timezone

from sessions import roles, services
from sessions.audit.selectors import AuditLogFilters
from sessions.models import InboundMessage, StopReason
from tests.factories import ChargingSessionFactory, EvseRecordFactory, RemoteStopRequestFactory, UserFactory

ANONYMOUS, NOBODY = "anonymous", "no role"
AGENT, ADMIN, SUPERVISOR, AUDITOR = roles.AGENT, roles.ADMIN, roles.SUPERVISOR, roles.AUDITOR
WHO = [ANONYMOUS, NOBODY, AGENT, ADMIN, SUPERVISOR, AUDITOR]
LOGIN, ADMIN_LOGIN = "login", "admin login"


@dataclass(frozen=True)
class Case:
    name: str
    url: Callable[[dict], str]
    expect: dict  # who -> status code (or LOGIN / ADMIN_LOGIN redirect)
    method: str = "get"
    data: dict | None = None


def everyone(code):
    return {NOBODY: 403, AGENT: code, ADMIN: code, SUPERVISOR: code, AUDITOR: code}


EXPORTERS = {NOBODY: 403, AGENT: 403, ADMIN: 403, SUPERVISOR: 200, AUDITOR: 200}
SEES_ALL = {NOBODY: 403, AGENT: 403, ADMIN: 200, SUPERVISOR: 200, AUDITOR: 200}
STAFF = {NOBODY: ADMIN_LOGIN, AGENT: ADMIN_LOGIN, ADMIN: 200, SUPERVISOR: 200, AUDITOR: 200}
ALL_USERS = {NOBODY: 200, AGENT: 200, ADMIN: 200, SUPERVISOR: 200, AUDITOR: 200}
TEAM_ADMINS = {NOBODY: 403, AGENT: 403, ADMIN: 200, SUPERVISOR: 403, AUDITOR: 403}


def redirects(expect):
    """The same people get through, and are sent on (302) instead of a page (200)."""
    return {who: 302 if code == 200 else code for who, code in expect.items()}


CASES = [
    Case("session list", lambda w: reverse("charging_sessions:session-list"), everyone(200)),
    Case(
        "session detail", lambda w: reverse("charging_sessions:session-detail", args=[w["session"].pk]), everyone(200)
    ),
    Case(
        "stop POST",
        lambda w: reverse("charging_sessions:request-stop", args=[w["session"].pk]),
        {NOBODY: 403, AGENT: 302, ADMIN: 302, SUPERVISOR: 302, AUDITOR: 403},
        method="post",
        data={"reason": StopReason.DRIVER_ASKED},
    ),
    Case("stop status", lambda w: reverse("charging_sessions:stop-status", args=[w["stop"].pk]), everyone(200)),
    Case("stop history", lambda w: reverse("charging_sessions:stop-history"), everyone(200)),
    # Someone else's stop: an agent sees only their own.
    Case(
        "stop timeline",
        lambda w: reverse("charging_sessions:stop-timeline", args=[w["stop"].pk]),
        {NOBODY: 403, AGENT: 404, ADMIN: 200, SUPERVISOR: 200, AUDITOR: 200},
    ),
    Case("audit export page", lambda w: reverse("charging_sessions:audit-export"), EXPORTERS),
    Case(
        "audit export start",
        lambda w: reverse("charging_sessions:audit-export-start"),
        EXPORTERS,
        method="post",
        data={"format": "csv"},
    ),
    Case(
        "audit export detail",
        lambda w: reverse("charging_sessions:audit-export-detail", args=[w["export"].pk]),
        EXPORTERS,
    ),
    Case(
        "audit export download",
        lambda w: reverse("charging_sessions:audit-export-download", args=[w["export"].pk]),
        EXPORTERS,
    ),
    # The audit chain's verification: its status for everyone who sees the audit trail, "verify now"
    # for those who may export it.
    Case("audit chain status", lambda w: reverse("charging_sessions:audit-chain-status"), SEES_ALL),
    Case("audit verify now", lambda w: reverse("charging_sessions:audit-verify"), redirects(EXPORTERS), method="post"),
    # Flagged messages: everyone who sees all stops (admin, supervisor, auditor), not agents.
    Case("message anomalies", lambda w: reverse("charging_sessions:anomalies"), SEES_ALL),
    Case("anomaly message", lambda w: reverse("charging_sessions:anomaly-message", args=[w["flagged"].pk]), SEES_ALL),
    # The directory: a station's page and the live EVSE status on the session page, for everyone who
    # sees sessions (Hubject is unreachable in tests: the fragment says "unknown").
    Case(
        "station detail", lambda w: reverse("charging_sessions:station-detail", args=[w["station"].pk]), everyone(200)
    ),
    Case("EVSE status", lambda w: reverse("charging_sessions:evse-status", args=[w["session"].pk]), everyone(200)),
    # The CPO pages (stops per CPO, its CSV, one CPO's page): everyone who sees all stops.
    Case("operator overview", lambda w: reverse("charging_sessions:operator-overview"), SEES_ALL),
    Case("operator overview CSV", lambda w: reverse("charging_sessions:operator-overview-csv"), SEES_ALL),
    Case(
        "operator detail",
        lambda w: reverse("charging_sessions:operator-detail", args=[w["session"].operator_id]),
        SEES_ALL,
    ),
    # Your own password and second factor: everyone logged in, with a role or not.
    Case("password change", lambda w: reverse("charging_sessions:password-change"), ALL_USERS),
    Case("two-factor", lambda w: reverse("charging_sessions:two-factor"), ALL_USERS),
    Case("two-factor setup", lambda w: reverse("charging_sessions:two-factor-setup"), ALL_USERS),
    # Nothing to verify (no authenticator set up): on to the page asked for.
    Case("two-factor verify", lambda w: reverse("charging_sessions:two-factor-verify"), redirects(ALL_USERS)),
    Case(
        "two-factor recovery codes",
        lambda w: reverse("charging_sessions:two-factor-recovery-codes"),
        redirects(ALL_USERS),
        method="post",
    ),
    Case(
        "two-factor turn off",
        lambda w: reverse("charging_sessions:two-factor-turn-off"),
        redirects(ALL_USERS),
        method="post",
    ),
    # The team: support admins only.
    Case("team", lambda w: reverse("charging_sessions:team"), TEAM_ADMINS),
    Case("team member new", lambda w: reverse("charging_sessions:team-member-new"), TEAM_ADMINS),
    Case(
        "team member new POST",
        lambda w: reverse("charging_sessions:team-member-new"),
        TEAM_ADMINS,
        method="post",
        data={"username": "new-agent", "role": "Support agent"},
    ),
    Case("team member", lambda w: reverse("charging_sessions:team-member", args=[w["member"].pk]), TEAM_ADMINS),
    *[
        Case(
            f"team member {action}",
            lambda w, action=action: reverse(f"charging_sessions:team-member-{action}", args=[w["member"].pk]),
            TEAM_ADMINS if action == "password-reset" else redirects(TEAM_ADMINS),
            method="post",
            data={"role": "Support admin"},
        )
        for action in ("role", "password-reset", "two-factor-reset", "deactivate", "reactivate")
    ],
    Case("admin index", lambda w: reverse("admin:index"), STAFF),
    *[
        Case(f"admin {model}", lambda w, model=model: reverse(f"admin:charging_sessions_{model}_changelist"), STAFF)
        for model in (
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
    ],
]


@pytest.fixture
def world(db, settings, tmp_path, no_broker):
    settings.AUDIT_EXPORT_DIR = tmp_path
    owner = UserFactory(username="stop-owner", role=roles.AGENT)
    supervisor = UserFactory(username="export-owner", role=roles.SUPERVISOR)
    export = services.prepare_audit_export(filters=AuditLogFilters(), export_format="csv", acting_user=supervisor)
    services.write_audit_export(export_id=export.pk)
    return {
        "session": ChargingSessionFactory(),
        "station": EvseRecordFactory(),
        "member": UserFactory(username="team-agent", role=roles.AGENT),
        "stop": RemoteStopRequestFactory(requested_by=owner),
        "export": export,
        "flagged": InboundMessage.objects.create(
            kind=InboundMessage.Kind.CDR,
            session_id="refused",
            received_at=timezone.now(),
            raw="{}",
            apply_error="Refused by the CDR pull: EvseID missing",
            flagged=True,
            anomalies=[{"code": "refused", "field": "EvseID", "text": "EvseID missing"}],
        ),
    }


def _client_for(client, who):
    if who == ANONYMOUS:
        return client
    user = UserFactory(username=f"matrix-{who}".replace(" ", "-"), role=None if who == NOBODY else who)
    # As in the demo: everyone but agents (and users without a role) works in the Django admin too.
    user.is_staff = who in (ADMIN, SUPERVISOR, AUDITOR)
    user.save()
    client.force_login(user)
    return client


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_permission_matrix(client, world, case, who):
    client = _client_for(client, who)
    url = case.url(world)
    response = getattr(client, case.method)(url, case.data or {})
    is_admin = url.startswith("/admin/")
    expected = (ADMIN_LOGIN if is_admin else LOGIN) if who == ANONYMOUS else case.expect[who]
    if expected == LOGIN:
        assert response.status_code == 302 and response["Location"].startswith(reverse("login") + "?next=")
    elif expected == ADMIN_LOGIN:
        assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    else:
        assert response.status_code == expected, f"{case.name} as {who}"


def test_every_new_url_is_in_the_matrix():
    """A URL added to the app without a row here fails this test."""
    from sessions import urls

    covered = {
        "session-list",
        "session-detail",
        "request-stop",
        "stop-status",
        "stop-history",
        "stop-timeline",
        "audit-export",
        "audit-export-start",
        "audit-export-detail",
        "audit-export-download",
        "audit-chain-status",
        "audit-verify",
        "anomalies",
        "anomaly-message",
        "operator-overview",
        "operator-overview-csv",
        "operator-detail",
        "station-detail",
        "evse-status",
        "password-change",
        "two-factor",
        "two-factor-setup",
        "two-factor-verify",
        "two-factor-recovery-codes",
        "two-factor-turn-off",
        "team",
        "team-member-new",
        "team-member",
        "team-member-role",
        "team-member-password-reset",
        "team-member-two-factor-reset",
        "team-member-deactivate",
        "team-member-reactivate",
    }
    others = {"stuck-sessions", "resend-stop", "close-session"}  # covered by tests/test_stuck_sessions.py

    def walk(patterns):
        for pattern in patterns:
            yield from walk(pattern.url_patterns) if hasattr(pattern, "url_patterns") else [pattern.name]

    names = set(walk(urls.urlpatterns))
    assert names - others <= covered, names - others - covered
