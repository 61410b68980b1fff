"""Write the portal's active sessions for the Hubject simulator (`--demo-sessions-file`).

`make run` uses it in sandbox mode, so the simulated CPOs run the same sessions the portal shows:
they push Progress for them and, after an accepted stop, End and the CDR.
"""

import json
import os
from pathlib import Path

from django.core.management.base import BaseCommand

from sessions.models import ChargingSession


class Command(BaseCommand):
    help = "Write the active charging sessions as the simulator's demo sessions file (JSON list)."

    def add_arguments(self, parser):
        parser.add_argument("path", help="file to write, e.g. var/demo-sessions.json")

    def handle(self, *args, path: str, **options):
        rows = (
            ChargingSession.objects.filter(status=ChargingSession.Status.ACTIVE)
            .order_by("pk")
            .values_list(
                "session_id", "evse_id", "operator_id", "emp_partner_session_id", "cpo_partner_session_id", "started_at"
            )
        )
        sessions = []
        for session_id, evse_id, operator_id, emp_id, cpo_id, started_at in rows.iterator():
            entry = {"SessionID": session_id, "EvseID": evse_id, "OperatorID": operator_id}
            if emp_id:
                entry["EMPPartnerSessionID"] = emp_id
            if cpo_id:
                entry["CPOPartnerSessionID"] = cpo_id
            if started_at:
                entry["ChargingStart"] = started_at.isoformat(timespec="seconds")
            sessions.append(entry)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(target.suffix + ".partial")
        partial.write_text(json.dumps(sessions, indent=1), encoding="utf-8")
        os.replace(partial, target)  # the simulator never reads a half-written file
        self.stdout.write(f"{len(sessions)} active session(s) written to {target}")
