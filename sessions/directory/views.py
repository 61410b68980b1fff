"""The directory's screens: an EVSE's live status (a fragment the session page loads after itself) and a
station's page (from the place search). Thin: check permission, call one selector, render."""

from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from ..charging import selectors as charging
from ..stops.presenters import age
from . import selectors

VIEW_SESSIONS = "charging_sessions.view_chargingsession"


@require_GET
@login_required
@permission_required(VIEW_SESSIONS, raise_exception=True)
def evse_status(request: HttpRequest, pk: int) -> HttpResponse:
    """The live status of a session's EVSE (eRoamingPullEvseStatusByID, cached a minute)."""
    charging_session = charging.get_charging_session(pk=pk)
    if charging_session is None:
        raise Http404("No such charging session")
    status, fetched_at = selectors.live_evse_status(charging_session.evse_id)
    context = {
        "charging_session": charging_session,
        "status": status,
        "known": status != selectors.UNKNOWN,
        "fetched_at": fetched_at,
        "age": age(timezone.now() - fetched_at),
        "refresh_seconds": selectors.EVSE_STATUS_CACHE_SECONDS,
    }
    return render(request, "directory/_evse_status.html", context)


@require_GET
@login_required
@permission_required(VIEW_SESSIONS, raise_exception=True)
def station_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A station (of the EVSE `pk`): where it is, whom to call, its EVSEs and their open sessions."""
    station = selectors.station(pk=pk)
    if station is None:
        raise Http404("No such station in the directory")
    return render(request, "directory/station_detail.html", {"station": station, "query": request.GET.get("q", "")})
