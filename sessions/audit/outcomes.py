"""The outcome of an audit record in plain words, written once.

"Stop failed: 310 Partner did not respond (attempt 3 of 3)", "Stop accepted", "CDR received (pulled)",
"Session created from a Start notification": the `outcome` column of every export format.

The words live only in RULES below, a small declarative table (literal text, members of the record's
`data`, conditions). Two readers interpret the same table:

- `outcome_text(event_type, data)` in Python (JSON Lines, tests, screens);
- `exports_sql.OutcomeText` compiles it into one SQL CASE, so that the database renders the column
  of the CSV lines (and so of the XLSX rows, which are read back from them).

A test renders records of every shape both ways, on SQLite and on PostgreSQL, and compares the text.
To keep the two readers exactly alike, RULES read only three kinds of values from `data`: a member
that is a JSON string (`Text`), a JSON integer (`Int`), or whether a member is JSON true or false
(`Flag`); anything else counts as absent. Only top-level members are read. Every rule starts with a
literal word, so the text never starts like a spreadsheet formula (no neutralising needed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from ..models import AuditRecord, StopReason
from ..oicp.status_codes import FAILURE_PLAYBOOK, HUBJECT_DESCRIPTIONS

Event = AuditRecord.EventType


# --- the vocabulary of the table ---------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """A member of `data` that is a JSON string. As a condition: present and not empty."""

    key: str


@dataclass(frozen=True)
class Int:
    """A member of `data` that is a JSON integer, in decimal. As a condition: present."""

    key: str


@dataclass(frozen=True)
class Flag:
    """Condition: the member is JSON `true` (or `false`, with value=False)."""

    key: str
    value: bool = True


@dataclass(frozen=True)
class Equals:
    """Condition: the member is the JSON string `value`."""

    key: str
    value: str


@dataclass(frozen=True)
class Words:
    """A `Text` member in words: a known value from `table`, any other as before + value + after."""

    key: str
    table: Mapping[str, str] = field(hash=False)
    before: str = ""
    after: str = ""


@dataclass(frozen=True)
class Count:
    """An `Int` member and its noun: "1 record", "3 records"."""

    key: str
    singular: str
    plural: str


@dataclass(frozen=True)
class Setting:
    """The current value of a setting (where a record does not say it itself)."""

    name: str


@dataclass(frozen=True)
class If:
    condition: Condition
    then: tuple[Part, ...]
    otherwise: tuple[Part, ...] = ()


Condition = Text | Int | Flag | Equals
Part = str | Text | Int | Words | Count | Setting | If


# --- the words -------------------------------------------------------------------------------------


def _sentence(text: str) -> str:
    return text.rstrip(".").strip()


# "310 Partner did not respond": the code and Hubject's description (the OICP 2.3 table).
OICP_CODE_WORDS = {code: f"{code} {_sentence(description)}" for code, description in HUBJECT_DESCRIPTIONS.items()}
# Outcomes without an OICP code (timeout, connection, ...): the playbook's short title.
FAILURE_WORDS = {kind: _sentence(info.description) for kind, info in FAILURE_PLAYBOOK.items()}
STOP_REASON_WORDS = dict(StopReason.choices)
NOTIFICATION_WORDS = {
    "START": "Start notification received",
    "PROGRESS": "Progress notification received",
    "END": "End notification received",
    "ERROR": "Error notification received",
}
SESSION_SOURCE_WORDS = {
    "NOTIFICATION_START": "Session created from a Start notification",
    "NOTIFICATION_PROGRESS": "Session created from a Progress notification (learned late)",
    "NOTIFICATION_END": "Session created from an End notification (learned late)",
    "NOTIFICATION_ERROR": "Session created from an Error notification (learned late)",
    "CDR_PUSH": "Session created from a pushed CDR (learned late)",
    "CDR_PULL": "Session created from a pulled CDR (learned late)",
    "demo": "Session created (demo data)",
}
FORMAT_WORDS = {"csv": "CSV", "jsonl": "JSON Lines", "xlsx": "XLSX"}

# Why a stop attempt did not succeed: the OICP code when Hubject answered with one, else the
# transport failure (with the HTTP status when there was one).
_WHY = If(
    Text("oicp_code"),
    (Words("oicp_code", OICP_CODE_WORDS, before="OICP code "),),
    (
        If(
            Text("failure_kind"),
            (Words("failure_kind", FAILURE_WORDS), If(Int("http_status"), (" (HTTP ", Int("http_status"), ")"))),
            ("no reason recorded",),
        ),
    ),
)
# The STOP_SENDING record says the maximum; an attempt's result does not: then the current setting.
_ATTEMPT = If(
    Int("attempt"),
    (
        " (attempt ",
        Int("attempt"),
        " of ",
        If(Int("max_attempts"), (Int("max_attempts"),), (Setting("OICP_MAX_ATTEMPTS"),)),
        ")",
    ),
)
_OUTCOME_UNKNOWN = If(Flag("outcome_unknown"), ("; outcome unknown (the CPO may have stopped it)",))
_HELD_BACK = If(Flag("held_back"), ("; held back: it does not match the session",))
_USERNAME = If(Text("username"), (": ", Text("username")))

RULES: dict[str, tuple[Part, ...]] = {
    Event.STOP_REQUESTED: (
        "Stop requested",
        If(Text("reason"), (": ", Words("reason", STOP_REASON_WORDS))),
        If(Text("case_reference"), (", case ", Text("case_reference"))),
    ),
    Event.STOP_REFUSED: ("Stop refused by the portal", If(Text("reason"), (": ", Text("reason")))),
    Event.STOP_SENDING: ("Stop sent to Hubject", _ATTEMPT),
    Event.STOP_ACCEPTED: ("Stop accepted",),
    Event.STOP_REJECTED: (If(Flag("sent", False), ("Stop not sent: ", _WHY), ("Stop rejected: ", _WHY)),),
    Event.STOP_ATTEMPT_FAILED: ("Attempt failed, retrying: ", _WHY, _ATTEMPT, _OUTCOME_UNKNOWN),
    Event.STOP_FAILED: ("Stop failed: ", _WHY, _ATTEMPT, _OUTCOME_UNKNOWN),
    Event.STOP_CONFIRMED: (
        "Stop confirmed",
        If(Text("confirmed_by"), (" by ", Words("confirmed_by", {"END": "the End notification", "CDR": "the CDR"}))),
    ),
    Event.STOP_UNCONFIRMED: (
        "Stop not confirmed",
        If(Int("waited_minutes"), (": no End notification or CDR within ", Int("waited_minutes"), " min")),
    ),
    Event.SESSION_CREATED: (
        If(
            Text("source"),
            (Words("source", SESSION_SOURCE_WORDS, before="Session created (", after=")"),),
            ("Session created",),
        ),
    ),
    Event.SESSION_UPDATED: ("Session updated", If(Text("source"), (" (", Text("source"), ")"))),
    Event.SESSION_CLOSED_MANUALLY: (
        "Session closed by hand, no remote stop sent",
        If(Text("reason"), (": ", Text("reason"))),
    ),
    Event.NOTIFICATION_RECEIVED: (
        If(
            Text("kind"),
            (Words("kind", NOTIFICATION_WORDS, before="Charging notification (", after=") received"),),
            ("Charging notification received",),
        ),
        If(Flag("session_created"), ("; session created",)),
        _HELD_BACK,
    ),
    Event.CDR_RECEIVED: (
        "CDR received",
        If(Text("source"), (" (", Words("source", {"PUSH": "pushed", "PULL": "pulled"}), ")")),
        If(Flag("duplicate"), ("; a repeat of the stored CDR",)),
        If(Flag("session_created"), ("; session created",)),
        _HELD_BACK,
    ),
    Event.INBOUND_REFUSED: ("Inbound OICP call refused", If(Text("reason"), (": ", Text("reason")))),
    Event.RECONCILIATION_RUN: (
        "CDR pull",
        If(Int("seen"), (": ", Count("seen", "CDR seen", "CDRs seen"), If(Int("new"), (", ", Int("new"), " new")))),
        If(Flag("ok", False), ("; failed", If(Text("failure"), (": ", Text("failure"))))),
    ),
    Event.EVSE_DATA_PULLED: (
        "EVSE directory pulled",
        If(Text("kind"), (" (", Text("kind"), ")")),
        ": ",
        Int("added"),
        " added, ",
        Int("changed"),
        " changed, ",
        Int("deleted"),
        " deleted",
        If(Int("refused"), (", ", Int("refused"), " refused")),
        If(Flag("ok", False), ("; failed", If(Text("failure"), (": ", Text("failure"))))),
    ),
    Event.OPERATOR_CONTACT_CHANGED: (
        "CPO contact details changed",
        If(Text("operator_id"), (" for ", Text("operator_id"))),
    ),
    Event.SESSIONS_IMPORTED: (
        "Sessions imported",
        If(Text("source"), (" from ", Text("source"))),
        If(Int("created"), (": ", Int("created"), " created", If(Int("updated"), (", ", Int("updated"), " updated")))),
    ),
    Event.AUDIT_EXPORTED: (
        If(
            Equals("delivery", "file downloaded"),
            ("Export file downloaded", If(Int("export_id"), (": export #", Int("export_id")))),
            (
                "Audit log exported",
                If(Int("row_count"), (": ", Count("row_count", "record", "records"))),
                If(Text("format"), (" as ", Words("format", FORMAT_WORDS))),
                If(Flag("completed", False), ("; stopped before the end",)),
            ),
        ),
    ),
    Event.AUDIT_VERIFIED: (
        If(
            Flag("ok"),
            (
                "Audit chain verified: intact",
                If(Int("records_checked"), (", ", Count("records_checked", "record", "records"), " checked")),
            ),
            (
                If(
                    Flag("ok", False),
                    (
                        "Audit chain verified: BROKEN",
                        If(Int("first_broken_id"), (" at record ", Int("first_broken_id"))),
                    ),
                    ("Audit chain verified",),
                ),
            ),
        ),
    ),
    Event.AUDIT_PURGED: ("Audit records purged", If(Int("count"), (": ", Count("count", "record", "records")))),
    Event.LEGAL_HOLD_CHANGED: (
        If(
            Equals("action", "set"),
            ("Legal hold set", If(Text("reason"), (": ", Text("reason")))),
            (
                If(
                    Equals("action", "released"),
                    ("Legal hold released", If(Text("reason"), (": ", Text("reason")))),
                    ("Legal hold changed",),
                ),
            ),
        ),
    ),
    # The portal's own accounts (sessions/accounts/services.py): `username` is the account changed,
    # the record's actor who changed it. Never a password or a code.
    Event.USER_CREATED: ("Team member created", _USERNAME, If(Text("role"), (" as ", Text("role")))),
    Event.USER_ROLE_CHANGED: (
        "Role changed",
        _USERNAME,
        If(Text("new_role"), (If(Text("old_role"), (" from ", Text("old_role"))), " to ", Text("new_role"))),
    ),
    Event.USER_DEACTIVATED: ("Team member deactivated", _USERNAME),
    Event.USER_REACTIVATED: ("Team member reactivated", _USERNAME),
    Event.USER_PASSWORD_RESET: ("Password reset by an admin", _USERNAME, "; a new one is required at the next login"),
    Event.PASSWORD_CHANGED: (
        "Password changed",
        _USERNAME,
        If(Flag("was_temporary"), ("; the temporary password replaced",)),
    ),
    Event.TWO_FACTOR_ENROLLED: ("Two-factor authentication set up", _USERNAME),
    Event.TWO_FACTOR_CODES_RENEWED: ("New two-factor recovery codes", _USERNAME),
    Event.TWO_FACTOR_RECOVERY_USED: (
        "Recovery code used to log in",
        _USERNAME,
        If(Int("codes_left"), ("; ", Int("codes_left"), " left")),
    ),
    Event.TWO_FACTOR_DISABLED: ("Two-factor authentication turned off", _USERNAME),
    Event.TWO_FACTOR_RESET: ("Two-factor authentication reset by an admin", _USERNAME),
}


def fallback(event_type: str) -> str:
    """An event without a rule: its label (or, for an unknown type, the type itself)."""
    return str(Event(event_type).label) if event_type in Event.values else event_type


# --- the Python reader -------------------------------------------------------------------------


def _member(data: Any, key: str) -> Any:
    return data.get(key) if isinstance(data, dict) else None


def _text(data: Any, key: str) -> str | None:
    value = _member(data, key)
    if not isinstance(value, str):
        return None
    if "\x00" in value or "\\u0000" in value:
        # jsonb has no U+0000: the databases read `data` with each `\u0000` of its JSON text made
        # `\ufffd` (PostgreSQL must; SQLite is told to match), and so does this reader.
        value = json.loads(json.dumps(value, ensure_ascii=False).replace("\\u0000", "\\ufffd"))
    return value


def _int(data: Any, key: str) -> str | None:
    value = _member(data, key)
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else None


def holds(condition: Condition, data: Any) -> bool:
    if isinstance(condition, Text):
        return bool(_text(data, condition.key))
    if isinstance(condition, Int):
        return _int(data, condition.key) is not None
    if isinstance(condition, Flag):
        return _member(data, condition.key) is condition.value
    if isinstance(condition, Equals):
        value = _member(data, condition.key)
        return isinstance(value, str) and value == condition.value
    raise TypeError(condition)


def _render(parts: tuple[Part, ...], data: Any) -> str:
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, Text):
            out.append(_text(data, part.key) or "")
        elif isinstance(part, Int):
            out.append(_int(data, part.key) or "")
        elif isinstance(part, Words):
            value = _text(data, part.key)
            if value is not None:
                out.append(part.table[value] if value in part.table else part.before + value + part.after)
        elif isinstance(part, Count):
            value = _int(data, part.key)
            if value is not None:
                out.append(f"{value} {part.singular if value == '1' else part.plural}")
        elif isinstance(part, Setting):
            out.append(str(getattr(settings, part.name)))
        elif isinstance(part, If):
            out.append(_render(part.then if holds(part.condition, data) else part.otherwise, data))
        else:
            raise TypeError(part)
    return "".join(out)


def outcome_text(event_type: str, data: Any) -> str:
    """The record's outcome in plain words (`data` as parsed: normally a dict)."""
    rule = RULES.get(event_type)
    return fallback(event_type) if rule is None else _render(rule, data)
