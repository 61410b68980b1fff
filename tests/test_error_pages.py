"""The portal's own error pages (sessions/error_views.py): 403 with the top bar saying what was refused
and which role(s) may do it, 404 in the same style, a static 500; the favicon."""

import logging

import pytest
from django.template import loader
from django.test import Client
from django.urls import reverse

from sessions import error_views, roles
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _logged_in(client, role, username=None):
    client.force_login(UserFactory(username=username or f"err-{role or 'none'}".replace(" ", "-"), role=role))
    return client


@pytest.mark.parametrize(
    "role, url, allowed",
    [
        # From the view's permission_required, every role whose permissions hold all of them.
        (roles.AUDITOR, reverse("charging_sessions:stuck-sessions"), [roles.ADMIN, roles.SUPERVISOR]),
        (roles.AGENT, reverse("charging_sessions:anomalies"), [roles.ADMIN, roles.SUPERVISOR, roles.AUDITOR]),
        (roles.ADMIN, reverse("charging_sessions:audit-export"), [roles.SUPERVISOR, roles.AUDITOR]),
        # A role check, not a permission (sessions/accounts/views.py: team_admin_required).
        (roles.SUPERVISOR, reverse("charging_sessions:team"), [roles.ADMIN]),
        # A permission checked in the view's body (INLINE_CHECKS).
        (roles.AGENT, "EXPORT", [roles.SUPERVISOR, roles.AUDITOR]),
    ],
)
def test_403_says_what_was_refused_and_which_roles_may(client, settings, tmp_path, role, url, allowed):
    if url == "EXPORT":
        from sessions import services
        from sessions.audit.selectors import AuditLogFilters

        settings.AUDIT_EXPORT_DIR = tmp_path
        export = services.prepare_audit_export(
            filters=AuditLogFilters(),
            export_format="csv",
            acting_user=UserFactory(username="exporter", role=roles.SUPERVISOR),
        )
        url = reverse("charging_sessions:audit-export-detail", args=[export.pk])
    response = _logged_in(client, role).get(url)
    assert response.status_code == 403
    assert response.templates[0].name == "403.html"
    html = response.content.decode()
    assert '<header class="topbar">' in html and 'aria-label="Main"' in html  # the top bar, as on every page
    assert response.context["allowed_roles"] == allowed
    for name in allowed:
        assert f"<strong>{name}</strong>" in html
    assert f"Your role is <strong>{role}</strong>" in html
    assert "You may not " in html and url in html


def test_403_names_the_refused_action_in_words(client):
    html = _logged_in(client, roles.AGENT).get(reverse("charging_sessions:stuck-sessions")).content.decode()
    assert "You may not open the stuck sessions queue" in html
    assert "Only the roles <strong>Support admin</strong> or <strong>Supervisor</strong> may do this." in html


def test_403_for_a_user_without_a_role_says_to_ask_for_one(client):
    html = _logged_in(client, None).get(reverse("charging_sessions:session-list")).content.decode()
    assert "Your account has no role in the portal yet" in html
    # Every role may see sessions: all four are named.
    assert all(f"<strong>{name}</strong>" in html for name in roles.ROLE_PERMISSIONS)


def test_the_roles_come_from_sessions_roles():
    """Every permission-checked portal view maps to the roles that hold its permissions."""
    needs = {"charging_sessions.export_auditrecord"}
    assert [
        role for role, perms in roles.ROLE_PERMISSIONS.items() if {p.split(".")[1] for p in needs} <= set(perms)
    ] == [roles.SUPERVISOR, roles.AUDITOR]


def test_403_keeps_one_line_in_the_log(client, caplog):
    with caplog.at_level(logging.WARNING, logger="django.request"):
        _logged_in(client, roles.AGENT, "one-line").get(reverse("charging_sessions:stuck-sessions"))
    lines = [r for r in caplog.records if r.name == "django.request"]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert lines[0].getMessage() == (
        "Forbidden: user=one-line path=/stuck/ permission=charging_sessions.view_stuck_sessions"
    )


def test_404_has_the_top_bar_and_the_reason(client):
    response = _logged_in(client, roles.AGENT).get(reverse("charging_sessions:stop-timeline", args=[987654]))
    assert response.status_code == 404
    html = response.content.decode()
    assert '<header class="topbar">' in html and "Page not found" in html
    assert "No such stop request." in html
    response = client.get("/no-such-page/")
    assert response.status_code == 404 and "There is no page at this address." in response.content.decode()
    assert "tried" not in response.content.decode()  # never the resolver's list of URL patterns


def test_404_for_someone_logged_out_offers_the_login(client):
    html = Client().get("/no-such-page/").content.decode()
    assert "Page not found" in html and f'href="{reverse("login")}"' in html
    assert 'aria-label="Main"' not in html


def test_500_is_static_and_needs_no_database(django_assert_num_queries):
    with django_assert_num_queries(0):
        html = loader.get_template("500.html").render()  # as Django's handler500: no context, no request
    assert "Something went wrong on our side" in html and "<main" in html and 'rel="icon"' in html


def test_favicon_is_linked_and_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
    assert response.content.startswith(b"<svg")
    assert 'rel="icon"' in client.get(reverse("login")).content.decode()
    admin_login = client.get(reverse("admin:login")).content.decode()
    assert 'rel="icon"' in admin_login and "favicon.svg" in admin_login


def test_the_handlers_are_the_portals():
    from portal import urls

    assert urls.handler403 is error_views.permission_denied
    assert urls.handler404 is error_views.page_not_found
