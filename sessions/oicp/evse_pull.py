"""eRoamingPullEvseData_V2.3 (one page of Hubject's EVSE directory) and eRoamingPullEvseStatusByID_V2.1.

Both are EMP → HBS calls through the HubjectClient's session; like the CDR pull they never raise for
Hubject's problems (network, HTTP, an OICP failure code, an unreadable answer): the result says
accepted, finally rejected, or transient. The records come back as sent (JSON objects); reading
them is `evse_data.read_evse_record`'s job, one at a time, so one bad record never costs a page.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .exchange import Exchange, Page, call, oicp_datetime, read_page
from .outcomes import Outcome
from .paths import MAX_EVSE_PAGE_SIZE, MAX_STATUS_BY_ID, PULL_EVSE_DATA, PULL_EVSE_STATUS_BY_ID

if TYPE_CHECKING:
    from .client import HubjectClient

GEO_FORMATS = ("Google", "DecimalDegree", "DegreeMinuteSeconds")
EVSE_STATUSES = ("Available", "Reserved", "Occupied", "OutOfService", "EvseNotFound", "Unknown")


@dataclass(frozen=True)
class EvseStatuses:
    """eRoamingEVSEStatusByID: EvseID (as asked) → EvseStatus; unreadable records are left out."""

    exchange: Exchange
    statuses: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exchange.ok


def pull_evse_data(
    client: HubjectClient,
    *,
    page: int,
    size: int = MAX_EVSE_PAGE_SIZE,
    last_call: datetime | None = None,
    geo_format: str = "DecimalDegree",
) -> Page:
    """One page of Hubject's EVSE data: everything (no `last_call`) or the changes since `last_call`.

    Raises ValueError only for a caller's mistake (negative page, naive last_call, unknown format).
    """
    if page < 0:
        raise ValueError("page must be 0 or more")
    if geo_format not in GEO_FORMATS:
        raise ValueError(f"geo_format must be one of {', '.join(GEO_FORMATS)}")
    size = max(1, min(int(size), MAX_EVSE_PAGE_SIZE))
    body: dict[str, Any] = {"ProviderID": client.provider_id, "GeoCoordinatesResponseFormat": geo_format}
    if last_call is not None:
        body["LastCall"] = oicp_datetime(last_call, "last_call")
    url = client.base_url + PULL_EVSE_DATA.format(provider_id=client.provider_id) + f"?page={page}&size={size}"
    exchange, parsed = call(client, url, body, "EVSE data pull")
    return read_page(exchange, parsed, page=page, size=size, kind="eRoamingEVSEData")


def pull_evse_status_by_id(client: HubjectClient, *, evse_ids: list[str], timeout: float | None = None) -> EvseStatuses:
    """The live status of up to 100 EVSEs (eRoamingPullEVSEStatusByID); ValueError for none or too many.
    `timeout`: at most this many seconds to connect and to read (a screen's call)."""
    evse_ids = list(dict.fromkeys(e for e in evse_ids if isinstance(e, str) and e))
    if not evse_ids:
        raise ValueError("at least one EvseID is needed")
    if len(evse_ids) > MAX_STATUS_BY_ID:
        raise ValueError(f"at most {MAX_STATUS_BY_ID} EvseIDs per request")
    body = {"ProviderID": client.provider_id, "EvseID": evse_ids}
    url = client.base_url + PULL_EVSE_STATUS_BY_ID.format(provider_id=client.provider_id)
    exchange, parsed = call(client, url, body, "EVSE status pull", timeout=timeout)
    if parsed is None:
        return EvseStatuses(exchange)
    container = parsed.get("EVSEStatusRecords", parsed.get("EvseStatusRecords"))
    records = container.get("EvseStatusRecord") if isinstance(container, dict) else None
    if not isinstance(records, list):
        error = "Hubject's answer was not a readable eRoamingEVSEStatusByID."
        return EvseStatuses(replace(exchange, outcome=Outcome.TRANSIENT, failure_kind="unreadable", error=error))
    statuses: dict[str, str] = {}
    for record in records:
        if isinstance(record, dict) and isinstance(record.get("EvseID"), str):
            status = record.get("EvseStatus")
            statuses[record["EvseID"]] = status if status in EVSE_STATUSES else "Unknown"
    return EvseStatuses(exchange, statuses)
