"""Database-generated search columns: IDs as the agent types them, SessionIDs in any case."""

from django.db import models
from django.db.models import F, Value
from django.db.models.functions import Lower, Replace, Upper

from ..oicp import ids


def _id_search_key(field_name: str):
    """The database's `ids.id_search_key`: upper case, without ids.ID_SEPARATORS."""
    expression = F(field_name)
    for separator in ids.ID_SEPARATORS:
        expression = Replace(expression, Value(separator), Value(""))
    return Upper(expression)


def _search_key_field(field_name: str, max_length: int) -> models.GeneratedField:
    return models.GeneratedField(
        expression=_id_search_key(field_name), output_field=models.CharField(max_length=max_length), db_persist=True
    )


def _partner_key_field(field_name: str) -> models.GeneratedField:
    return models.GeneratedField(
        expression=Lower(field_name), output_field=models.CharField(max_length=250), db_persist=True
    )
