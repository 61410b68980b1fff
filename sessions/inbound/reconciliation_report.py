"""What a CDR pull found: the run's report, and each refused CDR as the audit record names it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..models import CdrPullRun

MAX_NOTES = 20  # other problems kept in the report and the audit record; the counts cover all
MAX_REFUSED_LISTED = 1_000  # refused (and held back) CDRs named in the audit record; the rest are counted
REFUSED_PREFIX = "Refused by the CDR pull: "
_REASON_LISTED_MAX = 500  # a reason as the audit record lists it; the kept message has all of it


@dataclass(frozen=True)
class RefusedCdr:
    """One CDR the pull could not use, as the report, the audit record and the command name it."""

    session_id: str  # as Hubject sent it ("" when there was none, or not a string)
    reason: str
    page: int
    item: int
    inbound_message_id: int | None  # where it is kept (None: it could not be kept)
    already_kept: bool = False  # an earlier run (or this one) kept the same CDR already

    def describe(self) -> str:
        where = (
            f"already kept as #{self.inbound_message_id}"
            if self.already_kept
            else f"kept as #{self.inbound_message_id}"
            if self.inbound_message_id
            else "could not be kept"
        )
        return f"SessionID {self.session_id or '(none)'}: {self.reason} ({where}; page {self.page} item {self.item})"

    def to_audit(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "reason": self.reason[:_REASON_LISTED_MAX],
            "page": self.page,
            "item": self.item,
            "inbound_message_id": self.inbound_message_id,
            "already_kept": self.already_kept,
        }


@dataclass
class ReconciliationReport:
    """What one pull did; `ok` is False when a page failed, a CDR could not be stored or was refused."""

    date_from: datetime
    date_to: datetime
    pages: int = 0
    seen: int = 0
    new: int = 0
    duplicates: int = 0  # already stored
    already_seen: int = 0  # held back by an earlier run: not kept again
    held_back: int = 0  # kept by this run, flagged, not applied to its session
    refused: int = 0
    sessions_closed: int = 0  # sessions the portal had open that this pull closed
    sessions_created: int = 0  # sessions the portal never heard of, learned from their CDR
    stops_confirmed: int = 0
    errors: int = 0
    complete: bool = False  # every page up to the last one was read
    failed_page: int | None = None
    failure: str = ""
    failure_transient: bool = False
    notes: list[str] = field(default_factory=list)
    refused_cdrs: list[RefusedCdr] = field(default_factory=list)  # the first MAX_REFUSED_LISTED
    held_back_cdrs: list[dict[str, Any]] = field(default_factory=list)  # the first MAX_REFUSED_LISTED
    trigger: str = CdrPullRun.Trigger.MANUAL
    run_id: int | None = None
    counts_for_next_start: bool = False
    audit_record_id: int | None = None

    @property
    def ok(self) -> bool:
        return self.complete and self.errors == 0 and self.refused == 0

    @property
    def invalid(self) -> int:
        """The former name of `refused`."""
        return self.refused

    @property
    def refused_not_listed(self) -> int:
        return self.refused - len(self.refused_cdrs)

    def note(self, text: str) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes.append(text[:500])

    def summary(self) -> str:
        window = f"{self.date_from.isoformat()} to {self.date_to.isoformat()}"
        counts = (
            f"{self.pages} page(s), {self.seen} CDR(s) seen: {self.new} new, {self.duplicates} already stored, "
            f"{self.already_seen} already seen (held back before), {self.held_back} held back, "
            f"{self.refused} refused; {self.sessions_closed} session(s) closed, {self.sessions_created} "
            f"learned from their CDR, {self.stops_confirmed} stop(s) confirmed; {self.errors} error(s)"
        )
        if self.failure:
            retry = " (temporary: the next run tries again)" if self.failure_transient else ""
            counts += f". Stopped at page {self.failed_page}: {self.failure}{retry}"
        return f"CDR pull {window}: {counts}."

    def to_audit(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "trigger": self.trigger,
            "from": self.date_from.isoformat(),
            "to": self.date_to.isoformat(),
            "pages": self.pages,
            "seen": self.seen,
            "new": self.new,
            "duplicates": self.duplicates,
            "already_seen": self.already_seen,
            "held_back": self.held_back,
            "refused": self.refused,
            "sessions_closed": self.sessions_closed,
            "sessions_created": self.sessions_created,
            "stops_confirmed": self.stops_confirmed,
            "errors": self.errors,
            "complete": self.complete,
            "ok": self.ok,
            "counts_for_next_start": self.counts_for_next_start,
            "failed_page": self.failed_page,
            "failure": self.failure,
            "failure_transient": self.failure_transient,
            "refused_cdrs": [item.to_audit() for item in self.refused_cdrs],
            "refused_cdrs_not_listed": self.refused_not_listed,
            "held_back_cdrs": list(self.held_back_cdrs),
            "held_back_cdrs_not_listed": self.held_back - len(self.held_back_cdrs),
            "notes": list(self.notes),
        }
