"""Stop history, one stop request's timeline, and the audit-log export. Thin: permission, form, one call."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from . import selectors, selectors_history, services
from .audit import export_formats as exports
from .forms_history import (
    CUSTOM,
    FAILED_STOPS,
    PERIOD_CHOICES,
    AuditLogFilterForm,
    StartExportForm,
    StopHistoryForm,
    event_groups,
)
from .models import AuditExport
from .oicp.status_codes import describe
from .stops import presenters
from .stops.presenters.cards import code_meaning

PAGE_SIZE = 50
SEE_ALL = "charging_sessions.view_all_remote_stops"
EXPORT = "charging_sessions.export_auditrecord"
# Sortable columns of the history and the direction of their first click.
SORTABLE = {"requested": "-", "agent": "", "operator": "", "state": "", "code": "", "attempts": "-", "confirmation": ""}


def _querystring(request: HttpRequest, *drop: str) -> str:
    params = request.GET.copy()
    for name in drop:
        params.pop(name, None)
    return params.urlencode()


def _sort_links(request: HttpRequest, current: str) -> dict[str, dict[str, str]]:
    base = _querystring(request, "page", "sort")
    links = {}
    for key, first in SORTABLE.items():
        if current.lstrip("-") == key:
            target = key if current.startswith("-") else f"-{key}"
            aria = "descending" if current.startswith("-") else "ascending"
        else:
            target, aria = f"{first}{key}", "none"
        links[key] = {"url": f"?{base + '&' if base else ''}sort={target}", "aria": aria}
    return links


VIEW_AUDIT = "charging_sessions.view_auditrecord"


def _chain_context(request: HttpRequest) -> dict:
    """The audit chain's last verification and the newest "verify now" request, for those who may
    see the audit trail; those who may export may also ask for a verification."""
    if not request.user.has_perm(VIEW_AUDIT):
        return {"verification": None, "running_verification": None, "failed_verification": None, "can_verify": False}
    done = selectors_history.latest_verification()
    requested = selectors_history.latest_requested_verification()
    state = requested.state if requested is not None else None
    newer = requested is not None and (done is None or requested.requested_at > done.finished_at)
    return {
        "verification": done,
        "running_verification": requested if state in ("QUEUED", "RUNNING") else None,
        "failed_verification": requested if state == "FAILED" and newer else None,
        "can_verify": request.user.has_perm(EXPORT),
        # Where the form without JavaScript leads back to: the page, not this fragment's address.
        "chain_back": (request.htmx.current_url_abs_path if request.htmx else None) or request.get_full_path(),
    }


# --- stop history ---------------------------------------------------------------------------------


@require_GET
@login_required
@permission_required("charging_sessions.view_remotestoprequest", raise_exception=True)
def stop_history(request: HttpRequest) -> HttpResponse:
    sees_all = request.user.has_perm(SEE_ALL)
    form = StopHistoryForm(request.GET or None, users=selectors_history.portal_users() if sees_all else ())
    filters = form.filters()
    stops = selectors_history.stop_history(filters=filters, only_requested_by=None if sees_all else request.user)
    page = Paginator(stops, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "form": form,
        "page": page,
        "rows": [
            (stop, code_meaning(describe(stop.oicp_code)) if stop.oicp_code else None) for stop in page.object_list
        ],
        "sees_all": sees_all,
        "operators": selectors.operator_ids(),
        "codes": selectors_history.stop_oicp_codes(),
        "sorts": _sort_links(request, filters.sort),
        "querystring": _querystring(request, "page"),
        **_chain_context(request),
        "filtered": any(value for key, value in request.GET.items() if key not in ("page", "sort")),
        "selection": _selection_chip(request, filters),
    }
    return render(request, "sessions/stop_history.html", context)


def _selection_chip(request: HttpRequest, filters) -> dict | None:
    """The `ids` filter as a removable chip ("3 selected requests"), or None without one."""
    if not request.GET.get("ids", "").strip():
        return None
    rest = _querystring(request, "page", "ids")
    remove_url = reverse("charging_sessions:stop-history") + (f"?{rest}" if rest else "")
    return {"count": len(filters.ids or ()), "remove_url": remove_url}


@require_GET
@login_required
@permission_required("charging_sessions.view_remotestoprequest", raise_exception=True)
def stop_timeline(request: HttpRequest, pk: int) -> HttpResponse:
    sees_all = request.user.has_perm(SEE_ALL)
    stop_request = selectors_history.get_history_stop_request(
        pk=pk, only_requested_by=None if sees_all else request.user
    )
    if stop_request is None:
        raise Http404("No such stop request")
    timeline = selectors_history.stop_timeline(stop_request=stop_request)
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


# --- audit-log export ------------------------------------------------------------------------------


def _export_page(request: HttpRequest, form: AuditLogFilterForm, *, status: int = 200) -> HttpResponse:
    """What will be exported (summary, row count) and the format; recent exports; the chain's state.
    A form with errors shows them beside their fields and offers nothing to export."""
    filters = form.filters()
    count = selectors_history.audit_log(filters=filters).count() if filters is not None else None
    context = {
        "form": form,
        "filters": filters,
        "summary": filters.summary() if filters is not None else None,
        "row_count": count,
        "background": count is not None and count > settings.AUDIT_EXPORT_SYNC_MAX_ROWS,
        "threshold": settings.AUDIT_EXPORT_SYNC_MAX_ROWS,
        "formats": AuditExport.Format.choices,
        "chosen_format": form.data.get("format") or AuditExport.Format.CSV,
        "event_groups": event_groups(),
        "chosen_events": set(form.data.getlist("event_type")) if form.is_bound else set(),
        "failed_stops": FAILED_STOPS,
        "periods": PERIOD_CHOICES,
        "chosen_period": (form.data.get("period") or CUSTOM) if form.is_bound else CUSTOM,
        "operators": form.operators,
        "time_zone": timezone.get_default_timezone_name(),
        "exports": selectors_history.recent_exports(),
        **_chain_context(request),
    }
    return render(request, "sessions/audit_export.html", context, status=status)


@require_GET
@login_required
@permission_required(EXPORT, raise_exception=True)
def audit_export(request: HttpRequest) -> HttpResponse:
    if request.htmx and request.GET.get("part") == "exports":
        return render(request, "sessions/_audit_export_list.html", {"exports": selectors_history.recent_exports()})
    return _export_page(request, AuditLogFilterForm(request.GET or None, operators=selectors.operator_ids()))


@require_POST
@login_required
@permission_required(EXPORT, raise_exception=True)
def start_audit_export(request: HttpRequest) -> HttpResponse:
    form = StartExportForm(request.POST, operators=selectors.operator_ids())
    if not form.is_valid():
        # Said beside the fields it concerns; nothing is exported or recorded.
        return _export_page(request, form, status=400)
    export = services.prepare_audit_export(
        filters=form.filters(), export_format=form.cleaned_data["format"], acting_user=request.user
    )
    if services.export_runs_in_background(export):
        services.queue_audit_export(export=export)
        messages.success(
            request, f"Export #{export.pk} of {export.row_count} records is being prepared in the background."
        )
        return redirect("charging_sessions:audit-export-detail", pk=export.pk)
    if export.format == AuditExport.Format.XLSX:
        export = services.write_audit_export(export_id=export.pk)
        return _file_response(export)
    response = StreamingHttpResponse(
        services.stream_audit_export(export=export), content_type=exports.CONTENT_TYPES[export.format]
    )
    response["Content-Disposition"] = f'attachment; filename="audit-log-{export.pk}.{export.format}"'
    response["X-Export-Id"] = str(export.pk)
    response["Cache-Control"] = "no-store"
    return response


def _file_response(export: AuditExport) -> HttpResponse:
    path = services.export_path(export)
    if path is None:
        raise Http404("The export file is not available")
    response = FileResponse(
        open(path, "rb"), as_attachment=True, filename=path.name, content_type=exports.CONTENT_TYPES[export.format]
    )
    response["X-Export-Id"] = str(export.pk)
    response["Cache-Control"] = "no-store"
    return response


def _export_for(request: HttpRequest, pk: int) -> AuditExport:
    """The export, for the person who requested it or anyone who may export (supervisor, auditor)."""
    export = selectors_history.get_export(pk=pk)
    if not request.user.has_perm(EXPORT) and (export is None or export.requested_by_id != request.user.pk):
        raise PermissionDenied
    if export is None:
        raise Http404("No such export")
    return export


@require_GET
@login_required
def audit_export_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The progress of one export (polled while it runs), then its checksum and download link."""
    export = _export_for(request, pk)
    template = "sessions/_audit_export_progress.html" if request.htmx else "sessions/audit_export_detail.html"
    return render(request, template, {"export": export, "file_ready": services.export_path(export) is not None})


@require_GET
@login_required
def audit_export_download(request: HttpRequest, pk: int) -> HttpResponse:
    export = _export_for(request, pk)
    if services.export_path(export) is None:
        raise Http404("This export has no file (it is not finished, it was streamed, or the file was removed)")
    services.record_export_download(export=export, acting_user=request.user)
    return _file_response(export)


# --- the audit chain: its state, and "verify now" ------------------------------------------------------


@require_GET
@login_required
@permission_required(VIEW_AUDIT, raise_exception=True)
def audit_chain_status(request: HttpRequest) -> HttpResponse:
    """The chain's state as a fragment: polled while a requested verification waits or runs."""
    return render(request, "sessions/_audit_chain_status.html", _chain_context(request))


@require_POST
@login_required
@permission_required(EXPORT, raise_exception=True)
def verify_audit_chain_now(request: HttpRequest) -> HttpResponse:
    """Queue a walk of the chain in the background (or follow the one already queued)."""
    services.request_audit_verification(acting_user=request.user)
    if request.htmx:
        return render(request, "sessions/_audit_chain_status.html", _chain_context(request))
    messages.success(request, "The audit trail is being verified in the background; the result appears here.")
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        back = reverse("charging_sessions:audit-export")
    return redirect(back)
