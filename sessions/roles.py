"""The portal's roles, as Django groups and the permissions each one holds.

`sync_roles` makes the groups hold exactly these permissions after every `migrate` (and after a
test's flush, which also ends with post_migrate); the permission test checks every view against
them. Adding a permission to a role is a change here only.
"""

AGENT = "Support agent"
ADMIN = "Support admin"
SUPERVISOR = "Supervisor"
AUDITOR = "Auditor"

_VIEW = ["view_chargingsession", "view_remotestoprequest", "view_inboundmessage"]
_STUCK = ["view_stuck_sessions", "close_session_manually"]

ROLE_PERMISSIONS: dict[str, list[str]] = {
    # Sees sessions, stops them, sees their own stops.
    AGENT: [*_VIEW, "request_remote_stop"],
    # Reviews everyone's stops and the audit trail in the admin.
    ADMIN: [
        *_VIEW,
        *_STUCK,
        "request_remote_stop",
        "view_all_remote_stops",
        "view_auditrecord",
        "change_operator_contact",
    ],
    # Everything an admin has, plus the audit export.
    SUPERVISOR: [
        *_VIEW,
        *_STUCK,
        "request_remote_stop",
        "view_all_remote_stops",
        "view_auditrecord",
        "export_auditrecord",
        "change_operator_contact",
    ],
    # Read only: no stop.
    AUDITOR: [*_VIEW, "view_all_remote_stops", "view_auditrecord", "export_auditrecord"],
}


def sync_roles(*, apps=None, using: str = "default", **kwargs) -> None:
    """post_migrate: create the role groups and give each exactly its permissions.

    Runs after django.contrib.auth's own post_migrate handler has created the permissions. A
    permission the database does not have yet (a migration of this app not applied) is left out.
    """
    from django.apps import apps as global_apps

    apps = apps or global_apps
    try:
        Group = apps.get_model("auth", "Group")
        Permission = apps.get_model("auth", "Permission")
    except LookupError:
        return
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.using(using).get_or_create(name=role)
        group.permissions.set(
            Permission.objects.using(using).filter(content_type__app_label="charging_sessions", codename__in=codenames)
        )
