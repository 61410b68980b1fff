"""Search as drivers speak (issue 12): the driver's contract ID, card UID and printed card number on
the session, and a search key per way a driver names a session, computed by the database
(GeneratedFields, as session_key) and indexed. The EvseID's and the partner session IDs' own
indexes go: the search uses their keys' indexes instead.

The key expression is spelled out here as the model builds it from `sessions.oicp.ids.ID_SEPARATORS`
at the time of writing (a migration must not change when that constant does).
"""

from django.db import migrations, models
from django.db.models import F, Value
from django.db.models.functions import Lower, Replace, Upper

SEPARATORS = " *+-.:/"


def id_search_key(field_name):
    expression = F(field_name)
    for separator in SEPARATORS:
        expression = Replace(expression, Value(separator), Value(""))
    return Upper(expression)


def search_key_field(field_name, max_length):
    return models.GeneratedField(db_persist=True, expression=id_search_key(field_name),
                                 output_field=models.CharField(max_length=max_length))


def partner_key_field(field_name):
    return models.GeneratedField(db_persist=True, expression=Lower(field_name),
                                 output_field=models.CharField(max_length=250))


class Migration(migrations.Migration):

    dependencies = [
        ("charging_sessions", "0010_cdr_pull_run"),
    ]

    operations = [
        migrations.AddField(
            model_name="chargingsession",
            name="contract_id",
            field=models.CharField(blank=True, max_length=50, verbose_name="contract ID (EvcoID)"),
        ),
        migrations.AddField(
            model_name="chargingsession",
            name="card_uid",
            field=models.CharField(blank=True, max_length=50, verbose_name="card UID"),
        ),
        migrations.AddField(
            model_name="chargingsession",
            name="printed_number",
            field=models.CharField(blank=True, max_length=150, verbose_name="printed card number"),
        ),
        migrations.AlterField(
            model_name="chargingsession",
            name="evse_id",
            field=models.CharField(max_length=41, verbose_name="EvseID"),
        ),
        migrations.AlterField(
            model_name="chargingsession",
            name="emp_partner_session_id",
            field=models.CharField(blank=True, max_length=250, verbose_name="EMP partner session ID"),
        ),
        migrations.AlterField(
            model_name="chargingsession",
            name="cpo_partner_session_id",
            field=models.CharField(blank=True, max_length=250, verbose_name="CPO partner session ID"),
        ),
        migrations.AddField(model_name="chargingsession", name="evse_key", field=search_key_field("evse_id", 41)),
        migrations.AddField(model_name="chargingsession", name="emp_partner_key",
                            field=partner_key_field("emp_partner_session_id")),
        migrations.AddField(model_name="chargingsession", name="cpo_partner_key",
                            field=partner_key_field("cpo_partner_session_id")),
        migrations.AddField(model_name="chargingsession", name="contract_key",
                            field=search_key_field("contract_id", 50)),
        migrations.AddField(model_name="chargingsession", name="card_uid_key", field=search_key_field("card_uid", 50)),
        migrations.AddField(model_name="chargingsession", name="printed_number_key",
                            field=search_key_field("printed_number", 150)),
        migrations.AddIndex(
            model_name="chargingsession",
            index=models.Index(fields=["evse_key"], name="session_evse_key_idx", opclasses=["varchar_pattern_ops"]),
        ),
        migrations.AddIndex(
            model_name="chargingsession",
            index=models.Index(fields=["contract_key"], name="session_contract_key_idx",
                               opclasses=["varchar_pattern_ops"]),
        ),
        migrations.AddIndex(
            model_name="chargingsession",
            index=models.Index(fields=["emp_partner_key"], name="session_emp_partner_key_idx"),
        ),
        migrations.AddIndex(
            model_name="chargingsession",
            index=models.Index(fields=["cpo_partner_key"], name="session_cpo_partner_key_idx"),
        ),
        migrations.AddIndex(
            model_name="chargingsession",
            index=models.Index(fields=["card_uid_key"], name="session_card_uid_key_idx"),
        ),
        migrations.AddIndex(
            model_name="chargingsession",
            index=models.Index(fields=["printed_number_key"], name="session_printed_number_key_idx"),
        ),
    ]
