"""Pull Hubject's CDRs for a window now (the same reconciliation the periodic job runs)."""

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from sessions import services


def _timestamp(value: str, option: str):
    try:
        parsed = parse_datetime(value.strip())
    except ValueError:
        parsed = None
    if parsed is None:
        raise CommandError(f"{option} {value!r} is not an ISO 8601 date and time, e.g. 2026-01-05T08:00:00+01:00")
    if timezone.is_naive(parsed):
        raise CommandError(f"{option} {value!r} has no UTC offset; add one, e.g. +01:00 or Z")
    return parsed


class Command(BaseCommand):
    help = (
        "Pull the charge detail records Hubject holds for a window (eRoamingGetChargeDetailRecords, "
        "2,000 per page) and store the ones the portal does not have yet: their sessions are closed "
        "and their accepted stops confirmed. Prints the counts; exits non-zero when a page failed or "
        "a CDR could not be stored. Without --from/--to: the last OICP_CDR_PULL_WINDOW_HOURS."
    )

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="date_from", help="start, ISO 8601 with offset (e.g. 2026-01-05T00:00:00+01:00)")
        parser.add_argument("--to", dest="date_to", help="end, ISO 8601 with offset (default: now)")

    def handle(self, *args, date_from=None, date_to=None, **options):
        end = _timestamp(date_to, "--to") if date_to else timezone.now()
        start = (_timestamp(date_from, "--from") if date_from
                 else end - timedelta(hours=settings.OICP_CDR_PULL_WINDOW_HOURS))
        if start >= end:
            raise CommandError(f"--from ({start.isoformat()}) must be before --to ({end.isoformat()}).")
        report = services.pull_charge_detail_records(date_from=start, date_to=end)
        self.stdout.write(report.summary())
        for note in report.notes:
            self.stdout.write(f"  {note}")
        if not report.ok:
            raise CommandError(
                "The CDR pull did not finish cleanly"
                + (f": {report.failure}" if report.failure else f" ({report.errors} error(s))")
                + f". Audit record #{report.audit_record_id}."
            )
