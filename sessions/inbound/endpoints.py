"""The OICP endpoints Hubject (HBS) pushes to: charging notifications and charge detail records.

Machine endpoints: no login, no CSRF token; the caller is checked by address (and, behind a
TLS-terminating proxy, by the proxy's client-certificate verdict). Thin: check the caller, read at
most the size limit, parse and validate (`sessions.oicp.inbound`), one service call, answer an
eRoamingAcknowledgement. Every answer is an acknowledgement, whatever came in:

  200  Result true,  000  accepted: stored, and applied to its session by the worker moments later
                          (OICP_INBOUND_APPLY); a repeated CDR too (acknowledged, not applied twice)
  400  Result false, 022  the message breaks a rule; AdditionalInfo names the field(s)
  403  Result false, 017  the caller may not call (counted per caller and minute, audited once a
                          minute as INBOUND_REFUSED with the count, never the body; also with the
                          database down)
  405  Result false, 022  not a POST
  413  Result false, 022  body larger than OICP_INBOUND_MAX_BODY_BYTES (not read)
  503  Result false, 021  the database is unavailable; HBS may try again

Only an accepted message changes the database (and a refused caller's audit record).
"""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from .. import proxy, services
from ..oicp import inbound
from ..oicp.acknowledgements import acknowledgement

logger = logging.getLogger(__name__)

CONTENT_TYPE = "application/json;charset=UTF-8"


def _ack(
    *,
    status: int,
    code: str,
    description: str,
    additional_info: str | None = None,
    echo: dict[str, str] | None = None,
) -> HttpResponse:
    body = acknowledgement(code == "000", code, additional_info, description=description, echo=echo)
    return HttpResponse(json.dumps(body), status=status, content_type=CONTENT_TYPE)


def _data_error(status: int, additional_info: str, echo: dict[str, str] | None = None) -> HttpResponse:
    return _ack(status=status, code="022", description="Data error", additional_info=additional_info, echo=echo)


# --- who may call ----------------------------------------------------------------------------


def _check_caller(request: HttpRequest) -> tuple[str | None, str]:
    """The client's address and, when it may not call, why (empty when it may)."""
    remote = proxy.address(request.META.get("REMOTE_ADDR", ""))
    if remote is None:
        return None, "no usable REMOTE_ADDR"
    proxies = proxy.networks(settings.OICP_INBOUND_TRUSTED_PROXIES)
    via_proxy = proxy.within(remote, proxies)
    client = remote
    if via_proxy:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded.strip():
            # The rightmost hop not itself a trusted proxy: what the proxies saw, not what the
            # client claims (a client may put anything at the left of the header).
            client = proxy.forwarded_client(remote, forwarded, proxies)
            if client is None:
                return str(remote), "unreadable X-Forwarded-For"
    header = settings.OICP_INBOUND_VERIFIED_HEADER
    if header:
        if not via_proxy:
            return str(client), f"{header} required: not through a trusted proxy"
        if request.headers.get(header, "") != settings.OICP_INBOUND_VERIFIED_VALUE:
            return str(client), f"{header} is not {settings.OICP_INBOUND_VERIFIED_VALUE}"
    if not proxy.within(client, proxy.networks(settings.OICP_INBOUND_ALLOWED_NETWORKS)):
        return str(client), "address not in OICP_INBOUND_ALLOWED_NETWORKS"
    return str(client), ""


# --- the two endpoints -----------------------------------------------------------------------


def _guard(request: HttpRequest) -> tuple[str | None, bytes | None, HttpResponse | None]:
    """Caller, method and size checks; the body when they pass, else the answer to give."""
    client, refusal = _check_caller(request)
    if refusal:
        _count_refusal(client, request.path, refusal)
        return client, None, _ack(status=403, code="017", description="Unauthorized Access")
    if request.method != "POST":
        response = _data_error(405, f"Method {request.method[:10]} not allowed: POST only")
        response["Allow"] = "POST"
        return client, None, response
    limit = settings.OICP_INBOUND_MAX_BODY_BYTES
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared:
        try:
            length = int(declared)
        except ValueError:
            length = -1
        if length < 0:
            return client, None, _data_error(400, "Content-Length: not a number of bytes")
        if length > limit:
            return client, None, _data_error(413, f"body: larger than {limit} bytes")
    if not declared and "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        # No Content-Length: Django reads such a body as empty. The WSGI server (gunicorn) has
        # already undone the chunking in wsgi.input; read it there, within the same limit.
        body = _read_at_most(request.META["wsgi.input"], limit + 1)
    else:
        body = request.read(limit + 1)
    if len(body) > limit:
        return client, None, _data_error(413, f"body: larger than {limit} bytes")
    return client, body, None


def _count_refusal(client: str | None, path: str, refusal: str) -> None:
    """Counted per caller and minute, audited once per minute with the count (never one record per
    call: anyone can call). The 403 is answered whatever happens to the count, database down included."""
    try:
        first = services.count_inbound_refusal(client_address=client, path=path, reason=refusal)
    except (OperationalError, InterfaceError):
        logger.warning(
            "inbound OICP call refused: %s from %s to %s (not counted: the database is unavailable)",
            refusal,
            client,
            path[:200],
        )
        return
    if first:  # one line per caller and minute; the minute's count follows when it is audited
        logger.warning("inbound OICP call refused: %s from %s to %s", refusal, client, path[:200])


def _read_at_most(stream, size: int) -> bytes:
    """Up to `size` bytes of a stream that may return less per read (chunk by chunk)."""
    parts, remaining = [], size
    while remaining > 0:
        part = stream.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


@csrf_exempt
def charging_notifications(request: HttpRequest) -> HttpResponse:
    """POST /api/oicp/notificationmgmt/v11/charging-notifications (Start, Progress, End, Error)."""
    client, body, refusal = _guard(request)
    if refusal is not None:
        return refusal
    try:
        raw, notification = inbound.parse_charging_notification(body)
    except inbound.InboundError as error:
        logger.warning("charging notification refused (022): %s", error.summary)
        return _data_error(400, error.summary, error.echo)
    try:
        services.receive_charging_notification(notification=notification, raw=raw, remote_addr=client)
    except OperationalError:
        logger.exception("charging notification for %s not recorded", notification.session_id)
        return _ack(status=503, code="021", description="System error", echo=_echo(notification))
    # DEBUG, not INFO: the stored message is the record (its row, received_at, the admin's list), and
    # at hundreds of messages a second a formatted line each cost a tenth of the acknowledgement.
    logger.debug("charging notification %s for %s received", notification.type, notification.session_id)
    return _ack(status=200, code="000", description="Success", echo=_echo(notification))


@csrf_exempt
def charge_detail_record(request: HttpRequest, operator_id: str) -> HttpResponse:
    """POST /api/oicp/cdrmgmt/v22/operators/{operatorID}/charge-detail-record."""
    client, body, refusal = _guard(request)
    if refusal is not None:
        return refusal
    try:
        raw, cdr = inbound.parse_charge_detail_record(body, path_operator_id=operator_id)
    except inbound.InboundError as error:
        logger.warning("CDR refused (022): %s", error.summary)
        return _data_error(400, error.summary, error.echo)
    try:
        outcome = services.receive_cdr(cdr=cdr, raw=raw, remote_addr=client, path_operator_id=operator_id)
    except OperationalError:
        logger.exception("CDR for %s not recorded", cdr.session_id)
        return _ack(status=503, code="021", description="System error", echo=_echo(cdr))
    if outcome.duplicate:  # rare, and worth a line; a first CDR is recorded by its row (see above)
        logger.info("CDR for %s received again (duplicate, not applied again)", cdr.session_id)
    else:
        logger.debug("CDR for %s received", cdr.session_id)
    info = "Duplicate: a CDR for this SessionID was already received; not stored again" if outcome.duplicate else None
    return _ack(status=200, code="000", description="Success", additional_info=info, echo=_echo(cdr))


def _echo(message) -> dict[str, str]:
    return {
        name: value
        for name, value in (
            ("SessionID", message.session_id),
            ("CPOPartnerSessionID", message.cpo_partner_session_id),
            ("EMPPartnerSessionID", message.emp_partner_session_id),
        )
        if value is not None
    }
