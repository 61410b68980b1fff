"""Answer bodies as HBS and the nginx in front of it produce them (DIGEST §1, §3).

Acknowledgements (HTTP 200, Result true or false; their shape is `sessions.oicp.acknowledgements`),
FaultBody and OicpERoamingFault JSON for HTTP errors, and nginx's HTML pages for gateway errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from sessions.oicp.acknowledgements import acknowledgement, status_code

__all__ = ["acknowledgement", "fault_body", "nginx_page", "oicp_fault", "status_code"]

_NGINX_TITLES = {
    400: "400 Bad Request",
    404: "404 Not Found",
    411: "411 Length Required",
    413: "413 Request Entity Too Large",
    502: "502 Bad Gateway",
    503: "503 Service Temporarily Unavailable",
    504: "504 Gateway Time-out",
}


def nginx_page(status: int, detail: str | None = None) -> str:
    """The HTML error page nginx (in front of HBS) serves; clients must not expect JSON."""
    if status == 200:  # e.g. a maintenance page served with 200 by a misconfigured proxy
        heading = "Hubject - Scheduled maintenance"
    else:
        heading = _NGINX_TITLES.get(status) or f"{status} {_reason(status)}"
    # nginx puts the detail into the title ("400 The SSL certificate error") and under the heading.
    title = f"{status} {detail}" if detail else heading
    extra = f"<center>{detail}</center>\r\n" if detail else ""
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{heading}</h1></center>\r\n"
        f"{extra}<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def fault_body(message: str, extended_info: str | None, violations: Sequence[str] = ()) -> dict[str, Any]:
    """FaultBody (2020 Swagger): HBS's answer to validation errors (400) and processing errors (500)."""
    return {
        "message": message,
        "extendedInfo": extended_info,
        "validationErrors": [_validation_error(v) for v in violations],
    }


def _validation_error(violation: str) -> dict[str, str]:
    field_ref, _, message = violation.partition(": ")
    return {"fieldReference": field_ref, "errorMessage": message or violation}


def oicp_fault(code: str, message: str) -> dict[str, Any]:
    """OicpERoamingFault (2020 Swagger): HBS's answer for 401 and 404."""
    return {"StatusCode": status_code(code), "message": message}
