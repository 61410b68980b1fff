"""HBS client for eRoamingAuthorizeRemoteStop_V2.1 (DIGEST §1, §3, §4) and the CDR pull (§5.4).

Plain `requests`, no ORM. The client never raises for network, HTTP or parsing problems: every call
returns a RemoteStopResult that says whether the stop was accepted, finally rejected, or may be
retried. Retrying is Celery's job, so there are no transport retries here.
"""

from __future__ import annotations

import copy
import json
import re
import time
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any, NamedTuple

import requests
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError
from urllib3.exceptions import ProxyError as Urllib3ProxyError
from urllib3.exceptions import ReadTimeoutError
from urllib3.exceptions import SSLError as Urllib3SSLError

from .paths import AUTHORIZE_REMOTE_STOP as STOP_PATH
from .paths import GET_CHARGE_DETAIL_RECORDS as CDR_PULL_PATH
from .paths import MAX_CDR_PAGE_SIZE
from .status_codes import HUBJECT_DESCRIPTIONS, STATUS_CODES, StatusCodeInfo, describe, describe_failure

CODE = re.compile(r"[0-9]{3}")
DESCRIPTION_MAX = 200
ADDITIONAL_INFO_MAX = 1000
RAW_BODY_MAX = 4000
# Response headers worth keeping in the audit trail (Process-ID is Hubject's trace id).
KEPT_HEADERS = ("Content-Type", "Content-Length", "Date", "Process-ID", "Retry-After", "X-Correlation-ID")
# HTTP statuses that say "not now" rather than "never": a repeated stop is harmless.
TRANSIENT_HTTP = frozenset({408, 429, 500, 502, 503, 504})
BAD_URL_ERRORS = (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)


class Outcome(str, Enum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"  # final: sending the same stop again cannot help
    TRANSIENT = "transient"  # safe to retry


@dataclass(frozen=True)
class RemoteStopResult:
    outcome: Outcome
    http_status: int | None = None
    oicp_code: str = ""  # always a 3-digit string or ""; never the HTTP status
    description: str = ""
    additional_info: str = ""
    process_id: str = ""
    failure_kind: str = ""  # "" for OICP answers, else a key of FAILURE_PLAYBOOK
    error: str = ""
    request_sent: bool = True  # False only when we know the request never reached the server
    request: dict[str, Any] = field(default_factory=dict)
    response: dict[str, Any] | None = None
    elapsed_ms: int = 0

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
            "request_sent": self.request_sent,
            "elapsed_ms": self.elapsed_ms,
            "request": copy.deepcopy(self.request),
            "response": copy.deepcopy(self.response),
        }


class _Verdict(NamedTuple):
    outcome: Outcome
    failure_kind: str = ""
    error: str = ""
    oicp_code: str = ""
    description: str = ""
    additional_info: str = ""


class HubjectClient:
    def __init__(
        self,
        *,
        base_url: str,
        provider_id: str,
        client_cert: str = "",
        client_key: str = "",
        ca_bundle: str = "",
        timeout: float = 75.0,
        connect_timeout: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.provider_id = provider_id
        # Hubject authenticates partners by TLS client certificate (mutual TLS, no token).
        self.cert: tuple[str, str] | str | None = (
            (client_cert, client_key) if client_cert and client_key else client_cert or None
        )
        # Hubject's server certificate chains to Hubject's own CA, not a public one.
        self.verify: str | bool = ca_bundle or True
        # HBS waits up to 60 s for the CPO; the read timeout must outlast that or we lose the answer.
        self.timeout = (connect_timeout, timeout)
        # A new Session's adapters make no retries (max_retries=0): Celery owns retrying.
        self.session = session or requests.Session()

    @classmethod
    def from_settings(cls) -> HubjectClient:
        from django.conf import settings

        return cls(
            base_url=settings.OICP_BASE_URL,
            provider_id=settings.OICP_PROVIDER_ID,
            client_cert=settings.OICP_CLIENT_CERT,
            client_key=settings.OICP_CLIENT_KEY,
            ca_bundle=settings.OICP_CA_BUNDLE,
            timeout=settings.OICP_TIMEOUT_SECONDS,
            connect_timeout=settings.OICP_CONNECT_TIMEOUT_SECONDS,
        )

    def _redact(self, text: str) -> str:
        """Error texts go to the database, the audit trail and the logs: never name the key's file.

        requests puts the certificate or key path into its "invalid path" errors; the agent and
        the audit need to know *that* the TLS files failed, not where the private key lives.
        """
        if isinstance(self.cert, tuple):
            cert_file, key_file = self.cert
        else:
            cert_file, key_file = self.cert or "", ""
        for path, label in ((key_file, "<client key file>"), (cert_file, "<client certificate file>")):
            if path:
                text = text.replace(path, label)
        return text

    def stop_url(self) -> str:
        # The ProviderID goes into the path as is: Hubject's own examples keep "*" unencoded (DIGEST §8.1).
        return self.base_url + STOP_PATH.format(provider_id=self.provider_id)

    def get_charge_detail_records(self, *, date_from, date_to, page: int, size: int = 2000) -> "CdrPage":
        """One page of eRoamingGetChargeDetailRecords_V2.2 for [date_from, date_to] (aware datetimes).

        Never raises for network, HTTP or parsing problems: the CdrPage says ok / transient / final.
        `size` is capped at HBS's maximum of 2000. Raises ValueError only for a caller's mistake
        (naive datetimes, from after to, negative page).
        """
        return _get_charge_detail_records(self, date_from=date_from, date_to=date_to, page=page, size=size)

    def authorize_remote_stop(
        self,
        *,
        session_id: str,
        evse_id: str,
        emp_partner_session_id: str = "",
        cpo_partner_session_id: str = "",
        correlation_id: str = "",
    ) -> RemoteStopResult:
        body: dict[str, str] = {"SessionID": session_id, "ProviderID": self.provider_id, "EvseID": evse_id}
        # Optional fields only when known: an empty string is not a partner session id.
        if cpo_partner_session_id:
            body["CPOPartnerSessionID"] = cpo_partner_session_id
        if emp_partner_session_id:
            body["EMPPartnerSessionID"] = emp_partner_session_id
        headers = {"Content-Type": "application/json; charset=UTF-8", "Accept": "application/json"}
        if correlation_id:
            headers["X-Correlation-ID"] = correlation_id
        url = self.stop_url()
        request = {"method": "POST", "url": url, "headers": headers, "json": body, "timeout": list(self.timeout)}

        started = time.monotonic()
        try:
            response = self.session.request(
                "POST",
                url,
                data=json.dumps(body, ensure_ascii=False).encode("utf-8"),  # OICP mandates UTF-8
                headers=headers,
                timeout=self.timeout,
                cert=self.cert,
                verify=self.verify,
                # A redirect would turn the POST into a GET; for an API it means a wrong base URL.
                allow_redirects=False,
            )
        except (requests.RequestException, OSError) as exc:
            verdict, sent = _transport_failure(exc)
            verdict = verdict._replace(error=self._redact(verdict.error))
            return RemoteStopResult(
                **verdict._asdict(), request_sent=sent, request=request, elapsed_ms=_ms_since(started)
            )
        elapsed_ms = _ms_since(started)
        parsed = _parse_json(response.content)
        raw = response.content.decode("utf-8", errors="replace")
        return RemoteStopResult(
            **_classify(response.status_code, parsed, raw, response.headers.get("Location", ""))._asdict(),
            http_status=response.status_code,
            process_id=response.headers.get("Process-ID", ""),
            request_sent=True,
            request=request,
            response={
                "status": response.status_code,
                "headers": {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers},
                "body": raw[:RAW_BODY_MAX] if parsed is _NOT_JSON else parsed,
            },
            elapsed_ms=elapsed_ms,
        )


_NOT_JSON: Any = object()


def _parse_json(content: bytes) -> Any:
    try:
        return json.loads(content.decode("utf-8-sig"))
    except ValueError:  # includes UnicodeDecodeError and JSONDecodeError (empty body, HTML)
        return _NOT_JSON


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _text(value: Any, limit: int) -> str:
    """Optional string fields: tolerate JSON null (and stray non-strings), enforce the spec's length."""
    if value is None:
        return ""
    return (value if isinstance(value, str) else str(value))[:limit]


def _status_code(value: Any) -> tuple[str, str, str] | None:
    """(code, description, additional_info) of a StatusCodeType object, None when it is malformed."""
    if not isinstance(value, dict):
        return None
    code = value.get("Code")
    # The code is a 3-character string ("000"); a JSON number such as 0 or 400 is malformed (DIGEST §8.2).
    if not isinstance(code, str) or not CODE.fullmatch(code):
        return None
    return (
        code,
        _text(value.get("Description"), DESCRIPTION_MAX) or HUBJECT_DESCRIPTIONS.get(code, ""),
        _text(value.get("AdditionalInfo"), ADDITIONAL_INFO_MAX),
    )


def _classify(status: int, body: Any, raw: str, location: str) -> _Verdict:
    if 200 <= status < 300:
        return _classify_acknowledgement(body)
    # Error bodies may carry an OICP StatusCode (OicpERoamingFault on 401/404); keep it when present.
    oicp = _status_code(body.get("StatusCode")) if isinstance(body, dict) else None
    code, description, info = oicp or ("", "", "")
    if isinstance(body, dict) and not oicp:  # FaultBody {message, extendedInfo, validationErrors}
        description = _text(body.get("message"), DESCRIPTION_MAX)
        info = _text(body.get("extendedInfo"), ADDITIONAL_INFO_MAX)
    fields = {"oicp_code": code, "description": description, "additional_info": info}

    if status == 400:
        if isinstance(body, dict) and not oicp:
            return _Verdict(Outcome.REJECTED, "validation", _validation_error(body), **fields)
        # Hubject's NGINX answers a TLS chain problem with a plain "400 ... SSL Certificate Error" page.
        tls_page = body is _NOT_JSON and ("ssl" in raw.lower() or "certificate" in raw.lower())
        kind = "tls" if tls_page else "http_error"
        return _Verdict(Outcome.REJECTED, kind, f"Hubject refused the request (HTTP 400{_named(code)}).", **fields)
    if status in (401, 403):
        error = f"Hubject refused the call as not authorised (HTTP {status}{_named(code)}); check certificate."
        return _Verdict(Outcome.REJECTED, "unauthorized", error, **fields)
    if status in TRANSIENT_HTTP:
        error = f"Hubject answered HTTP {status}, a temporary error; the stop is not confirmed."
        return _Verdict(Outcome.TRANSIENT, "http_error", error, **fields)
    if 300 <= status < 400:
        error = f"Hubject redirected the call (HTTP {status} to {location or 'nowhere'}): check OICP_BASE_URL."
        return _Verdict(Outcome.REJECTED, "http_error", error, **fields)
    return _Verdict(Outcome.REJECTED, "http_error", f"Hubject answered HTTP {status}{_named(code)}.", **fields)


def _named(code: str) -> str:
    return f", OICP code {code}" if code else ""


def _validation_error(body: dict[str, Any]) -> str:
    errors = body.get("validationErrors")
    problems = [
        f"{item.get('fieldReference') or '?'}: {item.get('errorMessage') or 'invalid'}"
        for item in (errors if isinstance(errors, list) else [])
        if isinstance(item, dict)
    ]
    detail = "; ".join(problems) or _text(body.get("message"), DESCRIPTION_MAX) or "no details given"
    return _text(f"Hubject rejected the request as invalid: {detail}", 500)


def _classify_acknowledgement(body: Any) -> _Verdict:
    oicp = _status_code(body.get("StatusCode")) if isinstance(body, dict) else None
    if oicp is None or not isinstance(body.get("Result"), bool):
        # Not an eRoamingAcknowledgement (HTML, empty, a list, a numeric code...). We classify it as
        # TRANSIENT: repeating a stop is harmless (at worst HBS answers "400 Session is invalid"),
        # while giving up could leave a car charging.
        error = "Hubject's answer was not a readable eRoamingAcknowledgement; the stop is not confirmed."
        return _Verdict(Outcome.TRANSIENT, "unreadable", error)
    code, description, info = oicp
    fields = {"oicp_code": code, "description": description, "additional_info": info}
    result = body["Result"]
    if result and code == "000":
        return _Verdict(Outcome.ACCEPTED, **fields)
    if code == "000":
        # Result false with "success" carries no usable reason; treat like an unreadable answer, and
        # leave oicp_code empty so nobody shows the driver the "Success" advice (body is in the audit).
        error = "Hubject answered Result false with code 000, which is contradictory; the stop is not confirmed."
        return _Verdict(Outcome.TRANSIENT, "unreadable", error, description=description, additional_info=info)
    # Backends must evaluate the code (DIGEST §2), so Result true with a failure code is a failure.
    outcome = Outcome.TRANSIENT if describe(code).transient else Outcome.REJECTED
    error = f"The stop was not performed: {code} {description}".strip()
    if result:
        error += " (Hubject also sent Result true, which contradicts the code)"
    return _Verdict(outcome, error=error, **fields)


def _transport_failure(exc: BaseException) -> tuple[_Verdict, bool]:
    """Verdict and request_sent for an exception raised instead of a response."""
    detail = _text(str(exc), 300)
    cause = exc.args[0] if exc.args else None
    # urllib3 wraps only connect-phase errors in MaxRetryError here: read errors of a POST are
    # re-raised as they are, because POST is not retried.
    connect_phase = isinstance(cause, MaxRetryError) and isinstance(
        cause.reason, (ConnectTimeoutError, Urllib3SSLError, Urllib3ProxyError)
    )
    if isinstance(exc, requests.exceptions.SSLError):
        # Certificate, key or CA problems: retrying cannot fix configuration.
        error = f"The secure (TLS) connection to Hubject failed ({detail})."
        return _Verdict(Outcome.REJECTED, "tls", error), not connect_phase
    if isinstance(exc, requests.exceptions.ConnectTimeout) or (
        isinstance(exc, requests.ConnectionError) and connect_phase
    ):
        error = f"Could not connect to Hubject; the stop was not sent ({detail})."
        return _Verdict(Outcome.TRANSIENT, "connection", error), False
    if isinstance(exc, requests.exceptions.ReadTimeout) or isinstance(cause, ReadTimeoutError):
        error = "Hubject did not answer in time; the stop may have reached the CPO (outcome unknown)."
        return _Verdict(Outcome.TRANSIENT, "timeout", error), True
    if isinstance(exc, BAD_URL_ERRORS):
        error = f"The Hubject URL is invalid; check OICP_BASE_URL ({detail})."
        return _Verdict(Outcome.REJECTED, "connection", error), False
    if not isinstance(exc, requests.RequestException):
        # requests raises a bare OSError only for a missing certificate, key or CA bundle file.
        error = f"The TLS files for Hubject could not be loaded ({detail})."
        return _Verdict(Outcome.REJECTED, "tls", error), False
    # Connection reset, broken chunked answer, unknown cause: the request may have been sent.
    error = f"The connection to Hubject broke; the stop may have reached the CPO ({detail})."
    return _Verdict(Outcome.TRANSIENT, "connection", error), True


# --- eRoamingGetChargeDetailRecords_V2.2 (DIGEST §5.4): the CDR pull ------------------------------



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


def _get_charge_detail_records(
    client: HubjectClient, *, date_from, date_to, page: int, size: int = MAX_CDR_PAGE_SIZE
) -> CdrPage:
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
            "POST", url, data=json.dumps(body).encode("utf-8"), headers=headers, timeout=client.timeout,
            cert=client.cert, verify=client.verify, allow_redirects=False,
        )
    except (requests.RequestException, OSError) as exc:
        verdict, _ = _transport_failure(exc)
        return CdrPage(outcome=verdict.outcome, failure_kind=verdict.failure_kind,
                       error=_pull_transport_error(verdict, exc), elapsed_ms=_ms_since(started), **base)
    elapsed_ms = _ms_since(started)
    answer = {"http_status": response.status_code, "process_id": response.headers.get("Process-ID", ""),
              "elapsed_ms": elapsed_ms, **base}
    try:
        parsed = json.loads(response.content.decode("utf-8-sig"), parse_float=Decimal)
    except ValueError:
        parsed = _NOT_JSON
    if not 200 <= response.status_code < 300:
        raw = response.content.decode("utf-8", errors="replace")
        verdict = _classify(response.status_code, parsed, raw, response.headers.get("Location", ""))
        error = (_validation_error(parsed) if verdict.failure_kind == "validation"
                 else f"Hubject answered HTTP {response.status_code}{_named(verdict.oicp_code)} to the CDR pull.")
        return CdrPage(outcome=verdict.outcome, failure_kind=verdict.failure_kind, error=error,
                       oicp_code=verdict.oicp_code, description=verdict.description,
                       additional_info=verdict.additional_info, **answer)
    return _read_cdr_page(parsed, page=page, size=size, answer=answer)


def _read_cdr_page(body: Any, *, page: int, size: int, answer: dict[str, Any]) -> CdrPage:
    unreadable = "Hubject's answer was not a readable eRoamingChargeDetailRecords page."
    if not isinstance(body, dict):
        return CdrPage(outcome=Outcome.TRANSIENT, failure_kind="unreadable", error=unreadable, **answer)
    code = description = info = ""
    # The asciidoc sample answers "StatusCode": null; a missing one is tolerated the same way.
    if body.get("StatusCode") is not None:
        status = _status_code(body["StatusCode"])
        if status is None:
            return CdrPage(outcome=Outcome.TRANSIENT, failure_kind="unreadable", error=unreadable, **answer)
        code, description, info = status
        if code != "000":
            outcome = Outcome.TRANSIENT if describe(code).transient else Outcome.REJECTED
            return CdrPage(outcome=outcome, oicp_code=code, description=description, additional_info=info,
                           error=f"Hubject refused the CDR pull: {code} {description}".strip(), **answer)
    content = body.get("content")
    if not isinstance(content, list):
        return CdrPage(outcome=Outcome.TRANSIENT, failure_kind="unreadable", error=unreadable, oicp_code=code,
                       description=description, additional_info=info, **answer)

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
        outcome=Outcome.ACCEPTED, records=content, number=number, size=page_size, total_elements=total_elements,
        total_pages=total_pages, first=first, last=last, number_of_elements=len(content), oicp_code=code,
        description=description, additional_info=info, **answer,
    )


def _pull_transport_error(verdict: _Verdict, exc: BaseException) -> str:
    detail = _text(str(exc), 300)
    if verdict.failure_kind == "tls":
        return f"The secure (TLS) connection to Hubject failed ({detail})."
    if verdict.failure_kind == "timeout":
        return "Hubject did not answer the CDR pull in time."
    if verdict.outcome is Outcome.REJECTED:
        return f"The Hubject URL is invalid; check OICP_BASE_URL ({detail})."
    return f"Could not reach Hubject for the CDR pull ({detail})."

