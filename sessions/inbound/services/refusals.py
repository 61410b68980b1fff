"""Calls the inbound endpoints refused: counted cheaply as they come, audited once per caller and minute."""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from ...audit.records import AuditEntry, record_audits
from ...models import AuditRecord, InboundRefusalCount

logger = logging.getLogger(__name__)
Event = AuditRecord.EventType


def count_inbound_refusal(*, client_address: str | None, path: str, reason: str, now=None) -> bool:
    """Count a call the inbound endpoints refused; True for the caller's first such call (for this
    reason) in this minute.

    Anyone can call those endpoints, so a refusal is counted (one UPDATE, no audit-chain lock),
    never audited one by one: `report_inbound_refusals` writes one INBOUND_REFUSED record per
    caller and minute, with the counts, once the minute is over. Never the body.
    """
    address, reason = (client_address or "unknown")[:64], reason[:200]
    minute = (now or timezone.now()).replace(second=0, microsecond=0)
    counted = InboundRefusalCount.objects.filter(client_address=address, minute=minute, reason=reason)
    if counted.update(count=F("count") + 1):
        return False
    try:
        with transaction.atomic():
            InboundRefusalCount.objects.create(
                client_address=address, minute=minute, reason=reason, count=1, first_path=path[:200]
            )
        return True
    except IntegrityError:  # another process counted this caller's first call of the minute
        counted.update(count=F("count") + 1)
        return False


def report_inbound_refusals(*, now=None, batch: int = 500) -> int:
    """Audit the refused calls of every minute that is over: one record per caller and minute,
    carrying the counts by reason (beat, every minute). Returns how many records were written."""
    current_minute = (now or timezone.now()).replace(second=0, microsecond=0)
    written = 0
    while True:
        with transaction.atomic():
            rows = list(
                InboundRefusalCount.objects.select_for_update(skip_locked=True)
                .filter(audit_record_id__isnull=True, minute__lt=current_minute)
                .order_by("minute", "client_address", "pk")[:batch]
            )
            if not rows:
                return written
            callers: dict[tuple, list[InboundRefusalCount]] = {}
            for row in rows:
                callers.setdefault((row.client_address, row.minute), []).append(row)
            entries = [
                AuditEntry(
                    Event.INBOUND_REFUSED,
                    data={
                        "client_address": address,
                        "minute": minute.isoformat(),
                        "refused_calls": sum(row.count for row in group),
                        "reasons": {row.reason: row.count for row in group},
                        "first_path": group[0].first_path,
                    },
                )
                for (address, minute), group in callers.items()
            ]
            records = record_audits(entries)
            for group, record in zip(callers.values(), records, strict=True):
                for row in group:
                    row.audit_record_id = record.pk
            InboundRefusalCount.objects.bulk_update(rows, ["audit_record_id"])
        for entry in entries:
            logger.warning(
                "%s inbound OICP call(s) refused from %s in the minute of %s: %s",
                entry.data["refused_calls"],
                entry.data["client_address"],
                entry.data["minute"],
                entry.data["reasons"],
            )
        written += len(entries)
