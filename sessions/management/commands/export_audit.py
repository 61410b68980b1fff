"""Export the audit log to a file from a shell, exactly as the portal's export does.

    manage.py export_audit --from 2026-01-01 --to 2026-01-31 --format csv --output jan.csv

The file carries its filter summary, row count, generation time and SHA-256 checksum, and the
export is itself an audit record (AUDIT_EXPORTED).
"""

from datetime import date
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from sessions import services
from sessions.audit import selectors as audit_selectors
from sessions.audit.selectors import AuditLogFilters
from sessions.models import AuditExport, AuditRecord


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a date (YYYY-MM-DD)") from None


class Command(BaseCommand):
    help = "Export audit records (CSV, JSON Lines or XLSX) with a filter summary, row count and SHA-256 checksum."

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="date_from", required=True, help="first day, YYYY-MM-DD (portal time zone)")
        parser.add_argument("--to", dest="date_to", required=True, help="last day, YYYY-MM-DD (inclusive)")
        parser.add_argument("--format", choices=AuditExport.Format.values, default="csv")
        parser.add_argument("--output", help="file to write (default: a new file in AUDIT_EXPORT_DIR)")
        parser.add_argument("--event-type", default="", choices=["", *AuditRecord.EventType.values])
        parser.add_argument("--actor", default="", help="username, or 'system'")
        parser.add_argument("--operator", default="", help="OperatorID, e.g. DE*ACC")
        parser.add_argument("--search", default="", help="correlation id, SessionID, EvseID or case reference")
        parser.add_argument("--user", default="", help="portal user the export is recorded for (default: system)")

    def handle(self, *args, date_from, date_to, format, output, event_type, actor, operator, search, user, **options):
        start, end = _day(date_from), _day(date_to)
        if end < start:
            raise CommandError("--to is before --from")
        acting_user = None
        if user:
            acting_user = get_user_model().objects.filter(username=user).first()
            if acting_user is None:
                raise CommandError(f"No user {user!r}")
        filters = AuditLogFilters(
            date_from=start, date_to=end, event_type=event_type, actor=actor, operator_id=operator, q=search
        )
        export = services.prepare_audit_export(filters=filters, export_format=format, acting_user=acting_user)
        self.stderr.write(f"{export.filter_summary}: {export.row_count} records")
        try:
            export = services.write_audit_export(export_id=export.pk, output=Path(output) if output else None)
        except Exception as error:  # noqa: BLE001 - reported, recorded on the export row
            raise CommandError(f"Export failed: {error}") from None
        where = output or str(audit_selectors.export_path(export))
        self.stdout.write(self.style.SUCCESS(f"Wrote {export.row_count} records to {where}\nsha256: {export.sha256}"))
