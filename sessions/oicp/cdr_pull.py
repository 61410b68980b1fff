"""eRoamingGetChargeDetailRecords_V2.2 (DIGEST §5.4): one page of the CDR pull, read into a CdrPage."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import requests

from .outcomes import (
    NOT_JSON,
    Outcome,
    Verdict,
    classify,
    clip_text,
    ms_since,
    named,
    read_status_code,
    transport_failure,
    validation_error,
)
from .paths import GET_CHARGE_DETAIL_RECORDS as CDR_PULL_PATH
from .paths import MAX_CDR_PAGE_SIZE
from .status_codes import describe

if TYPE_CHECKING:
    from .client import HubjectClient


@dataclass(frozen=True)
class CdrPage:
    """One page of eRoamingChargeDetailRecords, or why there is none.

    `records` are the CDR objects as HBS sent them, numbers parsed as Decimal (never float), so
    they can be validated with `sessions.oicp.inbound` exactly as a pushed CDR is.
    """

    outcome: Outcome  # ACCEPTED: the page was read; REJECTED: final failure; TRANSIENT: try later
    requested_page: int = 0
    requested_size: int = MAX_CDR_PAGE_SIZE
    records: list[Any] = field(default_factory=list)
    number: int = 0
    size: int = 0
    total_elements: int = 0
    total_pages: int = 0
    first: bool = True
    last: bool = True
    number_of_elements: int = 0
    http_status: int | None = None
    oicp_code: str = ""
    description: str = ""
    additional_info: str = ""
    process_id: str = ""
    failure_kind: str = ""
    error: str = ""
    request: dict[str, Any] = field(default_factory=dict)
    elapsed_ms: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.ACCEPTED

    @property
    def transient(self) -> bool:
        return self.outcome is Outcome.TRANSIENT

    def to_audit(self) -> dict[str, Any]:
        """The exchange without the CDRs themselves (each stored CDR has its own record)."""
        return {
            "outcome": self.outcome.value,
            "page": self.requested_page,
            "size": self.requested_size,
            "number": self.number,
            "number_of_elements": self.number_of_elements,
            "total_elements": self.total_elements,
            "total_pages": self.total_pages,
            "last": self.last,
            "http_status": self.http_status,
            "oicp_code": self.oicp_code,
            "description": self.description,
            "additional_info": self.additional_info,
            "process_id": self.process_id,
            "failure_kind": self.failure_kind,
            "error": self.error,
            "elapsed_ms": self.elapsed_ms,
            "request": copy.deepcopy(self.request),
        }


def _oicp_datetime(value, name: str) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware: OICP timestamps carry an offset")
    return value.isoformat(timespec="seconds")


def get_charge_detail_records(
    client: HubjectClient, *, date_from, date_to, page: int, size: int = MAX_CDR_PAGE_SIZE
) -> CdrPage:
    """One page for [date_from, date_to]; see HubjectClient.get_charge_detail_records."""
    if page < 0:
        raise ValueError("page must be 0 or more")
    size = max(1, min(int(size), MAX_CDR_PAGE_SIZE))
    body = {
        "ProviderID": client.provider_id,
        "From": _oicp_datetime(date_from, "date_from"),
        "To": _oicp_datetime(date_to, "date_to"),
    }
    if date_from > date_to:
        raise ValueError("date_from must not be after date_to")
    url = client.base_url + CDR_PULL_PATH.format(provider_id=client.provider_id) + f"?page={page}&size={size}"
    headers = {"Content-Type": "application/json; charset=UTF-8", "Accept": "application/json"}
    request = {"method": "POST", "url": url, "headers": headers, "json": body, "timeout": list(client.timeout)}
    base = {"requested_page": page, "requested_size": size, "request": request}
    started = time.monotonic()
    try:
        response = client.session.request(
            "POST",
            url,
            data=json.dumps(body).encode("utf-8"),
            headers=headers,
            timeout=client.timeout,
            cert=client.cert,
            verify=client.verify,
            allow_redirects=False,
        )
    except (requests.RequestException, OSError) as exc:
        verdict, _ = transport_failure(exc)
        return CdrPage(
            outcome=verdict.outcome,
            failure_kind=verdict.failure_kind,
            error=_pull_transport_error(verdict, exc),
            elapsed_ms=ms_since(started),
            **base,
        )
    elapsed_ms = ms_since(started)
    answer = {
        "http_status": response.status_code,
        "process_id": response.headers.get("Process-ID", ""),
        "elapsed_ms": elapsed_ms,
        **base,
    }
    try:
        parsed = json.loads(response.content.decode("utf-8-sig"), parse_float=Decimal)
    except ValueError:
        parsed = NOT_JSON
    if not 200 <= response.status_code < 300:
        raw = response.content.decode("utf-8", errors="replace")
        verdict = classify(response.status_code, parsed, raw, response.headers.get("Location", ""))
        error = (
            validation_error(parsed)
            if verdict.failure_kind == "validation"
            else f"Hubject answered HTTP {response.status_code}{named(verdict.oicp_code)} to the CDR pull."
        )
        return CdrPage(
            outcome=verdict.outcome,
            failure_kind=verdict.failure_kind,
            error=error,
            oicp_code=verdict.oicp_code,
            description=verdict.description,
            additional_info=verdict.additional_info,
            **answer,
        )
    return _read_cdr_page(parsed, page=page, size=size, answer=answer)


def _read_cdr_page(body: Any, *, page: int, size: int, answer: dict[str, Any]) -> CdrPage:
    unreadable = "Hubject's answer was not a readable eRoamingChargeDetailRecords page."
    if not isinstance(body, dict):
        return CdrPage(outcome=Outcome.TRANSIENT, failure_kind="unreadable", error=unreadable, **answer)
    code = description = info = ""
    # The asciidoc sample answers "StatusCode": null; a missing one is tolerated the same way.
    if body.get("StatusCode") is not None:
        status = read_status_code(body["StatusCode"])
        if status is None:
            return CdrPage(outcome=Outcome.TRANSIENT, failure_kind="unreadable", error=unreadable, **answer)
        code, description, info = status
        if code != "000":
            outcome = Outcome.TRANSIENT if describe(code).transient else Outcome.REJECTED
            return CdrPage(
                outcome=outcome,
                oicp_code=code,
                description=description,
                additional_info=info,
                error=f"Hubject refused the CDR pull: {code} {description}".strip(),
                **answer,
            )
    content = body.get("content")
    if not isinstance(content, list):
        return CdrPage(
            outcome=Outcome.TRANSIENT,
            failure_kind="unreadable",
            error=unreadable,
            oicp_code=code,
            description=description,
            additional_info=info,
            **answer,
        )

    def integer(name: str, default: int) -> int:
        value = body.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default

    number = integer("number", page)
    page_size = integer("size", size)
    total_elements = integer("totalElements", page * size + len(content))
    total_pages = integer("totalPages", number + 1)
    last = body.get("last")
    if not isinstance(last, bool):
        last = number + 1 >= total_pages if isinstance(body.get("totalPages"), int) else len(content) < page_size
    first = body.get("first") if isinstance(body.get("first"), bool) else number == 0
    return CdrPage(
        outcome=Outcome.ACCEPTED,
        records=content,
        number=number,
        size=page_size,
        total_elements=total_elements,
        total_pages=total_pages,
        first=first,
        last=last,
        number_of_elements=len(content),
        oicp_code=code,
        description=description,
        additional_info=info,
        **answer,
    )


def _pull_transport_error(verdict: Verdict, exc: BaseException) -> str:
    detail = clip_text(str(exc), 300)
    if verdict.failure_kind == "tls":
        return f"The secure (TLS) connection to Hubject failed ({detail})."
    if verdict.failure_kind == "timeout":
        return "Hubject did not answer the CDR pull in time."
    if verdict.outcome is Outcome.REJECTED:
        return f"The Hubject URL is invalid; check OICP_BASE_URL ({detail})."
    return f"Could not reach Hubject for the CDR pull ({detail})."
