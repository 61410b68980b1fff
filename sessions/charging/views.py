"""The charging sessions' screens: the session list, a session's page, the stuck queue and the manual
close. Thin: check permission, validate input, call one selector or service."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from .. import services
from ..directory import selectors as directory
from ..listing import PAGE_SIZE, querystring, sort_links
from ..stops import presenters
from ..stops.stop_area import stop_area_context
from . import selectors
from .forms import SessionSearchForm, StuckQueueForm

# Sees every agent's note, case reference and exchange with Hubject (support admins, supervisors, auditors).
SEE_ALL = "charging_sessions.view_all_remote_stops"

# The sessions list's order as a field too (the column headers are hidden where the table stacks, on phones).
SESSION_SORT_CHOICES = [
    ("", "Newest update first"),
    ("updated", "Oldest update first"),
    ("-started", "Newest start first"),
    ("started", "Oldest start first"),
    ("evse", "EvseID"),
    ("cpo", "CPO"),
    ("-energy", "Most energy"),
    ("state", "State"),
]


@require_GET
@login_required
@permission_required("charging_sessions.view_chargingsession", raise_exception=True)
def session_list(request: HttpRequest) -> HttpResponse:
    data = request.GET.copy()
    data.setdefault("status", "OPEN")
    form = SessionSearchForm(data)
    filters = form.cleaned_data if form.is_valid() else {"status": "OPEN"}
    sessions = selectors.search_charging_sessions(
        query=filters.get("q", ""),
        operator_id=filters.get("operator", ""),
        status=filters.get("status", ""),
        stale_hours=filters.get("stale_hours"),
        sort=request.GET.get("sort", ""),  # whitelisted by the selector: anything else is the default order
    )
    query = filters.get("q", "")
    # Words rather than an ID ("Lidl Hauptstraße Köln"): the stations they name, with their open sessions.
    places = directory.search_places(query) if not request.htmx and directory.looks_like_place(query) else []
    if query and "page" not in request.GET and not places:
        # A search that finds exactly one session goes straight to it: the agent's next step.
        first_two = list(sessions[:2])
        if len(first_two) == 1 and not request.htmx:
            return redirect("charging_sessions:session-detail", pk=first_two[0].pk)
    page = Paginator(sessions, PAGE_SIZE).get_page(request.GET.get("page"))
    sort = request.GET.get("sort", "")
    context = {
        "form": form,
        "page": page,
        "places": places,
        "rows": [
            (
                cs,
                presenters.last_stop_badge(
                    state=cs.last_stop_state, outcome_unknown=cs.last_stop_outcome_unknown, code=cs.last_stop_code or ""
                ),
            )
            for cs in page.object_list
        ],
        "operators": selectors.operator_ids(),
        "stale_after_hours": 2,
        "querystring": querystring(request, "page"),
        "sort": sort if sort.lstrip("-") in selectors.SESSION_SORTS else "",
        "sort_choices": SESSION_SORT_CHOICES,
        "sorts": sort_links(
            request,
            sort,
            selectors.SESSION_SORTS,
            default=selectors.DEFAULT_SESSION_SORT,
            first={"updated": "-", "started": "-", "energy": "-"},
        ),
    }
    template = "sessions/_session_rows.html" if request.htmx else "sessions/session_list.html"
    return render(request, template, context)


@require_GET
@login_required
@permission_required("charging_sessions.view_chargingsession", raise_exception=True)
def session_detail(request: HttpRequest, pk: int) -> HttpResponse:
    charging_session = selectors.get_charging_session(pk=pk)
    if charging_session is None:
        raise Http404("No such charging session")
    context = stop_area_context(request, charging_session)
    context["timeline"] = selectors.session_timeline(
        charging_session=charging_session, viewer=request.user, sees_all=request.user.has_perm(SEE_ALL)
    )
    context["withheld_words"] = presenters.WITHHELD
    # Where the EVSE is and whom to call (Hubject's EVSE directory); its live status loads after the page.
    context["place"] = directory.session_place(
        evse_id=charging_session.evse_id, operator_id=charging_session.operator_id
    )
    return render(request, "sessions/session_detail.html", context)


@require_GET
@login_required
@permission_required("charging_sessions.view_stuck_sessions", raise_exception=True)
def stuck_sessions(request: HttpRequest) -> HttpResponse:
    form = StuckQueueForm(request.GET)
    filters = form.filters()
    now = timezone.now()
    queue = selectors.stuck_queue(**filters, now=now)
    context = {
        "form": form,
        "queue": queue,
        # Plain values, computed once (stops.presenters.stuck_rows): the template only prints them.
        "stop_rows": presenters.stuck_stop_rows(queue.unconfirmed, now=now),
        "stale_rows": presenters.stuck_session_rows(queue.stale, now=now),
        "actions": presenters.row_actions(request.user),
        "operators": selectors.operator_ids(),
        "sorts": sort_links(request, filters["sort"], ("age", "cpo"), default="age"),
        "filtered": any(request.GET.get(name) for name in ("kind", "operator", "min_age")),
        "sort_choices": [("age", "Oldest first"), ("-age", "Newest first"), ("cpo", "CPO A–Z"), ("-cpo", "CPO Z–A")],
    }
    return render(request, "sessions/stuck_sessions.html", context)


@require_POST
@login_required
@permission_required("charging_sessions.close_session_manually", raise_exception=True)
def close_session(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        charging_session = services.close_session_manually(
            charging_session_id=pk, acting_user=request.user, reason=request.POST.get("reason", "")[:1000]
        )
    except services.StopNotAllowed as refusal:
        messages.error(request, f"Not closed: {refusal}")
    else:
        messages.success(request, f"Session at {charging_session.evse_id} closed by hand (no remote stop was sent).")
    return redirect("charging_sessions:stuck-sessions")
