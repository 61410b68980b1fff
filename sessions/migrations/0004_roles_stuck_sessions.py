"""Give admins and supervisors the stuck-sessions queue and the manual close."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ADDED = {
    "Support admin": ["view_stuck_sessions", "close_session_manually", "view_inboundmessage"],
    "Supervisor": ["view_stuck_sessions", "close_session_manually", "view_inboundmessage"],
    "Auditor": ["view_inboundmessage"],
    "Support agent": ["view_inboundmessage"],
}


def add_permissions(apps, schema_editor):
    app_config = apps.get_app_config("charging_sessions")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codenames in ADDED.items():
        group = Group.objects.filter(name=role).first()
        if group is not None:
            group.permissions.add(
                *Permission.objects.filter(content_type__app_label="charging_sessions", codename__in=codenames)
            )


class Migration(migrations.Migration):
    dependencies = [("charging_sessions", "0003_inbound_confirmation_audit_chain")]

    operations = [migrations.RunPython(add_permissions, migrations.RunPython.noop)]
