"""The portal's roles, as Django groups and the permissions each one holds.

The data migration creates them; the permission test checks every view against them.
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
    ADMIN: [*_VIEW, *_STUCK, "request_remote_stop", "view_all_remote_stops", "view_auditrecord"],
    # Everything an admin has, plus the audit export.
    SUPERVISOR: [*_VIEW, *_STUCK, "request_remote_stop", "view_all_remote_stops", "view_auditrecord", "export_auditrecord"],
    # Read only: no stop.
    AUDITOR: [*_VIEW, "view_all_remote_stops", "view_auditrecord", "export_auditrecord"],
}
