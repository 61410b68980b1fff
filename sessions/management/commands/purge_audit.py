"""Delete audit records older than a date, leaving a checkpoint so the rest still verifies.

    manage.py purge_audit --before 2016-01-01            # dry run: says what would be purged
    manage.py purge_audit --before 2016-01-01 --commit   # does it

A dry run unless --commit. Refused while a legal hold is active, and for records younger than
AUDIT_RETENTION_DAYS (the default date when --before is left out).
"""

from datetime import datetime, time, timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from sessions import services


def parse_moment(value: str) -> datetime:
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise ValueError(f"{value!r} is not a date (YYYY-MM-DD) or an ISO date-time")
        moment = datetime.combine(day, time.min)
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


class Command(BaseCommand):
    help = "Purge audit records older than --before (dry run unless --commit); refused under a legal hold."

    def add_arguments(self, parser):
        parser.add_argument(
            "--before",
            help="purge records older than this date (YYYY-MM-DD, portal time zone) "
            "or ISO date-time; default: today minus AUDIT_RETENTION_DAYS",
        )
        parser.add_argument("--commit", action="store_true", help="really delete (otherwise a dry run)")

    def handle(self, *args, before, commit, **options):
        if before:
            try:
                moment = parse_moment(before)
            except ValueError as error:
                raise CommandError(str(error)) from None
        else:
            moment = timezone.make_aware(
                datetime.combine(timezone.localdate() - timedelta(days=settings.AUDIT_RETENTION_DAYS), time.min)
            )
        try:
            plan = services.purge_audit_records(before=moment, commit=commit, acting_user=None)
        except services.PurgeRefused as refusal:
            raise CommandError(f"Nothing purged: {refusal}") from None
        when = timezone.localtime(moment).isoformat()
        if plan.count == 0:
            self.stdout.write(f"No audit records older than {when}: nothing to purge.")
        elif not commit:
            self.stdout.write(
                f"DRY RUN: {plan.count} audit records older than {when} (ids {plan.first_id}–{plan.last_id}) "
                "would be purged. Run again with --commit to delete them."
            )
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Purged {plan.count} audit records older than {when} (ids {plan.first_id}–{plan.last_id}); "
                    f"checkpoint #{plan.checkpoint.pk} keeps the hash of record {plan.last_id} for verification."
                )
            )
