"""update_rows: each row gets its own values, NULLs and foreign keys included, in one statement on PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sessions.models import ChargingSession
from sessions.row_updates import update_rows
from tests.factories import ChargingSessionFactory


@pytest.mark.django_db
def test_each_row_gets_its_own_values_and_nothing_else_changes():
    first, second, untouched = ChargingSessionFactory.create_batch(3, energy_kwh=Decimal("1.5"))
    first.energy_kwh, first.last_error_info = None, "it's a 'quoted' text"
    second.energy_kwh, second.last_error_info = Decimal("7.125"), ""
    second.cpo_partner_session_id = "changed but not written"
    with CaptureQueriesContext(connection) as queries:
        update_rows(ChargingSession, [first, second], ["energy_kwh", "last_error_info"])
    if connection.vendor == "postgresql":
        assert len(queries) == 1
    rows = {row.pk: row for row in ChargingSession.objects.all()}
    assert rows[first.pk].energy_kwh is None and rows[first.pk].last_error_info == "it's a 'quoted' text"
    assert (
        rows[second.pk].energy_kwh == Decimal("7.125")
        and rows[second.pk].cpo_partner_session_id != "changed but not written"
    )
    assert rows[untouched.pk].energy_kwh == Decimal("1.5")


@pytest.mark.django_db
def test_a_column_of_nulls_keeps_its_type():
    rows = ChargingSessionFactory.create_batch(2, energy_kwh=Decimal("2"), started_at=None)
    for row in rows:
        row.energy_kwh = None
    update_rows(ChargingSession, rows, ["energy_kwh", "started_at"])
    assert list(ChargingSession.objects.values_list("energy_kwh", flat=True)) == [None, None]


@pytest.mark.django_db
def test_no_rows_no_statement():
    with CaptureQueriesContext(connection) as queries:
        update_rows(ChargingSession, [], ["energy_kwh"])
    assert not queries


@pytest.mark.django_db
def test_json_times_and_text_come_back_exactly_as_save_writes_them():
    """On PostgreSQL the values travel as one JSON parameter: JSON columns as their field's own
    JSON text, times with their microseconds and offset, text with quotes and any script."""
    from datetime import UTC, datetime

    from django.utils import timezone

    from sessions.models import InboundMessage

    saved, updated = (
        InboundMessage.objects.create(kind="START", session_id=f"s{n}", received_at=timezone.now(), raw="{}")
        for n in range(2)
    )
    values = {
        "parsed": {"Meter": 1234.567, "Text": 'it\'s "quoted" – Müller 日本', "List": [1, None, True]},
        "anomalies": [{"code": "odd", "field": "OperatorID"}],
        "applied_at": datetime(2026, 12, 7, 9, 30, 1, 123456, tzinfo=UTC),
        "flagged": True,
        "apply_error": "",
    }
    for row in (saved, updated):
        for name, value in values.items():
            setattr(row, name, value)
    saved.save(update_fields=list(values))
    update_rows(InboundMessage, [updated], list(values))
    as_saved, as_updated = (InboundMessage.objects.filter(pk=row.pk).values(*values).get() for row in (saved, updated))
    assert as_updated == as_saved
    assert as_updated["applied_at"] == values["applied_at"]


@pytest.mark.django_db
def test_a_related_instance_saved_after_it_was_assigned_is_written_by_its_id_and_an_unsaved_one_is_refused():
    """As `save()` does: the appliers assign a session created in the same batch to its messages
    before the session is INSERTed; its id is written once it has one. Still an unsaved one stops
    the write with Django's own error (the check is given the relations alone, for speed)."""
    from django.utils import timezone

    from sessions.models import InboundMessage

    message = InboundMessage.objects.create(kind="START", session_id="s1", received_at=timezone.now(), raw="{}")
    later = ChargingSessionFactory.build()
    message.charging_session = later
    later.save()
    update_rows(InboundMessage, [message], ["charging_session", "flagged"])
    assert InboundMessage.objects.get(pk=message.pk).charging_session_id == later.pk

    message.charging_session = ChargingSessionFactory.build()
    with pytest.raises(ValueError, match="unsaved related object 'charging_session'"):
        update_rows(InboundMessage, [message], ["flagged", "charging_session"])
    assert InboundMessage.objects.get(pk=message.pk).charging_session_id == later.pk
