"""The remote stop's screens: request a stop, its live status, "send stop again" from the stuck queue,
the stop history and one stop request's timeline. Thin: check permission, validate input, call one
selector or service."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from .. import services
from ..audit.verification_panel import chain_context
from ..charging import selectors as charging_selectors
from ..listing import PAGE_SIZE, BoundedPaginator, querystring, sort_links
from ..oicp.status_codes import describe
from . import presenters, selectors
from .forms import RemoteStopForm, StopHistoryForm
from .presenters.cards import code_meaning
from .stop_area import can_stop, stop_area_context

# Sees every agent's note, case reference and exchange with Hubject (support admins, supervisors, auditors).
SEE_ALL = "charging_sessions.view_all_remote_stops"
# Sortable columns of the history and the direction of their first click.
SORTABLE = {"requested": "-", "agent": "", "operator": "", "state": "", "code": "", "attempts": "-", "confirmation": ""}


@require_POST
@login_required
@permission_required("charging_sessions.request_remote_stop", raise_exception=True)
def request_stop(request: HttpRequest, pk: int) -> HttpResponse:
    """Every submit answers where the agent is looking (htmx): a field error inside the open dialog,
    next to its field; a refusal, the broker's warning or the success in the stop area. The stop is
    saved before it is published, and the publish is bounded, so the answer comes within seconds."""
    charging_session = charging_selectors.get_charging_session(pk=pk)
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
        requested = services.request_remote_stop(
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
    context = stop_area_context(request, charging_session, notice=notice)
    # The answer goes to the stop area, not into the dialog; a fresh form replaces the dialog's (out
    # of band), and the page closes the dialog and moves focus to the answer.
    response = render(request, "sessions/_stop_answer.html", {**context, "fresh_form": RemoteStopForm()})
    return _answer_replaces(response, "#stop-area")


@require_GET
@login_required
@permission_required("charging_sessions.view_chargingsession", raise_exception=True)
def stop_status(request: HttpRequest, pk: int) -> HttpResponse:
    """The live status fragment the session page polls while the card can still change."""
    stop_request = selectors.get_stop_request(pk=pk)
    if stop_request is None:
        raise Http404("No such stop request")
    progress = presenters.stop_progress(stop_request=stop_request, can_stop=can_stop(request))
    response = render(request, "sessions/_stop_status.html", {"progress": progress, "can_stop": can_stop(request)})
    seen = request.GET.get("seen", "")
    if seen and seen != progress.fingerprint:
        # Tell the page to refresh the parts that depend on the state (header, button, timeline).
        response["HX-Trigger"] = "stop-changed"
    return response


# --- "send stop again" from the stuck queue ----------------------------------------------------------


def _stuck_row(request: HttpRequest, pk: int, *, notice: presenters.Notice | None = None) -> HttpResponse:
    stop_request = charging_selectors.stuck_stop(pk=pk)
    if stop_request is None:
        raise Http404("No such stop request")
    return render(
        request,
        "sessions/_stuck_rows.html",
        {
            "rows": presenters.stuck_stop_rows([stop_request]),
            "actions": presenters.row_actions(request.user),
            "notice": notice,
        },
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
    return _answer_replaces(_stuck_row(request, pk, notice=notice), f"#stuck-stop-{pk}")


def _answer_replaces(response: HttpResponse, target: str) -> HttpResponse:
    """The stop dialog's answer replaces `target` (not the dialog's own form), and the page then
    closes the dialog and moves focus to the answer (static/js: stop-dialog-done)."""
    response["HX-Retarget"] = target
    response["HX-Reswap"] = "outerHTML"
    response["HX-Trigger-After-Settle"] = "stop-dialog-done"
    return response


# --- stop history ---------------------------------------------------------------------------------


@require_GET
@login_required
@permission_required("charging_sessions.view_remotestoprequest", raise_exception=True)
def stop_history(request: HttpRequest) -> HttpResponse:
    sees_all = request.user.has_perm(SEE_ALL)
    form = StopHistoryForm(request.GET or None, users=selectors.portal_users() if sees_all else ())
    filters = form.filters()
    stops = selectors.stop_history(filters=filters, only_requested_by=None if sees_all else request.user)
    page = BoundedPaginator(stops, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "form": form,
        "page": page,
        "rows": [
            (stop, code_meaning(describe(stop.oicp_code)) if stop.oicp_code else None) for stop in page.object_list
        ],
        "sees_all": sees_all,
        "operators": charging_selectors.operator_ids(),
        "codes": selectors.stop_oicp_codes(),
        "sorts": sort_links(request, filters.sort, SORTABLE, default=selectors.DEFAULT_HISTORY_SORT, first=SORTABLE),
        "querystring": querystring(request, "page"),
        **chain_context(request),
        "filtered": any(value for key, value in request.GET.items() if key not in ("page", "sort")),
        "selection": _selection_chip(request, filters),
    }
    return render(request, "sessions/stop_history.html", context)


def _selection_chip(request: HttpRequest, filters) -> dict | None:
    """The `ids` filter as a removable chip ("3 selected requests"), or None without one."""
    if not request.GET.get("ids", "").strip():
        return None
    rest = querystring(request, "page", "ids")
    remove_url = reverse("charging_sessions:stop-history") + (f"?{rest}" if rest else "")
    return {"count": len(filters.ids or ()), "remove_url": remove_url}


@require_GET
@login_required
@permission_required("charging_sessions.view_remotestoprequest", raise_exception=True)
def stop_timeline(request: HttpRequest, pk: int) -> HttpResponse:
    sees_all = request.user.has_perm(SEE_ALL)
    stop_request = selectors.get_history_stop_request(pk=pk, only_requested_by=None if sees_all else request.user)
    if stop_request is None:
        raise Http404("No such stop request")
    timeline = selectors.stop_timeline(stop_request=stop_request)
    steps = [
        ("Requested", stop_request.requested_at),
        ("First sent to Hubject", stop_request.first_sent_at),
        ("Answered", stop_request.answered_at),
        ("Finished", stop_request.finished_at),
        ("Confirmed ended", stop_request.confirmed_at),
    ]
    context = {
        "stop": stop_request,
        "timeline": timeline,
        "steps": steps,
        # One advice resolver: the words follow the code and the facts, as on the session page.
        "card": presenters.stop_progress(stop_request=stop_request).card,
    }
    return render(request, "sessions/stop_timeline.html", context)
