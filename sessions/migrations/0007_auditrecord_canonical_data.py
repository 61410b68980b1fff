"""Audit records keep `data` as canonical JSON text (sorted keys, no spaces, UTF-8), the bytes the
hash chain covers, so `verify_audit` can hash the stored text instead of re-serialising each record.

A text column on both databases (jsonb would re-order keys and add spaces). Records written before
keep their old text (PostgreSQL: jsonb's text form; SQLite: Django's JSON with spaces); the
verification still accepts them by parsing and re-serialising, as before. PostgreSQL's append-only
trigger is a row trigger on UPDATE/DELETE: the column type change does not fire it.
"""

from django.db import migrations

import sessions.models.json_field


class Migration(migrations.Migration):
    dependencies = [("charging_sessions", "0006_stop_state_session_idx")]

    operations = [
        migrations.AlterField(
            model_name="auditrecord",
            name="data",
            field=sessions.models.json_field.CanonicalJSONField(blank=True, default=dict),
        ),
    ]
