"""Inbound messages are claimed by session, with a lease (sessions/inbound/claims.py): several workers
apply different sessions' messages at once; `applier` also says who applied a message."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('charging_sessions', '0018_place_search_trigram'),
    ]

    operations = [
        migrations.AddField(
            model_name='inboundmessage',
            name='applier',
            field=models.CharField(blank=True, max_length=40),
        ),
        migrations.AddField(
            model_name='inboundmessage',
            name='claimed_until',
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
