"""The inbound messages' indexes: one for a session's messages in arrival order, none on the kind.

Every acknowledged message is one INSERT, and every index is written by it. Before, PostgreSQL kept
eight (kind and session_id each had a second, varchar_pattern_ops index for LIKE, which nothing
asks), and the CDR endpoint's "was one received before?" could be planned as a BitmapAnd with the
kind's index: a scan of every CDR ever received, for each new one (0.14 ms at 9,000 CDRs, growing
with the table). Now: the session's index with the id (the prior-CDR check is one index range) and
no index on a column with five values; the session's row only where the message has one (a
message gets it when applied, so the acknowledging INSERT writes no entry there).

The old single-column indexes are dropped by what they index, not by Django's generated names, and
the fields' `db_index` changes only in the migration state: Django's AlterField would rebuild the
whole table on SQLite, three times (one per field), for a change of indexes.
"""

import django.db.models.deletion
from django.db import migrations, models

TABLE = "charging_sessions_inboundmessage"
OLD_COLUMNS = (["kind"], ["session_id"], ["charging_session_id"])


def drop_single_column_indexes(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, TABLE)
    for name, info in constraints.items():
        plain = info["index"] and not info["primary_key"] and not info["unique"]
        if plain and info["columns"] in OLD_COLUMNS and name.startswith(TABLE[:10]):  # Django's names
            schema_editor.execute(f"DROP INDEX {schema_editor.quote_name(name)}")


def create_single_column_indexes(apps, schema_editor):
    for columns in OLD_COLUMNS:
        column = columns[0]
        name = schema_editor.quote_name(f"{TABLE[:10]}_inbound_{column}_idx")
        schema_editor.execute(f"CREATE INDEX {name} ON {schema_editor.quote_name(TABLE)} ({column})")


class Migration(migrations.Migration):
    dependencies = [("charging_sessions", "0022_stop_operator")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(drop_single_column_indexes, create_single_column_indexes)],
            state_operations=[
                migrations.AlterField(
                    model_name="inboundmessage",
                    name="kind",
                    field=models.CharField(
                        choices=[
                            ("START", "Start notification"),
                            ("PROGRESS", "Progress notification"),
                            ("END", "End notification"),
                            ("ERROR", "Error notification"),
                            ("CDR", "Charge detail record"),
                        ],
                        max_length=10,
                    ),
                ),
                migrations.AlterField(
                    model_name="inboundmessage",
                    name="session_id",
                    field=models.CharField(max_length=36),
                ),
                migrations.AlterField(
                    model_name="inboundmessage",
                    name="charging_session",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="inbound_messages",
                        to="charging_sessions.chargingsession",
                    ),
                ),
            ],
        ),
        migrations.AddIndex(
            model_name="inboundmessage",
            index=models.Index(fields=["session_id", "id"], name="inbound_session_idx"),
        ),
        migrations.AddIndex(
            model_name="inboundmessage",
            index=models.Index(
                condition=models.Q(("charging_session__isnull", False)),
                fields=["charging_session"],
                name="inbound_charging_session_idx",
            ),
        ),
    ]
