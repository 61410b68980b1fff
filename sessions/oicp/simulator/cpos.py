"""The CPOs behind HBS: the sessions they run and what happens to them (DIGEST §5.2-§5.4).

A session is started (Start, then Progress pushed), may end by itself with the cable stuck, may
report errors, and ends after an accepted stop: End, then the CDR (which HBS keeps in `CdrStore`).
State changes happen under the lock; pushes happen outside it, on the scheduler's threads.
"""

from __future__ import annotations

import collections
import random
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sessions.oicp.ids import operator_id_from_evse_id
from sessions.oicp.paths import CHARGE_DETAIL_RECORD, CHARGING_NOTIFICATIONS

from .behaviours import Behaviour, BehaviourError
from .cdr_store import CdrStore
from .checks import parse_oicp_datetime, session_violations
from .config import CpoConfig
from .demo import DEMO_OPERATORS
from .push import Pusher
from .quirks import shape_message
from .scheduler import Scheduler
from .session import POWERS_W, SimSession, evco_id_for

if TYPE_CHECKING:
    from .directory import EvseDirectory


class ChargePointOperators:
    """The CPO side: runs sessions, ends them after accepted stops, pushes to the portal, makes CDRs."""

    def __init__(
        self,
        config: CpoConfig,
        *,
        stopping: threading.Event,
        cdrs: CdrStore,
        behaviour_lookup: Callable[[str], tuple[Behaviour, str]] | None = None,
    ) -> None:
        self.config = config
        self.stopping = stopping
        self.cdrs = cdrs
        self.behaviour_lookup = behaviour_lookup
        self.lock = threading.Lock()
        self.rng = random.Random(config.seed)
        # Keyed by the SessionID exactly as issued: HBS compares IDs as given, case included.
        self.sessions: dict[str, SimSession] = {}
        self.errors_reported: collections.Counter[str] = collections.Counter()  # per operator, to cycle types
        self.pusher = Pusher(config, stopping)
        self.scheduler = Scheduler(stopping)
        self.directory: EvseDirectory | None = None  # HBS's EVSE directory: the demo's new sessions start there

    def start(self) -> None:
        """Begin the periodic work (new demo sessions); sessions' own pushes schedule themselves."""
        if self.config.new_session_interval_seconds > 0:
            self.scheduler.call_later(self.config.new_session_interval_seconds, self._new_session_tick)

    # ---- sessions

    def add_sessions(self, entries: object, source: str = "sessions") -> dict[str, Any]:
        """Validate and add sessions (POST /_sim/sessions format); raises BehaviourError listing every problem.

        These count as sessions HBS issued. An entry without SessionID gets one from its CPO ("issued").
        """
        if not isinstance(entries, list):
            raise BehaviourError("sessions: must be a JSON list of {SessionID, EvseID, OperatorID, ...}")
        problems = [p for index, raw in enumerate(entries) for p in session_violations(index, raw)]
        if problems:
            raise BehaviourError("; ".join(problems[:50]))
        now = datetime.now(UTC)
        issued = []
        prepared = []
        for raw in entries:  # outside the lock: issuing an ID looks up the CPO's behaviour
            session_id = raw.get("SessionID")
            if session_id is None:
                session_id = self._issue_session_id(raw["EvseID"])
                issued.append(session_id)
            prepared.append(
                self._new_sim_session(
                    session_id=session_id,
                    evse_id=raw["EvseID"].upper(),
                    operator_id=(raw.get("OperatorID") or operator_id_from_evse_id(raw["EvseID"])).upper(),
                    charging_start=parse_oicp_datetime(raw.get("ChargingStart")) or now,
                    emp_partner_session_id=raw.get("EMPPartnerSessionID") or None,
                    cpo_partner_session_id=raw.get("CPOPartnerSessionID") or None,
                    learned_from=source,
                )
            )
        added, known = [], 0
        with self.lock:
            for session in prepared:
                if session.session_id in self.sessions:
                    known += 1
                    continue
                self.sessions[session.session_id] = session
                added.append(session)
        if added and self.directory is not None:
            self.directory.sync_sessions()  # their EVSEs join HBS's directory now (inserted), if new to it
        for index, session in enumerate(added):
            self._started(session, stagger=index * 0.05)
        return {"added": len(added), "already_known": known, "issued": issued}

    def session_evses(self) -> dict[str, str]:
        """EvseID -> state of the sessions the CPOs know (the latest session's, per EVSE)."""
        with self.lock:
            sessions = sorted(self.sessions.values(), key=lambda s: s.charging_start)
            return {s.evse_id: s.state for s in sessions}

    def sessions_list(self) -> list[dict[str, Any]]:
        with self.lock:
            return [s.to_json() for s in self.sessions.values()]

    def session_invalid(self, session_id: str) -> str | None:
        """Why HBS would answer "400 Session is invalid" to a stop: "never issued", "closed", or None (open).

        Compared exactly as given: HBS does not fold the case of SessionIDs.
        """
        if self.cdrs.holds_cdr_for(session_id):
            return "closed"  # its CDR closed the HBS session (DIGEST §2, §8.5)
        with self.lock:
            session = self.sessions.get(session_id)
            if session is not None and session.state == "CLOSED":
                return "closed"
            return None if session is not None else "never issued"

    def _issue_session_id(self, evse_id: str) -> str:
        """A new GUID SessionID; upper case for a CPO whose behaviour has the upper_case_session_ids quirk."""
        session_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        return session_id.upper() if "upper_case_session_ids" in self._quirks(evse_id) else session_id

    def _behaviour(self, evse_id: str) -> Behaviour:
        return self.behaviour_lookup(evse_id)[0] if self.behaviour_lookup else {}

    def _quirks(self, evse_id: str) -> Sequence[str]:
        return self._behaviour(evse_id).get("quirks") or ()

    def _confirms(self, evse_id: str) -> bool:
        return self._behaviour(evse_id).get("confirm", True) is not False

    def _notify(self, kind: str, session: SimSession, body: dict[str, Any], **extra: Any) -> None:
        """Push a notification as the session's CPO sends it (quirks, hub operator); call without the lock."""
        shaped = shape_message(kind, body, session, self._behaviour(session.evse_id))
        self.pusher.push(kind, session.session_id, CHARGING_NOTIFICATIONS, shaped, **extra)

    def _new_sim_session(self, **values: Any) -> SimSession:
        return SimSession(
            evco_id=evco_id_for(self.config.provider_id, values["session_id"]),
            power_w=self.rng.choice(POWERS_W),
            meter_start_wh=self.rng.randint(1_000_000, 9_000_000),
            **values,
        )

    def _started(self, session: SimSession, stagger: float = 0.0) -> None:
        """Push Start, then Progress every progress interval (spread out so they do not arrive at once).

        A cable-stuck CPO ends charging by itself later, and a faulty one reports an error; these
        change the session's state, so they are scheduled with or without a portal to push to.
        """
        behaviour = self._behaviour(session.evse_id)
        pushing = bool(self.config.portal_url)
        if behaviour.get("cable_stuck_after_seconds") is not None:
            self.scheduler.call_later(
                stagger + behaviour["cable_stuck_after_seconds"], self._charging_finished, session.session_id
            )
        if behaviour.get("error_types") and pushing:
            self.scheduler.call_later(
                stagger + behaviour["error_after_seconds"], self._report_error, session.session_id
            )
        if not pushing:
            return
        # Shaped now, with the behaviour the session started under.
        start = shape_message("Start", session.start_notification(), session, behaviour)
        self.scheduler.call_later(stagger, self.pusher.push, "Start", session.session_id, CHARGING_NOTIFICATIONS, start)
        interval = self.config.progress_interval_seconds
        if interval > 0:
            self.scheduler.call_later(
                interval * (0.2 + 0.8 * self.rng.random()), self._progress_tick, session.session_id
            )

    def _progress_tick(self, session_id: str) -> None:
        with self.lock:
            session = self.sessions.get(session_id)
            if session is None or session.state != "CHARGING":
                return
            body = session.progress_notification(datetime.now(UTC))
        self._notify("Progress", session, body)
        self.scheduler.call_later(self.config.progress_interval_seconds, self._progress_tick, session_id)

    def _charging_finished(self, session_id: str) -> None:
        """Cable stuck: charging ends (End pushed) but the car stays plugged in, without CDR, until a stop."""
        with self.lock:
            session = self.sessions.get(session_id)
            if session is None or session.state != "CHARGING":
                return
            session.state = "PLUGGED"
            body = session.end_notification(datetime.now(UTC))
        if self.config.portal_url:
            self._notify("End", session, body, reason="charging_finished")

    def _report_error(self, session_id: str) -> None:
        """An Error notification; the CPO's sessions take its error_types in turn, so all of them show."""
        with self.lock:
            session = self.sessions.get(session_id)
            if session is None or session.state not in ("CHARGING", "PLUGGED"):
                return
        types = self._behaviour(session.evse_id).get("error_types")
        if not types:  # the behaviour changed since the session started
            return
        with self.lock:
            error_type = types[self.errors_reported[session.operator_id] % len(types)]
            self.errors_reported[session.operator_id] += 1
        self._notify("Error", session, session.error_notification(error_type), error_type=error_type)

    def _new_session_tick(self) -> None:
        """Demo: a driver plugs in at a random demo EVSE (Start pushed); at the cap, the oldest one finishes."""
        self.scheduler.call_later(self.config.new_session_interval_seconds, self._new_session_tick)
        with self.lock:
            charging = [s for s in self.sessions.values() if s.state == "CHARGING"]
        if len(charging) >= self.config.max_sessions:
            finishing = [s for s in charging if self._confirms(s.evse_id)]
            if finishing:
                self._end_session(min(finishing, key=lambda s: s.charging_start).session_id, reason="finished")
        operator = self.rng.choice(DEMO_OPERATORS)["operator_id"]
        evse_id = self.directory.pick_evse(operator, self.rng) if self.directory is not None else None
        entry = {  # no SessionID: the CPO issues it (as its quirks say)
            "EvseID": evse_id or f"{operator}*E{self.rng.randint(1, 9999):04d}*{self.rng.randint(1, 4)}",
            "OperatorID": operator,
            "EMPPartnerSessionID": f"EMP-{self.rng.randint(100000, 999999)}",
            "CPOPartnerSessionID": f"CPO-{self.rng.randint(100000, 999999)}",
            "ChargingStart": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self.add_sessions([entry], source="new_session")

    # ---- a stop was accepted: End notification, then the CDR

    def stop_accepted(self, request: Mapping[str, Any], behaviour: Behaviour) -> None:
        """The CPO ends the session after an accepted stop, unless its behaviour says confirm: false.

        Charging: End, then the CDR. A stuck cable (End already sent): the CDR alone.
        """
        if behaviour.get("confirm") is False:
            return
        with self.lock:
            session = self._find(str(request["SessionID"]))
            if session is None:  # tidy: a session the portal knows but we were never told about
                session = self._learn_from_stop(request)
            if session.state == "PLUGGED":
                session.state = "ENDED"
                next_step: tuple[Any, ...] = (self._charge_detail_record, session.session_id)
            elif session.state == "CHARGING":
                session.state = "ENDING"
                next_step = (self._end_session, session.session_id, "remote_stop")
            else:
                return  # already ending: one End and one CDR per session
        self.scheduler.call_later(self.config.push_delay_seconds, *next_step)

    def stop_accepted_later(self, delay: float, request: Mapping[str, Any], behaviour: Behaviour) -> None:
        """The CPO answered after HBS gave up (310), but it did act on the stop."""
        self.scheduler.call_later(delay, self.stop_accepted, dict(request), behaviour)

    def _find(self, session_id: str) -> SimSession | None:
        """Caller holds the lock. Exact ID first; then any case (only tidy stops get this far unknown)."""
        session = self.sessions.get(session_id)
        if session is None:
            folded = session_id.lower()
            session = next((s for key, s in self.sessions.items() if key.lower() == folded), None)
        return session

    def _learn_from_stop(self, request: Mapping[str, Any]) -> SimSession:
        """Caller holds the lock."""
        self.sessions[request["SessionID"]] = session = self._new_sim_session(
            session_id=request["SessionID"],
            evse_id=request["EvseID"].upper(),
            operator_id=operator_id_from_evse_id(request["EvseID"]),
            charging_start=datetime.now(UTC) - timedelta(minutes=self.rng.randint(10, 120)),
            emp_partner_session_id=request.get("EMPPartnerSessionID") or None,
            cpo_partner_session_id=request.get("CPOPartnerSessionID") or None,
            learned_from="remote_stop",
        )
        return session

    def _end_session(self, session_id: str, reason: str) -> None:
        with self.lock:
            session = self.sessions.get(session_id)
            if session is None or session.state not in ("CHARGING", "ENDING"):
                return
            session.state = "ENDED"
            body = session.end_notification(datetime.now(UTC))
        if self.config.portal_url:
            self._notify("End", session, body, reason=reason)
        self.scheduler.call_later(self.config.cdr_delay_seconds, self._charge_detail_record, session.session_id)

    def _charge_detail_record(self, session_id: str) -> None:
        """The CPO makes the CDR; HBS keeps it (closing the session) and forwards it to the EMP."""
        with self.lock:
            session = self.sessions.get(session_id)
        behaviour = self._behaviour(session.evse_id) if session is not None else {}
        with self.lock:
            if session is None or session.state == "CLOSED":
                return
            session.state = "CLOSED"
            cdr = shape_message("CDR", session.charge_detail_record(datetime.now(UTC)), session, behaviour)
        entry = self.cdrs.add(cdr, source="generated")
        if self.config.portal_url:
            # A hub operator's CDRs come on its own path, not the EvseID's operator's (DIGEST §9).
            operator_id = behaviour.get("hub_operator_id") or session.operator_id
            pushed = self.pusher.push(
                "CDR", session.session_id, CHARGE_DETAIL_RECORD.format(operator_id=operator_id), cdr
            )
            self.cdrs.mark_forwarded(entry, bool(pushed.get("acknowledged")))
