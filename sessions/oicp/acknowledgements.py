"""The shape of an eRoamingAcknowledgement and its StatusCode (DIGEST §1, §2), built in one place.

HBS answers a remote stop with one, and the portal answers every push from HBS with one; both
echo the session fields with explicit nulls when absent, as HBS does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .status_codes import HUBJECT_DESCRIPTIONS

ECHOED_FIELDS = ("SessionID", "CPOPartnerSessionID", "EMPPartnerSessionID")


def status_code(code: str, additional_info: str | None = None, description: str | None = None) -> dict[str, Any]:
    """StatusCodeType; the description defaults to Hubject's wording of the code."""
    return {
        "Code": code,
        "Description": HUBJECT_DESCRIPTIONS.get(code) if description is None else description,
        "AdditionalInfo": additional_info,
    }


def acknowledgement(
    result: bool,
    code: str,
    additional_info: str | None = None,
    *,
    description: str | None = None,
    echo: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """eRoamingAcknowledgement; `echo` (a request or message) gives SessionID and the partner session IDs."""
    echo = echo or {}
    return {
        "Result": result,
        "StatusCode": status_code(code, additional_info, description),
        **{name: echo.get(name) for name in ECHOED_FIELDS},
    }
