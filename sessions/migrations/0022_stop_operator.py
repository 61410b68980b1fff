"""The stop request's own OperatorID (its session's, copied at creation) and the CPO pages' index.

The CPO page's aggregates joined every session of the CPO to the period's stops: PostgreSQL hashed
the CPO's sessions and scanned all the period's stops (61–85 ms per aggregate at 300,000 stops,
bench/RESULTS.md). With the OperatorID on the stop, stop_operator_at_idx gives one CPO's stops of a
period as one index range with every column the aggregates read.

Existing rows are filled from their sessions (one UPDATE; a session's OperatorID never changes).
"""

from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def fill_operator_ids(apps, schema_editor):
    RemoteStopRequest = apps.get_model("charging_sessions", "RemoteStopRequest")
    ChargingSession = apps.get_model("charging_sessions", "ChargingSession")
    session_operator = ChargingSession.objects.filter(pk=OuterRef("charging_session_id")).values("operator_id")[:1]
    RemoteStopRequest.objects.update(operator_id=Subquery(session_operator))


class Migration(migrations.Migration):
    dependencies = [("charging_sessions", "0021_page_indexes")]

    operations = [
        migrations.AddField(
            model_name="remotestoprequest",
            name="operator_id",
            field=models.CharField(default="", editable=False, max_length=10, verbose_name="OperatorID"),
        ),
        migrations.RunPython(fill_operator_ids, migrations.RunPython.noop, elidable=True),
        migrations.AddIndex(
            model_name="remotestoprequest",
            index=models.Index(
                fields=["operator_id", "requested_at", "state", "oicp_code", "time_to_confirmation", "id"],
                name="stop_operator_at_idx",
            ),
        ),
    ]
