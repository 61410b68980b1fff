"""What the handler threads share about HBS itself: the behaviour table and the log of requests received."""

from __future__ import annotations

import collections
import copy
import threading
from datetime import UTC, datetime
from typing import Any

from .behaviours import Behaviour, BehaviourTable

MAX_RECEIVED = 10_000


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class SimulatorState:
    """Behaviour table and received log, shared by the handler threads; every access holds the lock."""

    def __init__(self, behaviours: BehaviourTable | None = None, max_received: int = MAX_RECEIVED) -> None:
        self.lock = threading.Lock()
        self.behaviours = behaviours or BehaviourTable()
        # A PUT that names no option goes back to these: what the simulator was started with (CLI).
        self.startup_options = self.behaviours.options()
        self.received: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_received)
        self._seq = 0

    def get_behaviours(self) -> dict[str, Any]:
        with self.lock:
            return self.behaviours.to_json()

    def replace_behaviours(self, data: object) -> dict[str, Any]:
        table = BehaviourTable.from_json(data, **self.startup_options)  # validate outside the lock
        with self.lock:
            self.behaviours = table
            return table.to_json()

    def patch_behaviours(self, data: object) -> dict[str, Any]:
        with self.lock:  # merge under the lock so concurrent PATCHes do not lose each other's entries
            self.behaviours = self.behaviours.merged(data)
            return self.behaviours.to_json()

    def lookup(self, evse_id: str | None) -> tuple[Behaviour, str]:
        with self.lock:
            return self.behaviours.lookup(evse_id)

    def tidy(self) -> bool:
        with self.lock:
            return self.behaviours.tidy

    def record(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append an entry (its seq assigned here) and return it; the handler updates it later."""
        with self.lock:
            self._seq += 1
            entry["seq"] = self._seq
            self.received.append(entry)
            return entry

    def update(self, entry: dict[str, Any], **changes: Any) -> None:
        with self.lock:
            entry.update(changes)

    def received_list(self, evse_id: str | None = None, session_id: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            entries = [copy.deepcopy(e) for e in self.received if _matches(e, evse_id, session_id)]
        return entries

    def clear_received(self) -> int:
        with self.lock:
            count = len(self.received)
            self.received.clear()
            return count


def _matches(entry: dict[str, Any], evse_id: str | None, session_id: str | None) -> bool:
    body = entry.get("body") if isinstance(entry.get("body"), dict) else {}
    for wanted, key in ((evse_id, "EvseID"), (session_id, "SessionID")):
        if wanted is not None and str(body.get(key, "")).upper() != wanted.upper():
            return False
    return True
