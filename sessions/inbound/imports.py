"""Import the EMP's own session feed (JSON Lines): upsert charging sessions by Hubject SessionID.

One JSON object per line, UTF-8 (a BOM is allowed), blank lines ignored:

    {"SessionID": "f98efba4-02d8-4fa0-b810-9a9d50d2c527",   required, Hubject's GUID-shaped SessionID
     "EvseID": "DE*ACC*E0042*1",                            required, an OICP EvseID
     "ProviderID": "DE-EMP",                                optional, default OICP_PROVIDER_ID
     "EMPPartnerSessionID": "EMP-1", "CPOPartnerSessionID": "CPO-9",   optional, at most 250 characters
     "Status": "ACTIVE",                 optional: ACTIVE, CHARGING_ENDED or CLOSED (new sessions:
                                         CLOSED when SessionEnd is given, else ACTIVE)
     "SessionStart": "2026-01-05T10:00:00+01:00",           required, ISO 8601 with seconds and a UTC offset
     "SessionEnd": "2026-01-05T11:02:00+01:00",             optional, not before SessionStart; not with ACTIVE
     "ConsumedEnergy": 12.345,                              optional, kWh, at most 3 decimals, not negative
     "EvcoID": "DE-EMP-C12345678-X",    optional: the driver's contract ID, at most 50 characters
     "UID": "04A23BC1D2E3F4",           optional: the card's UID, at most 50 characters
     "PrintedNumber": "9876 655"}       optional: the number printed on the card, at most 150 characters

The fields are checked as OICP's are when Hubject pushes them (`sessions.oicp.fields`): timestamps
in 1970–2199, no NUL or unpaired surrogate in strings, no key twice in one line.

A SessionID the portal does not know creates a session (SESSION_CREATED); a known one is updated
with the fields the line gives (SESSION_UPDATED naming each change); absent or null fields are left
as they are. A line is bad, and changes nothing, when it breaks these rules, repeats a SessionID
of an earlier line, gives a known session another EvseID or ProviderID, moves its status
backwards (ACTIVE → CHARGING_ENDED → CLOSED only), changes what Hubject's CDR settled, would
close a session whose stop is still being sent, or gives another contract ID, card UID or printed
number than the session has (the first value stays, as with Hubject's messages; the same value
spelled otherwise, "DEEMPC12345678X" for "DE-EMP-C12345678-X", changes nothing).

`import_sessions` is a dry run unless `commit`; with any bad line nothing is written unless
`skip_bad`. A commit runs in one transaction, with one SESSIONS_IMPORTED audit record.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import IO, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..audit.records import AuditEntry, record_audits
from ..charging.services import insert_charging_session, session_created_entry
from ..models import AuditRecord, ChargingSession, RemoteStopRequest
from ..oicp import fields, ids
from ..oicp.fields import FieldError, clip, json_type

Event = AuditRecord.EventType
Status = ChargingSession.Status

MAX_LINE_BYTES = 64 * 1024
MAX_REPORTED_ERRORS = 1000
LOOKUP_BATCH = 500
STATUS_ORDER = {Status.ACTIVE: 0, Status.CHARGING_ENDED: 1, Status.CLOSED: 2}


def _identification_value(max_length: int):
    """A contract ID, card UID or printed number: text, stored without its surrounding spaces."""
    text = fields.string(max_length)

    def parse(value: Any) -> str:
        value = text(value).strip()
        if not value:
            raise FieldError("empty")
        return value

    return parse


# Each field of a line: whether it is required, and its check (OICP's, shared with what Hubject pushes).
_RULES = {
    "SessionID": (True, fields.session_id),
    "EvseID": (True, fields.evse_id),
    "ProviderID": (False, fields.provider_id),
    "EMPPartnerSessionID": (False, fields.partner_session_id),
    "CPOPartnerSessionID": (False, fields.partner_session_id),
    "Status": (False, fields.enum(tuple(Status.values))),
    "SessionStart": (True, fields.timestamp),
    "SessionEnd": (False, fields.timestamp),
    "ConsumedEnergy": (False, fields.kwh),
    "EvcoID": (False, _identification_value(ids.CONTRACT_ID_MAX)),
    "UID": (False, _identification_value(ids.CARD_UID_MAX)),
    "PrintedNumber": (False, _identification_value(ids.PRINTED_NUMBER_MAX)),
}
# The feed's identification fields → the session's fields they fill (searched by ids.id_search_key).
_IDENTIFICATION = {"EvcoID": "contract_id", "UID": "card_uid", "PrintedNumber": "printed_number"}
FIELDS = tuple(_RULES)


class ImportFileError(Exception):
    """The file as a whole cannot be read (the message says why)."""


@dataclass(frozen=True)
class SessionLine:
    line: int
    session_id: str
    evse_id: str
    provider_id: str | None
    emp_partner_session_id: str | None
    cpo_partner_session_id: str | None
    status: str | None
    started_at: datetime
    ended_at: datetime | None
    energy_kwh: Decimal | None
    contract_id: str | None = None
    card_uid: str | None = None
    printed_number: str | None = None


@dataclass
class PlannedChange:
    line: int
    session_id: str
    action: str  # "create", "update" or "unchanged"
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def describe(self, *, done: bool = True) -> str:
        would = "" if done else "would "
        if self.action == "create":
            return f"line {self.line}: {would}create {self.session_id}"
        if self.action == "unchanged":
            return f"line {self.line}: {self.session_id} unchanged"
        parts = ", ".join(f"{name} {_display(old)} → {_display(new)}" for name, (old, new) in self.changes.items())
        return f"line {self.line}: {would}update {self.session_id}: {parts}"


@dataclass
class ImportReport:
    source: str
    commit: bool
    skip_bad: bool
    lines: int = 0
    blank: int = 0
    bad: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    written: bool = False  # something was written to the database
    errors: list[str] = field(default_factory=list)  # "line 7: EvseID: 'XX' is not an EvseID"
    planned: list[PlannedChange] = field(default_factory=list)
    audit_record_id: int | None = None

    @property
    def ok(self) -> bool:
        return self.bad == 0

    @property
    def refused(self) -> bool:
        """A commit that wrote nothing because of bad lines."""
        return self.commit and self.bad > 0 and not self.skip_bad

    def error(self, line: int, message: str) -> None:
        self.bad += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(f"line {line}: {message}")

    def summary(self) -> str:
        mode = "Imported" if self.written else ("Would import" if not self.refused else "Refused to import")
        text = (
            f"{mode} {self.source}: {self.lines} line(s), {self.blank} blank, {self.bad} bad; "
            f"{self.created} to create, {self.updated} to update, {self.unchanged} unchanged."
        )
        if self.written:
            text = (
                f"Imported {self.source}: {self.lines} line(s), {self.blank} blank, {self.bad} bad (skipped); "
                f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged."
            )
        elif self.refused:
            text += " Nothing was written: fix the bad lines, or pass --skip-bad to import the good ones."
        elif not self.commit:
            text += " Dry run: nothing was written (pass --commit to write)."
        return text


# --- reading and validating ------------------------------------------------------------------


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) per line; None for a line longer than MAX_LINE_BYTES (read past, not kept)."""
    number = 0
    while True:
        chunk = stream.readline(MAX_LINE_BYTES + 1)
        if not chunk:
            return
        number += 1
        if len(chunk) > MAX_LINE_BYTES and not chunk.endswith(b"\n"):
            while chunk and not chunk.endswith(b"\n"):
                chunk = stream.readline(MAX_LINE_BYTES)
            yield number, None
            continue
        yield number, chunk


def _display(value: Any) -> str:
    """An old or new value in a planned change: strings quoted, timestamps in ISO 8601."""
    if isinstance(value, datetime):
        return value.isoformat()
    return repr(clip(value, 60)) if isinstance(value, str) else str(value)


def _parse_line(number: int, raw: bytes) -> tuple[SessionLine | None, list[str]]:
    """The line's session, or None and its problems (each naming the field)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [f"not UTF-8 (byte 0x{raw[exc.start]:02x} at position {exc.start + 1})"]
    if number == 1:
        text = text.removeprefix("\ufeff")
    try:
        data = fields.load_json(text)
    except FieldError as exc:  # not JSON, NaN, nested too deeply, a key twice
        return None, [str(exc)]
    if not isinstance(data, dict):
        return None, [f"must be a JSON object, not {json_type(data)}"]
    problems = [f"{clip(name)}: not a field of the session feed" for name in data if name not in FIELDS]
    values: dict[str, Any] = {}
    for name, (required, parse) in _RULES.items():
        value = data.get(name)
        if value is None:
            if required:
                problems.append(f"{name}: missing (required)")
            continue
        try:
            values[name] = parse(value)
        except FieldError as exc:
            problems.append(f"{name}: {exc}")
    start, end = values.get("SessionStart"), values.get("SessionEnd")
    if start and end and end < start:
        problems.append(f"SessionEnd: {end.isoformat()} is before SessionStart {start.isoformat()}")
    if end and values.get("Status") == Status.ACTIVE:
        problems.append("SessionEnd: an ACTIVE session has no end; give Status CHARGING_ENDED or CLOSED")
    if problems:
        return None, problems
    return SessionLine(
        line=number,
        session_id=values["SessionID"],
        evse_id=values["EvseID"],
        provider_id=values.get("ProviderID"),
        emp_partner_session_id=values.get("EMPPartnerSessionID"),
        cpo_partner_session_id=values.get("CPOPartnerSessionID"),
        status=values.get("Status"),
        started_at=values["SessionStart"],
        ended_at=end,
        energy_kwh=values.get("ConsumedEnergy"),
        **{attr: values.get(name) for name, attr in _IDENTIFICATION.items()},
    ), []


def read_session_lines(stream: IO[bytes], report: ImportReport) -> list[SessionLine]:
    """Every good line; bad ones (and SessionIDs repeated in the file) go to the report."""
    rows: list[SessionLine] = []
    first_line: dict[str, int] = {}
    for number, raw in _lines(stream):
        report.lines += 1
        if raw is None:
            report.error(number, f"longer than {MAX_LINE_BYTES} bytes")
            continue
        if not raw.strip() or (number == 1 and not raw.removeprefix(b"\xef\xbb\xbf").strip()):
            report.blank += 1
            continue
        row, problems = _parse_line(number, raw)
        if row is None:
            report.error(number, "; ".join(problems))
            continue
        key = ids.session_key(row.session_id)
        if key in first_line:
            report.error(number, f"SessionID: {row.session_id} is also on line {first_line[key]}")
            continue
        first_line[key] = number
        rows.append(row)
    return rows


# --- planning and applying -------------------------------------------------------------------


def _existing(session_ids: list[str], lock: bool) -> dict[str, ChargingSession]:
    found: dict[str, ChargingSession] = {}
    for start in range(0, len(session_ids), LOOKUP_BATCH):
        keys = [ids.session_key(session_id) for session_id in session_ids[start : start + LOOKUP_BATCH]]
        query = ChargingSession.objects.filter(session_key__in=keys)
        if lock:
            query = query.select_for_update()
        found.update({ids.session_key(s.session_id): s for s in query})
    return found


def _changes(row: SessionLine, current: ChargingSession, sending: set[int]) -> tuple[dict[str, tuple], list[str]]:
    """The field changes a line makes to a known session, or the reasons it may not."""
    problems: list[str] = []
    if row.evse_id != current.evse_id:
        problems.append(
            f"EvseID: {row.evse_id!r} differs from {current.evse_id!r}, the EvseID the portal has for this SessionID"
        )
    if row.provider_id and row.provider_id != current.provider_id:
        problems.append(f"ProviderID: {row.provider_id!r} differs from the portal's {current.provider_id!r}")
    wanted: dict[str, Any] = {"started_at": row.started_at}
    for attr in ("emp_partner_session_id", "cpo_partner_session_id", "ended_at", "energy_kwh", "status"):
        value = getattr(row, attr)
        if value is not None:
            wanted[attr] = value
    for name, attr in _IDENTIFICATION.items():
        value, known = getattr(row, attr), getattr(current, attr)
        if value is None or ids.id_search_key(value) == ids.id_search_key(known):
            continue
        if known:
            what = current._meta.get_field(attr).verbose_name
            problems.append(f"{name}: {value!r} differs from {known!r}, the {what} the portal has for this SessionID")
        else:
            wanted[attr] = value
    changes = {
        name: (getattr(current, name), value) for name, value in wanted.items() if getattr(current, name) != value
    }
    if "status" in changes and STATUS_ORDER[row.status] < STATUS_ORDER[current.status]:
        problems.append(f"Status: {current.status} cannot go back to {row.status}")
    settled = {"ended_at", "energy_kwh", "status"} & set(changes)
    if current.cdr_received_at is not None and settled:
        problems.append(f"{', '.join(sorted(settled))}: the session has Hubject's CDR, which is final")
    if changes.get("status", (None, None))[1] == Status.CLOSED and current.pk in sending:
        problems.append("Status: a stop for this session is still being sent; import again after its answer")
    return changes, problems


def _plan(rows: list[SessionLine], report: ImportReport, lock: bool) -> list[tuple[SessionLine, PlannedChange]]:
    existing = _existing([row.session_id for row in rows], lock)
    sending = (
        set(
            RemoteStopRequest.objects.filter(
                charging_session__in=list(existing.values()), state__in=RemoteStopRequest.OPEN_STATES
            ).values_list("charging_session_id", flat=True)
        )
        if existing
        else set()
    )
    planned = []
    for row in rows:
        current = existing.get(ids.session_key(row.session_id))
        if current is None:
            change = PlannedChange(row.line, row.session_id, "create")
        else:
            changes, problems = _changes(row, current, sending)
            if problems:
                report.error(row.line, "; ".join(problems))
                continue
            change = PlannedChange(row.line, row.session_id, "update" if changes else "unchanged", changes)
        planned.append((row, change))
    return planned


def _count(report: ImportReport, planned: list[tuple[SessionLine, PlannedChange]]) -> None:
    report.planned = [change for _, change in planned]
    report.created = sum(1 for c in report.planned if c.action == "create")
    report.updated = sum(1 for c in report.planned if c.action == "update")
    report.unchanged = sum(1 for c in report.planned if c.action == "unchanged")


def _apply(row: SessionLine, change: PlannedChange, *, acting_user, source: str) -> AuditEntry | None:
    """Write one planned change; its audit entry, which the caller appends with all the others last
    (the audit service's rule: the chain lock is held only for the final INSERT, not the import)."""
    if change.action == "create":
        charging_session = insert_charging_session(
            session_id=row.session_id,
            evse_id=row.evse_id,
            provider_id=row.provider_id or settings.OICP_PROVIDER_ID,
            started_at=row.started_at,
            emp_partner_session_id=row.emp_partner_session_id or "",
            cpo_partner_session_id=row.cpo_partner_session_id or "",
            energy_kwh=row.energy_kwh,
            **{attr: getattr(row, attr) for attr in _IDENTIFICATION.values() if getattr(row, attr)},
            **({"ended_at": row.ended_at} if row.ended_at else {}),
            status=row.status or (Status.CLOSED if row.ended_at else Status.ACTIVE),
        )
        return session_created_entry(
            charging_session, source=f"import:{source}:line {row.line}", acting_user=acting_user
        )
    if change.action != "update":
        return None
    charging_session = ChargingSession.objects.get(session_key=ids.session_key(row.session_id))
    for name, (_, new) in change.changes.items():
        setattr(charging_session, name, new)
    charging_session.last_update_at = timezone.now()
    charging_session.save(update_fields=[*change.changes, "last_update_at"])
    return AuditEntry(
        event_type=Event.SESSION_UPDATED,
        actor=acting_user,
        charging_session=charging_session,
        data={
            "source": f"import:{source}",
            "line": row.line,
            "changes": {name: [_jsonable(old), _jsonable(new)] for name, (old, new) in change.changes.items()},
        },
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def import_sessions(
    *, stream: IO[bytes], source: str, commit: bool = False, skip_bad: bool = False, acting_user=None
) -> ImportReport:
    """Validate every line, then (with `commit`) create and update sessions in one transaction.

    Dry run by default. With any bad line a commit writes nothing unless `skip_bad`.
    """
    report = ImportReport(source=source, commit=commit, skip_bad=skip_bad)
    try:
        rows = read_session_lines(stream, report)
    except OSError as exc:
        raise ImportFileError(f"{source}: cannot be read ({exc})") from exc
    if not commit:
        _count(report, _plan(rows, report, lock=False))
        return report
    if report.bad and not skip_bad:
        _count(report, _plan(rows, report, lock=False))
        return report
    with transaction.atomic():
        planned = _plan(rows, report, lock=True)  # again, with the rows locked: what is written is what was checked
        if report.bad and not skip_bad:
            _count(report, planned)
            return report
        _count(report, planned)
        entries = [
            entry for row, change in planned if (entry := _apply(row, change, acting_user=acting_user, source=source))
        ]
        summary = AuditEntry(
            event_type=Event.SESSIONS_IMPORTED,
            actor=acting_user,
            data={
                "source": source,
                "lines": report.lines,
                "blank": report.blank,
                "bad": report.bad,
                "skip_bad": skip_bad,
                "created": report.created,
                "updated": report.updated,
                "unchanged": report.unchanged,
                "errors": report.errors[:50],
            },
        )
        audit = record_audits([*entries, summary])[-1]
    report.written = True
    report.audit_record_id = audit.pk
    return report
