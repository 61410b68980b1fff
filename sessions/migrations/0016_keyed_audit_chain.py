"""A keyed audit chain, signed purge checkpoints, and a PostgreSQL trail no session flag unlocks.

1. Every record names the key that chained it (`key_id`); checkpoints carry a signature.
2. The existing chain is re-chained with HMAC-SHA-256 and the current AUDIT_CHAIN_KEY (from the
   newest purge checkpoint's hash, as verification walks it), its `data` rewritten as canonical
   text, existing checkpoints signed. Run as the tables' owner, the append-only trigger is lifted
   for this only.
3. PostgreSQL: the append-only trigger no longer trusts `portal.audit_purge` (any role could set
   it); a DELETE passes only inside the purge function, which leaves a permit for its own
   transaction in a table only the owner can write. TRUNCATE is refused to every role but the
   owner (the test runner's flush; the owner could drop the trigger anyway, which is why the chain
   is keyed and anchored outside the database). The purge function applies the retention policy
   (a table `migrate` fills from AUDIT_RETENTION_DAYS) and the legal holds itself.
"""

from django.db import migrations, models

from sessions.audit.chain import canonical_bytes, chain_hash

TABLE = "charging_sessions_auditrecord"

POSTGRES_SQL = f"""
CREATE TABLE IF NOT EXISTS charging_sessions_audit_purge_permit (
    txid bigint NOT NULL,
    through_id bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS charging_sessions_audit_policy (
    id integer PRIMARY KEY CHECK (id = 1),
    retention_days integer NOT NULL CHECK (retention_days >= 0)
);
INSERT INTO charging_sessions_audit_policy (id, retention_days) VALUES (1, 3650) ON CONFLICT (id) DO NOTHING;

CREATE OR REPLACE FUNCTION charging_sessions_audit_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (
        SELECT 1 FROM charging_sessions_audit_purge_permit
        WHERE txid = txid_current() AND OLD.id <= through_id
    ) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit records are append-only: % refused on %', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Only the purge function (manage.py purge_audit) deletes audit records.';
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION charging_sessions_audit_no_truncate() RETURNS trigger AS $$
BEGIN
    IF pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'USAGE') THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit records are append-only: TRUNCATE refused on %', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS audit_no_truncate ON {TABLE};
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION charging_sessions_audit_no_truncate();

CREATE OR REPLACE FUNCTION charging_sessions_purge_audit(
    p_before timestamptz, p_count bigint, p_last_id bigint, p_last_hash text,
    p_key_id text, p_signature text, p_actor_id integer
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    v_retention integer;
    v_count bigint;
    v_hash text;
    v_checkpoint bigint;
BEGIN
    -- The chain lock: no append, hold or other purge meanwhile.
    PERFORM 1 FROM charging_sessions_auditchainhead WHERE id = 1 FOR UPDATE;
    IF EXISTS (SELECT 1 FROM charging_sessions_legalhold WHERE released_at IS NULL) THEN
        RAISE EXCEPTION 'a legal hold is active; nothing may be purged' USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT retention_days INTO v_retention FROM charging_sessions_audit_policy WHERE id = 1;
    IF v_retention IS NULL OR p_before > now() - make_interval(days => v_retention) THEN
        RAISE EXCEPTION 'audit records younger than % days are kept (the database''s retention policy)', v_retention
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF EXISTS (SELECT 1 FROM {TABLE} WHERE id <= p_last_id AND occurred_at >= p_before) THEN
        RAISE EXCEPTION 'records up to id % are not all older than %', p_last_id, p_before
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT record_hash INTO v_hash FROM {TABLE} WHERE id = p_last_id;
    SELECT count(*) INTO v_count FROM {TABLE} WHERE id <= p_last_id;
    IF v_hash IS DISTINCT FROM p_last_hash OR v_count <> p_count THEN
        RAISE EXCEPTION 'the purge plan (% records up to id %) does not match the table', p_count, p_last_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO charging_sessions_audit_purge_permit (txid, through_id) VALUES (txid_current(), p_last_id);
    DELETE FROM {TABLE} WHERE id <= p_last_id;
    DELETE FROM charging_sessions_audit_purge_permit WHERE txid = txid_current();
    INSERT INTO charging_sessions_auditcheckpoint
        (created_at, purged_before, purged_count, last_purged_id, last_purged_hash, actor_id, key_id, signature)
        VALUES (now(), p_before, v_count, p_last_id, p_last_hash, p_actor_id, p_key_id, p_signature)
        RETURNING id INTO v_checkpoint;
    RETURN v_checkpoint;
END;
$$;
REVOKE ALL ON FUNCTION charging_sessions_purge_audit(timestamptz, bigint, bigint, text, text, text, integer) FROM PUBLIC;
"""

POSTGRES_REVERSE_SQL = f"""
DROP FUNCTION IF EXISTS charging_sessions_purge_audit(timestamptz, bigint, bigint, text, text, text, integer);
DROP TRIGGER IF EXISTS audit_no_truncate ON {TABLE};
DROP FUNCTION IF EXISTS charging_sessions_audit_no_truncate();
DROP TABLE IF EXISTS charging_sessions_audit_purge_permit;
DROP TABLE IF EXISTS charging_sessions_audit_policy;
"""


def rechain_with_key(apps, schema_editor):
    from sessions.audit.keys import current_key, sign
    from sessions.models import checkpoint_payload

    AuditRecord = apps.get_model("charging_sessions", "AuditRecord")
    AuditChainHead = apps.get_model("charging_sessions", "AuditChainHead")
    AuditCheckpoint = apps.get_model("charging_sessions", "AuditCheckpoint")
    connection = schema_editor.connection
    key_id, key = current_key()
    postgres = connection.vendor == "postgresql"
    if postgres:
        schema_editor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER audit_append_only")
    checkpoint = AuditCheckpoint.objects.order_by("-last_purged_id").first()
    prev_hash = checkpoint.last_purged_hash if checkpoint else ""
    last_id, batch = None, []
    records = AuditRecord.objects.order_by("id")
    if checkpoint is not None:
        records = records.filter(id__gt=checkpoint.last_purged_id)
    for record in records.iterator(chunk_size=2000):
        record.prev_hash, record.key_id = prev_hash, key_id
        record.record_hash = prev_hash = chain_hash(prev_hash, canonical_bytes(
            event_type=record.event_type,
            occurred_at=record.occurred_at,
            actor_id=record.actor_id,
            charging_session_id=record.charging_session_id,
            stop_request_id=record.stop_request_id,
            correlation_id=record.correlation_id,
            data=record.data,
        ), key)
        last_id = record.pk
        batch.append(record)
        if len(batch) >= 1000:
            AuditRecord.objects.bulk_update(batch, ["data", "prev_hash", "record_hash", "key_id"])
            batch = []
    if batch:
        AuditRecord.objects.bulk_update(batch, ["data", "prev_hash", "record_hash", "key_id"])
    if postgres:
        schema_editor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER audit_append_only")
    if last_id is not None or checkpoint is not None:
        AuditChainHead.objects.update_or_create(pk=1, defaults={"last_hash": prev_hash, "last_record_id": last_id})
    for each in AuditCheckpoint.objects.all():
        each.key_id, each.signature = sign(checkpoint_payload(
            purged_before=each.purged_before, purged_count=each.purged_count,
            last_purged_id=each.last_purged_id, last_purged_hash=each.last_purged_hash))
        each.save(update_fields=["key_id", "signature"])


def create_database_guard(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_SQL, params=None)


def drop_database_guard(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_REVERSE_SQL, params=None)


class Migration(migrations.Migration):
    dependencies = [("charging_sessions", "0013_export_and_verify")]

    operations = [
        migrations.AddField(
            model_name="auditrecord",
            name="key_id",
            field=models.CharField(blank=True, max_length=16),
        ),
        migrations.AddField(
            model_name="auditcheckpoint",
            name="key_id",
            field=models.CharField(blank=True, max_length=16),
        ),
        migrations.AddField(
            model_name="auditcheckpoint",
            name="signature",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.RunPython(rechain_with_key, migrations.RunPython.noop),
        migrations.RunPython(create_database_guard, drop_database_guard),
    ]
