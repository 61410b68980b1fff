"""The place search's index on PostgreSQL: pg_trgm and a GIN trigram index on EvseRecord.search_text
(sessions.directory.selectors.search_places). SQLite needs neither; without the right to create the
extension the search falls back to substring matches, so a refusal here is not an error."""

from django.db import DatabaseError, migrations, transaction

INDEX = "evse_search_trgm_idx"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    table = apps.get_model("charging_sessions", "EvseRecord")._meta.db_table
    try:
        with transaction.atomic(using=schema_editor.connection.alias):
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DatabaseError:
        return  # not allowed here: search_places falls back to substring matches
    schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {INDEX} ON {table} USING gin (search_text gin_trgm_ops)")


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("charging_sessions", "0017_evse_directory")]

    operations = [migrations.RunPython(forwards, backwards)]
