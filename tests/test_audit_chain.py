"""The tamper-evident audit trail: the hash chain, its verification, retention, legal holds."""

import importlib
from datetime import timedelta
from types import SimpleNamespace
from unittest import mock

import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from sessions import services
from sessions.audit.append_sql import insert_sql
from sessions.audit.chain import CHAIN_FIELDS, canonical_bytes, canonical_parts, row_hash, time_bytes
from sessions.audit.database import configure_audit_database
from sessions.audit.keys import all_keys
from sessions.audit.records import AuditEntry, record_audits
from sessions.models import (
    AuditChainHead,
    AuditCheckpoint,
    AuditRecord,
    AuditVerification,
    LegalHold,
)
from tests.factories import RemoteStopRequestFactory, UserFactory

Event = AuditRecord.EventType
TABLE = AuditRecord._meta.db_table


def append(n, *, stop=None, **data):
    """n audit records through the one write path, each in its own transaction like real changes."""
    records = []
    for i in range(n):
        with transaction.atomic():
            records.append(
                services.record_audit(event_type=Event.SESSION_UPDATED, stop_request=stop, data={"i": i, **data})
            )
    return records


def tamper(sql, params=()):
    """Change the table behind the portal's back (PostgreSQL's trigger is lifted for the test only)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The test's transaction has deferred foreign-key checks pending on the table, and
            # ALTER TABLE refuses to run while they are ("pending trigger events"): run them now.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER audit_append_only")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER audit_append_only")


def leave_id_gap(size=10):
    """Skip ids the way a rolled-back insert does on PostgreSQL, so a forged row can be put in between."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{TABLE}', 'id'), (SELECT MAX(id) FROM {TABLE}) + %s)", [size]
            )
        else:
            cursor.execute("UPDATE sqlite_sequence SET seq = seq + %s WHERE name = %s", [size, TABLE])


def insert_raw(record_id, *, prev_hash, record_hash, occurred_at, data='{"forged": true}', key_id="test"):
    tamper(
        f"INSERT INTO {TABLE} (id, event_type, occurred_at, data, prev_hash, record_hash, key_id) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        [record_id, Event.SESSION_UPDATED, occurred_at, data, prev_hash, record_hash, key_id],
    )
    if connection.vendor == "postgresql":
        # An explicit id does not move PostgreSQL's sequence (SQLite's rowid follows MAX(id)):
        # move it, or the portal's next record would collide with the forged one.
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{TABLE}', 'id'), "
                f"GREATEST((SELECT MAX(id) FROM {TABLE}), nextval(pg_get_serial_sequence('{TABLE}', 'id'))))"
            )


# --- the chain ------------------------------------------------------------------------------------


def test_each_record_carries_the_hash_of_the_one_before(db):
    stop = RemoteStopRequestFactory()
    records = append(3, stop=stop, note="ünïcode ✓", nested={"b": 1, "a": [1, 2]})
    rows = list(AuditRecord.objects.order_by("id").values_list(*CHAIN_FIELDS))
    assert rows[0][8] == ""
    for previous, row in zip(rows, rows[1:], strict=False):  # each record with the one before it
        assert row[8] == previous[9]
    assert all(row_hash(row, all_keys()) == row[9] for row in rows)
    head = AuditChainHead.objects.get()
    assert (head.last_record_id, head.last_hash) == (records[-1].pk, records[-1].record_hash)
    assert records[0].correlation_id == stop.correlation_id


def test_record_audit_costs_one_lock_one_insert_one_update(db):
    """Under the chain's lock: read the head, INSERT, move the head (on PostgreSQL the INSERT and the
    head's move are one statement, a round trip fewer while every other appender waits)."""
    append(1)
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        services.record_audit(event_type=Event.SESSION_UPDATED, data={"x": 1})
    sql = [q["sql"] for q in queries.captured_queries]
    assert "charging_sessions_auditchainhead" in sql[0]
    if connection.vendor == "postgresql":
        assert len(sql) == 2, sql
        assert sql[1].startswith("WITH appended AS (INSERT") and "UPDATE" in sql[1] and "auditchainhead" in sql[1]
    else:
        assert len(sql) == 3, sql
        assert sql[1].startswith("INSERT")
        assert sql[2].startswith("UPDATE") and "auditchainhead" in sql[2]
    assert not any('FROM "charging_sessions_auditrecord"' in s for s in sql)  # never reads the newest record
    head = AuditChainHead.objects.get()
    record = AuditRecord.objects.get(pk=head.last_record_id)
    assert (record.event_type, record.data, head.last_hash) == (Event.SESSION_UPDATED, {"x": 1}, record.record_hash)


def test_a_large_append_is_split_into_inserts_and_still_chains(db, monkeypatch):
    """An append larger than a statement's parameters allow (the bench loader appends 5,000) is
    INSERTed in parts, in order, under the one lock."""
    monkeypatch.setattr(connection.features, "max_query_params", 36)  # three records per INSERT
    with CaptureQueriesContext(connection) as queries:
        records = record_audits([AuditEntry(Event.SESSION_UPDATED, data={"i": i}) for i in range(8)])
    inserts = [q["sql"] for q in queries.captured_queries if "INSERT INTO" in q["sql"]]
    assert len(inserts) == 3
    assert [r.pk for r in records] == sorted(r.pk for r in records)
    assert [r.data["i"] for r in AuditRecord.objects.order_by("id")] == list(range(8))
    head = AuditChainHead.objects.get()
    assert (head.last_record_id, head.last_hash) == (records[-1].pk, records[-1].record_hash)
    assert services.verify_audit_chain().ok


def test_a_large_append_is_one_short_statement_and_every_value_comes_back(db):
    """The appliers append a few hundred records at once under the chain's lock. On PostgreSQL they
    travel as one JSON parameter: the statement and its parameters do not grow with the records
    (psycopg parses a long statement's placeholders in Python on every call), and every value comes
    back as written: quotes, backslashes, NUL escapes, other scripts, NULL columns, times, UUIDs."""
    stop = RemoteStopRequestFactory()
    user = UserFactory()
    awkward = {"q": 'it\'s "quoted" \\ back\\slash', "nul": "a\x00b", "script": "Straße ✓ 東京", "n": [1, None]}
    entries = [
        AuditEntry(
            Event.SESSION_UPDATED,
            actor=user if i % 2 else None,
            stop_request=stop if i % 3 else None,
            data={**awkward, "i": i},
        )
        for i in range(300)
    ]
    with CaptureQueriesContext(connection) as queries:
        records = record_audits(entries)
    inserts = [q["sql"] for q in queries.captured_queries if "INSERT INTO" in q["sql"]]
    if connection.vendor == "postgresql":
        assert len(inserts) == 1 and "json_to_recordset" in inserts[0]
        statement = insert_sql("postgresql", len(entries))
        assert statement == insert_sql("postgresql", 1) and statement.count("%s") == 3  # rows, head hash, head
    stored = {row.pk: row for row in AuditRecord.objects.filter(pk__in=[r.pk for r in records])}
    assert [r.pk for r in records] == sorted(stored)
    for record in records:
        row = stored[record.pk]
        assert (row.data, row.actor_id, row.stop_request_id, row.correlation_id) == (
            record.data,
            record.actor_id,
            record.stop_request_id,
            record.correlation_id,
        )
        assert (row.occurred_at, row.prev_hash, row.record_hash, row.key_id) == (
            record.occurred_at,
            record.prev_hash,
            record.record_hash,
            record.key_id,
        )
    assert [row.data["i"] for row in AuditRecord.objects.order_by("id")] == list(range(300))
    assert services.verify_audit_chain().ok


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"note": "ünïcode ✓", "nested": {"b": 1, "a": [1, 2]}},
        # The time slot's own text inside the data and the event type: the slot is the last one.
        {"x": "\x00occurred_at\x00", "occurred_at": "\x00occurred_at\x00"},
    ],
)
def test_the_content_without_its_time_is_the_content_with_it(data):
    """record_audits builds each record's canonical bytes before it locks the chain, around a slot
    for the time it only knows under the lock: the two must be byte for byte canonical_bytes."""
    moment = timezone.now()
    fields = {
        "event_type": "\x00occurred_at\x00",
        "actor_id": 7,
        "charging_session_id": None,
        "stop_request_id": 12,
        "correlation_id": "0b8f6c1e-0000-4000-8000-000000000001",
        "data": data,
    }
    before, after = canonical_parts(**fields)
    assert before + time_bytes(moment) + after == canonical_bytes(occurred_at=moment, **fields)


def test_the_records_are_put_together_before_the_chain_is_locked(db, monkeypatch):
    """Under the chain's lock only the time and the hashes are left: every other audited change (an
    agent's stop among them) waits while an append holds it. Nothing builds content or column
    values between the head's read and the INSERT."""
    from sessions.audit import records as audit_records

    append(1)
    steps = []
    for module, name in ((audit_records, "canonical_parts"), (audit_records, "row_values")):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _o=original, _n=name, **k: steps.append(_n) or _o(*a, **k))
    locked = audit_records._locked_head_hash
    monkeypatch.setattr(audit_records, "_locked_head_hash", lambda cursor: steps.append("lock") or locked(cursor))
    with transaction.atomic():
        record_audits([AuditEntry(Event.SESSION_UPDATED, data={"i": i}) for i in range(3)])
    assert steps == ["row_values", "canonical_parts"] * 3 + ["lock"]
    assert services.verify_audit_chain().ok


def test_the_head_is_created_lazily_after_a_flush(db):
    first = append(2)
    AuditChainHead.objects.all().delete()
    third = append(1)[0]
    assert third.prev_hash == first[-1].record_hash
    assert services.verify_audit_chain().ok


def test_the_migrations_chain_records_written_before_them(db):
    for i in range(3):
        AuditRecord.objects.create(event_type=Event.SESSION_CREATED, occurred_at=timezone.now(), data={"i": (i,)})
    AuditChainHead.objects.all().delete()
    migration = importlib.import_module("sessions.migrations.0005_audit_chain")
    keyed = importlib.import_module("sessions.migrations.0016_keyed_audit_chain")
    # In the migration the records are chained before the append-only trigger exists (PostgreSQL);
    # here the trigger is already there, so lift it the way the migration's order does.
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER audit_append_only")
        migration.chain_existing_records(apps, None)
        if connection.vendor == "postgresql":
            cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER audit_append_only")
    assert not services.verify_audit_chain().ok  # 0005's chain is not keyed: 0016 re-chains it
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        editor = SimpleNamespace(connection=connection, execute=lambda sql, params=None: cursor.execute(sql))
        keyed.rechain_with_key(apps, editor)
    assert services.verify_audit_chain().ok
    assert AuditRecord.objects.order_by("id").first().data == {"i": [0]}


# --- verification ---------------------------------------------------------------------------------


def test_intact_chain_verifies_and_leaves_a_record(db):
    append(5)
    call_command("verify_audit")
    verification = AuditVerification.objects.get()
    assert verification.ok and verification.records_checked == 5 and verification.first_broken_id is None
    record = AuditRecord.objects.filter(event_type=Event.AUDIT_VERIFIED).get()
    assert record.data["ok"] is True and record.data["verification_id"] == verification.pk
    # The verification record is itself chained: the next run checks it too.
    assert services.verify_audit_chain().records_checked == 6


def _broken(capsys=None):
    with pytest.raises(CommandError) as failure:
        call_command("verify_audit")
    verification = AuditVerification.objects.order_by("-pk").first()
    assert not verification.ok
    assert AuditRecord.objects.filter(event_type=Event.AUDIT_VERIFIED, data__ok=False).exists()
    return verification, str(failure.value)


def test_an_edited_record_is_caught(db):
    records = append(5)
    tamper(f"UPDATE {TABLE} SET data = %s WHERE id = %s", ['{"i": 99}', records[2].pk])
    verification, message = _broken()
    assert verification.first_broken_id == records[2].pk
    assert verification.detail.startswith("edited") and str(records[2].pk) in message
    assert verification.records_checked == 2


def test_an_edited_and_rehashed_record_is_caught_at_the_next_link(db):
    records = append(4)
    row = list(AuditRecord.objects.filter(pk=records[1].pk).values_list(*CHAIN_FIELDS).get())
    row[7] = {"i": 42}
    tamper(
        f"UPDATE {TABLE} SET data = %s, record_hash = %s WHERE id = %s",
        ['{"i": 42}', row_hash(tuple(row), all_keys()), records[1].pk],
    )
    verification, _ = _broken()
    assert verification.first_broken_id == records[2].pk


def test_a_deleted_record_is_caught(db):
    records = append(5)
    tamper(f"DELETE FROM {TABLE} WHERE id = %s", [records[2].pk])
    verification, _ = _broken()
    assert verification.first_broken_id == records[3].pk
    assert verification.detail.startswith("deleted")


def test_deleting_the_newest_records_is_caught_by_the_head(db):
    records = append(4)
    tamper(f"DELETE FROM {TABLE} WHERE id >= %s", [records[2].pk])
    verification, _ = _broken()
    assert verification.detail.startswith("deleted") and verification.first_broken_id == records[3].pk


def test_an_inserted_record_is_caught_even_with_a_valid_looking_hash(db):
    before = append(2)
    leave_id_gap()
    after = append(2)
    forged_id = before[-1].pk + 3
    occurred = timezone.now()
    # A forger who knows the scheme computes a proper hash linking to the record before...
    row = (
        forged_id,
        Event.SESSION_UPDATED,
        occurred,
        None,
        None,
        None,
        None,
        {"forged": True},
        before[-1].record_hash,
        "",
        "test",
    )
    insert_raw(forged_id, prev_hash=before[-1].record_hash, record_hash=row_hash(row, all_keys()), occurred_at=occurred)
    verification, _ = _broken()
    # ...but the record after it still links past it.
    assert verification.first_broken_id == forged_id and verification.detail.startswith("inserted")
    assert str(after[0].pk) in verification.detail


def test_a_record_appended_outside_the_service_is_caught(db):
    records = append(2)
    insert_raw(records[-1].pk + 1, prev_hash=records[-1].record_hash, record_hash="", occurred_at=timezone.now())
    verification, _ = _broken()
    assert verification.first_broken_id == records[-1].pk + 1 and verification.detail.startswith("inserted")


def test_verification_is_a_streamed_walk_with_a_constant_number_of_queries(db):
    append(3)
    services.verify_audit_chain()  # from now on each run also checks the previous run's newest record
    with CaptureQueriesContext(connection) as small:
        services.verify_audit_chain()
    append(40)
    with CaptureQueriesContext(connection) as large:
        services.verify_audit_chain()
    assert len(large) == len(small)


def test_supervisor_sees_the_last_verification(client, db):
    from sessions import roles

    append(2)
    services.verify_audit_chain()
    client.force_login(UserFactory(username="sup", role=roles.SUPERVISOR))
    for name in ("charging_sessions:audit-export", "charging_sessions:stop-history"):
        content = client.get(reverse(name)).content.decode()
        assert "Audit trail intact" in content and "last verified" in content
    tamper(f"UPDATE {TABLE} SET data = %s WHERE id = (SELECT MIN(id) FROM {TABLE})", ['{"x": 1}'])
    services.verify_audit_chain()
    assert "BROKEN at record" in client.get(reverse("charging_sessions:audit-export")).content.decode()


# --- retention and legal holds -------------------------------------------------------------------


def _old_and_new(old=4, new=3, age_days=4000):
    long_ago = timezone.now() - timedelta(days=age_days)
    with mock.patch("django.utils.timezone.now", return_value=long_ago):
        old_records = append(old)
    return old_records, append(new)


def test_purge_is_a_dry_run_unless_committed(db, capsys):
    _old_and_new()
    call_command("purge_audit")  # default: today minus AUDIT_RETENTION_DAYS
    assert "DRY RUN: 4 audit records" in capsys.readouterr().out
    assert AuditRecord.objects.count() == 7 and not AuditCheckpoint.objects.exists()


def test_purge_commits_leaves_a_checkpoint_and_the_rest_still_verifies(db, capsys):
    old, new = _old_and_new()
    call_command("purge_audit", "--commit")
    assert "Purged 4 audit records" in capsys.readouterr().out
    remaining = list(AuditRecord.objects.order_by("id").values_list("id", flat=True))
    assert remaining[:3] == [r.pk for r in new]
    checkpoint = AuditCheckpoint.objects.get()
    assert (checkpoint.last_purged_id, checkpoint.last_purged_hash, checkpoint.purged_count) == (
        old[-1].pk,
        old[-1].record_hash,
        4,
    )
    purged = AuditRecord.objects.get(event_type=Event.AUDIT_PURGED)
    assert purged.data["count"] == 4 and purged.data["last_id"] == old[-1].pk
    call_command("verify_audit")
    assert AuditVerification.objects.get().ok
    # Tampering after a purge is still caught.
    tamper(f"DELETE FROM {TABLE} WHERE id = %s", [new[0].pk])
    _broken()


def test_purge_refuses_records_younger_than_the_retention_period(db):
    append(2)
    with pytest.raises(CommandError, match="AUDIT_RETENTION_DAYS"):
        call_command("purge_audit", "--before", timezone.localdate().isoformat(), "--commit")
    assert AuditRecord.objects.count() == 2


def test_purge_is_refused_while_a_legal_hold_is_active(db, settings):
    settings.AUDIT_RETENTION_DAYS = 0
    configure_audit_database()  # what migrate does with the setting: PostgreSQL's purge policy follows it
    _old_and_new()
    supervisor = UserFactory(username="legal")
    hold = services.set_legal_hold(reason="Case 4711: court order", acting_user=supervisor)
    for args in ([], ["--commit"]):
        with pytest.raises(CommandError, match=f"Legal hold #{hold.pk} is active"):
            call_command("purge_audit", *args)
    assert not AuditCheckpoint.objects.exists()
    services.release_legal_hold(hold_id=hold.pk, acting_user=supervisor)
    call_command("purge_audit", "--commit")
    assert AuditCheckpoint.objects.exists()
    changes = AuditRecord.objects.filter(event_type=Event.LEGAL_HOLD_CHANGED).order_by("id")
    assert [c.data["action"] for c in changes] == ["set", "released"]
    assert services.verify_audit_chain().ok


def test_bad_purge_date_is_refused(db):
    with pytest.raises(CommandError, match="not a date"):
        call_command("purge_audit", "--before", "yesterday")


# --- legal holds in the admin: superusers only, through the service ------------------------------


@pytest.fixture
def superuser_client(client, db):
    root = UserFactory(username="root")
    root.is_superuser = root.is_staff = True
    root.save()
    client.force_login(root)
    return client


def test_superuser_sets_and_releases_a_legal_hold_in_the_admin(superuser_client):
    response = superuser_client.post(reverse("admin:charging_sessions_legalhold_add"), {"reason": "Regulator inquiry"})
    assert response.status_code == 302
    hold = LegalHold.objects.get()
    assert hold.set_by.username == "root" and hold.released_at is None
    record = AuditRecord.objects.get(event_type=Event.LEGAL_HOLD_CHANGED)
    assert record.data == {"action": "set", "hold_id": hold.pk, "reason": "Regulator inquiry"}
    assert superuser_client.get(reverse("admin:charging_sessions_legalhold_change", args=[hold.pk])).status_code == 200
    superuser_client.post(
        reverse("admin:charging_sessions_legalhold_changelist"),
        {"action": "release_legal_holds", "_selected_action": [hold.pk]},
    )
    hold.refresh_from_db()
    assert hold.released_at is not None and hold.released_by.username == "root"
    assert AuditRecord.objects.filter(event_type=Event.LEGAL_HOLD_CHANGED).count() == 2
    # No edit, no delete, even for superusers.
    assert superuser_client.get(reverse("admin:charging_sessions_legalhold_delete", args=[hold.pk])).status_code == 403


def test_staff_without_superuser_cannot_set_or_release_holds(client, db):
    from sessions import roles

    supervisor = UserFactory(username="sup-staff", role=roles.SUPERVISOR)
    supervisor.is_staff = True
    supervisor.save()
    client.force_login(supervisor)
    hold = services.set_legal_hold(reason="x", acting_user=None)
    assert client.get(reverse("admin:charging_sessions_legalhold_changelist")).status_code == 200
    assert client.post(reverse("admin:charging_sessions_legalhold_add"), {"reason": "y"}).status_code == 403
    client.post(
        reverse("admin:charging_sessions_legalhold_changelist"),
        {"action": "release_legal_holds", "_selected_action": [hold.pk]},
    )
    hold.refresh_from_db()
    assert hold.released_at is None and LegalHold.objects.count() == 1
