"""Audit-log exports: prepare (pin the selection, count it), stream or write, and audit each one.

Every export is an AuditExport row and, once its data has been written, an AUDIT_EXPORTED audit
record carrying the filters, the format, the row count, the checksum and the actor.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..models import AuditExport, AuditRecord
from . import export_formats as exports
from .records import anchor_audit_chain, record_audit
from .selectors import AuditLogFilters, audit_log, newest_audit_record_id

logger = logging.getLogger(__name__)
Event = AuditRecord.EventType
PROGRESS_EVERY_ROWS = 10_000


def prepare_audit_export(*, filters: AuditLogFilters, export_format: str, acting_user) -> AuditExport:
    """Create the export (QUEUED) for the records that match now; later records are not included."""
    if export_format not in AuditExport.Format.values:
        raise ValueError(f"Unknown export format {export_format!r}")
    filters = replace(filters, max_id=newest_audit_record_id() or 0)
    return AuditExport.objects.create(
        requested_by=acting_user,
        requested_at=timezone.now(),
        format=export_format,
        filters=filters.to_json(),
        filter_summary=filters.summary()[:1000],
        row_count=audit_log(filters=filters).count(),
    )


def queue_audit_export(*, export: AuditExport) -> None:
    """Hand the export to a worker once the transaction that created it commits."""
    from ..tasks import export_audit_log  # the task module imports this package

    def dispatch():
        try:
            export_audit_log.apply_async(args=[export.pk], retry=False)
        except Exception as error:  # kombu raises several types
            logger.exception("could not queue audit export %s", export.pk)
            AuditExport.objects.filter(pk=export.pk, state=AuditExport.State.QUEUED).update(
                state=AuditExport.State.FAILED, error=f"Could not queue the job: {error}"[:500]
            )

    transaction.on_commit(dispatch)


def export_file_name(export: AuditExport) -> str:
    return f"audit-log-{export.pk}-{timezone.localtime(export.requested_at):%Y%m%d-%H%M%S}.{export.format}"


def _info(export: AuditExport) -> exports.ExportInfo:
    head = anchor_audit_chain(reason=f"export {export.pk}")
    return exports.ExportInfo(
        chain_head=head.describe(),
        export_id=export.pk,
        format=export.format,
        filter_summary=export.filter_summary,
        filters=export.filters,
        row_count=export.row_count or 0,
        generated_by=export.requested_by.get_username() if export.requested_by_id else "system",
    )


def _records(export: AuditExport):
    """The selected records as a queryset: each format reads it its own way (CSV in SQL)."""
    return audit_log(filters=AuditLogFilters.from_json(export.filters))


def _claim(export: AuditExport) -> bool:
    """QUEUED → RUNNING in one conditional UPDATE: a redelivered job or a second click does nothing."""
    return bool(
        AuditExport.objects.filter(pk=export.pk, state=AuditExport.State.QUEUED).update(state=AuditExport.State.RUNNING)
    )


def _finish(
    export: AuditExport,
    result: exports.ExportResult,
    *,
    completed: bool,
    delivery: str,
    error: str = "",
    output: str = "",
) -> None:
    now = timezone.now()
    with transaction.atomic():
        export.rows_done = result.rows
        export.finished_at = now
        if completed:
            export.state = AuditExport.State.DONE
            export.sha256 = result.sha256
            export.row_count = result.rows
        else:
            export.state = AuditExport.State.FAILED
            export.error = error[:500]
        export.save(update_fields=["rows_done", "finished_at", "state", "sha256", "row_count", "error", "file_name"])
        if completed or result.rows:
            # Whatever left the portal is on the record, even an interrupted download.
            record_audit(
                event_type=Event.AUDIT_EXPORTED,
                actor=export.requested_by,
                data={
                    "export_id": export.pk,
                    "format": export.format,
                    "filters": export.filters,
                    "filter_summary": export.filter_summary,
                    "row_count": result.rows,
                    "sha256": result.sha256 if completed else None,
                    "completed": completed,
                    "delivery": delivery,
                    **({"file_name": export.file_name} if export.file_name else {}),
                    **({"output": output} if output else {}),
                    **({"error": error[:500]} if error else {}),
                },
            )


def stream_audit_export(*, export: AuditExport) -> Iterator[bytes]:
    """The export as bytes for a streamed response (CSV or JSONL); the checksum is in the trailer."""
    if export.format not in exports.STREAMERS:
        raise ValueError(f"{export.format} cannot be streamed; write it to a file")
    if not _claim(export):
        raise ValueError(f"Export {export.pk} has already run")
    result = exports.ExportResult()
    completed = False
    try:
        yield from exports.STREAMERS[export.format](_info(export), _records(export), result)
        completed = True
    finally:
        _finish(
            export,
            result,
            completed=completed,
            delivery="download",
            error="" if completed else f"The download stopped after {result.rows} rows.",
        )


def write_audit_export(*, export_id: int, output: Path | None = None) -> AuditExport:
    """Write the export to a file (under AUDIT_EXPORT_DIR unless `output`), with progress; idempotent."""
    export = AuditExport.objects.select_related("requested_by").get(pk=export_id)
    if not _claim(export):
        return export
    if output is None:
        export.file_name = export_file_name(export)
        path = Path(settings.AUDIT_EXPORT_DIR) / export.file_name
    else:
        path = Path(output)
    result = exports.ExportResult()

    def progress(rows_done: int) -> None:
        if rows_done % PROGRESS_EVERY_ROWS < exports.ROWS_PER_WRITE:
            AuditExport.objects.filter(pk=export.pk).update(rows_done=rows_done)

    try:
        result = exports.write_file(path, _info(export), _records(export), progress)
    except Exception as error:
        logger.exception("audit export %s failed", export.pk)
        export.file_name = ""
        _finish(
            export, exports.ExportResult(), completed=False, delivery="file", error=f"{type(error).__name__}: {error}"
        )
        raise
    _finish(
        export,
        result,
        completed=True,
        delivery="file" if output is None else "command",
        output=str(path) if output is not None else "",
    )
    logger.info("audit export %s written: %s rows, sha256 %s", export.pk, result.rows, result.sha256)
    return export


def record_export_download(*, export: AuditExport, acting_user) -> None:
    """Someone fetched a finished export file: that is a disclosure too, so it is on the record."""
    with transaction.atomic():
        record_audit(
            event_type=Event.AUDIT_EXPORTED,
            actor=acting_user,
            data={
                "export_id": export.pk,
                "format": export.format,
                "row_count": export.row_count,
                "sha256": export.sha256,
                "delivery": "file downloaded",
                "file_name": export.file_name,
            },
        )
