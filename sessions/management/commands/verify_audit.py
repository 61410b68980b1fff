"""Walk the audit trail's hash chain; exit non-zero at the first broken link.

manage.py verify_audit
"""

from django.core.management.base import BaseCommand, CommandError

from sessions import services


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain (id order, from the last purge checkpoint); exit 1 if broken."
    # It reads the database only: the system checks (URLs, admin, templates) would add a tenth of
    # a second to every scheduled run and check nothing it uses.
    requires_system_checks = ()

    def handle(self, *args, **options):
        verification = services.verify_audit_chain(acting_user=None)
        seconds = (verification.finished_at - verification.started_at).total_seconds()
        if not verification.ok:
            raise CommandError(
                f"Audit chain BROKEN at record {verification.first_broken_id}: {verification.detail} "
                f"({verification.records_checked} records checked before it; verification #{verification.pk})"
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Audit chain intact: {verification.records_checked} records checked in {seconds:.1f} s "
                f"(verification #{verification.pk})."
            )
        )
