"""The place search's indexes at Hubject's scale (issue 15 item 6; sessions.directory.place_search).

- PlaceWord: the vocabulary of EvseRecord.search_text (a typo is corrected against it), filled here
  from the rows already pulled.
- SQLite: an FTS5 table over search_text (external content: the rows stay in the EVSE table), kept
  in step by triggers, so bulk writes, the admin and tests all keep it right.
- PostgreSQL: a GIN full-text index on the words of search_text (the same split into runs of letters
  and digits as FTS5's); the trigram index of 0018 goes: it cost every insert a GIN entry per
  trigram and the search no longer uses it.
"""

from django.db import migrations, models

TABLE = "charging_sessions_evserecord"
FTS = "charging_sessions_evse_place_fts"
PG_INDEX = "evse_place_words_idx"
# Keep in step with sessions.directory.place_search.PG_WORDS (a query must use this very expression).
PG_WORDS = "to_tsvector('simple'::regconfig, regexp_replace(search_text, '[^a-z0-9]+', ' ', 'g'))"

SQLITE_FORWARDS = [
    f"CREATE VIRTUAL TABLE {FTS} USING fts5(search_text, content='{TABLE}', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 0')",
    f"CREATE TRIGGER {FTS}_ai AFTER INSERT ON {TABLE} BEGIN "
    f"INSERT INTO {FTS}(rowid, search_text) VALUES (new.id, new.search_text); END",
    f"CREATE TRIGGER {FTS}_ad AFTER DELETE ON {TABLE} BEGIN "
    f"INSERT INTO {FTS}({FTS}, rowid, search_text) VALUES ('delete', old.id, old.search_text); END",
    f"CREATE TRIGGER {FTS}_au AFTER UPDATE OF search_text ON {TABLE} BEGIN "
    f"INSERT INTO {FTS}({FTS}, rowid, search_text) VALUES ('delete', old.id, old.search_text); "
    f"INSERT INTO {FTS}(rowid, search_text) VALUES (new.id, new.search_text); END",
    f"INSERT INTO {FTS}({FTS}) VALUES ('rebuild')",
]
SQLITE_BACKWARDS = [f"DROP TRIGGER IF EXISTS {FTS}_{name}" for name in ("ai", "ad", "au")] + [
    f"DROP TABLE IF EXISTS {FTS}"
]


def forwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        for sql in SQLITE_FORWARDS:
            schema_editor.execute(sql)
    elif vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS evse_search_trgm_idx")
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {PG_INDEX} ON {TABLE} USING gin ({PG_WORDS})")
    # The vocabulary of what was pulled before (the pull keeps it from now on).
    EvseRecord = apps.get_model("charging_sessions", "EvseRecord")
    PlaceWord = apps.get_model("charging_sessions", "PlaceWord")
    import re

    seen: set[str] = set()
    for text in EvseRecord.objects.values_list("search_text", flat=True).iterator(chunk_size=5000):
        seen.update(word for word in re.findall(r"[a-z0-9]+", text) if len(word) <= 64)
    PlaceWord.objects.bulk_create([PlaceWord(word=w, drow=w[::-1]) for w in sorted(seen)], batch_size=1000)


def backwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        for sql in SQLITE_BACKWARDS:
            schema_editor.execute(sql)
    elif vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {PG_INDEX}")
        schema_editor.execute(
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN "
            f"CREATE INDEX IF NOT EXISTS evse_search_trgm_idx ON {TABLE} USING gin (search_text gin_trgm_ops); "
            "END IF; END $$"
        )


class Migration(migrations.Migration):
    dependencies = [("charging_sessions", "0019_inbound_claims")]

    operations = [
        migrations.CreateModel(
            name="PlaceWord",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("word", models.CharField(max_length=64, unique=True)),
                ("drow", models.CharField(db_index=True, max_length=64)),
            ],
        ),
        migrations.RunPython(forwards, backwards),
    ]
