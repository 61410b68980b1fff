"""The `outcome` column: its words come from one table (sessions.audit.outcomes.RULES), read in Python
(JSON Lines) and compiled into SQL (the CSV and XLSX rows, rendered by the database); both give the
same text for records of any shape, on SQLite and on PostgreSQL."""

import csv
import io
import json

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from sessions import services
from sessions.audit import export_formats as exports
from sessions.audit import export_sql as exports_sql
from sessions.audit import outcomes as audit_outcomes
from sessions.audit.outcomes import RULES, outcome_text
from sessions.audit.selectors import AuditLogFilters
from sessions.models import AuditRecord
from tests.factories import UserFactory

Event = AuditRecord.EventType


def store(event_type, data):
    """A record straight into the table (no chain: these tests read words, not hashes)."""
    return AuditRecord.objects.create(event_type=event_type, occurred_at=timezone.now(), data=data)


def sql_words(records):
    ids = [record.pk for record in records]
    found = dict(
        AuditRecord.objects.filter(pk__in=ids).annotate(words=exports_sql.OutcomeText()).values_list("pk", "words")
    )
    return [found[pk] for pk in ids]


def csv_words(records):
    """The outcome cells of the CSV lines the database renders for these records."""
    queryset = AuditRecord.objects.filter(pk__in=[record.pk for record in records])
    body = b"".join(lines for _, lines in exports_sql.line_chunks(queryset, 1000)).decode()
    column = exports.COLUMNS.index("outcome")
    by_id = {int(row[0]): row[column] for row in csv.reader(io.StringIO(body, newline=""))}
    return [by_id[record.pk] for record in records]


def python_words(records):
    stored = {r.pk: r for r in AuditRecord.objects.filter(pk__in=[record.pk for record in records])}
    return [outcome_text(stored[record.pk].event_type, stored[record.pk].data) for record in records]


# --- what the words say -------------------------------------------------------------------------


EXAMPLES = [
    (
        Event.STOP_FAILED,
        {"attempt": 3, "oicp_code": "310", "failure_kind": "", "http_status": 200},
        "Stop failed: 310 Partner did not respond (attempt 3 of 3)",
    ),
    (
        Event.STOP_FAILED,
        {"attempt": 1, "failure_kind": "worker_lost", "outcome_unknown": True},
        "Stop failed: Worker stopped while waiting (attempt 1 of 3); outcome unknown (the CPO may have stopped it)",
    ),
    (
        Event.STOP_FAILED,
        {"attempt": 2, "oicp_code": "", "failure_kind": "http_error", "http_status": 503},
        "Stop failed: Hubject answered with an HTTP error (HTTP 503) (attempt 2 of 3)",
    ),
    (
        Event.STOP_ATTEMPT_FAILED,
        {"attempt": 1, "oicp_code": "", "failure_kind": "timeout", "http_status": None},
        "Attempt failed, retrying: No answer in time (attempt 1 of 3)",
    ),
    (Event.STOP_ACCEPTED, {"attempt": 1, "oicp_code": "000"}, "Stop accepted"),
    (Event.STOP_REJECTED, {"attempt": 1, "oicp_code": "501"}, "Stop rejected: 501 Communication to EVSE failed"),
    (
        Event.STOP_REJECTED,
        {"failure_kind": "session_ended", "sent": False, "attempt": 0},
        "Stop not sent: Session already ended",
    ),
    (Event.STOP_REJECTED, {"oicp_code": "999"}, "Stop rejected: OICP code 999"),
    (Event.STOP_SENDING, {"attempt": 2, "max_attempts": 5}, "Stop sent to Hubject (attempt 2 of 5)"),
    (
        Event.STOP_REQUESTED,
        {"reason": "CABLE_LOCKED", "case_reference": "T-42"},
        "Stop requested: Cable locked / cannot unplug, case T-42",
    ),
    (Event.STOP_CONFIRMED, {"confirmed_by": "END"}, "Stop confirmed by the End notification"),
    (Event.STOP_UNCONFIRMED, {"waited_minutes": 15}, "Stop not confirmed: no End notification or CDR within 15 min"),
    (Event.CDR_RECEIVED, {"kind": "CDR", "source": "PULL", "duplicate": False}, "CDR received (pulled)"),
    (
        Event.CDR_RECEIVED,
        {"source": "PUSH", "duplicate": True, "held_back": True},
        "CDR received (pushed); a repeat of the stored CDR; held back: it does not match the session",
    ),
    (Event.SESSION_CREATED, {"source": "NOTIFICATION_START"}, "Session created from a Start notification"),
    (Event.SESSION_CREATED, {"source": "import:march.csv:line 3"}, "Session created (import:march.csv:line 3)"),
    (Event.NOTIFICATION_RECEIVED, {"kind": "END", "session_created": False}, "End notification received"),
    (Event.AUDIT_VERIFIED, {"ok": False, "first_broken_id": 17}, "Audit chain verified: BROKEN at record 17"),
    (Event.AUDIT_VERIFIED, {"ok": True, "records_checked": 1}, "Audit chain verified: intact, 1 record checked"),
    (
        Event.AUDIT_EXPORTED,
        {"row_count": 4, "format": "jsonl", "completed": True},
        "Audit log exported: 4 records as JSON Lines",
    ),
    (Event.LEGAL_HOLD_CHANGED, {"action": "set", "reason": "Case 12"}, "Legal hold set: Case 12"),
    (Event.SESSION_UPDATED, {"n": 1}, "Session updated"),
    ("SOMETHING_ELSE", {}, "SOMETHING_ELSE"),
]


@pytest.mark.parametrize("event_type, data, expected", EXAMPLES, ids=[e[2][:40] for e in EXAMPLES])
def test_the_words_of_an_outcome(db, event_type, data, expected):
    record = store(event_type, data)
    assert outcome_text(event_type, data) == expected
    assert sql_words([record]) == [expected] == csv_words([record])


def test_the_maximum_of_attempts_is_the_records_own_else_the_current_setting(db, settings):
    settings.OICP_MAX_ATTEMPTS = 4
    records = [
        store(Event.STOP_FAILED, {"attempt": 4, "oicp_code": "310"}),
        store(Event.STOP_SENDING, {"attempt": 1, "max_attempts": 2}),
    ]
    assert (
        python_words(records)
        == sql_words(records)
        == ["Stop failed: 310 Partner did not respond (attempt 4 of 4)", "Stop sent to Hubject (attempt 1 of 2)"]
    )


def test_every_event_type_has_its_words_and_none_starts_like_a_formula(db):
    """Every rule starts with a literal word, whatever the data says (so no cell needs neutralising)."""
    keys = sorted(_keys_read())
    hostile = [
        {key: "=HYPERLINK(1)" for key in keys},
        {key: "-1" for key in keys},
        {},
        {key: True for key in keys},
        {key: False for key in keys},
        {key: 7 for key in keys},
    ]
    for event_type in Event.values:
        for data in hostile:
            text = outcome_text(event_type, data)
            assert text[:1].isalpha(), (event_type, data, text)
    assert set(RULES) == set(Event.values)


# --- one source of truth: the Python reader and the SQL give the same text ---------------------


def _keys_read():
    keys = set()

    def walk(parts):
        for part in parts:
            if isinstance(part, audit_outcomes.If):
                keys.add(part.condition.key)
                walk(part.then)
                walk(part.otherwise)
            elif hasattr(part, "key"):
                keys.add(part.key)

    for rule in RULES.values():
        walk(rule)
    return keys


def _known_values():
    values = set()

    def walk(parts):
        for part in parts:
            if isinstance(part, audit_outcomes.Words):
                values.update(part.table)
            elif isinstance(part, audit_outcomes.If):
                if isinstance(part.condition, audit_outcomes.Equals):
                    values.add(part.condition.value)
                walk(part.then)
                walk(part.otherwise)

    for rule in RULES.values():
        walk(rule)
    return sorted(values)


AWKWARD_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\\u0000",
    "back\\slash",
    'say "hi"',
    "it's",
    "100%",
    "%s",
    "%(x)s",
    "line\nfeed",
    "tab\t",
    "=1+1",
    "-2",
    "naïve ✓ 東京 🚗",
    "\u2028",
    "true",
    "1",
    "null",
    "{}",
    "[1]",
]
texts = st.one_of(
    st.sampled_from(AWKWARD_TEXT),
    st.sampled_from(_known_values()),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
)
scalars = st.one_of(
    texts,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, 2, 3, -1]),
    # Python writes floats of 1e16 and more with an exponent, which jsonb keeps as an integer: the
    # portal never stores such numbers, so they are left out.
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15),
    st.booleans(),
    st.none(),
)
values = st.one_of(
    scalars, st.lists(scalars, max_size=3), st.dictionaries(st.sampled_from(["a", "b"]), scalars, max_size=2)
)
members = st.dictionaries(st.sampled_from(sorted(_keys_read()) + ["request", "other"]), values, max_size=6)
documents = st.one_of(members, members, scalars.filter(lambda value: value is not None), st.lists(scalars, max_size=2))
events = st.sampled_from([*Event.values, "CUSTOM_EVENT"])


@hypothesis_settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(st.lists(st.tuples(events, documents), min_size=1, max_size=25))
def test_python_and_sql_give_the_same_words_for_records_of_any_shape(db, batch):
    records = [store(event_type, data) for event_type, data in batch]
    expected = python_words(records)
    assert sql_words(records) == expected
    assert csv_words(records) == expected


def test_the_words_are_read_from_the_data_as_stored(db):
    """Each rule with every member present: the happy paths of all branches, both ways."""
    rich = {
        "attempt": 2,
        "max_attempts": 3,
        "oicp_code": "400",
        "failure_kind": "timeout",
        "http_status": 400,
        "outcome_unknown": True,
        "reason": "OTHER",
        "case_reference": "C-1",
        "confirmed_by": "CDR",
        "waited_minutes": 1,
        "source": "CDR_PULL",
        "kind": "PROGRESS",
        "session_created": True,
        "held_back": True,
        "duplicate": True,
        "seen": 1,
        "new": 0,
        "ok": False,
        "failure": "timeout",
        "created": 1,
        "updated": 2,
        "delivery": "file downloaded",
        "export_id": 9,
        "row_count": 1,
        "format": "xlsx",
        "completed": False,
        "records_checked": 5,
        "first_broken_id": 3,
        "count": 2,
        "action": "released",
        "sent": True,
    }
    records = [store(event_type, rich) for event_type in Event.values]
    records += [
        store(event_type, {**rich, "ok": True, "delivery": "download", "action": "set", "sent": False, "oicp_code": ""})
        for event_type in Event.values
    ]
    assert sql_words(records) == python_words(records) == csv_words(records)


def test_jsonl_csv_and_xlsx_carry_the_same_outcome(db, settings, tmp_path):
    from openpyxl import load_workbook

    settings.AUDIT_EXPORT_DIR = tmp_path
    for event_type, data, _ in EXAMPLES:
        store(event_type, data)
    user = UserFactory(username="exporter-o")
    bodies = {}
    for fmt in ("csv", "jsonl", "xlsx"):
        export = services.prepare_audit_export(filters=AuditLogFilters(), export_format=fmt, acting_user=user)
        if fmt == "xlsx":
            export = services.write_audit_export(export_id=export.pk)
            bodies[fmt] = (tmp_path / export.file_name).read_bytes()
        else:
            bodies[fmt] = b"".join(services.stream_audit_export(export=export))
    expected = [example[2] for example in EXAMPLES]
    csv_lines = "".join(line for line in bodies["csv"].decode().splitlines(True) if not line.startswith("#"))
    rows = list(csv.reader(io.StringIO(csv_lines, newline="")))
    assert [row[exports.COLUMNS.index("outcome")] for row in rows[1:]][: len(expected)] == expected
    lines = bodies["jsonl"].decode().splitlines()[1:-1]
    assert [json.loads(line)["outcome"] for line in lines][: len(expected)] == expected
    sheet = list(load_workbook(io.BytesIO(bodies["xlsx"]), read_only=True)["Audit log"].iter_rows(values_only=True))
    assert [row[exports.COLUMNS.index("outcome")] for row in sheet[1:]][: len(expected)] == expected


def test_a_changed_word_changes_both_readers_and_survives_the_drivers_formatting(db, monkeypatch):
    """The SQL is generated from RULES at each query: edit a rule and both readers follow."""
    monkeypatch.setitem(RULES, Event.SESSION_UPDATED, ("100% updated (", audit_outcomes.Text("source"), ")"))
    records = [store(Event.SESSION_UPDATED, {"source": "%s %%"})]
    assert sql_words(records) == python_words(records) == csv_words(records) == ["100% updated (%s %%)"]


@pytest.mark.postgres
def test_postgres_parses_each_records_data_once_and_without_a_correlated_sub_select(db):
    """A correlated sub-select per row would keep PostgreSQL from reading the export in parallel, and
    a parse per use of `data` would multiply the cost: the CSV query has neither."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the query plan is PostgreSQL's")
    store(Event.STOP_FAILED, {"attempt": 1, "oicp_code": "310"})
    sql, params = exports_sql.line_query(AuditRecord.objects.order_by("id"))
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (VERBOSE) " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "SubPlan" not in plan
    outer = plan.splitlines()[1]  # the words: read from the inner query's one parse of each record
    assert "csv_document ->" in outer and "::jsonb" not in outer.replace("'::jsonb", "")
