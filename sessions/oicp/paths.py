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
# eRoamingPullEvseData_V2.3 (OpenAPI eRoamingEvseData): EMP → HBS, paged with ?page=&size=.
PULL_EVSE_DATA = "/api/oicp/evsepull/v23/providers/{provider_id}/data-records"
# eRoamingPullEvseStatus_V2.1 (OpenAPI eRoamingEvseStatus): EMP → HBS. The OpenAPI serves all three
# bodies (all, ByID, ByOperatorID) on this path; the code snippets give ByID and ByOperatorID their own.
PULL_EVSE_STATUS = "/api/oicp/evsepull/v21/providers/{provider_id}/status-records"
PULL_EVSE_STATUS_BY_ID = "/api/oicp/evsepull/v21/providers/{provider_id}/status-records-by-id"
PULL_EVSE_STATUS_BY_OPERATOR_ID = "/api/oicp/evsepull/v21/providers/{provider_id}/status-records-by-operator-id"

# Paging of GET_CHARGE_DETAIL_RECORDS: HBS's default and its maximum page size.
DEFAULT_CDR_PAGE_SIZE = 20
MAX_CDR_PAGE_SIZE = 2000
# Paging of PULL_EVSE_DATA: HBS's default (asciidoc "Pagination"); the spec names no maximum, the
# simulator takes as many as the CDR pull does.
DEFAULT_EVSE_PAGE_SIZE = 20
MAX_EVSE_PAGE_SIZE = 2000
# eRoamingPullEVSEStatusByID: at most this many EvseIDs per request.
MAX_STATUS_BY_ID = 100

_SEGMENT = re.compile(r"\{(\w+)\}")


def pattern(template: str) -> re.Pattern[str]:
    """A regex matching `template`'s paths, one named group per `{name}` segment (still URL-encoded)."""
    parts = _SEGMENT.split(template)
    # split() alternates literal text and segment names: escape the text, capture the names.
    regex = "".join(re.escape(part) if index % 2 == 0 else f"(?P<{part}>[^/]+)" for index, part in enumerate(parts))
    return re.compile(f"^{regex}$")
