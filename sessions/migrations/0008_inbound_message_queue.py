"""Pushed charging notifications and CDRs are acknowledged once stored and applied by the worker.

Messages stored before this migration were applied when they arrived: they get applied_at =
received_at, so the worker's queue starts empty.
"""

from django.db import migrations, models
from django.db.models import F


def mark_applied(apps, schema_editor):
    InboundMessage = apps.get_model("charging_sessions", "InboundMessage")
    InboundMessage.objects.filter(applied_at__isnull=True).update(applied_at=F("received_at"))


class Migration(migrations.Migration):
    dependencies = [("charging_sessions", "0007_auditrecord_canonical_data")]

    operations = [
        migrations.AddField(
            model_name="inboundmessage",
            name="applied_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="inboundmessage",
            name="apply_error",
            field=models.TextField(blank=True, default=""),
            preserve_default=False,
        ),
        migrations.RunPython(mark_applied, migrations.RunPython.noop, elidable=True),
        migrations.AddIndex(
            model_name="inboundmessage",
            index=models.Index(
                condition=models.Q(("applied_at__isnull", True), ("apply_error", "")),
                fields=["id"],
                name="inbound_pending_idx",
            ),
        ),
    ]
