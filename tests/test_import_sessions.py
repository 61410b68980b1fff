"""manage.py import_sessions: the EMP's own session feed (JSON Lines), upserted by SessionID."""

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, ManagementUtility, call_command

from sessions.models import AuditRecord, ChargingSession, RemoteStopRequest
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory, UserFactory

pytestmark = pytest.mark.django_db
Event = AuditRecord.EventType
Status = ChargingSession.Status


def line(session_id: str | None = None, **fields) -> dict:
    data = {
        "SessionID": session_id or str(uuid.uuid4()),
        "EvseID": "DE*ACC*E0042*1",
        "EMPPartnerSessionID": "EMP-42",
        "SessionStart": "2026-01-05T10:00:00+01:00",
    }
    data.update(fields)
    return data


def write(tmp_path: Path, *rows, name: str = "feed.jsonl") -> Path:
    """Rows are dicts (written as JSON) or bytes/str (written as they are), one per line."""
    parts = []
    for row in rows:
        if isinstance(row, dict):
            parts.append(json.dumps(row).encode())
        elif isinstance(row, str):
            parts.append(row.encode())
        else:
            parts.append(row)
    path = tmp_path / name
    path.write_bytes(b"\n".join(parts) + b"\n")
    return path


def run(path: Path, *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_sessions", str(path), *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def run_failing(path: Path, *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("import_sessions", str(path), *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue() + str(raised.value)


def audit_count(event) -> int:
    return AuditRecord.objects.filter(event_type=event).count()


def test_dry_run_is_the_default_and_writes_nothing(tmp_path):
    existing = ChargingSessionFactory(evse_id="DE*ACC*E0042*1", operator_id="DE*ACC")
    path = write(tmp_path, line(), line(existing.session_id, Status="CLOSED", SessionEnd="2026-01-05T11:00:00+01:00"))
    sessions_before, audits_before = ChargingSession.objects.count(), AuditRecord.objects.count()

    out, err = run(path)

    assert ChargingSession.objects.count() == sessions_before
    assert AuditRecord.objects.count() == audits_before
    assert (
        "would create" in out and f"would update {existing.session_id}" in out and "status 'ACTIVE' → 'CLOSED'" in out
    )
    assert "Dry run: nothing was written" in out and err == ""


def test_commit_creates_and_updates_with_audit_records(tmp_path):
    existing = ChargingSessionFactory(evse_id="DE*ACC*E0042*1", operator_id="DE*ACC", energy_kwh=Decimal("1.000"))
    new_id = str(uuid.uuid4())
    path = write(
        tmp_path,
        line(new_id, EvseID="nl*fst*e0001*2", CPOPartnerSessionID="CPO-7", ConsumedEnergy=3.5),
        line(
            existing.session_id,
            SessionStart=existing.started_at.isoformat(),
            ConsumedEnergy=7.25,
            Status="CHARGING_ENDED",
            EMPPartnerSessionID=existing.emp_partner_session_id,
        ),
    )

    out, _ = run(path, "--commit")

    created = ChargingSession.objects.get(session_id=new_id)
    assert (created.evse_id, created.operator_id, created.provider_id) == ("NL*FST*E0001*2", "NL*FST", "DE-EMP")
    assert (created.status, created.energy_kwh, created.cpo_partner_session_id) == (
        Status.ACTIVE,
        Decimal("3.500"),
        "CPO-7",
    )
    assert created.started_at == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    existing.refresh_from_db()
    assert (existing.status, existing.energy_kwh) == (Status.CHARGING_ENDED, Decimal("7.250"))
    assert "1 created, 1 updated, 0 unchanged" in out

    imported = AuditRecord.objects.get(event_type=Event.SESSIONS_IMPORTED)
    assert {k: imported.data[k] for k in ("lines", "bad", "created", "updated", "unchanged")} == {
        "lines": 2,
        "bad": 0,
        "created": 1,
        "updated": 1,
        "unchanged": 0,
    }
    assert AuditRecord.objects.filter(event_type=Event.SESSION_CREATED, charging_session=created).count() == 1
    updated = AuditRecord.objects.get(event_type=Event.SESSION_UPDATED, charging_session=existing)
    assert updated.data["changes"] == {"energy_kwh": ["1.000", "7.250"], "status": ["ACTIVE", "CHARGING_ENDED"]}
    assert updated.data["line"] == 2


def test_importing_the_same_file_again_changes_nothing(tmp_path):
    path = write(tmp_path, line(), line(Status="CLOSED", SessionEnd="2026-01-05T12:00:00Z", ConsumedEnergy=9))
    run(path, "--commit")
    updates_before = audit_count(Event.SESSION_UPDATED)

    out, _ = run(path, "--commit")

    assert "0 created, 0 updated, 2 unchanged" in out
    assert audit_count(Event.SESSION_UPDATED) == updates_before
    assert audit_count(Event.SESSIONS_IMPORTED) == 2
    assert ChargingSession.objects.filter(status=Status.CLOSED, ended_at__isnull=False).count() == 1


def test_a_new_session_with_an_end_is_closed(tmp_path):
    session_id = str(uuid.uuid4())
    run(write(tmp_path, line(session_id, SessionEnd="2026-01-05T11:00:00+01:00")), "--commit")

    session = ChargingSession.objects.get(session_id=session_id)
    assert session.status == Status.CLOSED and session.ended_at == datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (line(EvseID="XX"), "EvseID: 'XX' is not an EvseID"),
        (line(SessionID="not-a-guid"), "SessionID: 'not-a-guid' is not a SessionID"),
        (line(SessionStart=None), "SessionStart: missing (required)"),
        (line(SessionStart="2026-01-05T10:00:00"), "SessionStart: '2026-01-05T10:00:00' has no UTC offset"),
        (line(SessionStart="yesterday"), "SessionStart: 'yesterday' is not an ISO 8601"),
        (
            line(SessionEnd="2026-01-05T09:00:00+01:00", Status="CLOSED"),
            "SessionEnd: 2026-01-05T09:00:00+01:00 is before",
        ),
        (line(SessionEnd="2026-01-05T11:00:00+01:00", Status="ACTIVE"), "SessionEnd: an ACTIVE session has no end"),
        (line(Status="DONE"), "Status: 'DONE' is not one of ACTIVE, CHARGING_ENDED, CLOSED"),
        (line(ConsumedEnergy=1.2345), "ConsumedEnergy: 1.2345 has more than 3 decimal places"),
        (line(ConsumedEnergy=-1), "ConsumedEnergy: -1 is not between 0"),
        (line(ConsumedEnergy="12"), "ConsumedEnergy: must be a number of kWh, not a string"),
        (line(ProviderID="nope!"), "ProviderID: 'nope!' is not a ProviderID"),
        (line(EMPPartnerSessionID="x" * 251), "EMPPartnerSessionID: longer than 250 characters"),
        (line(Sessionid="typo"), "Sessionid: not a field of the session feed"),
        ("[1, 2]", "must be a JSON object, not a list"),
        ('"just a string"', "must be a JSON object, not a string"),
        ("42", "must be a JSON object, not a number"),
        ('{"SessionID": ', "not valid JSON"),
        ('{"ConsumedEnergy": NaN}', "not valid JSON"),
        (b'{"EvseID": "DE*ACC*E1\xff"}', "not UTF-8 (byte 0xff at position 22)"),
    ],
)
def test_each_bad_line_is_reported_with_its_number_and_field(tmp_path, row, message):
    path = write(tmp_path, line(), "", row)

    out, err = run_failing(path, "--commit")

    assert f"line 3: {message}" in err
    assert "1 bad line(s)" in err
    assert "Nothing was written" in out
    assert ChargingSession.objects.count() == 0 and audit_count(Event.SESSIONS_IMPORTED) == 0


def test_several_problems_on_one_line_are_all_named(tmp_path):
    _, err = run_failing(write(tmp_path, line(EvseID="XX", SessionStart=None, Status="?")))

    assert "line 1: EvseID: 'XX' is not an EvseID; Status: '?' is not one of" in err
    assert "SessionStart: missing (required)" in err


def test_skip_bad_imports_the_good_lines_and_still_exits_non_zero(tmp_path):
    good = line()
    path = write(tmp_path, good, line(EvseID="XX"), line())

    out, err = run_failing(path, "--commit", "--skip-bad")

    assert (
        ChargingSession.objects.count() == 2 and ChargingSession.objects.filter(session_id=good["SessionID"]).exists()
    )
    assert "line 2: EvseID" in err and "2 created" in out
    imported = AuditRecord.objects.get(event_type=Event.SESSIONS_IMPORTED)
    assert imported.data["bad"] == 1 and imported.data["skip_bad"] is True and imported.data["errors"]


def test_dry_run_with_bad_lines_exits_non_zero_and_writes_nothing(tmp_path):
    out, err = run_failing(write(tmp_path, line(), line(EvseID="XX")))

    assert "line 2: EvseID" in err and "Dry run" in out
    assert ChargingSession.objects.count() == 0


def test_blank_lines_bom_and_crlf_are_fine(tmp_path):
    rows = [b"\xef\xbb\xbf" + json.dumps(line()).encode() + b"\r", b"   ", b"", json.dumps(line()).encode() + b"\r"]
    path = write(tmp_path, *rows)

    out, err = run(path, "--commit")

    assert "4 line(s), 2 blank, 0 bad" in out and err == ""
    assert ChargingSession.objects.count() == 2


def test_a_huge_line_is_refused_without_reading_it_whole(tmp_path):
    from sessions.inbound.imports import MAX_LINE_BYTES

    huge = json.dumps(line(EMPPartnerSessionID="x" * (MAX_LINE_BYTES * 3)))
    path = write(tmp_path, line(), huge, line())

    _, err = run_failing(path, "--commit", "--skip-bad")

    assert f"line 2: longer than {MAX_LINE_BYTES} bytes" in err
    assert ChargingSession.objects.count() == 2  # lines 1 and 3: the line count stayed right


def test_a_session_id_twice_in_the_file_is_bad(tmp_path):
    session_id = str(uuid.uuid4())
    _, err = run_failing(write(tmp_path, line(session_id), line(session_id.upper())))

    assert f"line 2: SessionID: {session_id.upper()} is also on line 1" in err


def test_conflicts_with_what_the_portal_knows_are_bad_lines(tmp_path):
    moved = ChargingSessionFactory(evse_id="DE*ACC*E0001*1", operator_id="DE*ACC")
    closed = ChargingSessionFactory(evse_id="DE*ACC*E0002*1", operator_id="DE*ACC", status=Status.CLOSED)
    with_cdr = ChargingSessionFactory(
        evse_id="DE*ACC*E0003*1",
        operator_id="DE*ACC",
        status=Status.CLOSED,
        cdr_received_at=datetime.now(UTC),
        energy_kwh=Decimal("5.000"),
    )
    stopping = ChargingSessionFactory(evse_id="DE*ACC*E0004*1", operator_id="DE*ACC")
    RemoteStopRequestFactory(charging_session=stopping, state=RemoteStopRequest.State.SENDING)
    path = write(
        tmp_path,
        line(moved.session_id, EvseID="DE*ACC*E9999*1"),
        line(closed.session_id, EvseID="DE*ACC*E0002*1", Status="ACTIVE"),
        line(
            with_cdr.session_id,
            EvseID="DE*ACC*E0003*1",
            SessionStart=with_cdr.started_at.isoformat(),
            EMPPartnerSessionID=with_cdr.emp_partner_session_id,
            ConsumedEnergy=6,
        ),
        line(stopping.session_id, EvseID="DE*ACC*E0004*1", Status="CLOSED", SessionEnd="2026-01-05T12:00:00Z"),
        line(),  # a good line: still nothing is written
    )

    _, err = run_failing(path, "--commit")

    assert "line 1: EvseID: 'DE*ACC*E9999*1' differs from 'DE*ACC*E0001*1'" in err
    assert "line 2: Status: CLOSED cannot go back to ACTIVE" in err
    assert "line 3: energy_kwh: the session has Hubject's CDR, which is final" in err
    assert "line 4: Status: a stop for this session is still being sent" in err
    assert "4 bad line(s)" in err
    moved.refresh_from_db()
    assert moved.evse_id == "DE*ACC*E0001*1"


def test_user_option_names_the_actor(tmp_path):
    supervisor = UserFactory(username="sup")
    run(write(tmp_path, line()), "--commit", "--user", "sup")

    assert AuditRecord.objects.get(event_type=Event.SESSIONS_IMPORTED).actor == supervisor
    assert AuditRecord.objects.get(event_type=Event.SESSION_CREATED).actor == supervisor
    with pytest.raises(CommandError, match="no such user"):
        call_command("import_sessions", str(write(tmp_path, line(), name="b.jsonl")), "--user", "nobody")


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_sessions", str(tmp_path / "absent.jsonl"))


def test_exit_status_is_one_for_bad_lines_and_zero_otherwise(tmp_path, capsys):
    good, bad = write(tmp_path, line(), name="good.jsonl"), write(tmp_path, line(EvseID="XX"), name="bad.jsonl")

    ManagementUtility(["manage.py", "import_sessions", str(good)]).execute()  # returns: exit status 0
    with pytest.raises(SystemExit) as exit_info:
        ManagementUtility(["manage.py", "import_sessions", str(bad)]).execute()

    assert exit_info.value.code == 1
    assert "line 1: EvseID: 'XX' is not an EvseID" in capsys.readouterr().err


def test_help_documents_the_line_format():
    from sessions.management.commands.import_sessions import Command

    text = Command().create_parser("manage.py", "import_sessions").format_help()
    for name in (
        "SessionID",
        "EvseID",
        "ProviderID",
        "Status",
        "SessionStart",
        "SessionEnd",
        "ConsumedEnergy",
        "--commit",
        "--skip-bad",
        "Exit status",
    ):
        assert name in text


def test_export_sim_sessions_writes_the_active_sessions_the_simulator_accepts(tmp_path):
    from sessions.oicp.simulator import session_violations

    active = ChargingSessionFactory(evse_id="DE*SLO*E0001*1", operator_id="DE*SLO", cpo_partner_session_id="CPO-1")
    ChargingSessionFactory(status=Status.CLOSED)
    target = tmp_path / "var" / "demo-sessions.json"

    out = StringIO()
    call_command("export_sim_sessions", str(target), stdout=out)

    [entry] = json.loads(target.read_text())
    assert entry["SessionID"] == active.session_id and entry["OperatorID"] == "DE*SLO"
    assert entry["CPOPartnerSessionID"] == "CPO-1" and entry["ChargingStart"].endswith("+00:00")
    assert session_violations(0, entry) == []
    assert "1 active session(s) written" in out.getvalue()


def test_an_import_takes_the_audit_chain_lock_once_at_the_end(tmp_path):
    """Services write their audit records last, at once: the chain lock (every other writer of the
    trail waits for it) is not held while the import writes its sessions."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    existing = ChargingSessionFactory(evse_id="DE*ACC*E0042*1", energy_kwh=Decimal("1.000"))
    path = write(
        tmp_path,
        line(),
        line(
            existing.session_id,
            SessionStart=existing.started_at.isoformat(),
            ConsumedEnergy=7.25,
            EMPPartnerSessionID=existing.emp_partner_session_id,
        ),
        line(SessionEnd="2026-01-05T11:00:00+01:00"),
    )
    with CaptureQueriesContext(connection) as queries:
        run(path, "--commit")
    sql = [query["sql"] for query in queries.captured_queries]
    head = [i for i, statement in enumerate(sql) if "auditchainhead" in statement]
    sessions = [
        i
        for i, statement in enumerate(sql)
        if "charging_sessions_chargingsession" in statement.split(" WHERE ")[0]
        and statement.startswith(("INSERT", "UPDATE"))
    ]
    assert len(head) == 2 and head[0] > max(sessions)  # read-and-lock, then move the head: after every session write
    assert audit_count(Event.SESSION_CREATED) == 2 and audit_count(Event.SESSION_UPDATED) == 1
    assert ChargingSession.objects.filter(ended_at__isnull=False).exclude(pk=existing.pk).count() == 1
