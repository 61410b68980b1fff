"""Create the four roles as groups with their permissions (see sessions/roles.py)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLE_PERMISSIONS = {
    "Support agent": ["view_chargingsession", "view_remotestoprequest", "request_remote_stop"],
    "Support admin": [
        "view_chargingsession", "view_remotestoprequest", "request_remote_stop",
        "view_all_remote_stops", "view_auditrecord",
    ],
    "Supervisor": [
        "view_chargingsession", "view_remotestoprequest", "request_remote_stop",
        "view_all_remote_stops", "view_auditrecord", "export_auditrecord",
    ],
    "Auditor": [
        "view_chargingsession", "view_remotestoprequest", "view_all_remote_stops",
        "view_auditrecord", "export_auditrecord",
    ],
}


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations; the groups need them now.
    app_config = apps.get_app_config("charging_sessions")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(
            Permission.objects.filter(content_type__app_label="charging_sessions", codename__in=codenames)
        )


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_PERMISSIONS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("charging_sessions", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
