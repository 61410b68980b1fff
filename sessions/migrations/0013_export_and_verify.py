"""'Verify now': a supervisor's request for an audit-chain verification is an AuditVerification row
that waits (QUEUED), runs in a worker (RUNNING) and ends DONE or FAILED. Rows written before this
migration are complete walks: DONE."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    # The number was reserved for this change; it follows the newest migration at the time of writing.
    dependencies = [
        ("charging_sessions", "0015_accounts_audit_events"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="auditverification",
            name="state",
            field=models.CharField(
                choices=[("QUEUED", "Queued"), ("RUNNING", "Running"), ("DONE", "Done"), ("FAILED", "Did not run")],
                default="DONE", max_length=8),
        ),
        migrations.AddField(
            model_name="auditverification",
            name="requested_by",
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT,
                                    related_name="+", to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name="auditverification",
            name="requested_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="auditverification",
            name="error",
            field=models.CharField(blank=True, max_length=500),
        ),
        migrations.AlterField(
            model_name="auditverification",
            name="started_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="auditverification",
            name="finished_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="auditverification",
            name="ok",
            field=models.BooleanField(null=True),
        ),
        migrations.AlterField(
            model_name="auditverification",
            name="records_checked",
            field=models.PositiveIntegerField(default=0),
        ),
    ]
