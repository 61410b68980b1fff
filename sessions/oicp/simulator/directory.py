"""The EVSE directory HBS holds (what eRoamingPullEvseData and eRoamingPullEvseStatus serve), over time.

`evse_count` EVSEs in slots 0..N-1, grouped into stations of 1 to 8 (`network`); only the stations'
first slots are stored (one integer each), every record is computed when asked, so 500,000 EVSEs
cost a few megabytes. Time is counted from `epoch` (the start) in ticks of `churn_seconds`:

- most slots are static: their EVSE was created between 30 days and two years before the start;
- UPDATE slots (7 in 100) get a new version of their record every 1 to 12 ticks;
- REPLACE slots (3 in 100) get a new EVSE every 1 to 12 ticks: the old EvseID is deleted, a new one
  (suffix V<n>) inserted, as when a CPO swaps a charger. The count stays N;
- `churn(count)` (POST /_sim/directory/churn) updates that many static EVSEs at once, now: a delta
  of an exact size (bench/directory.py asks for 5,000 changes).

A delta pull (LastCall) compares the directory at LastCall with now, as Hubject does: update for a
changed record, delete and insert for a replaced EVSE; records unchanged in between are left out.

The CPOs' sessions join in: an EVSE with a running session is Occupied, and a session's EvseID the
network does not have (a test's DE*XYZ*ETEST1, the portal's demo sessions) is added to the directory
(inserted when first seen) so that every session has its station. Other statuses flip by themselves,
each EVSE on its own rhythm (5 to 60 minutes).
"""

from __future__ import annotations

import bisect
import math
import re
import threading
import time
import zlib
from array import array
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sessions.oicp.ids import operator_id_from_evse_id

from .demo import DEMO_OPERATORS
from .network import Draws, Station, evse_record, mix, normal_operator_id, station, station_operator, station_size

DAY = 86_400.0
MIN_AGE = 30 * DAY  # static EVSEs were created at least this long before the start...
AGE_SPAN = 700 * DAY  # ...and at most this much longer
STATIC, UPDATE, REPLACE = "static", "update", "replace"
ACTIVE_SESSION_STATES = frozenset({"CHARGING", "PLUGGED", "ENDING"})  # the car is at the EVSE
# Statuses of EVSEs without a session, per 100; some demo CPOs' chargers are in a worse state.
STATUS_SHARES: dict[str, tuple[tuple[str, int], ...]] = {
    "default": (("Available", 68), ("Occupied", 22), ("Reserved", 2), ("OutOfService", 5), ("Unknown", 3)),
    "DE*OFF": (("Available", 30), ("Occupied", 10), ("OutOfService", 45), ("Unknown", 15)),
    "DE*DWN": (("Available", 40), ("Occupied", 10), ("OutOfService", 10), ("Unknown", 40)),
    "DE*FLT": (("Available", 50), ("Occupied", 20), ("OutOfService", 30)),
}
_GENERATED_EVSE_ID = re.compile(r"^([A-Z]{2}\*[A-Z0-9]{3})\*E(\d+)\*(\d+)(?:V(\d+))?$")


def iso_z(epoch_seconds: float) -> str:
    """Hubject's lastUpdate format: UTC with milliseconds, "2018-01-23T14:04:29.377Z"."""
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Extra:
    """An EVSE of a session that the generated network does not have."""

    evse_id: str
    station: Station
    position: int
    inserted_at: float


@dataclass(frozen=True)
class Change:
    """One record of a delta pull."""

    delta_type: str  # insert | update | delete
    slot: int  # -1 - index for extras
    version: int
    changed_at: float


class EvseDirectory:
    """The network at any moment: records, statuses, deltas; thread-safe (extras are added under a lock)."""

    def __init__(
        self,
        evse_count: int,
        *,
        seed: int = 0,
        churn_seconds: float = 600.0,
        session_evses: Callable[[], Mapping[str, str]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.evse_count = evse_count
        self.seed = seed
        self.churn_seconds = churn_seconds
        self.session_evses = session_evses or dict  # EvseID (upper case) -> the session's state
        self.clock = clock  # tests move time with it
        self.epoch = clock()
        self.lock = threading.Lock()
        self.extras: list[Extra] = []
        self._extra_ids: dict[str, int] = {}
        self._filtered: dict[tuple[Any, ...], array[int]] = {}
        self._churned: dict[int, list[float]] = {}  # static slot -> when `churn` updated it
        # starts[s] = first slot of station s; one more entry closes the last station.
        starts = array("q", [0])
        while starts[-1] < evse_count:
            starts.append(min(evse_count, starts[-1] + station_size(seed, len(starts) - 1)))
        self.starts = starts
        self.station_count = len(starts) - 1
        # The demo CPOs' first stations never change: the demo's new sessions start there.
        self.pinned_slots = starts[min(len(DEMO_OPERATORS), self.station_count)]
        self._rotation = mix(seed, 9) % 100

    # ---- slots

    def now(self) -> float:
        return self.clock()

    def kind(self, slot: int) -> str:
        if slot < self.pinned_slots:
            return STATIC
        rank = (slot + self._rotation) % 100
        return REPLACE if rank < 3 else UPDATE if rank < 10 else STATIC

    def churn_slots(self) -> Iterator[int]:
        """The slots that change, in order, without looking at the others."""
        offsets = sorted(((rank - self._rotation) % 100) for rank in range(10))
        for base in range(0, self.evse_count, 100):
            for offset in offsets:
                slot = base + offset
                if self.pinned_slots <= slot < self.evse_count:
                    yield slot

    def _period(self, slot: int) -> tuple[int, int]:
        h = mix(self.seed, 5, slot)
        period = 1 + h % 12
        return period, (h >> 8) % period

    def version(self, slot: int, at: float) -> int:
        if self.kind(slot) == STATIC:
            churned = self._churned.get(slot)
            return bisect.bisect_right(churned, at) if churned else 0
        period, phase = self._period(slot)
        tick = math.floor((at - self.epoch) / self.churn_seconds)
        return (tick + phase) // period

    def version_start(self, slot: int, version: int) -> float:
        period, phase = self._period(slot)
        return self.epoch + (version * period - phase) * self.churn_seconds

    def created_at(self, slot: int) -> float:
        return self.epoch - MIN_AGE - (mix(self.seed, 7, slot) % int(AGE_SPAN))

    def station_of(self, slot: int) -> tuple[Station, int]:
        """(station, position in it, 1-based)."""
        number = bisect.bisect_right(self.starts, slot) - 1
        return station(self.seed, number), slot - self.starts[number] + 1

    def evse_id(self, slot: int, version: int, st: Station | None = None, position: int = 0) -> str:
        if st is None:
            st, position = self.station_of(slot)
        base = f"{st.operator.operator_id}*E{st.number + 1:04d}*{position}"
        return f"{base}V{version % 10000}" if self.kind(slot) == REPLACE and version else base

    def _last_update(self, slot: int, version: int) -> float:
        if self.kind(slot) == STATIC:
            return self._churned[slot][version - 1] if version else self.created_at(slot)
        return self.version_start(slot, version)

    def churn(self, count: int, at: float | None = None) -> int:
        """Update `count` static EVSEs (a new version of each record) at `at` (now), spread evenly over the
        network; returns how many (at most the static EVSEs there are). The next delta carries them."""
        at = self.now() if at is None else at
        first = self.pinned_slots
        step = max(1, (self.evse_count - first) // max(1, count))
        done = 0
        with self.lock:
            for offset in range(step):
                for slot in range(first + offset, self.evse_count, step):
                    if done >= count:
                        return done
                    if self.kind(slot) == STATIC:
                        self._churned.setdefault(slot, []).append(at)
                        done += 1
        return done

    # ---- extras: the EVSEs of sessions

    def sync_sessions(self) -> dict[str, str]:
        """Add the EVSEs of sessions the network lacks; returns the sessions' EVSEs and states."""
        sessions = {evse_id.upper(): state for evse_id, state in self.session_evses().items()}
        at = self.now()
        for evse_id in sessions:
            if evse_id not in self._extra_ids and self.find(evse_id, at) is None:
                self.add_evse(evse_id, at)
        return sessions

    def add_evse(self, evse_id: str, at: float | None = None) -> None:
        """Put an EVSE into the directory (inserted now); at its generated station if the ID names one."""
        evse_id = evse_id.upper()
        with self.lock:
            if evse_id in self._extra_ids:
                return
            st, position = self._station_for(evse_id)
            self._extra_ids[evse_id] = len(self.extras)
            self.extras.append(Extra(evse_id, st, position, self.now() if at is None else at))
            self._filtered.clear()

    def _station_for(self, evse_id: str) -> tuple[Station, int]:
        operator_id = operator_id_from_evse_id(evse_id)
        match = _GENERATED_EVSE_ID.fullmatch(evse_id)
        if match:
            number, position = int(match[2]) - 1, int(match[3])
            if 0 <= number < self.station_count and station_operator(self.seed, number).operator_id == match[1]:
                return station(self.seed, number), position
        # A station of its own, the same for every EVSE of it (the ID without its last part).
        key = evse_id.rsplit("*", 1)[0] if evse_id.count("*") > 2 else evse_id
        digits = re.findall(r"\d+", evse_id.rsplit("*", 1)[-1]) if evse_id.count("*") > 2 else []
        virtual = 10_000_000 + zlib.crc32(key.encode()) % 89_999_999
        return station(self.seed, virtual, normal_operator_id(operator_id)), int(digits[-1]) if digits else 1

    # ---- lookups

    def find(self, evse_id: str, at: float | None = None) -> tuple[int, int] | None:
        """(slot, version) of a generated EVSE current at `at`, or (-1 - index, 0) for an extra; None if absent."""
        evse_id = evse_id.upper()
        index = self._extra_ids.get(evse_id)
        if index is not None:
            return -1 - index, 0
        match = _GENERATED_EVSE_ID.fullmatch(evse_id)
        if not match:
            return None
        number, position = int(match[2]) - 1, int(match[3])
        if not 0 <= number < self.station_count or position < 1:
            return None
        slot = self.starts[number] + position - 1
        if slot >= self.starts[number + 1]:
            return None
        version = self.version(slot, self.now() if at is None else at)
        return (slot, version) if self.evse_id(slot, version) == evse_id else None

    def record(self, slot: int, version: int, response_format: str = "Google") -> dict[str, Any]:
        if slot < 0:
            extra = self.extras[-1 - slot]
            return evse_record(
                extra.station, extra.position, extra.evse_id, 0, iso_z(extra.inserted_at), response_format
            )
        st, position = self.station_of(slot)
        evse_id = self.evse_id(slot, version, st, position)
        return evse_record(st, position, evse_id, version, iso_z(self._last_update(slot, version)), response_format)

    def total(self) -> int:
        return self.evse_count + len(self.extras)

    def slot_at(self, position: int) -> int:
        """The slot of the `position`-th record of a full pull (generated first, then extras)."""
        return position if position < self.evse_count else -1 - (position - self.evse_count)

    def station_for_slot(self, slot: int) -> Station:
        return self.extras[-1 - slot].station if slot < 0 else self.station_of(slot)[0]

    def matching_slots(self, key: tuple[Any, ...], matches: Callable[[Station], bool]) -> array[int]:
        """The slots (records of a full pull) of stations that `matches`, cached per filter (`key`)."""
        with self.lock:
            cache_key = (key, len(self.extras))
            found = self._filtered.get(cache_key)
            if found is not None:
                return found
        slots = array("q")
        for number in range(self.station_count):
            if matches(station(self.seed, number)):
                slots.extend(range(self.starts[number], self.starts[number + 1]))
        slots.extend(-1 - index for index, extra in enumerate(list(self.extras)) if matches(extra.station))
        with self.lock:
            if len(self._filtered) > 16:
                self._filtered.clear()
            self._filtered[cache_key] = slots
        return slots

    # ---- deltas

    def changes(self, since: float, until: float | None = None) -> list[Change]:
        """What changed between `since` (LastCall) and `until` (now), in slot order, extras last."""
        until = self.now() if until is None else until
        if since >= until:
            return []
        found: list[Change] = []
        if since < self.epoch - MIN_AGE:  # EVSEs created after LastCall: every static slot is a candidate
            for slot in range(self.evse_count):
                if self.kind(slot) == STATIC and self.created_at(slot) > since:
                    found.append(Change("insert", slot, self.version(slot, until), self.created_at(slot)))
        for slot in list(self._churned):
            before, now = self.version(slot, since), self.version(slot, until)
            if before != now and self.created_at(slot) <= since:  # else inserted (above)
                found.append(Change("update", slot, now, self._churned[slot][now - 1]))
        for slot in self.churn_slots():
            before, now = self.version(slot, since), self.version(slot, until)
            if before == now:
                continue
            if self.kind(slot) == UPDATE:
                found.append(Change("update", slot, now, self.version_start(slot, now)))
            else:
                found.append(Change("delete", slot, before, self.version_start(slot, before + 1)))
                found.append(Change("insert", slot, now, self.version_start(slot, now)))
        found.sort(key=lambda change: change.slot)
        found += [
            Change("insert", -1 - index, 0, extra.inserted_at)
            for index, extra in enumerate(list(self.extras))
            if since < extra.inserted_at <= until
        ]
        return found

    def change_record(self, change: Change, response_format: str = "Google") -> dict[str, Any]:
        record = self.record(change.slot, change.version, response_format)
        if change.delta_type == "delete":
            record["lastUpdate"] = iso_z(change.changed_at)
        record["deltaType"] = change.delta_type
        return record

    # ---- statuses

    def status(self, slot: int, evse_id: str, at: float, sessions: Mapping[str, str], st: Station | None = None) -> str:
        if sessions.get(evse_id) in ACTIVE_SESSION_STATES:
            return "Occupied"
        key = slot if slot >= 0 else zlib.crc32(evse_id.encode())
        h = mix(self.seed, 8, key)
        period = 300 + h % 3300
        step = math.floor((at - self.epoch + (h >> 16) % period) / period)
        point = Draws(h ^ step).next() % 100
        st = st or self.station_for_slot(slot)
        for status, share in STATUS_SHARES.get(st.operator.operator_id, STATUS_SHARES["default"]):
            if point < share:
                return status
            point -= share
        return "Available"

    def current(self, slots: Iterator[int] | array[int] | range, at: float) -> Iterator[tuple[int, int, Station, str]]:
        """(slot, version, station, EvseID) of each slot's EVSE at `at`."""
        number, first, end = -1, 0, 0  # the station of the previous slot: slots mostly come in order
        for slot in slots:
            if slot < 0:
                extra = self.extras[-1 - slot]
                yield slot, 0, extra.station, extra.evse_id
                continue
            if not first <= slot < end:
                number = bisect.bisect_right(self.starts, slot) - 1
                first, end = self.starts[number], self.starts[number + 1]
            st = station(self.seed, number)
            version = self.version(slot, at)
            yield slot, version, st, self.evse_id(slot, version, st, slot - first + 1)

    # ---- for the demo's new sessions and the control API

    def pick_evse(self, operator_id: str, rng: Any) -> str | None:
        """A random EVSE of `operator_id` that stays in the directory (static, Hubject compatible)."""
        operator_id = operator_id.upper()
        for _ in range(300):
            slot = rng.randrange(self.evse_count) if self.evse_count else 0
            if slot >= self.evse_count or self.kind(slot) != STATIC:
                continue
            st, position = self.station_of(slot)
            if st.operator.operator_id == operator_id and st.hubject_compatible:
                return self.evse_id(slot, 0, st, position)
        for number in range(min(len(DEMO_OPERATORS), self.station_count)):  # the demo CPOs' own stations
            st = station(self.seed, number)
            if st.operator.operator_id == operator_id:
                slot = self.starts[number] + rng.randrange(self.starts[number + 1] - self.starts[number])
                return self.evse_id(slot, 0)
        return None

    def summary(self) -> dict[str, Any]:
        return {
            "evse_count": self.evse_count,
            "session_evses_added": len(self.extras),
            "total": self.total(),
            "stations": self.station_count,
            "seed": self.seed,
            "churn_seconds": self.churn_seconds,
            "epoch": iso_z(self.epoch),
            "now": iso_z(self.now()),
        }
