"""One EMP → HBS call and how it went (an Exchange), and the paged answer of the two pulls (a Page).

The CDR pull, the EVSE data pull and the EVSE status pull share everything but their payload: POST
a JSON body, turn a network, HTTP or OICP failure into a result that says accepted, finally
rejected or transient (never an exception), and read the Spring-style paging fields. The remote
stop shares the POST itself (`HubjectClient.post`) but classifies its answer as an
eRoamingAcknowledgement (`outcomes.classify`), which the pulls do not send.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests

from .outcomes import (
    NOT_JSON,
    Outcome,
    classify,
    clip_text,
    ms_since,
    named,
    read_status_code,
    transport_failure,
    validation_error,
)
from .status_codes import describe

if TYPE_CHECKING:
    from .client import HubjectClient

JSON_HEADERS = {"Content-Type": "application/json; charset=UTF-8", "Accept": "application/json"}


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

    def to_audit(self) -> dict[str, Any]:
        """JSON-serialisable record of the exchange (no secrets: the request holds only our own headers)."""
        return {
            "outcome": self.outcome.value,
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


@dataclass(frozen=True)
class Page(Exchange):
    """One page of a pull (eRoamingChargeDetailRecords, eRoamingEVSEData), or why there is none.

    `records` are the objects as HBS sent them; reading them is the caller's job, one at a time,
    so that one bad record never costs a page.
    """

    requested_page: int = 0
    requested_size: int = 0
    records: list[Any] = field(default_factory=list)
    number: int = 0
    size: int = 0
    total_elements: int = 0
    total_pages: int = 0
    first: bool = True
    last: bool = True

    @property
    def number_of_elements(self) -> int:
        return len(self.records)

    def to_audit(self) -> dict[str, Any]:
        """The exchange and the paging, without the records (each stored record has its own audit)."""
        return {
            **super().to_audit(),
            "page": self.requested_page,
            "size": self.requested_size,
            "number": self.number,
            "number_of_elements": self.number_of_elements,
            "total_elements": self.total_elements,
            "total_pages": self.total_pages,
            "last": self.last,
        }


def oicp_datetime(value, name: str) -> str:
    """An aware datetime as OICP writes it; ValueError for a naive one (a caller's mistake)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware: OICP timestamps carry an offset")
    return value.isoformat(timespec="seconds")


def call(
    client: HubjectClient,
    url: str,
    body: dict[str, Any],
    what: str,
    *,
    timeout: float | None = None,
    parse_float=None,
) -> tuple[Exchange, Any]:
    """POST `body`: (the exchange, the parsed 2xx body with its StatusCode checked), or (a failure, None).

    `what` names the call in error texts ("CDR pull"); `timeout` bounds a screen's call (connect
    and read), jobs use the client's; `parse_float=Decimal` keeps amounts exact (the CDRs).
    """
    timeouts = (timeout, timeout) if timeout is not None else client.timeout
    request = {"method": "POST", "url": url, "headers": dict(JSON_HEADERS), "json": body, "timeout": list(timeouts)}
    started = time.monotonic()
    try:
        response = client.post(url, body, headers=JSON_HEADERS, timeout=timeouts)
    except (requests.RequestException, OSError) as exc:
        verdict, _ = transport_failure(exc)
        error = _transport_error(verdict.outcome, verdict.failure_kind, client.redact(clip_text(str(exc), 300)), what)
        return Exchange(
            verdict.outcome, failure_kind=verdict.failure_kind, error=error, **_timing(started, request)
        ), None
    answer = {
        "http_status": response.status_code,
        "process_id": response.headers.get("Process-ID", ""),
        **_timing(started, request),
    }
    try:
        parsed = json.loads(response.content.decode("utf-8-sig"), parse_float=parse_float)
    except ValueError:  # includes UnicodeDecodeError (an HTML or binary error page)
        parsed = NOT_JSON
    if not 200 <= response.status_code < 300:
        raw = response.content.decode("utf-8", errors="replace")
        verdict = classify(response.status_code, parsed, raw, response.headers.get("Location", ""))
        error = (
            validation_error(parsed)
            if verdict.failure_kind == "validation"
            else f"Hubject answered HTTP {response.status_code}{named(verdict.oicp_code)} to the {what}."
        )
        return Exchange(**{**verdict._asdict(), "error": error}, **answer), None
    unreadable = f"Hubject's answer to the {what} was not readable."
    if not isinstance(parsed, dict):
        return Exchange(Outcome.TRANSIENT, failure_kind="unreadable", error=unreadable, **answer), None
    code = description = info = ""
    # Hubject's own samples answer "StatusCode": null; a missing one is tolerated the same way.
    if parsed.get("StatusCode") is not None:
        status = read_status_code(parsed["StatusCode"])
        if status is None:
            return Exchange(Outcome.TRANSIENT, failure_kind="unreadable", error=unreadable, **answer), None
        code, description, info = status
        if code != "000":
            outcome = Outcome.TRANSIENT if describe(code).transient else Outcome.REJECTED
            error = f"Hubject refused the {what}: {code} {description}".strip()
            said = {"oicp_code": code, "description": description, "additional_info": info}
            return Exchange(outcome, error=error, **said, **answer), None
    return Exchange(Outcome.ACCEPTED, oicp_code=code, description=description, additional_info=info, **answer), parsed


def read_page(exchange: Exchange, parsed: Any, *, page: int, size: int, kind: str) -> Page:
    """The Page of a pull's answer (`call`'s result); `kind` names the page type in the error text.

    Missing or malformed paging fields are derived from what came (HBS's samples omit some).
    """
    asked = {"requested_page": page, "requested_size": size}
    said = {name: getattr(exchange, name) for name in Exchange.__dataclass_fields__}
    if parsed is None:
        return Page(**said, **asked)
    content = parsed.get("content")
    if not isinstance(content, list):
        error = f"Hubject's answer was not a readable {kind} page (no content list)."
        return Page(**{**said, "outcome": Outcome.TRANSIENT, "failure_kind": "unreadable", "error": error}, **asked)

    def integer(name: str, default: int) -> int:
        value = parsed.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default

    number = integer("number", page)
    page_size = integer("size", size)
    total_pages = integer("totalPages", number + 1)
    last = parsed.get("last")
    if not isinstance(last, bool):
        last = number + 1 >= total_pages if isinstance(parsed.get("totalPages"), int) else len(content) < page_size
    first = parsed.get("first")
    return Page(
        **said,
        **asked,
        records=content,
        number=number,
        size=page_size,
        total_elements=integer("totalElements", page * size + len(content)),
        total_pages=total_pages,
        first=first if isinstance(first, bool) else number == 0,
        last=last,
    )


def _timing(started: float, request: dict[str, Any]) -> dict[str, Any]:
    return {"elapsed_ms": ms_since(started), "request": request}


def _transport_error(outcome: Outcome, failure_kind: str, detail: str, what: str) -> str:
    if failure_kind == "tls":
        return f"The secure (TLS) connection to Hubject failed ({detail})."
    if failure_kind == "timeout":
        return f"Hubject did not answer the {what} in time."
    if outcome is Outcome.REJECTED:
        return f"The Hubject URL is invalid; check OICP_BASE_URL ({detail})."
    return f"Could not reach Hubject for the {what} ({detail})."
