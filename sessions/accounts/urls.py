"""Account pages, included by sessions/urls.py (names in the charging_sessions namespace)."""

from django.urls import path

from . import views

urlpatterns = [
    # Everyone: their own password and second factor.
    path("accounts/password/", views.password_change, name="password-change"),
    path("accounts/two-factor/", views.two_factor, name="two-factor"),
    path("accounts/two-factor/setup/", views.two_factor_setup, name="two-factor-setup"),
    path("accounts/two-factor/verify/", views.two_factor_verify, name="two-factor-verify"),
    path("accounts/two-factor/recovery-codes/", views.two_factor_recovery_codes, name="two-factor-recovery-codes"),
    path("accounts/two-factor/turn-off/", views.two_factor_turn_off, name="two-factor-turn-off"),
    # Support admins: the agents and support admins of the portal.
    path("team/", views.team, name="team"),
    path("team/new/", views.team_member_new, name="team-member-new"),
    path("team/<int:pk>/", views.team_member, name="team-member"),
    path("team/<int:pk>/role/", views.team_member_role, name="team-member-role"),
    path("team/<int:pk>/password-reset/", views.team_member_password_reset, name="team-member-password-reset"),
    path("team/<int:pk>/two-factor-reset/", views.team_member_two_factor_reset, name="team-member-two-factor-reset"),
    path("team/<int:pk>/deactivate/", views.team_member_deactivate, name="team-member-deactivate"),
    path("team/<int:pk>/reactivate/", views.team_member_reactivate, name="team-member-reactivate"),
]
