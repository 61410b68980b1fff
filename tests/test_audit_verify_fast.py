"""The audit chain's fast verification: canonical content put together from the stored values, the
exact check only where that text does not give the record's hash (records stored before data was
canonical, values in another form)."""

import json
from datetime import UTC, datetime
from unittest import mock

import pytest
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor

from sessions import services
from sessions.audit import walk as audit_verify
from sessions.audit.chain import (
    CHAIN_FIELDS,
    canonical_bytes,
    content_matches,
    row_hash,
    unkeyed_chain_hash,
    walk_chain,
)
from sessions.audit.keys import all_keys
from sessions.canonical import canonical_json
from sessions.models import AuditChainHead, AuditRecord
from tests.factories import RemoteStopRequestFactory, UserFactory
from tests.test_audit_chain import TABLE, append, insert_raw, leave_id_gap, tamper

Event = AuditRecord.EventType

ODD_DATA = {
    "note": "ünïcode ✓ 日本 \u2028 emoji 🚗",
    "nested": {"b": [1, 2.5, None, True], "a": {"z": "", "y": -0.0}},
    "control": "nul \x00 bell \x07 tab \t newline \n",
    "quote": 'say "hi" \\ back',
    "keys with spaces": 1e-7,
    "big": 2**70,
}


@pytest.fixture
def exact_checks():
    """Counts the rows that needed the exact (parse and re-serialise) check."""
    with mock.patch.object(audit_verify, "content_matches", side_effect=content_matches) as spy:
        yield spy


def _reference(start_hash=""):
    """What walk_chain says over the ORM's rows (the exact path, every row)."""
    return walk_chain(
        list(AuditRecord.objects.order_by("id").values_list(*CHAIN_FIELDS)), keys=all_keys(), start_hash=start_hash
    )


def _outcome(walk):
    return (walk.ok, walk.checked, walk.last_id, walk.last_hash, walk.broken_id, walk.detail)


def _assert_same_as_reference():
    expected = _outcome(_reference())
    for size in (1, 2, 3, 5000):
        with mock.patch.dict(audit_verify.PAGE_SIZE, {connection.vendor: size}):
            assert _outcome(audit_verify.walk_chain_fast()) == expected, size
    return expected


def test_records_written_by_the_service_verify_without_the_exact_check(db, exact_checks):
    user = UserFactory()
    stop = RemoteStopRequestFactory()
    with transaction.atomic():
        services.record_audit(event_type=Event.STOP_REQUESTED, actor=user, stop_request=stop, data=ODD_DATA)
    with transaction.atomic():
        services.record_audit(event_type=Event.SESSION_UPDATED, data={})  # every foreign key null
    whole_second = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)  # SQLite stores no fraction for it
    with mock.patch("django.utils.timezone.now", return_value=whole_second), transaction.atomic():
        services.record_audit(
            event_type=Event.SESSION_UPDATED, charging_session=stop.charging_session, data={"t": ODD_DATA["control"]}
        )
    with transaction.atomic():
        services.record_audit(event_type=Event.SESSION_UPDATED, data={"list": [{"b": 1, "a": 2}]})

    verification = services.verify_audit_chain()
    assert verification.ok and verification.records_checked == 4, verification.detail
    assert exact_checks.call_count == 0
    # ...and the verification's own record is fast too.
    assert services.verify_audit_chain().records_checked == 5 and exact_checks.call_count == 0


def test_data_is_stored_as_the_canonical_text_and_reads_back_as_a_dict(db):
    record = append(1, **ODD_DATA)[0]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT data FROM {TABLE} WHERE id = %s", [record.pk])
        stored = cursor.fetchone()[0]
    expected = {"i": 0, **json.loads(json.dumps(ODD_DATA))}
    assert stored == canonical_json(expected)
    assert f'"data":{stored},'.encode() in canonical_bytes(
        event_type="X",
        occurred_at=record.occurred_at,
        actor_id=None,
        charging_session_id=None,
        stop_request_id=None,
        correlation_id=None,
        data=expected,
    )
    assert AuditRecord.objects.values_list("data", flat=True).get(pk=record.pk) == expected
    assert AuditRecord.objects.get(pk=record.pk).data == expected
    # Key lookups still work (the text is read as JSON in SQL).
    assert AuditRecord.objects.filter(data__nested__b__1=2.5).values_list("data__i", flat=True).get() == 0


def test_records_stored_before_data_was_canonical_still_verify_the_exact_way(db, exact_checks):
    records = append(6, nested={"b": 1, "a": [1, 2]})
    # Their text as jsonb or Django's JSONField wrote it: spaces, keys not sorted.
    for record in records[1:4]:
        tamper(
            f"UPDATE {TABLE} SET data = %s WHERE id = %s",
            [json.dumps({"nested": {"b": 1, "a": [1, 2]}, "i": record.data["i"]}), record.pk],
        )
    assert _assert_same_as_reference()[0]
    exact_checks.reset_mock()
    verification = services.verify_audit_chain()
    assert verification.ok and verification.records_checked == 6
    assert exact_checks.call_count == 3


def test_breaks_are_classified_as_the_exact_walk_does_whatever_the_page_size(db):
    records = append(7)
    tamper(f"DELETE FROM {TABLE} WHERE id = %s", [records[3].pk])
    ok, _, _, _, broken_id, detail = _assert_same_as_reference()
    assert not ok and broken_id == records[4].pk and detail.startswith("deleted")


def test_an_edited_record_among_old_style_ones_is_classified_the_same(db):
    records = append(7)
    tamper(f"UPDATE {TABLE} SET data = %s WHERE id = %s", ['{"i": 1}', records[1].pk])  # old style, genuine
    tamper(f"UPDATE {TABLE} SET data = %s WHERE id = %s", ['{"i":99}', records[4].pk])  # edited
    ok, checked, _, _, broken_id, detail = _assert_same_as_reference()
    assert not ok and broken_id == records[4].pk and checked == 4 and detail.startswith("edited")


def test_a_forged_record_between_pages_is_classified_the_same(db):
    before = append(3)
    leave_id_gap()
    after = append(3)
    forged_id = before[-1].pk + 3
    occurred = datetime(2025, 1, 1, tzinfo=UTC)
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
    insert_raw(
        forged_id,
        prev_hash=before[-1].record_hash,
        record_hash=row_hash(row, all_keys()),
        occurred_at=occurred,
        data='{"forged":true}',
    )
    ok, _, _, _, broken_id, detail = _assert_same_as_reference()
    assert not ok and broken_id == forged_id and detail.startswith("inserted") and str(after[0].pk) in detail


def test_a_record_without_hash_is_classified_the_same(db):
    records = append(4)
    insert_raw(
        records[-1].pk + 1,
        prev_hash=records[-1].record_hash,
        record_hash="",
        occurred_at=datetime(2025, 1, 1, tzinfo=UTC),
    )
    ok, _, _, _, broken_id, detail = _assert_same_as_reference()
    assert not ok and broken_id == records[-1].pk + 1 and detail.startswith("inserted")


def test_moving_text_between_data_and_the_event_type_does_not_keep_the_hash(db):
    # The SQL text of this record, with data '{"a":1' and this event type, is byte for byte the
    # canonical text the hash was computed from; it must not be taken for it.
    with transaction.atomic():
        record = services.record_audit(event_type=Event.AUDIT_PURGED, data={"a": 1, "event_type": "X"})
    tamper(
        f"UPDATE {TABLE} SET data = %s, event_type = %s WHERE id = %s",
        ['{"a":1', 'X"},"event_type":"AUDIT_PURGED', record.pk],
    )
    walk = audit_verify.walk_chain_fast()
    assert not walk.ok and walk.broken_id == record.pk and walk.detail.startswith("edited")
    assert _outcome(walk) == _outcome(_reference())


def test_an_event_type_the_sql_does_not_render_canonically_still_verifies(db, exact_checks):
    with transaction.atomic():
        services.record_audit(event_type='ODD "TYPE" \\', data={"x": 1})
    verification = services.verify_audit_chain()
    assert verification.ok and verification.records_checked == 1
    assert exact_checks.call_count == 1


def test_data_that_is_not_json_is_an_edit_not_a_crash(db):
    records = append(3)
    tamper(f"UPDATE {TABLE} SET data = %s WHERE id = %s", ["not json", records[1].pk])
    walk = audit_verify.walk_chain_fast()
    assert not walk.ok and walk.broken_id == records[1].pk and walk.detail.startswith("edited")


@pytest.mark.django_db(transaction=True)
def test_records_written_before_the_migration_verify_after_it():
    """Records chained before 0007 (JSON column) and 0016 (plain SHA-256) verify after them: 0016
    re-chains them with the key."""
    before = ("charging_sessions", "0006_stop_state_session_idx")
    executor = MigrationExecutor(connection)
    executor.migrate([before])
    try:
        old_apps = executor.loader.project_state([before]).apps
        OldRecord = old_apps.get_model("charging_sessions", "AuditRecord")
        prev = ""
        for i, data in enumerate([{"b": 1, "a": "ü"}, {}, {"nested": {"z": [1, {"y": None}], "c": 2}}]):
            occurred = datetime(2025, 1, 1, 0, 0, i, 1000 * i, tzinfo=UTC)
            record_hash = unkeyed_chain_hash(
                prev,
                canonical_bytes(
                    event_type=Event.SESSION_UPDATED,
                    occurred_at=occurred,
                    actor_id=None,
                    charging_session_id=None,
                    stop_request_id=None,
                    correlation_id=None,
                    data=data,
                ),
            )
            last = OldRecord.objects.create(
                event_type=Event.SESSION_UPDATED,
                occurred_at=occurred,
                data=data,
                prev_hash=prev,
                record_hash=record_hash,
            )
            prev = record_hash
        old_apps.get_model("charging_sessions", "AuditChainHead").objects.update_or_create(
            pk=1, defaults={"last_hash": prev, "last_record_id": last.pk}
        )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    verification = services.verify_audit_chain()
    assert verification.ok and verification.records_checked == 3, verification.detail
    assert AuditRecord.objects.order_by("id").values_list("data", flat=True)[2] == {
        "nested": {"z": [1, {"y": None}], "c": 2}
    }
    assert AuditChainHead.objects.get().last_record_id != last.pk  # the verification appended its own record


def test_a_value_of_another_type_in_sqlite_is_an_edit(db):
    if connection.vendor != "sqlite":
        pytest.skip("only SQLite keeps text in an integer column")
    records = append(3)
    tamper(f"UPDATE {TABLE} SET actor_id = %s WHERE id = %s", ['1,"charging_session_id":null', records[1].pk])
    walk = audit_verify.walk_chain_fast()
    assert not walk.ok and walk.broken_id == records[1].pk and walk.detail.startswith("edited")
    assert _outcome(walk) == _outcome(_reference())
    tamper(f"UPDATE {TABLE} SET actor_id = NULL WHERE id = %s", [records[1].pk])  # the teardown checks foreign keys


def test_another_database_gets_the_exact_walk(db):
    records = append(3)
    tamper(f"UPDATE {TABLE} SET data = %s WHERE id = %s", ['{"i":99}', records[1].pk])
    with mock.patch.dict(audit_verify.PAGE_SIZE, clear=True):
        assert _outcome(audit_verify.walk_chain_fast()) == _outcome(_reference())
