"""eRoamingGetChargeDetailRecords_V2.2 (DIGEST §5.4): one page of the CDR pull, read into a Page."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from .exchange import Page, call, oicp_datetime, read_page
from .paths import GET_CHARGE_DETAIL_RECORDS as CDR_PULL_PATH
from .paths import MAX_CDR_PAGE_SIZE

if TYPE_CHECKING:
    from .client import HubjectClient


def get_charge_detail_records(
    client: HubjectClient, *, date_from, date_to, page: int, size: int = MAX_CDR_PAGE_SIZE
) -> Page:
    """One page of eRoamingGetChargeDetailRecords_V2.2 for [date_from, date_to] (aware datetimes).

    Never raises for network, HTTP or parsing problems: the page says ok / transient / final.
    `size` is capped at HBS's maximum of 2000. Raises ValueError only for a caller's mistake
    (naive datetimes, from after to, negative page). The records are the CDR objects as HBS sent
    them, numbers parsed as Decimal (never float), so that `sessions.oicp.inbound` validates them
    exactly as it does a pushed CDR.
    """
    if page < 0:
        raise ValueError("page must be 0 or more")
    size = max(1, min(int(size), MAX_CDR_PAGE_SIZE))
    body = {
        "ProviderID": client.provider_id,
        "From": oicp_datetime(date_from, "date_from"),
        "To": oicp_datetime(date_to, "date_to"),
    }
    if date_from > date_to:
        raise ValueError("date_from must not be after date_to")
    url = client.base_url + CDR_PULL_PATH.format(provider_id=client.provider_id) + f"?page={page}&size={size}"
    exchange, parsed = call(client, url, body, "CDR pull", parse_float=Decimal)
    return read_page(exchange, parsed, page=page, size=size, kind="eRoamingChargeDetailRecords")
