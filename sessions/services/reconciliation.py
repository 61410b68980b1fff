"""CDR reconciliation: pull the CDRs Hubject holds and store the ones its push never delivered.

Hubject forwards each CDR once; when the portal was down it still stores the CDR and answers the
CPO positively (DIGEST §5.3), so the session would stay open here for good. The pull
(eRoamingGetChargeDetailRecords, §5.4) returns every CDR in a window, delivered or not: each one is
validated like a pushed CDR (`sessions.oicp.inbound`), those already stored are skipped (one bulk
query per page, not one per CDR), and the new ones go through `record_cdr(source="PULL")`, which
closes the session and confirms its accepted stops. Each run leaves one RECONCILIATION_RUN audit
record with the window and the counts. A page that fails stops the run, and the report says so.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..models import AuditRecord, ChargeDetailRecord, ChargingSession
from ..oicp import inbound
from ..oicp.client import MAX_CDR_PAGE_SIZE, HubjectClient
from .audit import record_audit
from .inbound import record_cdr

logger = logging.getLogger(__name__)
Event = AuditRecord.EventType

# A guard against an HBS that never says "last": 10,000 pages of 2,000 is 20 million CDRs.
MAX_PAGES = 10_000
MAX_NOTES = 20  # problems kept in the report and the audit record; the counts cover all


@dataclass
class ReconciliationReport:
    """What one pull did; `ok` is False when a page failed or a CDR could not be stored."""

    date_from: datetime
    date_to: datetime
    pages: int = 0
    seen: int = 0
    new: int = 0
    duplicates: int = 0
    invalid: int = 0
    sessions_closed: int = 0  # sessions the portal had open that this pull closed
    sessions_created: int = 0  # sessions the portal never heard of, learned from their CDR
    stops_confirmed: int = 0
    errors: int = 0
    complete: bool = False  # every page up to the last one was read
    failed_page: int | None = None
    failure: str = ""
    failure_transient: bool = False
    notes: list[str] = field(default_factory=list)
    audit_record_id: int | None = None

    @property
    def ok(self) -> bool:
        return self.complete and self.errors == 0

    def note(self, text: str) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes.append(text[:500])

    def summary(self) -> str:
        window = f"{self.date_from.isoformat()} to {self.date_to.isoformat()}"
        counts = (
            f"{self.pages} page(s), {self.seen} CDR(s) seen: {self.new} new, {self.duplicates} already stored, "
            f"{self.invalid} invalid; {self.sessions_closed} session(s) closed, {self.sessions_created} "
            f"learned from their CDR, {self.stops_confirmed} stop(s) confirmed; {self.errors} error(s)"
        )
        if self.failure:
            retry = " (temporary: the next run tries again)" if self.failure_transient else ""
            counts += f". Stopped at page {self.failed_page}: {self.failure}{retry}"
        return f"CDR pull {window}: {counts}."

    def to_audit(self) -> dict[str, Any]:
        return {
            "from": self.date_from.isoformat(),
            "to": self.date_to.isoformat(),
            "pages": self.pages,
            "seen": self.seen,
            "new": self.new,
            "duplicates": self.duplicates,
            "invalid": self.invalid,
            "sessions_closed": self.sessions_closed,
            "sessions_created": self.sessions_created,
            "stops_confirmed": self.stops_confirmed,
            "errors": self.errors,
            "complete": self.complete,
            "failed_page": self.failed_page,
            "failure": self.failure,
            "failure_transient": self.failure_transient,
            "notes": list(self.notes),
        }


def pull_charge_detail_records(
    *, date_from: datetime, date_to: datetime, acting_user=None, client: HubjectClient | None = None,
    page_size: int = MAX_CDR_PAGE_SIZE,
) -> ReconciliationReport:
    """Page through Hubject's CDRs for [date_from, date_to] and store the ones not yet stored.

    Raises ValueError for a naive or reversed window; never for Hubject's problems, which end up
    in the report (and its audit record) instead.
    """
    if timezone.is_naive(date_from) or timezone.is_naive(date_to):
        raise ValueError("The window must be timezone-aware (OICP timestamps carry an offset).")
    if date_from >= date_to:
        raise ValueError("The window's start must be before its end.")
    client = client or HubjectClient.from_settings()
    report = ReconciliationReport(date_from=date_from, date_to=date_to)
    page = 0
    while True:
        result = client.get_charge_detail_records(date_from=date_from, date_to=date_to, page=page, size=page_size)
        if not result.ok:
            report.errors += 1
            report.failed_page = page
            report.failure = result.error or f"HTTP {result.http_status}"
            report.failure_transient = result.transient
            logger.warning("CDR pull stopped at page %s: %s", page, report.failure)
            break
        report.pages += 1
        _apply_page(result.records, page=page, report=report)
        if result.last or not result.records:
            report.complete = True
            break
        if report.pages >= MAX_PAGES:
            report.errors += 1
            report.failed_page = page + 1
            report.failure = f"Hubject did not mark any of {MAX_PAGES} pages as the last one; the run was stopped."
            break
        page += 1
    with transaction.atomic():
        audit = record_audit(event_type=Event.RECONCILIATION_RUN, actor=acting_user, data=report.to_audit())
    report.audit_record_id = audit.pk
    (logger.info if report.ok else logger.warning)("%s", report.summary())
    return report


def pull_recent_charge_detail_records(*, now: datetime | None = None) -> ReconciliationReport:
    """The periodic job: the last OICP_CDR_PULL_WINDOW_HOURS, up to now."""
    now = now or timezone.now()
    return pull_charge_detail_records(
        date_from=now - timedelta(hours=settings.OICP_CDR_PULL_WINDOW_HOURS), date_to=now
    )


def _apply_page(records: list[Any], *, page: int, report: ReconciliationReport) -> None:
    parsed: list[tuple[inbound.ChargeDetailRecord, str]] = []
    for index, record in enumerate(records):
        report.seen += 1
        raw = _json_text(record)
        try:
            _, cdr = inbound.parse_charge_detail_record(raw)
        except inbound.InboundError as exc:
            report.invalid += 1
            session = record.get("SessionID") if isinstance(record, dict) else None
            report.note(f"page {page} item {index} (SessionID {session!r}): invalid: {exc.summary}")
            continue
        parsed.append((cdr, raw))
    session_ids = {cdr.session_id for cdr, _ in parsed}
    # One query each for the whole page: which CDRs we already have, and the sessions' status.
    stored = set(ChargeDetailRecord.objects.filter(session_id__in=session_ids).values_list("session_id", flat=True))
    statuses = dict(ChargingSession.objects.filter(session_id__in=session_ids).values_list("session_id", "status"))
    for cdr, raw in parsed:
        if cdr.session_id in stored:
            report.duplicates += 1
            continue
        try:
            outcome = record_cdr(cdr=cdr, raw=raw, source=ChargeDetailRecord.Source.PULL)
        except Exception as exc:  # noqa: BLE001 - one CDR that cannot be stored must not lose the others
            report.errors += 1
            report.note(f"SessionID {cdr.session_id}: could not be stored: {type(exc).__name__}: {exc}")
            logger.exception("pulled CDR for %s could not be stored", cdr.session_id)
            continue
        stored.add(cdr.session_id)
        if outcome.duplicate:  # pushed while we were pulling
            report.duplicates += 1
            continue
        report.new += 1
        report.stops_confirmed += outcome.stops_confirmed
        if outcome.session_created:
            report.sessions_created += 1
        elif statuses.get(cdr.session_id) != ChargingSession.Status.CLOSED:
            report.sessions_closed += 1


def _json_text(value: Any) -> str:
    """JSON text of a pulled CDR with its numbers exactly as HBS sent them (Decimals, never floats)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{_json_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_json_text(item) for item in value) + "]"
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else json.dumps(str(value))
    return json.dumps(value, ensure_ascii=False)
