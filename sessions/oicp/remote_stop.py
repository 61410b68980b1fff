"""eRoamingAuthorizeRemoteStop_V2.1 (DIGEST §1, §3, §4): the stop request sent to HBS and its RemoteStopResult."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests

from .exchange import JSON_HEADERS, Exchange
from .outcomes import NOT_JSON, Outcome, classify, ms_since, parse_json, transport_failure
from .status_codes import STATUS_CODES, StatusCodeInfo, describe, describe_failure

if TYPE_CHECKING:
    from .client import HubjectClient

RAW_BODY_MAX = 4000
# Response headers worth keeping in the audit trail (Process-ID is Hubject's trace id).
KEPT_HEADERS = ("Content-Type", "Content-Length", "Date", "Process-ID", "Retry-After", "X-Correlation-ID")


@dataclass(frozen=True)
class RemoteStopResult(Exchange):
    """The answer to one stop: accepted, finally rejected or transient, with the exchange for the audit.

    `oicp_code` is always a 3-digit string or "", never the HTTP status; `failure_kind` is "" for
    OICP answers, else a key of FAILURE_KINDS.
    """

    request_sent: bool = True  # False only when we know the request never reached the server
    response: dict[str, Any] | None = None

    @property
    def is_final(self) -> bool:
        return self.outcome is not Outcome.TRANSIENT

    @property
    def outcome_unknown(self) -> bool:
        """The request left, but no answer came back (read timeout, connection reset): Hubject
        may have forwarded the stop to the CPO, or not."""
        return self.request_sent and self.http_status is None and self.outcome is not Outcome.ACCEPTED

    @property
    def playbook(self) -> StatusCodeInfo:
        """What the agent says and does: by OICP code when there is one, else by failure kind."""
        if self.oicp_code in STATUS_CODES:
            return STATUS_CODES[self.oicp_code]
        return describe_failure(self.failure_kind) if self.failure_kind else describe(self.oicp_code)

    def to_audit(self) -> dict[str, Any]:
        """The exchange with Hubject's answer as received (kept headers, the body or its first 4000 characters)."""
        return {**super().to_audit(), "request_sent": self.request_sent, "response": copy.deepcopy(self.response)}


def send_remote_stop(
    client: HubjectClient,
    *,
    session_id: str,
    evse_id: str,
    emp_partner_session_id: str = "",
    cpo_partner_session_id: str = "",
    correlation_id: str = "",
) -> RemoteStopResult:
    """Send one stop; never raises for network, HTTP or parsing problems (see HubjectClient)."""
    body: dict[str, str] = {"SessionID": session_id, "ProviderID": client.provider_id, "EvseID": evse_id}
    # Optional fields only when known: an empty string is not a partner session id.
    if cpo_partner_session_id:
        body["CPOPartnerSessionID"] = cpo_partner_session_id
    if emp_partner_session_id:
        body["EMPPartnerSessionID"] = emp_partner_session_id
    headers = dict(JSON_HEADERS)
    if correlation_id:
        headers["X-Correlation-ID"] = correlation_id
    url = client.stop_url()
    request = {"method": "POST", "url": url, "headers": headers, "json": body, "timeout": list(client.timeout)}

    started = time.monotonic()
    try:
        response = client.post(url, body, headers=headers, timeout=client.timeout)
    except (requests.RequestException, OSError) as exc:
        verdict, sent = transport_failure(exc)
        verdict = verdict._replace(error=client.redact(verdict.error))
        return RemoteStopResult(**verdict._asdict(), request_sent=sent, request=request, elapsed_ms=ms_since(started))
    elapsed_ms = ms_since(started)
    parsed = parse_json(response.content)
    raw = response.content.decode("utf-8", errors="replace")
    return RemoteStopResult(
        **classify(response.status_code, parsed, raw, response.headers.get("Location", ""))._asdict(),
        http_status=response.status_code,
        process_id=response.headers.get("Process-ID", ""),
        request_sent=True,
        request=request,
        response={
            "status": response.status_code,
            "headers": {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers},
            "body": raw[:RAW_BODY_MAX] if parsed is NOT_JSON else parsed,
        },
        elapsed_ms=elapsed_ms,
    )
