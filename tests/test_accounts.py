"""Support admins manage the portal's agents in its own pages; everyone changes their own password.

Every change is audited with its actor and the account it changed, never with a password.
"""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from sessions import roles
from sessions.accounts import selectors, services
from sessions.audit.records import verify_audit_chain
from sessions.models import AuditRecord
from tests.factories import UserFactory

Event = AuditRecord.EventType
User = get_user_model()


@pytest.fixture
def support_admin(db):
    return UserFactory(username="admin-a", role=roles.ADMIN, is_staff=True)


@pytest.fixture
def admin_client(support_admin):
    client = Client()
    client.force_login(support_admin)
    return client


def _login(client: Client, username: str, password: str):
    return client.post("/login/", {"username": username, "password": password})


def _temporary_password(response) -> str:
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    return re.search(r'class="id temp-password"><code>([^<]+)</code>', response.content.decode()).group(1)


def _audits(event_type):
    return list(AuditRecord.objects.filter(event_type=event_type).order_by("id"))


def _no_secret_in_the_trail(*secrets: str) -> None:
    text = json.dumps(list(AuditRecord.objects.values()), default=str)
    for secret in secrets:
        assert secret not in text


# --- a support admin adds an agent; the agent's first login -----------------------------------------


def test_a_support_admin_adds_an_agent_who_must_choose_a_password_at_the_first_login(admin_client, support_admin):
    page = admin_client.get("/team/new/")
    assert page.status_code == 200 and b'name="username"' in page.content

    response = admin_client.post(
        "/team/new/",
        {
            "username": "dora",
            "first_name": "Dora",
            "last_name": "Diaz",
            "email": "dora@example.com",
            "role": roles.AGENT,
        },
    )
    password = _temporary_password(response)
    assert len(password) == 19  # four groups of four, read out on the phone
    dora = User.objects.get(username="dora")
    assert selectors.role_names(dora) == [roles.AGENT] and not dora.is_staff and dora.is_active
    [created] = _audits(Event.USER_CREATED)
    assert created.actor == support_admin
    assert created.data == {"user_id": dora.pk, "username": "dora", "role": roles.AGENT, "temporary_password": True}
    _no_secret_in_the_trail(password)

    # Dora logs in with it: every page sends her to choose her own password first.
    dora_client = Client()
    assert _login(dora_client, "dora", password)["Location"] == "/"
    response = dora_client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/password/?next=")
    assert dora_client.get("/stops/")["Location"].startswith("/accounts/password/")
    page = dora_client.get("/accounts/password/")
    assert b"temporary password" in page.content

    response = dora_client.post(
        "/accounts/password/",
        {
            "old_password": password,
            "new_password1": "Ch4rge-the-Car!",
            "new_password2": "Ch4rge-the-Car!",
            "next": "/stops/",
        },
    )
    assert response.status_code == 302 and response["Location"] == "/stops/"
    assert dora_client.get("/").status_code == 200
    [changed] = _audits(Event.PASSWORD_CHANGED)
    assert changed.actor == dora and changed.data == {"user_id": dora.pk, "username": "dora", "was_temporary": True}
    _no_secret_in_the_trail(password, "Ch4rge-the-Car!")
    # The next login asks for nothing more.
    again = Client()
    _login(again, "dora", "Ch4rge-the-Car!")
    assert again.get("/").status_code == 200
    assert verify_audit_chain().ok


def test_the_new_member_form_says_what_is_wrong_next_to_the_field(admin_client):
    UserFactory(username="taken")
    response = admin_client.post("/team/new/", {"username": "Taken", "role": roles.AGENT})
    assert response.status_code == 200
    text = response.content.decode()
    assert "This username is taken." in text and 'aria-invalid="true"' in text
    response = admin_client.post("/team/new/", {"username": "eve", "role": roles.SUPERVISOR})
    assert "Select a valid choice" in response.content.decode()
    assert not User.objects.filter(username="eve").exists()
    assert not AuditRecord.objects.filter(event_type=Event.USER_CREATED).exists()


def test_the_team_page_lists_agents_and_support_admins_only(admin_client, support_admin):
    UserFactory(username="agent-x", role=roles.AGENT)
    gone = UserFactory(username="agent-gone", role=roles.AGENT, is_active=False)
    UserFactory(username="super-x", role=roles.SUPERVISOR)
    UserFactory(username="auditor-x", role=roles.AUDITOR)
    UserFactory(username="root-x", is_superuser=True)
    page = admin_client.get("/team/")
    text = page.content.decode()
    assert page.status_code == 200
    for shown in ("agent-x", "agent-gone", "admin-a"):
        assert shown in text
    for hidden in ("super-x", "auditor-x", "root-x"):
        assert hidden not in text
    assert "2 active, 3 in all" in text
    assert f"/team/{gone.pk}/" in text


# --- what a support admin may change -----------------------------------------------------------------


def test_a_support_admin_resets_a_password_the_member_is_logged_out_and_must_change_it(admin_client, support_admin):
    agent = UserFactory(username="agent-r", role=roles.AGENT)
    agent_client = Client()
    agent_client.force_login(agent)
    assert agent_client.get("/").status_code == 200

    response = admin_client.post(f"/team/{agent.pk}/password-reset/")
    password = _temporary_password(response)
    assert agent_client.get("/")["Location"].startswith("/login/")  # the open login ended
    assert _login(Client(), "agent-r", "pw").status_code == 200  # the old password is gone
    [reset] = _audits(Event.USER_PASSWORD_RESET)
    assert reset.actor == support_admin and reset.data["username"] == "agent-r"
    _no_secret_in_the_trail(password)

    agent_client = Client()
    _login(agent_client, "agent-r", password)
    assert agent_client.get("/")["Location"].startswith("/accounts/password/")


def test_a_support_admin_changes_a_role_both_ways(admin_client, support_admin):
    agent = UserFactory(username="agent-p", role=roles.AGENT)
    response = admin_client.post(f"/team/{agent.pk}/role/", {"role": roles.ADMIN})
    assert response.status_code == 302 and response["Location"] == f"/team/{agent.pk}/"
    agent.refresh_from_db()
    assert selectors.role_names(agent) == [roles.ADMIN] and agent.is_staff
    admin_client.post(f"/team/{agent.pk}/role/", {"role": roles.ADMIN})  # no change: no record
    agent = User.objects.get(pk=agent.pk)
    admin_client.post(f"/team/{agent.pk}/role/", {"role": roles.AGENT})
    agent = User.objects.get(pk=agent.pk)
    assert selectors.role_names(agent) == [roles.AGENT] and not agent.is_staff
    assert [(r.actor, r.data["old_role"], r.data["new_role"]) for r in _audits(Event.USER_ROLE_CHANGED)] == [
        (support_admin, roles.AGENT, roles.ADMIN),
        (support_admin, roles.ADMIN, roles.AGENT),
    ]
    # A role a support admin does not hand out is refused, and nothing changes.
    admin_client.post(f"/team/{agent.pk}/role/", {"role": roles.SUPERVISOR})
    assert selectors.role_names(User.objects.get(pk=agent.pk)) == [roles.AGENT]


def test_a_deactivated_member_cannot_log_in_until_reactivated(admin_client, support_admin):
    agent = UserFactory(username="agent-d", role=roles.AGENT)
    agent_client = Client()
    agent_client.force_login(agent)
    admin_client.post(f"/team/{agent.pk}/deactivate/")
    assert agent_client.get("/")["Location"].startswith("/login/")
    assert _login(Client(), "agent-d", "pw").status_code == 200  # refused: the form again
    admin_client.post(f"/team/{agent.pk}/reactivate/")
    assert _login(Client(), "agent-d", "pw").status_code == 302
    assert [
        (r.event_type, r.actor, r.data["username"])
        for r in AuditRecord.objects.filter(event_type__in=[Event.USER_DEACTIVATED, Event.USER_REACTIVATED]).order_by(
            "id"
        )
    ] == [(Event.USER_DEACTIVATED, support_admin, "agent-d"), (Event.USER_REACTIVATED, support_admin, "agent-d")]


def test_a_support_admin_cannot_lock_themselves_out(admin_client, support_admin):
    for action, data in (
        ("deactivate", {}),
        ("role", {"role": roles.AGENT}),
        ("password-reset", {}),
        ("two-factor-reset", {}),
    ):
        response = admin_client.post(f"/team/{support_admin.pk}/{action}/", data)
        assert response.status_code == 302, action
        page = admin_client.get(response["Location"])
        assert "You cannot do this to your own account" in page.content.decode(), action
    support_admin.refresh_from_db()
    assert support_admin.is_active and selectors.role_names(support_admin) == [roles.ADMIN]
    assert support_admin.check_password("pw")
    assert not AuditRecord.objects.exists()
    # Their own page says where their password and second factor are, and offers no action.
    page = admin_client.get(f"/team/{support_admin.pk}/").content.decode()
    assert "This is your own account" in page and "Deactivate" not in page


@pytest.mark.parametrize("role", [roles.SUPERVISOR, roles.AUDITOR, None])
def test_a_support_admin_cannot_manage_supervisors_auditors_or_superusers(admin_client, support_admin, role):
    other = UserFactory(username="someone-else", role=role, is_superuser=role is None)
    assert admin_client.get(f"/team/{other.pk}/").status_code == 404
    for action in ("deactivate", "password-reset", "two-factor-reset"):
        assert admin_client.post(f"/team/{other.pk}/{action}/").status_code == 404
    with pytest.raises(services.AccountChangeRefused, match="managed in the Django admin"):
        services.deactivate_team_member(acting_user=support_admin, member=other)
    other.refresh_from_db()
    assert other.is_active and other.check_password("pw")
    assert not AuditRecord.objects.exists()


def test_only_support_admins_manage_the_team_even_through_the_services(db):
    agent = UserFactory(username="agent-s", role=roles.AGENT)
    other = UserFactory(username="agent-t", role=roles.AGENT)
    supervisor = UserFactory(username="super-s", role=roles.SUPERVISOR)
    for actor in (agent, supervisor):
        with pytest.raises(services.AccountChangeRefused, match="Only support admins"):
            services.deactivate_team_member(acting_user=actor, member=other)
        with pytest.raises(services.AccountChangeRefused, match="Only support admins"):
            services.create_team_member(acting_user=actor, username="new", role=roles.AGENT)
    assert not AuditRecord.objects.exists()


# --- everyone changes their own password --------------------------------------------------------------


@pytest.mark.parametrize("role", [roles.AGENT, roles.ADMIN, roles.SUPERVISOR, roles.AUDITOR, None])
def test_every_user_changes_their_own_password(db, role):
    user = UserFactory(username="changer", role=role)
    client, other_login = Client(), Client()
    _login(client, "changer", "pw")
    _login(other_login, "changer", "pw")
    page = client.get("/accounts/password/")
    assert page.status_code == 200 and b"Change your password" in page.content

    wrong = client.post(
        "/accounts/password/",
        {"old_password": "nope", "new_password1": "Ch4rge-the-Car!", "new_password2": "Ch4rge-the-Car!"},
    )
    assert wrong.status_code == 200 and "Your old password was entered incorrectly" in wrong.content.decode()
    weak = client.post(
        "/accounts/password/", {"old_password": "pw", "new_password1": "12345678", "new_password2": "12345678"}
    )
    assert "This password is too common" in weak.content.decode()
    assert not AuditRecord.objects.exists()

    response = client.post(
        "/accounts/password/",
        {"old_password": "pw", "new_password1": "Ch4rge-the-Car!", "new_password2": "Ch4rge-the-Car!"},
    )
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/accounts/password/").status_code == 200  # this login stays
    assert other_login.get("/accounts/password/")["Location"].startswith("/login/")  # the other one ended
    user.refresh_from_db()
    assert user.check_password("Ch4rge-the-Car!")
    [changed] = _audits(Event.PASSWORD_CHANGED)
    assert changed.actor == user and changed.data == {"user_id": user.pk, "username": "changer", "was_temporary": False}
    _no_secret_in_the_trail("Ch4rge-the-Car!")


def test_the_user_menu_offers_password_two_factor_and_for_support_admins_the_team(db):
    for role, team in ((roles.AGENT, False), (roles.ADMIN, True), (roles.SUPERVISOR, False)):
        client = Client()
        client.force_login(UserFactory(username=f"menu-{role}".replace(" ", "-"), role=role))
        text = client.get("/").content.decode()
        assert 'href="/accounts/password/"' in text and 'href="/accounts/two-factor/"' in text
        assert ('href="/team/"' in text) is team, role


def test_the_account_audit_records_read_in_words_in_exports(db):
    from sessions.audit.outcomes import outcome_text

    assert (
        outcome_text(
            Event.USER_ROLE_CHANGED, {"username": "dora", "old_role": "Support agent", "new_role": "Support admin"}
        )
        == "Role changed: dora from Support agent to Support admin"
    )
    assert (
        outcome_text(Event.USER_CREATED, {"username": "dora", "role": "Support agent"})
        == "Team member created: dora as Support agent"
    )
    assert (
        outcome_text(Event.TWO_FACTOR_RECOVERY_USED, {"username": "dora", "codes_left": 9})
        == "Recovery code used to log in: dora; 9 left"
    )
