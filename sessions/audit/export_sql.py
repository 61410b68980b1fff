"""CSV lines rendered by the database: one SELECT whose only column is the whole line.

A Python loop over ORM rows (converters, json round trip, csv.writer) costs 6-12x the database's
own CSV dump; here SQLite or PostgreSQL builds each line with `||`, and Python only joins, hashes
and writes them. The filtered queryset's FROM/WHERE/ORDER BY are compiled by Django (the filters
stay in `audit.selectors.audit_log`); only the select list is written here.

Each line reads back through `csv.reader` to the values the Python writer produced:
- free-text cells (usernames, SessionID, EvseID, OperatorID) and the JSON `data` are always quoted
  (RFC 4180: `"` doubled), with the formula neutralisation of `exports.neutralise` done in SQL;
- ids, the event type (a portal constant) and the hashes are hex, digits or [A-Z_], and never need
  quoting or neutralising;
- `occurred_at` as `datetime.isoformat(timespec="microseconds")` in UTC, `correlation_id` as
  `str(uuid)`, NULLs as empty cells;
- `data` as the column's stored text (not re-serialised: readers parse it as JSON);
- `outcome` as `audit_outcomes.outcome_text` words it: `outcome_sql` compiles the same RULES into
  one CASE (always quoted; its text never starts like a formula, see `audit_outcomes`).

Reading `data` for the words costs a parse per record: SQLite reads each member it needs from the
stored text (its JSON functions cache the parse within a row); PostgreSQL parses `data` into jsonb
once per record, in an inner query the server may run in parallel, and words it in the outer one
(`line_query`). Measured on 300,000 stop records (3 in 4 read their data): SQLite +15-30 %,
PostgreSQL +70-85 % over the same lines without the outcome.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import connections
from django.db.models import F, Func, QuerySet, TextField

from ..models import AuditRecord
from . import export_columns
from . import outcomes as words

CELLS = export_columns.CELLS  # the outcome is worded from event_type and data
_PATHS = tuple(path for kind, path in CELLS if kind != "outcome")
VENDORS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class _Text:
    """A literal piece of the line."""

    text: str


@dataclass(frozen=True)
class _Either:
    """CASE WHEN condition THEN one literal ELSE another END."""

    condition: str
    then: str
    other: str


def _literal(text: str) -> str:
    # '%' doubled: the SQL goes through the driver's parameter formatting (Django, COPY's mogrify).
    return "'" + text.replace("'", "''").replace("%", "%%") + "'"


def _concat(parts: list) -> str:
    """`||` of the parts, neighbouring literals merged (also into CASE branches): SQLite evaluates
    each `||` and function per row, so fewer of them is most of what this costs."""
    merged: list = []
    for part in parts:
        if isinstance(part, _Text) and not part.text:
            continue
        last = merged[-1] if merged else None
        if isinstance(part, _Text) and isinstance(last, _Text):
            merged[-1] = _Text(last.text + part.text)
        elif isinstance(part, _Text) and isinstance(last, _Either):
            merged[-1] = _Either(last.condition, last.then + part.text, last.other + part.text)
        elif isinstance(part, _Either) and isinstance(last, _Text):
            merged[-1] = _Either(part.condition, last.text + part.then, last.text + part.other)
        else:
            merged.append(part)
    return " || ".join(
        _literal(part.text)
        if isinstance(part, _Text)
        else f"CASE WHEN {part.condition} THEN {_literal(part.then)} ELSE {_literal(part.other)} END"
        if isinstance(part, _Either)
        else part
        for part in merged
    )


def _formula_start(value: str, vendor: str) -> str:
    """True when the text starts like a formula (exports.starts_like_formula: = + - @ tab CR and their
    full-width forms, after any leading spaces); NULL for NULL."""
    if vendor == "sqlite":
        # One GLOB (the pattern is a constant: built once); a leading '-' in a set is itself.
        return f"ltrim({value}, ' ') GLOB ('[-=+@\uff1d\uff0b\uff0d\uff20' || char(9, 13) || ']*')"
    return (
        f"left(ltrim({value}, ' '), 1) IN ('=', '+', '-', '@', chr(9), chr(13), '\uff1d', '\uff0b', '\uff0d', '\uff20')"
    )


def _cell(kind: str, column: str, vendor: str) -> list:
    """The pieces of one cell's text (never NULL) from a compiled column reference."""
    sqlite = vendor == "sqlite"
    if kind == "id":
        return [column if sqlite else f"CAST({column} AS TEXT)"]  # SQLite's || writes integers
    if kind == "int":  # a NULL foreign key: an empty cell
        return [f"COALESCE({column}, '')" if sqlite else f"COALESCE(CAST({column} AS TEXT), '')"]
    if kind == "plain":  # NOT NULL columns
        return [column]
    if kind == "datetime":
        if sqlite:  # stored as naive UTC 'YYYY-MM-DD HH:MM:SS[.ffffff]', no fraction when it is zero
            return [f"replace({column}, ' ', 'T')", _Either(f"length({column}) = 19", ".000000+00:00", "+00:00")]
        return [f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""]
    if kind == "uuid":
        if sqlite:  # stored as 32 lower-case hex digits
            dashed = " || '-' || ".join(
                f"substr({column}, {start}, {length})" for start, length in ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
            )
            return [f"COALESCE({dashed}, '')"]
        return [f"COALESCE(CAST({column} AS TEXT), '')"]
    if kind in ("text", "json"):
        value = column if sqlite or kind == "text" else f"CAST({column} AS TEXT)"
        escaped = f"replace({value}, '\"', '\"\"')"
        # Always quoted; the neutralising quote goes inside the double quotes.
        return [
            _Either(_formula_start(value, vendor), "\"'", '"'),
            f"COALESCE({escaped}, '')" if kind == "text" else escaped,
            _Text('"'),
        ]
    raise ValueError(kind)


# --- the outcome in words: audit_outcomes.RULES compiled into one CASE -------------------------------


class _OutcomeCompiler:
    """SQL for the parts of a rule, reading `data` as `audit_outcomes` does (see its readers there).

    SQLite reads a member's JSON text (`data -> '$.key'`, the stored token as written) and decodes only
    the strings it shows; PostgreSQL parses `data` once per row into jsonb `_outcome.j` (a sub-select,
    only for the events whose words read data). Both see U+0000 in a string as U+FFFD, as jsonb must.
    `proven` holds the members an enclosing condition has shown to be a string or an integer, so
    their values need no second check.
    """

    def __init__(self, vendor: str, data: str, document: str = "_outcome.j"):
        self.sqlite = vendor == "sqlite"
        self.data = data
        self.document = document  # PostgreSQL: the parsed jsonb of `data`

    def member(self, key: str) -> str:
        """The member's JSON (text in SQLite, jsonb in PostgreSQL), NULL when absent."""
        return f"({self.data} -> {_literal('$.' + key)})" if self.sqlite else f"({self.document} -> {_literal(key)})"

    def _is_string(self, key: str) -> str:
        if self.sqlite:
            return f"{self.member(key)} GLOB '\"*'"
        return f"jsonb_typeof({self.member(key)}) = 'string'"

    def _string(self, key: str) -> str:
        """The decoded string of a member known to be one."""
        if self.sqlite:
            return f"(replace({self.member(key)}, '\\u0000', '\\ufffd') ->> '$')"
        return f"({self.document} ->> {_literal(key)})"

    def _int_test(self, key: str) -> str:
        if self.sqlite:  # an integer's JSON is a '-' and digits; a real has '.' or an exponent
            return f"{self.member(key)} NOT GLOB '*[^-0-9]*'"
        return f"(jsonb_typeof({self.member(key)}) = 'number' AND ({self._string(key)}) ~ '^-?[0-9]+$')"

    def _int(self, key: str) -> str:
        return self.member(key) if self.sqlite else self._string(key)

    def condition(self, condition: words.Condition, proven: frozenset) -> str:
        if isinstance(condition, words.Text):
            if self.sqlite:  # a JSON string with at least one character: '"', something, '"'
                return f"{self.member(condition.key)} GLOB '\"??*'"
            return f"({self._is_string(condition.key)} AND {self._string(condition.key)} <> '')"
        if isinstance(condition, words.Int):
            return self._int_test(condition.key)
        if isinstance(condition, words.Flag):
            value = "true" if condition.value else "false"
            return f"{self.member(condition.key)} = " + (f"'{value}'" if self.sqlite else f"'{value}'::jsonb")
        if isinstance(condition, words.Equals):
            encoded = _literal(json.dumps(condition.value, ensure_ascii=False))
            return f"{self.member(condition.key)} = " + (encoded if self.sqlite else f"{encoded}::jsonb")
        raise TypeError(condition)

    @staticmethod
    def _proves(condition: words.Condition) -> set:
        if isinstance(condition, (words.Text, words.Equals)):
            return {("text", condition.key)}
        if isinstance(condition, words.Int):
            return {("int", condition.key)}
        return set()

    def _text_value(self, key: str, proven: frozenset) -> str:
        if ("text", key) in proven:
            return self._string(key)
        return f"COALESCE(CASE WHEN {self._is_string(key)} THEN {self._string(key)} END, '')"

    def _int_value(self, key: str, proven: frozenset) -> str:
        if ("int", key) in proven:
            return self._int(key)
        return f"COALESCE(CASE WHEN {self._int_test(key)} THEN {self._int(key)} END, '')"

    def parts(self, parts: tuple, proven: frozenset = frozenset()) -> list:
        out: list = []
        for part in parts:
            if isinstance(part, str):
                out.append(_Text(part))
            elif isinstance(part, words.Text):
                out.append(self._text_value(part.key, proven))
            elif isinstance(part, words.Int):
                out.append(self._int_value(part.key, proven))
            elif isinstance(part, words.Setting):
                out.append(_Text(str(getattr(settings, part.name))))
            elif isinstance(part, words.Count):
                value = self._int_value(part.key, proven)
                noun = f"CASE WHEN {value} = '1' THEN {_literal(part.singular)} ELSE {_literal(part.plural)} END"
                out.append(
                    f"COALESCE(CASE WHEN {self._int_test(part.key)} THEN {value} || ' ' || {noun} END, '')"
                    if ("int", part.key) not in proven
                    else f"{value} || ' ' || {noun}"
                )
            elif isinstance(part, words.Words):
                out.append(self._words(part, proven))
            elif isinstance(part, words.If):
                then = self.parts(part.then, proven | self._proves(part.condition))
                otherwise = self.parts(part.otherwise, proven)
                out.append(
                    f"CASE WHEN {self.condition(part.condition, proven)} THEN {_concat(then) or _EMPTY} "
                    f"ELSE {_concat(otherwise) or _EMPTY} END"
                )
            else:
                raise TypeError(part)
        return out

    def _words(self, part: words.Words, proven: frozenset) -> str:
        if self.sqlite:  # compared as JSON text: the stored token of a plain word is the word in quotes
            tested = self.member(part.key)
            whens = " ".join(
                f"WHEN {_literal(json.dumps(value, ensure_ascii=False))} THEN {_literal(text)}"
                for value, text in part.table.items()
            )
        else:
            tested = self._string(part.key)
            whens = " ".join(f"WHEN {_literal(value)} THEN {_literal(text)}" for value, text in part.table.items())
        other = _concat([_Text(part.before), self._string(part.key), _Text(part.after)])
        sql = f"CASE {tested} {whens} ELSE {other} END"
        if ("text", part.key) in proven:
            return sql
        return f"COALESCE(CASE WHEN {self._is_string(part.key)} THEN {sql} END, '')"


_EMPTY = "''"


def _rule_reads_data(parts: tuple) -> bool:
    return any(not isinstance(part, (str, words.Setting)) for part in parts)


def _jsonb(data: str) -> str:
    # jsonb has no U+0000: its escapes become U+FFFD (sessions.models.json_field._TextAsJSON does the same).
    # replace() copies every text it is given: only the few that hold the escape.
    return (
        f"(CASE WHEN strpos({data}, '\\u0000') > 0 THEN replace({data}, '\\u0000', '\\ufffd') ELSE {data} END)::jsonb"
    )


def outcome_sql(event_type: str, data: str, vendor: str, document: str | None = None) -> str:
    """The outcome words of a record (never NULL) from its compiled event_type and data columns.

    PostgreSQL: `document` is the record's `data` already parsed (`OutcomeDocument`); without it,
    each branch that reads data parses it in a sub-select of its own (simple, but a correlated
    sub-select keeps PostgreSQL from running the query in parallel: `line_query` passes one).
    """
    compiler = _OutcomeCompiler(vendor, data, document or "_outcome.j")
    whens = []
    for event, rule in words.RULES.items():
        text = _concat(compiler.parts(rule)) or _EMPTY
        if vendor == "postgresql" and document is None and _rule_reads_data(rule):
            # One parse per row (OFFSET 0 keeps the planner from copying it into each use).
            text = f"(SELECT {text} FROM (SELECT {_jsonb(data)} AS j OFFSET 0) AS _outcome)"
        whens.append(f"WHEN {_literal(event)} THEN {text}")
    whens += [
        f"WHEN {_literal(event)} THEN {_literal(words.fallback(event))}"
        for event in AuditRecord.EventType.values
        if event not in words.RULES
    ]
    return f"CASE {event_type} {' '.join(whens)} ELSE {event_type} END"


def _quoted(words_sql: str) -> list:
    """The outcome as a CSV cell: always quoted (it never starts like a formula)."""
    return [_Text('"'), f"replace({words_sql}, '\"', '\"\"')", _Text('"')]


class OutcomeText(Func):
    """The outcome words alone (the CSV cell adds its quotes): for tests and reads."""

    output_field = TextField()

    def __init__(self):
        super().__init__(F("event_type"), F("data"))

    def as_sql(self, compiler, connection, **extra_context):
        if connection.vendor not in VENDORS:
            raise NotImplementedError(f"Outcome words are not rendered on {connection.vendor}")
        (event_type, _), (data, _) = (compiler.compile(e) for e in self.get_source_expressions())
        return outcome_sql(event_type, data, connection.vendor), []


class OutcomeDocument(Func):
    """PostgreSQL: the record's `data` parsed as jsonb, for the events whose words read it (else NULL)."""

    output_field = TextField()  # never read in Python

    def __init__(self):
        super().__init__(F("event_type"), F("data"))

    def as_sql(self, compiler, connection, **extra_context):
        (event_type, _), (data, _) = (compiler.compile(e) for e in self.get_source_expressions())
        reading = ", ".join(_literal(event) for event, rule in words.RULES.items() if _rule_reads_data(rule))
        if not reading:
            return "NULL::jsonb", []
        return f"CASE WHEN {event_type} IN ({reading}) THEN {_jsonb(data)} END", []


class CsvLine(Func):
    """The CSV line of an audit record (without its line end), or some of its cells, built in SQL."""

    output_field = TextField()

    def __init__(self, cells: tuple = CELLS):
        self.cells = cells
        super().__init__(*(F(path) for path in _PATHS))

    def as_sql(self, compiler, connection, **extra_context):
        if connection.vendor not in VENDORS:
            raise NotImplementedError(f"CSV lines are not rendered on {connection.vendor}")
        columns = {}
        for path, expression in zip(_PATHS, self.get_source_expressions(), strict=True):
            column, params = compiler.compile(expression)
            assert not params, "plain column references take no parameters"
            columns[path] = column
        parts: list = []
        for kind, path in self.cells:
            if parts:
                parts.append(_Text(","))
            if kind == "outcome":
                parts += _quoted(outcome_sql(columns["event_type"], columns["data"], connection.vendor))
            else:
                parts += _cell(kind, columns[path], connection.vendor)
        if connection.vendor == "sqlite" and self.cells == CELLS:
            # As a BLOB the line reaches Python as bytes: no decoding to str and encoding back.
            return f"CAST({_concat(parts)} AS BLOB)", []
        return _concat(parts), []


def line_query(records: QuerySet) -> tuple[str, tuple]:
    """The SELECT (and its parameters) of the CSV lines of `records` (ordered by id)."""
    connection = connections[records.db]
    if connection.vendor != "postgresql" or "outcome" not in [kind for kind, _ in CELLS]:
        query = records.annotate(csv_line=CsvLine(CELLS)).values_list("csv_line").query
        sql, params = query.get_compiler(using=records.db).as_sql()
        return sql, tuple(params)
    # PostgreSQL: the cells before and after the outcome and the parsed `data` come from an inner
    # query, which the server may run in parallel (parsing each record's data once, in the workers);
    # the outer one only puts the words between them. OFFSET 0 keeps the planner from merging the
    # two, which would copy the parse into every place the words read it.
    at = [kind for kind, _ in CELLS].index("outcome")
    inner = records.annotate(
        csv_row_id=F("id"),
        csv_before=CsvLine(CELLS[:at]),
        csv_event=F("event_type"),
        csv_document=OutcomeDocument(),
        csv_after=CsvLine(CELLS[at + 1 :]),
    ).values_list("csv_row_id", "csv_before", "csv_event", "csv_document", "csv_after")
    inner_sql, params = inner.query.get_compiler(using=records.db).as_sql()
    if not records.query.low_mark:
        inner_sql += " OFFSET 0"
    words_sql = outcome_sql('"_r"."csv_event"', "NULL", "postgresql", document='"_r"."csv_document"')
    line = _concat(['"_r"."csv_before"', _Text(","), *_quoted(words_sql), _Text(","), '"_r"."csv_after"'])
    sql = f'SELECT {line} FROM ({inner_sql}) AS "_r" ORDER BY "_r"."csv_row_id"'
    return sql, tuple(params)


def line_chunks(records: QuerySet, rows: int) -> Iterator[tuple[int, bytes]]:
    """The CSV lines of `records` in id (chain) order, UTF-8, each ended by CRLF, in chunks of at most
    `rows` lines: (lines, bytes). Never more than one chunk in memory."""
    records = records.order_by("id")
    connection = connections[records.db]
    if connection.vendor == "postgresql":
        if connection.in_atomic_block or not connection.get_autocommit():
            # The transaction may hold rows no other connection sees: its own connection, paged.
            yield from _copy_pages(connection, records, rows)
        else:
            yield from _copy_on_own_connection(records, rows)
        return
    # SQLite: one statement, stepped as rows are fetched (other statements may run between fetches,
    # e.g. the progress UPDATE).
    sql, params = line_query(records)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while batch := cursor.fetchmany(rows):
            lines = [row[0] for row in batch]
            lines.append(b"")  # so that the last line ends with CRLF too, without copying the chunk
            yield len(batch), b"\r\n".join(lines)


# COPY's text format escapes a backslash and these control characters in a value; a bare LF ends
# the row (one column, so no delimiter).
_COPY_ESCAPES = {
    b"\\\\": b"\\",
    b"\\n": b"\n",
    b"\\r": b"\r",
    b"\\t": b"\t",
    b"\\b": b"\b",
    b"\\f": b"\f",
    b"\\v": b"\v",
}
_COPY_ESCAPE_RE = re.compile(rb"\\[\\nrtbfv]")


def _copy_text(block: bytes) -> bytes:
    """COPY text-format rows (LF-ended) as the raw values, each ended by CRLF."""
    block = block.replace(b"\n", b"\r\n")  # raw LFs are row ends only: LFs in values are escaped
    if b"\\" in block:
        block = _COPY_ESCAPE_RE.sub(lambda match: _COPY_ESCAPES[match.group()], block)
    return block


@contextmanager
def _copy_out(connection, sql: str, params: tuple):
    """`COPY (sql) TO STDOUT` on a Django connection, the parameters merged client-side as Django's
    own cursor does (COPY takes no bind parameters)."""
    from psycopg import ClientCursor

    with connection.wrap_database_errors:
        connection.ensure_connection()
        with (
            ClientCursor(connection.connection) as cursor,
            cursor.copy(cursor.mogrify(f"COPY ({sql}) TO STDOUT", params)) as copy,
        ):
            yield copy


def _copy_on_own_connection(records: QuerySet, rows: int) -> Iterator[tuple[int, bytes]]:
    """PostgreSQL in autocommit (the worker, the command, a streamed download): one
    `COPY (SELECT …) TO STDOUT` on a connection of its own. COPY sends the lines with the least
    work (the server may run the SELECT in parallel), and holds its connection until it ends: the
    portal's connection stays free for the progress UPDATE between chunks. Nothing is uncommitted
    in autocommit, so both connections see the same records."""
    own = connections.create_connection(records.db)
    try:
        with _copy_out(own, *line_query(records)) as copy:
            pending: list[bytes] = []
            for row in copy:  # one message per row
                pending.append(row)
                if len(pending) >= rows:
                    yield len(pending), _copy_text(b"".join(pending))
                    pending = []
            if pending:
                yield len(pending), _copy_text(b"".join(pending))
    finally:
        own.close()


def _copy_pages(connection, records: QuerySet, rows: int) -> Iterator[tuple[int, bytes]]:
    """PostgreSQL inside a transaction: one `COPY (SELECT … WHERE id > last ORDER BY id LIMIT rows)
    TO STDOUT` per chunk on the caller's connection, each read to its end, so that the connection is
    free between chunks (for the progress UPDATE). Slower than one COPY (no parallel plan, a
    statement per chunk), but it sees the transaction's own rows. Pages add up to the selection:
    the log is append-only and the selection is pinned by `max_id`. (A server-side cursor would
    also need the transaction, and its FETCHes cost more than COPY.)
    """
    last_id = None
    while True:
        page = records if last_id is None else records.filter(id__gt=last_id)
        with _copy_out(connection, *line_query(page[:rows])) as copy:
            lines = list(copy)  # one message per row
        if not lines:
            return
        yield len(lines), _copy_text(b"".join(lines))
        if len(lines) < rows:
            return
        last_id = int(bytes(lines[-1][:24]).split(b",", 1)[0])  # the first cell is the id
