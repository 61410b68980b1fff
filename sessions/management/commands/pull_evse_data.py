"""Pull Hubject's EVSE directory now (eRoamingPullEvseData_V2.3): the changes since the last complete
pull, or everything with --full (and always when no pull has completed yet).

Prints the counts and every refused record named; exits non-zero (CommandError) when a page failed
or any record was refused.
"""

from django.core.management.base import BaseCommand, CommandError

from sessions import services


class Command(BaseCommand):
    help = (
        "Pull Hubject's EVSE directory (eRoamingPullEvseData, EVSE_DATA_PULL_PAGE_SIZE records a page): "
        "the changes since the last complete pull (LastCall), or every EVSE with --full or when no pull "
        "has completed yet. Prints the counts; exits non-zero when a page failed or a record was refused."
    )

    def add_arguments(self, parser):
        parser.add_argument("--full", action="store_true", help="pull every EVSE, not only the changes")

    def handle(self, *args, full=False, **options):
        report = services.pull_evse_data(full=full, trigger="command")
        self.stdout.write(report.summary())
        for item in report.refused_records:
            self.stdout.write(
                f"  refused: page {item['page']} record {item['index']} {item['evse_id'] or '(no EvseID)'}: "
                f"{item['reason']}"
            )
        more = report.refused - len(report.refused_records)
        if more:
            self.stdout.write(f"  ... and {more} more refused record(s)")
        if not report.ok:
            problems = [report.failure] if report.failure else []
            if report.refused:
                problems.append(f"{report.refused} record(s) refused")
            if not problems:
                problems.append("the pull did not complete")
            raise CommandError("The EVSE data pull did not succeed: " + "; ".join(problems))
