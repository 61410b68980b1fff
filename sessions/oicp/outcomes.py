"""How an HBS answer or a failed call is classified: accepted, finally rejected, or transient (safe to retry)."""

from __future__ import annotations

import json
import re
import time
from enum import Enum
from typing import Any, NamedTuple

import requests
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, ReadTimeoutError
from urllib3.exceptions import ProxyError as Urllib3ProxyError
from urllib3.exceptions import SSLError as Urllib3SSLError

from .status_codes import HUBJECT_DESCRIPTIONS, describe

CODE = re.compile(r"[0-9]{3}")
DESCRIPTION_MAX = 200
ADDITIONAL_INFO_MAX = 1000
# HTTP statuses that say "not now" rather than "never": a repeated stop is harmless.
TRANSIENT_HTTP = frozenset({408, 429, 500, 502, 503, 504})
BAD_URL_ERRORS = (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)


class Outcome(str, Enum):  # noqa: UP042 (str() of a member stays "Outcome.ACCEPTED", as before)
    """What a call came to."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"  # final: sending the same stop again cannot help
    TRANSIENT = "transient"  # safe to retry


class Verdict(NamedTuple):
    """One answer or failure, classified; the call's result is built from it."""

    outcome: Outcome
    failure_kind: str = ""
    error: str = ""
    oicp_code: str = ""
    description: str = ""
    additional_info: str = ""


NOT_JSON: Any = object()


def parse_json(content: bytes) -> Any:
    try:
        return json.loads(content.decode("utf-8-sig"))
    except ValueError:  # includes UnicodeDecodeError and JSONDecodeError (empty body, HTML)
        return NOT_JSON


def ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def clip_text(value: Any, limit: int) -> str:
    """Optional string fields: tolerate JSON null (and stray non-strings), enforce the spec's length."""
    if value is None:
        return ""
    return (value if isinstance(value, str) else str(value))[:limit]


def read_status_code(value: Any) -> tuple[str, str, str] | None:
    """(code, description, additional_info) of a StatusCodeType object, None when it is malformed."""
    if not isinstance(value, dict):
        return None
    code = value.get("Code")
    # The code is a 3-character string ("000"); a JSON number such as 0 or 400 is malformed (DIGEST §8.2).
    if not isinstance(code, str) or not CODE.fullmatch(code):
        return None
    return (
        code,
        clip_text(value.get("Description"), DESCRIPTION_MAX) or HUBJECT_DESCRIPTIONS.get(code, ""),
        clip_text(value.get("AdditionalInfo"), ADDITIONAL_INFO_MAX),
    )


def classify(status: int, body: Any, raw: str, location: str) -> Verdict:
    if 200 <= status < 300:
        return _classify_acknowledgement(body)
    # Error bodies may carry an OICP StatusCode (OicpERoamingFault on 401/404); keep it when present.
    oicp = read_status_code(body.get("StatusCode")) if isinstance(body, dict) else None
    code, description, info = oicp or ("", "", "")
    if isinstance(body, dict) and not oicp:  # FaultBody {message, extendedInfo, validationErrors}
        description = clip_text(body.get("message"), DESCRIPTION_MAX)
        info = clip_text(body.get("extendedInfo"), ADDITIONAL_INFO_MAX)
    fields = {"oicp_code": code, "description": description, "additional_info": info}

    if status == 400:
        if isinstance(body, dict) and not oicp:
            return Verdict(Outcome.REJECTED, "validation", validation_error(body), **fields)
        # Hubject's NGINX answers a TLS chain problem with a plain "400 ... SSL Certificate Error" page.
        tls_page = body is NOT_JSON and ("ssl" in raw.lower() or "certificate" in raw.lower())
        kind = "tls" if tls_page else "http_error"
        return Verdict(Outcome.REJECTED, kind, f"Hubject refused the request (HTTP 400{named(code)}).", **fields)
    if status in (401, 403):
        error = f"Hubject refused the call as not authorised (HTTP {status}{named(code)}); check certificate."
        return Verdict(Outcome.REJECTED, "unauthorized", error, **fields)
    if status in TRANSIENT_HTTP:
        error = f"Hubject answered HTTP {status}, a temporary error; the stop is not confirmed."
        return Verdict(Outcome.TRANSIENT, "http_error", error, **fields)
    if 300 <= status < 400:
        error = f"Hubject redirected the call (HTTP {status} to {location or 'nowhere'}): check OICP_BASE_URL."
        return Verdict(Outcome.REJECTED, "http_error", error, **fields)
    return Verdict(Outcome.REJECTED, "http_error", f"Hubject answered HTTP {status}{named(code)}.", **fields)


def named(code: str) -> str:
    return f", OICP code {code}" if code else ""


def validation_error(body: dict[str, Any]) -> str:
    errors = body.get("validationErrors")
    problems = [
        f"{item.get('fieldReference') or '?'}: {item.get('errorMessage') or 'invalid'}"
        for item in (errors if isinstance(errors, list) else [])
        if isinstance(item, dict)
    ]
    detail = "; ".join(problems) or clip_text(body.get("message"), DESCRIPTION_MAX) or "no details given"
    return clip_text(f"Hubject rejected the request as invalid: {detail}", 500)


def _classify_acknowledgement(body: Any) -> Verdict:
    oicp = read_status_code(body.get("StatusCode")) if isinstance(body, dict) else None
    if oicp is None or not isinstance(body.get("Result"), bool):
        # Not an eRoamingAcknowledgement (HTML, empty, a list, a numeric code...). We classify it as
        # TRANSIENT: repeating a stop is harmless (at worst HBS answers "400 Session is invalid"),
        # while giving up could leave a car charging.
        error = "Hubject's answer was not a readable eRoamingAcknowledgement; the stop is not confirmed."
        return Verdict(Outcome.TRANSIENT, "unreadable", error)
    code, description, info = oicp
    fields = {"oicp_code": code, "description": description, "additional_info": info}
    result = body["Result"]
    if result and code == "000":
        return Verdict(Outcome.ACCEPTED, **fields)
    if code == "000":
        # Result false with "success" carries no usable reason; treat like an unreadable answer, and
        # leave oicp_code empty so nobody shows the driver the "Success" advice (body is in the audit).
        error = "Hubject answered Result false with code 000, which is contradictory; the stop is not confirmed."
        return Verdict(Outcome.TRANSIENT, "unreadable", error, description=description, additional_info=info)
    # Backends must evaluate the code (DIGEST §2), so Result true with a failure code is a failure.
    outcome = Outcome.TRANSIENT if describe(code).transient else Outcome.REJECTED
    error = f"The stop was not performed: {code} {description}".strip()
    if result:
        error += " (Hubject also sent Result true, which contradicts the code)"
    return Verdict(outcome, error=error, **fields)


def transport_failure(exc: BaseException) -> tuple[Verdict, bool]:
    """Verdict and request_sent for an exception raised instead of a response."""
    detail = clip_text(str(exc), 300)
    cause = exc.args[0] if exc.args else None
    # urllib3 wraps only connect-phase errors in MaxRetryError here: read errors of a POST are
    # re-raised as they are, because POST is not retried.
    connect_phase = isinstance(cause, MaxRetryError) and isinstance(
        cause.reason, (ConnectTimeoutError, Urllib3SSLError, Urllib3ProxyError)
    )
    if isinstance(exc, requests.exceptions.SSLError):
        # Certificate, key or CA problems: retrying cannot fix configuration.
        error = f"The secure (TLS) connection to Hubject failed ({detail})."
        return Verdict(Outcome.REJECTED, "tls", error), not connect_phase
    if isinstance(exc, requests.exceptions.ConnectTimeout) or (
        isinstance(exc, requests.ConnectionError) and connect_phase
    ):
        error = f"Could not connect to Hubject; the stop was not sent ({detail})."
        return Verdict(Outcome.TRANSIENT, "connection", error), False
    if isinstance(exc, requests.exceptions.ReadTimeout) or isinstance(cause, ReadTimeoutError):
        error = "Hubject did not answer in time; the stop may have reached the CPO (outcome unknown)."
        return Verdict(Outcome.TRANSIENT, "timeout", error), True
    if isinstance(exc, BAD_URL_ERRORS):
        error = f"The Hubject URL is invalid; check OICP_BASE_URL ({detail})."
        return Verdict(Outcome.REJECTED, "connection", error), False
    if not isinstance(exc, requests.RequestException):
        # requests raises a bare OSError only for a missing certificate, key or CA bundle file.
        error = f"The TLS files for Hubject could not be loaded ({detail})."
        return Verdict(Outcome.REJECTED, "tls", error), False
    # Connection reset, broken chunked answer, unknown cause: the request may have been sent.
    error = f"The connection to Hubject broke; the stop may have reached the CPO ({detail})."
    return Verdict(Outcome.TRANSIENT, "connection", error), True
