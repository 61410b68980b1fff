"""An attacker with write access to the database, as the security probe found one (issue 13).

Each tamper the probe made pass `verify_audit` on both databases is reproduced here: records cut
off the end of the chain (with the head row moved back), records appended and the whole chain
re-hashed without the key, a forged purge checkpoint that deletes recent records, the table wiped
with its head row. On PostgreSQL, also the session flag that used to unlock deletes, TRUNCATE,
and what the portal's own database role (not the tables' owner) may do.
"""

import hashlib
import json
from datetime import timedelta
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from sessions import services
from sessions.audit import anchors as audit_anchors
from sessions.audit.chain import CHAIN_FIELDS, row_content, unkeyed_chain_hash
from sessions.audit.database import configure_audit_database, grant_statements
from sessions.models import AuditChainHead, AuditCheckpoint, AuditRecord, AuditVerification, LegalHold
from tests.test_audit_chain import TABLE, append, insert_raw, tamper

Event = AuditRecord.EventType
HEAD_TABLE = AuditChainHead._meta.db_table
CHECKPOINT_TABLE = AuditCheckpoint._meta.db_table


def verify_fails() -> AuditVerification:
    with pytest.raises(CommandError, match="BROKEN"):
        call_command("verify_audit")
    verification = AuditVerification.objects.order_by("-pk").first()
    assert not verification.ok
    return verification


def move_head_to(record_id, record_hash):
    tamper(f"UPDATE {HEAD_TABLE} SET last_record_id = %s, last_hash = %s", [record_id, record_hash])


def rows():
    return list(AuditRecord.objects.order_by("id").values_list(*CHAIN_FIELDS))


def hash_without_the_key(row, prev_hash):
    """What an attacker who knows the scheme but not the key can compute: the old plain SHA-256."""
    return unkeyed_chain_hash(prev_hash, row_content(row))


# --- the chain is anchored outside the database ---------------------------------------------------


def test_every_verification_writes_a_signed_anchor_and_logs_it(db, caplog):
    append(3)
    caplog.set_level("INFO", logger="sessions.audit.anchor")
    verification = services.verify_audit_chain()
    anchors = audit_anchors.read_anchors()
    assert anchors.bad_lines == [] and len(anchors.anchors) == 1
    anchor = anchors.newest
    head = AuditChainHead.objects.get()
    # The head after the verification's own record, and every record counted.
    assert (anchor.head_id, anchor.head_hash, anchor.records) == (head.last_record_id, head.last_hash, 4)
    assert anchor.reason == f"verification {verification.pk}"
    assert any("audit chain anchor" in message and str(anchor.head_id) in message for message in caplog.messages)
    line = json.loads(audit_anchors.anchor_path().read_text().splitlines()[0])
    assert set(line) == {"at", "reason", "head_id", "head_hash", "records", "key_id", "sig"}
    assert line["key_id"] == django_settings.AUDIT_CHAIN_KEY_ID and len(line["sig"]) == 64


def test_tail_cut_with_the_head_row_moved_back_is_reported(db):
    """The probe: delete the newest records, point the head row at the last one left."""
    append(5)
    services.verify_audit_chain()  # anchors the head: the verification's own record
    anchored = rows()[-1][0]
    kept = rows()[2]
    tamper(f"DELETE FROM {TABLE} WHERE id > %s", [kept[0]])
    move_head_to(kept[0], kept[9])
    verification = verify_fails()
    assert verification.detail.startswith("deleted") and "cut off the end" in verification.detail
    assert verification.first_broken_id == anchored


def test_records_appended_without_the_key_are_reported(db):
    append(3)
    services.verify_audit_chain()
    last = rows()[-1]
    occurred = timezone.now()
    forged = (
        last[0] + 1,
        Event.SESSION_UPDATED,
        occurred,
        None,
        None,
        None,
        None,
        {"forged": True},
        last[9],
        "",
        "test",
    )
    forged_hash = hash_without_the_key(forged, last[9])
    insert_raw(forged[0], prev_hash=last[9], record_hash=forged_hash, occurred_at=occurred, data='{"forged":true}')
    move_head_to(forged[0], forged_hash)
    verification = verify_fails()
    assert verification.first_broken_id == forged[0] and verification.detail.startswith("edited")


def test_the_whole_chain_re_hashed_without_the_key_is_reported(db):
    """Edit a record, then re-hash it and everything after it, and move the head: all consistent
    with each other, but not keyed."""
    records = append(4)
    services.verify_audit_chain()
    tamper(f"UPDATE {TABLE} SET data = %s WHERE id = %s", ['{"i":99}', records[1].pk])
    prev = ""
    for row in rows():
        record_hash = hash_without_the_key(row, prev)
        tamper(f"UPDATE {TABLE} SET prev_hash = %s, record_hash = %s WHERE id = %s", [prev, record_hash, row[0]])
        prev = record_hash
    move_head_to(rows()[-1][0], prev)
    verification = verify_fails()
    assert verification.first_broken_id == records[0].pk and verification.detail.startswith("edited")


def test_a_forged_purge_checkpoint_over_recent_records_is_reported(db):
    """Delete recent records (younger than the retention period, no AUDIT_PURGED record) and leave
    a checkpoint that makes the rest look like a purged chain."""
    records = append(6)
    services.verify_audit_chain()
    cut = records[2]
    tamper(f"DELETE FROM {TABLE} WHERE id <= %s", [cut.pk])
    now = timezone.now()
    # A signature of the right form, made without the key.
    fake_signature = hashlib.sha256(b"guess").hexdigest()
    tamper(
        f"INSERT INTO {CHECKPOINT_TABLE} (created_at, purged_before, purged_count, last_purged_id, "
        "last_purged_hash, key_id, signature) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        [now, now - timedelta(days=4000), 3, cut.pk, cut.record_hash, "test", fake_signature],
    )
    verification = verify_fails()
    assert verification.detail.startswith("forged checkpoint") and "not signed" in verification.detail
    assert verification.first_broken_id == cut.pk


def test_a_checkpoint_copied_with_a_valid_signature_but_no_purge_record_is_reported(db):
    """The signature is valid (written by the portal's own key, e.g. replayed), but no purge ever
    appended its AUDIT_PURGED record."""
    from sessions.audit.keys import sign
    from sessions.models import checkpoint_payload

    records = append(4)
    cut = records[1]
    before = timezone.now() - timedelta(days=4000)
    key_id, signature = sign(
        checkpoint_payload(
            purged_before=before, purged_count=2, last_purged_id=cut.pk, last_purged_hash=cut.record_hash
        )
    )
    tamper(f"DELETE FROM {TABLE} WHERE id <= %s", [cut.pk])
    tamper(
        f"INSERT INTO {CHECKPOINT_TABLE} (created_at, purged_before, purged_count, last_purged_id, "
        "last_purged_hash, key_id, signature) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        [timezone.now(), before, 2, cut.pk, cut.record_hash, key_id, signature],
    )
    verification = verify_fails()
    assert verification.detail.startswith("forged checkpoint") and "purged' record" in verification.detail


def test_a_wiped_table_with_its_head_row_is_reported(db):
    append(4)
    services.verify_audit_chain()
    anchored = rows()[-1][0]
    tamper(f"DELETE FROM {TABLE}")
    tamper(f"DELETE FROM {HEAD_TABLE}")
    verification = verify_fails()
    # The failed verification's own record starts a new chain; the anchor still knows the old one.
    assert verification.detail.startswith("deleted") and "wiped" in verification.detail
    assert verification.first_broken_id == anchored


def test_an_export_writes_an_anchor_and_its_file_carries_the_head(db, tmp_path):
    append(3)
    head = AuditChainHead.objects.get()
    output = tmp_path / "audit.csv"
    today = timezone.localdate().isoformat()
    call_command("export_audit", "--from", today, "--to", today, "--output", str(output), "--format", "csv")
    text = output.read_text()
    assert f"# audit_chain_head: record {head.last_record_id}, hash {head.last_hash}, 3 records" in text
    anchor = audit_anchors.read_anchors().newest
    assert anchor.reason.startswith("export") and anchor.head_id == head.last_record_id


def test_an_altered_anchor_file_is_reported(db):
    append(2)
    services.verify_audit_chain()
    path = audit_anchors.anchor_path()
    line = json.loads(path.read_text())
    line["head_id"] = 1  # pretend the chain reached less far
    path.write_text(json.dumps(line) + "\n")
    verification = verify_fails()
    assert verification.detail.startswith("anchor store altered") and "line(s) 1" in verification.detail


def test_the_periodic_job_anchors_an_intact_chain_and_reports_a_cut_one(db):
    from sessions.tasks import anchor_audit_chain

    append(3)
    anchor_audit_chain()  # no anchor yet: a full verification, which anchors
    assert AuditVerification.objects.count() == 1 and len(audit_anchors.read_anchors().anchors) == 1
    append(2)
    anchor_audit_chain()  # only the new part is walked; no new verification
    anchors = audit_anchors.read_anchors().anchors
    assert AuditVerification.objects.count() == 1 and len(anchors) == 2
    assert anchors[-1].reason == "periodic" and anchors[-1].head_id == AuditChainHead.objects.get().last_record_id
    cut = rows()[-3]
    tamper(f"DELETE FROM {TABLE} WHERE id > %s", [cut[0]])
    move_head_to(cut[0], cut[9])
    anchor_audit_chain()
    verification = AuditVerification.objects.order_by("-pk").first()
    assert AuditVerification.objects.count() == 2 and not verification.ok
    assert len(audit_anchors.read_anchors().anchors) == 2  # a cut chain is never anchored


def test_a_legitimate_purge_keeps_the_anchors_satisfied(db, settings):
    settings.AUDIT_RETENTION_DAYS = 3650
    long_ago = timezone.now() - timedelta(days=4000)
    with mock.patch("django.utils.timezone.now", return_value=long_ago):
        append(3)
    services.verify_audit_chain()
    append(2)
    call_command("purge_audit", "--commit")
    assert services.verify_audit_chain().ok
    assert AuditCheckpoint.objects.get().signature


# --- the key ---------------------------------------------------------------------------------------


def test_a_rotated_key_keeps_verifying_the_records_it_signed(db, settings):
    append(2)
    settings.AUDIT_CHAIN_RETIRED_KEYS = {settings.AUDIT_CHAIN_KEY_ID: settings.AUDIT_CHAIN_KEY}
    settings.AUDIT_CHAIN_KEY, settings.AUDIT_CHAIN_KEY_ID = "a-new-key-" + "n" * 40, "2027"
    append(2)
    assert list(AuditRecord.objects.order_by("id").values_list("key_id", flat=True)) == ["test", "test", "2027", "2027"]
    assert services.verify_audit_chain().ok
    settings.AUDIT_CHAIN_RETIRED_KEYS = {}  # the old key lost
    verification = verify_fails()
    assert verification.detail.startswith("unknown key") and "'test'" in verification.detail


# --- PostgreSQL: the database refuses, whoever asks -----------------------------------------------

APP_ROLE = "portal_app_test"


@pytest.fixture
def postgres(db):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's own guard (trigger, privileges, purge function)")
    return connection


@pytest.fixture
def app_role(postgres, settings):
    """The portal's own role, as README "Database roles" sets it up: migrate (the owner) grants it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [APP_ROLE])
        if cursor.fetchone() is None:
            cursor.execute(f"CREATE ROLE {APP_ROLE} LOGIN")
    settings.DATABASE_APP_ROLE = APP_ROLE
    configure_audit_database(using="default")
    return APP_ROLE


class acting_as:  # noqa: N801 - reads as a sentence: `with acting_as(role):`
    """Run the block's SQL with the privileges of `role` (SET LOCAL ROLE, inside a savepoint)."""

    def __init__(self, role):
        self.role, self.atomic = role, transaction.atomic()

    def __enter__(self):
        self.atomic.__enter__()
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL ROLE {self.role}")

    def __exit__(self, *exc):
        with connection.cursor() as cursor:
            if exc[0] is None:
                cursor.execute("RESET ROLE")
        return self.atomic.__exit__(*exc)


def refused(sql, params=(), *, role=None, match="append-only|permission denied"):
    with pytest.raises(DatabaseError, match=match):
        if role:
            with acting_as(role), connection.cursor() as cursor:
                cursor.execute(sql, params)
        else:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(sql, params)


def test_the_session_flag_no_longer_unlocks_deletes_for_the_owner(postgres):
    record = append(1)[0]
    for flag in ("SET LOCAL portal.audit_purge = 'on'", "SET portal.audit_purge = 'on'"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(flag)
                cursor.execute(f"DELETE FROM {TABLE} WHERE id = %s", [record.pk])
    refused(f"UPDATE {TABLE} SET data = '{{}}' WHERE id = %s", [record.pk])
    assert AuditRecord.objects.filter(pk=record.pk).exists()


def test_the_app_role_may_not_update_delete_or_truncate_audit_records(app_role):
    record = append(1)[0]
    for sql in (
        f"UPDATE {TABLE} SET data = '{{}}' WHERE id = {record.pk}",
        f"DELETE FROM {TABLE} WHERE id = {record.pk}",
        f"TRUNCATE {TABLE} CASCADE",
        f"INSERT INTO {CHECKPOINT_TABLE} (created_at, purged_before, purged_count, last_purged_id, "
        "last_purged_hash, key_id, signature) VALUES (now(), now(), 1, 1, '', '', '')",
        f"UPDATE {CHECKPOINT_TABLE} SET signature = ''",
        "UPDATE charging_sessions_audit_policy SET retention_days = 0",
        "INSERT INTO charging_sessions_audit_purge_permit VALUES (txid_current(), 999999)",
    ):
        refused(sql, role=app_role)
    # PGOPTIONS-style: the flag set for the whole session, then a delete.
    with pytest.raises(DatabaseError, match="permission denied"), acting_as(app_role):
        with connection.cursor() as cursor:
            cursor.execute("SET portal.audit_purge = 'on'")
            cursor.execute(f"DELETE FROM {TABLE} WHERE id = %s", [record.pk])
    assert AuditRecord.objects.filter(pk=record.pk).exists()


def test_the_app_role_runs_the_portal_and_purges_only_through_the_function(app_role, settings):
    long_ago = timezone.now() - timedelta(days=4000)
    with mock.patch("django.utils.timezone.now", return_value=long_ago):
        old = append(3)
    with acting_as(app_role):
        append(2)  # the portal's writes: records and the head
        plan = services.purge_audit_records(before=timezone.now() - timedelta(days=3700), commit=True)
        assert plan.committed and plan.count == 3 and plan.last_id == old[-1].pk
        # A purge the database's own policy refuses, even when the portal's setting would allow it.
        settings.AUDIT_RETENTION_DAYS = 0
        with pytest.raises(services.PurgeRefused, match="retention policy"):
            services.purge_audit_records(before=timezone.now(), commit=True)
    checkpoint = AuditCheckpoint.objects.get()
    assert checkpoint.purged_count == 3 and checkpoint.signature
    assert services.verify_audit_chain().ok


def test_the_purge_function_applies_legal_holds_itself(app_role):
    """Even a caller that skips the portal's own checks (a release written straight to the table is
    not possible for a hold the function sees) is refused while a hold is active."""
    long_ago = timezone.now() - timedelta(days=4000)
    with mock.patch("django.utils.timezone.now", return_value=long_ago):
        old = append(2)
    LegalHold.objects.create(reason="Case 4711", set_at=timezone.now())
    with pytest.raises(DatabaseError, match="legal hold"), acting_as(app_role), connection.cursor() as cursor:
        cursor.execute(
            "SELECT charging_sessions_purge_audit(%s, %s, %s, %s, %s, %s, %s)",
            [long_ago + timedelta(days=1), 2, old[-1].pk, old[-1].record_hash, "test", "x", None],
        )
    assert AuditRecord.objects.count() == 2


def test_truncate_is_refused_to_the_app_role_and_detected_when_the_owner_does_it(app_role, django_db_blocker):
    append(3)
    services.verify_audit_chain()
    refused(f"TRUNCATE {TABLE} CASCADE", role=app_role)
    assert AuditRecord.objects.count() == 4
    # The owner (who could drop the trigger as well): the anchors outside the database report it.
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"TRUNCATE {TABLE}, {HEAD_TABLE}")
    verification = verify_fails()
    assert verification.detail.startswith("deleted") and "wiped" in verification.detail


def test_grant_statements_give_the_app_role_no_way_to_change_the_trail():
    statements = grant_statements('"portal"', '"public"')
    assert 'REVOKE UPDATE, DELETE, TRUNCATE ON charging_sessions_auditrecord FROM "portal"' in statements
    assert not any("GRANT" in s and "TRUNCATE" in s for s in statements)
