from django.apps import AppConfig


class ChargingSessionsConfig(AppConfig):
    # The package is "sessions" but the label must not clash with django.contrib.sessions.
    name = "sessions"
    label = "charging_sessions"
    verbose_name = "Charging sessions"

    def ready(self) -> None:
        from .admin_base import give_every_admin_local_times

        # Every admin page, other apps' included (users, django-axes, django-otp), shows times the
        # same way: local, with their UTC offset.
        give_every_admin_local_times()

        # What a login still owes (a second factor, a new password) is settled once per login.
        # PostgreSQL: the purge policy and the portal role's privileges, after every migrate.
        from django.db.models.signals import post_migrate

        from .accounts import signals  # noqa: F401
        from .audit.database import configure_audit_database
        from .roles import sync_roles

        post_migrate.connect(configure_audit_database, sender=self, dispatch_uid="configure_audit_database")
        # The roles (groups and their permissions) as sessions/roles.py defines them.
        post_migrate.connect(sync_roles, sender=self, dispatch_uid="sync_roles")
