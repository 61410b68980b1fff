"""Indexes for the stuck-sessions queue and the stop history at full size (bench/RESULTS.md, "Pages").

- session_open_update_idx: the open sessions by last update, as one ordered range (partial index),
  for the queue's silent sessions on PostgreSQL, and the list of open sessions.
- session_operator_idx: an operator's session ids, index-only, for the filters by OperatorID.
- stop_state_session_at_idx replaces stop_state_session_idx: the same with requested_at (covering).
- stop_stuck_session_idx: the stuck stops (never confirmed, or failed with an unknown outcome) by
  session, so the queue reads those of the open sessions only.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("charging_sessions", "0020_place_search_index")]

    operations = [
        migrations.AddIndex(
            model_name="chargingsession",
            index=models.Index(
                condition=models.Q(("status__in", ["ACTIVE", "CHARGING_ENDED"])),
                fields=["last_update_at", "id"],
                name="session_open_update_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="chargingsession",
            index=models.Index(fields=["operator_id", "id"], name="session_operator_idx"),
        ),
        migrations.RemoveIndex(model_name="remotestoprequest", name="stop_state_session_idx"),
        migrations.AddIndex(
            model_name="remotestoprequest",
            index=models.Index(
                fields=["state", "charging_session", "requested_at"], name="stop_state_session_at_idx"
            ),
        ),
        migrations.AddIndex(
            model_name="remotestoprequest",
            index=models.Index(
                condition=models.Q(
                    ("state", "UNCONFIRMED"),
                    models.Q(("outcome_unknown", True), ("state", "FAILED")),
                    _connector="OR",
                ),
                fields=["charging_session", "finished_at", "id"],
                name="stop_stuck_session_idx",
            ),
        ),
    ]
