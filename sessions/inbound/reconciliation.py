"""CDR reconciliation: pull the CDRs Hubject holds and store the ones its push never delivered.

Hubject forwards each CDR once; when the portal was down it still stores the CDR and answers the
CPO positively (DIGEST §5.3), so the session would stay open here for good. The pull
(eRoamingGetChargeDetailRecords, §5.4) returns every CDR in a window, delivered or not, and none of
them is lost silently. Each one the pull receives ends up as exactly one of:

- **new**: validated like a pushed CDR (`sessions.oicp.inbound`) and stored through
  `record_cdr(source="PULL")`, which closes the session and confirms its accepted stops;
- **already stored**: its session (by the lower-case session_key) has its CDR; nothing is written
  (one bulk query per page, not one per CDR);
- **held back**: `record_cdr` kept it, flagged, without applying it (its EvseID is not the session's,
  or it contradicts the session's CDR); named in the notes. One an earlier run held back (the same
  raw text kept with held_back for that SessionID, as the overlap re-pulls it) is **already seen**
  and not kept again;
- **refused**: `parse_charge_detail_record` refuses it (DIGEST §9), or it is not even a JSON object.
  It is kept as a flagged InboundMessage (apply_error "Refused by the CDR pull: <reason>", anomaly
  code "refused", never applied), so the supervisors' list shows it; a warning is logged and the
  run's audit record names it with its SessionID and reason. The same raw text refused again for
  that SessionID is counted and named again ("already kept as #id") but not kept twice;
- **an error**: it could not be stored (an exception); the others still are.

A page that fails stops the run. Each run leaves one CdrPullRun row (window, outcome, counts) and
one RECONCILIATION_RUN audit record; the report's `ok` is False when a page failed, a CDR could
not be stored or any CDR was refused, and `manage.py pull_cdrs` then exits non-zero.

Catch-up: the periodic job starts where the pulled span ends, minus OICP_CDR_PULL_OVERLAP_MINUTES
(`next_pull_start`), so a portal that was down for days pulls the whole gap on its next run;
OICP_CDR_PULL_WINDOW_HOURS is only the very first run's reach.
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
from django.db.models import Max, Q
from django.utils import timezone

from ..audit.records import record_audit
from ..models import AuditRecord, CdrPullRun, ChargeDetailRecord, ChargingSession, InboundMessage
from ..oicp import ids, inbound
from ..oicp.client import MAX_CDR_PAGE_SIZE, HubjectClient
from .services import record_cdr

logger = logging.getLogger(__name__)
Event = AuditRecord.EventType

# A guard against an HBS that never says "last": 10,000 pages of 2,000 is 20 million CDRs.
MAX_PAGES = 10_000
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


# --- where a run starts ------------------------------------------------------------------------


def overlap() -> timedelta:
    return timedelta(minutes=max(0, settings.OICP_CDR_PULL_OVERLAP_MINUTES))


def next_pull_start(*, now: datetime | None = None) -> datetime:
    """Where the next periodic run (and `pull_cdrs` without --from) starts.

    The end of the pulled span minus OICP_CDR_PULL_OVERLAP_MINUTES. The span ends at the latest
    `covered_to` of the runs that count, and a run (periodic or by hand) counts when

    - it was complete: every page read, none failed (a failed run never moves the start);
    - no CDR in it failed to be stored (refused ones are kept, so they do not hold the start back);
    - its window contained the start a periodic run would have used when it began (this function's
      answer then), so the span goes on without a gap; a window by hand that starts later, or ends
      before that point, does not count.

    It then covers up to its window's end, or up to when it began if that end lay in the future.
    Before any run counted: OICP_CDR_PULL_WINDOW_HOURS before `now`, the first run's start. So a
    portal that was down for days pulls the whole gap on its next run (paged, MAX_PAGES guarded).
    Always at least a minute before `now`.
    """
    now = now or timezone.now()
    covered_to = CdrPullRun.objects.aggregate(end=Max("covered_to"))["end"]
    if covered_to is None:
        start = now - timedelta(hours=settings.OICP_CDR_PULL_WINDOW_HOURS)
    else:
        start = covered_to - overlap()
    return min(start, now - timedelta(minutes=1))


# --- the run -----------------------------------------------------------------------------------


def pull_charge_detail_records(
    *,
    date_from: datetime,
    date_to: datetime,
    acting_user=None,
    client: HubjectClient | None = None,
    page_size: int = MAX_CDR_PAGE_SIZE,
    trigger: str = CdrPullRun.Trigger.MANUAL,
    now: datetime | None = None,
) -> ReconciliationReport:
    """Page through Hubject's CDRs for [date_from, date_to] and store the ones not yet stored.

    `now` is when the run counts as started (default: the clock); the periodic job passes its own.
    Raises ValueError for a naive or reversed window; never for Hubject's problems, which end up
    in the report (and its CdrPullRun row and audit record) instead. An unexpected exception still
    leaves both, saying the run stopped, and is raised again.
    """
    if timezone.is_naive(date_from) or timezone.is_naive(date_to):
        raise ValueError("The window must be timezone-aware (OICP timestamps carry an offset).")
    if date_from >= date_to:
        raise ValueError("The window's start must be before its end.")
    client = client or HubjectClient.from_settings()
    started_at = now or timezone.now()
    expected_start = next_pull_start(now=started_at)
    covers_until = min(date_to, started_at)
    run = CdrPullRun.objects.create(
        trigger=trigger,
        started_at=started_at,
        date_from=date_from,
        date_to=date_to,
        extends_coverage=date_from <= expected_start <= covers_until,
    )
    report = ReconciliationReport(date_from=date_from, date_to=date_to, trigger=trigger, run_id=run.pk)
    try:
        _pull_pages(client, report, date_from=date_from, date_to=date_to, page_size=page_size)
    except Exception as exc:  # noqa: BLE001 - leave the run's record, then let the caller see it
        report.errors += 1
        report.failed_page = report.pages
        report.failure = f"The run stopped: {type(exc).__name__}: {exc}"[:500]
        try:
            _finish(run, report, acting_user=acting_user, covers_until=covers_until)
        except Exception:  # noqa: BLE001 - the original exception matters more
            logger.exception("CDR pull #%s: could not record how it stopped", run.pk)
        raise
    _finish(run, report, acting_user=acting_user, covers_until=covers_until)
    return report


def pull_recent_charge_detail_records(*, now: datetime | None = None) -> ReconciliationReport:
    """The periodic job: from `next_pull_start` (the end of the pulled span minus the overlap;
    OICP_CDR_PULL_WINDOW_HOURS ago for the very first run) up to now."""
    now = now or timezone.now()
    return pull_charge_detail_records(
        date_from=next_pull_start(now=now), date_to=now, trigger=CdrPullRun.Trigger.PERIODIC, now=now
    )


def _pull_pages(client: HubjectClient, report: ReconciliationReport, *, date_from, date_to, page_size: int) -> None:
    page = 0
    while True:
        result = client.get_charge_detail_records(date_from=date_from, date_to=date_to, page=page, size=page_size)
        if not result.ok:
            report.errors += 1
            report.failed_page = page
            report.failure = result.error or f"HTTP {result.http_status}"
            report.failure_transient = result.transient
            logger.warning("CDR pull stopped at page %s: %s", page, report.failure)
            return
        report.pages += 1
        _apply_page(result.records, page=page, report=report)
        if result.last or not result.records:
            report.complete = True
            return
        if report.pages >= MAX_PAGES:
            report.errors += 1
            report.failed_page = page + 1
            report.failure = f"Hubject did not mark any of {MAX_PAGES} pages as the last one; the run was stopped."
            return
        page += 1


def _finish(run: CdrPullRun, report: ReconciliationReport, *, acting_user, covers_until: datetime) -> None:
    report.counts_for_next_start = run.extends_coverage and report.complete and report.errors == 0
    with transaction.atomic():
        audit = record_audit(event_type=Event.RECONCILIATION_RUN, actor=acting_user, data=report.to_audit())
        run.finished_at = timezone.now()
        run.complete = report.complete
        run.ok = report.ok
        run.covered_to = covers_until if report.counts_for_next_start else None
        for name in ("pages", "seen", "new", "duplicates", "already_seen", "held_back", "refused", "errors"):
            setattr(run, name, getattr(report, name))
        run.failure = report.failure
        run.audit_record_id = audit.pk
        run.save()
    report.audit_record_id = audit.pk
    (logger.info if report.ok else logger.warning)("%s", report.summary())


# --- one page ----------------------------------------------------------------------------------


@dataclass
class _Refusal:
    index: int
    record: Any
    raw: str
    error: inbound.InboundError


def _apply_page(records: list[Any], *, page: int, report: ReconciliationReport) -> None:
    parsed: list[tuple[inbound.ChargeDetailRecord, str]] = []
    refusals: list[_Refusal] = []
    for index, record in enumerate(records):
        report.seen += 1
        raw = _json_text(record)
        try:
            _, cdr = inbound.parse_charge_detail_record(raw)
        except inbound.InboundError as exc:
            refusals.append(_Refusal(index, record, raw, exc))
            continue
        except Exception as exc:  # noqa: BLE001 - a reader bug: an error of the run, not a refusal
            report.errors += 1
            report.note(
                f"page {page} item {index} (SessionID {_sent_session_id(record) or '(none)'}): "
                f"could not be read: {type(exc).__name__}: {exc}"
            )
            logger.exception("pulled CDR (page %s item %s) could not be read", page, index)
            continue
        parsed.append((cdr, raw))

    keys = {ids.session_key(cdr.session_id) for cdr, _ in parsed}
    refused_keys = {_refused_key(refusal.record) for refusal in refusals}
    # One query each for the whole page: which CDRs we already have, the sessions' status, and
    # the refused or held-back CDRs earlier runs (or pushes) kept for these SessionIDs.
    stored = set(
        ChargeDetailRecord.objects.filter(charging_session__session_key__in=keys).values_list(
            "charging_session__session_key", flat=True
        )
    )
    sessions = {
        key: (pk, status)
        for pk, key, status in ChargingSession.objects.filter(session_key__in=(keys | refused_keys) - {""}).values_list(
            "pk", "session_key", "status"
        )
    }
    kept_refused: dict[tuple[str, str], int] = {}
    kept_held: set[tuple[str, str]] = set()
    if refusals or parsed:
        spellings = keys | refused_keys | {cdr.session_id for cdr, _ in parsed}
        earlier = (
            InboundMessage.objects.filter(kind=InboundMessage.Kind.CDR, session_id__in=spellings)
            .filter(Q(held_back=True) | Q(apply_error__startswith=REFUSED_PREFIX))
            .order_by("id")
            .values_list("pk", "session_id", "raw", "held_back")
        )
        for pk, session_id, raw, held_back in earlier:
            if held_back:
                kept_held.add((session_id.lower(), raw))
            else:
                kept_refused.setdefault((session_id.lower(), raw), pk)

    for refusal in refusals:
        _refuse(refusal, page=page, report=report, sessions=sessions, kept=kept_refused)

    for cdr, raw in parsed:
        key = ids.session_key(cdr.session_id)
        if key in stored:
            report.duplicates += 1
            continue
        if (key, raw) in kept_held:
            report.already_seen += 1
            continue
        try:
            outcome = record_cdr(cdr=cdr, raw=raw, source=ChargeDetailRecord.Source.PULL)
        except Exception as exc:  # noqa: BLE001 - one CDR that cannot be stored must not lose the others
            report.errors += 1
            report.note(f"SessionID {cdr.session_id}: could not be stored: {type(exc).__name__}: {exc}")
            logger.exception("pulled CDR for %s could not be stored", cdr.session_id)
            continue
        if getattr(outcome, "held_back", False):
            kept_held.add((key, raw))
            report.held_back += 1
            message_id = getattr(outcome.inbound_message, "pk", None)
            reasons = "; ".join(
                a.get("text", "")
                for a in getattr(outcome.inbound_message, "anomalies", None) or []
                if isinstance(a, dict) and a.get("code") in ("evse_mismatch", "cdr_conflict")
            )
            report.note(
                f"SessionID {cdr.session_id}: held back, kept as #{message_id} and not applied to its "
                f"session{': ' + reasons if reasons else ''}"
            )
            if len(report.held_back_cdrs) < MAX_REFUSED_LISTED:
                report.held_back_cdrs.append(
                    {
                        "session_id": cdr.session_id,
                        "inbound_message_id": message_id,
                        "reason": reasons[:_REASON_LISTED_MAX],
                    }
                )
            continue
        stored.add(key)
        if outcome.duplicate:  # pushed while we were pulling
            report.duplicates += 1
            continue
        report.new += 1
        report.stops_confirmed += outcome.stops_confirmed
        if outcome.session_created:
            report.sessions_created += 1
        elif sessions.get(key, (None, None))[1] != ChargingSession.Status.CLOSED:
            report.sessions_closed += 1


def _refuse(
    refusal: _Refusal,
    *,
    page: int,
    report: ReconciliationReport,
    sessions: dict[str, tuple[int, str]],
    kept: dict[tuple[str, str], int],
) -> None:
    """Keep a refused CDR as a flagged message (once), count it and name it."""
    report.refused += 1
    reason = refusal.error.summary
    sent = _sent_session_id(refusal.record)
    key = _refused_key(refusal.record)
    message_id = kept.get((key, refusal.raw))
    already_kept = message_id is not None
    if not already_kept:
        first = refusal.error.problems[0] if refusal.error.problems else ""
        problem_field = first.split(":", 1)[0].strip()[:100] if ":" in first else ""
        try:
            message = InboundMessage.objects.create(
                kind=InboundMessage.Kind.CDR,
                # Linked only to the session whose key is the whole SessionID (not a clipped one).
                charging_session_id=sessions.get(key, (None, None))[0] if key and key == sent.lower() else None,
                session_id=key,
                operator_id=_operator_id(refusal.record),
                received_at=timezone.now(),
                raw=refusal.raw,
                parsed={},
                applied_at=None,
                apply_error=REFUSED_PREFIX + reason,
                anomalies=[{"code": "refused", "field": problem_field, "text": reason}],
                flagged=True,
            )
        except Exception as exc:  # noqa: BLE001 - counted and named all the same
            report.errors += 1
            report.note(f"SessionID {sent or '(none)'}: refused, and could not be kept: {type(exc).__name__}: {exc}")
            logger.exception("refused CDR of SessionID %s could not be kept", sent)
        else:
            message_id = kept[(key, refusal.raw)] = message.pk
    item = RefusedCdr(
        session_id=sent,
        reason=reason,
        page=page,
        item=refusal.index,
        inbound_message_id=message_id,
        already_kept=already_kept,
    )
    if len(report.refused_cdrs) < MAX_REFUSED_LISTED:
        report.refused_cdrs.append(item)
    logger.warning("CDR pull refused a CDR: %s", item.describe())


def _sent_session_id(record: Any) -> str:
    """The SessionID as Hubject sent it, for people ("" when there is none)."""
    value = record.get("SessionID") if isinstance(record, dict) else None
    if value is None:
        return ""
    return value[:100] if isinstance(value, str) else _json_text(value)[:100]


def _refused_key(record: Any) -> str:
    value = record.get("SessionID") if isinstance(record, dict) else None
    return ids.session_key(value)[:36] if isinstance(value, str) else ""


def _operator_id(record: Any) -> str:
    evse_id = record.get("EvseID") if isinstance(record, dict) else None
    if not isinstance(evse_id, str):
        return ""
    try:
        return ids.operator_id_from_evse_id(evse_id)[:10]
    except ValueError:
        return ""


def _json_text(value: Any) -> str:
    """JSON text of a pulled CDR with its numbers exactly as HBS sent them (Decimals, never floats)."""
    if isinstance(value, dict):
        return (
            "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{_json_text(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(_json_text(item) for item in value) + "]"
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else json.dumps(str(value))
    return json.dumps(value, ensure_ascii=False)
