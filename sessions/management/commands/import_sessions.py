"""Import the EMP's own session feed (JSON Lines) into the portal: a dry run unless --commit."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from sessions.inbound import imports

MAX_PRINTED = 200

LINE_FORMAT = """\
One JSON object per line (UTF-8, blank lines ignored), keyed by Hubject's SessionID:
  SessionID            required  GUID-shaped Hubject SessionID
  EvseID               required  OICP EvseID, e.g. DE*ACC*E0042*1
  ProviderID           optional  default OICP_PROVIDER_ID
  EMPPartnerSessionID  optional  at most 250 characters
  CPOPartnerSessionID  optional  at most 250 characters
  Status               optional  ACTIVE, CHARGING_ENDED or CLOSED (new: CLOSED if SessionEnd, else ACTIVE)
  SessionStart         required  ISO 8601 with seconds and a UTC offset, years 1970–2199, e.g. 2026-01-05T10:00:00+01:00
  SessionEnd           optional  ISO 8601 with seconds and a UTC offset, years 1970–2199, not before SessionStart
  ConsumedEnergy       optional  kWh, at most 3 decimals
Example:
  {"SessionID": "f98efba4-02d8-4fa0-b810-9a9d50d2c527", "EvseID": "DE*ACC*E0042*1", "SessionStart": "2026-01-05T10:00:00+01:00"}

Unknown SessionIDs are created, known ones updated with the fields given (absent or null: left as
they are). A line is bad when it breaks these rules, repeats a SessionID, changes a known session's
EvseID or ProviderID, moves its status backwards, changes what Hubject's CDR settled, or closes a
session whose stop is still being sent.

Without --commit nothing is written: the command says what would change. With --commit and any bad
line nothing is written either, unless --skip-bad (then the good lines are imported). Exit status:
0 when every line is good, 1 when any line is bad or the file cannot be read."""


class Command(BaseCommand):
    help = "Upsert charging sessions from the EMP's own session feed (JSON Lines). Dry run unless --commit."

    def create_parser(self, prog_name, subcommand, **kwargs):
        from argparse import RawDescriptionHelpFormatter

        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = RawDescriptionHelpFormatter
        parser.epilog = LINE_FORMAT
        return parser

    def add_arguments(self, parser):
        parser.add_argument("file", help="the JSON Lines file ('-' for standard input)")
        parser.add_argument("--commit", action="store_true", help="write the changes (default: dry run)")
        parser.add_argument(
            "--skip-bad", action="store_true", help="with --commit, import the good lines even when some lines are bad"
        )
        parser.add_argument("--user", help="username the audit records name as the actor (default: system)")

    def handle(self, *args, file: str, commit: bool, skip_bad: bool, user: str | None, **options):
        acting_user = None
        if user:
            acting_user = get_user_model().objects.filter(username=user).first()
            if acting_user is None:
                raise CommandError(f"--user {user!r}: no such user")
        try:
            if file == "-":
                import sys

                report = imports.import_sessions(
                    stream=sys.stdin.buffer, source="stdin", commit=commit, skip_bad=skip_bad, acting_user=acting_user
                )
            else:
                with open(file, "rb") as stream:
                    report = imports.import_sessions(
                        stream=stream, source=file, commit=commit, skip_bad=skip_bad, acting_user=acting_user
                    )
        except (OSError, imports.ImportFileError) as exc:
            raise CommandError(f"Cannot read {file}: {exc}") from exc

        for change in report.planned[:MAX_PRINTED]:
            if change.action != "unchanged":
                self.stdout.write("  " + change.describe(done=report.written))
        if len(report.planned) > MAX_PRINTED:
            self.stdout.write(f"  … and {len(report.planned) - MAX_PRINTED} more")
        for error in report.errors[:MAX_PRINTED]:
            self.stderr.write(error)
        if report.bad > min(len(report.errors), MAX_PRINTED):
            self.stderr.write(f"… and {report.bad - min(len(report.errors), MAX_PRINTED)} more bad line(s)")
        self.stdout.write(report.summary())
        if not report.ok:
            raise CommandError(f"{report.bad} bad line(s) in {file}.")
