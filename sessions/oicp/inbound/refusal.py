"""A refused push (OICP 022 Data error): the problems, each naming its field, and the valid IDs to echo."""

from __future__ import annotations

from typing import Any

from ..fields import FieldError, partner_session_id, session_id

ADDITIONAL_INFO_MAX = 1000  # StatusCode.AdditionalInfo of the acknowledgement


class InboundError(ValueError):
    """The message is refused (OICP 022 Data error); `problems` name the fields."""

    def __init__(self, problems: list[str], echo: dict[str, str] | None = None):
        self.problems = problems or ["body: invalid"]
        # SessionID and partner session IDs that were valid, for the acknowledgement.
        self.echo = echo or {}
        super().__init__(self.summary)

    @property
    def summary(self) -> str:
        text = "; ".join(self.problems)
        return text if len(text) <= ADDITIONAL_INFO_MAX else text[: ADDITIONAL_INFO_MAX - 1] + "…"


def echo_ids(data: dict[str, Any]) -> dict[str, str]:
    """The IDs worth repeating in a refusal's acknowledgement: only those that are valid."""
    echo = {}
    for name, parse in (
        ("SessionID", session_id),
        ("CPOPartnerSessionID", partner_session_id),
        ("EMPPartnerSessionID", partner_session_id),
    ):
        try:
            if data.get(name) is not None:
                echo[name] = parse(data[name])
        except FieldError:
            pass
    return echo
