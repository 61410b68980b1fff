"""The OICP 2.3 URL paths the portal calls on HBS and HBS calls on the portal, with the CDR pull's paging.

One home for each path: the client builds its URLs from them, the simulator matches requests with
`pattern()`, and the portal's inbound endpoints serve the two push paths. `{name}` marks a path
segment (a ProviderID or OperatorID), as in Hubject's OpenAPI files.
"""

from __future__ import annotations

import re

# eRoamingAuthorizeRemoteStop_V2.1 (DIGEST §1): EMP → HBS.
AUTHORIZE_REMOTE_STOP = "/api/oicp/charging/v21/providers/{provider_id}/authorize-remote/stop"
# eRoamingGetChargeDetailRecords_V2.2 (DIGEST §5.4): EMP → HBS, paged with ?page=&size=.
GET_CHARGE_DETAIL_RECORDS = "/api/oicp/cdrmgmt/v22/providers/{provider_id}/get-charge-detail-records-request"
# eRoamingChargingNotifications_V1.1 (DIGEST §5.2): HBS → EMP.
CHARGING_NOTIFICATIONS = "/api/oicp/notificationmgmt/v11/charging-notifications"
# eRoamingChargeDetailRecord_V2.2 (DIGEST §5.3): HBS → EMP, on the (hub) operator's path.
CHARGE_DETAIL_RECORD = "/api/oicp/cdrmgmt/v22/operators/{operator_id}/charge-detail-record"

# Paging of GET_CHARGE_DETAIL_RECORDS: HBS's default and its maximum page size.
DEFAULT_CDR_PAGE_SIZE = 20
MAX_CDR_PAGE_SIZE = 2000

_SEGMENT = re.compile(r"\{(\w+)\}")


def pattern(template: str) -> re.Pattern[str]:
    """A regex matching `template`'s paths, one named group per `{name}` segment (still URL-encoded)."""
    parts = _SEGMENT.split(template)
    # split() alternates literal text and segment names: escape the text, capture the names.
    regex = "".join(re.escape(part) if index % 2 == 0 else f"(?P<{part}>[^/]+)" for index, part in enumerate(parts))
    return re.compile(f"^{regex}$")
