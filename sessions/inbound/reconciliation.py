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

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from ..audit.records import record_audit
from ..models import AuditRecord, CdrPullRun
from ..oicp.client import MAX_CDR_PAGE_SIZE, HubjectClient
from .cdr_pull_page import _apply_page
from .reconciliation_report import ReconciliationReport

logger = logging.getLogger(__name__)
Event = AuditRecord.EventType

# A guard against an HBS that never says "last": 10,000 pages of 2,000 is 20 million CDRs.
MAX_PAGES = 10_000

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
