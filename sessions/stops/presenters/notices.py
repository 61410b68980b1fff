"""The answer to a click on "Send stop to Hubject": what the stop area says right after a submit."""

from __future__ import annotations

from dataclasses import dataclass

from .tones import TONE_MARKS

# The broker (Redis) did not take the stop in time: it is saved; the sweeper sends it.
QUEUED_WHILE_WORKER_UNREACHABLE = (
    "Stop saved: it will be sent to Hubject as soon as the background service is reachable again (the portal "
    "checks every 30 s by itself). Nothing is lost: do not click again."
)
REQUESTED = "Stop requested: follow it below."
REFUSED = "The stop was not sent: {reason}"


@dataclass(frozen=True)
class Notice:
    """What the stop area says right after a submit (it replaces the flash message the swap lost)."""

    id: str  # "stop-queued", "stop-refusal", "stop-requested": tests and screen readers find it by id
    tone: str
    text: str
    role: str  # "alert" for what needs the agent's attention, "status" otherwise

    @property
    def mark(self) -> str:
        return TONE_MARKS[self.tone]


def stop_notice(*, refusal: str = "", queued: bool | None = None) -> Notice:
    if refusal:
        return Notice("stop-refusal", "bad", REFUSED.format(reason=refusal), "alert")
    if queued is False:
        return Notice("stop-queued", "warn", QUEUED_WHILE_WORKER_UNREACHABLE, "alert")
    return Notice("stop-requested", "info", REQUESTED, "status")
