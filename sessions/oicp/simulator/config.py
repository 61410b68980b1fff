"""The options of the simulated CPOs, defined once: the CLI fills them in, the server passes them on."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

MAX_EVSE_COUNT = 2_000_000


@dataclass
class CpoConfig:
    """Where and how the CPOs behind HBS push to the portal, and how the demo's sessions come and go.

    Mutable on purpose: tests shorten the delays of a running simulator (`server.cpo.config`).
    """

    # Base URL of the portal's inbound OICP endpoints; None: nothing is pushed (CDRs are still kept).
    portal_url: str | None = None
    push_delay_seconds: float = 3.0  # from an accepted stop to the End notification
    cdr_delay_seconds: float = 1.0  # from End to the CDR
    progress_interval_seconds: float = 60.0  # between Progress notifications of a session; 0: none
    new_session_interval_seconds: float = 0.0  # demo: a new session this often; 0: never
    max_sessions: int = 60  # demo: above this many charging sessions the oldest one finishes
    provider_id: str = "DE-EMP"  # the EMP whose contracts (EvcoIDs) the sessions use
    push_timeout_seconds: float = 10.0
    push_attempts: int = 3  # a push is tried this often (transport errors, 5xx, 408, 429), then dropped
    push_backoff_seconds: float = 1.0  # doubled after each failed attempt
    seed: int | None = None  # random seed, for repeatable demo data (and the EVSE network's; None: 0)
    evse_count: int = 400  # EVSEs in the directory HBS serves (eRoamingPullEvseData/-Status)
    evse_churn_seconds: float = 600.0  # the directory changes in ticks of this length (updates, replacements)

    def __post_init__(self) -> None:
        self.portal_url = self.portal_url.rstrip("/") if self.portal_url else None
        self.push_attempts = max(1, self.push_attempts)
        if not 0 <= self.evse_count <= MAX_EVSE_COUNT:
            raise ValueError(f"evse_count must be between 0 and {MAX_EVSE_COUNT}")
        if self.evse_churn_seconds <= 0:
            raise ValueError("evse_churn_seconds must be above 0")

    @classmethod
    def from_options(cls, options: Any) -> CpoConfig:
        """From any object with attributes named like the fields (argparse's Namespace); absent ones keep defaults."""
        return cls(**{f.name: getattr(options, f.name) for f in fields(cls) if hasattr(options, f.name)})


DEFAULTS = CpoConfig()
