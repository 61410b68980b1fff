"""Query shapes the indexes serve on both databases (SQLite and PostgreSQL): a prefix match and a
loose index scan for DISTINCT."""

from django.db import connection
from django.db.models import Q


def prefix_q(field_name: str, prefix: str) -> Q:
    """`field_name` starts with `prefix`, in the form that field's index serves on each database.

    PostgreSQL: LIKE 'prefix%' (Django's `*_like` index). SQLite's LIKE is case-insensitive and
    never uses an index, so there a range over the (binary-ordered) index: prefix <= value <
    prefix + U+10FFFF selects exactly the values that start with prefix.
    """
    if connection.vendor == "sqlite":
        return Q(**{f"{field_name}__gte": prefix, f"{field_name}__lt": prefix + "\U0010ffff"})
    return Q(**{f"{field_name}__startswith": prefix})


def distinct_values(model, field_name: str, *, skip_empty: bool = False) -> list[str]:
    """SELECT DISTINCT of an indexed column, ascending, as a loose index scan.

    One index seek per distinct value (a recursive CTE, the same SQL on SQLite and PostgreSQL),
    instead of reading every row's entry: the filter lists' DISTINCT over all sessions and stop
    requests grew with the data (bench/RESULTS.md).
    """
    quote = connection.ops.quote_name
    table, column = quote(model._meta.db_table), quote(model._meta.get_field(field_name).column)
    first = f"SELECT MIN({column}) FROM {table}" + (f" WHERE {column} > ''" if skip_empty else "")
    sql = (
        f"WITH RECURSIVE found(value) AS ({first} UNION ALL "
        f"SELECT (SELECT MIN({column}) FROM {table} WHERE {column} > found.value) FROM found "
        "WHERE found.value IS NOT NULL) SELECT value FROM found WHERE value IS NOT NULL"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return [row[0] for row in cursor.fetchall()]
