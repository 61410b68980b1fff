"""Tamper evidence for the audit trail.

1. Chain every existing audit record (in id order) and create the one chain-head row.
2. On PostgreSQL, a trigger rejects UPDATE and DELETE on the audit table, except for the retention
   purge, which identifies itself with `SET LOCAL portal.audit_purge = 'on'` in its transaction.
   (TRUNCATE stays possible for the database owner: the test runner's flush uses it.)

Migration 0016 replaces both: a keyed chain, and a trigger that no session setting unlocks.
"""

from django.db import migrations

from sessions.audit.chain import canonical_bytes, normalise_data
from sessions.audit.chain import unkeyed_chain_hash as chain_hash

TABLE = "charging_sessions_auditrecord"

CREATE_TRIGGER = f"""
CREATE OR REPLACE FUNCTION charging_sessions_audit_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('portal.audit_purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit records are append-only: % refused on %', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Only manage.py purge_audit may delete audit records.';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS audit_append_only ON {TABLE};
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION charging_sessions_audit_append_only();
"""

DROP_TRIGGER = f"""
DROP TRIGGER IF EXISTS audit_append_only ON {TABLE};
DROP FUNCTION IF EXISTS charging_sessions_audit_append_only();
"""


def chain_existing_records(apps, schema_editor):
    AuditRecord = apps.get_model("charging_sessions", "AuditRecord")
    AuditChainHead = apps.get_model("charging_sessions", "AuditChainHead")
    prev_hash, last_id, batch = "", None, []
    for record in AuditRecord.objects.order_by("id").iterator(chunk_size=2000):
        record.data = normalise_data(record.data)
        record.prev_hash = prev_hash
        record.record_hash = chain_hash(
            prev_hash,
            canonical_bytes(
                event_type=record.event_type,
                occurred_at=record.occurred_at,
                actor_id=record.actor_id,
                charging_session_id=record.charging_session_id,
                stop_request_id=record.stop_request_id,
                correlation_id=record.correlation_id,
                data=record.data,
            ),
        )
        prev_hash, last_id = record.record_hash, record.pk
        batch.append(record)
        if len(batch) >= 1000:
            AuditRecord.objects.bulk_update(batch, ["data", "prev_hash", "record_hash"])
            batch = []
    if batch:
        AuditRecord.objects.bulk_update(batch, ["data", "prev_hash", "record_hash"])
    AuditChainHead.objects.update_or_create(pk=1, defaults={"last_hash": prev_hash, "last_record_id": last_id})


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE_TRIGGER, params=None)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_TRIGGER, params=None)


class Migration(migrations.Migration):
    dependencies = [("charging_sessions", "0004_roles_stuck_sessions")]

    operations = [
        migrations.RunPython(chain_existing_records, migrations.RunPython.noop),
        migrations.RunPython(create_trigger, drop_trigger),
    ]
