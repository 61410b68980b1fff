"""eRoamingPullEvseData_V2.3 (one page of Hubject's EVSE directory) and eRoamingPullEvseStatusByID_V2.1.

Both are EMP → HBS calls through the HubjectClient's session; like the CDR pull they never raise for
Hubject's problems (network, HTTP, an OICP failure code, an unreadable answer): the result says
accepted, finally rejected, or transient. The records come back as sent (JSON objects); reading
them is `evse_data.read_evse_record`'s job, one at a time, so one bad record never costs a page.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import requests

from .outcomes import NOT_JSON, Outcome, classify, clip_text, ms_since, named, read_status_code, transport_failure
from .outcomes import validation_error as _validation_error
from .paths import MAX_EVSE_PAGE_SIZE, MAX_STATUS_BY_ID, PULL_EVSE_DATA, PULL_EVSE_STATUS_BY_ID
from .status_codes import describe

if TYPE_CHECKING:
    from .client import HubjectClient

GEO_FORMATS = ("Google", "DecimalDegree", "DegreeMinuteSeconds")
EVSE_STATUSES = ("Available", "Reserved", "Occupied", "OutOfService", "EvseNotFound", "Unknown")
_HEADERS = {"Content-Type": "application/json; charset=UTF-8", "Accept": "application/json"}


@dataclass(frozen=True)
class Exchange:
    """How one call went: the outcome and what Hubject said, without the payload."""

    outcome: Outcome
    http_status: int | None = None
    oicp_code: str = ""
    description: str = ""
    additional_info: str = ""
    process_id: str = ""
    failure_kind: str = ""
    error: str = ""
    elapsed_ms: int = 0
    request: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.ACCEPTED

    @property
    def transient(self) -> bool:
        return self.outcome is Outcome.TRANSIENT


@dataclass(frozen=True)
class EvseDataPage:
    """One page of eRoamingEVSEData, or why there is none (`exchange`)."""

    exchange: Exchange
    requested_page: int = 0
    requested_size: int = MAX_EVSE_PAGE_SIZE
    records: list[Any] = field(default_factory=list)
    number: int = 0
    size: int = 0
    total_elements: int = 0
    total_pages: int = 0
    first: bool = True
    last: bool = True

    @property
    def ok(self) -> bool:
        return self.exchange.ok

    @property
    def error(self) -> str:
        return self.exchange.error


@dataclass(frozen=True)
class EvseStatuses:
    """eRoamingEVSEStatusByID: EvseID (as asked) → EvseStatus; unreadable records are left out."""

    exchange: Exchange
    statuses: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exchange.ok


def _oicp_datetime(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("last_call must be timezone-aware: OICP timestamps carry an offset")
    return value.isoformat(timespec="seconds")


def _post(
    client: HubjectClient, url: str, body: dict[str, Any], what: str, timeout: float | None = None
) -> tuple[Exchange, Any]:
    """POST `body`; (the exchange, the parsed 2xx body with its StatusCode checked) or a failure."""
    # A screen's call (a live status) waits `timeout` seconds at most; jobs use the client's timeouts.
    timeouts = (timeout, timeout) if timeout is not None else client.timeout
    request = {"method": "POST", "url": url, "headers": dict(_HEADERS), "json": body, "timeout": list(timeouts)}
    started = time.monotonic()
    try:
        response = client.session.request(
            "POST",
            url,
            data=json.dumps(body).encode("utf-8"),
            headers=_HEADERS,
            timeout=timeouts,
            cert=client.cert,
            verify=client.verify,
            allow_redirects=False,
        )
    except (requests.RequestException, OSError) as exc:
        verdict, _ = transport_failure(exc)
        detail = client.redact(clip_text(str(exc), 300))
        error = {
            "tls": f"The secure (TLS) connection to Hubject failed ({detail}).",
            "timeout": f"Hubject did not answer the {what} in time.",
        }.get(verdict.failure_kind, f"Could not reach Hubject for the {what} ({detail}).")
        exchange = Exchange(
            verdict.outcome,
            failure_kind=verdict.failure_kind,
            error=error,
            elapsed_ms=ms_since(started),
            request=request,
        )
        return exchange, None
    base = {
        "http_status": response.status_code,
        "process_id": response.headers.get("Process-ID", ""),
        "elapsed_ms": ms_since(started),
        "request": request,
    }
    try:
        parsed = json.loads(response.content.decode("utf-8-sig"))
    except ValueError:
        parsed = NOT_JSON
    if not 200 <= response.status_code < 300:
        raw = response.content.decode("utf-8", errors="replace")
        verdict = classify(response.status_code, parsed, raw, response.headers.get("Location", ""))
        error = (
            _validation_error(parsed)
            if verdict.failure_kind == "validation"
            else f"Hubject answered HTTP {response.status_code}{named(verdict.oicp_code)} to the {what}."
        )
        exchange = Exchange(
            verdict.outcome,
            oicp_code=verdict.oicp_code,
            description=verdict.description,
            additional_info=verdict.additional_info,
            failure_kind=verdict.failure_kind,
            error=error,
            **base,
        )
        return exchange, None
    unreadable = f"Hubject's answer to the {what} was not readable."
    if not isinstance(parsed, dict):
        return Exchange(Outcome.TRANSIENT, failure_kind="unreadable", error=unreadable, **base), None
    code = description = info = ""
    if parsed.get("StatusCode") is not None:  # tolerated when null or missing, as in the CDR pull
        status = read_status_code(parsed["StatusCode"])
        if status is None:
            return Exchange(Outcome.TRANSIENT, failure_kind="unreadable", error=unreadable, **base), None
        code, description, info = status
        if code != "000":
            outcome = Outcome.TRANSIENT if describe(code).transient else Outcome.REJECTED
            error = f"Hubject refused the {what}: {code} {description}".strip()
            exchange = Exchange(
                outcome, oicp_code=code, description=description, additional_info=info, error=error, **base
            )
            return exchange, None
    exchange = Exchange(Outcome.ACCEPTED, oicp_code=code, description=description, additional_info=info, **base)
    return exchange, parsed


def pull_evse_data(
    client: HubjectClient,
    *,
    page: int,
    size: int = MAX_EVSE_PAGE_SIZE,
    last_call: datetime | None = None,
    geo_format: str = "DecimalDegree",
) -> EvseDataPage:
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
        body["LastCall"] = _oicp_datetime(last_call)
    url = client.base_url + PULL_EVSE_DATA.format(provider_id=client.provider_id) + f"?page={page}&size={size}"
    exchange, parsed = _post(client, url, body, "EVSE data pull")
    base = {"requested_page": page, "requested_size": size}
    if parsed is None:
        return EvseDataPage(exchange, **base)
    content = parsed.get("content")
    if not isinstance(content, list):
        failed = Exchange(
            Outcome.TRANSIENT,
            http_status=exchange.http_status,
            process_id=exchange.process_id,
            failure_kind="unreadable",
            error="Hubject's answer was not a readable eRoamingEVSEData page (no content list).",
            elapsed_ms=exchange.elapsed_ms,
            request=exchange.request,
        )
        return EvseDataPage(failed, **base)

    def integer(name: str, default: int) -> int:
        value = parsed.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default

    number = integer("number", page)
    page_size = integer("size", size)
    total_pages = integer("totalPages", number + 1)
    last = parsed.get("last")
    if not isinstance(last, bool):
        last = number + 1 >= total_pages if isinstance(parsed.get("totalPages"), int) else len(content) < page_size
    return EvseDataPage(
        exchange,
        records=content,
        number=number,
        size=page_size,
        total_elements=integer("totalElements", page * size + len(content)),
        total_pages=total_pages,
        first=parsed.get("first") if isinstance(parsed.get("first"), bool) else number == 0,
        last=last,
        **base,
    )


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
    exchange, parsed = _post(client, url, body, "EVSE status pull", timeout)
    if parsed is None:
        return EvseStatuses(exchange)
    container = parsed.get("EVSEStatusRecords", parsed.get("EvseStatusRecords"))
    records = container.get("EvseStatusRecord") if isinstance(container, dict) else None
    if not isinstance(records, list):
        failed = Exchange(
            Outcome.TRANSIENT,
            http_status=exchange.http_status,
            failure_kind="unreadable",
            error="Hubject's answer was not a readable eRoamingEVSEStatusByID.",
            elapsed_ms=exchange.elapsed_ms,
            request=exchange.request,
        )
        return EvseStatuses(failed)
    statuses: dict[str, str] = {}
    for record in records:
        if isinstance(record, dict) and isinstance(record.get("EvseID"), str):
            status = record.get("EvseStatus")
            statuses[record["EvseID"]] = status if status in EVSE_STATUSES else "Unknown"
    return EvseStatuses(exchange, statuses)
