"""Pull Hubject's EVSE directory (eRoamingPullEvseData_V2.3) into Operator and EvseRecord rows.

- **Full** (every EVSE, all pages): when no run has completed yet, and on demand (`--full`). Only a
  full run that read every page deletes the EVSEs it did not see.
- **Delta** (beat, every EVSE_DATA_PULL_INTERVAL_MINUTES): LastCall = when the last complete run
  started, minus EVSE_DATA_PULL_OVERLAP_MINUTES; insert/update rows are upserted, delete rows deleted.

A run is *complete* when it read every page (finished, no failure); records it refused do not make it
incomplete (they could not be used however often they came again), but they make it not ok.

Each page is applied in one transaction with bulk statements: a page that fails to apply leaves
nothing of itself, stops the run, and the run says so (ok False, failure). A page Hubject does not
deliver stops the run the same way. A refused record (no EvseID, no OperatorID) is counted, logged
and named in the run's audit record. Operators get Hubject's name and the newest hotline seen;
what support adds (escalation e-mail, hotline hours, note) is never written here.

Each run leaves one EvsePullRun row and one EVSE_DATA_PULLED audit record, written last.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from ..audit.records import record_audit
from ..models import AuditRecord, EvsePullRun, EvseRecord, Operator
from ..oicp.client import HubjectClient
from ..oicp.evse_data import EvseDataRecord, RecordRefused, read_evse_record
from ..oicp.ids import operator_key
from .pull_write import existing_values, forget_other_words, remember_words, upsert_evses
from .search_text import search_text

logger = logging.getLogger(__name__)

MAX_PAGES = 10_000  # a guard against an HBS that never says "last"
REFUSED_NAMED_MAX = 50  # refused records named one by one in the audit record (all are counted)
DELETE_BATCH = 1000
# What a pull writes on an EvseRecord (compared to count a record as changed or unchanged).
EVSE_FIELDS = (
    "operator_id",
    "charging_station_id",
    "station_name",
    "street",
    "house_number",
    "postal_code",
    "city",
    "country",
    "latitude",
    "longitude",
    "hotline",
    "plugs",
    "facilities",
    "authentication_modes",
    "accessibility",
    "is_open_24_hours",
    "opening_times",
    "is_hubject_compatible",
    "hubject_last_update",
    "raw",
    "search_text",
)
SEARCH_TEXT = EVSE_FIELDS.index("search_text")


@dataclass
class EvsePullReport:
    kind: str
    trigger: str
    last_call: datetime | None = None
    run_id: int | None = None
    pages: int = 0
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0
    refused: int = 0
    refused_records: list[dict[str, str]] = field(default_factory=list)
    complete: bool = False
    failure: str = ""
    failure_transient: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    audit_record_id: int | None = None

    @property
    def ok(self) -> bool:
        return self.complete and not self.failure and self.refused == 0

    def refuse(self, *, page: int, index: int, evse_id: str, reason: str) -> None:
        self.refused += 1
        logger.warning("EVSE data pull: refused record %s of page %s (%s): %s", index, page, evse_id or "-", reason)
        if len(self.refused_records) < REFUSED_NAMED_MAX:
            self.refused_records.append({"page": str(page), "index": str(index), "evse_id": evse_id, "reason": reason})

    def summary(self) -> str:
        what = "Full" if self.kind == EvsePullRun.Kind.FULL else "Delta"
        text = (
            f"{what} EVSE data pull #{self.run_id}: {self.pages} page(s), {self.added} added, {self.changed} changed, "
            f"{self.unchanged} unchanged, {self.deleted} deleted, {self.refused} refused"
        )
        if self.failure:
            text += f"; FAILED: {self.failure}"
        elif not self.complete:
            text += "; not complete"
        return text

    def to_audit(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "trigger": self.trigger,
            "last_call": self.last_call.isoformat() if self.last_call else None,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "pages": self.pages,
            "added": self.added,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "refused": self.refused,
            "refused_records": self.refused_records,
            "refused_not_named": max(0, self.refused - len(self.refused_records)),
            "complete": self.complete,
            "ok": self.ok,
            "failure": self.failure,
        }


def last_complete_run() -> EvsePullRun | None:
    return (
        EvsePullRun.objects.filter(finished_at__isnull=False, failure="", pages__gt=0).order_by("-started_at").first()
    )


def next_last_call() -> datetime | None:
    """The LastCall of the next delta: the last complete run's start minus the overlap; None: pull in full."""
    run = last_complete_run()
    if run is None:
        return None
    return run.started_at - timedelta(minutes=max(0, settings.EVSE_DATA_PULL_OVERLAP_MINUTES))


def pull_evse_data(
    *,
    full: bool = False,
    trigger: str = "command",
    client: HubjectClient | None = None,
    page_size: int | None = None,
    acting_user=None,
    now: datetime | None = None,
) -> EvsePullReport:
    """One run: in full when asked or when no run has completed yet, else the delta since the last one."""
    client = client or HubjectClient.from_settings()
    page_size = page_size or settings.EVSE_DATA_PULL_PAGE_SIZE
    started_at = now or timezone.now()
    last_call = None if full else next_last_call()
    kind = EvsePullRun.Kind.FULL if last_call is None else EvsePullRun.Kind.DELTA
    run = EvsePullRun.objects.create(kind=kind, trigger=trigger, started_at=started_at, last_call=last_call)
    report = EvsePullReport(kind=kind, trigger=trigger, last_call=last_call, run_id=run.pk, started_at=started_at)
    try:
        _pull_pages(client, report, page_size=page_size)
        if report.complete:
            _after_complete_run(report)
    except Exception as exc:  # noqa: BLE001 - leave the run's record, then let the caller see it
        report.complete = False
        report.failure = f"The run stopped at page {report.pages}: {type(exc).__name__}: {exc}"[:1000]
        logger.exception("EVSE data pull #%s stopped", run.pk)
        try:
            _finish(run, report, acting_user=acting_user)
        except Exception:  # noqa: BLE001 - the original exception matters more
            logger.exception("EVSE data pull #%s: could not record how it stopped", run.pk)
        raise
    _finish(run, report, acting_user=acting_user)
    return report


def pull_evse_data_periodically() -> EvsePullReport:
    """The beat job: a delta (a full pull when none has completed yet)."""
    return pull_evse_data(trigger="beat")


# --- pages ---------------------------------------------------------------------------------------


class _Run:
    """What a run remembers across pages: the EvseIDs seen (a full run), the newest hotline per operator,
    the words of the place search's vocabulary it has written or seen."""

    def __init__(self, *, full: bool) -> None:
        self.full = full
        self.seen: set[str] = set()
        self.words: set[str] = set()
        self.hotline_at: dict[str, tuple[bool, datetime]] = {}
        self.name_at: dict[str, tuple[bool, datetime]] = {}


_OLDEST = datetime.min.replace(tzinfo=UTC)


def _newness(record: EvseDataRecord) -> tuple[bool, datetime]:
    """Orders records by lastUpdate, those without one first (and among equals, the later in the run wins)."""
    return (record.last_update is not None, record.last_update or _OLDEST)


def _pull_pages(client: HubjectClient, report: EvsePullReport, *, page_size: int) -> None:
    state = _Run(full=report.kind == EvsePullRun.Kind.FULL)
    report._state = state  # type: ignore[attr-defined]
    page = 0
    while True:
        result = client.pull_evse_data(page=page, size=page_size, last_call=report.last_call)
        if not result.ok:
            report.failure = f"Page {page}: {result.error or 'HTTP ' + str(result.http_status)}"
            report.failure_transient = result.transient
            logger.warning("EVSE data pull stopped at page %s: %s", page, report.failure)
            return
        try:
            _apply_page(result.records, page=page, report=report, state=state)
        except Exception as exc:  # noqa: BLE001 - the page's transaction rolled back; the run says why
            report.failure = f"Page {page} could not be applied (nothing of it was kept): {type(exc).__name__}: {exc}"
            report.failure = report.failure[:1000]
            logger.exception("EVSE data pull: page %s could not be applied", page)
            return
        report.pages += 1
        if result.last or not result.records:
            report.complete = True
            return
        if report.pages >= MAX_PAGES:
            report.failure = f"Hubject did not mark any of {MAX_PAGES} pages as the last one; the run was stopped."
            return
        page += 1


def _read_page(records: list[Any], *, page: int, report: EvsePullReport) -> dict[str, EvseDataRecord]:
    """The usable records by EvseID (a later one of the same EvseID wins); the others refused."""
    usable: dict[str, EvseDataRecord] = {}
    for index, raw in enumerate(records):
        try:
            record = read_evse_record(raw)
        except RecordRefused as refused:
            report.refuse(page=page, index=index, evse_id=refused.evse_id, reason=refused.reason)
            continue
        usable[record.evse_id] = record
    return usable


def _values(record: EvseDataRecord, operator: Operator) -> dict[str, Any]:
    return {
        "operator_id": operator.pk,
        "charging_station_id": record.charging_station_id,
        "station_name": record.station_name,
        "street": record.street,
        "house_number": record.house_number,
        "postal_code": record.postal_code,
        "city": record.city,
        "country": record.country,
        "latitude": record.latitude,
        "longitude": record.longitude,
        "hotline": record.hotline,
        "plugs": record.plugs,
        "facilities": record.facilities,
        "authentication_modes": record.authentication_modes,
        "accessibility": record.accessibility,
        "is_open_24_hours": record.is_open_24_hours,
        "opening_times": record.opening_times,
        "is_hubject_compatible": record.is_hubject_compatible,
        "hubject_last_update": record.last_update,
        "raw": record.raw,
        "search_text": search_text(
            record.station_name, record.street, record.house_number, record.postal_code, record.city
        ),
    }


def _apply_page(records: list[Any], *, page: int, report: EvsePullReport, state: _Run) -> None:
    usable = _read_page(records, page=page, report=report)
    now = timezone.now()
    counts = {"added": 0, "changed": 0, "unchanged": 0, "deleted": 0}
    with transaction.atomic():
        deletes = [evse_id for evse_id, record in usable.items() if record.deleted]
        upserts = {evse_id: record for evse_id, record in usable.items() if not record.deleted}
        if deletes:
            counts["deleted"] = EvseRecord.objects.filter(evse_id__in=deletes).delete()[0]
        operators = _upsert_operators(upserts.values(), state=state, now=now)
        existing = existing_values(list(upserts), EVSE_FIELDS)
        written = []
        for evse_id, record in upserts.items():
            values = _values(record, operators[operator_key(record.operator_id)])
            stored = existing.get(evse_id)
            if stored is not None and stored == tuple(values[name] for name in EVSE_FIELDS):
                counts["unchanged"] += 1
                continue
            counts["added" if stored is None else "changed"] += 1
            written.append({"evse_id": evse_id, **values, "updated_at": now})
        upsert_evses(written)
        remember_words((values["search_text"] for values in written), state.words)
        if state.full:  # the words of unchanged EVSEs are in use too (forget_other_words)
            remember_words((stored[SEARCH_TEXT] for stored in existing.values()), state.words)
    # Counted once the page's transaction committed: a page that failed counts nothing.
    state.seen.update(usable)
    for name, value in counts.items():
        setattr(report, name, getattr(report, name) + value)


def _upsert_operators(records, *, state: _Run, now: datetime) -> dict[str, Operator]:
    """The page's operators by operator_key, created or updated (Hubject's name and hotline only)."""
    by_key: dict[str, list[EvseDataRecord]] = {}
    for record in records:
        by_key.setdefault(operator_key(record.operator_id), []).append(record)
    operators = {op.operator_key: op for op in Operator.objects.filter(operator_key__in=list(by_key))}
    new, changed = [], []
    for key, group in by_key.items():
        operator = operators.get(key)
        if operator is None:
            operator = operators[key] = Operator(operator_id=group[0].operator_id, operator_key=key, updated_at=now)
            new.append(operator)
        before = (operator.name, operator.hotline)
        # Name and hotline: those of the newest record (lastUpdate) the run has seen that gives one.
        for attribute, remembered in (("name", state.name_at), ("hotline", state.hotline_at)):
            source = "operator_name" if attribute == "name" else "hotline"
            given = [r for r in group if getattr(r, source)]
            if not given:
                continue
            newest = max(given, key=_newness)
            seen = remembered.get(key)
            if seen is None or _newness(newest) >= seen:
                setattr(operator, attribute, getattr(newest, source))
                remembered[key] = _newness(newest)
        if operator.pk is not None and (operator.name, operator.hotline) != before:
            operator.updated_at = now
            changed.append(operator)
    Operator.objects.bulk_create(new)
    if any(op.pk is None for op in new):  # backends that do not return ids from bulk inserts
        for op in Operator.objects.filter(operator_key__in=[op.operator_key for op in new]):
            operators[op.operator_key] = op
    # Only Hubject's fields: the support team's escalation e-mail, hours and note are never written.
    Operator.objects.bulk_update(changed, ["name", "hotline", "updated_at"])
    return operators


def _after_complete_run(report: EvsePullReport) -> None:
    """A complete full run deletes the EVSEs it did not see; every complete run recounts operators' EVSEs."""
    state: _Run = report._state  # type: ignore[attr-defined]
    with transaction.atomic():
        if report.kind == EvsePullRun.Kind.FULL:
            stored = EvseRecord.objects.order_by().values_list("pk", "evse_id").iterator(chunk_size=10_000)
            gone = [pk for pk, evse_id in stored if evse_id not in state.seen]
            for start in range(0, len(gone), DELETE_BATCH):
                report.deleted += EvseRecord.objects.filter(pk__in=gone[start : start + DELETE_BATCH]).delete()[0]
            forget_other_words(state.words)
        counts = dict(Operator.objects.annotate(n=Count("evses")).values_list("pk", "n"))
        stale = [op for op in Operator.objects.only("pk", "evse_count") if op.evse_count != counts.get(op.pk, 0)]
        for op in stale:
            op.evse_count = counts.get(op.pk, 0)
        Operator.objects.bulk_update(stale, ["evse_count"], batch_size=500)


def _finish(run: EvsePullRun, report: EvsePullReport, *, acting_user) -> None:
    report.finished_at = timezone.now()
    with transaction.atomic():
        run.finished_at = report.finished_at
        run.ok = report.ok
        run.failure = report.failure
        for name in ("pages", "added", "changed", "unchanged", "deleted", "refused"):
            setattr(run, name, getattr(report, name))
        run.save()
        audit = record_audit(
            event_type=AuditRecord.EventType.EVSE_DATA_PULLED, actor=acting_user, data=report.to_audit()
        )
    report.audit_record_id = audit.pk
    (logger.info if report.ok else logger.warning)("%s", report.summary())
