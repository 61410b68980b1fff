from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("charging_sessions", "0012_session_search_keys")]

    operations = [
        migrations.CreateModel(
            name="InboundRefusalCount",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("client_address", models.CharField(max_length=64)),
                ("minute", models.DateTimeField()),
                ("reason", models.CharField(max_length=200)),
                ("count", models.PositiveIntegerField(default=0)),
                ("first_path", models.CharField(max_length=200)),
                ("audit_record_id", models.BigIntegerField(blank=True, null=True)),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("client_address", "minute", "reason"),
                                                        name="one_refusal_count_per_minute")],
                "indexes": [models.Index(condition=models.Q(("audit_record_id__isnull", True)), fields=["minute"],
                                         name="refusal_unreported_idx")],
            },
        ),
    ]
