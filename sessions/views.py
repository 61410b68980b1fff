"""The agent's screens. Thin: check permission, validate input, call one selector or service."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import selectors, services
from .forms import RemoteStopForm, SessionSearchForm, StuckQueueForm
from .stops import presenters

PAGE_SIZE = 50
# Sees every agent's note, case reference and exchange with Hubject (support admins, supervisors, auditors).
SEE_ALL = "charging_sessions.view_all_remote_stops"


def _can_stop(request: HttpRequest) -> bool:
    return request.user.has_perm("charging_sessions.request_remote_stop")


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
    if query and "page" not in request.GET:
        # A search that finds exactly one session goes straight to it: the agent's next step.
        first_two = list(sessions[:2])
        if len(first_two) == 1 and not request.htmx:
            return redirect("charging_sessions:session-detail", pk=first_two[0].pk)
    page = Paginator(sessions, PAGE_SIZE).get_page(request.GET.get("page"))
    sort = request.GET.get("sort", "")
    context = {
        "form": form,
        "page": page,
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
        "querystring": _querystring_without_page(request),
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


def _querystring_without_page(request: HttpRequest) -> str:
    params = request.GET.copy()
    params.pop("page", None)
    return params.urlencode()


def sort_links(
    request: HttpRequest, current: str, keys, *, default: str, first: dict[str, str] | None = None
) -> dict[str, dict[str, str]]:
    """Each sortable column's header link (the filters kept, the page dropped) and its aria-sort.

    A click on the sorted column reverses it; on another, sorts by it in its natural first direction
    (`first`: "-" for newest or largest first)."""
    current = current if current.lstrip("-") in keys else default
    params = request.GET.copy()
    params.pop("page", None)
    params.pop("sort", None)
    base = params.urlencode()
    links = {}
    for key in keys:
        if current.lstrip("-") == key:
            target = key if current.startswith("-") else f"-{key}"
            aria = "descending" if current.startswith("-") else "ascending"
        else:
            target, aria = f"{(first or {}).get(key, '')}{key}", "none"
        links[key] = {"url": f"?{base + '&' if base else ''}sort={target}", "aria": aria}
    return links


def _stop_context(
    request: HttpRequest,
    charging_session,
    *,
    form: RemoteStopForm | None = None,
    notice: presenters.Notice | None = None,
) -> dict:
    """What the session page's stop area, dialog and status card show."""
    block = selectors.stop_block(charging_session=charging_session)
    latest = selectors.latest_stop_request(charging_session=charging_session)
    can_stop = _can_stop(request)
    return {
        "charging_session": charging_session,
        "blocker": presenters.blocker_text(block),
        "blocker_tone": presenters.blocker_tone(block),
        "blocker_mark": presenters.TONE_MARKS.get(presenters.blocker_tone(block), ""),
        "can_stop": can_stop,
        "form": form or RemoteStopForm(),
        "notice": notice,
        "progress": presenters.stop_progress(stop_request=latest, can_stop=can_stop) if latest else None,
    }


@require_GET
@login_required
@permission_required("charging_sessions.view_chargingsession", raise_exception=True)
def session_detail(request: HttpRequest, pk: int) -> HttpResponse:
    charging_session = selectors.get_charging_session(pk=pk)
    if charging_session is None:
        raise Http404("No such charging session")
    context = _stop_context(request, charging_session)
    context["timeline"] = selectors.session_timeline(
        charging_session=charging_session, viewer=request.user, sees_all=request.user.has_perm(SEE_ALL)
    )
    context["withheld_words"] = presenters.WITHHELD
    return render(request, "sessions/session_detail.html", context)


@require_POST
@login_required
@permission_required("charging_sessions.request_remote_stop", raise_exception=True)
def request_stop(request: HttpRequest, pk: int) -> HttpResponse:
    """Every submit answers where the agent is looking (htmx): a field error inside the open dialog,
    next to its field; a refusal, the broker's warning or the success in the stop area. The stop is
    saved before it is published, and the publish is bounded, so the answer comes within seconds."""
    charging_session = selectors.get_charging_session(pk=pk)
    if charging_session is None:
        raise Http404("No such charging session")
    form = RemoteStopForm(request.POST)
    if not form.is_valid():
        if request.htmx:
            # 200, so htmx swaps it: the form with its errors replaces itself inside the open dialog.
            return render(request, "sessions/_stop_form.html", {"charging_session": charging_session, "form": form})
        messages.error(request, "The stop was not sent: " + "; ".join(e for errs in form.errors.values() for e in errs))
        return redirect("charging_sessions:session-detail", pk=pk)
    try:
        requested = services.request_and_publish_remote_stop(
            charging_session_id=charging_session.pk, acting_user=request.user, **form.cleaned_data
        )
    except services.StopNotAllowed as refusal:
        notice = presenters.stop_notice(refusal=presenters.refusal_text(refusal))
    else:
        # `queued` False: the broker did not take it in time; it is saved and the sweeper sends it.
        notice = presenters.stop_notice(queued=requested.queued)
    if not request.htmx:
        {"bad": messages.error, "warn": messages.warning}.get(notice.tone, messages.success)(request, notice.text)
        return redirect(reverse("charging_sessions:session-detail", kwargs={"pk": pk}) + "#stop-status")
    context = _stop_context(request, charging_session, notice=notice)
    # The answer goes to the stop area, not into the dialog; a fresh form replaces the dialog's (out
    # of band), and the page closes the dialog and moves focus to the answer.
    response = render(request, "sessions/_stop_answer.html", {**context, "fresh_form": RemoteStopForm()})
    response["HX-Retarget"] = "#stop-area"
    response["HX-Reswap"] = "outerHTML"
    response["HX-Trigger-After-Settle"] = "stop-dialog-done"
    return response


@require_GET
@login_required
@permission_required("charging_sessions.view_chargingsession", raise_exception=True)
def stop_status(request: HttpRequest, pk: int) -> HttpResponse:
    """The live status fragment the session page polls while the card can still change."""
    stop_request = selectors.get_stop_request(pk=pk)
    if stop_request is None:
        raise Http404("No such stop request")
    progress = presenters.stop_progress(stop_request=stop_request, can_stop=_can_stop(request))
    response = render(request, "sessions/_stop_status.html", {"progress": progress, "can_stop": _can_stop(request)})
    seen = request.GET.get("seen", "")
    if seen and seen != progress.fingerprint:
        # Tell the page to refresh the parts that depend on the state (header, button, timeline).
        response["HX-Trigger"] = "stop-changed"
    return response


@require_GET
@login_required
@permission_required("charging_sessions.view_stuck_sessions", raise_exception=True)
def stuck_sessions(request: HttpRequest) -> HttpResponse:
    form = StuckQueueForm(request.GET)
    filters = form.filters()
    queue = selectors.stuck_queue(**filters)
    context = {
        "form": form,
        "queue": queue,
        "stop_rows": [(stop, presenters.stuck_stop_line(stop)) for stop in queue.unconfirmed],
        "stale_rows": [
            (
                cs,
                presenters.stuck_session_line(cs),
                presenters.last_stop_badge(
                    state=cs.last_stop_state, outcome_unknown=cs.last_stop_outcome_unknown, code=cs.last_stop_code or ""
                ),
            )
            for cs in queue.stale
        ],
        "operators": selectors.operator_ids(),
        "sorts": sort_links(request, filters["sort"], ("age", "cpo"), default="age"),
        "filtered": any(request.GET.get(name) for name in ("kind", "operator", "min_age")),
        "sort_choices": [("age", "Oldest first"), ("-age", "Newest first"), ("cpo", "CPO A–Z"), ("-cpo", "CPO Z–A")],
    }
    return render(request, "sessions/stuck_sessions.html", context)


def _stuck_row(request: HttpRequest, pk: int, *, notice: presenters.Notice | None = None) -> HttpResponse:
    stop_request = selectors.stuck_stop(pk=pk)
    if stop_request is None:
        raise Http404("No such stop request")
    return render(
        request,
        "sessions/_stuck_stop_row.html",
        {"stop": stop_request, "line": presenters.stuck_stop_line(stop_request), "notice": notice},
    )


def _resend_context(stop_request, form: RemoteStopForm) -> dict:
    return {
        "stop": stop_request,
        "form": form,
        "action_url": reverse("charging_sessions:resend-stop", kwargs={"pk": stop_request.pk}),
        "title": presenters.RESEND_TITLE,
        "description": presenters.resend_description(stop_request),
    }


@require_http_methods(["GET", "POST"])
@login_required
@permission_required(
    ["charging_sessions.view_stuck_sessions", "charging_sessions.request_remote_stop"], raise_exception=True
)
def resend_stop(request: HttpRequest, pk: int) -> HttpResponse:
    """ "Send stop again" from the stuck queue, behind the session page's confirmation (reason required).

    GET: the confirmation (the dialog's content for htmx, a page of its own without JavaScript), or with
    `row=1` the queue's row as it is now (it follows the new request). POST: a field error answers inside
    the open dialog; otherwise the row answers, showing the new request (or why nothing was sent).
    """
    stop_request = selectors.get_stop_request(pk=pk)
    if stop_request is None:
        raise Http404("No such stop request")
    if request.method == "GET":
        if request.GET.get("row"):
            return _stuck_row(request, pk)
        context = _resend_context(stop_request, RemoteStopForm())
        if not request.htmx:
            return render(request, "sessions/stuck_resend.html", context)
        response = render(request, "sessions/_stuck_resend_dialog.html", context)
        response["HX-Trigger-After-Settle"] = "stop-dialog-open"  # the page opens the dialog, reason focused
        return response
    form = RemoteStopForm(request.POST)
    if not form.is_valid():
        context = _resend_context(stop_request, form)
        # 200, so htmx swaps it: the form with its errors replaces itself inside the open dialog.
        return render(request, "sessions/_stop_form.html" if request.htmx else "sessions/stuck_resend.html", context)
    try:
        new = services.resend_remote_stop(stop_request_id=pk, acting_user=request.user, **form.cleaned_data)
    except services.StopNotAllowed as refusal:
        notice = presenters.Notice(
            "stop-refusal", "bad", presenters.RESEND_REFUSED.format(reason=presenters.refusal_text(refusal)), "alert"
        )
    else:
        notice = presenters.Notice(
            "stop-requested",
            "info",
            presenters.RESENT.format(pk=new.pk, evse_id=new.charging_session.evse_id),
            "status",
        )
    if not request.htmx:
        (messages.error if notice.tone == "bad" else messages.success)(request, notice.text)
        return redirect("charging_sessions:stuck-sessions")
    response = _stuck_row(request, pk, notice=notice)
    response["HX-Retarget"] = f"#stuck-stop-{pk}"
    response["HX-Reswap"] = "outerHTML"
    response["HX-Trigger-After-Settle"] = "stop-dialog-done"
    return response


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
