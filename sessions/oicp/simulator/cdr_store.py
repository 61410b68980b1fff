"""The CDRs HBS holds, pushed to the EMP or not, which eRoamingGetChargeDetailRecords pages through.

A CDR also closes its session at HBS: a stop for it then gets "400 Session is invalid" (DIGEST §2).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from typing import Any

from sessions.oicp.ids import operator_id_from_evse_id, operator_key

from .behaviours import BehaviourError
from .checks import parse_oicp_datetime

MAX_CDRS = 100_000


class CdrStore:
    """CDRs in arrival order, each with whether it was forwarded; every access holds the lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: list[dict[str, Any]] = []
        self.session_ids: set[str] = set()  # sessions HBS holds a CDR for: closed, compared as given
        self._seq = 0

    def add(self, cdr: dict[str, Any], source: str) -> dict[str, Any]:
        """Keep a CDR (made by a CPO: "generated", or "control"); the entry is updated once it is forwarded."""
        with self.lock:
            return self._add(cdr, source)

    def _add(self, cdr: dict[str, Any], source: str) -> dict[str, Any]:
        self._seq += 1
        entry = {
            "seq": self._seq,
            "cdr": cdr,
            "charging_end": parse_oicp_datetime(cdr.get("ChargingEnd")),
            "forwarded": False,
            "source": source,
        }
        self.entries.append(entry)
        if isinstance(cdr.get("SessionID"), str):
            self.session_ids.add(cdr["SessionID"])
        del self.entries[:-MAX_CDRS]
        return entry

    def mark_forwarded(self, entry: dict[str, Any], forwarded: bool) -> None:
        with self.lock:
            entry["forwarded"] = forwarded

    def holds_cdr_for(self, session_id: str) -> bool:
        with self.lock:
            return session_id in self.session_ids

    def add_cdrs(self, cdrs: object) -> dict[str, Any]:
        """Control API: CDRs HBS holds that were never pushed. Only ChargingEnd (for the window) is required."""
        if not isinstance(cdrs, list):
            raise BehaviourError("cdrs: must be a JSON list of eRoamingChargeDetailRecord objects")
        problems = [
            f"cdrs[{index}]: must be an object with a ChargingEnd date-time with offset"
            for index, cdr in enumerate(cdrs)
            if not isinstance(cdr, dict) or parse_oicp_datetime(cdr.get("ChargingEnd")) is None
        ]
        if problems:
            raise BehaviourError("; ".join(problems[:50]))
        with self.lock:
            for cdr in cdrs:
                self._add(copy.deepcopy(cdr), source="control")
        return {"added": len(cdrs)}

    def listed(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {"seq": e["seq"], "forwarded": e["forwarded"], "source": e["source"], "cdr": copy.deepcopy(e["cdr"])}
                for e in self.entries
            ]

    def clear(self) -> int:
        with self.lock:
            count = len(self.entries)
            self.entries.clear()
            self.session_ids.clear()
            return count

    def select(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        """CDRs whose ChargingEnd lies in [From, To], filtered like HBS, in a stable order for paging."""
        date_from, date_to = parse_oicp_datetime(body["From"]), parse_oicp_datetime(body["To"])
        sessions = {s.lower() for s in body.get("SessionID") or []}
        operators = body.get("OperatorID")
        operators = {operator_key(o) for o in (operators if isinstance(operators, list) else [operators]) if o}
        forwarded = body.get("CDRForwarded", body.get("CDRForwarder"))
        with self.lock:
            selected = []
            for entry in self.entries:
                cdr = entry["cdr"]
                if not (date_from <= entry["charging_end"] <= date_to):
                    continue
                if sessions and str(cdr.get("SessionID", "")).lower() not in sessions:
                    continue
                if operators:
                    try:
                        operator = operator_key(operator_id_from_evse_id(str(cdr.get("EvseID", ""))))
                    except ValueError:
                        continue
                    if operator not in operators:
                        continue
                if forwarded is not None and entry["forwarded"] != forwarded:
                    continue
                selected.append(entry)
        return sorted(selected, key=lambda e: (e["charging_end"], e["seq"]))
