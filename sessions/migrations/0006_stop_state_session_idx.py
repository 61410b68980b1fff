"""Indexes for the stuck-sessions queue and the stop history's filters (see bench/RESULTS.md)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("charging_sessions", "0005_audit_chain")]

    operations = [
        migrations.AddIndex(
            model_name="remotestoprequest",
            index=models.Index(fields=["state", "charging_session"], name="stop_state_session_idx"),
        ),
        migrations.AddIndex(
            model_name="chargingsession",
            index=models.Index(fields=["status", "last_update_at", "id"], name="session_status_stale_idx"),
        ),
    ]
