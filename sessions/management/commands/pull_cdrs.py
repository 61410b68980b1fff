"""Pull Hubject's CDRs for a window now (the same reconciliation the periodic job runs).

Without --from the run starts where the periodic job's next run would (`next_pull_start`: the end
of the last complete run minus OICP_CDR_PULL_OVERLAP_MINUTES; OICP_CDR_PULL_WINDOW_HOURS back when
none completed yet), and ends at --to or now. Such a run, when complete, moves the periodic job's
start on like one of its own. A window given with --from counts for the next start only when it
contains the point the periodic job would have started from (no gap is left behind it), and then
up to its end; an earlier or later window is pulled and recorded but leaves the start alone.

Prints the counts and every refused CDR (SessionID and reason); exits non-zero (CommandError)
when a page failed, a CDR could not be stored, or any CDR was refused.
"""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from sessions import services
from sessions.inbound.reconciliation import next_pull_start

MAX_NAMED_IN_ERROR = 10  # refused SessionIDs named in the error message; all are printed above it


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
        "and their accepted stops confirmed. Prints the counts and every refused CDR; exits non-zero "
        "when a page failed, a CDR could not be stored or any CDR was refused. Without --from: from "
        "where the periodic job's next run would start (the end of the last complete run minus "
        "OICP_CDR_PULL_OVERLAP_MINUTES; OICP_CDR_PULL_WINDOW_HOURS back before the first one)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--from", dest="date_from", help="start, ISO 8601 with offset (e.g. 2026-01-05T00:00:00+01:00)"
        )
        parser.add_argument("--to", dest="date_to", help="end, ISO 8601 with offset (default: now)")

    def handle(self, *args, date_from=None, date_to=None, **options):
        end = _timestamp(date_to, "--to") if date_to else timezone.now()
        start = _timestamp(date_from, "--from") if date_from else next_pull_start(now=end)
        if start >= end:
            raise CommandError(f"--from ({start.isoformat()}) must be before --to ({end.isoformat()}).")
        report = services.pull_charge_detail_records(date_from=start, date_to=end, trigger="MANUAL")
        self.stdout.write(report.summary())
        for item in report.refused_cdrs:
            self.stdout.write(f"  refused: {item.describe()}")
        if report.refused_not_listed:
            self.stdout.write(
                f"  ... and {report.refused_not_listed} more refused CDR(s): see the supervisors' anomaly list"
            )
        for note in report.notes:
            self.stdout.write(f"  {note}")
        if not report.ok:
            problems = []
            if report.failure:
                problems.append(report.failure)
            if report.refused:
                named = ", ".join(item.session_id or "(none)" for item in report.refused_cdrs[:MAX_NAMED_IN_ERROR])
                more = report.refused - min(len(report.refused_cdrs), MAX_NAMED_IN_ERROR)
                problems.append(
                    f"{report.refused} CDR(s) refused (SessionID {named}" + (f" and {more} more" if more else "") + ")"
                )
            stored_errors = report.errors - (1 if report.failure else 0)
            if stored_errors:
                problems.append(f"{stored_errors} CDR(s) could not be stored")
            raise CommandError(
                "The CDR pull did not finish cleanly: "
                + "; ".join(problems or [f"{report.errors} error(s)"])
                + f". Audit record #{report.audit_record_id}."
            )
