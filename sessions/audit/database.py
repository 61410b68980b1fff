"""PostgreSQL: what `migrate` (run as the tables' owner) sets up around the audit trail each time.

- The purge policy the database's purge function enforces, from AUDIT_RETENTION_DAYS.
- When the portal connects as its own role (DATABASE_APP_ROLE, as it should: README "Database
  roles"), that role's privileges: everything the portal does, but no UPDATE, DELETE or TRUNCATE
  on audit records and no writes to purge checkpoints; deleting old records only through the
  purge function, which applies the retention policy and the legal holds itself.

Run after every migration (post_migrate), so new tables are granted too; nothing on SQLite.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connections

AUDIT_TABLE = "charging_sessions_auditrecord"
CHECKPOINT_TABLE = "charging_sessions_auditcheckpoint"
OWNER_ONLY_TABLES = ("charging_sessions_audit_purge_permit", "charging_sessions_audit_policy")
PURGE_FUNCTION = "charging_sessions_purge_audit(timestamptz, bigint, bigint, text, text, text, integer)"


def grant_statements(role: str, schema: str) -> list[str]:
    """What the portal's role may do (quoted names in, SQL out)."""
    return [
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
        f"REVOKE UPDATE, DELETE, TRUNCATE ON {AUDIT_TABLE} FROM {role}",
        f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {CHECKPOINT_TABLE} FROM {role}",
        *(f"REVOKE ALL ON {table} FROM {role}" for table in OWNER_ONLY_TABLES),
        f"GRANT EXECUTE ON FUNCTION {PURGE_FUNCTION} TO {role}",
    ]


def configure_audit_database(*, using: str = "default", **kwargs) -> None:
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [OWNER_ONLY_TABLES[1]])
        if not cursor.fetchone()[0]:
            return  # migrated only part of the way (a test of an older migration)
        cursor.execute(
            f"UPDATE {OWNER_ONLY_TABLES[1]} SET retention_days = %s WHERE id = 1", [settings.AUDIT_RETENTION_DAYS]
        )
        if settings.DATABASE_APP_ROLE:
            cursor.execute("SELECT current_schema()")
            schema = connection.ops.quote_name(cursor.fetchone()[0])
            for statement in grant_statements(connection.ops.quote_name(settings.DATABASE_APP_ROLE), schema):
                cursor.execute(statement)
